"""The market data client against the fake API on 127.0.0.1: pagination, retries, errors, parsing, secrecy."""
import logging
from dataclasses import asdict
from datetime import date, datetime, timezone

import pytest

from spxlib.marketdata import (
    AuthError,
    ChainFilter,
    DailyBar,
    EntitlementError,
    MalformedResponseError,
    MarketDataClient,
    MarketDataError,
    MissingApiKeyError,
    NotFoundError,
    RateLimitError,
    ServerError,
    parse_option_ticker,
    parse_snapshot,
)
from spxlib.simulator.server import FakeApiServer

# A narrow slice of the seed chain: a few dozen puts, so small pages still make many requests.
SLICE = ChainFilter(strike_gte=5000, strike_lte=5600, expiration_lte=date(2026, 1, 31))


class FakeClock:
    """monotonic() and sleep() for the client: sleeping moves the clock, nobody waits."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def api_config(config, fake_api):
    """Default settings pointed at the fake API, with the documented retry defaults made explicit."""
    return config.replace(api_base_url=fake_api.base_url, max_poll_retries=3, retry_delay_seconds=60,
                          poll_time_budget_seconds=240, api_timeout_seconds=5)


@pytest.fixture
def client(api_config, clock, fake_api_key):
    with MarketDataClient(api_config, api_key=fake_api_key, sleep=clock.sleep, monotonic=clock.monotonic) as client:
        yield client


def expected_puts(market, fake_api, chain_filter=SLICE):
    """The tickers the whole chain snapshot holds for this filter, straight from the simulated market."""
    return sorted(
        c.ticker for c in market.chain(fake_api.now, fake_api.delay_minutes)
        if c.contract_type == chain_filter.contract_type
        and (chain_filter.strike_gte is None or c.strike >= chain_filter.strike_gte)
        and (chain_filter.strike_lte is None or c.strike <= chain_filter.strike_lte)
        and (chain_filter.expiration_lte is None or c.expiration <= chain_filter.expiration_lte)
    )


# --- Pagination ------------------------------------------------------------------------------


def test_small_pages_return_every_contract_exactly_once(api_config, clock, fake_api, market):
    client = MarketDataClient(api_config, api_key="test-key", page_limit=7, sleep=clock.sleep,
                              monotonic=clock.monotonic)
    result = client.fetch_chain(chain_filter=SLICE)
    tickers = [s.ticker for s in result.snapshots]
    expected = expected_puts(market, fake_api)
    assert len(expected) > 7 * 10  # many pages
    assert len(tickers) == len(set(tickers))
    assert sorted(tickers) == expected
    assert result.pages == result.requests == len(fake_api.requests) == -(-len(expected) // 7)
    assert clock.sleeps == []


def test_filters_go_on_the_first_page_only_and_the_cursor_carries_them(client, fake_api):
    client.page_limit = 10
    client.fetch_chain(chain_filter=SLICE)
    first, *rest = fake_api.requests
    assert first.query == {
        "contract_type": "put", "expiration_date.lte": "2026-01-31",
        "strike_price.gte": "5000", "strike_price.lte": "5600", "limit": "10",
    }
    assert rest and all(set(r.query) == {"cursor"} for r in rest)
    assert all(r.path == "/v3/snapshot/options/I:SPX" and r.gzip for r in fake_api.requests)


def test_full_put_chain_in_pages_of_250(client, fake_api, market):
    result = client.fetch_chain()
    expected = sorted(c.ticker for c in market.chain(fake_api.now) if c.contract_type == "put")
    assert sorted(s.ticker for s in result.snapshots) == expected
    assert result.pages == -(-len(expected) // 250)
    assert {s.root for s in result.snapshots} == {"SPX", "SPXW"}
    assert all(s.contract_type == "put" for s in result.snapshots)


def test_each_page_is_logged_at_debug_with_path_and_status(api_config, clock, fake_api, caplog):
    quiet = []  # the INFO-and-up callback stays quiet on a healthy fetch: the poll prints its own summary
    client = MarketDataClient(api_config, api_key="test-key", page_limit=50, log=quiet.append,
                              sleep=clock.sleep, monotonic=clock.monotonic)
    with caplog.at_level(logging.DEBUG, logger="spx.marketdata"):
        result = client.fetch_chain(chain_filter=SLICE)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert result.pages > 1 and len(lines) == result.pages
    assert lines[0].startswith("GET /v3/snapshot/options/I:SPX?contract_type=put&")
    assert all(" -> 200 " in line for line in lines)
    assert "page %d, " % result.pages in lines[-1]
    assert quiet == []


def test_empty_chain_without_results_is_an_empty_list(client, fake_api):
    result = client.fetch_chain(chain_filter=ChainFilter(strike_lte=1))
    assert (result.snapshots, result.pages, result.requests) == ([], 1, 1)


def test_delayed_status_is_accepted(client, fake_api, market):
    fake_api.set_switches(status="DELAYED")
    assert sorted(s.ticker for s in client.fetch_chain(chain_filter=SLICE).snapshots) == expected_puts(market, fake_api)


# --- Parsing ---------------------------------------------------------------------------------


def test_snapshot_fields_match_the_served_result(client, fake_api, market):
    snapshot = client.fetch_chain(chain_filter=SLICE).snapshots[0]
    served = market.snapshot_result(snapshot.ticker, fake_api.now, fake_api.delay_minutes, fake_api.options)
    assert snapshot.strike == served["details"]["strike_price"]
    assert snapshot.expiration_date == date.fromisoformat(served["details"]["expiration_date"])
    assert snapshot.volume == served["day"]["volume"]
    assert snapshot.open_interest == served["open_interest"]
    assert snapshot.vwap == served["day"]["vwap"]
    assert snapshot.close == served["day"]["close"]
    assert snapshot.last_price == served["last_trade"]["price"]
    assert snapshot.midpoint == served["last_quote"]["midpoint"]
    assert snapshot.delta == served["greeks"]["delta"]
    assert snapshot.underlying_price == served["underlying_asset"]["value"]
    assert snapshot.timeframe == "DELAYED"
    ns = served["underlying_asset"]["last_updated"]
    assert snapshot.data_updated_at == datetime.fromtimestamp(ns // 10**9, tz=timezone.utc)
    assert snapshot.data_updated_at.tzinfo is timezone.utc


def test_missing_greeks_quotes_and_trades_parse_to_none(client, fake_api):
    fake_api.set_switches(greeks=False, last_quote=False, last_trade=False)
    snapshots = client.fetch_chain(chain_filter=SLICE).snapshots
    assert snapshots
    assert all(s.delta is None and s.midpoint is None and s.last_price is None for s in snapshots)
    assert all(s.volume is not None and s.underlying_price is not None for s in snapshots)


def test_underlying_price_instead_of_value(client, fake_api):
    by_value = client.fetch_chain(chain_filter=SLICE).snapshots[0].underlying_price
    fake_api.set_switches(underlying_field="price")
    by_price = client.fetch_chain(chain_filter=SLICE).snapshots[0].underlying_price
    assert by_price == by_value and by_value > 1000


def test_midpoint_from_bid_and_ask_when_missing():
    result = {"details": {"ticker": "O:SPX251219P05000000", "strike_price": 5000, "expiration_date": "2025-12-19"},
              "last_quote": {"bid": 4.0, "ask": 5.0}}
    snapshot = parse_snapshot(result)
    assert snapshot.midpoint == 4.5
    assert (snapshot.root, snapshot.contract_type, snapshot.volume, snapshot.delta) == ("SPX", "put", None, None)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["details"].update(strike_price="abc"),
     "results[3].details.strike_price: expected a number, got 'abc'"),
    (lambda r: r["details"].pop("ticker"), "results[3].details.ticker: missing"),
    (lambda r: r["details"].update(ticker="SPX"), "results[3].details.ticker: 'SPX' is not an option ticker"),
    (lambda r: r["details"].update(expiration_date="12/19/2025"),
     "results[3].details.expiration_date: expected a date YYYY-MM-DD, got '12/19/2025'"),
    (lambda r: r.pop("details"), "results[3].details: missing"),
    (lambda r: r.update(day=[1, 2]), "results[3].day: expected an object, got [1, 2]"),
    (lambda r: r.update(day={"volume": "12"}), "results[3].day.volume: expected a number, got '12'"),
    (lambda r: r.update(day={"volume": 1.5}), "results[3].day.volume: expected a whole number, got 1.5"),
    (lambda r: r.update(open_interest=True), "results[3].open_interest: expected a number, got True"),
    (lambda r: r.update(greeks={"delta": "-0.2"}), "results[3].greeks.delta: expected a number, got '-0.2'"),
])
def test_wrong_shapes_name_the_field(change, message):
    result = {"details": {"ticker": "O:SPX251219P05000000", "strike_price": 5000, "expiration_date": "2025-12-19"}}
    change(result)
    with pytest.raises(MalformedResponseError) as caught:
        parse_snapshot(result, "results[3]")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("ticker, parsed", [
    ("O:SPXW230712C04500000", ("SPXW", date(2023, 7, 12), "call", 4500.0)),
    ("O:SPX251219P05000000", ("SPX", date(2025, 12, 19), "put", 5000.0)),
    ("O:SPXW260306P06812500", ("SPXW", date(2026, 3, 6), "put", 6812.5)),
])
def test_parse_option_ticker(ticker, parsed):
    assert parse_option_ticker(ticker) == parsed


@pytest.mark.parametrize("ticker", ["SPXW230712C04500000", "O:SPXW230712X04500000", "O:SPXW231332P04500000",
                                    "O:SPXW230712P4500000", None])
def test_parse_option_ticker_rejects(ticker):
    with pytest.raises(ValueError):
        parse_option_ticker(ticker)


# --- Retries and the time budget -------------------------------------------------------------


def test_429_waits_for_retry_after_then_succeeds(client, clock, fake_api, market):
    fault = fake_api.inject_fault("429", on_page=2, retry_after=7)
    client.page_limit = 20
    result = client.fetch_chain(chain_filter=SLICE)
    assert fault.fired == 1
    assert clock.sleeps == [7]
    assert sorted(s.ticker for s in result.snapshots) == expected_puts(market, fake_api)
    assert result.requests == result.pages + 1 == len(fake_api.requests)


def test_429_without_retry_after_waits_the_retry_delay(client, clock, fake_api):
    fake_api.inject_fault("429_empty", times=2)
    client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [60, 60]


def test_500_is_retried_then_succeeds(client, clock, fake_api, market):
    fake_api.inject_fault("500")
    result = client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [60]
    assert [r.status for r in fake_api.requests][:2] == [500, 200]
    assert sorted(s.ticker for s in result.snapshots) == expected_puts(market, fake_api)


def test_502_html_and_dropped_connections_are_retried_with_doubling_backoff(client, clock, fake_api):
    fake_api.inject_fault("502")
    fake_api.inject_fault("disconnect", on_request=2)
    client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [60, 120]


def test_503_retry_after_is_honoured(client, clock, fake_api):
    fake_api.inject_fault("503", retry_after=3)
    client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [3]


def test_persistent_500_raises_server_error_after_max_retries(client, clock, fake_api):
    fake_api.inject_fault("500", times=None)
    with pytest.raises(ServerError) as caught:
        client.fetch_chain(chain_filter=SLICE)
    assert len(fake_api.requests) == 3
    assert clock.sleeps == [60, 120]
    assert sum(clock.sleeps) <= 240
    assert str(caught.value) == (
        "The market data API failed with HTTP 500 (Internal server error.) on page 1 of "
        "/v3/snapshot/options/I:SPX; gave up after 3 attempts (MAX_POLL_RETRIES)."
    )


def test_retries_never_sleep_past_the_time_budget(api_config, clock, fake_api, fake_api_key):
    config = api_config.replace(max_poll_retries=10, retry_delay_seconds=50, poll_time_budget_seconds=200)
    client = MarketDataClient(config, api_key=fake_api_key, sleep=clock.sleep, monotonic=clock.monotonic)
    fake_api.inject_fault("500", times=None)
    with pytest.raises(ServerError) as caught:
        client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [50, 100]  # the next wait (200 s) would end past the budget
    assert len(fake_api.requests) == 3
    assert "waiting 200 s more would pass the time budget of 200 s" in str(caught.value)


def test_the_budget_covers_the_whole_fetch_not_each_page(api_config, clock, fake_api, fake_api_key):
    config = api_config.replace(retry_delay_seconds=100, poll_time_budget_seconds=250)
    client = MarketDataClient(config, api_key=fake_api_key, page_limit=10, sleep=clock.sleep,
                              monotonic=clock.monotonic)
    fake_api.inject_fault("500", on_page=1)
    fake_api.inject_fault("500", on_page=2)
    fake_api.inject_fault("500", on_page=3)
    with pytest.raises(ServerError, match="page 3 of"):
        client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [100, 100]


def test_429_asking_to_wait_past_the_budget_gives_up_at_once(client, clock, fake_api):
    fake_api.inject_fault("429", retry_after=600)
    with pytest.raises(RateLimitError) as caught:
        client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [] and len(fake_api.requests) == 1
    assert "rate limited (HTTP 429: You've exceeded the maximum requests per minute" in str(caught.value)
    assert "time budget of 240 s" in str(caught.value)


def test_persistent_429_raises_rate_limit_error(client, clock, fake_api):
    fake_api.inject_fault("429", times=None, retry_after=1)
    with pytest.raises(RateLimitError, match="gave up after 3 attempts"):
        client.fetch_chain(chain_filter=SLICE)
    assert clock.sleeps == [1, 1]


def test_a_slow_answer_times_out_and_is_retried(api_config, clock, fake_api, fake_api_key):
    client = MarketDataClient(api_config.replace(api_timeout_seconds=1), api_key=fake_api_key,
                              sleep=clock.sleep, monotonic=clock.monotonic)
    fake_api.inject_fault("slow", seconds=1.5)
    assert client.fetch_chain(chain_filter=SLICE).snapshots
    assert clock.sleeps == [60]


# --- Errors that are never retried -----------------------------------------------------------


@pytest.mark.parametrize("kind, fragment", [
    ("invalid_json", "the body is not JSON"),
    ("empty_body", "the body is not JSON"),
    ("results_not_list", "results: expected a list, got {"),
    ("missing_details", "results[0].details: missing"),
])
def test_malformed_pages_are_not_retried_and_name_page_and_field(client, clock, fake_api, kind, fragment):
    client.page_limit = 20
    fake_api.inject_fault(kind, on_page=2)
    with pytest.raises(MalformedResponseError) as caught:
        client.fetch_chain(chain_filter=SLICE)
    assert str(caught.value).startswith("Malformed market data response (page 2 of /v3/snapshot/options/I:SPX): ")
    assert fragment in str(caught.value)
    assert len(fake_api.requests) == 2 and clock.sleeps == []


def test_unknown_key_is_rejected_without_retry(api_config, clock, fake_api):
    client = MarketDataClient(api_config, api_key="not-the-test-key", sleep=clock.sleep, monotonic=clock.monotonic)
    with pytest.raises(AuthError) as caught:
        client.fetch_chain()
    assert str(caught.value) == (
        "API key rejected by the market data API (HTTP 401 on page 1 of /v3/snapshot/options/I:SPX: "
        "Unknown API Key); check MASSIVE_API_KEY / POLYGON_API_KEY."
    )
    assert len(fake_api.requests) == 1 and clock.sleeps == []


def test_plan_not_entitled_is_not_retried(client, clock, fake_api):
    fake_api.inject_fault("403")
    with pytest.raises(EntitlementError) as caught:
        client.fetch_chain()
    assert str(caught.value).startswith(
        "Market data plan not entitled to this data (HTTP 403 on page 1 of /v3/snapshot/options/I:SPX: "
        "You are not entitled to this data. Please upgrade your plan"
    )
    assert len(fake_api.requests) == 1 and clock.sleeps == []


def test_missing_key_fails_before_any_request(api_config, fake_api):
    with pytest.raises(MissingApiKeyError) as caught:
        MarketDataClient(api_config, environ={"MASSIVE_API_KEY": "  "})
    assert "MASSIVE_API_KEY" in str(caught.value) and "POLYGON_API_KEY" in str(caught.value)
    assert isinstance(caught.value, MarketDataError)
    assert fake_api.requests == []


def test_key_from_either_environment_variable(api_config, fake_api):
    for name in ("POLYGON_API_KEY", "MASSIVE_API_KEY"):
        client = MarketDataClient(api_config, environ={name: "test-key"})
        assert client.fetch_chain(chain_filter=ChainFilter(strike_lte=1)).pages == 1


# --- The key stays secret --------------------------------------------------------------------


def test_the_key_never_appears_in_logs_errors_reprs_or_urls(market, clock, caplog, api_config):
    secret = "test-key-never-printed"
    with FakeApiServer(market, api_keys=(secret,)) as server:
        config = api_config.replace(api_base_url=server.base_url)
        lines = []
        client = MarketDataClient(config, api_key=secret, page_limit=25, log=lines.append,
                                  sleep=clock.sleep, monotonic=clock.monotonic)
        errors = []
        with caplog.at_level(logging.DEBUG):
            client.fetch_chain(chain_filter=SLICE)
            for kind in ("500", "403", "invalid_json", "disconnect"):
                server.clear_faults()
                server.inject_fault(kind, times=None)
                with pytest.raises(MarketDataError) as caught:
                    client.fetch_chain(chain_filter=SLICE)
                errors.append(caught.value)
            server.clear_faults()
            with pytest.raises(NotFoundError) as caught:
                client.fetch_daily_bars("O:SPX251219P05001000", date(2025, 12, 1), date(2025, 12, 2))
            errors.append(caught.value)
        logged = caplog.text + "\n".join(lines)
        assert lines and "GET /v3/snapshot/options/I:SPX" in logged
        assert secret not in logged
        assert all(secret not in str(e) and secret not in repr(e) for e in errors)
        assert secret not in repr(client) and "***" in repr(client)
        assert all(secret not in repr(asdict(r)) for r in server.requests)
        assert all("apiKey" not in r.query for r in server.requests)
        assert client._mask("https://x/v3?apiKey=abc&cursor=1 Bearer %s" % secret) == (
            "https://x/v3?apiKey=***&cursor=1 Bearer ***")


def test_next_url_keeps_path_and_query_only_and_drops_any_key(client):
    assert client._next_path("https://api.massive.com/v3/snapshot/options/I:SPX?cursor=abc%3D&apiKey=k") == (
        "/v3/snapshot/options/I:SPX?cursor=abc%3D")


# --- Daily bars ------------------------------------------------------------------------------


def test_daily_bars_parse(client, fake_api, market):
    ticker = "O:SPX251219P05000000"
    bars = client.fetch_daily_bars(ticker, date(2025, 11, 24), date(2025, 12, 3))
    sessions = [date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28),
                date(2025, 12, 1), date(2025, 12, 2)]  # Thanksgiving closed; Dec 3 is not over at 14:00
    assert [b.trade_date for b in bars] == sessions
    for bar in bars:
        served = market.daily_bar(ticker, bar.trade_date)
        assert bar == DailyBar(ticker, bar.trade_date, served["v"], served["o"], served["h"], served["l"],
                               served["c"], served["vw"], served["n"])
    path = fake_api.requests[-1].path
    assert path == "/v2/aggs/ticker/O:SPX251219P05000000/range/1/day/2025-11-24/2025-12-03"


def test_unknown_contract_is_not_found(client, clock, fake_api):
    with pytest.raises(NotFoundError, match="Options contract not found"):
        client.fetch_daily_bars("O:SPX251219P05001000", date(2025, 12, 1), date(2025, 12, 2))
    assert len(fake_api.requests) == 1 and clock.sleeps == []


def test_aggregate_requests_are_paced(api_config, clock, fake_api, fake_api_key):
    client = MarketDataClient(api_config.replace(aggregates_pace_seconds=12), api_key=fake_api_key,
                              sleep=clock.sleep, monotonic=clock.monotonic)
    for _ in range(3):
        client.fetch_daily_bars("O:SPX251219P05000000", date(2025, 12, 1), date(2025, 12, 2))
    assert clock.sleeps == [12, 12]

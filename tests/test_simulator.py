"""The simulated market and its fake market data API: shapes, pagination, filters, clock, faults, volumes."""
import gzip
import json
import os
import socket
import time as time_module
import urllib.request
from datetime import date, datetime, time, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from spxlib.simulator import (
    DAILY_VOLUME_BAND,
    MAX_NORMAL_DAILY_VOLUME,
    PlantedEvent,
    SimulatedMarket,
    demo_events,
    format_ticker,
    parse_ticker,
)
from spxlib.simulator.server import FAULT_KINDS, FakeApiServer, decode_cursor
from tests.fixtures_market import FAKE_API_KEY

ET = ZoneInfo("America/New_York")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_PAGE = os.path.join(REPO_ROOT, "..", "shared", "reference", "chain-page-example.json")
AUTH = {"Authorization": "Bearer " + FAKE_API_KEY}
WEDNESDAY_2PM = datetime(2025, 12, 3, 14, 0, tzinfo=ET)

# The project's default detection, written out here so the simulator's promise is checked against it.
DELTA_THRESHOLD, MULTIPLIER_THRESHOLD, DORMANCY_THRESHOLD, VOLUME_FLOOR = 200, 100, 100, 100


def default_rules_fire(volume: int, baseline: int) -> bool:
    """The default rules without the premium floor (stricter than the project)."""
    if volume < VOLUME_FLOOR:
        return False
    return (
        volume - baseline > DELTA_THRESHOLD
        or (baseline > 0 and volume > MULTIPLIER_THRESHOLD * baseline)
        or (baseline == 0 and volume > DORMANCY_THRESHOLD)
    )


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=ET)


def fetch_all(server, params, headers=AUTH):
    """Every result of a paginated chain query, and the pages it took."""
    url = server.base_url + "/v3/snapshot/options/I:SPX"
    results, pages = [], 0
    with requests.Session() as session:
        response = session.get(url, params=params, headers=headers)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            results.extend(body.get("results", []))
            if "next_url" not in body:
                return results, pages
            response = session.get(body["next_url"], headers=headers)


def tickers(results):
    return [r["details"]["ticker"] for r in results]


# --- Shapes ------------------------------------------------------------------------------------------

def _shape(value):
    """Keys all the way down; numbers as 'number' so 6800 and 6800.5 have the same shape."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


@pytest.mark.skipif(not os.path.exists(EXAMPLE_PAGE), reason="shared/reference is not beside this clone")
def test_chain_page_matches_the_example_page_field_by_field(fake_api):
    with open(EXAMPLE_PAGE, encoding="utf-8") as handle:
        example = json.load(handle)
    fake_api.set_now(WEDNESDAY_2PM)
    response = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX",
                            params={"contract_type": "put", "limit": 2}, headers=AUTH)
    body = response.json()
    assert set(body) == set(example)
    assert _shape(body["results"][0]) == _shape(example["results"][0])
    for result in body["results"]:
        assert _shape(result) == _shape(example["results"][1])
    assert isinstance(body["results"][0]["day"]["volume"], int)
    assert isinstance(body["results"][0]["open_interest"], int)
    assert isinstance(body["results"][0]["day"]["last_updated"], int)


def test_snapshot_values_are_consistent_like_the_example(fake_api, market):
    fake_api.set_now(WEDNESDAY_2PM)
    results, _ = fetch_all(fake_api, {"limit": 250})
    for result in results:
        day, details, under = result["day"], result["details"], result["underlying_asset"]
        sign = -1 if details["contract_type"] == "put" else 1
        assert result["break_even_price"] == pytest.approx(details["strike_price"] + sign * day["close"])
        assert under["change_to_break_even"] == pytest.approx(result["break_even_price"] - under["value"], abs=0.011)
        assert day["low"] <= day["close"] <= day["high"] and day["low"] <= day["open"] <= day["high"]
        assert day["change"] == pytest.approx(day["close"] - day["previous_close"])
        assert result["last_quote"]["bid"] <= result["last_quote"]["midpoint"] <= result["last_quote"]["ask"]
        assert details["exercise_style"] == "european" and details["shares_per_contract"] == 100
        assert result["greeks"]["delta"] * sign >= 0 and result["greeks"]["gamma"] >= 0
        # last_updated of the day bar sits on the Eastern day boundary
        assert day["last_updated"] == int(at(date(2025, 12, 3), 0).timestamp()) * 10 ** 9
        assert under["ticker"] == "I:SPX" and under["timeframe"] == "DELAYED"


def test_otm_puts_carry_more_implied_volatility_than_the_money(market):
    results = {r["details"]["ticker"]: r for r in market.snapshot(WEDNESDAY_2PM)}
    expiry = date(2026, 1, 16)
    spot = market.spot(WEDNESDAY_2PM - timedelta(minutes=15))
    near = format_ticker("SPX", expiry, "put", min(market.strikes, key=lambda k: abs(k - spot)))
    far = format_ticker("SPX", expiry, "put", min(market.strikes, key=lambda k: abs(k - 0.8 * spot)))
    assert results[far]["implied_volatility"] > results[near]["implied_volatility"]


# --- The chain's structure ---------------------------------------------------------------------------

def test_ticker_format_follows_the_documented_example():
    assert format_ticker("SPXW", date(2023, 7, 12), "call", 4500) == "O:SPXW230712C04500000"
    assert parse_ticker("O:SPXW230712C04500000") == ("SPXW", date(2023, 7, 12), "call", 4500.0)
    assert parse_ticker("O:SPX251219P05562500")[3] == 5562.5


def test_monthlies_are_third_fridays_moved_before_a_holiday(market):
    assert market.monthly_expiration(2025, 12) == date(2025, 12, 19)
    assert market.monthly_expiration(2025, 4) == date(2025, 4, 17)  # Good Friday: the Thursday
    roots = market.expirations(date(2025, 4, 1))
    assert ("SPX", date(2025, 4, 17)) in roots and ("SPX", date(2025, 4, 18)) not in roots
    assert ("SPXW", date(2025, 4, 17)) in roots


def test_spxw_dailies_skip_closures_and_fridays_run_further_out(market):
    listed = market.expirations(date(2025, 1, 6))
    spxw = [e for root, e in listed if root == "SPXW"]
    assert date(2025, 1, 9) not in spxw  # national day of mourning
    assert [date(2025, 1, d) for d in (6, 7, 8, 10)] == spxw[:4]
    later = [e for e in spxw if (e - date(2025, 1, 6)).days > market.spec.daily_horizon_days]
    assert later and all(e.weekday() == 4 for e in later)


def test_seed_chain_watches_two_or_three_monthlies_and_100_to_200_puts(market):
    for day in (date(2025, 6, 2), date(2025, 11, 28), date(2025, 12, 3), date(2026, 1, 15), date(2026, 3, 2)):
        watched = market.watched_puts(day)
        assert 2 <= len({c.expiration for c in watched}) <= 3
        assert 90 <= len(watched) <= 210, (day, len(watched))
        listed = market.contracts(day)
        assert any(c.root == "SPXW" for c in listed) and any(c.contract_type == "call" for c in listed)


def test_full_chain_has_about_ten_thousand_puts_with_5_point_strikes_near_the_money():
    full = SimulatedMarket(size="full")
    puts = [c for c in full.contracts(date(2025, 12, 3)) if c.is_put]
    assert 9000 <= len(puts) <= 12000
    near = [k for k in full.strikes if abs(k / full.level - 1) <= 0.05]
    assert all(b - a == 5 for a, b in zip(near, near[1:]))
    assert min(full.strikes) / full.level == pytest.approx(0.40, abs=0.01)
    steps = {b - a for a, b in zip(full.strikes, full.strikes[1:])}
    assert {5, 10, 25, 50} <= steps


# --- Pagination and filters --------------------------------------------------------------------------

@pytest.mark.parametrize("limit, params", [
    (1, {"contract_type": "put", "expiration_date": "2025-12-19"}),
    (7, {"expiration_date.lte": "2025-12-05"}),
    (250, {}),
])
def test_pagination_returns_every_contract_exactly_once(fake_api, market, limit, params):
    fake_api.set_now(WEDNESDAY_2PM)
    results, pages = fetch_all(fake_api, dict(params, limit=limit))
    expected = [r for r in market.snapshot(WEDNESDAY_2PM) if
                (not params.get("contract_type") or r["details"]["contract_type"] == params["contract_type"])
                and r["details"]["expiration_date"] == params.get("expiration_date", r["details"]["expiration_date"])
                and r["details"]["expiration_date"] <= params.get("expiration_date.lte", "9999")]
    assert len(tickers(results)) == len(set(tickers(results)))
    assert tickers(results) == tickers(expected)
    assert pages == -(-len(expected) // limit)
    snapshot_requests = [r for r in fake_api.requests if r.path == "/v3/snapshot/options/I:SPX"]
    assert len(snapshot_requests) == pages and [r.page for r in snapshot_requests] == list(range(1, pages + 1))


def test_next_url_is_absolute_with_only_an_opaque_cursor_and_no_key(fake_api):
    response = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX",
                            params={"contract_type": "put", "limit": 5, "apiKey": FAKE_API_KEY})
    next_url = response.json()["next_url"]
    parts = urlsplit(next_url)
    assert next_url.startswith(fake_api.base_url + "/v3/snapshot/options/I:SPX?")
    assert list(parse_qs(parts.query)) == ["cursor"]
    assert FAKE_API_KEY not in next_url
    assert decode_cursor(parse_qs(parts.query)["cursor"][0]) == {"contract_type": "put", "limit": "5", "offset": "5"}
    # the cursor carries the filters: a page asked for with it needs nothing else
    follow = requests.get(next_url, headers=AUTH).json()
    assert all(r["details"]["contract_type"] == "put" for r in follow["results"]) and len(follow["results"]) == 5


def test_the_percent_encoded_index_path_is_the_same_chain(fake_api):
    plain = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH)
    encoded = requests.get(fake_api.base_url + "/v3/snapshot/options/I%3ASPX", headers=AUTH)
    assert plain.json()["results"] == encoded.json()["results"]
    assert len(plain.json()["results"]) == 10  # the default limit


QUERIES = [
    {"contract_type": "put", "strike_price.gte": "5000", "strike_price.lt": "5500", "sort": "strike_price"},
    {"contract_type": "call", "expiration_date.gt": "2025-12-19", "expiration_date.lte": "2026-02-20",
     "sort": "expiration_date", "order": "desc"},
    {"strike_price": "5800", "order": "desc"},
    {"expiration_date": "2026-01-16", "contract_type": "put", "strike_price.lte": "4000"},
    {"sort": "strike_price", "order": "desc", "expiration_date.gte": "2026-01-01"},
    {"contract_type": "put", "strike_price.gt": "99999"},
]


@pytest.mark.parametrize("query", QUERIES)
def test_filters_agree_with_a_brute_force_filter_over_the_whole_chain(fake_api, market, query):
    fake_api.set_now(WEDNESDAY_2PM)
    results, _ = fetch_all(fake_api, dict(query, limit=250))
    chain = market.snapshot(WEDNESDAY_2PM)
    ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
           "lte": lambda a, b: a <= b, "eq": lambda a, b: a == b}

    def keep(result):
        details = result["details"]
        for key, value in query.items():
            field, _, op = key.partition(".")
            if field == "contract_type" and details["contract_type"] != value:
                return False
            if field == "strike_price" and not ops[op or "eq"](details["strike_price"], float(value)):
                return False
            if field == "expiration_date" and not ops[op or "eq"](details["expiration_date"], value):
                return False
        return True

    sort = query.get("sort", "ticker")
    key = {"ticker": lambda r: r["details"]["ticker"],
           "strike_price": lambda r: (r["details"]["strike_price"], r["details"]["ticker"]),
           "expiration_date": lambda r: (r["details"]["expiration_date"], r["details"]["ticker"])}[sort]
    expected = sorted(filter(keep, chain), key=key, reverse=query.get("order") == "desc")
    assert tickers(results) == tickers(expected)
    assert results == expected


@pytest.mark.parametrize("params", [
    {"limit": "251"}, {"limit": "0"}, {"contract_type": "straddle"}, {"strike_price.gte": "abc"},
    {"expiration_date": "12/19/2025"}, {"sort": "volume"}, {"cursor": "!!!"},
])
def test_bad_parameters_are_400_errors(fake_api, params):
    response = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", params=params, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["status"] == "ERROR" and response.json()["error"]


def test_an_empty_result_omits_results_and_next_url(fake_api):
    body = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX",
                        params={"strike_price": "1"}, headers=AUTH).json()
    assert body["status"] == "OK" and "results" not in body and "next_url" not in body


# --- Determinism -------------------------------------------------------------------------------------

def _first_pages(seed):
    with FakeApiServer(SimulatedMarket(seed=seed), now=WEDNESDAY_2PM) as server:
        bodies = []
        for params in ({"limit": 250}, {"contract_type": "put", "limit": 50, "sort": "strike_price"}):
            content = requests.get(server.base_url + "/v3/snapshot/options/I:SPX", params=params, headers=AUTH).content
            bodies.append(content.replace(server.base_url.encode(), b"BASE"))
        return bodies


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    assert _first_pages(1) == _first_pages(1)
    assert _first_pages(1) != _first_pages(2)


def test_the_same_instant_in_another_zone_gives_the_same_bytes(fake_api):
    fake_api.set_now(WEDNESDAY_2PM)
    eastern = _get(fake_api, {"limit": 20}).content
    fake_api.set_now("2025-12-03T19:00:00Z")
    assert _get(fake_api, {"limit": 20}).content == eastern


# --- The clock: delay, previous session, expiries ---------------------------------------------------------

def _volumes(server, params):
    results, _ = fetch_all(server, dict(params, limit=250))
    return {r["details"]["ticker"]: r["day"]["volume"] for r in results}


def test_snapshot_volumes_are_15_minutes_late(fake_api, market):
    day = date(2025, 12, 3)
    fake_api.set_now(at(day, 11, 0))
    shown = _volumes(fake_api, {"contract_type": "put"})
    assert shown and any(shown.values())
    for ticker, volume in shown.items():
        assert volume == market.cumulative_volume(ticker, day, at(day, 10, 45))


@pytest.mark.parametrize("now, previous", [
    (datetime(2025, 12, 3, 9, 40, tzinfo=ET), date(2025, 12, 2)),   # before the open + delay
    (datetime(2025, 12, 3, 3, 0, tzinfo=ET), date(2025, 12, 2)),    # early morning
    (datetime(2025, 12, 6, 12, 0, tzinfo=ET), date(2025, 12, 5)),   # Saturday
    (datetime(2025, 1, 9, 12, 0, tzinfo=ET), date(2025, 1, 8)),     # special closure
])
def test_outside_the_delayed_session_the_day_bar_is_the_previous_sessions_final(fake_api, market, now, previous):
    fake_api.set_now(now)
    results, _ = fetch_all(fake_api, {"contract_type": "put", "limit": 250})
    assert results
    midnight = int(datetime.combine(previous, time(0), tzinfo=ET).timestamp()) * 10 ** 9
    for result in results:
        ticker = result["details"]["ticker"]
        assert result["day"]["volume"] == market.final_volume(ticker, previous)
        assert result["day"]["last_updated"] == midnight


def test_the_first_snapshot_at_open_plus_15_minutes_shows_todays_session(fake_api, market):
    day = date(2025, 12, 3)
    fake_api.set_now(at(day, 9, 45))
    results, _ = fetch_all(fake_api, {"contract_type": "put", "limit": 250})
    assert all(r["day"]["volume"] == 0 for r in results)  # as of 09:30 exactly
    assert results[0]["day"]["last_updated"] == int(at(day, 0).timestamp()) * 10 ** 9


def test_expired_contracts_drop_out_after_their_expiration_session(fake_api):
    friday = date(2025, 12, 5)
    fake_api.set_now(at(friday, 20, 0))
    evening = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH,
                           params={"expiration_date": "2025-12-05", "limit": 250}).json()
    assert len(evening["results"]) > 0
    fake_api.set_now(at(date(2025, 12, 6), 10, 0))
    saturday = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH,
                            params={"expiration_date": "2025-12-05"}).json()
    assert "results" not in saturday


def test_holiday_has_no_session_and_no_expiry(market):
    assert market.calendar.session(date(2025, 1, 9)) is None
    assert all(c.expiration != date(2025, 1, 9) for c in market.contracts(date(2025, 1, 6)))
    contract = market.watched_puts(date(2025, 1, 6))[0]
    assert market.final_volume(contract.ticker, date(2025, 1, 9)) == 0


def test_half_day_closes_at_13_15(fake_api, market):
    day = date(2025, 11, 28)
    session = market.calendar.session(day)
    assert session.half_day and session.close == at(day, 13, 15)
    traded = [c for c in market.contracts(day) if market.final_volume(c, day) > 20]
    assert traded
    for contract in traded[:50]:
        final = market.final_volume(contract, day)
        assert market.cumulative_volume(contract, day, at(day, 13, 0)) < final
        assert market.cumulative_volume(contract, day, at(day, 13, 15)) == final
        assert market.cumulative_volume(contract, day, at(day, 16, 0)) == final
    assert market.spot(at(day, 13, 15)) == market.spot(at(day, 15, 0))
    fake_api.set_now(at(day, 14, 0))
    shown = _volumes(fake_api, {"contract_type": "put"})
    assert all(shown[t] == market.final_volume(t, day) for t in shown)


# --- Volumes ----------------------------------------------------------------------------------------

def test_intraday_volume_is_u_shaped_and_integer(market):
    day = date(2025, 12, 3)
    busiest = max(market.contracts(day), key=lambda c: market.final_volume(c, day))
    first_hour = market.cumulative_volume(busiest, day, at(day, 10, 30))
    midday = market.cumulative_volume(busiest, day, at(day, 13, 30)) - market.cumulative_volume(busiest, day, at(day, 12, 30))
    last_hour = market.final_volume(busiest, day) - market.cumulative_volume(busiest, day, at(day, 15, 15))
    assert first_hour > 2 * midday and last_hour > 2 * midday
    assert isinstance(first_hour, int)


def test_normal_daily_volume_stays_within_the_stated_band(market):
    assert MAX_NORMAL_DAILY_VOLUME < DELTA_THRESHOLD
    sessions = market.calendar.sessions_between(date(2025, 12, 8), date(2025, 12, 19))
    for contract in market.contracts(date(2025, 12, 8))[::7]:
        for session in sessions:
            volume = market.normal_daily_volume(contract, session.trade_date)
            if session.trade_date > contract.expiration or (
                    contract.root == "SPX" and session.trade_date == contract.expiration):
                assert volume == 0
                continue
            base = contract.base_volume
            if session.trade_date == contract.first_session:  # a listing day trades half
                base = base / 2.0
            assert base * (1 - DAILY_VOLUME_BAND) - 1 <= volume <= base * (1 + DAILY_VOLUME_BAND) + 0.5
            assert volume <= MAX_NORMAL_DAILY_VOLUME


@pytest.mark.parametrize("first, last", [
    (date(2025, 11, 17), date(2025, 12, 5)),  # Thanksgiving closure and the half day after it
    (date(2025, 1, 6), date(2025, 1, 17)),    # the 2025-01-09 special closure
])
def test_normal_day_over_day_variation_never_trips_the_default_flags(market, first, last):
    slots = [time(9, 45)] + [time(h, m) for h in range(10, 16) for m in (15, 45)] + [time(13, 15), time(16, 15)]
    checked = 0
    for session in market.calendar.iter_sessions(first, last):
        day = session.trade_date
        previous = market.calendar.previous_session(day).trade_date
        for contract in market.contracts(day):
            final = market.final_volume(contract, day)
            assert final <= MAX_NORMAL_DAILY_VOLUME
            if final <= DORMANCY_THRESHOLD:
                continue  # V <= 100 all day: no default rule can fire (V - B <= 100 < 200)
            for slot in slots:
                volume = market.cumulative_volume(contract, day, slot)
                baseline = market.cumulative_volume(contract, previous, slot)
                assert not default_rules_fire(volume, baseline), (contract, day, slot, volume, baseline)
                checked += 1
    assert checked > 1000


def test_a_planted_event_adds_exactly_its_volume_in_its_window(market):
    day = date(2025, 12, 3)
    contract = [c for c in market.watched_puts(day) if not c.dormant][5]
    before = {t: market.cumulative_volume(contract, day, t) for t in ("09:59", "10:00", "10:30", "11:00", "16:15")}
    market.plant(PlantedEvent(contract.ticker, day, "10:00", "11:00", extra_volume=3001, price=12.5))
    after = {t: market.cumulative_volume(contract, day, t) for t in before}
    assert after["09:59"] - before["09:59"] == 0
    assert after["10:00"] - before["10:00"] == 0
    assert after["10:30"] - before["10:30"] == 1500
    assert after["11:00"] - before["11:00"] == 3001
    assert after["16:15"] - before["16:15"] == 3001
    assert market.final_volume(contract, day) == before["16:15"] + 3001
    assert market.final_volume(contract, date(2025, 12, 4)) == market.normal_daily_volume(contract, date(2025, 12, 4))
    # the burst opened positions: the next session's open interest carries them
    plain = SimulatedMarket(seed=market.seed)
    assert market.open_interest(contract, date(2025, 12, 4)) == plain.open_interest(contract.ticker, date(2025, 12, 4)) + 3001
    assert market.open_interest(contract, day) == plain.open_interest(contract.ticker, day)


def test_a_planted_event_lifts_vwap_toward_its_price(market):
    day = date(2025, 12, 3)
    contract = [c for c in market.watched_puts(day) if c.base_volume > 50][0]
    session = market.calendar.session(day)
    plain = market.day_bar(contract, session, session.close)
    price = round(plain["vwap"] * 3, 2)
    market.plant(PlantedEvent(contract.ticker, day, "10:00", "11:00", 500, price))
    lifted = market.day_bar(contract, session, session.close)
    expected = (plain["vwap"] * plain["volume"] + 500 * price) / (plain["volume"] + 500)
    assert lifted["vwap"] == pytest.approx(expected, rel=1e-3)
    assert lifted["high"] == max(plain["high"], price)


def test_planted_events_show_in_the_snapshot_after_the_delay(fake_api, market):
    day = date(2025, 12, 3)
    contract = [c for c in market.watched_puts(day) if not c.dormant][3]
    market.plant(PlantedEvent(contract.ticker, day, "10:00", "11:00", 1200))
    fake_api.set_now(at(day, 11, 0))
    shown = _volumes(fake_api, {"contract_type": "put", "expiration_date": contract.expiration.isoformat()})
    assert shown[contract.ticker] == market.cumulative_volume(contract, day, at(day, 10, 45))
    fake_api.set_now(at(day, 11, 15))
    shown = _volumes(fake_api, {"contract_type": "put", "expiration_date": contract.expiration.isoformat()})
    assert shown[contract.ticker] == market.normal_cumulative_volume(contract, day, at(day, 11, 0)) + 1200


def test_events_off_the_calendar_or_the_chain_are_refused(market):
    contract = market.watched_puts(date(2025, 12, 3))[0]
    with pytest.raises(ValueError):
        market.plant(PlantedEvent(contract.ticker, date(2025, 12, 6)))  # Saturday
    with pytest.raises(ValueError):
        market.plant(PlantedEvent(contract.ticker, date(2025, 11, 28), "13:00", "14:00"))  # after a half day's close
    with pytest.raises(KeyError):
        market.plant(PlantedEvent("O:SPX251219P05555500", date(2025, 12, 3)))


def test_demo_events_plant_a_hedging_burst_and_wake_a_dormant_put_that_the_defaults_flag(market):
    day = date(2025, 12, 3)
    events = demo_events(market, day)
    market.plant(*events)
    watched = {c.ticker: c for c in market.watched_puts(day)}
    assert len(events) == 4 and all(e.ticker in watched for e in events)
    assert watched[events[-1].ticker].dormant
    previous = date(2025, 12, 2)
    for event in events:
        volume = market.cumulative_volume(event.ticker, day, event.end)
        baseline = market.cumulative_volume(event.ticker, previous, event.end)
        assert default_rules_fire(volume, baseline)
        assert volume * market.event_price(event) * 100 >= 100_000


def test_open_interest_is_constant_intraday(fake_api, market):
    day = date(2025, 12, 3)
    ois = []
    for hour in (10, 12, 16):
        fake_api.set_now(at(day, hour, 0))
        results, _ = fetch_all(fake_api, {"contract_type": "put", "expiration_date": "2025-12-19", "limit": 250})
        ois.append({r["details"]["ticker"]: r["open_interest"] for r in results})
    assert ois[0] == ois[1] == ois[2]


def test_spot_moves_smoothly_around_the_level(market):
    day = date(2025, 12, 3)
    path = [market.spot(at(day, 9, 30) + timedelta(minutes=m)) for m in range(0, 406, 5)]
    assert all(abs(b - a) / a < 0.003 for a, b in zip(path, path[1:]))
    closes = [market.close_level(s.trade_date) for s in market.calendar.iter_sessions(date(2025, 1, 1), date(2025, 12, 31))]
    assert all(0.94 * market.level < c < 1.06 * market.level for c in closes)
    assert market.spot(at(date(2025, 12, 6), 12)) == market.close_level(date(2025, 12, 5))


# --- Aggregates and contract reference ---------------------------------------------------------------------

def test_daily_bars_cover_closed_sessions_only(fake_api, market):
    contract = max(market.watched_puts(date(2025, 12, 1)), key=lambda c: c.base_volume)
    fake_api.set_now(at(date(2025, 12, 3), 14, 0))
    url = "%s/v2/aggs/ticker/%s/range/1/day/2025-11-24/2025-12-05" % (fake_api.base_url, contract.ticker)
    body = requests.get(url, headers=AUTH).json()
    assert set(body) == {"ticker", "status", "adjusted", "queryCount", "resultsCount", "request_id", "results"}
    days = [datetime.fromtimestamp(bar["t"] / 1000, ET).date() for bar in body["results"]]
    assert days == [date(2025, 11, d) for d in (24, 25, 26, 28)] + [date(2025, 12, 1), date(2025, 12, 2)]
    for bar, day in zip(body["results"], days):
        assert set(bar) == {"o", "h", "l", "c", "v", "vw", "n", "t"}
        assert bar["v"] == market.final_volume(contract, day)
        assert datetime.fromtimestamp(bar["t"] / 1000, ET).time() == time(0, 0)
    assert body["resultsCount"] == len(days) and body["ticker"] == contract.ticker
    fake_api.set_now(at(date(2025, 12, 3), 16, 30))  # close + delay: today's bar is final
    assert requests.get(url, headers=AUTH).json()["resultsCount"] == len(days) + 1
    descending = requests.get(url, params={"sort": "desc"}, headers=AUTH).json()["results"]
    assert descending[0]["t"] > descending[-1]["t"]


def test_daily_bars_of_an_unknown_contract_are_404(fake_api):
    for ticker in ("O:SPX251219P05555500", "O:SPX251218P05000000", "NOPE"):
        response = requests.get("%s/v2/aggs/ticker/%s/range/1/day/2025-12-01/2025-12-05" % (fake_api.base_url, ticker),
                                headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"] == "Options contract not found." and response.json()["status"] == "ERROR"


def test_daily_bars_of_an_expired_contract_are_still_served(fake_api, market):
    contract = max((c for c in market.contracts(date(2025, 11, 10)) if c.expiration == date(2025, 11, 21)),
                   key=lambda c: c.base_volume)
    fake_api.set_now(at(date(2025, 12, 3), 12))
    body = requests.get("%s/v2/aggs/ticker/%s/range/1/day/2025-11-17/2025-11-30" % (fake_api.base_url, contract.ticker),
                        headers=AUTH).json()
    assert body["resultsCount"] >= 4


def test_contract_reference_lists_the_chain_with_pagination(fake_api, market):
    fake_api.set_now(WEDNESDAY_2PM)
    url = fake_api.base_url + "/v3/reference/options/contracts"
    params = {"underlying_ticker": "SPX", "contract_type": "put", "limit": 1000, "as_of": "2025-12-03"}
    response = requests.get(url, params=params, headers=AUTH).json()
    found = list(response["results"])
    while "next_url" in response:
        response = requests.get(response["next_url"], headers=AUTH).json()
        found.extend(response["results"])
    assert [r["ticker"] for r in found] == [c.ticker for c in market.contracts(date(2025, 12, 3)) if c.is_put]
    assert set(found[0]) == {"ticker", "underlying_ticker", "contract_type", "exercise_style", "expiration_date",
                             "strike_price", "shares_per_contract", "primary_exchange", "cfi"}
    assert "results" not in requests.get(url, params={"underlying_ticker": "I:SPX"}, headers=AUTH).json()
    assert requests.get(url, params={"limit": 1001}, headers=AUTH).status_code == 400
    expired = requests.get(url, params={"expired": "true", "as_of": "2025-12-03", "limit": 1000}, headers=AUTH).json()
    assert expired["results"] and all(r["expiration_date"] < "2025-12-03" for r in expired["results"])


# --- Switches and control ---------------------------------------------------------------------------------

def test_switches_drop_greeks_quotes_trades_and_send_underlying_price(fake_api):
    fake_api.set_switches(greeks=False, last_quote=False, last_trade=False, underlying_field="price")
    result = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH).json()["results"][0]
    assert not {"greeks", "last_quote", "last_trade"} & set(result)
    assert "price" in result["underlying_asset"] and "value" not in result["underlying_asset"]
    fake_api.set_switches(delay_minutes=0, status="DELAYED")
    body = requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH).json()
    assert body["status"] == "DELAYED" and body["results"][0]["underlying_asset"]["timeframe"] == "REAL-TIME"


def test_control_endpoints_move_the_clock_and_arm_faults_without_a_key(fake_api):
    response = requests.post(fake_api.base_url + "/_sim/now", json={"now": "2025-12-05T10:00:00-05:00"})
    assert response.status_code == 200 and fake_api.now == at(date(2025, 12, 5), 10)
    assert requests.post(fake_api.base_url + "/_sim/now", json={"now": "2025-12-05T10:00:00"}).status_code == 400
    assert requests.post(fake_api.base_url + "/_sim/fault", json={"kind": "503"}).status_code == 200
    assert requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH).status_code == 503
    assert requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH).status_code == 200
    planted = requests.post(fake_api.base_url + "/_sim/events", json={"demo": "2025-12-05"}).json()["planted"]
    assert len(planted) == 4 and len(fake_api.market.events) == 4
    log = requests.get(fake_api.base_url + "/_sim/requests").json()["requests"]
    assert [r["status"] for r in log] == [503, 200]


# --- Auth and gzip ----------------------------------------------------------------------------------------

def test_missing_and_unknown_keys_are_401s(fake_api):
    url = fake_api.base_url + "/v3/snapshot/options/I:SPX"
    missing = requests.get(url)
    assert missing.status_code == 401
    assert missing.json()["error"] == "API Key was not provided" and missing.json()["status"] == "ERROR"
    assert missing.json()["request_id"]
    unknown = requests.get(url, headers={"Authorization": "Bearer wrong"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "Unknown API Key"
    assert requests.get(url, params={"apiKey": "wrong"}).json()["error"] == "Unknown API Key"
    assert requests.get(url, params={"apiKey": FAKE_API_KEY}).status_code == 200
    assert requests.get(url, headers=AUTH).status_code == 200
    for path in ("/v2/aggs/ticker/O:SPX251219P05000000/range/1/day/2025-12-01/2025-12-02",
                 "/v3/reference/options/contracts"):
        assert requests.get(fake_api.base_url + path).status_code == 401


def test_the_request_log_never_keeps_the_key(fake_api):
    requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", params={"apiKey": FAKE_API_KEY, "limit": 3})
    requests.get(fake_api.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH)
    assert len(fake_api.requests) == 2
    assert fake_api.requests[0].query == {"limit": "3"}
    assert FAKE_API_KEY not in repr(fake_api.requests)


def _raw_get(url, headers):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request) as response:
        return response.headers, response.read()


def test_gzip_is_honoured_when_accepted(fake_api):
    url = fake_api.base_url + "/v3/snapshot/options/I:SPX?limit=5"
    headers, body = _raw_get(url, dict(AUTH, **{"Accept-Encoding": "gzip"}))
    assert headers["Content-Encoding"] == "gzip"
    zipped = json.loads(gzip.decompress(body))
    headers, body = _raw_get(url, dict(AUTH, **{"Accept-Encoding": "identity"}))
    assert headers.get("Content-Encoding") is None
    assert json.loads(body) == zipped
    assert [r.gzip for r in fake_api.requests] == [True, False]


# --- Faults -----------------------------------------------------------------------------------------------

def _get(server, params=None, **kwargs):
    return requests.get(server.base_url + "/v3/snapshot/options/I:SPX", params=params or {"limit": 5},
                        headers=AUTH, **kwargs)


def test_rate_limit_fault_answers_429_with_retry_after_then_recovers(fake_api):
    fault = fake_api.inject_fault("429", path_contains="/v3/snapshot", on_request=2, retry_after=2)
    assert _get(fake_api).status_code == 200
    limited = _get(fake_api)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["status"] == "ERROR" and "exceeded" in limited.json()["error"]
    assert _get(fake_api).status_code == 200
    assert fault.fired == 1
    assert [r.status for r in fake_api.requests] == [200, 429, 200]


def test_rate_limit_fault_can_have_an_empty_body(fake_api):
    fake_api.inject_fault("429_empty", retry_after=1)
    response = _get(fake_api)
    assert response.status_code == 429 and response.content == b"" and response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_error_faults(fake_api, kind):
    fake_api.inject_fault(kind, times=2)
    assert [_get(fake_api).status_code for _ in range(3)] == [int(kind), int(kind), 200]


def test_not_entitled_fault_is_403_with_message(fake_api):
    fake_api.inject_fault("403", path_contains="/v2/aggs")
    assert _get(fake_api).status_code == 200  # another path
    response = requests.get(fake_api.base_url + "/v2/aggs/ticker/O:SPX251219P05000000/range/1/day/2025-12-01/2025-12-02",
                            headers=AUTH)
    assert response.status_code == 403
    assert response.json()["status"] == "NOT_AUTHORIZED"
    assert response.json()["message"].startswith("You are not entitled to this data.")


def test_slow_fault_delays_the_answer(fake_api):
    fake_api.inject_fault("slow", seconds=1.2)
    started = time_module.monotonic()
    with pytest.raises(requests.Timeout):
        _get(fake_api, timeout=0.3)
    assert time_module.monotonic() - started < 1.0
    fake_api.inject_fault("slow", seconds=0.3)
    started = time_module.monotonic()
    assert _get(fake_api).status_code == 200
    assert time_module.monotonic() - started >= 0.3


def test_malformed_body_faults(fake_api):
    fake_api.inject_fault("invalid_json", on_request=1)
    fake_api.inject_fault("results_not_list", on_request=2)
    fake_api.inject_fault("missing_details", on_request=3)
    fake_api.inject_fault("empty_body", on_request=4)
    broken = _get(fake_api)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert isinstance(_get(fake_api).json()["results"], dict)
    results = _get(fake_api).json()["results"]
    assert "details" not in results[0] and "details" in results[1]
    assert _get(fake_api).content == b""
    assert isinstance(_get(fake_api).json()["results"], list)


def test_disconnect_fault_closes_the_connection(fake_api):
    fake_api.inject_fault("disconnect")
    with pytest.raises(requests.ConnectionError):
        _get(fake_api)
    assert _get(fake_api).status_code == 200


def test_a_fault_can_hit_one_page_of_a_pagination(fake_api):
    fake_api.set_now(WEDNESDAY_2PM)
    fake_api.inject_fault("502", on_page=3)
    url = fake_api.base_url + "/v3/snapshot/options/I:SPX"
    response = requests.get(url, params={"limit": 20}, headers=AUTH)
    statuses = [response.status_code]
    for _ in range(3):
        response = requests.get(response.json()["next_url"], headers=AUTH)
        statuses.append(response.status_code)
        if response.status_code != 200:
            retry = requests.get(response.request.url, headers=AUTH)  # the same page again
            statuses.append(retry.status_code)
            response = retry
    assert statuses == [200, 200, 502, 200, 200]
    assert [r.page for r in fake_api.requests] == [1, 2, 3, 3, 4]


def test_every_fault_kind_is_known_and_unknown_ones_are_refused(fake_api):
    assert {"429", "429_empty", "500", "502", "503", "403", "slow", "invalid_json", "results_not_list",
            "missing_details", "disconnect"} <= set(FAULT_KINDS)
    with pytest.raises(ValueError):
        fake_api.inject_fault("teapot")


def test_the_server_stops_and_frees_its_port(market):
    server = FakeApiServer(market).start()
    port = server.port
    assert requests.get(server.base_url + "/v3/snapshot/options/I:SPX", headers=AUTH).status_code == 200
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


# --- The official client, when installed --------------------------------------------------------------------

def test_the_official_massive_client_parses_the_pages(fake_api, market):
    massive = pytest.importorskip("massive")
    fake_api.set_now(WEDNESDAY_2PM)
    client = massive.RESTClient(api_key=FAKE_API_KEY, base=fake_api.base_url, retries=0)
    snapshots = list(client.list_snapshot_options_chain(
        "I:SPX", params={"contract_type": "put", "expiration_date": "2025-12-19", "limit": 50}))
    expected = [r for r in market.snapshot(WEDNESDAY_2PM)
                if r["details"]["contract_type"] == "put" and r["details"]["expiration_date"] == "2025-12-19"]
    assert [s.details.ticker for s in snapshots] == tickers(expected)
    assert [s.day.volume for s in snapshots] == [r["day"]["volume"] for r in expected]
    assert snapshots[0].underlying_asset.value == expected[0]["underlying_asset"]["value"]
    assert snapshots[0].greeks.delta == expected[0]["greeks"]["delta"]
    pages = [r for r in fake_api.requests if r.path == "/v3/snapshot/options/I:SPX"]
    assert len(pages) == -(-len(expected) // 50)
    contract = max((c for c in market.contracts(date(2025, 12, 1)) if c.is_put), key=lambda c: c.base_volume)
    bars = client.get_aggs(contract.ticker, 1, "day", "2025-12-01", "2025-12-02")
    assert [b.volume for b in bars] == [market.final_volume(contract, date(2025, 12, d)) for d in (1, 2)]

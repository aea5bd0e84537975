"""The poll through the real tick, against the simulated market over HTTP."""
import logging
import os
import sqlite3
from datetime import date, timedelta

import pytest

from spxlib import models
from spxlib.marketdata import MarketDataClient
from spxlib.poll import poll_job
from spxlib.scheduler import Action
from spxlib.simulator.market import SimulatedMarket, demo_events
from spxlib.simulator.server import FakeApiServer
from spxlib.tick import JobContext

from tests.pipeline import et, monitor_config, tick_at, walk

SECRET = "sim-key-4f9c2e7a1b"


def rows(config, sql):
    with sqlite3.connect(config.db_path) as conn:
        return conn.execute(sql).fetchall()


def run_log(config):
    return rows(config, "SELECT job, trade_date, status, attempts, detail FROM run_log ORDER BY id")


def test_poll_stores_exactly_the_watched_otm_spx_puts(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    result = tick_at(et("2025-12-04 09:46"), config, fake_api)
    assert result.exit_code == 0
    stored = rows(config, "SELECT ticker, root, strike, underlying_price, expiration_date, volume FROM "
                          "intraday_snapshots")
    assert stored, "the poll stored nothing"
    spot = stored[0][3]
    expected = {c.ticker for c in market.watched_puts(date(2025, 12, 4), spot=spot)}
    assert {r[0] for r in stored} == expected
    for ticker, root, strike, underlying, expiration, volume in stored:
        assert root == "SPX" and strike < underlying  # no SPXW, no in-the-money put
        assert 0.50 <= strike / underlying <= 0.99
        assert 3 <= (date.fromisoformat(expiration) - date(2025, 12, 4)).days <= 90
        # 15-minute delayed: the volume is the market's as of 09:31
        assert volume == market.cumulative_volume(ticker, date(2025, 12, 4), et("2025-12-04 09:31"))
    assert run_log(config)[0][:3] == ("poll", "2025-12-04", "ok")


def test_spxw_is_watched_only_when_opted_in(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api, EXPIRATION_ROOTS="SPX,SPXW")
    tick_at(et("2025-12-04 09:46"), config, fake_api)
    roots = dict(rows(config, "SELECT root, COUNT(*) FROM intraday_snapshots GROUP BY root"))
    assert roots.get("SPXW", 0) > roots.get("SPX", 0) > 0


def test_many_small_pages_store_the_same_rows_as_one_large_page(tmp_path, fake_api, config, calendar):
    fake_api.set_now(et("2025-12-04 09:46"))
    context = JobContext(now=et("2025-12-04 09:46"), config=monitor_config(tmp_path, fake_api), calendar=calendar,
                         environ={})
    action = Action("poll", date(2025, 12, 4), et("2025-12-04 09:45"), "test")
    results = {}
    for limit in (250, 7):
        path = str(tmp_path / ("limit%d.db" % limit))
        models.open_database(path)
        try:
            outcome = poll_job(action, context, lambda ctx: MarketDataClient(
                ctx.config, api_key="test-key", page_limit=limit))
            assert outcome.status == "ok"
            results[limit] = sorted(models.db.connection().execute(
                "SELECT ticker, volume FROM intraday_snapshots").fetchall())
        finally:
            models.close_database()
    pages = [r for r in fake_api.requests if r.path.startswith("/v3/snapshot")]
    assert len(pages) > 50  # the small limit walked many next_url pages
    assert results[7] == results[250] and len(results[7]) > 100


def test_429_then_success_stores_the_poll(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api)
    fault = fake_api.inject_fault("429", path_contains="/v3/snapshot", on_request=1, retry_after=0)
    assert tick_at(et("2025-12-04 09:46"), config, fake_api).exit_code == 0
    assert fault.fired == 1
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] > 100


def test_persistent_500_records_failed_stores_nothing_and_next_tick_retries(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api)
    fake_api.inject_fault("500", path_contains="/v3/snapshot", on_request=1, times=None)
    assert tick_at(et("2025-12-04 09:46"), config, fake_api).exit_code == 1
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] == 0
    job, day, status, attempts, detail = run_log(config)[0]
    assert (status, attempts) == ("failed", 1) and "HTTP 500" in detail
    fake_api.clear_faults()
    assert tick_at(et("2025-12-04 09:51"), config, fake_api).exit_code == 0
    assert run_log(config)[0][2:4] == ("ok", 2)
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] > 100


def test_malformed_later_page_leaves_nothing_behind(tmp_path, fake_api):
    """Pages 1 and 2 arrived and parsed; page 3 is broken: nothing of the poll is stored."""
    # with SPXW watched too the chain is one query of several pages of 250
    config = monitor_config(tmp_path, fake_api, EXPIRATION_ROOTS="SPX,SPXW")
    fake_api.inject_fault("invalid_json", path_contains="/v3/snapshot", on_page=3, on_request=None)
    assert tick_at(et("2025-12-04 09:46"), config, fake_api).exit_code == 1
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] == 0
    assert rows(config, "SELECT COUNT(*) FROM alerts")[0][0] == 0
    detail = run_log(config)[0][4]
    assert "Malformed" in detail and "page 3" in detail


@pytest.mark.parametrize("setup, expected", [
    (lambda server: None, "API key rejected"),
    (lambda server: server.inject_fault("403", path_contains="/v3/snapshot"), "not entitled"),
])
def test_401_and_403_are_recorded_with_their_meaning_and_not_retried(tmp_path, fake_api, setup, expected):
    config = monitor_config(tmp_path, fake_api)
    setup(fake_api)
    key = "wrong-key" if expected == "API key rejected" else "test-key"
    assert tick_at(et("2025-12-04 09:46"), config, fake_api, key=key).exit_code == 1
    assert expected in run_log(config)[0][4]
    assert len(fake_api.requests) == 1


def test_missing_key_fails_the_poll_before_any_request(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api)
    fake_api.set_now(et("2025-12-04 09:46"))
    from spxlib.tick import run_tick
    result = run_tick(et("2025-12-04 09:46"), config, environ={})
    assert result.exit_code == 1
    assert "MASSIVE_API_KEY" in run_log(config)[0][4]
    assert fake_api.requests == []


def test_missing_greeks_quotes_and_trades_still_poll(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api)
    fake_api.set_switches(greeks=False, last_quote=False, last_trade=False, underlying_field="price")
    assert tick_at(et("2025-12-04 09:46"), config, fake_api).exit_code == 0
    delta, midpoint, last_price, spot = rows(
        config, "SELECT MAX(delta), MAX(midpoint), MAX(last_price), MIN(underlying_price) FROM intraday_snapshots")[0]
    assert (delta, midpoint, last_price) == (None, None, None)
    assert spot > 1000  # taken from `price` when `value` is absent


def test_the_key_never_reaches_logs_or_the_database(tmp_path, market, caplog):
    with FakeApiServer(market, api_keys=(SECRET,)) as server:
        config = monitor_config(tmp_path, server, LOG_TO_FILE=True, LOG_FILE_PATH=str(tmp_path / "logs" / "s.log"),
                                LOG_LEVEL="DEBUG")
        from spxlib.logsetup import configure_logging
        configure_logging(config, console=False, secrets=[SECRET])
        caplog.set_level(logging.DEBUG)
        tick_at(et("2025-12-04 09:46"), config, server, key=SECRET)
        server.inject_fault("500", path_contains="/v3/snapshot", times=None)
        tick_at(et("2025-12-04 10:16"), config, server, key=SECRET)  # a failure, with its message stored
        logging.getLogger("spx").handlers.clear()
    assert rows(config, "SELECT COUNT(*) FROM run_log WHERE status = 'failed'")[0][0] == 1
    assert SECRET not in caplog.text
    log_text = open(tmp_path / "logs" / "s.log", encoding="utf-8").read()
    assert "[POLL] Found" in log_text and SECRET not in log_text
    for name in os.listdir(os.path.dirname(config.db_path)):
        with open(os.path.join(os.path.dirname(config.db_path), name), "rb") as handle:
            assert SECRET.encode() not in handle.read()


def test_planted_burst_is_flagged_and_quiet_contracts_are_not(tmp_path):
    market = SimulatedMarket(seed=11)
    events = demo_events(market, date(2025, 12, 4))
    market.plant(*events)
    hedges = {e.ticker for e in events if e.extra_volume >= 1000}
    dormant = {e.ticker for e in events} - hedges
    with FakeApiServer(market) as server:
        config = monitor_config(tmp_path, server)
        walk(et("2025-12-03 09:40"), et("2025-12-03 16:35"), config, server, step=timedelta(minutes=30))
        walk(et("2025-12-04 09:45"), et("2025-12-04 16:15"), config, server, step=timedelta(minutes=30))
    alerts = rows(config, "SELECT ticker, flag, baseline_source FROM alerts WHERE trade_date = '2025-12-04'")
    flagged = {}
    for ticker, flag, source in alerts:
        flagged.setdefault(ticker, set()).add(flag)
        assert source == "aligned"
    assert set(flagged) == hedges | dormant
    for ticker in hedges:
        assert "delta" in flagged[ticker] and "dormancy" not in flagged[ticker]
    for ticker in dormant:
        assert flagged[ticker] == {"delta", "dormancy"}
    # the day before, nothing was planted and nothing was flagged
    assert rows(config, "SELECT COUNT(*) FROM alerts WHERE trade_date = '2025-12-03'")[0][0] == 0
    # every contract of the second day had a time-aligned baseline
    sources = dict(rows(config, "SELECT baseline_source, COUNT(*) FROM intraday_snapshots "
                                "WHERE trade_date = '2025-12-04' GROUP BY baseline_source"))
    assert sources.get("aligned", 0) > 0.9 * sum(sources.values())


def test_first_day_has_no_baseline_and_no_flags(tmp_path, fake_api, market):
    market.plant(*demo_events(market, date(2025, 12, 4)))
    config = monitor_config(tmp_path, fake_api)
    tick_at(et("2025-12-04 11:16"), config, fake_api)
    assert rows(config, "SELECT DISTINCT baseline_source FROM intraday_snapshots") == [("none",)]
    assert rows(config, "SELECT COUNT(*) FROM alerts")[0][0] == 0


def test_poll_command_refuses_outside_a_slot_unless_forced(tmp_path, fake_api, run_cli):
    from spxcli import commands
    environ = dict(SPX_API_BASE_URL=fake_api.base_url, MASSIVE_API_KEY="test-key")
    fake_api.set_now(et("2025-12-06 12:00"))
    refused = run_cli(commands.poll, ["--now", "2025-12-06T12:00:00-05:00"], tmp_path / "spx.db", **environ)
    assert refused.exit_code == 2 and "--force" in refused.output
    forced = run_cli(commands.poll, ["--now", "2025-12-06T12:00:00-05:00", "--force"], tmp_path / "spx.db",
                     **environ)
    assert forced.exit_code == 0 and "Poll: ok" in forced.output
    with sqlite3.connect(str(tmp_path / "spx.db")) as conn:
        # a Saturday poll shows Friday's final bars and is filed under Friday's session
        assert conn.execute("SELECT DISTINCT trade_date FROM intraday_snapshots").fetchall() == [("2025-12-05",)]


def test_spx_only_universe_asks_for_each_monthly_expiry_alone(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    tick_at(et("2025-12-04 09:46"), config, fake_api)
    chain_requests = [r for r in fake_api.requests if r.path.startswith("/v3/snapshot")]
    asked = [(r.query.get("expiration_date.gte"), r.query.get("expiration_date.lte")) for r in chain_requests]
    # the third Fridays within 3..90 days of 2025-12-04
    assert asked == [("2025-12-19", "2025-12-19"), ("2026-01-16", "2026-01-16"), ("2026-02-20", "2026-02-20")]
    stored = rows(config, "SELECT DISTINCT expiration_date FROM intraday_snapshots ORDER BY 1")
    assert stored == [("2025-12-19",), ("2026-01-16",), ("2026-02-20",)]

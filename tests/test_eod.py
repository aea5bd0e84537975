"""End of day against the simulated market: snapshot and aggregates, catch-up, reprocessing, crashes."""
import sqlite3
from datetime import date, timedelta

import pytest

from spxcli import commands
from spxlib import eod as eod_module
from spxlib.eod import reprocess

from tests.pipeline import et, monitor_config, tick_at, walk

HALF_HOUR = timedelta(minutes=30)


def rows(config, sql, *args):
    with sqlite3.connect(config.db_path) as conn:
        return conn.execute(sql, args).fetchall()


def history(config, day):
    return rows(config, "SELECT ticker, volume, open_interest, close, vwap, source FROM daily_history "
                        "WHERE trade_date = ? ORDER BY ticker", day)


def eods(config):
    return rows(config, "SELECT trade_date, status FROM run_log WHERE job = 'eod' ORDER BY trade_date")


def polled_session(config, server, day):
    walk(et(day + " 09:45"), et(day + " 16:15"), config, server, step=HALF_HOUR)


def test_eod_after_the_close_takes_final_volumes_from_the_snapshot(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    polled_session(config, fake_api, "2025-12-04")
    tick_at(et("2025-12-04 16:31"), config, fake_api)
    stored = history(config, "2025-12-04")
    seen = {r[0] for r in rows(config, "SELECT DISTINCT ticker FROM intraday_snapshots")}
    assert {r[0] for r in stored} >= seen and len(stored) > 100
    for ticker, volume, _, _, _, source in stored:
        assert source == "snapshot"
        assert volume == market.final_volume(ticker, date(2025, 12, 4))
    assert eods(config) == [("2025-12-04", "ok")]
    # the summary counts the watched contracts; the history also keeps puts just above the band
    spot = market.spot(et("2025-12-04 16:15"))
    moneyness = {r[0]: market.contract(r[0]).strike / spot for r in stored}
    watched = [r for r in stored if r[0] in seen or 0.50 <= moneyness[r[0]] <= 0.99]
    near = [r for r in stored if r not in watched]
    assert near and all(0.99 < moneyness[r[0]] <= 0.99 * 1.03 or 0.50 * 0.97 <= moneyness[r[0]] < 0.50
                        for r in near)
    summary = rows(config, "SELECT SUM(contracts), SUM(volume) FROM session_summary WHERE trade_date = '2025-12-04'")
    assert summary == [(len(watched), sum(r[1] for r in watched))]


def test_eod_after_the_next_open_takes_daily_aggregates_for_the_contracts_seen(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    polled_session(config, fake_api, "2025-12-04")
    # down from 16:15 until Friday 10:00: the snapshot now shows Friday's bars
    tick_at(et("2025-12-05 10:00"), config, fake_api)
    stored = history(config, "2025-12-04")
    seen = {r[0] for r in rows(config, "SELECT DISTINCT ticker FROM intraday_snapshots WHERE trade_date='2025-12-04'")}
    assert {r[0] for r in stored} == seen
    for ticker, volume, _, _, _, source in stored:
        assert source == "aggregates"
        assert volume == market.final_volume(ticker, date(2025, 12, 4))
    aggregate_requests = [r for r in fake_api.requests if r.path.startswith("/v2/aggs/")]
    assert len(aggregate_requests) == len(seen)


def test_session_never_polled_uses_contracts_watched_the_session_before(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    polled_session(config, fake_api, "2025-12-03")
    tick_at(et("2025-12-03 16:31"), config, fake_api)
    # down all of Thursday; back Friday morning
    tick_at(et("2025-12-05 09:50"), config, fake_api)
    assert eods(config) == [("2025-12-03", "ok"), ("2025-12-04", "ok")]
    before = {r[0] for r in history(config, "2025-12-03")}
    stored = history(config, "2025-12-04")
    assert {r[0] for r in stored} == {t for t in before if market.contract(t).expiration >= date(2025, 12, 4)}
    for ticker, volume, *_ in stored:
        assert volume == market.final_volume(ticker, date(2025, 12, 4))


def test_half_day_eod_runs_at_1330_from_the_snapshot(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    walk(et("2025-11-28 09:45"), et("2025-11-28 13:15"), config, fake_api, step=HALF_HOUR)
    assert tick_at(et("2025-11-28 13:25"), config, fake_api).outcomes == []
    tick_at(et("2025-11-28 13:30"), config, fake_api)
    stored = history(config, "2025-11-28")
    assert stored and all(r[5] == "snapshot" for r in stored)
    for ticker, volume, *_ in stored:
        assert volume == market.final_volume(ticker, date(2025, 11, 28))
    polls = rows(config, "SELECT COUNT(*) FROM run_log WHERE job = 'poll' AND status = 'ok'")[0][0]
    assert polls == 8  # 09:45 to 13:15


def test_reprocessing_twice_gives_identical_rows(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api)
    polled_session(config, fake_api, "2025-12-04")
    tick_at(et("2025-12-04 16:31"), config, fake_api)
    first = history(config, "2025-12-04")
    now = et("2025-12-08 12:00")
    fake_api.set_now(now)
    environ = {"MASSIVE_API_KEY": "test-key"}
    for _ in range(2):
        outcomes = reprocess(now, config, date_text="2025-12-04", force=True, environ=environ)
        assert [o.status for _, o in outcomes] == ["ok"]
        again = history(config, "2025-12-04")
        # by now the bars come from the aggregates; the final volumes are the same
        assert [(r[0], r[1]) for r in again] == [(r[0], r[1]) for r in first]
        assert rows(config, "SELECT COUNT(*) FROM daily_history")[0][0] == len(first)
    assert rows(config, "SELECT attempts FROM run_log WHERE job = 'eod'") == [(3,)]
    # without --force a session already done is left alone
    outcomes = reprocess(now, config, date_text="2025-12-04", environ=environ)
    assert outcomes[0][1].status == "skipped"


@pytest.mark.parametrize("day, words", [
    ("2025-11-27", ["holiday", "Thanksgiving"]),
    ("2025-01-09", ["holiday"]),
    ("2025-12-06", ["Saturday"]),
    ("2025-12-09", ["future"]),
    ("2025-12-08", ["not closed yet", "16:30"]),
    ("2025-13-01", ["not a date"]),
])
def test_eod_command_refuses_dates_that_are_not_completed_sessions(day, words, tmp_path, run_cli):
    result = run_cli(commands.eod, ["--date", day, "--now", "2025-12-08T12:00:00-05:00"], str(tmp_path / "x.db"))
    assert result.exit_code == 2
    for word in words:
        assert word in result.output
    assert not (tmp_path / "x.db").exists()


def test_eod_since_lists_every_completed_session(tmp_path, run_cli):
    result = run_cli(commands.eod, ["--since", "2025-11-26", "--dry-run",
                                               "--now", "2025-12-02T12:00:00-05:00"], str(tmp_path / "x.db"))
    assert result.exit_code == 0
    assert [line.split()[1] for line in result.output.splitlines()] == ["2025-11-26:", "2025-11-28:", "2025-12-01:"]


def test_retention_deletes_old_snapshots_only_after_history_is_written(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api, INTRADAY_RETENTION_DAYS=2)
    for day in ("2025-12-02", "2025-12-03", "2025-12-04"):
        walk(et(day + " 09:45"), et(day + " 16:15"), config, fake_api, step=timedelta(hours=2))
        tick_at(et(day + " 16:31"), config, fake_api)
    days = [r[0] for r in rows(config, "SELECT DISTINCT trade_date FROM intraday_snapshots ORDER BY 1")]
    assert days == ["2025-12-03", "2025-12-04"]
    assert [r[0] for r in rows(config, "SELECT DISTINCT trade_date FROM daily_history ORDER BY 1")] == [
        "2025-12-02", "2025-12-03", "2025-12-04"]


def test_disabled_consolidation_records_skipped_and_keeps_intraday_data(tmp_path, fake_api):
    config = monitor_config(tmp_path, fake_api, EOD_CONSOLIDATION_ENABLED="false", INTRADAY_RETENTION_DAYS=1)
    polled_session(config, fake_api, "2025-12-04")
    tick_at(et("2025-12-04 16:31"), config, fake_api)
    assert eods(config) == [("2025-12-04", "skipped")]
    assert rows(config, "SELECT COUNT(*) FROM daily_history")[0][0] == 0
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] > 0


def test_crash_midway_leaves_no_partial_rows_and_a_later_tick_finishes(tmp_path, fake_api, monkeypatch):
    config = monitor_config(tmp_path, fake_api, INTRADAY_RETENTION_DAYS=1)
    polled_session(config, fake_api, "2025-12-04")
    snapshots_before = rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0]

    def crash(trade_date, bars):
        raise RuntimeError("power cut")
    with monkeypatch.context() as patch:
        patch.setattr(eod_module, "write_summary", crash)  # after the history rows were inserted
        result = tick_at(et("2025-12-04 16:31"), config, fake_api)
    assert result.exit_code == 1
    assert eods(config) == [("2025-12-04", "failed")]
    assert rows(config, "SELECT COUNT(*) FROM daily_history")[0][0] == 0
    assert rows(config, "SELECT COUNT(*) FROM intraday_snapshots")[0][0] == snapshots_before
    assert tick_at(et("2025-12-04 16:33"), config, fake_api).outcomes == []  # waits for the retry pause
    tick_at(et("2025-12-04 16:36"), config, fake_api)
    assert eods(config) == [("2025-12-04", "ok")]
    assert rows(config, "SELECT COUNT(*) FROM daily_history")[0][0] > 100


def test_catch_up_across_weekend_and_holiday_gives_one_ok_eod_per_session(tmp_path, fake_api, market):
    config = monitor_config(tmp_path, fake_api)
    polled_session(config, fake_api, "2025-11-24")
    tick_at(et("2025-11-24 16:31"), config, fake_api)
    # down from Monday evening to the next Tuesday: Tue, Wed, (Thanksgiving), half-day Fri, Mon are missed
    walk(et("2025-12-02 08:00"), et("2025-12-02 08:20"), config, fake_api)
    assert eods(config) == [("2025-11-24", "ok"), ("2025-11-25", "ok"), ("2025-11-26", "ok"),
                            ("2025-11-28", "ok"), ("2025-12-01", "ok")]
    assert rows(config, "SELECT COUNT(*) FROM run_log WHERE job = 'eod'")[0][0] == 5
    for day in ("2025-11-25", "2025-11-26", "2025-11-28", "2025-12-01"):
        stored = history(config, day)
        # Tuesday has not opened yet: Monday's final bars are still in the snapshot
        source = "snapshot" if day == "2025-12-01" else "aggregates"
        assert stored and all(r[5] == source for r in stored)
        for ticker, volume, *_ in stored[:20]:
            assert volume == market.final_volume(ticker, date.fromisoformat(day))

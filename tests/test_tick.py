"""The tick end to end on a real SQLite file: claims, locks, dry runs, exit codes, and a year of ticks."""
import hashlib
import json
import os
import random
import sqlite3
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from filelock import FileLock

from spxcli import commands
from spxlib import models
from spxlib.calendar import TradingCalendar
from spxlib.models import RunLog, utc_iso
from spxlib.scheduler import Action, RunFacts, RunRecord, decide, poll_slots
from spxlib.tick import JobOutcome, claim, run_tick

ET = ZoneInfo("America/New_York")


def et(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ET)


def recording_jobs(calls, status="ok"):
    def job(action, context):
        calls.append((action.job, action.trade_date.isoformat(), action.slot_key))
        return JobOutcome(status, "test job")
    return {"poll": job, "eod": job}


def run_log_rows(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT job, trade_date, slot, status, attempts FROM run_log ORDER BY id").fetchall()


def test_tick_claims_and_records_a_due_poll(config):
    calls = []
    result = run_tick(et("2025-12-04 09:46"), config, jobs=recording_jobs(calls))
    assert result.exit_code == 0
    assert calls == [("poll", "2025-12-04", "2025-12-04T14:45:00Z")]
    assert run_log_rows(config.db_path) == [("poll", "2025-12-04", "2025-12-04T14:45:00Z", "ok", 1)]
    # the same slot is not polled twice
    again = run_tick(et("2025-12-04 09:50"), config, jobs=recording_jobs(calls))
    assert again.outcomes == [] and len(calls) == 1


def test_failed_job_exits_1_and_is_retried_by_next_tick(config):
    calls = []
    assert run_tick(et("2025-12-04 09:46"), config, jobs=recording_jobs(calls, "failed")).exit_code == 1
    assert run_log_rows(config.db_path)[0][3:] == ("failed", 1)
    assert run_tick(et("2025-12-04 09:51"), config, jobs=recording_jobs(calls, "ok")).exit_code == 0
    assert run_log_rows(config.db_path) == [("poll", "2025-12-04", "2025-12-04T14:45:00Z", "ok", 2)]


def test_a_job_that_raises_is_recorded_failed_with_its_reason(config):
    def broken(action, context):
        raise RuntimeError("disk on fire")
    result = run_tick(et("2025-12-04 09:46"), config, jobs={"poll": broken, "eod": broken})
    assert result.exit_code == 1
    with sqlite3.connect(config.db_path) as conn:
        status, detail = conn.execute("SELECT status, detail FROM run_log").fetchone()
    assert status == "failed" and "disk on fire" in detail


def test_two_claims_of_the_same_work_make_one(config, database):
    action = Action("eod", date(2025, 12, 4), et("2025-12-04 16:30"), "test")
    now = et("2025-12-04 16:31")
    assert claim(action, now, config) is True
    assert claim(action, now, config) is False  # held by the first, still running
    assert RunLog.select().count() == 1


def test_stale_running_row_is_taken_as_failed_and_retried(config):
    models.open_database(config.db_path)
    RunLog.create(job="poll", trade_date="2025-12-04", slot=utc_iso(et("2025-12-04 09:45")), status="running",
                  attempts=1, started_at=utc_iso(et("2025-12-04 09:45")))
    models.close_database()
    calls = []
    run_tick(et("2025-12-04 09:50"), config, jobs=recording_jobs(calls))
    assert calls == []  # five minutes old: another process may still be on it
    run_tick(et("2025-12-04 10:10"), config, jobs=recording_jobs(calls))
    assert len(calls) == 1
    assert run_log_rows(config.db_path)[0][3:] == ("ok", 2)


def test_second_tick_while_one_holds_the_lock_exits_0_and_does_nothing(config, run_cli):
    os.makedirs(os.path.dirname(config.db_path), exist_ok=True)
    with FileLock(os.path.abspath(config.db_path) + ".lock"):
        result = run_cli(commands.tick, ["--now", "2025-12-04T09:46:00-05:00"], config.db_path)
    assert result.exit_code == 0
    assert "already running" in result.output
    assert not os.path.exists(config.db_path)


def test_dry_run_leaves_the_database_file_unchanged(config, run_cli):
    run_tick(et("2025-12-04 09:46"), config, jobs=recording_jobs([]))
    before = hashlib.sha256(open(config.db_path, "rb").read()).hexdigest()
    mtime = os.stat(config.db_path).st_mtime_ns
    result = run_cli(commands.tick, ["--dry-run", "--now", "2025-12-04T10:16:00-05:00"], config.db_path)
    assert result.exit_code == 0
    assert "State: MARKET_OPEN" in result.output
    assert "Would run poll: slot 10:15 ET is due" in result.output
    assert hashlib.sha256(open(config.db_path, "rb").read()).hexdigest() == before
    assert os.stat(config.db_path).st_mtime_ns == mtime
    assert run_log_rows(config.db_path) == [("poll", "2025-12-04", "2025-12-04T14:45:00Z", "ok", 1)]


def test_dry_run_on_half_day_shows_eod_pending_at_1330(tmp_path, run_cli):
    result = run_cli(commands.tick, ["--dry-run", "--now", "2025-11-28T13:20:00-05:00"], str(tmp_path / "none.db"))
    assert result.exit_code == 0
    assert "[2025-11-28 13:20:00 ET] State: EOD_PENDING" in result.output
    assert "Next EOD at 13:30 ET" in result.output
    assert not (tmp_path / "none.db").exists()


def test_tick_json_prints_the_decision(tmp_path, run_cli):
    result = run_cli(commands.tick, ["--dry-run", "--json", "--now", "2025-12-06T12:00:00-05:00"], str(tmp_path / "none.db"))
    data = json.loads(result.output)
    assert data["state"] == "WEEKEND"
    assert data["next_action_at"] == "2025-12-08T09:45:00-05:00"


@pytest.mark.parametrize("env, words", [
    ({"SPX_POLL_INTERVAL_MINUTES": "3"}, ["POLL_INTERVAL_MINUTES", "'3'", "5 to 60"]),
    ({"SPX_EOD_CONSOLIDATION_ENABLED": "perhaps"}, ["EOD_CONSOLIDATION_ENABLED", "true or false"]),
    ({"SPX_MIN_MONEYNESS": "0.95", "SPX_MAX_MONEYNESS": "0.9"}, ["MIN_MONEYNESS", "MAX_MONEYNESS"]),
])
def test_bad_configuration_exits_2_naming_the_setting(env, words, run_cli, tmp_path):
    result = run_cli(commands.tick, ["--dry-run"], tmp_path / "x.db", **env)
    assert result.exit_code == 2
    for word in words:
        assert word in result.output


def test_ini_file_settings_are_validated_too(run_cli, tmp_path):
    ini = tmp_path / "spx.ini"
    ini.write_text("[spx]\nmax_dte = 30\nvolume_floor = lots\n")
    result = run_cli(commands.tick, ["--dry-run"], tmp_path / "x.db", SPX_CONFIG=str(ini))
    assert result.exit_code == 2
    assert "VOLUME_FLOOR='lots'" in result.output and str(ini) in result.output


def test_now_without_offset_is_a_usage_error(run_cli, tmp_path):
    result = run_cli(commands.tick, ["--dry-run", "--now", "2025-12-04T09:45:00"], tmp_path / "x.db")
    assert result.exit_code == 2 and "no UTC offset" in result.output


def test_corrupt_database_is_a_clear_error_and_the_file_is_kept(config, run_cli):
    os.makedirs(os.path.dirname(config.db_path), exist_ok=True)
    with open(config.db_path, "wb") as handle:
        handle.write(b"this is not a database at all" * 200)
    result = run_cli(commands.tick, ["--now", "2025-12-04T09:46:00-05:00"], config.db_path)
    assert result.exit_code == 1
    assert "corrupt" in result.output and config.db_path in result.output
    assert open(config.db_path, "rb").read().startswith(b"this is not a database")


def test_locked_database_is_a_clear_error(config, monkeypatch):
    models.open_database(config.db_path)
    models.close_database()
    monkeypatch.setattr(models, "BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(config.db_path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(models.StorageError, match="locked"):
            run_tick(et("2025-12-04 09:46"), config, jobs=recording_jobs([]))
    finally:
        holder.rollback()
        holder.close()


def test_older_schema_is_migrated_in_place_keeping_rows(db_path):
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    conn = sqlite3.connect(db_path)
    conn.executescript("""
        CREATE TABLE meta (key VARCHAR(255) PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE run_log (id INTEGER PRIMARY KEY, job VARCHAR(255), trade_date VARCHAR(255), slot VARCHAR(255),
            status VARCHAR(255), attempts INTEGER, started_at VARCHAR(255), finished_at VARCHAR(255), detail TEXT);
        CREATE UNIQUE INDEX run_log_job_trade_date_slot ON run_log (job, trade_date, slot);
        INSERT INTO run_log VALUES (1, 'eod', '2025-12-03', '2025-12-03T21:30:00Z', 'ok', 1,
            '2025-12-03T21:30:00Z', '2025-12-03T21:31:00Z', 'old');
        CREATE TABLE intraday_snapshots (id INTEGER PRIMARY KEY, trade_date VARCHAR(255), captured_at VARCHAR(255),
            ticker VARCHAR(255), root VARCHAR(255), expiration_date VARCHAR(255), strike REAL, volume INTEGER,
            open_interest INTEGER, vwap REAL, close REAL, implied_volatility REAL, delta REAL, underlying_price REAL);
        INSERT INTO intraday_snapshots (trade_date, captured_at, ticker, root, expiration_date, strike, volume)
            VALUES ('2025-12-03', '2025-12-03T15:00:00Z', 'O:SPX251219P05000000', 'SPX', '2025-12-19', 5000, 42);
        CREATE TABLE daily_history (id INTEGER PRIMARY KEY, trade_date VARCHAR(255), ticker VARCHAR(255),
            root VARCHAR(255), expiration_date VARCHAR(255), strike REAL, volume INTEGER, open_interest INTEGER,
            close REAL, vwap REAL, source VARCHAR(255));
        CREATE TABLE alerts (id INTEGER PRIMARY KEY, trade_date VARCHAR(255), ticker VARCHAR(255), flag VARCHAR(255),
            volume INTEGER, baseline_volume INTEGER, baseline_source VARCHAR(255), premium REAL,
            first_seen_at VARCHAR(255), last_seen_at VARCHAR(255));
    """)
    conn.commit()
    conn.close()
    models.open_database(db_path)
    try:
        assert models.schema_version() == models.SCHEMA_VERSION
        snapshot = models.IntradaySnapshot.get()
        assert snapshot.volume == 42 and snapshot.baseline_source is None
        assert RunLog.get().detail == "old"
        assert "session_summary" in models.db.get_tables()
    finally:
        models.close_database()


def test_a_year_of_ticks_gives_one_eod_per_session_and_polls_only_in_sessions():
    """Ticks every 5 minutes through 2025 with random downtimes and failures, against an in-memory run_log."""
    calendar = TradingCalendar()
    from spxlib.config import load_config
    config = load_config({})
    rng = random.Random(2025)
    start = datetime(2025, 1, 2, 5, 0, tzinfo=timezone.utc)
    end = datetime(2026, 1, 1, 5, 0, tzinfo=timezone.utc)
    facts = RunFacts(watching_since=start)
    ok_polls = {}
    eod_runs = {}
    now = start
    down_until = None
    while now < end:
        if down_until is not None and now < down_until:
            now += timedelta(minutes=5)
            continue
        down_until = None
        if rng.random() < 0.0005:  # about once a week: down from 10 minutes to 4 days
            down_until = now + timedelta(minutes=rng.choice([10, 45, 180, 60 * 20, 60 * 24 * 2, 60 * 24 * 4]))
        decision = decide(now, calendar, facts, config)
        for action in decision.actions:
            key = (action.trade_date.isoformat(), action.slot_key)
            failed = rng.random() < 0.05
            status = "failed" if failed else "ok"
            if action.job == "poll":
                previous = facts.polls.get(key)
                facts.polls[key] = RunRecord(status, (previous.attempts if previous else 0) + 1, now, now)
                if status == "ok":
                    assert key not in ok_polls, "a slot got two ok polls"
                    ok_polls[key] = now
            else:
                previous = facts.eods.get(key[0])
                assert previous is None or previous.status != "ok", "an EOD ran twice"
                facts.eods[key[0]] = RunRecord(status, (previous.attempts if previous else 0) + 1, now, now)
                eod_runs.setdefault(key[0], []).append(status)
        now += timedelta(minutes=5)
    sessions = calendar.sessions_between(date(2025, 1, 2), date(2025, 12, 31))
    assert len(sessions) == 250
    for session in sessions:
        assert eod_runs.get(session.key, [])[-1:] == ["ok"], "session %s has no ok EOD" % session.key
        assert eod_runs[session.key].count("ok") == 1
    valid_slots = {(s.key, utc_iso(slot)) for s in sessions for slot in poll_slots(s, config)}
    assert set(ok_polls) <= valid_slots
    for (day, slot), at in ok_polls.items():
        session = calendar.session(date.fromisoformat(day))
        assert session.open <= at <= session.close + timedelta(minutes=config.eod_delay_minutes)
    assert len(ok_polls) > 0.6 * len(valid_slots)  # the rest fell in downtimes

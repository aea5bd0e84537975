"""Health of the monitor for people and for external monitors: last runs, failures, freshness."""
import os
from datetime import datetime, timedelta
from typing import Optional

from . import models
from .calendar import TradingCalendar
from .models import IntradaySnapshot, RunLog, parse_utc
from .scheduler import DONE_STATUSES, RunFacts, decide, eod_due_at, eod_sessions_due, poll_slots
from .tick import read_facts

# An EOD is overdue once it has been due this long without succeeding (a tick or two of slack).
EOD_OVERDUE_GRACE_MINUTES = 15
EOD_CRITICAL_HOURS = 24


def collect_status(now: datetime, config, calendar: Optional[TradingCalendar] = None) -> dict:
    """The status report at `now`, reading config.db_path read-only (a missing file is a warning).

    Raises models.StorageError for a file that cannot be read.
    """
    calendar = calendar or TradingCalendar.from_config(config)
    if not os.path.exists(config.db_path):
        report = _empty_report(now, decide(now, calendar, RunFacts(watching_since=now), config))
        report["problems"].append("no database yet at %s: run bin/tick (or the demo)" % config.db_path)
        report["level"] = "warning"
        return report
    models.open_database(config.db_path, readonly=True)
    try:
        return _collect(now, config, calendar)
    finally:
        models.close_database()


def _empty_report(now: datetime, decision) -> dict:
    return {
        "now": now.isoformat(),
        "state": decision.state,
        "level": "ok",
        "problems": [],
        "last_ok_poll": None,
        "last_ok_eod": None,
        "failures_since": [],
        "next_action": decision.next_action,
        "next_action_at": decision.next_action_at.isoformat() if decision.next_action_at else None,
        "data_age_seconds": None,
        "latest_snapshot_at": None,
        "pending_eods": [],
    }


def _row_json(row) -> dict:
    return {
        "job": row.job,
        "trade_date": row.trade_date,
        "slot": row.slot,
        "status": row.status,
        "attempts": row.attempts,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "detail": row.detail,
    }


def _collect(now: datetime, config, calendar: TradingCalendar) -> dict:
    facts = read_facts(now, calendar, config)
    decision = decide(now, calendar, facts, config)
    report = _empty_report(now, decision)
    last = {}
    for job in ("poll", "eod"):
        row = (RunLog.select().where((RunLog.job == job) & (RunLog.status == "ok"))
               .order_by(RunLog.finished_at.desc()).first())
        last[job] = row
        report["last_ok_%s" % job] = _row_json(row) if row else None
    failures = RunLog.select().where(RunLog.status == "failed").order_by(RunLog.started_at)
    report["failures_since"] = [
        _row_json(row) for row in failures
        if last[row.job] is None or row.started_at > (last[row.job].finished_at or "")
    ]
    latest = IntradaySnapshot.select(IntradaySnapshot.captured_at).order_by(
        IntradaySnapshot.captured_at.desc()).first()
    if latest is not None:
        report["latest_snapshot_at"] = latest.captured_at
        report["data_age_seconds"] = int((now - parse_utc(latest.captured_at)).total_seconds())

    problems, level = [], "ok"
    session = decision.session
    if session is not None:
        # During a session, two poll intervals without an ok poll is a warning.
        interval = timedelta(minutes=config.poll_interval_minutes)
        first_slot = poll_slots(session, config)[0]
        last_poll_at = parse_utc(last["poll"].finished_at) if last["poll"] else None
        if first_slot + 2 * interval <= now <= session.close + interval:
            if last_poll_at is None or now - last_poll_at > 2 * interval:
                problems.append("no successful poll for over %d minutes during the session"
                                % (2 * config.poll_interval_minutes))
                level = "warning"
    pending = []
    for due_session in eod_sessions_due(now, calendar, facts, config):
        record = facts.eods.get(due_session.key)
        if record is not None and record.status in DONE_STATUSES:
            continue
        due = eod_due_at(due_session, config)
        late = now - due
        pending.append({"trade_date": due_session.key, "due_at": due.isoformat(),
                        "status": record.status if record else "not run"})
        if late > timedelta(hours=EOD_CRITICAL_HOURS):
            problems.append("EOD of %s missed for over a day" % due_session.key)
            level = "critical"
        elif late > timedelta(minutes=EOD_OVERDUE_GRACE_MINUTES):
            problems.append("EOD of %s is overdue" % due_session.key)
            if level == "ok":
                level = "warning"
    report["pending_eods"] = pending
    report["problems"] = problems
    report["level"] = level
    return report


def format_status(report: dict) -> str:
    """The report as the lines `bin/status` prints."""
    def when(row):
        if not row:
            return "never"
        return "%s (slot %s, finished %s)" % (row["trade_date"], row["slot"], row["finished_at"])

    lines = [
        "Status: %s" % report["level"].upper(),
        "State: %s" % report["state"],
        "Last ok poll: %s" % when(report["last_ok_poll"]),
        "Last ok EOD: %s" % when(report["last_ok_eod"]),
        "Data age: %s" % ("%d min" % (report["data_age_seconds"] // 60)
                          if report["data_age_seconds"] is not None else "no snapshots yet"),
        "Next action: %s at %s" % (report["next_action"], report["next_action_at"]),
        "Failures since last success: %d" % len(report["failures_since"]),
    ]
    for failure in report["failures_since"][-5:]:
        lines.append("  %s %s %s: %s" % (failure["job"], failure["trade_date"], failure["slot"], failure["detail"]))
    for problem in report["problems"]:
        lines.append("Problem: %s" % problem)
    return "\n".join(lines)

"""bin/status as an external monitor sees it: exit 0 OK, 1 warning, 2 critical."""
import json


from spxcli import commands
from spxlib import models
from spxlib.models import RunLog, utc_iso
from spxlib.scheduler import poll_slots
from spxlib.tick import mark_watching_since

from tests.pipeline import et


def seed(config, calendar, polls_until=None, eods_until=None, watching_since="2025-12-01 08:00"):
    """ok polls on 2025-12-04 up to `polls_until`, ok EODs for every session up to `eods_until`."""
    models.open_database(config.db_path)
    try:
        mark_watching_since(et(watching_since))
        if polls_until:
            for slot in poll_slots(calendar.session(et(polls_until).date()), config):
                if slot <= et(polls_until):
                    RunLog.create(job="poll", trade_date=slot.date().isoformat(), slot=utc_iso(slot), status="ok",
                                  attempts=1, started_at=utc_iso(slot), finished_at=utc_iso(slot))
        if eods_until:
            for session in calendar.sessions_between(et(watching_since).date(), et(eods_until).date()):
                due = session.close.replace(minute=30) if session.close.minute == 15 else session.close
                RunLog.create(job="eod", trade_date=session.key, slot=utc_iso(due), status="ok", attempts=1,
                              started_at=utc_iso(due), finished_at=utc_iso(due))
    finally:
        models.close_database()


def status_at(config, run_cli, now):
    return run_cli(commands.status, ["--json", "--now", now], config.db_path)


def test_healthy_session_exits_0(config, calendar, run_cli):
    seed(config, calendar, polls_until="2025-12-04 11:45", eods_until="2025-12-03 17:00")
    result = status_at(config, run_cli, "2025-12-04T11:50:00-05:00")
    report = json.loads(result.output)
    assert result.exit_code == 0
    assert report["level"] == "ok" and report["state"] == "MARKET_OPEN"
    assert report["last_ok_poll"]["slot"] == "2025-12-04T16:45:00Z"
    assert report["next_action_at"] == "2025-12-04T12:15:00-05:00"


def test_no_ok_poll_for_two_intervals_during_a_session_is_a_warning(config, calendar, run_cli):
    seed(config, calendar, polls_until="2025-12-04 10:45", eods_until="2025-12-03 17:00")
    result = status_at(config, run_cli, "2025-12-04T11:50:00-05:00")
    assert result.exit_code == 1
    assert "no successful poll" in json.loads(result.output)["problems"][0]


def test_overdue_eod_is_a_warning_and_a_day_late_is_critical(config, calendar, run_cli):
    seed(config, calendar, polls_until="2025-12-04 16:15", eods_until="2025-12-03 17:00")
    assert status_at(config, run_cli, "2025-12-04T16:40:00-05:00").exit_code == 0  # within the grace
    late = status_at(config, run_cli, "2025-12-04T17:00:00-05:00")
    assert late.exit_code == 1 and "EOD of 2025-12-04 is overdue" in late.output
    missed = status_at(config, run_cli, "2025-12-05T17:00:00-05:00")
    assert missed.exit_code == 2
    assert "EOD of 2025-12-04 missed for over a day" in missed.output


def test_failures_since_the_last_success_are_listed(config, calendar, run_cli):
    seed(config, calendar, polls_until="2025-12-04 10:45", eods_until="2025-12-03 17:00")
    models.open_database(config.db_path)
    RunLog.create(job="poll", trade_date="2025-12-04", slot="2025-12-04T16:15:00Z", status="failed", attempts=3,
                  started_at="2025-12-04T16:15:00Z", finished_at="2025-12-04T16:16:00Z", detail="HTTP 500")
    models.close_database()
    report = json.loads(status_at(config, run_cli, "2025-12-04T11:20:00-05:00").output)
    assert [f["detail"] for f in report["failures_since"]] == ["HTTP 500"]


def test_no_database_yet_is_a_warning_that_says_what_to_do(tmp_path, run_cli):
    result = run_cli(commands.status, ["--now", "2025-12-06T12:00:00-05:00"], str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert "run bin/tick" in result.output and "State: WEEKEND" in result.output
    assert not (tmp_path / "none.db").exists()

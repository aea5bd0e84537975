"""The decision, as tables of literal Eastern datetimes."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from spxlib.calendar import TradingCalendar
from spxlib.config import load_config
from spxlib.scheduler import (
    EOD_PENDING, EOD_RUNNING, HOLIDAY, MARKET_CLOSED, MARKET_OPEN, WAITING_FOR_OPEN, WEEKEND,
    RunFacts, RunRecord, decide, poll_slots,
)
from spxlib.models import utc_iso

ET = ZoneInfo("America/New_York")
CAL = TradingCalendar()
CONFIG = load_config({})
LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc)


def et(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ET)


def eods_done(*days):
    """Every EOD up to and including the latest of these days is done (and these days too)."""
    done = {day: RunRecord("ok", 1) for day in days}
    if days:
        last = date.fromisoformat(max(days))
        for session in CAL.sessions_between(last - timedelta(days=40), last):
            done.setdefault(session.key, RunRecord("ok", 1))
    return done


def polls_done(*slots):
    return {(slot[:10], utc_iso(et(slot))): RunRecord("ok", 1) for slot in slots}


def summary(decision):
    return [(a.job, a.trade_date.isoformat(), a.slot.astimezone(ET).strftime("%Y-%m-%d %H:%M"))
            for a in decision.actions]


# now, EODs already done, polls already done, expected state, expected actions, next action (job, ET time)
TABLE = [
    ("2025-12-04 09:00", ["2025-12-03"], [], WAITING_FOR_OPEN, [], ("poll", "2025-12-04 09:45")),
    ("2025-12-04 09:44", ["2025-12-03"], [], MARKET_OPEN, [], ("poll", "2025-12-04 09:45")),
    ("2025-12-04 09:45", ["2025-12-03"], [], MARKET_OPEN,
     [("poll", "2025-12-04", "2025-12-04 09:45")], ("poll", "2025-12-04 10:15")),
    ("2025-12-04 12:20", ["2025-12-03"], ["2025-12-04 11:45"], MARKET_OPEN,
     [("poll", "2025-12-04", "2025-12-04 12:15")], ("poll", "2025-12-04 12:45")),
    ("2025-12-04 12:20", ["2025-12-03"], ["2025-12-04 12:15"], MARKET_OPEN, [], ("poll", "2025-12-04 12:45")),
    # the last slot sits exactly at the 16:15 close
    ("2025-12-04 16:15", ["2025-12-03"], [], MARKET_OPEN,
     [("poll", "2025-12-04", "2025-12-04 16:15")], ("eod", "2025-12-04 16:30")),
    ("2025-12-04 16:20", ["2025-12-03"], ["2025-12-04 16:15"], EOD_PENDING, [], ("eod", "2025-12-04 16:30")),
    ("2025-12-04 16:30", ["2025-12-03"], ["2025-12-04 16:15"], EOD_RUNNING,
     [("eod", "2025-12-04", "2025-12-04 16:30")], ("poll", "2025-12-05 09:45")),
    ("2025-12-04 17:00", ["2025-12-03", "2025-12-04"], [], MARKET_CLOSED, [], ("poll", "2025-12-05 09:45")),
    ("2025-12-06 12:00", ["2025-12-05"], [], WEEKEND, [], ("poll", "2025-12-08 09:45")),
    ("2025-12-07 23:59", ["2025-12-05"], [], WEEKEND, [], ("poll", "2025-12-08 09:45")),
    # the national day of mourning: NYSE closed on a Thursday
    ("2025-01-09 11:00", ["2025-01-08"], [], HOLIDAY, [], ("poll", "2025-01-10 09:45")),
    ("2025-12-25 11:00", ["2025-12-24"], [], HOLIDAY, [], ("poll", "2025-12-26 09:45")),
    # half day: polls end by 13:15, the EOD is due at 13:30
    ("2025-11-28 13:15", ["2025-11-26"], [], MARKET_OPEN,
     [("poll", "2025-11-28", "2025-11-28 13:15")], ("eod", "2025-11-28 13:30")),
    ("2025-11-28 13:20", ["2025-11-26"], ["2025-11-28 13:15"], EOD_PENDING, [], ("eod", "2025-11-28 13:30")),
    ("2025-11-28 13:30", ["2025-11-26"], ["2025-11-28 13:15"], EOD_RUNNING,
     [("eod", "2025-11-28", "2025-11-28 13:30")], ("poll", "2025-12-01 09:45")),
    # Friday's EOD missed: Saturday catches it up
    ("2025-12-06 10:00", ["2025-12-04"], [], WEEKEND,
     [("eod", "2025-12-05", "2025-12-05 16:30")], ("poll", "2025-12-08 09:45")),
]


@pytest.mark.parametrize("now, eods, polls, state, actions, next_action", TABLE)
def test_decision_table(now, eods, polls, state, actions, next_action):
    facts = RunFacts(polls=polls_done(*polls), eods=eods_done(*eods), watching_since=LONG_AGO)
    decision = decide(et(now), CAL, facts, CONFIG)
    assert decision.state == state
    assert summary(decision) == actions
    assert (decision.next_action, decision.next_action_at.strftime("%Y-%m-%d %H:%M")) == next_action


def test_half_day_slots_end_by_early_close():
    slots = [s.strftime("%H:%M") for s in poll_slots(CAL.session(date(2025, 11, 28)), CONFIG)]
    assert slots[0] == "09:45" and slots[-1] == "13:15"
    assert len(slots) == 8


@pytest.mark.parametrize("before, after", [("2025-03-07", "2025-03-10"), ("2025-10-31", "2025-11-03")])
def test_daylight_saving_changes_keep_eastern_slot_times(before, after):
    times = []
    utc_offsets = []
    for day in (before, after):
        slots = poll_slots(CAL.session(date.fromisoformat(day)), CONFIG)
        times.append([s.strftime("%H:%M") for s in slots])
        utc_offsets.append(slots[0].astimezone(timezone.utc).hour)
    assert times[0] == times[1]
    assert times[0][0] == "09:45" and times[0][-1] == "16:15" and len(times[0]) == 14
    assert utc_offsets[0] != utc_offsets[1]  # same Eastern time, one hour apart in UTC


def test_poll_decided_in_utc_input_still_uses_eastern_slots():
    # 14:45 UTC on 2025-03-10 is 10:45 EDT: the 10:45 slot is due
    decision = decide(datetime(2025, 3, 10, 14, 45, tzinfo=timezone.utc), CAL,
                      RunFacts(eods=eods_done("2025-03-07"), watching_since=LONG_AGO), CONFIG)
    assert summary(decision) == [("poll", "2025-03-10", "2025-03-10 10:45")]


def test_missed_slots_are_skipped_only_latest_runs():
    decision = decide(et("2025-12-04 14:50"), CAL, RunFacts(eods=eods_done("2025-12-03"), watching_since=LONG_AGO),
                      CONFIG)
    assert summary(decision) == [("poll", "2025-12-04", "2025-12-04 14:45")]


def test_catch_up_after_three_day_downtime_across_holiday_oldest_first():
    # Down from Wednesday 2024-12-31 morning to Friday 2025-01-10 evening: 2025-01-01 and 2025-01-09 closed.
    facts = RunFacts(eods=eods_done("2024-12-30"), watching_since=LONG_AGO)
    decision = decide(et("2025-01-10 18:00"), CAL, facts, CONFIG)
    days = [a.trade_date.isoformat() for a in decision.actions]
    assert days == ["2024-12-31", "2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07", "2025-01-08",
                    "2025-01-10"]
    assert all(a.job == "eod" for a in decision.actions)
    assert "2025-01-09" not in days and "2025-01-01" not in days


def test_catch_up_is_bounded_by_catchup_max_days():
    config = CONFIG.replace(catchup_max_days=3)
    decision = decide(et("2025-12-12 18:00"), CAL, RunFacts(watching_since=LONG_AGO), config)
    assert [a.trade_date.isoformat() for a in decision.actions] == ["2025-12-10", "2025-12-11", "2025-12-12"]


def test_fresh_database_does_not_backfill_days_before_its_first_tick():
    first_tick = et("2025-12-08 08:00")
    decision = decide(first_tick, CAL, RunFacts(watching_since=first_tick), CONFIG)
    assert decision.actions == []
    assert decision.state == WAITING_FOR_OPEN


def test_first_tick_after_the_close_consolidates_that_session():
    first_tick = et("2025-12-08 20:00")
    decision = decide(first_tick, CAL, RunFacts(watching_since=first_tick), CONFIG)
    assert summary(decision) == [("eod", "2025-12-08", "2025-12-08 16:30")]


def test_failed_poll_retried_up_to_max_retries_while_latest_slot():
    slot_key = ("2025-12-04", utc_iso(et("2025-12-04 10:15")))
    base = dict(eods=eods_done("2025-12-03"), watching_since=LONG_AGO)
    for attempts, expected in [(1, 2), (2, 3)]:
        facts = RunFacts(polls={slot_key: RunRecord("failed", attempts)}, **base)
        decision = decide(et("2025-12-04 10:20"), CAL, facts, CONFIG)
        assert [(a.job, a.attempt) for a in decision.actions] == [("poll", expected)]
    facts = RunFacts(polls={slot_key: RunRecord("failed", 3)}, **base)
    assert decide(et("2025-12-04 10:25"), CAL, facts, CONFIG).actions == []
    # the next slot is a fresh start
    assert summary(decide(et("2025-12-04 10:45"), CAL, facts, CONFIG)) == [("poll", "2025-12-04", "2025-12-04 10:45")]


def test_running_poll_is_left_alone_until_stale_then_retried():
    slot_key = ("2025-12-04", utc_iso(et("2025-12-04 10:15")))
    facts = RunFacts(polls={slot_key: RunRecord("running", 1, started_at=et("2025-12-04 10:15"))},
                     eods=eods_done("2025-12-03"), watching_since=LONG_AGO)
    assert decide(et("2025-12-04 10:20"), CAL, facts, CONFIG).actions == []
    later = decide(et("2025-12-04 10:40"), CAL, facts, CONFIG)  # 25 minutes > STALE_RUN_MINUTES
    assert [(a.job, a.attempt) for a in later.actions] == [("poll", 2)]
    assert "stale" in later.actions[0].reason


def test_failed_eod_waits_for_backoff_then_retries():
    failed = RunRecord("failed", 1, started_at=et("2025-12-04 16:30"), finished_at=et("2025-12-04 16:31"))
    facts = RunFacts(eods={**eods_done("2025-12-03"), "2025-12-04": failed}, watching_since=LONG_AGO)
    early = decide(et("2025-12-04 16:33"), CAL, facts, CONFIG)
    assert early.actions == [] and early.next_action == "eod"
    assert early.next_action_at == et("2025-12-04 16:36")
    assert [a.attempt for a in decide(et("2025-12-04 16:36"), CAL, facts, CONFIG).actions] == [2]


def test_one_failing_eod_does_not_hold_back_later_ones():
    failed = RunRecord("failed", 2, started_at=et("2025-12-08 17:00"), finished_at=et("2025-12-08 17:00"))
    facts = RunFacts(eods={**eods_done("2025-12-04"), "2025-12-05": failed}, watching_since=LONG_AGO)
    decision = decide(et("2025-12-08 17:05"), CAL, facts, CONFIG)
    assert [a.trade_date.isoformat() for a in decision.actions] == ["2025-12-08"]


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        decide(datetime(2025, 12, 4, 10, 0), CAL, RunFacts(), CONFIG)


def test_monthly_expiry_is_the_third_friday_or_the_trading_day_before():
    assert CAL.monthly_expiration(2025, 12) == date(2025, 12, 19)
    assert CAL.monthly_expiration(2025, 4) == date(2025, 4, 17)  # Good Friday 2025-04-18
    assert CAL.monthly_expirations_between(date(2025, 12, 7), date(2026, 3, 4)) == [
        date(2025, 12, 19), date(2026, 1, 16), date(2026, 2, 20)]

"""What is due now: a pure decision over an explicit `now`, the calendar and facts read from run_log.

`decide()` never reads the clock or the database; `tick` reads both once and hands them in, and
`--dry-run` prints the same decision without acting.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Dict, List, Optional, Tuple

from .calendar import Session, TradingCalendar
from .models import parse_utc, utc_iso

WAITING_FOR_OPEN = "WAITING_FOR_OPEN"
MARKET_OPEN = "MARKET_OPEN"
EOD_PENDING = "EOD_PENDING"
EOD_RUNNING = "EOD_RUNNING"
MARKET_CLOSED = "MARKET_CLOSED"
WEEKEND = "WEEKEND"
HOLIDAY = "HOLIDAY"

DONE_STATUSES = ("ok", "skipped")
# A failed EOD is retried with a growing pause so a broken day does not hammer the API every tick.
EOD_RETRY_BASE_MINUTES = 5
EOD_RETRY_MAX_MINUTES = 120


@dataclass(frozen=True)
class RunRecord:
    """One run_log row, as the decision needs it."""

    status: str
    attempts: int = 0
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


@dataclass(frozen=True)
class RunFacts:
    """What run_log says: poll rows by (trade_date, slot UTC text), EOD rows by trade_date."""

    polls: Dict[Tuple[str, str], RunRecord] = field(default_factory=dict)
    eods: Dict[str, RunRecord] = field(default_factory=dict)
    # When this database first ticked: EODs of sessions before that day are never backfilled.
    watching_since: Optional[datetime] = None


@dataclass(frozen=True)
class Action:
    """A piece of due work, keyed by its period, with the reason it is due."""

    job: str  # 'poll' | 'eod'
    trade_date: date
    slot: datetime  # the poll slot, or the EOD's due time (aware, Eastern)
    reason: str
    attempt: int = 1

    @property
    def slot_key(self) -> str:
        return utc_iso(self.slot)


@dataclass(frozen=True)
class Decision:
    now: datetime
    state: str
    actions: List[Action]
    next_action: Optional[str]  # 'poll' | 'eod'
    next_action_at: Optional[datetime]
    session: Optional[Session]  # today's session, if the market trades today
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "now": self.now.isoformat(),
            "state": self.state,
            "actions": [
                {
                    "job": action.job,
                    "trade_date": action.trade_date.isoformat(),
                    "slot": action.slot.isoformat(),
                    "attempt": action.attempt,
                    "reason": action.reason,
                }
                for action in self.actions
            ],
            "next_action": self.next_action,
            "next_action_at": self.next_action_at.isoformat() if self.next_action_at else None,
            "notes": list(self.notes),
        }


def poll_slots(session: Session, config) -> List[datetime]:
    """The session's poll times: open + start delay, then every interval, while at or before the close."""
    slots = []
    slot = session.open + timedelta(minutes=config.poll_start_delay_minutes)
    step = timedelta(minutes=config.poll_interval_minutes)
    while slot <= session.close:
        slots.append(slot)
        slot = slot + step
    return slots


def eod_due_at(session: Session, config) -> datetime:
    return session.close + timedelta(minutes=config.eod_delay_minutes)


def is_stale(record: RunRecord, now: datetime, config) -> bool:
    """A 'running' row whose process has died: older than STALE_RUN_MINUTES."""
    return (
        record.status == "running"
        and record.started_at is not None
        and now - record.started_at > timedelta(minutes=config.stale_run_minutes)
    )


def current_slot(session: Session, now: datetime, config) -> Tuple[Optional[datetime], Optional[datetime]]:
    """The latest slot at or before now whose window is still open, and the next slot after now.

    A slot's window runs until the next slot; the last slot's until the EOD is due. Missed slots
    are skipped: a snapshot cannot be taken in the past.
    """
    slots = poll_slots(session, config)
    current = None
    upcoming = None
    for index, slot in enumerate(slots):
        window_end = slots[index + 1] if index + 1 < len(slots) else eod_due_at(session, config)
        if slot <= now < window_end:
            current = slot
        if slot > now and upcoming is None:
            upcoming = slot
    return current, upcoming


def _poll_action(session: Session, now: datetime, facts: RunFacts, config, notes: List[str]):
    slot, upcoming = current_slot(session, now, config)
    if slot is None:
        return None, upcoming
    record = facts.polls.get((session.key, utc_iso(slot)))
    if record is None:
        return Action("poll", session.trade_date, slot, "slot %s ET is due" % _hhmm(slot)), upcoming
    if record.status in DONE_STATUSES:
        return None, upcoming
    if record.status == "running" and not is_stale(record, now, config):
        notes.append("poll of %s ET is running in another process" % _hhmm(slot))
        return None, upcoming
    if record.attempts >= config.max_poll_retries:
        notes.append(
            "poll of %s ET failed %d times; waiting for the next slot" % (_hhmm(slot), record.attempts)
        )
        return None, upcoming
    why = "stale run taken as failed" if record.status == "running" else "previous attempt failed"
    action = Action(
        "poll", session.trade_date, slot,
        "retry of slot %s ET (%s, attempt %d of %d)"
        % (_hhmm(slot), why, record.attempts + 1, config.max_poll_retries),
        attempt=record.attempts + 1,
    )
    return action, upcoming


def _eod_retry_at(record: RunRecord) -> Optional[datetime]:
    if record.finished_at is None:
        return None
    minutes = min(EOD_RETRY_BASE_MINUTES * 2 ** max(record.attempts - 1, 0), EOD_RETRY_MAX_MINUTES)
    return record.finished_at + timedelta(minutes=minutes)


def eod_sessions_due(now: datetime, calendar: TradingCalendar, facts: RunFacts, config) -> List[Session]:
    """Sessions whose EOD is due by now, oldest first: at most CATCHUP_MAX_DAYS back, none before
    the database first ticked (a fresh database does not backfill)."""
    today = calendar.local_date(now)
    since = calendar.local_date(facts.watching_since) if facts.watching_since else today
    sessions: List[Session] = []
    session = calendar.latest_session_on_or_before(today)
    while len(sessions) < config.catchup_max_days and session.trade_date >= since:
        if eod_due_at(session, config) <= now:
            sessions.append(session)
        session = calendar.previous_session(session.trade_date)
    return sessions[::-1]


def _eod_actions(now: datetime, calendar: TradingCalendar, facts: RunFacts, config, notes: List[str]):
    """EODs due and not done, oldest first, within the catch-up window. Also the next EOD retry time."""
    today = calendar.local_date(now)
    actions = []
    retry_at = None
    for session in eod_sessions_due(now, calendar, facts, config):
        record = facts.eods.get(session.key)
        due = eod_due_at(session, config)
        label = session.trade_date.isoformat()
        if record is None:
            reason = "EOD of %s due since %s ET" % (label, _hhmm(due))
            if session.trade_date != today:
                reason = "catch-up: EOD of %s was missed" % label
            actions.append(Action("eod", session.trade_date, due, reason))
            continue
        if record.status in DONE_STATUSES:
            continue
        if record.status == "running" and not is_stale(record, now, config):
            notes.append("EOD of %s is running in another process" % label)
            continue
        when = _eod_retry_at(record) if record.status == "failed" else None
        if when is not None and when > now:
            notes.append("EOD of %s failed; retry at %s" % (label, _format_et(when, calendar)))
            retry_at = when if retry_at is None else min(retry_at, when)
            continue
        why = "stale run taken as failed" if record.status == "running" else "previous attempt failed"
        actions.append(
            Action("eod", session.trade_date, due, "retry of EOD of %s (%s, attempt %d)"
                   % (label, why, record.attempts + 1), attempt=record.attempts + 1)
        )
    return actions, retry_at


def decide(now: datetime, calendar: TradingCalendar, facts: RunFacts, config) -> Decision:
    """The state at `now` and the work due, each with its reason, and when the next action is."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    now = now.astimezone(calendar.tz)  # market time: sessions and slots are Eastern
    notes: List[str] = []
    today = now.date()
    session = calendar.session(today)
    actions: List[Action] = []
    eod_actions, eod_retry_at = _eod_actions(now, calendar, facts, config, notes)
    actions.extend(eod_actions)

    upcoming_poll = None
    if session is not None:
        poll, upcoming_poll = _poll_action(session, now, facts, config, notes)
        if poll is not None:
            actions.insert(0, poll)  # the snapshot cannot wait; catch-up EODs can
        if now < session.open:
            state = WAITING_FOR_OPEN
        elif now <= session.close:
            state = MARKET_OPEN
        else:
            record = facts.eods.get(session.key)
            if record is not None and record.status in DONE_STATUSES:
                state = MARKET_CLOSED
            elif now < eod_due_at(session, config):
                state = EOD_PENDING
            elif any(a.job == "eod" and a.trade_date == today for a in actions):
                state = EOD_RUNNING
            elif record is not None and record.status == "running":
                state = EOD_RUNNING
            else:
                state = MARKET_CLOSED
    else:
        state = WEEKEND if today.weekday() >= 5 else HOLIDAY

    # When is the next thing to do after this tick's work?
    next_candidates: List[Tuple[datetime, str]] = []
    if upcoming_poll is not None:
        next_candidates.append((upcoming_poll, "poll"))
    if session is not None and eod_due_at(session, config) > now:
        next_candidates.append((eod_due_at(session, config), "eod"))
    if eod_retry_at is not None:
        next_candidates.append((eod_retry_at, "eod"))
    if not next_candidates:
        following = calendar.next_session(today)
        next_candidates.append((poll_slots(following, config)[0], "poll"))
    next_at, next_job = min(next_candidates)
    return Decision(now, state, actions, next_job, next_at.astimezone(calendar.tz), session, notes)


def facts_from_rows(rows, watching_since: Optional[str]) -> RunFacts:
    """Build RunFacts from run_log rows (objects or dicts with job, trade_date, slot, status, ...)."""
    polls: Dict[Tuple[str, str], RunRecord] = {}
    eods: Dict[str, RunRecord] = {}
    for row in rows:
        get = row.get if isinstance(row, dict) else lambda name, row=row: getattr(row, name)
        record = RunRecord(
            status=get("status"),
            attempts=get("attempts") or 0,
            started_at=parse_utc(get("started_at")),
            finished_at=parse_utc(get("finished_at")),
        )
        if get("job") == "poll":
            polls[(get("trade_date"), get("slot"))] = record
        elif get("job") == "eod":
            eods[get("trade_date")] = record
    return RunFacts(polls=polls, eods=eods, watching_since=parse_utc(watching_since))


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _format_et(moment: datetime, calendar: TradingCalendar) -> str:
    return moment.astimezone(calendar.tz).strftime("%Y-%m-%d %H:%M ET")


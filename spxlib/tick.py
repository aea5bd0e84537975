"""One tick: read run_log, decide what is due, claim it, do it, record it.

The tick holds an OS-level lock that dies with its process, so two ticks at once never do the same
work; each piece of work is also claimed by its unique run_log row, so a rerun of the same key
overwrites its row and never duplicates it.
"""
import logging
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, Dict, List, Mapping, Optional

from . import models
from .calendar import TradingCalendar, cache_path_for
from .models import Meta, RunLog, utc_iso
from .scheduler import Action, Decision, RunFacts, decide, facts_from_rows, is_stale, RunRecord

log = logging.getLogger("spx.tick")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass
class JobOutcome:
    """What a job reports: 'ok', 'skipped' or 'failed', and a one-line detail for run_log."""

    status: str
    detail: str = ""


@dataclass
class JobContext:
    """What every job is handed: the tick's `now`, settings, calendar and environment."""

    now: datetime
    config: object
    calendar: TradingCalendar
    environ: Mapping[str, str]


@dataclass
class TickResult:
    decision: Optional[Decision]
    outcomes: List[tuple] = field(default_factory=list)  # (Action, JobOutcome)
    already_running: bool = False
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if any(o.status == "failed" for _, o in self.outcomes) else EXIT_OK

    def to_json(self) -> dict:
        data = self.decision.to_json() if self.decision else {}
        data["dry_run"] = self.dry_run
        data["already_running"] = self.already_running
        data["results"] = [
            {"job": a.job, "trade_date": a.trade_date.isoformat(), "slot": a.slot.isoformat(),
             "status": o.status, "detail": o.detail}
            for a, o in self.outcomes
        ]
        return data


JobFunction = Callable[[Action, JobContext], JobOutcome]


def default_jobs() -> Dict[str, JobFunction]:
    """The poll and EOD jobs; imported only when there is work, so an idle tick stays light."""
    from .eod import eod_job
    from .poll import poll_job

    return {"poll": poll_job, "eod": eod_job}


def facts_window_start(now: datetime, calendar: TradingCalendar, config) -> date:
    """The oldest trade_date the decision can ask about: the catch-up window, with room for holidays."""
    return calendar.local_date(now) - timedelta(days=config.catchup_max_days * 2 + 10)


def read_facts(now: datetime, calendar: TradingCalendar, config) -> RunFacts:
    """The run_log rows the decision needs, from the open database."""
    first = facts_window_start(now, calendar, config).isoformat()
    rows = list(RunLog.select().where(RunLog.trade_date >= first).dicts())
    since = Meta.get_or_none(Meta.key == "watching_since")
    return facts_from_rows(rows, since.value if since else None)


def claim(action: Action, now: datetime, config, force: bool = False) -> bool:
    """Take the work of this action by its unique run_log row; False when someone else has it or it is done."""
    stamp = utc_iso(now)
    with models.db.atomic("IMMEDIATE"):
        row = RunLog.get_or_none(
            (RunLog.job == action.job)
            & (RunLog.trade_date == action.trade_date.isoformat())
            & (RunLog.slot == action.slot_key)
        )
        if row is None:
            RunLog.create(job=action.job, trade_date=action.trade_date.isoformat(), slot=action.slot_key,
                          status="running", attempts=1, started_at=stamp, detail=action.reason)
            return True
        record = RunRecord(row.status, row.attempts, models.parse_utc(row.started_at))
        if row.status in ("ok", "skipped") and not force:
            return False
        if row.status == "running" and not is_stale(record, now, config):
            return False
        row.status = "running"
        row.attempts = (row.attempts or 0) + 1
        row.started_at = stamp
        row.finished_at = None
        row.detail = action.reason
        row.save()
        return True


def finish(action: Action, outcome: JobOutcome, finished_at: datetime) -> None:
    """Record the outcome in the action's run_log row."""
    RunLog.update(status=outcome.status, finished_at=utc_iso(finished_at), detail=outcome.detail[:2000]).where(
        (RunLog.job == action.job)
        & (RunLog.trade_date == action.trade_date.isoformat())
        & (RunLog.slot == action.slot_key)
    ).execute()


def run_action(action: Action, context: JobContext, jobs: Dict[str, JobFunction],
               force: bool = False, clock: Optional[Callable[[], datetime]] = None) -> Optional[JobOutcome]:
    """Claim, run and record one action. None when it could not be claimed."""
    if not claim(action, context.now, context.config, force=force):
        log.info("  %s of %s already taken by another run", action.job, action.trade_date)
        return None
    try:
        outcome = jobs[action.job](action, context)
    except Exception as exc:  # recorded, reported, retried by a later tick
        log.error("  %s failed: %s", action.job.upper(), exc)
        log.debug("traceback", exc_info=True)
        outcome = JobOutcome("failed", "%s: %s" % (type(exc).__name__, exc))
    end = clock() if clock else context.now
    finish(action, outcome, max(end, context.now))
    return outcome


def mark_watching_since(now: datetime) -> None:
    """Remember the first tick: EODs before that day are never backfilled."""
    Meta.insert(key="watching_since", value=utc_iso(now)).on_conflict_ignore().execute()


def run_tick(now: datetime, config, calendar: Optional[TradingCalendar] = None, dry_run: bool = False,
             environ: Optional[Mapping[str, str]] = None,
             jobs: Optional[Dict[str, JobFunction]] = None,
             clock: Optional[Callable[[], datetime]] = None) -> TickResult:
    """Decide and do what is due at `now`. Raises models.StorageError for an unusable database."""
    environ = os.environ if environ is None else environ
    if calendar is None:
        # A real tick keeps the NYSE tables beside its database; a dry run writes nothing anywhere.
        cache = None if dry_run else cache_path_for(config.db_path)
        calendar = TradingCalendar.from_config(config, cache_path=cache)
    if dry_run:
        return _dry_run(now, calendar, config)

    from filelock import FileLock, Timeout

    db_path = config.db_path
    os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
    lock = FileLock(os.path.abspath(db_path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("A tick is already running (lock %s held); nothing to do.", lock.lock_file)
        return TickResult(decision=None, already_running=True)
    try:
        models.open_database(db_path)
        try:
            mark_watching_since(now)
            decision = decide(now, calendar, read_facts(now, calendar, config), config)
            result = TickResult(decision=decision)
            _report_state(decision)
            if decision.actions:
                jobs = jobs or default_jobs()
                context = JobContext(now=now, config=config, calendar=calendar, environ=environ)
                for action in decision.actions:
                    log.info("  Running %s: %s", action.job, action.reason)
                    outcome = run_action(action, context, jobs, clock=clock)
                    if outcome is not None:
                        result.outcomes.append((action, outcome))
                        log.info("  %s %s: %s%s", action.job.upper(), _label(action, calendar),
                                 outcome.status, (" (%s)" % outcome.detail) if outcome.detail else "")
            for note in decision.notes:
                log.info("  Note: %s", note)
            _report_next(decision)
            return result
        finally:
            models.close_database()
    finally:
        lock.release()


def _dry_run(now: datetime, calendar: TradingCalendar, config) -> TickResult:
    """The same decision, reading the database read-only (or not at all when it does not exist)."""
    facts = RunFacts(watching_since=now)
    if os.path.exists(config.db_path):
        models.open_database(config.db_path, readonly=True)
        try:
            facts = read_facts(now, calendar, config)
            if facts.watching_since is None:
                facts = RunFacts(facts.polls, facts.eods, now)
        finally:
            models.close_database()
    decision = decide(now, calendar, facts, config)
    _report_state(decision)
    for action in decision.actions:
        log.info("  Would run %s: %s", action.job, action.reason)
    if not decision.actions:
        log.info("  Nothing due")
    for note in decision.notes:
        log.info("  Note: %s", note)
    _report_next(decision)
    return TickResult(decision=decision, dry_run=True)


def _label(action: Action, calendar: TradingCalendar) -> str:
    if action.job == "poll":
        return "slot %s ET" % action.slot.astimezone(calendar.tz).strftime("%H:%M")
    return action.trade_date.isoformat()


def _report_state(decision: Decision) -> None:
    log.info("[%s ET] State: %s", decision.now.strftime("%Y-%m-%d %H:%M:%S"), decision.state)


def _report_next(decision: Decision) -> None:
    if decision.next_action_at is None:
        return
    at = decision.next_action_at
    when = at.strftime("%H:%M ET") if at.date() == decision.now.date() else at.strftime("%a %Y-%m-%d %H:%M ET")
    what = "poll" if decision.next_action == "poll" else "EOD"
    log.info("Next %s at %s", what, when)

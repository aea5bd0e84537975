"""End of day: a session's final volumes become daily_history, once, whatever happened to the machine.

While the session is the latest one and the next has not opened, one chain snapshot holds its final
day bars ('snapshot'); afterwards they come from the daily aggregates, one request per contract
('aggregates'). All of a session's writes are one transaction: rerunning replaces its rows.
"""
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import models
from .calendar import Session, TradingCalendar
from .detection import premium_price
from .scheduler import Action, eod_due_at
from .tick import JobContext, JobOutcome, run_action

log = logging.getLogger("spx.eod")

PROGRESS_EVERY = 50


class EodRefused(Exception):
    """An EOD asked for by hand cannot run for that date."""


@dataclass(frozen=True)
class FinalBar:
    ticker: str
    root: str
    expiration_date: str
    strike: float
    volume: int
    open_interest: Optional[int]
    close: Optional[float]
    vwap: Optional[float]
    source: str
    watched: bool = True  # False for contracts kept only as tomorrow's baseline (see in_baseline_band)


def snapshot_still_holds(session: Session, now: datetime, calendar: TradingCalendar) -> bool:
    """True while the chain snapshot's day bars are still this session's: the next session has not opened."""
    return now < calendar.next_session(session.trade_date).open


def _contracts_seen(trade_date: date) -> Dict[str, Tuple[str, str, float, Optional[int]]]:
    """Contracts in the session's snapshots: ticker -> (root, expiration, strike, latest open interest)."""
    rows = models.db.connection().execute(
        "SELECT ticker, root, expiration_date, strike, open_interest, MAX(captured_at) FROM intraday_snapshots "
        "WHERE trade_date = ? GROUP BY ticker", (trade_date.isoformat(),))
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def _contracts_watched_before(session: Session, calendar: TradingCalendar):
    """For a session never polled: the contracts of the session before it still alive on this one."""
    previous = calendar.previous_session(session.trade_date).trade_date.isoformat()
    day = session.trade_date.isoformat()
    conn = models.db.connection()
    found = {row[0]: (row[1], row[2], row[3], None) for row in conn.execute(
        "SELECT ticker, root, expiration_date, strike FROM daily_history WHERE trade_date = ? "
        "AND expiration_date >= ?", (previous, day))}
    for row in conn.execute(
            "SELECT DISTINCT ticker, root, expiration_date, strike FROM intraday_snapshots WHERE trade_date = ? "
            "AND expiration_date >= ?", (previous, day)):
        found.setdefault(row[0], (row[1], row[2], row[3], None))
    return found


def snapshot_chain_filter(session: Session, config, seen: Optional[Dict[str, tuple]] = None):
    """The filter of the EOD's chain snapshot (needs the open database).

    The strike window around the session's last polled spot spans the baseline band; it is widened
    to every strike polled that day, so a big intraday move loses none of them. A session never
    polled has no recent spot: no strike window then.
    """
    from .poll import chain_filter_for, last_known_spot

    seen = _contracts_seen(session.trade_date) if seen is None else seen
    chain_filter = chain_filter_for(session.trade_date, config, last_known_spot() if seen else None)
    strikes = [contract[2] for contract in seen.values()]
    if strikes and chain_filter.strike_gte is not None:
        chain_filter = replace(chain_filter, strike_gte=min(chain_filter.strike_gte, min(strikes)),
                               strike_lte=max(chain_filter.strike_lte, max(strikes)))
    return chain_filter


def bars_from_snapshot(session: Session, config, client, calendar: TradingCalendar) -> List[FinalBar]:
    """One chain snapshot: every contract the session polled or watched, and those near the band."""
    from .poll import fetch_chain, in_baseline_band, is_watched

    seen = _contracts_seen(session.trade_date)
    snapshots, _ = fetch_chain(client, snapshot_chain_filter(session, config, seen), config, calendar)
    bars = []
    for s in snapshots:
        watched = s.ticker in seen or is_watched(s, session.trade_date, config)
        if watched or in_baseline_band(s, session.trade_date, config):
            bars.append(FinalBar(s.ticker, s.root, s.expiration_date.isoformat(), s.strike, int(s.volume or 0),
                                 s.open_interest, s.close, s.vwap, "snapshot", watched))
    return bars


def bars_from_aggregates(session: Session, calendar: TradingCalendar, config, client) -> List[FinalBar]:
    """The daily bar of each contract, one paced request per contract, with progress."""
    from .marketdata import NotFoundError

    contracts = _contracts_seen(session.trade_date)
    watched = set(contracts)
    if not contracts:
        contracts = _contracts_watched_before(session, calendar)
        watched = set(contracts)
        log.info("[EOD] %s was never polled: asking for the %d contracts watched the session before",
                 session.key, len(contracts))
    # A reprocessed session keeps every contract its earlier EOD kept (those near the band too).
    for row in models.db.connection().execute(
            "SELECT ticker, root, expiration_date, strike, open_interest FROM daily_history WHERE trade_date = ?",
            (session.key,)):
        contracts.setdefault(row[0], tuple(row[1:]))
    tickers = sorted(contracts)
    if len(tickers) > config.aggregates_max_requests:
        raise RuntimeError("%d contracts need daily bars, more than AGGREGATES_MAX_REQUESTS=%d"
                           % (len(tickers), config.aggregates_max_requests))
    bars = []
    for index, ticker in enumerate(tickers, 1):
        root, expiration, strike, open_interest = contracts[ticker]
        try:
            daily = client.fetch_daily_bars(ticker, session.trade_date, session.trade_date)
        except NotFoundError:
            log.info("[EOD] %s is unknown to the API; left out", ticker)
            continue
        bar = next((b for b in daily if b.trade_date == session.trade_date), None)
        # No bar means no trade that day: the final volume is 0.
        bars.append(FinalBar(ticker, root, expiration, strike, bar.volume if bar else 0, open_interest,
                             bar.close if bar else None, bar.vwap if bar else None, "aggregates",
                             ticker in watched))
        if index % PROGRESS_EVERY == 0 or index == len(tickers):
            log.info("[EOD] Daily bars: %d/%d contracts", index, len(tickers))
    return bars


def retention_cutoff(session: Session, calendar: TradingCalendar, config) -> date:
    """Intraday snapshots of sessions before this date are deleted: INTRADAY_RETENTION_DAYS sessions are kept."""
    day = session.trade_date
    for _ in range(config.intraday_retention_days - 1):
        day = calendar.previous_session(day).trade_date
    return day


def write_history(trade_date: date, bars: Sequence[FinalBar]) -> None:
    conn = models.db.connection()
    day = trade_date.isoformat()
    conn.execute("DELETE FROM daily_history WHERE trade_date = ?", (day,))
    conn.executemany(
        "INSERT INTO daily_history (trade_date, ticker, root, expiration_date, strike, volume, open_interest, "
        "close, vwap, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(day, b.ticker, b.root, b.expiration_date, b.strike, b.volume, b.open_interest, b.close, b.vwap, b.source)
         for b in bars])


def write_summary(trade_date: date, bars: Sequence[FinalBar]) -> None:
    """Per expiration: contracts, total volume and premium, and flagged contracts, for the long-range chart."""
    conn = models.db.connection()
    day = trade_date.isoformat()
    flagged = {row[0] for row in conn.execute("SELECT DISTINCT ticker FROM alerts WHERE trade_date = ?", (day,))}
    totals = defaultdict(lambda: [0, 0, 0.0, 0])
    for b in bars:
        if not b.watched:
            continue
        entry = totals[(b.root, b.expiration_date)]
        entry[0] += 1
        entry[1] += b.volume
        price = premium_price(b.vwap, b.close)
        entry[2] += b.volume * price * 100.0 if price else 0.0
        entry[3] += 1 if b.ticker in flagged else 0
    conn.execute("DELETE FROM session_summary WHERE trade_date = ?", (day,))
    conn.executemany(
        "INSERT INTO session_summary (trade_date, root, expiration_date, contracts, volume, premium, alerts) "
        "VALUES (?,?,?,?,?,?,?)",
        [(day, root, expiration, *values) for (root, expiration), values in sorted(totals.items())])


def consolidate(session: Session, now: datetime, config, calendar: TradingCalendar, client) -> str:
    """Write the session's daily_history and summary and clean up old snapshots, in one transaction."""
    if snapshot_still_holds(session, now, calendar):
        bars = bars_from_snapshot(session, config, client, calendar)
    else:
        bars = bars_from_aggregates(session, calendar, config, client)
    cutoff = retention_cutoff(session, calendar, config).isoformat()
    with models.db.atomic():
        write_history(session.trade_date, bars)
        write_summary(session.trade_date, bars)
        cleaned = models.db.connection().execute(
            "DELETE FROM intraday_snapshots WHERE trade_date < ?", (cutoff,)).rowcount
    source = bars[0].source if bars else "none"
    log.info("[EOD] Consolidated %d contracts to daily_history (%s, source %s)", len(bars), session.key, source)
    log.info("[EOD] Cleaned up %d old intraday records", cleaned)
    return "%d contracts from %s; %d old intraday records cleaned up" % (len(bars), source, cleaned)


def _client_for(context: JobContext):
    from .marketdata import MarketDataClient

    return MarketDataClient(context.config, environ=context.environ)


def eod_job(action: Action, context: JobContext, client_factory: Optional[Callable] = None) -> JobOutcome:
    """The tick's EOD of one session."""
    from .marketdata import MarketDataError

    if not context.config.eod_consolidation_enabled:
        return JobOutcome("skipped", "EOD_CONSOLIDATION_ENABLED is false: intraday data kept")
    session = context.calendar.session(action.trade_date)
    try:
        client = (client_factory or _client_for)(context)
    except MarketDataError as exc:
        return JobOutcome("failed", str(exc))
    try:
        detail = consolidate(session, context.now, context.config, context.calendar, client)
    except MarketDataError as exc:
        log.error("  [EOD] %s failed, nothing written: %s", session.key, exc)
        return JobOutcome("failed", str(exc))
    finally:
        client.close()
    return JobOutcome("ok", detail)


def _parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise EodRefused("%s %r is not a date YYYY-MM-DD" % (option, text)) from None


def sessions_to_reprocess(now: datetime, config, calendar: TradingCalendar, date_text=None,
                          since_text=None) -> List[Session]:
    """The sessions named by --date or --since, or EodRefused saying why a date is not one."""
    today = calendar.local_date(now)
    if date_text:
        day = _parse_day(date_text, "--date")
        session = calendar.session(day)
        if session is None:
            if day.weekday() >= 5:
                raise EodRefused("%s is a %s: there is no session to consolidate" % (day, day.strftime("%A")))
            raise EodRefused("%s is a market holiday (%s): there is no session to consolidate"
                             % (day, calendar.holiday_name(day) or "NYSE closed"))
        due = eod_due_at(session, config)
        if day > today:
            raise EodRefused("%s is in the future" % day)
        if due > now:
            raise EodRefused("the session of %s has not closed yet: its EOD is possible from %s ET"
                             % (day, due.strftime("%H:%M")))
        return [session]
    first = _parse_day(since_text, "--since")
    if first > today:
        raise EodRefused("--since %s is in the future" % first)
    sessions = [s for s in calendar.sessions_between(first, today) if eod_due_at(s, config) <= now]
    if not sessions:
        raise EodRefused("no completed session from %s to now" % first)
    return sessions


def reprocess(now: datetime, config, date_text=None, since_text=None, force=False, dry_run=False,
              environ=None, calendar=None, client_factory=None) -> List[Tuple[str, JobOutcome]]:
    """Consolidate the named sessions by hand; sessions already done are left alone unless forced."""
    calendar = calendar or TradingCalendar.from_config(config)
    environ = os.environ if environ is None else environ
    sessions = sessions_to_reprocess(now, config, calendar, date_text, since_text)
    if dry_run:
        return [(s.key, JobOutcome("skipped", "dry run: would consolidate")) for s in sessions]
    outcomes = []
    models.open_database(config.db_path)
    try:
        context = JobContext(now=now, config=config, calendar=calendar, environ=environ)
        job = (lambda action, ctx: eod_job(action, ctx, client_factory)) if client_factory else eod_job
        for session in sessions:
            action = Action("eod", session.trade_date, eod_due_at(session, config), "EOD by hand")
            outcome = run_action(action, context, {"eod": job}, force=force)
            if outcome is None:
                outcome = JobOutcome("skipped", "already consolidated (or running); use --force to redo it")
            outcomes.append((session.key, outcome))
    finally:
        models.close_database()
    return outcomes

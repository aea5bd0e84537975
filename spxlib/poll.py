"""The poll: fetch the watched part of the SPX put chain, store one snapshot in one transaction,
and run detection on it against the previous trading session."""
import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Callable, Dict, Optional, Tuple

from . import models
from .calendar import TradingCalendar
from .detection import SOURCES, Thresholds, evaluate, find_baselines, premium_price, record_alerts
from .models import utc_iso
from .scheduler import Action, current_slot
from .tick import JobContext, JobOutcome, run_action

log = logging.getLogger("spx.poll")

# The strike window sent to the server is widened by this much around the last known spot, so a
# move of the index since the last poll does not drop contracts that have come into the band.
STRIKE_WINDOW_MARGIN = 0.03

SNAPSHOT_COLUMNS = (
    "trade_date", "captured_at", "ticker", "root", "expiration_date", "strike", "volume", "open_interest",
    "vwap", "close", "implied_volatility", "delta", "underlying_price", "last_price", "midpoint",
    "data_updated_at", "data_timeframe", "baseline_volume", "baseline_source",
)
INSERT_SNAPSHOT = "INSERT OR REPLACE INTO intraday_snapshots (%s) VALUES (%s)" % (
    ", ".join(SNAPSHOT_COLUMNS), ", ".join("?" * len(SNAPSHOT_COLUMNS)))


class PollRefused(Exception):
    """A poll asked for by hand cannot run now."""


@dataclass
class PollReport:
    contracts: int
    expirations: int
    pages: int
    new_alerts: int
    ongoing_alerts: int
    sources: Dict[str, int]


def chain_filter_for(trade_date: date, config, last_spot: Optional[float]):
    """Server-side filters that keep pages few: puts, the DTE window, and the strike band around spot."""
    from .marketdata import ChainFilter

    strike_gte = strike_lte = None
    if last_spot:
        strike_gte = round(config.min_moneyness * last_spot * (1 - STRIKE_WINDOW_MARGIN), 2)
        strike_lte = round(config.max_moneyness * last_spot * (1 + STRIKE_WINDOW_MARGIN), 2)
    return ChainFilter(
        contract_type="put",
        expiration_gte=trade_date + timedelta(days=config.min_dte),
        expiration_lte=trade_date + timedelta(days=config.max_dte),
        strike_gte=strike_gte,
        strike_lte=strike_lte,
    )


def chain_requests_for(chain_filter, config, calendar: TradingCalendar) -> list:
    """The filters to send. The API cannot filter by root, and SPXW (dailies and weeklies) holds most
    expirations: when only the SPX monthlies are watched, ask for each monthly expiry date alone, so
    the SPXW of other dates is never sent (on a real chain, ~6 requests a poll instead of ~40)."""
    if tuple(config.expiration_roots) != ("SPX",):
        return [chain_filter]
    return [replace(chain_filter, expiration_gte=expiry, expiration_lte=expiry)
            for expiry in calendar.monthly_expirations_between(chain_filter.expiration_gte,
                                                                chain_filter.expiration_lte)]


def fetch_chain(client, chain_filter, config, calendar: TradingCalendar):
    """Every contract the filter asks for, in as few pages as the roots allow. Returns (snapshots, pages)."""
    snapshots, pages = [], 0
    for request in chain_requests_for(chain_filter, config, calendar):
        result = client.fetch_chain("I:SPX", request)
        snapshots.extend(result.snapshots)
        pages += result.pages
    return snapshots, pages


@dataclass(frozen=True)
class WatchedUniverse:
    """The settings is_watched() reads, read once: a poll asks it of every contract of the chain, and
    a Config's attributes are slow to read ten thousand times."""

    expiration_roots: Tuple[str, ...]
    min_dte: int
    max_dte: int
    min_moneyness: float
    max_moneyness: float

    @classmethod
    def from_config(cls, config) -> "WatchedUniverse":
        return cls(config.expiration_roots, config.min_dte, config.max_dte, config.min_moneyness,
                   config.max_moneyness)


def _in_band(snapshot, trade_date: date, config, low: float, high: float) -> bool:
    if snapshot.contract_type != "put" or snapshot.root not in config.expiration_roots:
        return False
    days = (snapshot.expiration_date - trade_date).days
    if not config.min_dte <= days <= config.max_dte:
        return False
    spot = snapshot.underlying_price
    return bool(spot) and low <= snapshot.strike / spot <= high


def is_watched(snapshot, trade_date: date, config) -> bool:
    """Puts of the configured roots, out of the money within the moneyness band, within the DTE window.

    config: the settings, or a WatchedUniverse read from them once.
    """
    return (snapshot.underlying_price is not None and snapshot.strike < snapshot.underlying_price
            and _in_band(snapshot, trade_date, config, config.min_moneyness, config.max_moneyness))


def in_baseline_band(snapshot, trade_date: date, config) -> bool:
    """Watched, or near enough the band that a move of the index can bring it in by the next session.

    The EOD keeps these contracts' final volumes too, so a put that enters the band after a drop
    (exactly when hedging surges) has an 'eod' baseline instead of none.
    """
    return _in_band(snapshot, trade_date, config, config.min_moneyness * (1 - STRIKE_WINDOW_MARGIN),
                    config.max_moneyness * (1 + STRIKE_WINDOW_MARGIN))


def last_known_spot() -> Optional[float]:
    row = models.db.connection().execute(
        "SELECT underlying_price FROM intraday_snapshots WHERE underlying_price IS NOT NULL "
        "ORDER BY captured_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def take_snapshot(now: datetime, trade_date: date, config, calendar: TradingCalendar, client) -> PollReport:
    """Fetch, store and detect. Nothing is stored unless every page arrived and parsed."""
    snapshots, pages = fetch_chain(client, chain_filter_for(trade_date, config, last_known_spot()), config,
                                   calendar)
    universe = WatchedUniverse.from_config(config)
    watched = [s for s in snapshots if is_watched(s, trade_date, universe)]
    expirations = sorted({s.expiration_date for s in watched})
    log.info("[POLL] Found %d expirations, %d contracts (%d pages)", len(expirations), len(watched), pages)

    previous = calendar.previous_session(trade_date).trade_date
    stamp = utc_iso(now)
    day = trade_date.isoformat()
    thresholds = Thresholds.from_config(config)
    updated_texts: Dict[datetime, str] = {}  # a chain's contracts share a few update times
    with models.db.atomic():
        baselines = find_baselines([s.ticker for s in watched], now, previous, config)
        evaluations = []
        rows = []
        for s in watched:
            baseline = baselines[s.ticker]
            price = premium_price(s.vwap, s.close, s.last_price, s.midpoint)
            evaluations.append(evaluate(s.ticker, s.volume, baseline, price, thresholds))
            updated = None
            if s.data_updated_at:
                updated = updated_texts.get(s.data_updated_at)
                if updated is None:
                    updated = updated_texts[s.data_updated_at] = utc_iso(s.data_updated_at)
            rows.append((
                day, stamp, s.ticker, s.root, s.expiration_date.isoformat(), s.strike, s.volume, s.open_interest,
                s.vwap, s.close, s.implied_volatility, s.delta, s.underlying_price, s.last_price, s.midpoint,
                updated, s.timeframe, baseline.volume, baseline.source,
            ))
        models.db.connection().executemany(INSERT_SNAPSHOT, rows)
        # record_alerts reads the contract details of flagged contracts only.
        info = {s.ticker: (s.root, s.expiration_date.isoformat(), s.strike)
                for s, evaluation in zip(watched, evaluations) if evaluation.flags}
        new, ongoing = record_alerts(trade_date, now, evaluations, info)
    sources = Counter(e.baseline.source for e in evaluations)
    log.info("[DETECTION] %d anomalies detected (%d new, %d ongoing)", new + ongoing, new, ongoing)
    log.info("[DETECTION] Baselines vs %s: %s", previous.isoformat(),
             ", ".join("%s %d" % (source, sources.get(source, 0)) for source in SOURCES))
    if watched and sources.get("aligned", 0) < len(watched):
        log.info("[DETECTION] %d of %d contracts have no time-aligned baseline: the comparison is thin",
                 len(watched) - sources.get("aligned", 0), len(watched))
    return PollReport(len(watched), len(expirations), pages, new, ongoing, dict(sources))


def _client_for(context: JobContext):
    from .marketdata import MarketDataClient

    return MarketDataClient(context.config, environ=context.environ)


def poll_job(action: Action, context: JobContext, client_factory: Optional[Callable] = None) -> JobOutcome:
    """The tick's poll: one snapshot for the action's slot."""
    from .marketdata import MarketDataError

    try:
        client = (client_factory or _client_for)(context)
    except MarketDataError as exc:
        return JobOutcome("failed", str(exc))
    try:
        report = take_snapshot(context.now, action.trade_date, context.config, context.calendar, client)
    except MarketDataError as exc:
        log.error("  [POLL] failed, nothing stored: %s", exc)
        return JobOutcome("failed", str(exc))
    finally:
        client.close()
    return JobOutcome("ok", "%d contracts, %d expirations, %d pages, %d new and %d ongoing anomalies"
                      % (report.contracts, report.expirations, report.pages, report.new_alerts,
                         report.ongoing_alerts))


def poll_now(now: datetime, config, force: bool = False, environ=None, calendar=None) -> JobOutcome:
    """A poll asked for by hand: the current slot, or with --force any time (the latest session's data)."""
    import os

    calendar = calendar or TradingCalendar.from_config(config)
    environ = os.environ if environ is None else environ
    local = now.astimezone(calendar.tz)
    session = calendar.session(local.date())
    slot = current_slot(session, local, config)[0] if session else None
    if slot is None and not force:
        raise PollRefused(
            "no poll slot is open at %s ET (sessions poll from open + %d min to the close); use --force to poll anyway"
            % (local.strftime("%Y-%m-%d %H:%M"), config.poll_start_delay_minutes))
    if slot is not None:
        action = Action("poll", session.trade_date, slot, "poll by hand")
    else:
        trade_date = calendar.latest_session_on_or_before(local.date()).trade_date
        action = Action("poll", trade_date, local, "forced poll by hand outside a slot")
    models.open_database(config.db_path)
    try:
        context = JobContext(now=now, config=config, calendar=calendar, environ=environ)
        outcome = run_action(action, context, {"poll": poll_job}, force=force)
    finally:
        models.close_database()
    if outcome is None:
        raise PollRefused("slot %s ET already has a poll (or one is running); use --force to poll again"
                          % slot.strftime("%H:%M"))
    return outcome

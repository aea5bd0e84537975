"""Time-aligned day-over-day detection: each contract's volume now against the previous trading
session at the same Eastern time of day, with three flags and floors on volume and premium."""
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import models
from .models import utc_iso

FLAGS = ("delta", "multiplier", "dormancy")
SOURCES = ("aligned", "latest", "eod", "none")
SQL_CHUNK = 500  # SQLite's bound-variable limit is 999 on old builds


@dataclass(frozen=True)
class Baseline:
    volume: Optional[int]
    source: str  # 'aligned' | 'latest' | 'eod' | 'none'


@dataclass(frozen=True)
class Evaluation:
    """What detection concluded for one contract at one poll."""

    ticker: str
    volume: int
    baseline: Baseline
    price: Optional[float]
    premium: float
    flags: Tuple[str, ...]


@dataclass(frozen=True)
class Thresholds:
    """The settings evaluate() reads, read once: a poll evaluates every watched contract, and a
    Config's attributes are slow to read ten thousand times."""

    volume_floor: int
    premium_floor: float
    delta_threshold: int
    multiplier_threshold: float
    dormancy_threshold: int

    @classmethod
    def from_config(cls, config) -> "Thresholds":
        return cls(config.volume_floor, config.premium_floor, config.delta_threshold,
                   config.multiplier_threshold, config.dormancy_threshold)


def premium_price(vwap=None, close=None, last_price=None, midpoint=None) -> Optional[float]:
    """The price of the premium: the day VWAP, else the day close, else the last trade, else the quote midpoint."""
    for value in (vwap, close, last_price, midpoint):
        if value is not None and value > 0:
            return float(value)
    return None


def evaluate(ticker: str, volume: Optional[int], baseline: Baseline, price: Optional[float], config) -> Evaluation:
    """The flags one contract raises. Thresholds are strict: a value exactly at a threshold does not flag.

    config: the settings, or Thresholds read from them once.
    """
    volume = int(volume or 0)
    premium = volume * price * 100.0 if price else 0.0
    flags: List[str] = []
    passes_floors = volume >= config.volume_floor and premium >= config.premium_floor
    if passes_floors and baseline.source != "none" and baseline.volume is not None:
        base = baseline.volume
        if volume - base > config.delta_threshold:
            flags.append("delta")
        if base > 0 and volume > config.multiplier_threshold * base:
            flags.append("multiplier")
        if base == 0 and volume > config.dormancy_threshold:
            flags.append("dormancy")
    return Evaluation(ticker, volume, baseline, price, premium, tuple(flags))


def _chunks(items: Sequence, size: int = SQL_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def find_baselines(tickers: Sequence[str], at: datetime, previous_trade_date: date, config) -> Dict[str, Baseline]:
    """Baselines for every ticker in a few set-based queries (not one per contract).

    aligned: the previous session's snapshot nearest to `at`'s Eastern time of day, within
    BASELINE_TOLERANCE_MINUTES; latest: that session's last snapshot; eod: its daily_history row.
    """
    conn = models.db.connection()
    previous = previous_trade_date.isoformat()
    from zoneinfo import ZoneInfo

    eastern = ZoneInfo(config.timezone)
    local = at.astimezone(eastern)
    # The same wall-clock time on the previous session, converted back to UTC for the stored times.
    target = datetime.combine(previous_trade_date, local.time(), tzinfo=eastern)
    tolerance = timedelta(minutes=config.baseline_tolerance_minutes)
    low, high = utc_iso(target - tolerance), utc_iso(target + tolerance)
    found: Dict[str, Baseline] = {}
    wanted = set(tickers)

    times = [row[0] for row in conn.execute(
        "SELECT DISTINCT captured_at FROM intraday_snapshots WHERE captured_at BETWEEN ? AND ?", (low, high))]
    times.sort(key=lambda text: abs((models.parse_utc(text) - target).total_seconds()))
    if times:
        # Nearest poll first: in the usual case it holds every contract and one query suffices.
        for row in conn.execute(
                "SELECT ticker, volume FROM intraday_snapshots WHERE captured_at = ? AND trade_date = ?",
                (times[0], previous)):
            if row[0] in wanted:
                found[row[0]] = Baseline(row[1] or 0, "aligned")
        missing = [t for t in tickers if t not in found]
        if missing and len(times) > 1:
            rank = {text: index for index, text in enumerate(times)}
            for chunk in _chunks(missing):
                marks = ",".join("?" * len(chunk))
                best: Dict[str, Tuple[int, int]] = {}
                for ticker, volume, captured in conn.execute(
                        "SELECT ticker, volume, captured_at FROM intraday_snapshots WHERE trade_date = ? "
                        "AND captured_at BETWEEN ? AND ? AND ticker IN (%s)" % marks, (previous, low, high, *chunk)):
                    order = rank.get(captured, len(times))
                    if ticker not in best or order < best[ticker][0]:
                        best[ticker] = (order, volume or 0)
                for ticker, (_, volume) in best.items():
                    found[ticker] = Baseline(volume, "aligned")

    missing = [t for t in tickers if t not in found]
    for chunk in _chunks(missing):
        marks = ",".join("?" * len(chunk))
        # SQLite returns the row holding MAX(captured_at) for the bare column `volume`.
        for ticker, volume, _ in conn.execute(
                "SELECT ticker, volume, MAX(captured_at) FROM intraday_snapshots WHERE trade_date = ? "
                "AND ticker IN (%s) GROUP BY ticker" % marks, (previous, *chunk)):
            found[ticker] = Baseline(volume or 0, "latest")

    missing = [t for t in tickers if t not in found]
    for chunk in _chunks(missing):
        marks = ",".join("?" * len(chunk))
        for ticker, volume in conn.execute(
                "SELECT ticker, volume FROM daily_history WHERE trade_date = ? AND ticker IN (%s)" % marks,
                (previous, *chunk)):
            found[ticker] = Baseline(volume or 0, "eod")

    nothing = Baseline(None, "none")  # one shared instance: setdefault would build one per ticker
    for ticker in tickers:
        found.setdefault(ticker, nothing)
    return found


def record_alerts(trade_date: date, captured_at: datetime, evaluations: Sequence[Evaluation],
                  contract_info: Dict[str, tuple]) -> Tuple[int, int]:
    """Upsert one alerts row per (trade_date, ticker, flag): first_seen_at kept, the rest updated.

    Returns (new, ongoing) counts of flagged contracts. Runs inside the caller's transaction.
    """
    conn = models.db.connection()
    day = trade_date.isoformat()
    stamp = utc_iso(captured_at)
    flagged = [e for e in evaluations if e.flags]
    existing = set()
    for chunk in _chunks([e.ticker for e in flagged]):
        marks = ",".join("?" * len(chunk))
        existing.update(row[0] for row in conn.execute(
            "SELECT DISTINCT ticker FROM alerts WHERE trade_date = ? AND ticker IN (%s)" % marks, (day, *chunk)))
    rows = []
    for e in flagged:
        root, expiration, strike = contract_info.get(e.ticker, (None, None, None))
        for flag in e.flags:
            rows.append((day, e.ticker, flag, e.volume, e.baseline.volume, e.baseline.source, e.premium,
                         stamp, stamp, root, expiration, strike))
    conn.executemany(
        "INSERT INTO alerts (trade_date, ticker, flag, volume, baseline_volume, baseline_source, premium, "
        "first_seen_at, last_seen_at, root, expiration_date, strike) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT (trade_date, ticker, flag) DO UPDATE SET volume = excluded.volume, "
        "baseline_volume = excluded.baseline_volume, baseline_source = excluded.baseline_source, "
        "premium = excluded.premium, last_seen_at = excluded.last_seen_at",
        rows,
    )
    new = sum(1 for e in flagged if e.ticker not in existing)
    return new, len(flagged) - new

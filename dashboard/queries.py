"""Read-only queries behind the dashboard's API.

Each function takes an open sqlite3 connection and returns plain dicts ready for JSON. Queries are
set-based and follow the schema's indexes: a day's last poll is found through (captured_at, ticker),
the day's other polls through (trade_date, ticker, captured_at), a contract's history through
daily_history's (ticker, trade_date); so the cost of a request grows with one day's watched chain,
not with the months kept in the file.
"""
import sqlite3
from datetime import date, datetime, time, timedelta
from typing import Any, Dict, Iterable, List, Optional
from zoneinfo import ZoneInfo

from spxlib.models import parse_utc, utc_iso

# The latest snapshot of every contract polled on the day, taken per ticker: a contract that left the
# watched band before the day's last poll still moved today. The rows of the day's last poll come
# straight from the unique (captured_at, ticker) index; only when some contracts of the day are
# missing from it does a GROUP BY over the covering (trade_date, ticker, captured_at) index find
# their latest rows. The inner query sorts and limits on rowids, so derived figures are computed for
# the rows returned only. `<>` rather than `<` stays right even for a capture later than :last;
# the unary `+` on trade_date keeps the planner on the captured_at index (10k rows, not the day's 130k).
_AT_LAST = """
    SELECT s.rowid AS id, s.ticker AS ticker, s.volume AS volume, {change} AS volume_change,
           s.expiration_date AS expiration_date, s.strike AS strike
    FROM intraday_snapshots AS s
    WHERE s.captured_at = :last AND +s.trade_date = :day
      AND (:expiration IS NULL OR s.expiration_date = :expiration)
"""
_EARLIER = """
    UNION ALL
    SELECT s.rowid, s.ticker, s.volume, {change}, s.expiration_date, s.strike
    FROM (
        SELECT ticker, MAX(captured_at) AS captured_at
        FROM intraday_snapshots
        WHERE trade_date = :day
        GROUP BY ticker
        HAVING MAX(captured_at) <> :last
    ) AS earlier
    JOIN intraday_snapshots AS s ON s.captured_at = earlier.captured_at AND s.ticker = earlier.ticker
    WHERE (:expiration IS NULL OR s.expiration_date = :expiration)
"""
_LATEST = """
SELECT {columns}
FROM ({picked} ORDER BY {order} {limit}) AS picked
JOIN intraday_snapshots AS s ON s.rowid = picked.id
ORDER BY {outer_order}
"""

# The premium's price: the session's VWAP when the feed has one, else close, last trade, midpoint.
_PRICE = "COALESCE(s.vwap, s.close, s.last_price, s.midpoint)"
# A missing baseline (source 'none') counts as zero: all of the volume is new.
_CHANGE = "COALESCE(s.volume, 0) - COALESCE(s.baseline_volume, 0)"

# Derived figures are computed by SQLite, so Python only builds the dicts.
_CONTRACT_COLUMNS = """
    s.ticker, s.root, s.expiration_date, s.strike, s.captured_at, s.volume, s.baseline_volume,
    s.baseline_source, picked.volume_change,
    CASE WHEN s.baseline_volume > 0
         THEN ROUND(CAST(COALESCE(s.volume, 0) AS REAL) / s.baseline_volume, 4) END AS ratio,
    {price} AS price,
    ROUND(COALESCE(s.volume, 0) * {price} * 100, 2) AS premium,
    s.underlying_price,
    CASE WHEN s.underlying_price > 0 THEN ROUND(s.strike / s.underlying_price, 4) END AS moneyness,
    CAST(julianday(s.expiration_date) - julianday(:day) AS INTEGER) AS dte,
    s.implied_volatility, s.delta, s.open_interest
""".format(price=_PRICE)


def _rows(cursor: sqlite3.Cursor) -> List[Dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def latest_trade_date(conn: sqlite3.Connection) -> Optional[str]:
    """The newest session date with snapshots (else with daily history), or None in an empty file."""
    # MAX over an index prefix is a single seek.
    day = conn.execute("SELECT MAX(trade_date) FROM intraday_snapshots").fetchone()[0]
    if day is None:
        day = conn.execute("SELECT MAX(trade_date) FROM daily_history").fetchone()[0]
    return day


def last_capture(conn: sqlite3.Connection, day: str, tz: ZoneInfo) -> Optional[str]:
    """The UTC time of the day's last poll, or None when nothing was polled that day."""
    # A session's captures lie within its Eastern calendar day: searching that UTC range of the
    # (captured_at, ticker) index backwards finds the last one in a single step.
    first = datetime.combine(date.fromisoformat(day), time(0), tzinfo=tz)
    following = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(0), tzinfo=tz)
    found = conn.execute(
        "SELECT MAX(captured_at) FROM intraday_snapshots "
        "WHERE captured_at >= ? AND captured_at < ? AND +trade_date = ?",
        (utc_iso(first), utc_iso(following), day),
    ).fetchone()[0]
    if found is None:
        # Rows written with a capture time outside their session day: slower, still right.
        found = conn.execute(
            "SELECT MAX(captured_at) FROM intraday_snapshots WHERE trade_date = ?", (day,)
        ).fetchone()[0]
    return found


def flags_by_ticker(conn: sqlite3.Connection, day: str,
                    tickers: Optional[Iterable[str]] = None) -> Dict[str, List[str]]:
    """The alert flags of the day, by ticker (sorted: 'delta', 'dormancy', 'multiplier')."""
    flags: Dict[str, List[str]] = {}
    for ticker, flag in conn.execute(
        "SELECT ticker, flag FROM alerts WHERE trade_date = ? ORDER BY ticker, flag", (day,)
    ):
        flags.setdefault(ticker, []).append(flag)
    if tickers is not None:
        wanted = set(tickers)
        flags = {ticker: value for ticker, value in flags.items() if ticker in wanted}
    return flags


def _has_earlier_only(conn: sqlite3.Connection, day: str, last: str) -> bool:
    """Whether some contract of the day is missing from its last poll (it left the watched band)."""
    polled = conn.execute(
        "SELECT COUNT(DISTINCT ticker) FROM intraday_snapshots WHERE trade_date = ?", (day,)
    ).fetchone()[0]
    at_last = conn.execute(
        "SELECT COUNT(*) FROM intraday_snapshots WHERE captured_at = ?", (last,)
    ).fetchone()[0]
    return polled > at_last


def _latest_sql(columns: str, order: str, earlier: bool, limit: bool) -> str:
    picked = _AT_LAST.format(change=_CHANGE) + (_EARLIER.format(change=_CHANGE) if earlier else "")
    outer_order = ", ".join("picked." + term.strip() for term in order.split(","))
    return _LATEST.format(columns=columns, picked=picked, order=order, outer_order=outer_order,
                          limit="LIMIT :limit" if limit else "")


def _latest(conn: sqlite3.Connection, day: str, tz: ZoneInfo, expiration: Optional[str], order: str,
            limit: Optional[int] = None) -> List[Dict[str, Any]]:
    last = last_capture(conn, day, tz)
    if last is None:
        return []
    sql = _latest_sql(_CONTRACT_COLUMNS, order, _has_earlier_only(conn, day, last), limit is not None)
    params: Dict[str, Any] = {"day": day, "last": last, "expiration": expiration, "limit": limit}
    rows = _rows(conn.execute(sql, params))
    flags = flags_by_ticker(conn, day)
    for row in rows:
        row["flags"] = flags.get(row["ticker"], [])
    return rows


def enriched(conn: sqlite3.Connection, day: str, tz: ZoneInfo,
             expiration: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every watched contract's latest snapshot of the day with its baseline and derived figures.

    Ordered by ticker, which for OCC tickers is root, expiration, then strike, and is the order of
    the (captured_at, ticker) index: no sort step for the day's full chain.
    """
    return _latest(conn, day, tz, expiration, "ticker")


def movers(conn: sqlite3.Connection, day: str, tz: ZoneInfo, expiration: Optional[str],
           limit: int) -> List[Dict[str, Any]]:
    """The contracts whose volume rose most over their baseline, largest rise first."""
    return _latest(conn, day, tz, expiration,
                   "volume_change DESC, volume DESC, ticker", limit)


def expirations(conn: sqlite3.Connection, day: str, tz: ZoneInfo) -> List[Dict[str, Any]]:
    """The day's expirations with their contract counts, volumes, premium and alerted contracts."""
    last = last_capture(conn, day, tz)
    if last is None:
        return []
    columns = (
        "s.expiration_date AS expiration_date, s.root AS root, COALESCE(s.volume, 0) AS volume, "
        "COALESCE(s.baseline_volume, 0) AS baseline_volume, "
        "COALESCE(s.volume, 0) * {price} * 100 AS premium".format(price=_PRICE)
    )
    contracts = _latest_sql(columns, "id", _has_earlier_only(conn, day, last), False)
    sql = (
        "SELECT expiration_date, GROUP_CONCAT(DISTINCT root) AS roots, COUNT(*) AS contracts, "
        "SUM(volume) AS volume, SUM(baseline_volume) AS baseline_volume, "
        "SUM(volume) - SUM(baseline_volume) AS volume_change, ROUND(SUM(premium), 2) AS premium, "
        "CAST(julianday(expiration_date) - julianday(:day) AS INTEGER) AS dte "
        "FROM (" + contracts + ") GROUP BY expiration_date ORDER BY expiration_date"
    )
    rows = _rows(conn.execute(sql, {"day": day, "last": last, "expiration": None}))
    alerted = dict(conn.execute(
        "SELECT expiration_date, COUNT(DISTINCT ticker) FROM alerts WHERE trade_date = ? "
        "GROUP BY expiration_date", (day,)
    ).fetchall())
    for row in rows:
        row["roots"] = sorted((row["roots"] or "").split(","))
        row["alerted_contracts"] = alerted.get(row["expiration_date"], 0)
    return rows


def alerts(conn: sqlite3.Connection, day: str, expiration: Optional[str] = None) -> List[Dict[str, Any]]:
    """The day's alert rows, largest premium first."""
    rows = _rows(conn.execute(
        "SELECT ticker, flag, root, expiration_date, strike, volume, baseline_volume, baseline_source, "
        "premium, first_seen_at, last_seen_at FROM alerts "
        "WHERE trade_date = :day AND (:expiration IS NULL OR expiration_date = :expiration) "
        "ORDER BY premium DESC, ticker, flag",
        {"day": day, "expiration": expiration},
    ))
    for row in rows:
        baseline = row["baseline_volume"]
        row["ratio"] = round(row["volume"] / baseline, 4) if baseline else None
    return rows


def _time_of_day(captured_at: str, tz: ZoneInfo) -> str:
    moment = parse_utc(captured_at)
    return moment.astimezone(tz).strftime("%H:%M") if moment else None


def _intraday_points(conn: sqlite3.Connection, ticker: str, day: Optional[str], tz: ZoneInfo) -> List[Dict]:
    if day is None:
        return []
    points = _rows(conn.execute(
        "SELECT captured_at, volume, baseline_volume, baseline_source FROM intraday_snapshots "
        "WHERE trade_date = ? AND ticker = ? ORDER BY captured_at", (day, ticker),
    ))
    for point in points:
        # Eastern time of day, so today and the previous session line up on one axis.
        point["time_et"] = _time_of_day(point["captured_at"], tz)
    return points


def history(conn: sqlite3.Connection, ticker: str, day: str, previous: str, sessions: int,
            tz: ZoneInfo) -> Optional[Dict]:
    """A contract's daily volumes for the last `sessions` sessions up to `day`, and its intraday
    cumulative volume on `day` and on `previous` (the session before). None when the file knows
    nothing of it."""
    daily = _rows(conn.execute(
        "SELECT trade_date, volume, open_interest, close, vwap, source, root, expiration_date, strike "
        "FROM daily_history WHERE ticker = ? AND trade_date <= ? ORDER BY trade_date DESC LIMIT ?",
        (ticker, day, sessions),
    ))
    daily.reverse()
    today_points = _intraday_points(conn, ticker, day, tz)
    previous_points = _intraday_points(conn, ticker, previous, tz)
    if not daily and not today_points and not previous_points:
        return None
    contract = None
    if today_points or previous_points:
        captured_at = (today_points or previous_points)[-1]["captured_at"]
        contract = _rows(conn.execute(
            "SELECT root, expiration_date, strike FROM intraday_snapshots WHERE captured_at = ? AND ticker = ?",
            (captured_at, ticker),
        ))[0]
    else:
        contract = {key: daily[-1][key] for key in ("root", "expiration_date", "strike")}
    for row in daily:
        del row["root"], row["expiration_date"], row["strike"]
    return {
        "ticker": ticker,
        "date": day,
        "previous_date": previous,
        "contract": contract,
        "flags": flags_by_ticker(conn, day, [ticker]).get(ticker, []),
        "daily": daily,
        "intraday": {"today": today_points, "previous": previous_points},
    }


def summary(conn: sqlite3.Connection, last_day: Optional[str], sessions: int) -> List[Dict[str, Any]]:
    """Per-session totals (and per expiration) from session_summary, oldest first."""
    if last_day is None:
        last_day = "9999-12-31"
    # DISTINCT trade_date walks the (trade_date, root, expiration_date) index backwards.
    rows = _rows(conn.execute(
        "SELECT trade_date, root, expiration_date, contracts, volume, premium, alerts FROM session_summary "
        "WHERE trade_date >= (SELECT MIN(trade_date) FROM (SELECT DISTINCT trade_date FROM session_summary "
        "  WHERE trade_date <= :last ORDER BY trade_date DESC LIMIT :sessions)) "
        "AND trade_date <= :last ORDER BY trade_date, root, expiration_date",
        {"last": last_day, "sessions": sessions},
    ))
    by_day: Dict[str, Dict[str, Any]] = {}
    for row in rows:
        session = by_day.get(row["trade_date"])
        if session is None:
            session = by_day[row["trade_date"]] = {
                "trade_date": row["trade_date"], "contracts": 0, "volume": 0, "premium": 0.0, "alerts": 0,
                "expirations": [],
            }
        for key in ("contracts", "volume", "premium", "alerts"):
            session[key] += row[key] or 0
        session["expirations"].append({key: row[key] for key in (
            "root", "expiration_date", "contracts", "volume", "premium", "alerts")})
    for session in by_day.values():
        session["premium"] = round(session["premium"], 2)
    return list(by_day.values())

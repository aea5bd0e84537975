"""A small, fully known database for the dashboard tests: two sessions of polls and one hostile ticker.

Sessions: PREVIOUS (Wed 2025-12-03) and TODAY (Thu 2025-12-04), four polls each at 09:45, 10:15,
10:45 and 11:15 Eastern (14:45Z..16:15Z: December is UTC-5). Every number below is computed from a
formula so tests can assert exact values; ``expected_*`` helpers repeat the formulas in one place.
"""
from datetime import date, datetime, timedelta, timezone
from typing import Dict, List

from spxlib import models

PREVIOUS = "2025-12-03"
TODAY = "2025-12-04"
POLL_TIMES_UTC = ("14:45", "15:15", "15:45", "16:15")  # 09:45..11:15 Eastern
LAST_POLL_TODAY = TODAY + "T16:15:00Z"
UNDERLYING = 6850.0

DEC = "2025-12-19"
JAN = "2026-01-16"
WEEKLY = "2025-12-12"
STRIKES = tuple(range(5000, 6600, 100))  # 16 strikes per monthly expiration

# A ticker a data feed could never send, to prove the page inserts every string as text.
HOSTILE_TICKER = 'O:SPX<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
# Seen in the first three polls of TODAY only: it left the watched band before the last poll.
DROPPED_TICKER = "O:SPX251219P04900000"
# Thin baselines, one of each kind that is not 'aligned'.
THIN = {
    "O:SPX251219P05500000": "latest",
    "O:SPX251219P05600000": "eod",
    "O:SPX260116P06500000": "none",
}


def ticker_for(root: str, expiration: str, strike: float) -> str:
    """The OCC-style ticker of an SPX put."""
    day = date.fromisoformat(expiration)
    return "O:%s%sP%08d" % (root, day.strftime("%y%m%d"), int(round(strike * 1000)))


def contracts() -> List[Dict]:
    """Every contract of the seed: root, expiration, strike and ticker."""
    rows = []
    for expiration in (DEC, JAN):
        for strike in STRIKES:
            rows.append({"root": "SPX", "expiration_date": expiration, "strike": float(strike),
                         "ticker": ticker_for("SPX", expiration, strike)})
    rows.append({"root": "SPXW", "expiration_date": WEEKLY, "strike": 6200.0,
                 "ticker": ticker_for("SPXW", WEEKLY, 6200)})
    rows.append({"root": "SPX", "expiration_date": JAN, "strike": 5950.0, "ticker": HOSTILE_TICKER})
    rows.append({"root": "SPX", "expiration_date": DEC, "strike": 4900.0, "ticker": DROPPED_TICKER})
    return rows


def base_volume(contract: Dict) -> int:
    """Cumulative volume of the previous session's last poll."""
    return int(contract["strike"]) // 10  # 490..650


def volume_at(contract: Dict, trade_date: str, poll_index: int) -> int:
    """Cumulative volume at a poll (0-based): today's volumes grow faster for a few contracts."""
    base = base_volume(contract)
    fraction = (poll_index + 1) / len(POLL_TIMES_UTC)
    if trade_date == PREVIOUS:
        return int(base * fraction)
    multiplier = 1.0
    if contract["ticker"] == ticker_for("SPX", DEC, 6000):
        multiplier = 8.0  # the top mover
    elif contract["ticker"] == HOSTILE_TICKER:
        multiplier = 6.0  # second
    elif contract["ticker"] == ticker_for("SPX", JAN, 5200):
        multiplier = 4.0  # third
    elif contract["ticker"] == ticker_for("SPXW", WEEKLY, 6200):
        multiplier = 3.0
    return int(base * fraction * multiplier) + 10


def price_of(contract: Dict) -> float:
    return round(contract["strike"] / 1000.0, 2)  # 4.9..6.5 dollars


def seed(db_path: str) -> None:
    """Create the schema in db_path and fill it with the two sessions; closes the database."""
    models.open_database(db_path)
    try:
        with models.db.atomic():
            _seed_snapshots()
            _seed_alerts()
            _seed_daily_history()
            _seed_session_summary()
            _seed_run_log()
    finally:
        models.close_database()


def _seed_snapshots() -> None:
    rows = []
    for trade_date in (PREVIOUS, TODAY):
        for index, hhmm in enumerate(POLL_TIMES_UTC):
            captured_at = "%sT%s:00Z" % (trade_date, hhmm)
            for contract in contracts():
                if contract["ticker"] == DROPPED_TICKER and trade_date == TODAY and index == 3:
                    continue
                baseline, source = None, None
                if trade_date == TODAY:
                    baseline, source = volume_at(contract, PREVIOUS, index), "aligned"
                    source = THIN.get(contract["ticker"], source)
                    if source == "none":
                        baseline = None
                price = price_of(contract)
                # Price sources vary so the premium's fallback order is exercised.
                vwap = close = last_price = None
                if contract["strike"] == 5100:
                    close = price
                elif contract["strike"] == 5200 and contract["expiration_date"] == DEC:
                    last_price = price
                else:
                    vwap = price
                rows.append({
                    "trade_date": trade_date, "captured_at": captured_at, "ticker": contract["ticker"],
                    "root": contract["root"], "expiration_date": contract["expiration_date"],
                    "strike": contract["strike"], "volume": volume_at(contract, trade_date, index),
                    "open_interest": 1000 + int(contract["strike"]) // 100, "vwap": vwap, "close": close,
                    "last_price": last_price, "midpoint": price,
                    "implied_volatility": 0.25, "delta": -0.1, "underlying_price": UNDERLYING,
                    "data_updated_at": captured_at, "data_timeframe": "DELAYED",
                    "baseline_volume": baseline, "baseline_source": source,
                })
    for batch in _chunks(rows, 200):
        models.IntradaySnapshot.insert_many(batch).execute()


def _seed_alerts() -> None:
    top = ticker_for("SPX", DEC, 6000)
    rows = [
        (TODAY, top, "delta"), (TODAY, top, "multiplier"),
        (TODAY, HOSTILE_TICKER, "delta"),
        (TODAY, ticker_for("SPX", JAN, 6500), "dormancy"),
        (PREVIOUS, ticker_for("SPX", JAN, 5200), "delta"),
    ]
    by_ticker = {c["ticker"]: c for c in contracts()}
    for trade_date, ticker, flag in rows:
        contract = by_ticker[ticker]
        volume = volume_at(contract, trade_date, 3)
        models.Alert.insert(
            trade_date=trade_date, ticker=ticker, flag=flag, volume=volume,
            baseline_volume=volume_at(contract, PREVIOUS, 3), baseline_source="aligned",
            premium=volume * price_of(contract) * 100, first_seen_at=trade_date + "T15:15:00Z",
            last_seen_at=trade_date + "T16:15:00Z", root=contract["root"],
            expiration_date=contract["expiration_date"], strike=contract["strike"],
        ).execute()


def history_dates(count: int = 30) -> List[str]:
    """The weekday dates before TODAY that daily_history and session_summary cover, oldest first."""
    days, day = [], date.fromisoformat(TODAY)
    while len(days) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(day.isoformat())
    return sorted(days)


def _seed_daily_history() -> None:
    rows = []
    for offset, trade_date in enumerate(history_dates()):
        for contract in contracts():
            rows.append({
                "trade_date": trade_date, "ticker": contract["ticker"], "root": contract["root"],
                "expiration_date": contract["expiration_date"], "strike": contract["strike"],
                "volume": base_volume(contract) + offset, "open_interest": 1000, "close": price_of(contract),
                "vwap": price_of(contract), "source": "snapshot",
            })
    for batch in _chunks(rows, 200):
        models.DailyHistory.insert_many(batch).execute()


def _seed_session_summary() -> None:
    rows = []
    for offset, trade_date in enumerate(history_dates()):
        for root, expiration in (("SPX", DEC), ("SPX", JAN), ("SPXW", WEEKLY)):
            if expiration == WEEKLY and trade_date < "2025-11-20":
                continue  # the weekly was not listed (in the band) yet
            rows.append({
                "trade_date": trade_date, "root": root, "expiration_date": expiration,
                "contracts": 16, "volume": 10_000 + 100 * offset, "premium": 5_000_000.0 + 1000 * offset,
                "alerts": offset % 3,
            })
    models.SessionSummary.insert_many(rows).execute()


def _seed_run_log() -> None:
    rows = []
    for trade_date in (PREVIOUS, TODAY):
        for hhmm in POLL_TIMES_UTC:
            slot = "%sT%s:00Z" % (trade_date, hhmm)
            finished = (datetime.strptime(slot, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=40))
            rows.append({
                "job": "poll", "trade_date": trade_date, "slot": slot, "status": "ok", "attempts": 1,
                "started_at": slot, "finished_at": models.utc_iso(finished.replace(tzinfo=timezone.utc)),
                "detail": "%d contracts" % len(contracts()),
            })
    rows.append({
        "job": "eod", "trade_date": PREVIOUS, "slot": PREVIOUS + "T21:30:00Z", "status": "ok", "attempts": 1,
        "started_at": PREVIOUS + "T21:30:00Z", "finished_at": PREVIOUS + "T21:31:10Z", "detail": "consolidated",
    })
    models.RunLog.insert_many(rows).execute()


def _chunks(rows: List[Dict], size: int):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]

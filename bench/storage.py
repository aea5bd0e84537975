"""Issue 7, item 6: bytes per stored row, and the database size after a year, computed from them.

Bytes per row are measured with SQLite's dbstat (each table's pages plus its indexes' pages, divided by its
rows) on databases the real code wrote from the simulated market: a full-chain session (one real poll of
the dense chain copied to its 14 slots, then the real EOD) and a default-settings session against the seed
chain (14 real polls and the real EOD). The year's size is then rows x bytes per row: intraday snapshots
kept for INTRADAY_RETENTION_DAYS sessions, daily history and session totals for 252 sessions.
"""
import os
import sqlite3
import tempfile
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bench.common import API_KEY, WATCH_EVERYTHING, SimServer, bench_config, child_main, figure, say
from bench.poll import PREVIOUS, TODAY, poll_session

ET = ZoneInfo("America/New_York")
AFTER_CLOSE = datetime(2025, 12, 4, 16, 31, tzinfo=ET)
SESSIONS_A_YEAR = 252
SECTION = "6. Storage"
TABLES = ("intraday_snapshots", "daily_history", "session_summary", "alerts", "run_log")


def measure(path: str) -> dict:
    """Rows and bytes (table + indexes) of each table, from dbstat."""
    conn = sqlite3.connect(path)
    pages = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    found = {}
    for table in TABLES:
        rows = conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
        size = sum(bytes_ for name, bytes_ in pages if name == table or name.startswith(table + "_"))
        found[table] = {"rows": rows, "bytes": size, "bytes_per_row": size / rows if rows else None}
    conn.close()
    found["file_bytes"] = os.path.getsize(path)
    return found


def eod(path, config, calendar, server):
    from spxlib import models
    from spxlib.eod import consolidate
    from spxlib.marketdata import MarketDataClient

    server.set_now(AFTER_CLOSE)
    models.open_database(path)
    try:
        with MarketDataClient(config, api_key=API_KEY) as client:
            consolidate(calendar.session(AFTER_CLOSE.date()), AFTER_CLOSE, config, calendar, client)
    finally:
        models.close_database()


def default_session(folder) -> dict:
    """The default settings against the seed chain: 14 real polls of one session and its EOD."""
    from spxlib import models
    from spxlib.calendar import TradingCalendar
    from spxlib.marketdata import MarketDataClient
    from spxlib.poll import take_snapshot
    from spxlib.scheduler import poll_slots

    path = os.path.join(folder, "default.db")
    with SimServer("seed", TODAY) as server:
        config = bench_config(folder, server.base_url, DB_PATH=path)
        calendar = TradingCalendar.from_config(config)
        session = calendar.session(TODAY.date())
        models.open_database(path)
        try:
            with MarketDataClient(config, api_key=API_KEY) as client:
                for slot in poll_slots(session, config):
                    moment = slot + timedelta(minutes=1)
                    server.set_now(moment)
                    take_snapshot(moment, session.trade_date, config, calendar, client)
        finally:
            models.close_database()
        eod(path, config, calendar, server)
    return measure(path)


def full_session(folder) -> dict:
    """The dense chain, everything watched: one real poll copied to 14 slots, then the real EOD."""
    from spxlib.calendar import TradingCalendar

    path = os.path.join(folder, "full.db")
    with SimServer("dense", PREVIOUS) as server:
        config = bench_config(folder, server.base_url, DB_PATH=path, **WATCH_EVERYTHING)
        calendar = TradingCalendar.from_config(config)
        poll_session(path, server, config, calendar, TODAY)
        eod(path, config, calendar, server)
    return measure(path)


def year(measured: dict, retention: int, per_row: dict) -> dict:
    """A year's rows and bytes from one measured session: intraday kept `retention` sessions, the rest 252."""
    rows = {
        "intraday_snapshots": measured["intraday_snapshots"]["rows"] * retention,
        "daily_history": measured["daily_history"]["rows"] * SESSIONS_A_YEAR,
        "session_summary": measured["session_summary"]["rows"] * SESSIONS_A_YEAR,
        "run_log": measured["run_log"]["rows"] * SESSIONS_A_YEAR,
    }
    size = sum(rows[table] * (per_row[table] or 0) for table in rows)
    return {"rows": rows, "bytes": size}


def run(quick: bool) -> dict:
    from spxlib.config import load_config

    retention = load_config({}).intraday_retention_days
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as folder:
        say("storage: a default-settings session against the seed chain (14 real polls, real EOD)")
        default = default_session(folder)
        say("storage: a full-chain session (dense chain, everything watched)")
        full = full_session(folder)
    # Bytes per row from the large file (more rows, steadier page fill); small tables from wherever they exist.
    per_row = {table: full[table]["bytes_per_row"] or default[table]["bytes_per_row"] for table in TABLES}
    default_year = year(default, retention, per_row)
    full_year = year(full, retention, per_row)
    intraday, daily = per_row["intraday_snapshots"], per_row["daily_history"]
    figures = [
        figure(SECTION, "bytes per intraday snapshot row (table + 2 indexes, %d rows)"
               % full["intraday_snapshots"]["rows"], intraday, "B"),
        figure(SECTION, "bytes per daily_history row (table + 2 indexes, %d rows)" % full["daily_history"]["rows"],
               daily, "B"),
        figure(SECTION, "a year at default settings (seed chain: %d watched a poll, 14 polls, %d daily rows a "
               "session), computed" % (default["intraday_snapshots"]["rows"] // 14, default["daily_history"]["rows"]),
               default_year["bytes"] / 2 ** 20, "MB",
               note="%d intraday rows kept (%d sessions), %d daily rows"
               % (default_year["rows"]["intraday_snapshots"], retention, default_year["rows"]["daily_history"])),
        figure(SECTION, "a year at full-chain size (%d watched a poll, 14 polls, %d daily rows a session), computed"
               % (full["intraday_snapshots"]["rows"] // 14, full["daily_history"]["rows"]),
               full_year["bytes"] / 2 ** 30, "GB",
               note="%d intraday rows kept (%d sessions) = %.2f GB, %d daily rows = %.2f GB"
               % (full_year["rows"]["intraday_snapshots"], retention,
                  full_year["rows"]["intraday_snapshots"] * intraday / 2 ** 30,
                  full_year["rows"]["daily_history"], full_year["rows"]["daily_history"] * daily / 2 ** 30)),
    ]
    notes = ["Year sizes are computed (measured bytes per row x row counts), not measured; a deleted session's "
             "pages are reused by the next, so the file stays near this size rather than shrinking."]
    return {"name": "storage", "figures": figures, "notes": notes,
            "details": {"default_session": default, "full_session": full, "per_row": per_row,
                        "default_year": default_year, "full_year": full_year}}


if __name__ == "__main__":
    child_main(run)

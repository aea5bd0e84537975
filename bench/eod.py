"""Issue 7, item 5: the EOD of a ~10,000-contract session.

From the snapshot: ``consolidate`` right after the close (one chain snapshot, daily_history, session_summary,
retention), over HTTP and from recorded bytes, against a plain executemany of the same daily rows.
From the aggregates: one request per contract against the fake API, with a few hundred contracts; the
rate is extrapolated to the full chain, and pacing and progress lines are checked.
"""
import logging
import os
import sqlite3
import tempfile
from datetime import datetime
from zoneinfo import ZoneInfo

from bench.common import (
    API_KEY, WATCH_EVERYTHING, ReplaySession, SimServer, Stopwatch, bench_config, child_main, copy_database,
    figure, median, record_pages, say,
)
from bench.poll import CHAIN_PATH, PREVIOUS, TODAY, Timed, poll_session

ET = ZoneInfo("America/New_York")
AFTER_CLOSE = datetime(2025, 12, 4, 16, 31, tzinfo=ET)  # the EOD is due at 16:30
NEXT_MORNING = datetime(2025, 12, 5, 10, 0, tzinfo=ET)  # the snapshot now shows Friday: aggregates
SECTION = "5. EOD"
AGGREGATE_CONTRACTS = (150, 300)  # quick, full
DAILY_INSERT = ("INSERT INTO daily_history (trade_date, ticker, root, expiration_date, strike, volume, "
                "open_interest, close, vwap, source) VALUES (?,?,?,?,?,?,?,?,?,?)")


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def consolidate_once(base, work, config, calendar, session_factory=None):
    """consolidate() on a fresh copy; wall, CPU, fetch time and the daily rows it wrote."""
    from spxlib import models
    from spxlib.eod import consolidate
    from spxlib.marketdata import MarketDataClient

    models.open_database(copy_database(base, work))
    client = MarketDataClient(config, api_key=API_KEY, session=session_factory() if session_factory else None)
    fetch = client.fetch_chain = Timed(client.fetch_chain)
    try:
        with Stopwatch() as watch:
            detail = consolidate(calendar.session(AFTER_CLOSE.date()), AFTER_CLOSE, config, calendar, client)
        rows = models.db.connection().execute(
            "SELECT trade_date, ticker, root, expiration_date, strike, volume, open_interest, close, vwap, source "
            "FROM daily_history WHERE trade_date = ?", (AFTER_CLOSE.date().isoformat(),)).fetchall()
    finally:
        client.close()
        models.close_database()
    return {"wall": watch.wall, "cpu": watch.cpu, "fetch": fetch.seconds, "rows": rows, "detail": detail,
            "fetched": len(fetch.snapshots), "pages": fetch.pages}


def plain_daily_insert(base, work, rows):
    copy_database(base, work)
    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("PRAGMA synchronous = normal")
    with Stopwatch() as watch:
        conn.execute("BEGIN")
        conn.executemany(DAILY_INSERT, rows)
        conn.execute("COMMIT")
    conn.close()
    return watch.wall


def aggregates_run(base, work, server, config, calendar, contracts):
    """bars_from_aggregates for a session whose snapshots hold `contracts` contracts; requests and progress."""
    from spxlib import models
    from spxlib.eod import bars_from_aggregates
    from spxlib.marketdata import MarketDataClient

    models.open_database(copy_database(base, work))
    conn = models.db.connection()
    day = TODAY.date().isoformat()
    with models.db.atomic():
        conn.execute("DELETE FROM intraday_snapshots WHERE trade_date = ? AND ticker NOT IN (SELECT ticker FROM "
                     "intraday_snapshots WHERE trade_date = ? GROUP BY ticker ORDER BY ticker LIMIT ?)",
                     (day, day, contracts))
    server.set_now(NEXT_MORNING)
    lines = _Lines()
    logger = logging.getLogger("spx.eod")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    before = len(server.requests())
    try:
        with MarketDataClient(config, api_key=API_KEY) as client, Stopwatch() as watch:
            bars = bars_from_aggregates(calendar.session(TODAY.date()), calendar, config, client)
    finally:
        logger.removeHandler(lines)
        models.close_database()
    requests = [r for r in server.requests()[before:] if r["path"].startswith("/v2/aggs/")]
    progress = [line for line in lines.lines if "Daily bars" in line]
    return {"wall": watch.wall, "cpu": watch.cpu, "bars": len(bars), "requests": len(requests),
            "gzip": all(r["gzip"] for r in requests), "progress_lines": len(progress),
            "last_progress": progress[-1] if progress else None}


def run(quick: bool) -> dict:
    from spxlib.calendar import TradingCalendar
    repeats = 3 if quick else 5
    figures, notes, details = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-eod-") as folder, SimServer("dense", PREVIOUS) as server:
        config = bench_config(folder, server.base_url, **WATCH_EVERYTHING)
        calendar = TradingCalendar.from_config(config)
        base = os.path.join(folder, "base.db")
        say("eod: two sessions of polls (one real poll each, copied to every slot)")
        poll_session(base, server, config, calendar, PREVIOUS)
        today = poll_session(base, server, config, calendar, TODAY)
        details["session"] = {"rows": today["rows"], "watched": today["first_poll"]["contracts"]}

        server.set_now(AFTER_CLOSE)
        say("eod: recording the after-close snapshot (also warms the server's cache)")
        from spxlib import models
        from spxlib.eod import snapshot_chain_filter

        models.open_database(base)
        try:  # the filter the EOD will send: the session's strike window, from its snapshots
            chain_filter = snapshot_chain_filter(calendar.session(AFTER_CLOSE.date()), config)
        finally:
            models.close_database()
        pages = record_pages(server.base_url, CHAIN_PATH, dict(chain_filter.params(), limit="250"))
        work = os.path.join(folder, "work.db")
        replays, https, plains = [], [], []
        rows = consolidate_once(base, work, config, calendar, lambda: ReplaySession(pages))["rows"]  # warm-up
        say("eod: %d timed runs of each (from bytes, plain executemany, over HTTP)" % repeats)
        for _ in range(repeats):
            replays.append(consolidate_once(base, work, config, calendar, lambda: ReplaySession(pages)))
            plains.append(plain_daily_insert(base, work, rows))
            https.append(consolidate_once(base, work, config, calendar))
        plain = median(plains)
        replay = replays[len(replays) // 2]
        details["snapshot"] = {"daily_rows": len(rows), "fetched": replay["fetched"], "pages": replay["pages"],
                               "detail": replay["detail"]}
        wall = median([r["wall"] for r in replays])
        figures.append(figure(
            SECTION, "EOD from the snapshot, from recorded bytes (%d pages, %d puts fetched, %d daily rows)"
            % (replay["pages"], replay["fetched"], len(rows)), wall, "s", plain,
            "plain executemany of the same %d daily rows" % len(rows), "< 2 s", wall < 2.0,
            "of which fetch and parse %.2f s" % median([r["fetch"] for r in replays])))
        http_wall = median([r["wall"] for r in https])
        http_cpu = median([r["cpu"] for r in https])
        figures.append(figure(SECTION, "EOD from the snapshot over HTTP, end to end (wall)", http_wall, "s", plain,
                              "plain executemany", "< 2 s", http_wall < 2.0,
                              "this process's CPU %.2f s; the rest is the simulated server building pages"
                              % http_cpu))

        count = AGGREGATE_CONTRACTS[0 if quick else 1]
        say("eod: daily bars from the aggregates, %d contracts, one request each" % count)
        unpaced = aggregates_run(base, work, server, config, calendar, count)
        rate = unpaced["bars"] / unpaced["wall"]
        details["aggregates"] = unpaced
        figures.append(figure(
            SECTION, "EOD from the aggregates: contracts a second (%d contracts, %d requests, gzip %s)"
            % (unpaced["bars"], unpaced["requests"], "yes" if unpaced["gzip"] else "NO"), rate, "contracts/s",
            note="%d progress lines, last: %r" % (unpaced["progress_lines"], unpaced["last_progress"])))
        full = today["first_poll"]["contracts"]
        figures.append(figure(SECTION, "  extrapolated to %d contracts, unpaced (AGGREGATES_PACE_SECONDS=0)" % full,
                              full / rate, "s",
                              note="refused at the default AGGREGATES_MAX_REQUESTS=%d: %d contracts need daily bars"
                              % (config.aggregates_max_requests, full)
                              if full > config.aggregates_max_requests else ""))
        figures.append(figure(SECTION, "  extrapolated at 5 requests a minute (free plan, pace 12 s)",
                              full * 12.0 / 3600.0, "h"))
        pace = 0.2
        paced_config = bench_config(folder, server.base_url, AGGREGATES_PACE_SECONDS=pace, **WATCH_EVERYTHING)
        paced = aggregates_run(base, work, server, paced_config, calendar, 11)
        floor = (paced["requests"] - 1) * pace
        details["aggregates_paced"] = paced
        figures.append(figure(SECTION, "  paced at %.1f s: %d requests took" % (pace, paced["requests"]),
                              paced["wall"], "s", floor, "(requests - 1) x pace", ">= (requests - 1) x pace",
                              paced["wall"] >= floor))
    notes.append("The EOD's snapshot asks for the session's strike window (snapshot_chain_filter): %d pages "
                 "for %d daily rows." % (replay["pages"], len(rows)))
    return {"name": "eod", "figures": figures, "notes": notes, "details": details}


if __name__ == "__main__":
    child_main(run)

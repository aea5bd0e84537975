"""Issue 7, items 1 and 2: a poll of a ~10,000-contract chain, and the requests it takes.

The fake API runs in its own process (bench.simserver, the 'dense' chain: ~10,300 out-of-the-money puts).
A previous session of 14 polls is in the database so every baseline is 'aligned'. Timed, each on a fresh
copy of that database:

* the poll from recorded bytes: ``take_snapshot`` with the client reading the recorded gzip pages
  (decompress, decode, parse, filter, baselines, insert, alerts), no network;
* the baseline: a plain ``sqlite3`` executemany of the same rows, same statement, same table, one transaction;
* the poll over HTTP, end to end, with this process's CPU time apart from the wall time.
"""
import gzip
import json
import math
import os
import sqlite3
import sys
import tempfile
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bench.common import (
    API_KEY, REPO, WATCH_EVERYTHING, ReplaySession, SimServer, Stopwatch, bench_config, child_main, copy_database,
    figure, median, record_pages, run_measured, say,
)

ET = ZoneInfo("America/New_York")
PREVIOUS = datetime(2025, 12, 3, 10, 46, tzinfo=ET)  # a Wednesday: the 10:45 slot
TODAY = datetime(2025, 12, 4, 10, 46, tzinfo=ET)  # the Thursday after
CHAIN_PATH = "/v3/snapshot/options/I:SPX"
SECTION = "1. Poll"


class Timed:
    """Wraps a function and adds up its wall time; for a client's fetch_chain also the contracts and
    pages of every call (an SPX-only poll asks once per monthly expiry)."""

    def __init__(self, function):
        self.function = function
        self.seconds = 0.0
        self.last = None
        self.snapshots = []
        self.pages = 0

    def __call__(self, *args, **kwargs):
        with Stopwatch() as watch:
            self.last = self.function(*args, **kwargs)
        self.seconds += watch.wall
        if hasattr(self.last, "snapshots"):  # a ChainResult; other timed functions return other things
            self.snapshots.extend(self.last.snapshots)
            self.pages += self.last.pages
        return self.last


class _TimedConnection:
    """The database connection, with the snapshot insert's executemany timed."""

    def __init__(self, conn, statement, timer):
        self._conn, self._statement, self._timer = conn, statement, timer

    def executemany(self, sql, rows):
        if sql != self._statement:
            return self._conn.executemany(sql, rows)
        with Stopwatch() as watch:
            result = self._conn.executemany(sql, rows)
        self._timer.seconds += watch.wall
        return result

    def __getattr__(self, name):
        return getattr(self._conn, name)


def poll_session(path, server, config, calendar, moment):
    """One real poll at `moment` into the database at `path`, copied to the session's other slots (volumes
    scaled by the time of day): a session of 14 polls for the price of one. Returns what it took."""
    from spxlib import models
    from spxlib.marketdata import MarketDataClient
    from spxlib.poll import SNAPSHOT_COLUMNS, last_known_spot, take_snapshot
    from spxlib.scheduler import poll_slots

    models.open_database(path)
    server.set_now(moment)
    before = len(server.requests())
    with MarketDataClient(config, api_key=API_KEY) as client, Stopwatch() as watch:
        report = take_snapshot(moment, moment.date(), config, calendar, client)
    first_poll = {"contracts": report.contracts, "pages": report.pages, "seconds": watch.wall,
                  "requests": len(server.requests()) - before}
    session = calendar.session(moment.date())
    slots = poll_slots(session, config)
    stamp = models.utc_iso(moment)
    conn = models.db.connection()
    with models.db.atomic():
        for slot in slots:
            if slot <= moment < slot + timedelta(minutes=config.poll_interval_minutes):
                continue  # the real poll's own slot
            share = max(0.05, (slot - session.open) / (session.close - session.open))
            conn.execute(
                "INSERT INTO intraday_snapshots (%s) SELECT trade_date, ?, ticker, root, expiration_date, strike, "
                "CAST(volume * ? AS INTEGER), open_interest, vwap, close, implied_volatility, delta, "
                "underlying_price, last_price, midpoint, data_updated_at, data_timeframe, baseline_volume, "
                "baseline_source FROM intraday_snapshots WHERE captured_at = ?" % ", ".join(SNAPSHOT_COLUMNS),
                (models.utc_iso(slot + timedelta(minutes=1)), share, stamp))
    rows = conn.execute("SELECT COUNT(*) FROM intraday_snapshots").fetchone()[0]
    spot = last_known_spot()
    models.close_database()
    return {"rows": rows, "polls": len(slots), "first_poll": first_poll, "spot": spot}


def poll_from_bytes(base, work, config, calendar, pages, keep_rows=False):
    """take_snapshot on a fresh copy of the database, the client reading recorded pages. Returns timings."""
    from spxlib import models
    from spxlib import poll as poll_module
    from spxlib.marketdata import MarketDataClient

    models.open_database(copy_database(base, work))
    client = MarketDataClient(config, api_key=API_KEY, session=ReplaySession(pages))
    fetch = client.fetch_chain = Timed(client.fetch_chain)
    baselines = Timed(poll_module.find_baselines)
    alerts = Timed(poll_module.record_alerts)
    insert = Timed(None)
    conn = models.db.connection()
    originals = poll_module.find_baselines, poll_module.record_alerts
    poll_module.find_baselines, poll_module.record_alerts = baselines, alerts
    models.db.connection = lambda: _TimedConnection(conn, poll_module.INSERT_SNAPSHOT, insert)
    try:
        with Stopwatch() as watch:
            report = poll_module.take_snapshot(TODAY, TODAY.date(), config, calendar, client)
    finally:
        poll_module.find_baselines, poll_module.record_alerts = originals
        del models.db.connection
    rows = None
    if keep_rows:
        columns = ", ".join(poll_module.SNAPSHOT_COLUMNS)
        rows = conn.execute("SELECT %s FROM intraday_snapshots WHERE captured_at = ?" % columns,
                            (models.utc_iso(TODAY),)).fetchall()
    models.close_database()
    fetched = fetch.snapshots
    return {
        "total": watch.wall, "cpu": watch.cpu, "fetch_parse": fetch.seconds, "baselines": baselines.seconds,
        "insert": insert.seconds, "alerts": alerts.seconds,
        "filter_evaluate_rows": watch.wall - fetch.seconds - baselines.seconds - insert.seconds - alerts.seconds,
        "report": report, "fetched": fetched, "rows": rows,
    }


def plain_insert(base, work, rows):
    """The baseline: sqlite3's executemany of the same rows into the same table, one transaction."""
    from spxlib.poll import INSERT_SNAPSHOT

    copy_database(base, work)
    conn = sqlite3.connect(work, isolation_level=None)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("PRAGMA synchronous = normal")  # what spxlib.models opens the file with
    with Stopwatch() as watch:
        conn.execute("BEGIN")
        conn.executemany(INSERT_SNAPSHOT, rows)
        conn.execute("COMMIT")
    conn.close()
    return watch.wall


def poll_over_http(base, work, server, config, calendar, moment=TODAY):
    """take_snapshot end to end against the server process; wall and this process's CPU."""
    from spxlib import models
    from spxlib.marketdata import MarketDataClient
    from spxlib.poll import take_snapshot

    models.open_database(copy_database(base, work))
    before = len(server.requests())
    try:
        with MarketDataClient(config, api_key=API_KEY) as client:
            fetch = client.fetch_chain = Timed(client.fetch_chain)
            with Stopwatch() as watch:
                report = take_snapshot(moment, moment.date(), config, calendar, client)
    finally:
        models.close_database()
    requests = server.requests()[before:]
    return {"wall": watch.wall, "cpu": watch.cpu, "report": report, "requests": requests,
            "fetched": fetch.snapshots, "fetch_wall": fetch.seconds}


def narrowing(fetched, watched_count, spot, config, pages, roots_filter=True):
    """What the server-side filters leave to the client: contracts fetched for nothing, and their pages."""
    band = [s for s in fetched if config.min_moneyness * spot <= s.strike <= config.max_moneyness * spot]
    own_roots = [s for s in fetched if s.root in config.expiration_roots]
    return {
        "fetched": len(fetched), "watched": watched_count, "pages": pages,
        "pages_needed": math.ceil(watched_count / 250) if watched_count else 1,
        "fetched_by_root": dict(Counter(s.root for s in fetched)),
        "pages_if_root_filtered": math.ceil(len(own_roots) / 250),
        "fetched_in_margin": len(fetched) - len(band),
        "pages_without_margin": math.ceil(len(band) / 250),
    }


def run(quick: bool) -> dict:
    from spxlib.calendar import TradingCalendar
    from spxlib.poll import chain_filter_for

    repeats = 3 if quick else 5
    figures, notes, details = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as folder, SimServer("dense", PREVIOUS) as server:
        config = bench_config(folder, server.base_url, **WATCH_EVERYTHING)
        calendar = TradingCalendar.from_config(config)
        say("poll: previous session (one real poll of the dense chain, copied to every slot)")
        base = os.path.join(folder, "base.db")
        previous = poll_session(base, server, config, calendar, PREVIOUS)
        first, spot = previous["first_poll"], previous["spot"]
        details["previous_session"] = previous

        server.set_now(TODAY)
        chain_filter = chain_filter_for(TODAY.date(), config, spot)
        say("poll: recording today's pages (this also warms the server's cache)")
        with Stopwatch() as recording:
            pages = record_pages(server.base_url, CHAIN_PATH, dict(chain_filter.params(), limit="250"))
        wire = sum(len(p["wire"]) for p in pages)
        body = sum(p["json_bytes"] for p in pages)
        details["pages"] = {"count": len(pages), "wire_bytes": wire, "json_bytes": body,
                            "record_seconds": recording.wall}

        say("poll: %d timed runs of each (from bytes, plain executemany, over HTTP)" % repeats)
        work = os.path.join(folder, "work.db")
        replays, plains, https = [], [], []
        rows = poll_from_bytes(base, work, config, calendar, pages, keep_rows=True)["rows"]  # warm-up
        for _ in range(repeats):
            replays.append(poll_from_bytes(base, work, config, calendar, pages))
            plains.append(plain_insert(base, work, rows))
            https.append(poll_over_http(base, work, server, config, calendar))

        replay = replays[len(replays) // 2]
        report = replay["report"]
        details["poll"] = {"watched": report.contracts, "fetched": len(replay["fetched"]),
                           "expirations": report.expirations, "sources": report.sources}
        total = median([r["total"] for r in replays])
        plain = median(plains)
        figures.append(figure(
            SECTION, "poll from recorded bytes: decompress, parse, store, detect (%d contracts, %s)"
            % (report.contracts, ", ".join("%s %d" % item for item in sorted(report.sources.items()))),
            total, "s", plain, "plain sqlite3 executemany of the same %d rows" % len(rows),
            "<= 4x baseline", total <= 4 * plain))
        for part in ("fetch_parse", "filter_evaluate_rows", "baselines", "insert", "alerts"):
            seconds = median([r[part] for r in replays])
            figures.append(figure(SECTION, "  of which %s" % part.replace("_", ", "), seconds, "s", plain,
                                  "plain executemany"))
        decoding = []
        for _ in range(repeats):
            with Stopwatch() as watch:
                for page in pages:
                    json.loads(gzip.decompress(page["wire"]))
            decoding.append(watch.wall)
        figures.append(figure(SECTION, "  floor: gzip.decompress + json.loads of the same pages, nothing else",
                              median(decoding), "s", plain, "plain executemany",
                              note="what any poll built on the standard library's JSON decoder pays"))
        after_parse = median([r["total"] - r["fetch_parse"] for r in replays])
        figures.append(figure(SECTION, "store and detect: the poll after parsing (filter, baselines, rows, "
                              "insert, alerts)", after_parse, "s", plain, "plain executemany", "<= 4x baseline",
                              after_parse <= 4 * plain))
        http_wall = median([r["wall"] for r in https])
        http_cpu = median([r["cpu"] for r in https])
        figures.append(figure(SECTION, "poll over HTTP, end to end (wall; server in its own process)",
                              http_wall, "s", plain, "plain executemany",
                              note="this process's CPU %.2f s; the rest is the server building %d pages"
                              % (http_cpu, len(pages))))
        figures.append(figure(SECTION, "poll over HTTP, this process's CPU only", http_cpu, "s", plain,
                              "plain executemany", "<= 4x baseline", http_cpu <= 4 * plain))

        say("poll: bin/tick polling the dense chain, as cron runs it")
        env = dict(os.environ, SPX_DB_PATH=copy_database(base, os.path.join(folder, "tick.db")),
                   SPX_API_BASE_URL=server.base_url, MASSIVE_API_KEY=API_KEY, SPX_LOG_TO_FILE="false",
                   SPX_RETRY_DELAY_SECONDS="0", **{"SPX_" + k: str(v) for k, v in WATCH_EVERYTHING.items()})
        env.pop("SPX_CONFIG", None)
        tick = run_measured([sys.executable, os.path.join(REPO, "bin", "tick"), "--now", TODAY.isoformat()], env,
                            folder)
        polled = [line for line in tick["output"].splitlines() if line.strip().startswith("POLL")]
        if tick["returncode"] != 0 or not polled:
            raise RuntimeError("bin/tick did not poll:\n" + tick["output"])
        details["tick_that_polls"] = {"wall": tick["wall"], "rss_mb": tick["rss_mb"], "line": polled[-1].strip()}
        if tick["rss_mb"] is not None:
            figures.append(figure(SECTION, "peak memory of bin/tick polling the full chain (a process of its own)",
                                  tick["rss_mb"], "MB", target="< 150 MB", met=tick["rss_mb"] < 150,
                                  note="%.2f s wall; %s" % (tick["wall"], polled[-1].strip())))

        say("poll: peak memory of one poll from bytes (tracemalloc)")
        tracemalloc.start()
        poll_from_bytes(base, work, config, calendar, pages)
        traced = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
        figures.append(figure(SECTION, "peak Python memory of one poll from bytes (tracemalloc)", traced, "MB",
                              target="< 150 MB", met=traced < 150))

        # --- 2. Requests per poll ------------------------------------------------------------------
        section = "2. Requests"
        last = https[-1]
        chain_requests = [r for r in last["requests"] if r["path"] == CHAIN_PATH]
        watched = last["report"].contracts
        wide = narrowing(last["fetched"], watched, spot, config, len(chain_requests))
        wide["gzip"] = all(r["gzip"] for r in chain_requests)
        details["requests_watch_everything"] = wide
        figures.append(figure(section, "chain pages, watch everything (%d watched, %d fetched)"
                              % (watched, wide["fetched"]), len(chain_requests), "requests",
                              wide["pages_needed"], "ceil(watched / 250)", "= ceil(watched / 250)",
                              len(chain_requests) == wide["pages_needed"],
                              "%d fetched puts lie in the 3%% margin above the band" % wide["fetched_in_margin"]))
        gzipped = sum(1 for r in chain_requests if r["gzip"])
        figures.append(figure(section, "chain requests that accepted gzip (the server's request log)", gzipped,
                              "requests", len(chain_requests), "chain requests", "all", wide["gzip"],
                              "%.1f MB JSON went over the wire as %.2f MB" % (body / 2 ** 20, wire / 2 ** 20)))
        first_pages = first["pages"]
        figures.append(figure(section, "first poll of a fresh database (no last spot: no strike filter)",
                              first_pages, "requests", math.ceil(first["contracts"] / 250), "ceil(watched / 250)",
                              note="%d watched" % first["contracts"]))

        say("poll: the default universe (SPX only, 3-90 DTE, 0.50-0.99) against the same chain")
        default_config = bench_config(folder, server.base_url)
        default = poll_over_http(base, work, server, default_config, calendar)
        default_requests = [r for r in default["requests"] if r["path"] == CHAIN_PATH]
        narrow = narrowing(default["fetched"], default["report"].contracts, spot, default_config,
                           len(default_requests))
        details["requests_default_universe"] = narrow
        by_root = narrow["fetched_by_root"]
        figures.append(figure(
            section, "chain pages, default universe (%d watched, %d fetched: SPX %d, SPXW %d)"
            % (narrow["watched"], narrow["fetched"], by_root.get("SPX", 0), by_root.get("SPXW", 0)),
            len(default_requests), "requests", narrow["pages_needed"], "ceil(watched / 250)",
            "= ceil(watched / 250)", len(default_requests) == narrow["pages_needed"],
            "with a root filter %d pages; without the 3%% margin %d pages"
            % (narrow["pages_if_root_filtered"], narrow["pages_without_margin"])))
        say("poll: the default settings against the seed chain (first poll, then one with a last spot)")
        seed_folder = os.path.join(folder, "seed")
        os.makedirs(seed_folder)
        seed_base = os.path.join(seed_folder, "base.db")
        with SimServer("seed", PREVIOUS) as seed_server:
            seed_config = bench_config(seed_folder, seed_server.base_url)
            seed_first = poll_session(seed_base, seed_server, seed_config, calendar, PREVIOUS)
            seed_server.set_now(TODAY)
            seed = poll_over_http(seed_base, os.path.join(seed_folder, "work.db"), seed_server, seed_config, calendar)
        seed_requests = [r for r in seed["requests"] if r["path"] == CHAIN_PATH]
        seeded = narrowing(seed["fetched"], seed["report"].contracts, seed_first["spot"], seed_config,
                           len(seed_requests))
        seeded["first_poll_pages"] = seed_first["first_poll"]["pages"]
        details["requests_default_seed_chain"] = seeded
        by_root = seeded["fetched_by_root"]
        figures.append(figure(
            section, "chain pages, default settings on the seed chain (%d watched, %d fetched: SPX %d, SPXW %d)"
            % (seeded["watched"], seeded["fetched"], by_root.get("SPX", 0), by_root.get("SPXW", 0)),
            len(seed_requests), "requests", seeded["pages_needed"], "ceil(watched / 250)", "= ceil(watched / 250)",
            len(seed_requests) == seeded["pages_needed"],
            "with a root filter %d pages; without the 3%% margin %d; a fresh database's first poll %d"
            % (seeded["pages_if_root_filtered"], seeded["pages_without_margin"], seeded["first_poll_pages"])))
    notes.append("The poll's strike window is widened by STRIKE_WINDOW_MARGIN (3%) around the last spot, and "
                 "the chain endpoint cannot be filtered by root, so SPXW puts are fetched and dropped when only "
                 "SPX is watched.")
    return {"name": "poll", "figures": figures, "notes": notes, "details": details}


if __name__ == "__main__":
    child_main(run)

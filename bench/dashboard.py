"""Issue 7, item 4: the dashboard API on a year of full-chain data, through the WSGI app (Flask test client).

The database is synthesized straight into the schema (executemany, in time order, as the polls and EODs
would have written it): 252 sessions of daily_history and session_summary for ~10,000 puts a session, and
the last 30 sessions (the retention) of intraday snapshots at the default 30-minute cadence (14 polls).
Each endpoint is timed over repeated requests (p50, p95) against the same statements run straight on a
read-only connection (the SQL alone); every statement a request ran is shown with EXPLAIN QUERY PLAN.
"""
import os
import sqlite3
import tempfile
import zlib
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bench.common import Stopwatch, bench_config, child_main, figure, median, percentile, say

ET = ZoneInfo("America/New_York")
LAST_DAY = date(2025, 12, 4)
SECTION = "4. Dashboard"
TARGET_MS = 50.0


def universe(market, day: date, spot: float):
    """The watched puts of a session: every listed expiration, every strike below spot."""
    from spxlib.simulator.market import format_ticker

    strikes = [k for k in market.strikes if k < spot]
    return [(format_ticker(root, expiration, "put", strike), root, expiration.isoformat(), strike)
            for root, expiration in market.expirations(day) for strike in strikes]


def build(path: str, sessions_daily: int, sessions_intraday: int) -> dict:
    """The year's database, written in time order. Returns row counts."""
    from spxlib import models
    from spxlib.calendar import TradingCalendar
    from spxlib.poll import INSERT_SNAPSHOT
    from spxlib.scheduler import poll_slots
    from spxlib.simulator.market import SimulatedMarket

    from bench.simserver import DENSE_CHAIN

    config = bench_config(os.path.dirname(path))
    calendar = TradingCalendar.from_config(config)
    market = SimulatedMarket(size=DENSE_CHAIN, calendar=calendar)
    models.open_database(path)  # the schema and its indexes, exactly as the tick creates them
    models.close_database()
    sessions = calendar.sessions_between(LAST_DAY - timedelta(days=400), LAST_DAY)[-sessions_daily:]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = off")  # a bulk load; the file is thrown away afterwards
    counts = {"daily_history": 0, "intraday_snapshots": 0, "session_summary": 0, "alerts": 0}
    previous_volume = {}
    for index, session in enumerate(sessions):
        day = session.key
        spot = 5800.0 * (1 + 0.03 * ((index * 37 % 101) / 101.0 - 0.5))
        contracts = universe(market, session.trade_date, spot)
        finals = []
        for ticker, _, _, _ in contracts:
            base = zlib.crc32(("%s %d" % (ticker, index)).encode()) % 181
            finals.append(base if base % 10 else 0)  # one in ten does not trade
        conn.execute("BEGIN")
        if index >= len(sessions) - sessions_intraday:
            slots = poll_slots(session, config)
            rows = []
            for poll, slot in enumerate(slots):
                stamp = models.utc_iso(slot + timedelta(minutes=1))
                updated = models.utc_iso(slot - timedelta(minutes=15))
                share = (poll + 1) / len(slots)
                for (ticker, root, expiration, strike), final in zip(contracts, finals):
                    volume = int(final * share)
                    price = round(0.05 + 40.0 * (strike / spot) ** 12, 2)
                    baseline = int(previous_volume.get(ticker, 0) * share)
                    rows.append((day, stamp, ticker, root, expiration, strike, volume, 10 * final + 7, price, price,
                                 round(0.12 + 0.2 * (1 - strike / spot), 4), round(-0.5 * (strike / spot) ** 8, 6),
                                 round(spot, 2), price, round(price + 0.025, 3), updated, "DELAYED", baseline,
                                 "aligned" if ticker in previous_volume else "none"))
            conn.executemany(INSERT_SNAPSHOT, rows)
            counts["intraday_snapshots"] += len(rows)
        daily = [(day, ticker, root, expiration, strike, final, 10 * final + 7,
                  round(0.05 + 40.0 * (strike / spot) ** 12, 2), round(0.05 + 40.0 * (strike / spot) ** 12, 2),
                  "snapshot") for (ticker, root, expiration, strike), final in zip(contracts, finals)]
        conn.executemany("INSERT INTO daily_history (trade_date, ticker, root, expiration_date, strike, volume, "
                         "open_interest, close, vwap, source) VALUES (?,?,?,?,?,?,?,?,?,?)", daily)
        counts["daily_history"] += len(daily)
        by_expiration = {}
        for (ticker, root, expiration, strike), final in zip(contracts, finals):
            entry = by_expiration.setdefault((root, expiration), [0, 0, 0.0, 0])
            entry[0] += 1
            entry[1] += final
            entry[2] += final * 100 * (0.05 + 40.0 * (strike / spot) ** 12)
        # A few alerts a day: a burst on three puts, as the demo plants.
        alerts = [(day, ticker, "delta", 2500 + 100 * n, 40, "aligned", 2500 * 150.0, day + "T15:01:00Z",
                   day + "T20:16:00Z", root, expiration, strike)
                  for n, (ticker, root, expiration, strike) in enumerate(contracts[1000:4000:1000])]
        conn.executemany("INSERT INTO alerts (trade_date, ticker, flag, volume, baseline_volume, baseline_source, "
                         "premium, first_seen_at, last_seen_at, root, expiration_date, strike) "
                         "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", alerts)
        counts["alerts"] += len(alerts)
        summary = [(day, root, expiration, c, v, round(p, 2),
                    sum(1 for a in alerts if a[10] == expiration and a[9] == root))
                   for (root, expiration), (c, v, p, _) in sorted(by_expiration.items())]
        conn.executemany("INSERT INTO session_summary (trade_date, root, expiration_date, contracts, volume, "
                         "premium, alerts) VALUES (?,?,?,?,?,?,?)", summary)
        counts["session_summary"] += len(summary)
        conn.execute("COMMIT")
        previous_volume = dict(zip((c[0] for c in contracts), finals))
        if (index + 1) % 50 == 0 or index + 1 == len(sessions):
            say("dashboard: %d/%d sessions written" % (index + 1, len(sessions)))
    counts["contracts_last_session"] = len(contracts)
    counts["sessions_daily"] = len(sessions)
    counts["sessions_intraday"] = sessions_intraday
    conn.close()
    return counts


def traced_app(path: str, statements: list):
    """The dashboard app over `path`, its connections reporting every statement they run."""
    import dashboard.app as app_module

    config = bench_config(os.path.dirname(path), DB_PATH=path)
    original = app_module.open_readonly

    def open_traced(db_path):
        conn = original(db_path)
        conn.set_trace_callback(statements.append)
        return conn

    app_module.open_readonly = open_traced
    now = datetime.combine(LAST_DAY, time(16, 0), tzinfo=ET).astimezone(timezone.utc)
    return app_module.create_app(path, config=config, now=lambda: now)


def time_requests(client, url: str, repeats: int):
    """Request latencies (s) through the WSGI app, and the last body's size."""
    seconds, size = [], 0
    for _ in range(repeats):
        with Stopwatch() as watch:
            response = client.get(url)
            body = response.get_data()
        if response.status_code != 200:
            raise RuntimeError("%s answered %d: %s" % (url, response.status_code, body[:300]))
        seconds.append(watch.wall)
        size = len(body)
    return seconds, size


def time_sql(path: str, statements, repeats: int) -> float:
    """Median time of running the request's statements straight on a read-only connection."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    runs = []
    for _ in range(repeats):
        with Stopwatch() as watch:
            for sql in statements:
                conn.execute(sql).fetchall()
        runs.append(watch.wall)
    conn.close()
    return median(runs)


def query_plans(path: str, statements) -> list:
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    plans = []
    for sql in statements:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        plans.append({"sql": " ".join(sql.split()), "plan": [row[3] for row in rows]})
    conn.close()
    return plans


def storage_of(path: str) -> dict:
    """Bytes per row of each table with its indexes (dbstat), and the file size."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    pages = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    tables = {}
    for table, indexes in (("intraday_snapshots", ("intraday_snapshots_",)), ("daily_history", ("daily_history_",)),
                           ("session_summary", ("session_summary_",)), ("alerts", ("alerts_",))):
        rows = conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
        table_bytes = pages.get(table, 0)
        index_bytes = sum(size for name, size in pages.items() if name.startswith(indexes))
        tables[table] = {"rows": rows, "table_bytes": table_bytes, "index_bytes": index_bytes,
                         "bytes_per_row": (table_bytes + index_bytes) / rows if rows else None}
    conn.close()
    return {"file_bytes": os.path.getsize(path), "tables": tables}


def run(quick: bool) -> dict:
    sessions_daily, sessions_intraday = (60, 3) if quick else (252, 30)
    repeats = 15 if quick else 40
    figures, notes, details = [], [], {}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as folder:
        path = os.path.join(folder, "year.db")
        say("dashboard: synthesizing %d sessions of daily history and %d of intraday snapshots"
            % (sessions_daily, sessions_intraday))
        with Stopwatch() as building:
            counts = build(path, sessions_daily, sessions_intraday)
        details["database"] = dict(counts, build_seconds=round(building.wall, 1))
        details["storage"] = storage_of(path)
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        day = LAST_DAY.isoformat()
        expiration = conn.execute(
            "SELECT expiration_date FROM session_summary WHERE trade_date = ? AND root = 'SPX' "
            "ORDER BY expiration_date LIMIT 1 OFFSET 1", (day,)).fetchone()[0]
        ticker = conn.execute(
            "SELECT ticker FROM daily_history WHERE trade_date = ? AND root = 'SPX' ORDER BY expiration_date DESC, "
            "strike DESC LIMIT 1 OFFSET 40", (day,)).fetchone()[0]
        conn.close()
        endpoints = [
            ("/api/enriched", "unfiltered: the day's whole watched chain"),
            ("/api/enriched?expiration=%s" % expiration, "one expiration"),
            ("/api/movers", "top 20"),
            ("/api/movers?limit=500", "top 500"),
            ("/api/history/%s" % ticker, "60 sessions and two intraday curves"),
            ("/api/history/%s?days=252" % ticker, "a year"),
            ("/api/summary", "90 sessions"),
            ("/api/summary?days=252", "a year"),
            ("/api/expirations", "per-expiration totals"),
        ]
        statements = []
        app = traced_app(path, statements)
        client = app.test_client()
        trivial, _ = time_requests(client, "/api/alerts?date=1999-01-04", repeats)
        details["trivial_request_p50_ms"] = round(median(trivial) * 1000, 2)
        plans = {}
        for url, what in endpoints:
            say("dashboard: %s" % url)
            time_requests(client, url, 2)  # warm the page cache
            del statements[:]
            client.get(url)
            ran = list(statements)
            count = repeats if "enriched" not in url or "expiration" in url else max(10, repeats // 2)
            seconds, size = time_requests(client, url, count)
            sql = time_sql(path, ran, count)
            p50, p95 = median(seconds) * 1000, percentile(seconds, 95) * 1000
            plans[url] = query_plans(path, ran)
            figures.append(figure(
                SECTION, "GET %s (%s) p95" % (url, what), p95, "ms", sql * 1000, "its SQL alone",
                "p95 < %d ms" % TARGET_MS, p95 < TARGET_MS,
                "p50 %.1f ms; %d statements; %.2f MB JSON" % (p50, len(ran), size / 2 ** 20)))
        details["query_plans"] = plans
        tables = {"intraday_snapshots", "daily_history", "session_summary", "alerts", "s"}
        unindexed = sorted({line for url in plans for statement in plans[url] for line in statement["plan"]
                            if line.startswith("SCAN ") and line.split()[1] in tables and "INDEX" not in line})
        notes.append("plan lines that scan a table without an index: %s" % ("; ".join(unindexed) or "none")
                     + " (SCAN of a subquery's rows, e.g. 'picked', reads what an indexed search produced)")
        notes.append("a trivial API request (/api/alerts of an empty day) takes %.2f ms through the same app"
                     % details["trivial_request_p50_ms"])
    return {"name": "dashboard", "figures": figures, "notes": notes, "details": details}


if __name__ == "__main__":
    child_main(run)

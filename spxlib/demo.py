"""The demo: the real tick pipeline walked through simulated sessions against the simulated market.

Every tick is the production `run_tick` with an explicit `now`; the simulated API server's clock is
moved to the same `now` first, so the client, poll, detection and EOD run unchanged over HTTP.
"""
import logging
import os
from datetime import date, datetime, timedelta
from typing import Callable, List, Tuple

from . import models
from .calendar import TradingCalendar
from .config import load_config
from .scheduler import eod_due_at
from .tick import run_tick

# The demo's last session, and how many it walks: 15 sessions back from 2025-12-01 cross two
# weekends, the Thanksgiving holiday (2025-11-27) and its half day (2025-11-28).
DEMO_LAST_SESSION = date(2025, 12, 1)
DEMO_SEED = 7
DEMO_API_KEY = "demo-key"  # the simulated server's own key; no real key is used or needed
IDLE_STEP = timedelta(hours=1)
ACTIVE_STEP = timedelta(minutes=5)


def demo_moments(first: date, last: date, calendar: TradingCalendar, config) -> List[datetime]:
    """Tick times: every 5 minutes from before the open until after the EOD on sessions, hourly otherwise."""
    moments = []
    day = first
    while day <= last:
        start = datetime(day.year, day.month, day.day, tzinfo=calendar.tz)
        end = start + timedelta(days=1)
        session = calendar.session(day)
        moment = start
        while moment < end:
            moments.append(moment)
            busy = session is not None and session.open - ACTIVE_STEP <= moment <= eod_due_at(session, config) + ACTIVE_STEP
            moment += ACTIVE_STEP if busy else IDLE_STEP
        day += timedelta(days=1)
    return moments


def run_demo(db_path: str, sessions: int = 15, echo: Callable[[str], None] = print,
             last_session: date = DEMO_LAST_SESSION, quiet: bool = True) -> Tuple[str, datetime]:
    """Walk `sessions` sessions ending at `last_session` into a fresh demo database.

    Returns a printable summary and the simulated time the walk ended at."""
    from .simulator.market import SimulatedMarket, demo_events
    from .simulator.server import FakeApiServer

    calendar = TradingCalendar()
    first = last_session
    for _ in range(sessions - 1):
        first = calendar.previous_session(first).trade_date
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    market = SimulatedMarket(seed=DEMO_SEED)
    events = demo_events(market, last_session)
    market.plant(*events)
    echo("Simulated market: seed %d, %d planted events on %s" % (DEMO_SEED, len(events), last_session))
    for event in events:
        echo("  %s +%d contracts %s-%s ET" % (event.ticker, event.extra_volume, event.start.strftime("%H:%M"),
                                             event.end.strftime("%H:%M")))
    spx_logger = logging.getLogger("spx")
    with FakeApiServer(market, api_keys=(DEMO_API_KEY,)) as server:
        config = load_config({}, DB_PATH=db_path, API_BASE_URL=server.base_url, LOG_TO_FILE=False,
                             RETRY_DELAY_SECONDS=0)
        environ = {"MASSIVE_API_KEY": DEMO_API_KEY}
        # Start the evening before the first session, so the database watches from then on.
        moments = demo_moments(first - timedelta(days=1), last_session, calendar, config)
        echo("Walking %d ticks from %s to %s ET ..." % (len(moments), moments[0].strftime("%Y-%m-%d %H:%M"),
                                                       moments[-1].strftime("%Y-%m-%d %H:%M")))
        level = spx_logger.level
        if quiet:
            spx_logger.setLevel(logging.WARNING)
        failures = 0
        try:
            for moment in moments:
                server.set_now(moment)
                result = run_tick(moment, config, calendar=calendar, environ=environ)
                failures += sum(1 for _, outcome in result.outcomes if outcome.status == "failed")
                for action, outcome in result.outcomes:
                    if action.job == "eod" or outcome.status == "failed":
                        echo("  %s %s %s: %s (%s)" % (moment.strftime("%a %Y-%m-%d %H:%M ET"), action.job.upper(),
                                                     action.trade_date, outcome.status, outcome.detail))
        finally:
            spx_logger.setLevel(level)
    return summarize(db_path, failures), moments[-1]


def summarize(db_path: str, failures: int = 0) -> str:
    """The alerts and the run_log in a few lines."""
    models.open_database(db_path, readonly=True)
    try:
        conn = models.db.connection()
        lines = ["", "run_log: %s" % ", ".join(
            "%s %s %d" % row for row in conn.execute(
                "SELECT job, status, COUNT(*) FROM run_log GROUP BY job, status ORDER BY job, status"))]
        lines.append("daily_history: %d rows over %d sessions" % conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT trade_date) FROM daily_history").fetchone())
        latest = conn.execute("SELECT MAX(trade_date) FROM alerts").fetchone()[0]
        lines.append("alerts: %d in all" % conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])
        for row in conn.execute(
                "SELECT trade_date, ticker, group_concat(flag, '+'), MAX(volume), MAX(baseline_volume), "
                "MAX(baseline_source), MAX(premium) FROM alerts GROUP BY trade_date, ticker "
                "ORDER BY trade_date DESC, MAX(volume) DESC LIMIT 12"):
            lines.append("  %s %-22s %-16s volume %6d vs %s (%s), premium $%s"
                         % (row[0], row[1], row[2], row[3], row[4], row[5], format(int(row[6]), ",")))
        if failures:
            lines.append("failed runs: %d (see run_log)" % failures)
        if latest is None:
            lines.append("  (no alerts)")
        return "\n".join(lines)
    finally:
        models.close_database()

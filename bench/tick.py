"""Issue 7, item 3: the idle tick. `bin/tick --now <a Saturday noon>` as a subprocess, against `python -c pass`
in the same virtualenv, alternated, on a database whose EODs are all done; and what that tick imports."""
import os
import subprocess
import sys
import tempfile
import time
from datetime import date

from bench.common import REPO, bench_config, child_main, figure, median, peak_rss_of, percentile, say

SATURDAY = "2025-12-06T12:00:00-05:00"
SECTION = "3. Idle tick"
# Imports an idle tick should not need.
HEAVY = ("holidays", "requests", "urllib3", "flask", "werkzeug", "plotly", "waitress", "spxlib.marketdata",
         "spxlib.poll", "spxlib.eod", "spxlib.detection")


def prepare(folder: str) -> dict:
    """A database that has watched since November, with every poll and EOD done: a Saturday has nothing due."""
    from spxlib import models
    from spxlib.calendar import TradingCalendar
    from spxlib.scheduler import eod_due_at, poll_slots

    config = bench_config(folder)
    calendar = TradingCalendar.from_config(config)
    models.open_database(config.db_path)
    rows = []
    for session in calendar.sessions_between(date(2025, 11, 3), date(2025, 12, 5)):
        for slot in poll_slots(session, config):
            stamp = models.utc_iso(slot)
            rows.append(("poll", session.key, stamp, "ok", 1, stamp, stamp, "10286 contracts"))
        due = models.utc_iso(eod_due_at(session, config))
        rows.append(("eod", session.key, due, "ok", 1, due, due, "10286 contracts from snapshot"))
    with models.db.atomic():
        models.db.connection().executemany(
            "INSERT INTO run_log (job, trade_date, slot, status, attempts, started_at, finished_at, detail) "
            "VALUES (?,?,?,?,?,?,?,?)", rows)
        models.Meta.insert(key="watching_since", value="2025-11-03T14:00:00Z").execute()
    models.close_database()
    return {"db_path": config.db_path, "run_log_rows": len(rows)}


def timed_run(command, env, cwd):
    """Wall time, peak memory (MB, None if unknown) and output of one child process."""
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    return wall, None, completed.returncode, completed.stdout.decode()


def import_profile(command, env, cwd):
    """python -X importtime: the top-level imports by cumulative time, and which heavy modules came in."""
    completed = subprocess.run([command[0], "-X", "importtime"] + command[1:], env=env, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    top, modules = [], set()
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not cumulative.strip().isdigit():
            continue
        modules.add(name.strip())
        if not name.startswith("  "):  # imported at top level
            top.append((int(cumulative) / 1000.0, name.strip()))
    top.sort(reverse=True)
    return {"total_ms": round(sum(ms for ms, _ in top), 1), "top": [(name, round(ms, 1)) for ms, name in top[:12]],
            "heavy": sorted(m for m in modules if m in HEAVY or m.split(".")[0] in HEAVY and "." not in m)}


def run(quick: bool) -> dict:
    repeats = 10 if quick else 25
    with tempfile.TemporaryDirectory(prefix="bench-tick-") as folder:
        prepared = prepare(folder)
        env = dict(os.environ, SPX_DB_PATH=prepared["db_path"], SPX_LOG_TO_FILE="false")
        env.pop("SPX_CONFIG", None)
        tick = [sys.executable, os.path.join(REPO, "bin", "tick"), "--now", SATURDAY]
        empty = [sys.executable, "-c", "pass"]
        first = timed_run(tick, env, folder)
        if first[2] != 0 or "WEEKEND" not in first[3]:
            raise RuntimeError("the idle tick did not run as expected:\n" + first[3])
        timed_run(empty, env, folder)
        say("tick: %d idle ticks and %d empty interpreters, alternated" % (repeats, repeats))
        ticks, empties = [], []
        for _ in range(repeats):
            ticks.append(timed_run(tick, env, folder)[0])
            empties.append(timed_run(empty, env, folder)[0])
        memory, empty_memory = peak_rss_of(tick, env, folder), peak_rss_of(empty, env, folder)
        profile = import_profile(tick, env, folder)
        output = first[3].strip().splitlines()
    tick_median, empty_median = median(ticks), median(empties)
    figures = [
        figure(SECTION, "idle tick, bin/tick --now %s (Saturday, EODs done), median wall" % SATURDAY,
               tick_median, "s", empty_median, "python -c pass, same virtualenv", "<= 10x baseline",
               tick_median <= 10 * empty_median, "p95 %.3f s vs %.3f s" % (percentile(ticks, 95),
                                                                          percentile(empties, 95))),
        figure(SECTION, "idle tick peak memory (/usr/bin/time)", memory, "MB", empty_memory, "python -c pass"),
        figure(SECTION, "idle tick imports (python -X importtime, sum of top-level cumulative)",
               profile["total_ms"] / 1000.0, "s", note="heavy modules imported: %s"
               % (", ".join(profile["heavy"]) or "none")),
    ]
    return {"name": "tick", "figures": figures, "notes": ["output: " + " | ".join(output)],
            "details": {"prepared": prepared, "imports": profile, "tick_runs": ticks, "empty_runs": empties}}


if __name__ == "__main__":
    child_main(run)

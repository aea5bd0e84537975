"""Run the benchmarks, each in its own process, and print every figure beside the baseline measured in the
same run. ``--results FILE`` also writes them as Markdown with the machine they ran on."""
import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

from bench.common import REPO, run_child

BENCHMARKS = ("poll", "tick", "dashboard", "eod", "storage")  # in the order of their sections


def machine() -> dict:
    """Where the figures come from: cores, memory, Python, SQLite, date and commit."""
    def command(*args):
        try:
            return subprocess.run(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True).stdout.rstrip()
        except OSError:
            return ""

    dirty = command("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": command("nproc") or str(os.cpu_count()),
        "free -h": command("free", "-h"),
        "python": "%s (%s)" % (platform.python_version(), sys.executable),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": command("git", "rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else ""),
    }


def number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = float(value)
    if value.is_integer() or abs(value) >= 100:
        return "%.0f" % value
    if abs(value) >= 1:
        return "%.2f" % value
    return "%.3g" % value


def rows_of(results):
    for result in results:
        for item in result["figures"]:
            met = "" if item["met"] is None else ("yes" if item["met"] else "NO")
            ratio = "%.1fx" % item["ratio"] if item["ratio"] is not None else ""
            baseline = ("%s %s" % (number(item["baseline"]), item["baseline_name"])).strip()
            yield (item["section"], item["name"], "%s %s" % (number(item["value"]), item["unit"]), baseline,
                   ratio, item["target"], met, item["note"])


def print_table(results) -> None:
    section = None
    for row in rows_of(results):
        if row[0] != section:
            section = row[0]
            print("\n== %s ==" % section)
        print("  %-100s %14s" % (row[1][:100], row[2]))
        extra = "  ".join(part for part in (
            ("baseline " + row[3]) if row[3] else "", ("ratio " + row[4]) if row[4] else "",
            ("target " + row[5] + (" met: " + row[6] if row[6] else "")) if row[5] else "", row[7]) if part)
        if extra:
            print("      " + extra)
    for result in results:
        print("\n%s: peak memory of its process %.0f MB" % (result["name"], result["peak_rss_mb"]))
        for note in result.get("notes", []):
            print("  note: " + note)


def markdown(results, info, quick: bool, seconds: float) -> str:
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["# Benchmark results", "",
             "Written by `%s -m bench%s --results bench/RESULTS.md` in %.0f s. Every baseline was measured in "
             "the same run." % (os.path.basename(sys.executable), " --quick" if quick else "", seconds), "",
             "## Machine", ""]
    for key, value in info.items():
        if "\n" in value:
            lines += ["- %s:" % key, "", "```", value, "```", ""]
        else:
            lines.append("- %s: %s" % (key, value))
    lines += ["", "## Figures", "",
              "| section | figure | value | baseline (same run) | ratio | target | met | note |",
              "|---|---|---|---|---|---|---|---|"]
    for row in rows_of(results):
        lines.append("| " + " | ".join(cell(part) for part in row) + " |")
    lines += ["", "Peak memory of each benchmark's own process (ru_maxrss; it holds recorded pages, copies and "
              "tracemalloc, so it is not the code under test's): " + ", ".join(
        "%s %.0f MB" % (r["name"], r["peak_rss_mb"]) for r in results) + ".", ""]
    for result in results:
        for note in result.get("notes", []):
            lines.append("- %s: %s" % (result["name"], note))
    by_name = {r["name"]: r for r in results}
    if "tick" in by_name:
        imports = by_name["tick"]["details"]["imports"]
        lines += ["", "## What the idle tick imports (python -X importtime, top level, cumulative ms)", ""]
        lines += ["- %s: %.1f" % (name, ms) for name, ms in imports["top"]]
    if "dashboard" in by_name:
        details = by_name["dashboard"]["details"]
        lines += ["", "## Dashboard database and query plans", "",
                  "Synthesized: %s." % ", ".join("%s %s" % (k, v) for k, v in details["database"].items()),
                  "File: %.2f GB." % (details["storage"]["file_bytes"] / 2 ** 30), ""]
        seen = set()
        for url, statements in details["query_plans"].items():
            fresh = [s for s in statements if s["sql"] not in seen]
            if not fresh:
                continue
            lines += ["### %s" % url, ""]
            for statement in fresh:
                seen.add(statement["sql"])
                lines += ["```sql", statement["sql"], "```"] + ["    " + line for line in statement["plan"]] + [""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller dashboard database")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--results", metavar="FILE", help="also write the figures as Markdown to FILE")
    args = parser.parse_args(argv)
    info = machine()
    print("spx-put-watch benchmarks%s on %s CPUs, Python %s, %s"
          % (" (quick)" if args.quick else "", info["nproc"], platform.python_version(), info["date"]))
    started = time.perf_counter()
    results = []
    for name in args.only or BENCHMARKS:
        print("[%s]" % name, file=sys.stderr, flush=True)
        results.append(run_child(name, args.quick))
    seconds = time.perf_counter() - started
    print_table(results)
    print("\n%d benchmarks in %.0f s" % (len(results), seconds))
    if args.results:
        with open(args.results, "w", encoding="utf-8") as handle:
            handle.write(markdown(results, info, args.quick, seconds))
        print("written to %s" % args.results)


if __name__ == "__main__":
    main()

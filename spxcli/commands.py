"""The command-line edge: parse arguments, read the clock once, call one library function, print.

All behaviour lives in spxlib; library errors become click errors here with exit code 2 for usage
and configuration problems and 1 for work that failed and will be retried.
"""
import json
import os
import sys
from datetime import datetime, timezone

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(click.ClickException):
    exit_code = EXIT_USAGE


class WorkFailed(click.ClickException):
    exit_code = EXIT_FAILED


def parse_now(text):
    """`--now` as an aware datetime, or the real clock read once, here at the edge."""
    if not text:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("--now %r is not an ISO 8601 time (example: 2025-12-04T09:45:00-05:00)" % text)
    if moment.tzinfo is None:
        raise UsageError("--now %r has no UTC offset (example: 2025-12-04T09:45:00-05:00)" % text)
    return moment


def load_settings(console=True, **overrides):
    """Validated configuration and logging, or exit 2 with the sentence that names the bad setting."""
    from spxlib.config import ConfigError, api_key, load_config
    from spxlib.logsetup import configure_logging

    try:
        config = load_config(**overrides)
    except ConfigError as exc:
        raise UsageError(str(exc))
    configure_logging(config, console=console, secrets=[api_key()])
    return config


def _storage_guard(func, *args, **kwargs):
    from spxlib.models import StorageError

    try:
        return func(*args, **kwargs)
    except StorageError as exc:
        raise WorkFailed(str(exc))


now_option = click.option("--now", "now_text", metavar="ISO8601",
                          help="Act as if it were this time (with UTC offset), e.g. 2025-12-04T09:45:00-05:00.")


@click.command()
@click.option("--dry-run", is_flag=True, help="Print the state and what would run; touch neither network nor database.")
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print the decision and results as one JSON object.")
def tick(dry_run, now_text, as_json):
    """Decide from run_log what is due (a poll, an EOD), do it, record it and exit. Run it every 5 minutes."""
    now = parse_now(now_text)
    config = load_settings(console=not as_json)
    from spxlib.tick import run_tick

    if not as_json:
        click.echo("=== spx-put-watch tick%s ===" % (" (dry run)" if dry_run else ""))
    result = _storage_guard(run_tick, now, config, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    sys.exit(result.exit_code)


@click.command()
@now_option
@click.option("--force", is_flag=True, help="Poll even outside a session or when this slot already has a poll.")
def poll(now_text, force):
    """Poll the put chain once now, store the snapshot and run detection."""
    now = parse_now(now_text)
    config = load_settings()
    from spxlib.poll import PollRefused, poll_now

    try:
        outcome = _storage_guard(poll_now, now, config, force=force)
    except PollRefused as exc:
        raise UsageError(str(exc))
    click.echo("Poll: %s%s" % (outcome.status, (" (%s)" % outcome.detail) if outcome.detail else ""))
    sys.exit(EXIT_FAILED if outcome.status == "failed" else EXIT_OK)


@click.command()
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Consolidate this session.")
@click.option("--since", "since_text", metavar="YYYY-MM-DD",
              help="Consolidate every session from this date to the last completed one.")
@click.option("--force", is_flag=True, help="Redo sessions already consolidated.")
@click.option("--dry-run", is_flag=True, help="Say which sessions would be consolidated, and do nothing.")
@now_option
def eod(date_text, since_text, force, dry_run, now_text):
    """Consolidate a session's final volumes into daily_history (reprocess a day, or every day since one)."""
    if bool(date_text) == bool(since_text):
        raise UsageError("give exactly one of --date YYYY-MM-DD or --since YYYY-MM-DD")
    now = parse_now(now_text)
    config = load_settings()
    from spxlib.eod import EodRefused, reprocess

    try:
        outcomes = _storage_guard(reprocess, now, config, date_text=date_text, since_text=since_text,
                                  force=force, dry_run=dry_run)
    except EodRefused as exc:
        raise UsageError(str(exc))
    failed = [day for day, outcome in outcomes if outcome.status == "failed"]
    for day, outcome in outcomes:
        click.echo("EOD %s: %s%s" % (day, outcome.status, (" (%s)" % outcome.detail) if outcome.detail else ""))
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@click.command()
@now_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(now_text, as_json):
    """Show the last polls and EODs, failures, the next action and data freshness. Exit 0 OK, 1 warning, 2 critical."""
    now = parse_now(now_text)
    config = load_settings(console=False)
    from spxlib.status import collect_status, format_status

    report = _storage_guard(collect_status, now, config)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(format_status(report))
    sys.exit({"ok": 0, "warning": 1, "critical": 2}[report["level"]])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. 127.0.0.1 keeps the dashboard on this machine; "
                   "0.0.0.0 exposes it, unauthenticated, to every network this machine is on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--db", "db_path", metavar="PATH", help="Database file (default: SPX_DB_PATH or data/spx.db).")
def serve(host, port, db_path):
    """Serve the dashboard (read-only on the database) with waitress."""
    config = load_settings()
    from dashboard.serve import serve as serve_dashboard

    path = db_path or config.db_path
    click.echo("Dashboard on http://%s:%d/ (database %s); Ctrl-C stops it." % (host, port, os.path.abspath(path)))
    serve_dashboard(path, host=host, port=port, config=config)


@click.command()
@click.option("--sessions", default=15, show_default=True, type=click.IntRange(2, 250),
              help="How many simulated sessions to walk through.")
@click.option("--db", "db_path", default="demo/spx-demo.db", show_default=True, metavar="PATH",
              help="The demo's own database file (never the user's).")
@click.option("--serve/--no-serve", "serve_after", default=True, help="Serve the dashboard when done.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535))
def demo(sessions, db_path, serve_after, port):
    """Walk the real tick pipeline through simulated sessions against the simulated market, then serve the dashboard."""
    from spxlib.demo import run_demo

    summary, ended_at = run_demo(db_path, sessions=sessions, echo=click.echo)
    click.echo(summary)
    if serve_after:
        config = load_settings(console=True, DB_PATH=db_path, LOG_TO_FILE=False)
        from dashboard.serve import serve as serve_dashboard

        click.echo("Dashboard on http://127.0.0.1:%d/ (demo database %s, clock held at the simulation's end, %s); "
                   "Ctrl-C stops it." % (port, db_path, ended_at.strftime("%Y-%m-%d %H:%M ET")))
        serve_dashboard(db_path, host="127.0.0.1", port=port, config=config, now=lambda: ended_at)


def simulate():
    """The simulated market's commands (spxcli.simulate)."""
    from spxcli.simulate import simulate as group

    return group()

"""The dashboard: a read-only JSON API over the database, and the one page that shows it.

``create_app(db_path, config=None, now=None)`` builds the Flask app. Every request reads the clock
once, at its top (``g.now``), and opens its own read-only SQLite connection (``mode=ro``), so the
dashboard can never write to the file the cron job owns and a missing or corrupt file becomes a
JSON error or an explanation on the page, never a traceback.
"""
import json
import logging
import os
import re
import sqlite3
import threading
from datetime import date, datetime, timezone
from typing import Callable, Optional
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import Flask, Response, g, render_template, request, send_file
from peewee import DatabaseError as PeeweeDatabaseError
from werkzeug.exceptions import HTTPException

from spxlib import models
from spxlib.calendar import TradingCalendar
from spxlib.config import load_config

from . import queries

log = logging.getLogger(__name__)

NO_DATA = "No data yet: run bin/tick during a session (or bin/demo) to collect snapshots."
MOVERS_DEFAULT, MOVERS_MAX = 20, 500
HISTORY_DEFAULT, SUMMARY_DEFAULT, DAYS_MAX = 60, 90, 3650
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# db.init() in models is process-wide state: health checks through it take turns.
_STATUS_LOCK = threading.Lock()


class ApiError(Exception):
    """A request the API answers with an HTTP error status and a sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def plotly_js_path() -> str:
    """plotly.min.js from the installed plotly package: the page needs no CDN."""
    import plotly

    return os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(db_path: str, config=None, now: Optional[Callable[[], datetime]] = None) -> Flask:
    """The dashboard app over the database at db_path (read-only).

    config: a spxlib Config (default: load_config()); now: a zero-argument callable returning an
    aware UTC datetime, read once per request (default: the real clock).
    """
    config = config if config is not None else load_config()
    clock = now or _utc_now
    db_path = os.path.abspath(db_path)
    tz = ZoneInfo(config.timezone)
    calendar = TradingCalendar.from_config(config)  # built once: every request reuses its years

    app = Flask(__name__)
    app.config["DB_PATH"] = db_path
    app.json.sort_keys = False
    app.json.compact = True

    @app.before_request
    def freeze_now() -> None:
        moment = clock()
        if moment.tzinfo is None:
            raise ValueError("now() returned a naive datetime; the dashboard needs an aware UTC time")
        g.now = moment.astimezone(timezone.utc)

    @app.teardown_appcontext
    def close_connection(_exc) -> None:
        conn = g.pop("conn", None)
        if conn is not None:
            conn.close()

    @app.after_request
    def security_headers(response: Response) -> Response:
        # Defence in depth behind the page's text-only DOM insertion: no inline or foreign script.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def conn() -> sqlite3.Connection:
        if "conn" not in g:
            g.conn = open_readonly(db_path)
        return g.conn

    # --- errors -----------------------------------------------------------------------------

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return {"error": exc.message}, exc.status

    @app.errorhandler(models.StorageError)
    def storage_error(exc: models.StorageError):
        return {"error": str(exc)}, 503

    @app.errorhandler(sqlite3.DatabaseError)
    def database_error(exc: sqlite3.DatabaseError):
        # A corrupt page met in the middle of a query, or a lock held too long by a writer.
        log.warning("database error on %s: %s", request.path, exc)
        return {"error": models.describe_storage_error(db_path, exc)}, 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return {"error": "%s: %s" % (exc.name, exc.description)}, exc.code
        return exc

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s", request.path)
        if request.path.startswith("/api/"):
            return {"error": "internal error (%s): see the server log" % type(exc).__name__}, 500
        return Response("Internal error: see the server log.", 500, mimetype="text/plain")

    # --- the page ---------------------------------------------------------------------------

    @app.get("/")
    def index():
        problem = None
        try:
            conn()
        except models.StorageError as exc:
            problem = str(exc)
        except sqlite3.DatabaseError as exc:
            problem = models.describe_storage_error(db_path, exc)
        return render_template(
            "index.html",
            problem=problem,
            db_path=db_path,
            poll_interval_minutes=config.poll_interval_minutes,
            timezone=config.timezone,
            movers_default=MOVERS_DEFAULT,
        )

    @app.get("/vendor/plotly.min.js")
    def plotly_js():
        path = plotly_js_path()
        if not os.path.exists(path):
            return Response("plotly.min.js is missing from the installed plotly package", 404,
                            mimetype="text/plain")
        return send_file(path, mimetype="text/javascript", max_age=86400)

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    # --- the API ----------------------------------------------------------------------------

    def day_param() -> Optional[str]:
        """The requested session date, else the latest with data (None in an empty file)."""
        day = date_param("date")
        return day if day is not None else queries.latest_trade_date(conn())

    @app.get("/api/enriched")
    def api_enriched():
        day, expiration = day_param(), date_param("expiration")
        contracts = queries.enriched(conn(), day, tz, expiration) if day else []
        return _with_message({"date": day, "expiration": expiration, "count": len(contracts),
                              "contracts": contracts}, day, contracts)

    @app.get("/api/movers")
    def api_movers():
        limit = int_param("limit", MOVERS_DEFAULT, 1, MOVERS_MAX)
        day, expiration = day_param(), date_param("expiration")
        movers = queries.movers(conn(), day, tz, expiration, limit) if day else []
        return _with_message({"date": day, "expiration": expiration, "limit": limit, "movers": movers},
                             day, movers)

    @app.get("/api/alerts")
    def api_alerts():
        day, expiration = day_param(), date_param("expiration")
        alerts = queries.alerts(conn(), day, expiration) if day else []
        return {"date": day, "expiration": expiration, "count": len(alerts), "alerts": alerts}

    @app.get("/api/expirations")
    def api_expirations():
        day = day_param()
        expirations = queries.expirations(conn(), day, tz) if day else []
        return _with_message({"date": day, "expirations": expirations}, day, expirations)

    @app.get("/api/history/<path:ticker>")
    def api_history(ticker: str):
        sessions = int_param("days", HISTORY_DEFAULT, 1, DAYS_MAX)
        day = day_param()
        # The session the day's baselines were compared with: the previous *trading* session.
        previous = calendar.previous_session(date.fromisoformat(day)).key if day else None
        found = queries.history(conn(), ticker, day, previous, sessions, tz) if day else None
        if found is None:
            raise ApiError(404, "unknown ticker %r: no daily history and no snapshots on or before %s"
                           % (ticker, day or "any date"))
        found["days"] = sessions
        return found

    @app.get("/api/summary")
    def api_summary():
        sessions = int_param("days", SUMMARY_DEFAULT, 1, DAYS_MAX)
        last_day = date_param("date")
        rows = queries.summary(conn(), last_day, sessions)
        body = {"date": last_day, "days": sessions, "sessions": rows}
        if not rows:
            body["message"] = ("No session totals yet: the end-of-day run writes them "
                               "(bin/tick after the close).")
        return body

    @app.get("/api/health")
    def api_health():
        report = health_report(db_path, config, g.now, calendar)
        status = 200 if report.get("level") == "ok" else 503
        return Response(json.dumps(report, default=str), status, mimetype="application/json")

    return app


def _with_message(body: dict, day: Optional[str], rows: list) -> dict:
    if day is None:
        body["message"] = NO_DATA
    elif not rows:
        body["message"] = ("Nothing on %s for this filter: not a session, or no poll ran that day." % day)
    return body


def date_param(name: str) -> Optional[str]:
    """A YYYY-MM-DD query parameter (None when absent or empty); 400 when malformed."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError(value)
        date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "%s=%r is not a date: use YYYY-MM-DD (an Eastern session date)" % (name, value))
    return value


def int_param(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; 400 otherwise."""
    value = request.args.get(name, "").strip()
    if not value:
        return default
    if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
        raise ApiError(400, "%s=%r is not valid: use a whole number from %d to %d" % (name, value, low, high))
    return int(value)


def open_readonly(db_path: str) -> sqlite3.Connection:
    """A read-only connection to the database, its schema version checked; StorageError otherwise."""
    if not os.path.exists(db_path):
        raise models.StorageError(
            "No data yet: database file %s does not exist. Run bin/tick (or bin/demo) first." % db_path)
    uri = "file:%s?mode=ro" % quote(db_path)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=models.BUSY_TIMEOUT_MS / 1000.0)
    except sqlite3.Error as exc:
        raise models.StorageError(models.describe_storage_error(db_path, exc)) from None
    try:
        version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
        conn.close()
        if "no such table" in str(exc) or isinstance(exc, TypeError):
            raise models.StorageError(
                "database %s has no spx-put-watch schema: run bin/tick once to create it" % db_path
            ) from None
        raise models.StorageError(models.describe_storage_error(db_path, exc)) from None
    if version != models.SCHEMA_VERSION:
        conn.close()
        raise models.StorageError(
            "database %s has schema version %d, the dashboard reads version %d: run bin/tick once to migrate it"
            % (db_path, version, models.SCHEMA_VERSION))
    return conn


def health_report(db_path: str, config, now: datetime, calendar: TradingCalendar) -> dict:
    """spxlib.status.collect_status for this database at `now`, or a critical report naming the problem."""
    from spxlib.status import collect_status

    settings = config.replace(db_path=db_path)
    with _STATUS_LOCK:  # collect_status reads through spxlib's one peewee handle
        try:
            return collect_status(now, settings, calendar)
        except models.StorageError as exc:
            return _unreadable_report(now, str(exc))
        except (PeeweeDatabaseError, sqlite3.DatabaseError) as exc:
            # Locked past the busy timeout, or a corrupt page met while reading run_log.
            return _unreadable_report(now, models.describe_storage_error(db_path, exc))


def _unreadable_report(now: datetime, problem: str) -> dict:
    return {
        "now": now.isoformat(), "state": None, "level": "critical", "problems": [problem],
        "last_ok_poll": None, "last_ok_eod": None, "failures_since": [], "next_action": None,
        "next_action_at": None, "data_age_seconds": None, "latest_snapshot_at": None, "pending_eods": [],
    }

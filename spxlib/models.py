"""The SQLite schema (peewee models), opening the database, and in-place migrations.

Timestamps are stored as UTC ISO 8601 text (``2025-12-04T14:45:00Z``) so they sort as text and read
plainly in the sqlite3 shell; ``trade_date`` is the Eastern session date ``YYYY-MM-DD``.
"""
import os
import sqlite3
from datetime import datetime, timezone
from typing import Optional

from peewee import (
    CharField,
    DatabaseError,
    FloatField,
    IntegerField,
    Model,
    OperationalError,
    SqliteDatabase,
    TextField,
)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000

db = SqliteDatabase(None)


class StorageError(Exception):
    """The database file cannot be opened or used (corrupt, locked, unreadable)."""


def utc_iso(moment: datetime) -> str:
    """An aware datetime as UTC ISO 8601 text, the storage format of every timestamp."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime %r: every stored time must be aware" % (moment,))
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: Optional[str]) -> Optional[datetime]:
    """Stored UTC text back to an aware datetime (None stays None)."""
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Meta(BaseModel):
    key = CharField(primary_key=True)
    value = TextField()

    class Meta:
        table_name = "meta"


class RunLog(BaseModel):
    job = CharField()  # 'poll' | 'eod'
    trade_date = CharField()
    slot = CharField()  # UTC ISO time of the poll slot, or of the EOD's due time
    status = CharField()  # 'running' | 'ok' | 'failed' | 'skipped'
    attempts = IntegerField(default=0)
    started_at = CharField()
    finished_at = CharField(null=True)
    detail = TextField(null=True)

    class Meta:
        table_name = "run_log"
        indexes = ((("job", "trade_date", "slot"), True),)


class IntradaySnapshot(BaseModel):
    trade_date = CharField()
    captured_at = CharField()
    ticker = CharField()
    root = CharField()
    expiration_date = CharField()
    strike = FloatField()
    volume = IntegerField(null=True)
    open_interest = IntegerField(null=True)
    vwap = FloatField(null=True)
    close = FloatField(null=True)
    implied_volatility = FloatField(null=True)
    delta = FloatField(null=True)
    underlying_price = FloatField(null=True)
    # Added in schema version 2: the remaining price sources of the premium, and data age.
    last_price = FloatField(null=True)
    midpoint = FloatField(null=True)
    data_updated_at = CharField(null=True)  # underlying_asset.last_updated, UTC
    data_timeframe = CharField(null=True)  # 'DELAYED' | 'REAL-TIME'
    # What detection compared this row with: the previous session's volume and where it came from
    # ('aligned' | 'latest' | 'eod' | 'none'), stored so the dashboard reads it without recomputing.
    baseline_volume = IntegerField(null=True)
    baseline_source = CharField(null=True)

    class Meta:
        table_name = "intraday_snapshots"
        indexes = (
            (("captured_at", "ticker"), True),
            (("trade_date", "ticker", "captured_at"), False),
        )


class DailyHistory(BaseModel):
    trade_date = CharField()
    ticker = CharField()
    root = CharField()
    expiration_date = CharField()
    strike = FloatField()
    volume = IntegerField(null=True)
    open_interest = IntegerField(null=True)
    close = FloatField(null=True)
    vwap = FloatField(null=True)
    source = CharField()  # 'snapshot' | 'aggregates'

    class Meta:
        table_name = "daily_history"
        indexes = (
            (("trade_date", "ticker"), True),
            (("ticker", "trade_date"), False),
        )


class Alert(BaseModel):
    trade_date = CharField()
    ticker = CharField()
    flag = CharField()  # 'delta' | 'multiplier' | 'dormancy'
    volume = IntegerField()
    baseline_volume = IntegerField(null=True)
    baseline_source = CharField()  # 'aligned' | 'latest' | 'eod'
    premium = FloatField()
    first_seen_at = CharField()
    last_seen_at = CharField()
    # Added in schema version 2, so the dashboard need not parse tickers.
    root = CharField(null=True)
    expiration_date = CharField(null=True)
    strike = FloatField(null=True)

    class Meta:
        table_name = "alerts"
        indexes = ((("trade_date", "ticker", "flag"), True),)


class SessionSummary(BaseModel):
    """Per session and expiration totals written by the EOD (schema version 2)."""

    trade_date = CharField()
    root = CharField()
    expiration_date = CharField()
    contracts = IntegerField()
    volume = IntegerField()
    premium = FloatField()
    alerts = IntegerField()

    class Meta:
        table_name = "session_summary"
        indexes = ((("trade_date", "root", "expiration_date"), True),)


ALL_MODELS = (Meta, RunLog, IntradaySnapshot, DailyHistory, Alert, SessionSummary)

# Version 1 was the first release's schema; each step brings a database one version up, in place.
_V1_TABLES = (Meta, RunLog, IntradaySnapshot, DailyHistory, Alert)
_V2_COLUMNS = {
    "intraday_snapshots": (
        ("last_price", "REAL"),
        ("midpoint", "REAL"),
        ("data_updated_at", "VARCHAR(255)"),
        ("data_timeframe", "VARCHAR(255)"),
        ("baseline_volume", "INTEGER"),
        ("baseline_source", "VARCHAR(255)"),
    ),
    "alerts": (("root", "VARCHAR(255)"), ("expiration_date", "VARCHAR(255)"), ("strike", "REAL")),
}


def _columns(table: str):
    return {row[1] for row in db.execute_sql('PRAGMA table_info("%s")' % table).fetchall()}


def _migrate_to_2() -> None:
    for table, columns in _V2_COLUMNS.items():
        present = _columns(table)
        for name, sql_type in columns:
            if name not in present:
                db.execute_sql('ALTER TABLE "%s" ADD COLUMN "%s" %s' % (table, name, sql_type))
    db.create_tables([SessionSummary, IntradaySnapshot, DailyHistory])  # adds missing tables/indexes


MIGRATIONS = {2: _migrate_to_2}


def schema_version() -> int:
    tables = db.get_tables()
    if "meta" not in tables:
        return 0
    row = Meta.get_or_none(Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate() -> int:
    """Create a fresh schema, or bring an older one up to SCHEMA_VERSION in place. Returns the version."""
    with db.atomic():
        version = schema_version()
        if version == 0 and "run_log" not in db.get_tables():
            db.create_tables(ALL_MODELS)
            version = SCHEMA_VERSION
        elif version == 0:
            version = 1  # a database from before the version was recorded
        if version > SCHEMA_VERSION:
            raise StorageError(
                "the database has schema version %d, newer than this program's %d: upgrade spx-put-watch"
                % (version, SCHEMA_VERSION)
            )
        while version < SCHEMA_VERSION:
            version += 1
            MIGRATIONS[version]()
        Meta.insert(key="schema_version", value=str(version)).on_conflict_replace().execute()
    return version


def open_database(path: str, readonly: bool = False, create: bool = True) -> SqliteDatabase:
    """Open (and migrate) the database file; read-only opens never write, not even a migration.

    Raises StorageError with a sentence for a corrupt, locked or unreadable file.
    """
    if db.database is not None and not db.is_closed():
        db.close()
    if readonly:
        if not os.path.exists(path):
            raise StorageError("database file %s does not exist yet: run bin/tick or the demo first" % path)
        uri = "file:%s?mode=ro" % os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
        db.init(uri, uri=True, pragmas={"busy_timeout": BUSY_TIMEOUT_MS, "query_only": 1},
                check_same_thread=False)
    else:
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StorageError("cannot create the database folder %s: %s" % (folder, exc.strerror)) from None
        if not create and not os.path.exists(path):
            raise StorageError("database file %s does not exist" % path)
        db.init(path, pragmas={"journal_mode": "wal", "busy_timeout": BUSY_TIMEOUT_MS,
                               "synchronous": "normal"}, check_same_thread=False)
    try:
        db.connect(reuse_if_open=True)
        if readonly:
            version = schema_version()
            if version != SCHEMA_VERSION:
                raise StorageError(
                    "database %s has schema version %d, expected %d: run bin/tick once to migrate it"
                    % (path, version, SCHEMA_VERSION)
                )
        else:
            migrate()
    except (DatabaseError, OperationalError, sqlite3.DatabaseError) as exc:
        db.close()
        raise StorageError(describe_storage_error(path, exc)) from None
    return db


def describe_storage_error(path: str, exc: Exception) -> str:
    """A sentence that tells the user what is wrong with the database file and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return "database %s is locked by another process (%s); the next tick will try again" % (path, text)
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            "database %s is corrupt (%s): move it aside and restore a backup, or let a new one be created"
            % (path, text)
        )
    return "database %s cannot be used: %s" % (path, text)


def close_database() -> None:
    if db.database is not None and not db.is_closed():
        db.close()

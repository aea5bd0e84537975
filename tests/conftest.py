"""Shared fixtures: a real SQLite file per test, validated configuration, the simulated market."""
import pytest
from click.testing import CliRunner

from spxlib import models
from spxlib.calendar import TradingCalendar
from spxlib.config import load_config

from tests.fixtures_market import *  # noqa: F401,F403  (the simulated market and its API server)


@pytest.fixture
def db_path(tmp_path):
    """A database file of this test's own."""
    return str(tmp_path / "data" / "spx.db")


@pytest.fixture
def config(tmp_path, db_path):
    """Default settings, pointed at this test's database and log file."""
    return load_config({}, DB_PATH=db_path, LOG_FILE_PATH=str(tmp_path / "logs" / "scheduler.log"))


@pytest.fixture
def calendar():
    return TradingCalendar()


@pytest.fixture
def database(db_path):
    """The schema, created in this test's file and open for the test."""
    models.open_database(db_path)
    yield models.db
    models.close_database()


@pytest.fixture
def run_cli(monkeypatch):
    """Run a command as a user would (real click parsing): the database in SPX_DB_PATH, no log file."""
    def run(command, args, db_path, **environ):
        monkeypatch.setenv("SPX_DB_PATH", str(db_path))
        monkeypatch.setenv("SPX_LOG_TO_FILE", "false")
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(command, args, catch_exceptions=False)
    return run

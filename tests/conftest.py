"""Shared fixtures: a real SQLite file per test, validated configuration, the simulated market."""
import pytest

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

"""Fixtures for the simulated market and its fake market data API on 127.0.0.1."""
import pytest

from spxlib.simulator.market import DEFAULT_SEED, SimulatedMarket
from spxlib.simulator.server import FakeApiServer

FAKE_API_KEY = "test-key"

__all__ = ["FAKE_API_KEY", "market", "fake_api", "fake_api_key"]


@pytest.fixture
def market():
    """A SimulatedMarket with the default seed and the small seed chain (no planted events)."""
    return SimulatedMarket(seed=DEFAULT_SEED, size="seed")


@pytest.fixture
def fake_api_key():
    """The key the fake_api server accepts."""
    return FAKE_API_KEY


@pytest.fixture
def fake_api(market):
    """The fake API around ``market`` on a free 127.0.0.1 port, key "test-key"; stopped at teardown."""
    server = FakeApiServer(market, api_keys=(FAKE_API_KEY,))
    server.start()
    yield server
    server.stop()

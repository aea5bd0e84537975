"""A deterministic simulated SPX option market and a fake of the market data API that serves it."""
from spxlib.simulator.market import (
    CHAIN_SIZES,
    DAILY_VOLUME_BAND,
    DEFAULT_LEVEL,
    DEFAULT_NOW,
    DEFAULT_SEED,
    FULL_CHAIN,
    MAX_BASE_DAILY_VOLUME,
    MAX_NORMAL_DAILY_VOLUME,
    SEED_CHAIN,
    ChainSpec,
    Contract,
    PlantedEvent,
    SimulatedMarket,
    SnapshotOptions,
    UnknownContract,
    demo_events,
    format_ticker,
    parse_now,
    parse_ticker,
)
from spxlib.simulator.server import FAULT_KINDS, FakeApiServer, Fault, RequestRecord

__all__ = [
    "CHAIN_SIZES", "DAILY_VOLUME_BAND", "DEFAULT_LEVEL", "DEFAULT_NOW", "DEFAULT_SEED", "FULL_CHAIN",
    "MAX_BASE_DAILY_VOLUME", "MAX_NORMAL_DAILY_VOLUME", "SEED_CHAIN", "ChainSpec", "Contract", "PlantedEvent",
    "SimulatedMarket", "SnapshotOptions", "UnknownContract", "demo_events", "format_ticker", "parse_now",
    "parse_ticker", "FAULT_KINDS", "FakeApiServer", "Fault", "RequestRecord",
]

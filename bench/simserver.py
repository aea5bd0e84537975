"""The fake market data API for the benchmarks, in its own process: prints its base URL, then serves.

Sizes: ``seed`` and ``full`` are the simulator's own; ``dense`` is the full chain, puts only, with strikes
close enough that about 10,000 puts are out of the money (the full chain has about 4,600 below spot).
"""
import argparse
import dataclasses
import sys

from spxlib.simulator.market import CHAIN_SIZES, FULL_CHAIN, SimulatedMarket, parse_now
from spxlib.simulator.server import FakeApiServer

DENSE_CHAIN = dataclasses.replace(
    FULL_CHAIN, strike_bands=((0.05, 5), (0.10, 5), (0.25, 10), (0.60, 20)), include_calls=False)
SIZES = dict(CHAIN_SIZES, dense=DENSE_CHAIN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="dense")
    parser.add_argument("--now", required=True, help="ISO 8601 with an offset")
    args = parser.parse_args()
    market = SimulatedMarket(size=SIZES[args.size])
    server = FakeApiServer(market, api_keys=None, now=parse_now(args.now))
    server.start()
    print(server.base_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

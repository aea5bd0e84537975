"""`simulate`: run the simulated market's fake market data API on this machine."""
import click

from spxlib.simulator.market import DEFAULT_LEVEL, DEFAULT_NOW_ISO, DEFAULT_SEED, SimulatedMarket, demo_events, parse_now
from spxlib.simulator.server import FakeApiServer


@click.group()
def simulate():
    """The simulated SPX option market and its fake market data API."""


@simulate.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=int, help="Same seed, same market.")
@click.option("--now", "now_text", default=DEFAULT_NOW_ISO, show_default=True,
              help="The server's clock, ISO 8601 with an offset; move it later with POST /_sim/now.")
@click.option("--size", type=click.Choice(["seed", "full"]), default="seed", show_default=True,
              help="seed: about 3,000 contracts; full: about 10,000 puts and as many calls.")
@click.option("--level", default=DEFAULT_LEVEL, show_default=True, type=float, help="The SPX level the index wanders around.")
@click.option("--api-key", "api_keys", multiple=True, default=("test-key",), show_default=True,
              help="An accepted API key (repeatable).")
@click.option("--any-key", is_flag=True, help="Accept any non-empty API key.")
@click.option("--demo-date", default=None, metavar="YYYY-MM-DD",
              help="Plant the demo scenario (a put hedging burst and a dormant put waking) on this session.")
@click.option("--delay", "delay_minutes", default=15.0, show_default=True, type=float,
              help="Minutes the data lags (0: real time).")
def serve(host, port, seed, now_text, size, level, api_keys, any_key, demo_date, delay_minutes):
    """Serve the fake market data API until Ctrl-C."""
    try:
        now = parse_now(now_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now")
    market = SimulatedMarket(seed=seed, size=size, level=level)
    if demo_date:
        try:
            events = demo_events(market, demo_date)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--demo-date")
        market.plant(*events)
        for event in events:
            click.echo("planted: %s %s %s-%s +%d at %.2f" % (
                event.ticker, event.trade_date, event.start.strftime("%H:%M"), event.end.strftime("%H:%M"),
                event.extra_volume, market.event_price(event)))
    server = FakeApiServer(market, api_keys=None if any_key else api_keys, host=host, port=port, now=now,
                           delay_minutes=delay_minutes)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException("cannot listen on %s:%d: %s" % (host, port, exc.strerror or exc))
    click.echo(server.base_url)
    click.echo("clock %s; POST /_sim/now {\"now\": ...} moves it; Ctrl-C stops." % server.now.isoformat(), err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

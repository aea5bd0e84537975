"""Serve the dashboard with waitress (the click command bin/serve calls serve())."""
import logging

from .app import create_app

log = logging.getLogger(__name__)


def make_server(db_path: str, host: str = "127.0.0.1", port: int = 5000, config=None, now=None):
    """A waitress server for the dashboard, bound but not yet running (port 0 picks a free port)."""
    from waitress.server import create_server

    app = create_app(db_path, config=config, now=now)
    # Few threads: the page makes a handful of requests per refresh and every one opens its own
    # read-only connection.
    return create_server(app, host=host, port=port, threads=4, ident="spx-put-watch")


def serve(db_path: str, host: str = "127.0.0.1", port: int = 5000, config=None, now=None) -> None:
    """Run the dashboard on host:port until interrupted. 0.0.0.0 exposes it to the network.

    now: as in create_app; the demo passes its simulated clock so freshness reads as it would have.
    """
    server = make_server(db_path, host=host, port=port, config=config, now=now)
    log.info("dashboard on http://%s:%s/ reading %s", host, server.effective_port, db_path)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()

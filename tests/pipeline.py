"""Driving the real tick against the fake API: the same path cron takes, with the clock set by the test."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from spxlib.config import load_config
from spxlib.tick import run_tick

ET = ZoneInfo("America/New_York")


def et(text):
    """'2025-12-04 09:46' as an aware Eastern datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ET)


def monitor_config(tmp_path, server, **overrides):
    """Settings pointed at this test's database and at the fake API, with no real waiting on retries."""
    values = dict(DB_PATH=str(tmp_path / "data" / "spx.db"), API_BASE_URL=server.base_url, LOG_TO_FILE=False,
                  RETRY_DELAY_SECONDS=0)
    values.update(overrides)
    return load_config({}, **values)


def tick_at(moment, config, server, key="test-key", **kwargs):
    """One tick at `moment`, with the fake API's clock moved there first."""
    server.set_now(moment)
    return run_tick(moment, config, environ={"MASSIVE_API_KEY": key}, **kwargs)


def walk(start, end, config, server, step=timedelta(minutes=5), **kwargs):
    """Ticks every `step` from start to end inclusive; returns their results."""
    results = []
    moment = start
    while moment <= end:
        results.append(tick_at(moment, config, server, **kwargs))
        moment += step
    return results

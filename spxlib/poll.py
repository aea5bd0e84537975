"""The poll job (the chain snapshot and detection come in their own change)."""
from .tick import JobOutcome


class PollRefused(Exception):
    """A poll asked for by hand cannot run now."""


def poll_job(action, context):
    return JobOutcome("skipped", "poll not built yet")


def poll_now(now, config, force=False):
    raise PollRefused("the poll is not built yet")

"""Logging: plain lines on the console, the same lines with timestamps in a rotating log file."""
import logging
import logging.handlers
import os
import sys

LOG_MAX_BYTES = 2_000_000
LOG_BACKUPS = 5


class _KeyMasker(logging.Filter):
    """Last line of defence: a known API key never reaches a handler, whatever formatted it."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record):
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def configure_logging(config, console: bool = True, stream=None, secrets=()) -> logging.Logger:
    """Attach the console and file handlers to the 'spx' logger (idempotent)."""
    logger = logging.getLogger("spx")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for existing in list(logger.filters):
        logger.removeFilter(existing)
    logger.setLevel(getattr(logging, config.log_level))
    logger.propagate = False
    masker = _KeyMasker(secrets)
    if console:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(masker)
        logger.addHandler(handler)
    if config.log_to_file:
        path = os.path.abspath(config.log_file_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(masker)
        logger.addHandler(handler)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger

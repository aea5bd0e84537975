"""Configuration: every setting declared once, with its default, its allowed values and why.

The constants below are the defaults. Each can be overridden by an environment variable
``SPX_<NAME>`` or by an INI file named in ``SPX_CONFIG`` (section ``[spx]``, keys are the names in
upper or lower case); the environment wins over the file. ``load_config()`` validates every value
and raises ``ConfigError`` with a sentence naming the setting, the value and the allowed range.
"""
import configparser
import os
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

# --- Scheduling -----------------------------------------------------------------------------
# How often the chain is polled during a session. The API data is 15 minutes delayed on the
# users' plan, so polling more often than every 5 minutes gains nothing.
POLL_INTERVAL_MINUTES = 30
# The first poll waits this long after the open: with 15-minute delayed data an earlier snapshot
# still shows the previous session's bars.
POLL_START_DELAY_MINUTES = 15
MARKET_OPEN_ET = "09:30"
# SPX index options trade until 16:15 ET, not 16:00 like stocks; the last slot may sit at 16:15.
MARKET_CLOSE_ET = "16:15"
# NYSE half days (July 3, the day after Thanksgiving, Christmas Eve when they are trading days):
# SPX options close at 13:15 ET.
EARLY_CLOSE_ET = "13:15"
TIMEZONE = "America/New_York"
# EOD waits after the close so the delayed feed has the session's final bars.
EOD_DELAY_MINUTES = 15
EOD_CONSOLIDATION_ENABLED = True
# How many sessions back a tick catches up missed EODs after downtime.
CATCHUP_MAX_DAYS = 10
MAX_POLL_RETRIES = 3
RETRY_DELAY_SECONDS = 60
# A 'running' run_log row older than this belongs to a process that died: it is taken as failed.
STALE_RUN_MINUTES = 20
# Upper bound on the time one poll may spend on retries, so a tick never runs into the next one.
POLL_TIME_BUDGET_SECONDS = 240

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = "INFO"
LOG_TO_FILE = True
LOG_FILE_PATH = "logs/scheduler.log"

# --- Storage --------------------------------------------------------------------------------
DB_PATH = "data/spx.db"
# Intraday snapshots are kept for this many sessions so multi-day baselines have data.
INTRADAY_RETENTION_DAYS = 30

# --- Market data API ------------------------------------------------------------------------
API_BASE_URL = "https://api.massive.com"
API_TIMEOUT_SECONDS = 20
# Pause between per-contract aggregate requests during an EOD catch-up (free plans allow 5/minute).
AGGREGATES_PACE_SECONDS = 0.0
AGGREGATES_MAX_REQUESTS = 5000

# --- The watched universe -------------------------------------------------------------------
# Out-of-the-money puts only: strike / spot within this band.
MIN_MONEYNESS = 0.50
MAX_MONEYNESS = 0.99
MIN_DTE = 3
MAX_DTE = 90
# "SPX" are the AM-settled monthlies. "SPXW" (weeklies and 0DTE, about half of all SPX option
# volume) is opt-in and never shares a baseline with the monthlies.
EXPIRATION_ROOTS = ("SPX",)

# --- Detection ------------------------------------------------------------------------------
# The previous session's snapshot must lie within this many minutes of the poll's time of day.
BASELINE_TOLERANCE_MINUTES = 60
VOLUME_FLOOR = 100
# Notional premium floor in dollars: volume x price x 100.
PREMIUM_FLOOR = 100_000
# Flags fire when the value strictly exceeds the threshold.
DELTA_THRESHOLD = 200
MULTIPLIER_THRESHOLD = 100
DORMANCY_THRESHOLD = 100


class ConfigError(Exception):
    """A configuration value is missing or outside its allowed range."""


def _parse_int(text: str) -> int:
    return int(str(text).strip().replace("_", ""))


def _parse_float(text: str) -> float:
    return float(str(text).strip().replace("_", ""))


def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_hhmm(text: str) -> str:
    value = str(text).strip()
    hour, minute = value.split(":")
    time(int(hour), int(minute))
    return "%02d:%02d" % (int(hour), int(minute))


def _parse_roots(text: Any) -> Tuple[str, ...]:
    if isinstance(text, (tuple, list)):
        items = list(text)
    else:
        items = [part for part in str(text).replace(";", ",").split(",")]
    roots = tuple(item.strip().upper() for item in items if item.strip())
    if not roots or any(root not in ("SPX", "SPXW") for root in roots):
        raise ValueError("expected a comma-separated list of SPX and/or SPXW")
    return roots


def _parse_timezone(text: str) -> str:
    from zoneinfo import ZoneInfo

    ZoneInfo(str(text).strip())
    return str(text).strip()


def _parse_level(text: str) -> str:
    value = str(text).strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value


def _parse_text(text: str) -> str:
    value = str(text).strip()
    if not value:
        raise ValueError("expected a non-empty value")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    allowed: str
    low: Optional[float] = None
    high: Optional[float] = None

    def convert(self, raw: Any) -> Any:
        value = self.parse(raw)
        if self.low is not None and value < self.low:
            raise ValueError("below the minimum")
        if self.high is not None and value > self.high:
            raise ValueError("above the maximum")
        return value


_INF = float("inf")
SETTINGS = (
    Setting("POLL_INTERVAL_MINUTES", _parse_int, "a whole number from 5 to 60", 5, 60),
    Setting("POLL_START_DELAY_MINUTES", _parse_int, "a whole number from 0 to 120", 0, 120),
    Setting("MARKET_OPEN_ET", _parse_hhmm, "a time HH:MM"),
    Setting("MARKET_CLOSE_ET", _parse_hhmm, "a time HH:MM"),
    Setting("EARLY_CLOSE_ET", _parse_hhmm, "a time HH:MM"),
    Setting("TIMEZONE", _parse_timezone, "an IANA time zone name"),
    Setting("EOD_DELAY_MINUTES", _parse_int, "a whole number from 0 to 240", 0, 240),
    Setting("EOD_CONSOLIDATION_ENABLED", _parse_bool, "true or false"),
    Setting("CATCHUP_MAX_DAYS", _parse_int, "a whole number from 1 to 60", 1, 60),
    Setting("MAX_POLL_RETRIES", _parse_int, "a whole number from 1 to 10", 1, 10),
    Setting("RETRY_DELAY_SECONDS", _parse_float, "a number of seconds from 0 to 600", 0, 600),
    Setting("STALE_RUN_MINUTES", _parse_int, "a whole number from 1 to 240", 1, 240),
    Setting("POLL_TIME_BUDGET_SECONDS", _parse_float, "a number of seconds from 1 to 3600", 1, 3600),
    Setting("LOG_LEVEL", _parse_level, "DEBUG, INFO, WARNING or ERROR"),
    Setting("LOG_TO_FILE", _parse_bool, "true or false"),
    Setting("LOG_FILE_PATH", _parse_text, "a file path"),
    Setting("DB_PATH", _parse_text, "a file path"),
    Setting("INTRADAY_RETENTION_DAYS", _parse_int, "a whole number from 1 to 3650", 1, 3650),
    Setting("API_BASE_URL", _parse_text, "an http(s) URL"),
    Setting("API_TIMEOUT_SECONDS", _parse_float, "a number of seconds from 1 to 300", 1, 300),
    Setting("AGGREGATES_PACE_SECONDS", _parse_float, "a number of seconds from 0 to 60", 0, 60),
    Setting("AGGREGATES_MAX_REQUESTS", _parse_int, "a whole number from 1 to 100000", 1, 100000),
    Setting("MIN_MONEYNESS", _parse_float, "a number from 0.01 to 1.0", 0.01, 1.0),
    Setting("MAX_MONEYNESS", _parse_float, "a number from 0.01 to 1.0", 0.01, 1.0),
    Setting("MIN_DTE", _parse_int, "a whole number from 0 to 3650", 0, 3650),
    Setting("MAX_DTE", _parse_int, "a whole number from 0 to 3650", 0, 3650),
    Setting("EXPIRATION_ROOTS", _parse_roots, "a comma-separated list of SPX and/or SPXW"),
    Setting("BASELINE_TOLERANCE_MINUTES", _parse_int, "a whole number from 0 to 390", 0, 390),
    Setting("VOLUME_FLOOR", _parse_int, "a whole number from 0 up", 0, _INF),
    Setting("PREMIUM_FLOOR", _parse_float, "a number of dollars from 0 up", 0, _INF),
    Setting("DELTA_THRESHOLD", _parse_int, "a whole number from 0 up", 0, _INF),
    Setting("MULTIPLIER_THRESHOLD", _parse_float, "a number from 1 up", 1, _INF),
    Setting("DORMANCY_THRESHOLD", _parse_int, "a whole number from 0 up", 0, _INF),
)
SETTING_NAMES = tuple(setting.name for setting in SETTINGS)


@dataclass(frozen=True)
class Config:
    """Validated settings. Attribute names are the lower-case setting names."""

    values: Dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **overrides: Any) -> "Config":
        """A copy with some settings changed (validated like any other source)."""
        raw = dict(self.values)
        raw.update({key.upper(): value for key, value in overrides.items()})
        return _validate(raw, "override")

    @property
    def market_open(self) -> time:
        return _to_time(self.values["MARKET_OPEN_ET"])

    @property
    def market_close(self) -> time:
        return _to_time(self.values["MARKET_CLOSE_ET"])

    @property
    def early_close(self) -> time:
        return _to_time(self.values["EARLY_CLOSE_ET"])


def _to_time(hhmm: str) -> time:
    hour, minute = hhmm.split(":")
    return time(int(hour), int(minute))


def defaults() -> Dict[str, Any]:
    """The declared defaults, by setting name."""
    return {name: globals()[name] for name in SETTING_NAMES}


def _validate(raw: Mapping[str, Any], source_of: Any) -> Config:
    values = {}
    for setting in SETTINGS:
        value = raw[setting.name]
        try:
            values[setting.name] = setting.convert(value)
        except (TypeError, ValueError, KeyError, LookupError) as exc:
            source = source_of(setting.name) if callable(source_of) else source_of
            raise ConfigError(
                "%s=%r (from %s) is not valid: allowed is %s (%s)."
                % (setting.name, value, source, setting.allowed, exc)
            ) from None
    if values["MIN_MONEYNESS"] > values["MAX_MONEYNESS"]:
        raise ConfigError(
            "MIN_MONEYNESS=%s is above MAX_MONEYNESS=%s: the band would be empty."
            % (values["MIN_MONEYNESS"], values["MAX_MONEYNESS"])
        )
    if values["MIN_DTE"] > values["MAX_DTE"]:
        raise ConfigError(
            "MIN_DTE=%s is above MAX_DTE=%s: no expiration would be watched."
            % (values["MIN_DTE"], values["MAX_DTE"])
        )
    for name in ("MARKET_CLOSE_ET", "EARLY_CLOSE_ET"):
        if _to_time(values[name]) <= _to_time(values["MARKET_OPEN_ET"]):
            raise ConfigError(
                "%s=%s is not after MARKET_OPEN_ET=%s." % (name, values[name], values["MARKET_OPEN_ET"])
            )
    if not values["API_BASE_URL"].startswith(("http://", "https://")):
        raise ConfigError("API_BASE_URL=%r is not valid: allowed is an http(s) URL." % values["API_BASE_URL"])
    return Config(values)


def load_config(environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> Config:
    """Defaults, then the INI file in SPX_CONFIG, then SPX_<NAME> variables, then overrides; validated."""
    environ = os.environ if environ is None else environ
    raw: Dict[str, Any] = defaults()
    sources = {name: "default" for name in raw}
    ini_path = environ.get("SPX_CONFIG")
    if ini_path:
        parser = configparser.ConfigParser()
        try:
            with open(ini_path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise ConfigError("SPX_CONFIG=%r cannot be read: %s" % (ini_path, exc.strerror)) from None
        except configparser.Error as exc:
            raise ConfigError("SPX_CONFIG=%r is not a valid INI file: %s" % (ini_path, exc)) from None
        for section in parser.sections():
            for key, value in parser.items(section):
                name = key.upper()
                if name.startswith("SPX_"):
                    name = name[4:]
                if name not in raw:
                    raise ConfigError(
                        "%s in %s is not a known setting; known settings: %s"
                        % (key, ini_path, ", ".join(SETTING_NAMES))
                    )
                raw[name] = value
                sources[name] = ini_path
    for name in SETTING_NAMES:
        env_name = "SPX_" + name
        if env_name in environ:
            raw[name] = environ[env_name]
            sources[name] = "environment variable " + env_name
    for key, value in overrides.items():
        raw[key.upper()] = value
        sources[key.upper()] = "override"
    return _validate(raw, lambda name: sources[name])


def api_key(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The API key from POLYGON_API_KEY or MASSIVE_API_KEY (the newer name wins), or None."""
    environ = os.environ if environ is None else environ
    for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY"):
        value = (environ.get(name) or "").strip()
        if value:
            return value
    return None

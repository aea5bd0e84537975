"""The SPX option trading calendar: NYSE trading days, half days, and session times in Eastern time."""
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Dict, Iterator, List, Optional, Set
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "America/New_York"
# The tick's copy of the NYSE tables, next to its database: importing `holidays` and building a year
# takes about 0.1 s, half of an idle tick's run every five minutes.
CALENDAR_CACHE_NAME = "nyse-calendar.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Session:
    """One trading session: its Eastern date and its aware open and close."""

    trade_date: date
    open: datetime
    close: datetime
    half_day: bool = False

    @property
    def key(self) -> str:
        return self.trade_date.isoformat()


class TradingCalendar:
    """NYSE trading days from the `holidays` package, with session times from the configuration.

    Holiday tables are built per year on first use and kept in memory, so a tick that only asks about
    this week builds one or two years. With ``cache_path`` the built years are also kept in that file,
    marked with the installed `holidays` package they came from, so later processes read them
    instead of importing `holidays` (a new version of the package rebuilds them).
    """

    def __init__(
        self,
        market_open: time = time(9, 30),
        market_close: time = time(16, 15),
        early_close: time = time(13, 15),
        timezone: str = DEFAULT_TIMEZONE,
        cache_path: Optional[str] = None,
    ):
        self.market_open = market_open
        self.market_close = market_close
        self.early_close = early_close
        self.tz = ZoneInfo(timezone)
        self.cache_path = cache_path
        self._closed: Dict[int, Set[date]] = {}
        self._half: Dict[int, Set[date]] = {}
        self._cached: Optional[Dict[str, dict]] = None  # the cache file's years, once read

    @classmethod
    def from_config(cls, config, cache_path: Optional[str] = None) -> "TradingCalendar":
        """The calendar with the configured session times and zone."""
        return cls(config.market_open, config.market_close, config.early_close, config.timezone,
                   cache_path=cache_path)

    def _load_year(self, year: int) -> None:
        if year in self._closed:
            return
        if self.cache_path and self._from_cache(year):
            return
        import holidays  # imported here: a tick that decides nothing needs no calendar

        self._closed[year] = set(holidays.financial_holidays("NYSE", years=[year]).keys())
        self._half[year] = set(
            holidays.financial_holidays("NYSE", years=[year], categories=("half_day",)).keys()
        )
        if self.cache_path:
            self._save_cache(year)

    def _from_cache(self, year: int) -> bool:
        """Take the year from the cache file when it holds it for the installed `holidays`."""
        if self._cached is None:
            self._cached = {}
            try:
                with open(self.cache_path, encoding="utf-8") as handle:
                    data = json.load(handle)
                if data.get("format") == CACHE_FORMAT and data.get("holidays") == holidays_fingerprint():
                    self._cached = dict(data["years"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # missing or unreadable: rebuilt and rewritten
        entry = self._cached.get(str(year))
        try:
            closed = {date.fromisoformat(text) for text in entry["closed"]}
            half = {date.fromisoformat(text) for text in entry["half"]}
        except (TypeError, KeyError, ValueError):
            return False
        self._closed[year], self._half[year] = closed, half
        return True

    def _save_cache(self, year: int) -> None:
        """Add the year to the cache file (written whole, then renamed: readers never see half a file)."""
        years = dict(self._cached or {})
        years[str(year)] = {"closed": sorted(d.isoformat() for d in self._closed[year]),
                            "half": sorted(d.isoformat() for d in self._half[year])}
        self._cached = years
        data = {"format": CACHE_FORMAT, "holidays": holidays_fingerprint(), "years": years}
        folder = os.path.dirname(os.path.abspath(self.cache_path))
        try:
            handle, temporary = tempfile.mkstemp(prefix=".nyse-calendar-", dir=folder)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as stream:
                    json.dump(data, stream, sort_keys=True)
                os.replace(temporary, self.cache_path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass  # a cache we cannot write costs time, never correctness

    def holiday_name(self, day: date) -> Optional[str]:
        """The name of the NYSE closure on this weekday, or None."""
        import holidays

        if day.weekday() >= 5:
            return None
        return holidays.financial_holidays("NYSE", years=[day.year]).get(day)

    def is_holiday(self, day: date) -> bool:
        """A weekday on which NYSE (and so SPX options) does not trade."""
        self._load_year(day.year)
        return day.weekday() < 5 and day in self._closed[day.year]

    def is_half_day(self, day: date) -> bool:
        self._load_year(day.year)
        return day in self._half[day.year] and self.is_trading_day(day)

    def is_trading_day(self, day: date) -> bool:
        if day.weekday() >= 5:
            return False
        self._load_year(day.year)
        return day not in self._closed[day.year]

    def session(self, day: date) -> Optional[Session]:
        """The session on this Eastern date, or None when the market is closed that day."""
        if not self.is_trading_day(day):
            return None
        half = day in self._half[day.year]
        close_time = self.early_close if half else self.market_close
        return Session(
            trade_date=day,
            open=datetime.combine(day, self.market_open, tzinfo=self.tz),
            close=datetime.combine(day, close_time, tzinfo=self.tz),
            half_day=half,
        )

    def local_date(self, moment: datetime) -> date:
        """The Eastern calendar date of an aware datetime."""
        return moment.astimezone(self.tz).date()

    def previous_session(self, day: date) -> Session:
        """The last session strictly before this date."""
        day -= timedelta(days=1)
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return self.session(day)

    def next_session(self, day: date) -> Session:
        """The first session strictly after this date."""
        day += timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return self.session(day)

    def sessions_between(self, first: date, last: date) -> List[Session]:
        """Every session with first <= trade_date <= last, oldest first."""
        return list(self.iter_sessions(first, last))

    def iter_sessions(self, first: date, last: date) -> Iterator[Session]:
        day = first
        while day <= last:
            if self.is_trading_day(day):
                yield self.session(day)
            day += timedelta(days=1)

    def latest_session_on_or_before(self, day: date) -> Session:
        return self.session(day) if self.is_trading_day(day) else self.previous_session(day)

    def monthly_expiration(self, year: int, month: int) -> date:
        """The AM-settled SPX monthly expiry: the third Friday, or the trading day before it when closed
        (2025-04-18, Good Friday, moved it to Thursday 2025-04-17)."""
        first = date(year, month, 1)
        day = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def monthly_expirations_between(self, first: date, last: date) -> List[date]:
        """Every SPX monthly expiry with first <= expiry <= last, oldest first."""
        found = []
        year, month = first.year, first.month
        while date(year, month, 1) <= last:
            expiry = self.monthly_expiration(year, month)
            if first <= expiry <= last:
                found.append(expiry)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found


def holidays_fingerprint() -> Optional[str]:
    """Which `holidays` is installed, without importing it: its folder and the NYSE module's size and time."""
    from importlib.util import find_spec

    spec = find_spec("holidays")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    parts = [folder]
    for name in ("__init__.py", os.path.join("financial", "ny_stock_exchange.py")):
        try:
            stat = os.stat(os.path.join(folder, name))
        except OSError:
            return None
        parts.append("%s:%d:%d" % (name, stat.st_size, stat.st_mtime_ns))
    return "|".join(parts)


def cache_path_for(db_path: str) -> str:
    """Where the tick keeps its calendar cache: beside its database."""
    return os.path.join(os.path.dirname(os.path.abspath(db_path)), CALENDAR_CACHE_NAME)

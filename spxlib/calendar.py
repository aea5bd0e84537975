"""The SPX option trading calendar: NYSE trading days, half days, and session times in Eastern time."""
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Dict, Iterator, List, Optional, Set
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "America/New_York"


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

    Holiday tables are built per year on first use and cached, so a tick that only asks about this
    week builds one or two years.
    """

    def __init__(
        self,
        market_open: time = time(9, 30),
        market_close: time = time(16, 15),
        early_close: time = time(13, 15),
        timezone: str = DEFAULT_TIMEZONE,
    ):
        self.market_open = market_open
        self.market_close = market_close
        self.early_close = early_close
        self.tz = ZoneInfo(timezone)
        self._closed: Dict[int, Set[date]] = {}
        self._half: Dict[int, Set[date]] = {}

    @classmethod
    def from_config(cls, config) -> "TradingCalendar":
        """The calendar with the configured session times and zone."""
        return cls(config.market_open, config.market_close, config.early_close, config.timezone)

    def _load_year(self, year: int) -> None:
        if year in self._closed:
            return
        import holidays  # imported here: a tick that decides nothing needs no calendar

        self._closed[year] = set(holidays.financial_holidays("NYSE", years=[year]).keys())
        self._half[year] = set(
            holidays.financial_holidays("NYSE", years=[year], categories=("half_day",)).keys()
        )

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

    def trading_days_between(self, first: date, last: date) -> int:
        """How many sessions lie in (first, last]: days to expiry counted in sessions."""
        return sum(1 for _ in self.iter_sessions(first + timedelta(days=1), last))

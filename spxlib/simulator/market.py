"""A deterministic simulated SPX option market: sessions, an index path, the chain, volumes and prices.

Everything is a pure function of (seed, planted events, the moment asked about): random draws come from
hashing ``(seed, what, ticker, date)``, never from global random state or the wall clock, so two markets
built with the same seed give the same numbers in any process.

Normal volume, and why the project's default flags never fire on it
-------------------------------------------------------------------
Every contract has a constant base daily volume of at most ``MAX_BASE_DAILY_VOLUME`` (180). Its volume on
a session is ``round(base x (1 + DAILY_VOLUME_BAND x w))`` with ``w`` in [-1, 1] (the band is 5%), so
no contract ever trades more than ``MAX_NORMAL_DAILY_VOLUME`` = 189 contracts on a normal day. Half days
trade ``HALF_DAY_VOLUME_FACTOR`` of that, a contract's first listed session half of it, and an AM-settled
monthly nothing on its expiration day (it stopped trading the day before). Within a session the
cumulative volume follows a U-shaped intensity (``OPEN_CLOSE_INTENSITY`` times busier at the open and
close than at midday) over the session's own length.

The defaults flag when V - B > 200, or V > 100 x B with B > 0, or B == 0 and V > 100 (V today's
cumulative volume, B the previous session's at the same Eastern time of day), subject to V >= 100:

* V - B <= V <= 189 < 200: the delta rule cannot fire.
* V > 100 needs a session volume > 100, i.e. a normal full or half day of a traded contract; then the
  previous session at the same clock time had traded at least a quarter as much (same base within the
  band, same curve; a half day trades 0.6 of a day, a listing day half of it), so B >= 25 and neither
  the multiplier rule (needs B < 2) nor the dormancy rule (B == 0) can fire. A contract's first listed
  session trades at most 94 (< 100), so its missing previous session cannot trip the dormancy rule.

Only planted events (``PlantedEvent``) push a contract over the defaults. ``tests/test_simulator.py``
checks this over several weeks including a half day and a special closure.
"""
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spxlib.calendar import Session, TradingCalendar

ET_NAME = "America/New_York"

DEFAULT_SEED = 1
DEFAULT_LEVEL = 6000.0
# The clock of a market nobody set: a Wednesday afternoon, never the wall clock.
DEFAULT_NOW_ISO = "2025-12-03T14:00:00-05:00"

# --- Volume: the stated band (see the module docstring for why the defaults never fire) ----------
MAX_BASE_DAILY_VOLUME = 180
DAILY_VOLUME_BAND = 0.05
MAX_NORMAL_DAILY_VOLUME = int(MAX_BASE_DAILY_VOLUME * (1 + DAILY_VOLUME_BAND))  # 189
HALF_DAY_VOLUME_FACTOR = 0.6
LISTING_DAY_VOLUME_FACTOR = 0.5
# Intensity at the open and at the close relative to midday (U-shaped curve).
OPEN_CLOSE_INTENSITY = 4.0
# Share of contracts that normally never trade; deep out-of-the-money puts are dormant more often.
DORMANT_FRACTION = 0.10
DEEP_OTM_DORMANT_FRACTION = 0.40
DEEP_OTM_MONEYNESS = 0.70

# --- The index path ----------------------------------------------------------------------------
SLOW_KNOT_DAYS = 15  # the slow drift is smooth noise with a knot every 15 calendar days
SLOW_AMPLITUDE = 0.035  # the index stays within about +-5% of the level
DAILY_AMPLITUDE = 0.006
OPENING_GAP_AMPLITUDE = 0.002
INTRADAY_AMPLITUDE = 0.002

# --- Pricing -----------------------------------------------------------------------------------
RISK_FREE_RATE = 0.04
DIVIDEND_YIELD = 0.013
MIN_TIME_TO_EXPIRY_YEARS = 60.0 / (365 * 86400)
EXPIRED_LOOKBACK_DAYS = 30  # the reference endpoint lists expired contracts this far back
TRADE_EXCHANGE_ID = 302
TRADE_CONDITIONS = (209,)


@dataclass(frozen=True)
class ChainSpec:
    """The shape of the chain: strike steps by distance from the level, expiration horizons, roots.

    ``strike_bands`` is ascending ((max distance from the level as a fraction, strike step), ...):
    strikes within the first distance use the first step, and so on. Strikes run from
    ``min_moneyness`` to ``max_moneyness`` times the level. An expiration is listed from
    ``horizon_days`` calendar days before it until its own session.
    """

    strike_bands: Tuple[Tuple[float, int], ...]
    monthly_horizon_days: int
    weekly_horizon_days: int
    daily_horizon_days: int
    min_moneyness: float = 0.40
    max_moneyness: float = 1.20
    include_calls: bool = True
    include_spxw: bool = True


# The seed chain: the default watched universe (puts, root SPX, 3..90 DTE, strike/spot 0.50..0.99)
# comes to 2-3 monthlies and about 100-200 puts; about 2,700 contracts in all.
SEED_CHAIN = ChainSpec(
    strike_bands=((0.03, 10), (0.08, 25), (0.20, 50), (0.60, 100)),
    monthly_horizon_days=120,
    weekly_horizon_days=35,
    daily_horizon_days=7,
)
# The full chain: 5-point strikes near the money, about 10,000 puts and as many calls.
FULL_CHAIN = ChainSpec(
    strike_bands=((0.05, 5), (0.10, 10), (0.20, 25), (0.60, 50)),
    monthly_horizon_days=460,
    weekly_horizon_days=91,
    daily_horizon_days=14,
)
CHAIN_SIZES = {"seed": SEED_CHAIN, "full": FULL_CHAIN}


class UnknownContract(KeyError):
    """A ticker that is not a contract of this market (bad format, strike off the grid, no such expiry)."""


def _parse_time(value: Union[str, time]) -> time:
    if isinstance(value, time):
        return value
    hour, minute = str(value).strip().split(":")[:2]
    return time(int(hour), int(minute))


def _parse_date(value: Union[str, date]) -> date:
    if isinstance(value, datetime):
        raise TypeError("expected a date, got a datetime")
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip())


@dataclass(frozen=True)
class PlantedEvent:
    """Contract ``ticker`` trades ``extra_volume`` more contracts between ``start`` and ``end`` (Eastern)
    on ``trade_date``, spread linearly over the window, at ``price`` (None: the contract's mark at the
    middle of the window). They lift the day's VWAP, high/low and the next sessions' open interest."""

    ticker: str
    trade_date: date
    start: time = time(10, 0)
    end: time = time(11, 0)
    extra_volume: int = 1000
    price: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, "trade_date", _parse_date(self.trade_date))
        object.__setattr__(self, "start", _parse_time(self.start))
        object.__setattr__(self, "end", _parse_time(self.end))
        object.__setattr__(self, "extra_volume", int(self.extra_volume))
        if self.price is not None:
            object.__setattr__(self, "price", float(self.price))
        if self.extra_volume <= 0:
            raise ValueError("extra_volume must be positive, not %r" % (self.extra_volume,))
        if self.end <= self.start:
            raise ValueError("the event window %s-%s is empty" % (self.start, self.end))


class Contract:
    """One listed option: ticker parts plus its constant traits (base volume, listing date)."""

    __slots__ = (
        "ticker", "root", "expiration", "contract_type", "strike", "listed_from",
        "base_volume", "oi_base", "moneyness", "first_session",
    )

    def __init__(self, ticker, root, expiration, contract_type, strike, listed_from, base_volume, oi_base,
                 moneyness, first_session):
        self.ticker = ticker
        self.root = root
        self.expiration = expiration
        self.contract_type = contract_type
        self.strike = strike
        self.listed_from = listed_from
        self.base_volume = base_volume
        self.oi_base = oi_base
        self.moneyness = moneyness  # strike / the market's level, constant (not strike / spot)
        self.first_session = first_session

    @property
    def is_put(self) -> bool:
        """A put (else a call)."""
        return self.contract_type == "put"

    @property
    def dormant(self) -> bool:
        """The contract normally never trades."""
        return self.base_volume == 0

    @property
    def strike_price(self) -> Union[int, float]:
        """The strike as the API writes it: 6800, not 6800.0."""
        return int(self.strike) if float(self.strike).is_integer() else self.strike

    def __repr__(self):
        return "Contract(%s)" % self.ticker


def format_ticker(root: str, expiration: date, contract_type: str, strike: float) -> str:
    """``O:`` + root + YYMMDD + C/P + strike x 1000 zero-padded to 8 digits."""
    return "O:%s%s%s%08d" % (root, expiration.strftime("%y%m%d"), "P" if contract_type == "put" else "C",
                             int(round(strike * 1000)))


def parse_ticker(ticker: str) -> Tuple[str, date, str, float]:
    """(root, expiration, 'call'|'put', strike) of an option ticker; ValueError when malformed.

    Written apart from spxlib.marketdata.parse_option_ticker on purpose: the fake API must not share
    the parser of the client it tests, or a bug in it would hide on both sides."""
    if not ticker.startswith("O:") or len(ticker) < 2 + 1 + 6 + 1 + 8:
        raise ValueError("not an option ticker: %r" % (ticker,))
    body = ticker[2:]
    root, stamp, kind, strike = body[:-15], body[-15:-9], body[-9], body[-8:]
    if not root.isalpha() or not stamp.isdigit() or kind not in "CP" or not strike.isdigit():
        raise ValueError("not an option ticker: %r" % (ticker,))
    expiration = date(2000 + int(stamp[:2]), int(stamp[2:4]), int(stamp[4:6]))
    return root, expiration, "put" if kind == "P" else "call", int(strike) / 1000.0


def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, put: bool) -> Tuple[float, float, float, float, float]:
    """(price, delta, gamma, theta per calendar day, vega per vol point) with a dividend yield."""
    years = max(years, MIN_TIME_TO_EXPIRY_YEARS)
    sqrt_t = math.sqrt(years)
    vs = vol * sqrt_t
    d1 = (math.log(spot / strike) + (RISK_FREE_RATE - DIVIDEND_YIELD + 0.5 * vol * vol) * years) / vs
    d2 = d1 - vs
    df_r = math.exp(-RISK_FREE_RATE * years)
    df_q = math.exp(-DIVIDEND_YIELD * years)
    pdf = _npdf(d1)
    decay = -spot * df_q * pdf * vol / (2 * sqrt_t)
    if put:
        price = strike * df_r * _ncdf(-d2) - spot * df_q * _ncdf(-d1)
        delta = df_q * (_ncdf(d1) - 1.0)
        theta = decay + RISK_FREE_RATE * strike * df_r * _ncdf(-d2) - DIVIDEND_YIELD * spot * df_q * _ncdf(-d1)
    else:
        price = spot * df_q * _ncdf(d1) - strike * df_r * _ncdf(d2)
        delta = df_q * _ncdf(d1)
        theta = decay - RISK_FREE_RATE * strike * df_r * _ncdf(d2) + DIVIDEND_YIELD * spot * df_q * _ncdf(d1)
    gamma = df_q * pdf / (spot * vs)
    vega = spot * df_q * pdf * sqrt_t / 100.0
    return max(price, 0.0), delta, gamma, theta / 365.0, vega


def implied_vol(spot: float, strike: float, years: float) -> float:
    """A put skew: out-of-the-money puts carry more volatility, steeper for short expiries."""
    years = max(years, 1.0 / 365)
    atm = 0.13 + 0.02 * math.exp(-10.0 * years)
    k = math.log(strike / spot) / math.sqrt(years / 0.25)
    return min(max(atm - 0.5 * k + 1.0 * k * k, 0.06), 1.5)


def price_tick(price: float) -> float:
    """Round to the SPX option tick: 0.05 below 3.00, 0.10 from 3.00; never below 0.05."""
    step = 0.05 if price < 3.0 else 0.10
    return max(round(round(price / step) * step, 2), 0.05)


def _ns(moment: datetime) -> int:
    return int(round(moment.timestamp())) * 1_000_000_000


def _u_curve(x: float) -> float:
    """Cumulative share of a session's volume after fraction x of it (U-shaped intensity)."""
    b = OPEN_CLOSE_INTENSITY - 1.0
    y = 2.0 * x - 1.0
    return (x + b * (y * y * y + 1.0) / 6.0) / (1.0 + b / 3.0)


@dataclass(frozen=True)
class SnapshotOptions:
    """What a snapshot result carries, like different plans and asset classes of the real API."""

    greeks: bool = True
    last_quote: bool = True
    last_trade: bool = True
    underlying_field: str = "value"  # "value" for indices; "price" as stocks have it
    timeframe: str = "DELAYED"


class SimulatedMarket:
    """A deterministic SPX option market.

    ``size`` is "seed" (the default small chain), "full" (about 10,000 puts) or a ``ChainSpec``.
    Ground truth for tests: ``contracts(day)``, ``cumulative_volume``, ``final_volume``, ``spot``.
    """

    def __init__(
        self,
        seed: Union[int, str] = DEFAULT_SEED,
        size: Union[str, ChainSpec] = "seed",
        level: float = DEFAULT_LEVEL,
        events: Iterable[PlantedEvent] = (),
        calendar: Optional[TradingCalendar] = None,
    ):
        self.seed = seed
        self.spec = CHAIN_SIZES[size] if isinstance(size, str) else size
        self.size_name = size if isinstance(size, str) else "custom"
        self.level = float(level)
        self.calendar = calendar or TradingCalendar()
        self.tz = self.calendar.tz
        self.strikes = self._strike_grid()
        self._strike_set = set(self.strikes)
        self._lock = threading.RLock()
        self._events: Dict[Tuple[str, date], List[PlantedEvent]] = {}
        self._events_by_ticker: Dict[str, List[PlantedEvent]] = {}
        self.events_version = 0
        self._contract_cache: Dict[str, Contract] = {}
        self._expiration_cache: Dict[Tuple[str, date], List[Contract]] = {}
        self._listed_cache: Dict[date, List[Contract]] = {}
        self._close_cache: Dict[date, float] = {}
        self._volume_cache: Dict[Tuple[str, date], int] = {}
        self._final_close_cache: Dict[Tuple[str, date], float] = {}
        self._range_cache: Dict[Tuple[date, datetime], Tuple[float, float]] = {}
        self._spot_cache: Dict[datetime, float] = {}
        self._previous_cache: Dict[date, Session] = {}
        self._session_cache: Dict[date, Optional[Session]] = {}
        self._snapshot_cache: "OrderedDict[tuple, Dict[str, dict]]" = OrderedDict()
        self._event_price_cache: Dict[PlantedEvent, float] = {}
        self.plant(*events)

    # --- Hashing -----------------------------------------------------------------------------------
    def _unit(self, *parts) -> float:
        """A uniform number in [0, 1) from (seed, parts): the only source of randomness."""
        text = ":".join([str(self.seed)] + [str(p) for p in parts]).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2.0 ** 64

    def _signed(self, *parts) -> float:
        """A uniform number in [-1, 1) from (seed, parts)."""
        return 2.0 * self._unit(*parts) - 1.0

    # --- Strikes and expirations ---------------------------------------------------------------------
    def _strike_grid(self) -> List[float]:
        strikes = set()
        lowest, highest = self.level * self.spec.min_moneyness, self.level * self.spec.max_moneyness
        inner = 0.0
        for distance, step in self.spec.strike_bands:
            k = math.floor(self.level * (1 - distance) / step) * step
            while k <= self.level * (1 + distance):
                offset = abs(k / self.level - 1.0)
                if inner - 1e-12 <= offset <= distance + 1e-12 and lowest <= k <= highest and k > 0:
                    strikes.add(float(k))
                k += step
            inner = distance
        return sorted(strikes)

    def monthly_expiration(self, year: int, month: int) -> date:
        """The AM-settled SPX expiry of a month: the third Friday, or the trading day before it."""
        return self.calendar.monthly_expiration(year, month)

    def weekly_expiration(self, day: date) -> date:
        """The SPXW Friday expiry of the week holding ``day``, or the trading day before it."""
        return self._on_or_before_trading_day(day + timedelta(days=4 - day.weekday()))

    def _on_or_before_trading_day(self, day: date) -> date:
        while not self.calendar.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def _expiry_kind(self, root: str, expiration: date) -> Optional[str]:
        """'monthly' | 'weekly' | 'daily' when (root, expiration) is a real expiry, else None."""
        if not self.calendar.is_trading_day(expiration):
            return None
        if root == "SPX":
            return "monthly" if expiration == self.monthly_expiration(expiration.year, expiration.month) else None
        if root == "SPXW" and self.spec.include_spxw:
            return "weekly" if expiration == self.weekly_expiration(expiration) else "daily"
        return None

    def _horizon(self, kind: str) -> int:
        return {
            "monthly": self.spec.monthly_horizon_days,
            "weekly": self.spec.weekly_horizon_days,
            "daily": self.spec.daily_horizon_days,
        }[kind]

    def expirations(self, day: date) -> List[Tuple[str, date]]:
        """The (root, expiration) pairs listed on this date, by expiration then root."""
        day = _parse_date(day)
        found = []
        longest = max(self.spec.monthly_horizon_days, self.spec.weekly_horizon_days, self.spec.daily_horizon_days)
        for offset in range(longest + 1):
            expiration = day + timedelta(days=offset)
            for root in ("SPX", "SPXW"):
                kind = self._expiry_kind(root, expiration)
                if kind and offset <= self._horizon(kind):
                    found.append((root, expiration))
        return found

    # --- Contracts ---------------------------------------------------------------------------------
    def _make_contract(self, root: str, expiration: date, contract_type: str, strike: float) -> Contract:
        ticker = format_ticker(root, expiration, contract_type, strike)
        with self._lock:
            cached = self._contract_cache.get(ticker)
        if cached is not None:
            return cached
        kind = self._expiry_kind(root, expiration)
        listed_from = expiration - timedelta(days=self._horizon(kind))
        if self.calendar.is_trading_day(listed_from):
            first_session = listed_from
        else:
            first_session = self.calendar.next_session(listed_from).trade_date
        moneyness = strike / self.level
        base = self._base_volume(ticker, root, kind, contract_type, moneyness)
        oi_base = int(base * (15 + 60 * self._unit("oi-scale", ticker)) + 400 * self._unit("oi-add", ticker))
        contract = Contract(ticker, root, expiration, contract_type, strike, listed_from, base, oi_base,
                            moneyness, first_session)
        with self._lock:
            return self._contract_cache.setdefault(ticker, contract)

    def _base_volume(self, ticker: str, root: str, kind: str, contract_type: str, moneyness: float) -> int:
        """Constant per contract, at most MAX_BASE_DAILY_VOLUME; 0 for dormant contracts."""
        draw = self._unit("dormant", ticker)
        if draw < DORMANT_FRACTION or (
            contract_type == "put" and moneyness < DEEP_OTM_MONEYNESS and draw < DEEP_OTM_DORMANT_FRACTION
        ):
            return 0
        if contract_type == "put":
            weight = 0.08 + 0.92 * math.exp(-(((moneyness - 0.96) / 0.10) ** 2))
        else:
            weight = 0.05 + 0.75 * math.exp(-(((moneyness - 1.01) / 0.04) ** 2))
        weight *= {"daily": 1.0, "weekly": 0.8, "monthly": 0.7}[kind]
        jitter = 0.5 + 0.5 * self._unit("base", ticker)
        return max(1, min(MAX_BASE_DAILY_VOLUME, int(MAX_BASE_DAILY_VOLUME * weight * jitter)))

    def expiration_contracts(self, root: str, expiration: date) -> List[Contract]:
        """Every contract of one expiry, by ticker."""
        key = (root, expiration)
        with self._lock:
            cached = self._expiration_cache.get(key)
        if cached is not None:
            return cached
        types = ("call", "put") if self.spec.include_calls else ("put",)
        contracts = [self._make_contract(root, expiration, kind, k) for kind in types for k in self.strikes]
        contracts.sort(key=lambda c: c.ticker)
        with self._lock:
            self._expiration_cache[key] = contracts
        return contracts

    def contracts(self, trade_date: Union[date, str]) -> List[Contract]:
        """The contracts alive on this date (listed, not yet past their expiration), by ticker."""
        day = _parse_date(trade_date)
        with self._lock:
            cached = self._listed_cache.get(day)
        if cached is not None:
            return cached
        listed = []
        for root, expiration in self.expirations(day):
            listed.extend(self.expiration_contracts(root, expiration))
        listed.sort(key=lambda c: c.ticker)
        with self._lock:
            if len(self._listed_cache) > 64:
                self._listed_cache.clear()
            self._listed_cache[day] = listed
        return listed

    def expired_contracts(self, as_of: Union[date, str], lookback_days: int = EXPIRED_LOOKBACK_DAYS) -> List[Contract]:
        """Contracts that expired in the ``lookback_days`` before ``as_of``, by ticker."""
        as_of = _parse_date(as_of)
        found = []
        for offset in range(1, lookback_days + 1):
            expiration = as_of - timedelta(days=offset)
            for root in ("SPX", "SPXW"):
                if self._expiry_kind(root, expiration):
                    found.extend(self.expiration_contracts(root, expiration))
        found.sort(key=lambda c: c.ticker)
        return found

    def contract(self, ticker: Union[str, Contract]) -> Contract:
        """The contract behind a ticker, alive or expired; UnknownContract when it never existed."""
        if isinstance(ticker, Contract):
            return ticker
        with self._lock:
            cached = self._contract_cache.get(ticker)
        if cached is not None:
            return cached
        try:
            root, expiration, contract_type, strike = parse_ticker(ticker)
        except ValueError:
            raise UnknownContract(ticker) from None
        if (
            self._expiry_kind(root, expiration) is None
            or strike not in self._strike_set
            or (contract_type == "call" and not self.spec.include_calls)
        ):
            raise UnknownContract(ticker)
        return self._make_contract(root, expiration, contract_type, strike)

    def is_listed(self, ticker: Union[str, Contract], day: date) -> bool:
        """The contract is in the chain on this date."""
        contract = self.contract(ticker)
        return contract.listed_from <= day <= contract.expiration

    # --- Events ------------------------------------------------------------------------------------
    def plant(self, *events: PlantedEvent) -> "SimulatedMarket":
        """Add planted events (validated against the calendar and the chain); returns the market."""
        for event in events:
            if isinstance(event, (list, tuple)):
                self.plant(*event)
                continue
            session = self.calendar.session(event.trade_date)
            if session is None:
                raise ValueError("%s is not a trading day: cannot plant %r" % (event.trade_date, event))
            start = datetime.combine(event.trade_date, event.start, tzinfo=self.tz)
            end = datetime.combine(event.trade_date, event.end, tzinfo=self.tz)
            if start < session.open or end > session.close:
                raise ValueError("the window of %r lies outside the session %s-%s"
                                 % (event, session.open.time(), session.close.time()))
            contract = self.contract(event.ticker)
            if not contract.first_session <= event.trade_date <= contract.expiration:
                raise ValueError("%s is not listed on %s" % (event.ticker, event.trade_date))
            with self._lock:
                self._events.setdefault((event.ticker, event.trade_date), []).append(event)
                self._events_by_ticker.setdefault(event.ticker, []).append(event)
                self.events_version += 1
                self._snapshot_cache.clear()
        return self

    @property
    def events(self) -> List[PlantedEvent]:
        with self._lock:
            return sorted((e for group in self._events.values() for e in group),
                          key=lambda e: (e.trade_date, e.start, e.ticker))

    def event_price(self, event: PlantedEvent) -> float:
        """The price the event trades at: its own, or the contract's mark at the middle of its window."""
        if event.price is not None:
            return event.price
        with self._lock:
            cached = self._event_price_cache.get(event)
        if cached is None:
            start = datetime.combine(event.trade_date, event.start, tzinfo=self.tz)
            end = datetime.combine(event.trade_date, event.end, tzinfo=self.tz)
            middle = start + (end - start) / 2
            cached = price_tick(self.mark(event.ticker, middle))
            with self._lock:
                self._event_price_cache[event] = cached
        return cached

    def _events_on(self, ticker: str, day: date) -> List[PlantedEvent]:
        with self._lock:
            return list(self._events.get((ticker, day), ()))

    def _event_volume(self, event: PlantedEvent, at: datetime) -> int:
        start = datetime.combine(event.trade_date, event.start, tzinfo=self.tz)
        end = datetime.combine(event.trade_date, event.end, tzinfo=self.tz)
        if at <= start:
            return 0
        if at >= end:
            return event.extra_volume
        return int(event.extra_volume * ((at - start) / (end - start)))

    # --- Volume ------------------------------------------------------------------------------------
    def normal_daily_volume(self, ticker: Union[str, Contract], trade_date: Union[date, str]) -> int:
        """The session's volume without planted events (0 on non-trading days and outside the listing)."""
        contract = self.contract(ticker)
        day = _parse_date(trade_date)
        key = (contract.ticker, day)
        with self._lock:
            cached = self._volume_cache.get(key)
        if cached is not None:
            return cached
        session = self.session(day)
        if (
            session is None
            or contract.base_volume == 0
            or day < contract.first_session
            or day > contract.expiration
            or (contract.root == "SPX" and day == contract.expiration)  # AM-settled: last trade the day before
        ):
            volume = 0
        else:
            wobble = self._signed("volume", contract.ticker, day)
            volume = int(round(contract.base_volume * (1.0 + DAILY_VOLUME_BAND * wobble)))
            if session.half_day:
                volume = int(round(volume * HALF_DAY_VOLUME_FACTOR))
            if day == contract.first_session:
                volume = int(volume * LISTING_DAY_VOLUME_FACTOR)
        with self._lock:
            if len(self._volume_cache) > 2_000_000:
                self._volume_cache.clear()
            self._volume_cache[key] = volume
        return volume

    def _moment(self, trade_date: date, at: Union[datetime, time, str]) -> datetime:
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise ValueError("naive datetime %r: pass an aware datetime" % (at,))
            return at
        return datetime.combine(trade_date, _parse_time(at), tzinfo=self.tz)

    def session_fraction(self, session: Session, at: datetime) -> float:
        """How much of the session has passed at ``at``, from 0 at the open to 1 at the close."""
        if at <= session.open:
            return 0.0
        if at >= session.close:
            return 1.0
        return (at - session.open) / (session.close - session.open)

    def normal_cumulative_volume(self, ticker, trade_date, at) -> int:
        """Cumulative volume of the session without planted events, as of ``at``."""
        day = _parse_date(trade_date)
        session = self.session(day)
        if session is None:
            return 0
        total = self.normal_daily_volume(ticker, day)
        if total == 0:
            return 0
        x = self.session_fraction(session, self._moment(day, at))
        if x >= 1.0:
            return total
        return int(total * _u_curve(x))

    def cumulative_volume(self, ticker: Union[str, Contract], trade_date: Union[date, str],
                          at: Union[datetime, time, str]) -> int:
        """Ground truth: the session's cumulative volume as of ``at`` (an aware datetime, or a time of day
        on ``trade_date`` in Eastern), before any reporting delay, planted events included."""
        contract = self.contract(ticker)
        day = _parse_date(trade_date)
        moment = self._moment(day, at)
        volume = self.normal_cumulative_volume(contract, day, moment)
        for event in self._events_on(contract.ticker, day):
            volume += self._event_volume(event, moment)
        return volume

    def final_volume(self, ticker: Union[str, Contract], trade_date: Union[date, str]) -> int:
        """Ground truth: the session's total volume, planted events included (0 when closed)."""
        day = _parse_date(trade_date)
        session = self.session(day)
        if session is None:
            return 0
        return self.cumulative_volume(ticker, day, session.close)

    def open_interest(self, ticker: Union[str, Contract], trade_date: Union[date, str]) -> int:
        """Open interest shown during ``trade_date``: as of the end of the previous session."""
        contract = self.contract(ticker)
        day = _parse_date(trade_date)
        if day <= contract.first_session:
            return 0
        drift = 1.0 + 0.03 * self._signed("oi", contract.ticker, day)
        with self._lock:
            planted = list(self._events_by_ticker.get(contract.ticker, ()))
        opened = sum(e.extra_volume for e in planted if e.trade_date < day)
        return int(round(contract.oi_base * drift)) + opened

    # --- The index ---------------------------------------------------------------------------------
    def close_level(self, trade_date: date) -> float:
        """The index close of a session (smooth drift plus a daily wobble around the level)."""
        with self._lock:
            cached = self._close_cache.get(trade_date)
        if cached is not None:
            return cached
        ordinal = trade_date.toordinal()
        knot, rest = divmod(ordinal, SLOW_KNOT_DAYS)
        a, b = self._signed("knot", knot), self._signed("knot", knot + 1)
        weight = (1.0 - math.cos(math.pi * rest / SLOW_KNOT_DAYS)) / 2.0
        slow = a + (b - a) * weight
        level = self.level * math.exp(SLOW_AMPLITUDE * slow + DAILY_AMPLITUDE * self._signed("close", trade_date))
        with self._lock:
            self._close_cache[trade_date] = level
        return level

    def session(self, day: date) -> Optional[Session]:
        """The calendar's session on this date (None when closed), cached."""
        try:
            return self._session_cache[day]
        except KeyError:
            found = self._session_cache[day] = self.calendar.session(day)
            return found

    def _previous_session(self, day: date) -> Session:
        with self._lock:
            cached = self._previous_cache.get(day)
        if cached is None:
            cached = self.calendar.previous_session(day)
            with self._lock:
                self._previous_cache[day] = cached
        return cached

    def _close_before(self, day: date) -> float:
        return self.close_level(self._previous_session(day).trade_date)

    def open_level(self, trade_date: date) -> float:
        """The index at a session's open: the previous close plus a small gap."""
        previous = self._previous_session(trade_date).trade_date
        return self.close_level(previous) * math.exp(OPENING_GAP_AMPLITUDE * self._signed("gap", trade_date))

    def spot(self, at: datetime) -> float:
        """The SPX level at an aware moment: the last close outside sessions, a smooth path inside."""
        if at.tzinfo is None:
            raise ValueError("naive datetime %r: pass an aware datetime" % (at,))
        day = at.astimezone(self.tz).date()
        session = self.session(day)
        if session is None or at < session.open:
            return self._close_before(day)
        if at >= session.close:
            return self.close_level(day)
        x = self.session_fraction(session, at)
        opening, closing = self.open_level(day), self.close_level(day)
        wiggle = sum(self._signed("wiggle", day, j) * math.sin(j * math.pi * x) / j for j in (1, 2, 3))
        return opening + (closing - opening) * x + opening * INTRADAY_AMPLITUDE * wiggle

    def _spot_range(self, session: Session, until: datetime) -> Tuple[float, float]:
        key = (session.trade_date, until)
        with self._lock:
            cached = self._range_cache.get(key)
        if cached is not None:
            return cached
        end = min(until, session.close)
        points = [session.open + (end - session.open) * (i / 24.0) for i in range(25)] if end > session.open else [session.open]
        levels = [self.spot(p) for p in points]
        levels.append(self.open_level(session.trade_date))
        found = (min(levels), max(levels))
        with self._lock:
            if len(self._range_cache) > 4096:
                self._range_cache.clear()
            self._range_cache[key] = found
        return found

    # --- Prices ------------------------------------------------------------------------------------
    def expiry_moment(self, contract: Contract) -> datetime:
        """AM-settled SPX settles at the open of its expiration day; SPXW at that session's close."""
        session = self.session(contract.expiration)
        return session.open if contract.root == "SPX" else session.close

    def years_to_expiry(self, contract: Contract, at: datetime) -> float:
        """Time left until settlement, in years (never below a minute)."""
        seconds = (self.expiry_moment(contract) - at).total_seconds()
        return max(seconds / (365.0 * 86400.0), MIN_TIME_TO_EXPIRY_YEARS)

    def _model(self, contract: Contract, spot: float, at: datetime):
        years = self.years_to_expiry(contract, at)
        vol = implied_vol(spot, contract.strike, years)
        return vol, black_scholes(spot, contract.strike, years, vol, contract.is_put)

    def mark(self, ticker: Union[str, Contract], at: datetime, spot: Optional[float] = None) -> float:
        """The model price of a contract at a moment (not tick-rounded)."""
        contract = self.contract(ticker)
        level = self.spot(at) if spot is None else spot
        return self._model(contract, level, at)[1][0]

    def _final_close(self, contract: Contract, session: Session) -> float:
        key = (contract.ticker, session.trade_date)
        with self._lock:
            cached = self._final_close_cache.get(key)
        if cached is None:
            cached = price_tick(self.mark(contract, session.close, self.close_level(session.trade_date)))
            with self._lock:
                if len(self._final_close_cache) > 500_000:
                    self._final_close_cache.clear()
                self._final_close_cache[key] = cached
        return cached

    def _open_price(self, contract: Contract, session: Session) -> float:
        key = (contract.ticker, session.trade_date, "open")
        with self._lock:
            cached = self._final_close_cache.get(key)
        if cached is None:
            cached = price_tick(self.mark(contract, session.open, self.open_level(session.trade_date)))
            with self._lock:
                self._final_close_cache[key] = cached
        return cached

    def _spot_at(self, at: datetime) -> float:
        with self._lock:
            cached = self._spot_cache.get(at)
        if cached is None:
            cached = self.spot(at)
            with self._lock:
                if len(self._spot_cache) > 4096:
                    self._spot_cache.clear()
                self._spot_cache[at] = cached
        return cached

    def day_bar(self, ticker: Union[str, Contract], session: Session, until: datetime) -> dict:
        """The session's bar as of ``until``: open, high, low, close, volume, vwap, previous_close, trades."""
        return self._day_bar(self.contract(ticker), session, until)[0]

    def _day_bar(self, contract: Contract, session: Session, until: datetime):
        """(bar, implied vol, (price, delta, gamma, theta, vega), index level) as of ``until``."""
        until = min(until, session.close)
        low_spot, high_spot = self._spot_range(session, until)
        level = self._spot_at(until)
        years = self.years_to_expiry(contract, until)
        vol, model = self._model(contract, level, until)
        opening = self._open_price(contract, session)
        closing = price_tick(model[0])
        extremes = [
            price_tick(black_scholes(s, contract.strike, years, implied_vol(s, contract.strike, years), contract.is_put)[0])
            for s in (low_spot, high_spot)
        ]
        high = max([opening, closing] + extremes)
        low = min([opening, closing] + extremes)
        normal = self.normal_cumulative_volume(contract, session.trade_date, until)
        volume = normal
        notional = normal * round((opening + high + low + closing) / 4.0, 4)
        for event in self._events_on(contract.ticker, session.trade_date):
            traded = self._event_volume(event, until)
            if traded:
                price = self.event_price(event)
                volume += traded
                notional += traded * price
                high, low = max(high, price), min(low, price)
        previous = self._previous_session(session.trade_date)
        trades = max(1, int(round(volume / (2.0 + 6.0 * self._unit("trades", contract.ticker, session.trade_date))))) if volume else 0
        bar = {
            "open": opening,
            "high": high,
            "low": low,
            "close": closing,
            "volume": volume,
            "vwap": round(notional / volume, 4) if volume else closing,
            "previous_close": self._final_close(contract, previous),
            "trades": trades,
        }
        return bar, vol, model, level

    def daily_bar(self, ticker: Union[str, Contract], trade_date: Union[date, str]) -> Optional[dict]:
        """The session's final aggregate bar {o,h,l,c,v,vw,n,t}; None without trades (as the API omits it)."""
        contract = self.contract(ticker)
        day = _parse_date(trade_date)
        session = self.calendar.session(day)
        if session is None or not contract.first_session <= day <= contract.expiration:
            return None
        bar = self.day_bar(contract, session, session.close)
        if bar["volume"] == 0:
            return None
        midnight = datetime.combine(day, time(0, 0), tzinfo=self.tz)
        return {
            "c": bar["close"], "h": bar["high"], "l": bar["low"], "n": bar["trades"], "o": bar["open"],
            "t": int(midnight.timestamp()) * 1000, "v": bar["volume"], "vw": bar["vwap"],
        }

    # --- Snapshots ---------------------------------------------------------------------------------
    def snapshot_moment(self, now: datetime, delay_minutes: float = 15) -> Tuple[date, Session, datetime]:
        """(chain date, session of the day bar, moment the data is as of) for a snapshot taken at ``now``.

        Data is ``delay_minutes`` late: before a session's open + delay, and on weekends and holidays,
        the day bar is the previous session's final bar. The chain is the contracts alive on the
        current date (the next session's date when the market is closed today)."""
        if now.tzinfo is None:
            raise ValueError("naive datetime %r: pass an aware datetime" % (now,))
        now = now.astimezone(self.tz)  # the same instant gives the same bytes whatever zone it came in
        seen = now - timedelta(minutes=delay_minutes)
        day = now.astimezone(self.tz).date()
        session = self.calendar.session(day)
        if session is not None and seen >= session.open:
            return day, session, min(seen, session.close)
        previous = self.calendar.previous_session(day)
        chain_date = day if session is not None else self.calendar.next_session(day).trade_date
        return chain_date, previous, previous.close

    def chain(self, now: datetime, delay_minutes: float = 15) -> List[Contract]:
        """The contracts a chain snapshot at ``now`` lists, by ticker."""
        return self.contracts(self.snapshot_moment(now, delay_minutes)[0])

    def snapshot_result(self, ticker: Union[str, Contract], now: datetime, delay_minutes: float = 15,
                        options: SnapshotOptions = SnapshotOptions()) -> dict:
        """One chain-snapshot result in the documented shape, as the API would show it at ``now``."""
        contract = self.contract(ticker)
        key = (now, delay_minutes, options, self.events_version)
        with self._lock:
            page = self._snapshot_cache.get(key)
            if page is None:
                page = self._snapshot_cache[key] = {}
                while len(self._snapshot_cache) > 8:
                    self._snapshot_cache.popitem(last=False)
            cached = page.get(contract.ticker)
        if cached is not None:
            return cached
        result = self._build_result(contract, now, delay_minutes, options)
        with self._lock:
            page[contract.ticker] = result
        return result

    def snapshot(self, now: datetime, delay_minutes: float = 15,
                 options: SnapshotOptions = SnapshotOptions()) -> List[dict]:
        """The whole chain snapshot at ``now``, by ticker (what every page together returns)."""
        return [self.snapshot_result(c, now, delay_minutes, options) for c in self.chain(now, delay_minutes)]

    def _build_result(self, contract: Contract, now: datetime, delay_minutes: float, options: SnapshotOptions) -> dict:
        _, session, as_of = self.snapshot_moment(now, delay_minutes)
        bar, vol, (_, delta, gamma, theta, vega), level = self._day_bar(contract, session, as_of)
        close = bar["close"]
        previous_close = bar["previous_close"]
        change = round(close - previous_close, 4)
        break_even = round(contract.strike - close if contract.is_put else contract.strike + close, 2)
        result = {
            "break_even_price": break_even,
            "day": {
                "change": change,
                "change_percent": round(100.0 * change / previous_close, 3) if previous_close else 0.0,
                "close": close,
                "high": bar["high"],
                "last_updated": _ns(datetime.combine(session.trade_date, time(0, 0), tzinfo=self.tz)),
                "low": bar["low"],
                "open": bar["open"],
                "previous_close": previous_close,
                "volume": bar["volume"],
                "vwap": bar["vwap"],
            },
            "details": {
                "contract_type": contract.contract_type,
                "exercise_style": "european",
                "expiration_date": contract.expiration.isoformat(),
                "shares_per_contract": 100,
                "strike_price": contract.strike_price,
                "ticker": contract.ticker,
            },
            "implied_volatility": round(vol, 4),
            "open_interest": self.open_interest(contract, session.trade_date),
            "underlying_asset": {
                "change_to_break_even": round(break_even - level, 2),
                "last_updated": _ns(as_of),
                "ticker": "I:SPX",
                "timeframe": options.timeframe,
                options.underlying_field: round(level, 2),
            },
        }
        if options.greeks:
            result["greeks"] = {
                "delta": round(delta, 6), "gamma": round(gamma, 6), "theta": round(theta, 6), "vega": round(vega, 6),
            }
        if options.last_quote:
            half_spread = price_tick(min(max(0.05, close * 0.02), 2.0))
            bid, ask = round(max(close - half_spread, 0.0), 2), round(close + half_spread, 2)
            result["last_quote"] = {
                "ask": ask,
                "ask_size": 1 + int(150 * self._unit("ask-size", contract.ticker, as_of)),
                "bid": bid,
                "bid_size": 1 + int(150 * self._unit("bid-size", contract.ticker, as_of)),
                "last_updated": _ns(as_of) - int(2e9 * self._unit("quote-ns", contract.ticker, as_of)),
                "midpoint": round((bid + ask) / 2.0, 3),
                "timeframe": options.timeframe,
            }
        if options.last_trade:
            traded_at = as_of if bar["volume"] else self.calendar.previous_session(session.trade_date).close
            result["last_trade"] = {
                "conditions": list(TRADE_CONDITIONS),
                "exchange": TRADE_EXCHANGE_ID,
                "price": close,
                "sip_timestamp": _ns(traded_at) - int(600e9 * self._unit("trade-ns", contract.ticker, as_of)),
                "size": 1 + int(10 * self._unit("trade-size", contract.ticker, as_of)),
                "timeframe": options.timeframe,
            }
        return dict(sorted(result.items()))

    # --- The default watched universe (for scenarios and tests) --------------------------------------
    def watched_puts(self, trade_date: Union[date, str], min_dte: int = 3, max_dte: int = 90,
                     min_moneyness: float = 0.50, max_moneyness: float = 0.99,
                     roots: Sequence[str] = ("SPX",), spot: Optional[float] = None) -> List[Contract]:
        """Puts of the given roots with calendar days to expiry and strike/spot in the bands
        (spot: the session's open level unless given); the project's default universe by default."""
        day = _parse_date(trade_date)
        if spot is None:
            spot = self.open_level(day) if self.calendar.is_trading_day(day) else self.spot(
                datetime.combine(day, time(12, 0), tzinfo=self.tz))
        return [
            c for c in self.contracts(day)
            if c.is_put and c.root in roots and min_dte <= (c.expiration - day).days <= max_dte
            and min_moneyness <= c.strike / spot <= max_moneyness
        ]


def demo_events(market: SimulatedMarket, trade_date: Union[date, str], start: str = "10:00", end: str = "11:00",
                hedge_volumes: Sequence[int] = (2500, 4000, 6000), dormant_start: str = "13:00",
                dormant_end: str = "14:00") -> List[PlantedEvent]:
    """The demo scenario for one session: a hedging burst on OTM SPX puts of the default universe (one
    per volume in ``hedge_volumes``, strikes about 10%, 15% and 20% below spot on a monthly 20-60 days
    out) between ``start`` and ``end``, and a normally dormant SPX put suddenly trading between
    ``dormant_start`` and ``dormant_end``. Every event clears the default floors. Plant them with
    ``market.plant(*events)``."""
    day = _parse_date(trade_date)
    if not market.calendar.is_trading_day(day):
        raise ValueError("%s is not a trading day" % day)
    spot = market.open_level(day)
    watched = market.watched_puts(day, spot=spot)
    expiries = sorted({c.expiration for c in watched}, key=lambda e: (not 20 <= (e - day).days <= 60, (e - day).days))
    if not expiries:
        raise ValueError("no monthly SPX expiry in the default universe on %s" % day)
    expiry = expiries[0]
    candidates = [c for c in watched if c.expiration == expiry]
    events = []
    used = set()
    for index, volume in enumerate(hedge_volumes):
        target = spot * (0.90 - 0.05 * index)
        choices = sorted((c for c in candidates if c.ticker not in used and not c.dormant),
                         key=lambda c: abs(c.strike - target))
        if not choices:
            break
        chosen = choices[0]
        used.add(chosen.ticker)
        events.append(PlantedEvent(chosen.ticker, day, start, end, volume))
    dormant = [c for c in watched if c.dormant and c.ticker not in used and 10 <= (c.expiration - day).days <= 90]
    if dormant:
        chosen = min(dormant, key=lambda c: (abs(c.moneyness - 0.85), c.ticker))
        noon = datetime.combine(day, _parse_time(dormant_start), tzinfo=market.tz)
        price = price_tick(max(market.mark(chosen, noon), 0.05))
        volume = max(250, int(math.ceil(150_000 / (price * 100))))
        events.append(PlantedEvent(chosen.ticker, day, dormant_start, dormant_end, volume, price))
    return events


def parse_now(text: str) -> datetime:
    """An ISO 8601 moment with an offset (``Z`` accepted) as an aware datetime; ValueError otherwise."""
    value = str(text).strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("%r has no UTC offset: give one, e.g. 2025-12-03T14:00:00-05:00" % (text,))
    return moment


DEFAULT_NOW = parse_now(DEFAULT_NOW_ISO)

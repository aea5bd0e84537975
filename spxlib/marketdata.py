"""The market data client: option chain snapshots and daily bars from the Massive (ex-Polygon) REST API.

Plain ``requests`` rather than the official client, whose single exception type and silent 429
retries would hide what went wrong. Conventions copied from the official client: the key travels in
``Authorization: Bearer``, and ``next_url`` is followed by its path and query only, against our own base.

Every error is a ``MarketDataError`` whose text is a sentence for the user; the key never appears
in an error, a log line or a repr. A fetch is bounded by POLL_TIME_BUDGET_SECONDS as a whole, so a
tick never runs into the next one.
"""
import email.utils
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote, urlparse
from zoneinfo import ZoneInfo

import requests

from spxlib import __version__
from spxlib.config import api_key as api_key_from_environment

logger = logging.getLogger("spx.marketdata")

USER_AGENT = "spx-put-watch/%s (+requests/%s)" % (__version__, requests.__version__)
# The API's maximum page size for the chain snapshot.
CHAIN_PAGE_LIMIT = 250
AGGREGATES_LIMIT = 50000
# Exponential backoff for 5xx and connection errors doubles from RETRY_DELAY_SECONDS up to this.
MAX_BACKOFF_SECONDS = 300.0
# A full SPX chain is ~20k contracts (80 pages of 250); far more means the cursor is going round.
MAX_PAGES = 2000
MASK = "***"
_EXCERPT_CHARS = 200


class MarketDataError(Exception):
    """The market data could not be fetched; str() is a sentence for the user (never with the key)."""


class MissingApiKeyError(MarketDataError):
    """No API key was given or found in MASSIVE_API_KEY / POLYGON_API_KEY."""


class AuthError(MarketDataError):
    """HTTP 401: the key is missing or unknown to the API. Never retried."""


class EntitlementError(MarketDataError):
    """HTTP 403: the key's plan does not cover this data. Never retried."""


class RateLimitError(MarketDataError):
    """HTTP 429 still returned after the allowed retries or time budget."""


class ServerError(MarketDataError):
    """HTTP 5xx, connection errors or timeouts still failing after the allowed retries or time budget."""


class MalformedResponseError(MarketDataError):
    """The body is not JSON or not of the documented shape; the text names the field. Never retried."""


class NotFoundError(MarketDataError):
    """HTTP 404, e.g. an unknown contract on the aggregates endpoint. Never retried."""


@dataclass(frozen=True)
class OptionSnapshot:
    """One contract of a chain snapshot. Only the ticker and the details basics are guaranteed."""

    ticker: str
    root: str  # 'SPX' (monthlies) or 'SPXW' (weeklies/dailies), from the ticker
    contract_type: str  # 'put' or 'call'
    expiration_date: date
    strike: float
    volume: Optional[int] = None  # day.volume: cumulative for the session so far
    open_interest: Optional[int] = None  # as of the previous session's end
    vwap: Optional[float] = None
    close: Optional[float] = None
    open: Optional[float] = None
    high: Optional[float] = None
    low: Optional[float] = None
    last_price: Optional[float] = None  # last_trade.price
    midpoint: Optional[float] = None  # last_quote.midpoint, else (bid + ask) / 2
    implied_volatility: Optional[float] = None
    delta: Optional[float] = None
    underlying_price: Optional[float] = None  # underlying_asset.value (index), else .price (stock)
    data_updated_at: Optional[datetime] = None  # aware UTC, from underlying_asset.last_updated
    timeframe: Optional[str] = None  # underlying_asset.timeframe: 'DELAYED' or 'REAL-TIME'


@dataclass(frozen=True)
class ChainFilter:
    """Server-side filters of the chain snapshot; None leaves a bound open."""

    contract_type: Optional[str] = "put"
    expiration_gte: Optional[date] = None
    expiration_lte: Optional[date] = None
    strike_gte: Optional[float] = None
    strike_lte: Optional[float] = None

    def params(self) -> Dict[str, str]:
        """The query parameters of the first page."""
        params = {}
        if self.contract_type is not None:
            params["contract_type"] = self.contract_type
        if self.expiration_gte is not None:
            params["expiration_date.gte"] = self.expiration_gte.isoformat()
        if self.expiration_lte is not None:
            params["expiration_date.lte"] = self.expiration_lte.isoformat()
        if self.strike_gte is not None:
            params["strike_price.gte"] = _format_number(self.strike_gte)
        if self.strike_lte is not None:
            params["strike_price.lte"] = _format_number(self.strike_lte)
        return params


@dataclass
class ChainResult:
    """Every contract of the chain, and what it took to fetch it."""

    snapshots: List[OptionSnapshot]
    pages: int  # pages received
    requests: int  # HTTP requests sent, retries included


@dataclass(frozen=True)
class DailyBar:
    """One daily aggregate bar of a contract."""

    ticker: str
    trade_date: date  # Eastern date of the bar's start
    volume: int
    open: Optional[float] = None
    high: Optional[float] = None
    low: Optional[float] = None
    close: Optional[float] = None
    vwap: Optional[float] = None
    transactions: Optional[int] = None


_TICKER = re.compile(r"^O:([A-Z][A-Z0-9.]*?)(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")


def parse_option_ticker(ticker: str) -> Tuple[str, date, str, float]:
    """'O:SPXW230712C04500000' -> ('SPXW', date(2023, 7, 12), 'call', 4500.0); ValueError otherwise."""
    match = _TICKER.match(ticker) if isinstance(ticker, str) else None
    if not match:
        raise ValueError("%r is not an option ticker like O:SPXW230712P04500000" % (ticker,))
    root, yy, mm, dd, kind, strike = match.groups()
    try:
        expiration = date(2000 + int(yy), int(mm), int(dd))
    except ValueError:
        raise ValueError("%r has an impossible expiration date %s%s%s" % (ticker, yy, mm, dd)) from None
    return root, expiration, "call" if kind == "C" else "put", int(strike) / 1000.0


def _format_number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Reading the documented shapes -----------------------------------------------------------
# Each reader takes the value and its path ("results[3].details.strike_price") and raises
# MalformedResponseError naming that path. None (absent or JSON null) is always allowed.


class _ShapeError(MalformedResponseError):
    """A field of the wrong type, named by its path; the fetch adds the page it came from."""


def _object(value: Any, path: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ShapeError("%s: expected an object, got %s" % (path, _excerpt(value)))
    return value


def _number(value: Any, path: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _ShapeError("%s: expected a number, got %s" % (path, _excerpt(value)))
    return float(value)


def _whole(value: Any, path: str) -> Optional[int]:
    number = _number(value, path)
    if number is None:
        return None
    if not number.is_integer():
        raise _ShapeError("%s: expected a whole number, got %s" % (path, _excerpt(value)))
    return int(value)


def _text(value: Any, path: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ShapeError("%s: expected a string, got %s" % (path, _excerpt(value)))
    return value


def _required(value: Any, path: str) -> Any:
    if value is None:
        raise _ShapeError("%s: missing" % path)
    return value


def _nanoseconds(value: Any, path: str) -> Optional[datetime]:
    stamp = _whole(value, path)
    if stamp is None:
        return None
    seconds, nanos = divmod(stamp, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _ShapeError("%s: expected Unix nanoseconds, got %s" % (path, _excerpt(value))) from None
    return moment.replace(microsecond=nanos // 1000)


def _results(envelope: Any, what: str) -> List[Any]:
    if not isinstance(envelope, dict):
        raise _ShapeError("body: expected a JSON object, got %s" % _excerpt(envelope))
    results = envelope.get("results")
    if results is None:
        return []  # an empty chain may omit results
    if not isinstance(results, list):
        raise _ShapeError("results: expected a list, got %s" % _excerpt(results))
    return results


def parse_snapshot(result: Any, path: str = "result") -> OptionSnapshot:
    """One chain result as an OptionSnapshot; MalformedResponseError names the offending field."""
    try:
        return _parse_plain_snapshot(result)
    except Exception:  # anything unusual: the checked reading accepts it or names the field
        return _parse_checked_snapshot(result, path)


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _NotPlain(Exception):
    """A value the fast reading does not take as it is."""


def _plain_number(value: Any) -> Optional[float]:
    kind = type(value)
    if kind is float:
        return value
    if value is None:
        return None
    if kind is int:
        return float(value)
    raise _NotPlain


def _plain_whole(value: Any) -> Optional[int]:
    if type(value) is int:
        float(value)  # as _whole does: an int too large for a float fails the same way
        return value
    if value is None:
        return None
    raise _NotPlain


def _plain_text(value: Any) -> Optional[str]:
    if type(value) is str or value is None:
        return value
    raise _NotPlain


def _plain_object(value: Any) -> Dict[str, Any]:
    if type(value) is dict:
        return value
    if value is None:
        return {}
    raise _NotPlain


def _parse_plain_snapshot(result: Any) -> OptionSnapshot:
    """The common case fast, about a fifth of a full chain poll's time: every field of exactly the
    documented JSON type. Accepts only what _parse_checked_snapshot accepts, and gives the same
    snapshot; raises on anything else so that the checked reading runs and names the field."""
    if type(result) is not dict:
        raise _NotPlain
    details = result["details"]
    ticker = details["ticker"]
    strike = details["strike_price"]
    expiration_text = details["expiration_date"]
    if (type(details) is not dict or type(ticker) is not str or type(expiration_text) is not str
            or strike is None or not _ISO_DATE.match(expiration_text)):
        raise _NotPlain
    root, _, ticker_type, _ = parse_option_ticker(ticker)
    day = _plain_object(result.get("day"))
    quote_ = _plain_object(result.get("last_quote"))
    trade = _plain_object(result.get("last_trade"))
    greeks = _plain_object(result.get("greeks"))
    underlying = _plain_object(result.get("underlying_asset"))
    midpoint = _plain_number(quote_.get("midpoint"))
    bid = _plain_number(quote_.get("bid"))
    ask = _plain_number(quote_.get("ask"))
    if midpoint is None and bid is not None and ask is not None:
        midpoint = (bid + ask) / 2.0
    underlying_price = _plain_number(underlying.get("value"))
    stock_price = _plain_number(underlying.get("price"))
    if underlying_price is None:
        underlying_price = stock_price
    stamp = _plain_whole(underlying.get("last_updated"))
    updated = None
    if stamp is not None:
        seconds, nanos = divmod(stamp, 1_000_000_000)
        updated = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=nanos // 1000)
    return OptionSnapshot(
        ticker=ticker,
        root=root,
        contract_type=_plain_text(details.get("contract_type")) or ticker_type,
        expiration_date=date.fromisoformat(expiration_text),
        strike=_plain_number(strike),
        volume=_plain_whole(day.get("volume")),
        open_interest=_plain_whole(result.get("open_interest")),
        vwap=_plain_number(day.get("vwap")),
        close=_plain_number(day.get("close")),
        open=_plain_number(day.get("open")),
        high=_plain_number(day.get("high")),
        low=_plain_number(day.get("low")),
        last_price=_plain_number(trade.get("price")),
        midpoint=midpoint,
        implied_volatility=_plain_number(result.get("implied_volatility")),
        delta=_plain_number(greeks.get("delta")),
        underlying_price=underlying_price,
        data_updated_at=updated,
        timeframe=_plain_text(underlying.get("timeframe")),
    )


def _parse_checked_snapshot(result: Any, path: str) -> OptionSnapshot:
    """parse_snapshot field by field, naming the path of the first field of the wrong shape."""
    result = _object(_required(result, path), path)
    details = _object(_required(result.get("details"), path + ".details"), path + ".details")
    ticker = _text(_required(details.get("ticker"), path + ".details.ticker"), path + ".details.ticker")
    try:
        root, _, ticker_type, _ = parse_option_ticker(ticker)
    except ValueError as exc:
        raise _ShapeError("%s.details.ticker: %s" % (path, exc)) from None
    strike = _number(_required(details.get("strike_price"), path + ".details.strike_price"),
                     path + ".details.strike_price")
    expiration_path = path + ".details.expiration_date"
    expiration_text = _text(_required(details.get("expiration_date"), expiration_path), expiration_path)
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", expiration_text):
            raise ValueError
        expiration = date.fromisoformat(expiration_text)
    except ValueError:
        raise _ShapeError("%s: expected a date YYYY-MM-DD, got %s"
                          % (expiration_path, _excerpt(expiration_text))) from None
    contract_type = _text(details.get("contract_type"), path + ".details.contract_type") or ticker_type

    day = _object(result.get("day"), path + ".day")
    quote_ = _object(result.get("last_quote"), path + ".last_quote")
    trade = _object(result.get("last_trade"), path + ".last_trade")
    greeks = _object(result.get("greeks"), path + ".greeks")
    underlying = _object(result.get("underlying_asset"), path + ".underlying_asset")

    midpoint = _number(quote_.get("midpoint"), path + ".last_quote.midpoint")
    bid = _number(quote_.get("bid"), path + ".last_quote.bid")
    ask = _number(quote_.get("ask"), path + ".last_quote.ask")
    if midpoint is None and bid is not None and ask is not None:
        midpoint = (bid + ask) / 2.0
    underlying_price = _number(underlying.get("value"), path + ".underlying_asset.value")
    stock_price = _number(underlying.get("price"), path + ".underlying_asset.price")
    if underlying_price is None:
        underlying_price = stock_price

    return OptionSnapshot(
        ticker=ticker,
        root=root,
        contract_type=contract_type,
        expiration_date=expiration,
        strike=strike,
        volume=_whole(day.get("volume"), path + ".day.volume"),
        open_interest=_whole(result.get("open_interest"), path + ".open_interest"),
        vwap=_number(day.get("vwap"), path + ".day.vwap"),
        close=_number(day.get("close"), path + ".day.close"),
        open=_number(day.get("open"), path + ".day.open"),
        high=_number(day.get("high"), path + ".day.high"),
        low=_number(day.get("low"), path + ".day.low"),
        last_price=_number(trade.get("price"), path + ".last_trade.price"),
        midpoint=midpoint,
        implied_volatility=_number(result.get("implied_volatility"), path + ".implied_volatility"),
        delta=_number(greeks.get("delta"), path + ".greeks.delta"),
        underlying_price=underlying_price,
        data_updated_at=_nanoseconds(underlying.get("last_updated"), path + ".underlying_asset.last_updated"),
        timeframe=_text(underlying.get("timeframe"), path + ".underlying_asset.timeframe"),
    )


def parse_daily_bar(ticker: str, bar: Any, path: str, zone: ZoneInfo) -> DailyBar:
    """One aggregate bar {o,h,l,c,v,vw,n,t}; t (ms) and v are required."""
    bar = _object(_required(bar, path), path)
    start_ms = _whole(_required(bar.get("t"), path + ".t"), path + ".t")
    try:
        # The bar starts at midnight Eastern (or 04:00/05:00 UTC): its Eastern date is the session.
        start = datetime.fromtimestamp(start_ms / 1000.0, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _ShapeError("%s.t: expected Unix milliseconds, got %s" % (path, _excerpt(start_ms))) from None
    return DailyBar(
        ticker=ticker,
        trade_date=start.astimezone(zone).date(),
        volume=_whole(_required(bar.get("v"), path + ".v"), path + ".v"),
        open=_number(bar.get("o"), path + ".o"),
        high=_number(bar.get("h"), path + ".h"),
        low=_number(bar.get("l"), path + ".l"),
        close=_number(bar.get("c"), path + ".c"),
        vwap=_number(bar.get("vw"), path + ".vw"),
        transactions=_whole(bar.get("n"), path + ".n"),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError("%s is not a JSON number" % name)


# --- The client ------------------------------------------------------------------------------


class _BearerAuth(requests.auth.AuthBase):
    """Sets the Authorization header at send time (and keeps requests from reading ~/.netrc)."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, request):
        request.headers["Authorization"] = "Bearer " + self.key
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(%s)" % MASK


class _Fetch:
    """One fetch's clock: its deadline and the requests it has sent."""

    def __init__(self, deadline: float, budget: float):
        self.deadline = deadline
        self.budget = budget
        self.requests = 0
        self.pages = 0


class MarketDataClient:
    """Fetches the option chain snapshot and daily bars, with bounded retries and masked secrets.

    ``log``, if given, is called with every line logged at INFO or above (they also go to the
    ``spx.marketdata`` logger). ``page_limit`` is the chain page size (the API allows 1 to 250).
    """

    def __init__(
        self,
        config,
        api_key: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        log: Optional[Callable[[str], None]] = None,
        page_limit: int = CHAIN_PAGE_LIMIT,
    ):
        key = (api_key or "").strip() or api_key_from_environment(environ)
        if not key:
            raise MissingApiKeyError(
                "No market data API key: set MASSIVE_API_KEY (or the older POLYGON_API_KEY) in the environment."
            )
        if not 1 <= int(page_limit) <= CHAIN_PAGE_LIMIT:
            raise ValueError("page_limit must be from 1 to %d, got %r" % (CHAIN_PAGE_LIMIT, page_limit))
        self._auth = _BearerAuth(key)  # the only place the key is kept
        self.base_url = str(config.api_base_url).rstrip("/")
        self.timeout = float(config.api_timeout_seconds)
        self.max_attempts = max(1, int(config.max_poll_retries))
        self.retry_delay = float(config.retry_delay_seconds)
        self.time_budget = float(config.poll_time_budget_seconds)
        self.aggregates_pace = float(getattr(config, "aggregates_pace_seconds", 0.0) or 0.0)
        self.zone = ZoneInfo(getattr(config, "timezone", "America/New_York"))
        self.page_limit = int(page_limit)
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._monotonic = monotonic
        self._log = log
        self._last_aggregates_at: Optional[float] = None

    def __repr__(self) -> str:
        return "MarketDataClient(base_url=%r, api_key=%r)" % (self.base_url, MASK)

    def __enter__(self) -> "MarketDataClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_session:
            self._session.close()

    # --- public fetches ---

    def fetch_chain(self, underlying: str = "I:SPX", chain_filter: ChainFilter = ChainFilter()) -> ChainResult:
        """Every page of the chain snapshot, filtered on the server; any failing page raises."""
        fetch = self._start_fetch()
        path = "/v3/snapshot/options/" + quote(underlying, safe=":")
        params = dict(chain_filter.params(), limit=str(self.page_limit))
        snapshots: List[OptionSnapshot] = []

        def parse_page(envelope: Any, page: int) -> int:
            results = _results(envelope, path)
            for index, result in enumerate(results):
                snapshots.append(parse_snapshot(result, "results[%d]" % index))
            return len(results)

        self._paginate(path, params, fetch, parse_page, "contracts")
        return ChainResult(snapshots=snapshots, pages=fetch.pages, requests=fetch.requests)

    def fetch_daily_bars(self, ticker: str, first: date, last: date) -> List[DailyBar]:
        """The daily bars of one contract from first to last (Eastern session dates, inclusive)."""
        self._pace_aggregates()
        fetch = self._start_fetch()
        path = "/v2/aggs/ticker/%s/range/1/day/%s/%s" % (quote(ticker, safe=":"), first.isoformat(), last.isoformat())
        params = {"adjusted": "true", "sort": "asc", "limit": str(AGGREGATES_LIMIT)}
        bars: List[DailyBar] = []

        def parse_page(envelope: Any, page: int) -> int:
            results = _results(envelope, path)
            for index, bar in enumerate(results):
                bars.append(parse_daily_bar(ticker, bar, "results[%d]" % index, self.zone))
            return len(results)

        try:
            self._paginate(path, params, fetch, parse_page, "bars", level=logging.DEBUG)
        finally:
            self._last_aggregates_at = self._monotonic()
        return bars

    # --- plumbing ---

    def _start_fetch(self) -> _Fetch:
        return _Fetch(self._monotonic() + self.time_budget, self.time_budget)

    def _pace_aggregates(self) -> None:
        # Free plans allow 5 requests a minute: space per-contract requests by AGGREGATES_PACE_SECONDS.
        if self.aggregates_pace <= 0 or self._last_aggregates_at is None:
            return
        wait = self._last_aggregates_at + self.aggregates_pace - self._monotonic()
        if wait > 0:
            self._sleep(wait)

    def _mask(self, text: Any) -> str:
        """The text with the key, any apiKey= value and any Bearer token replaced by ***."""
        text = str(text)
        key = self._auth.key
        if len(key) >= 4:  # masking a one-letter key would garble every message
            text = text.replace(key, MASK)
        text = re.sub(r"(?i)(apiKey=)[^&\s'\"]*", r"\1" + MASK, text)
        return re.sub(r"(?i)(Bearer\s+)[^\s'\",]+", r"\1" + MASK, text)

    def _emit(self, level: int, message: str) -> None:
        message = self._mask(message)
        logger.log(level, "%s", message)
        if self._log is not None and level >= logging.INFO:
            self._log(message)

    def _next_path(self, next_url: str) -> str:
        # Like the official client: keep path and query, drop the host (and any key a server put there).
        # The query is kept byte for byte: the cursor is opaque.
        parsed = urlparse(next_url)
        query = [part for part in parsed.query.split("&") if part and not part.lower().startswith("apikey=")]
        return parsed.path + ("?" + "&".join(query) if query else "")

    def _paginate(self, path: str, params: Optional[Dict[str, str]], fetch: _Fetch,
                  parse_page: Callable[[Any, int], int], noun: str, level: int = logging.DEBUG) -> None:
        seen = set()
        target = path
        while True:
            page = fetch.pages + 1
            where = "page %d of %s" % (page, path)
            envelope, request_line = self._get_json(target, params, where, fetch)
            try:
                count = parse_page(envelope, page)
                next_url = _text(envelope.get("next_url"), "next_url")
            except _ShapeError as exc:
                raise MalformedResponseError(
                    self._mask("Malformed market data response (%s): %s" % (where, exc))
                ) from None
            fetch.pages = page
            self._emit(level, "%s: page %d, %d %s" % (request_line, page, count, noun))
            if not next_url:
                return
            target = self._next_path(next_url)
            params = None  # the cursor carries the filters
            if target in seen or page >= MAX_PAGES:
                raise MalformedResponseError(
                    "Malformed market data response (%s): next_url leads back to a page already read "
                    "or past %d pages; the pagination does not end." % (where, MAX_PAGES)
                )
            seen.add(target)

    def _get_json(self, target: str, params: Optional[Dict[str, str]], where: str,
                  fetch: _Fetch) -> Tuple[Any, str]:
        """GET base + target, retrying 429/5xx/connection errors within the attempts and the budget.

        Returns the decoded body and a log line "GET path?query -> status (seconds)".
        """
        url = self.base_url + target
        attempt = 0
        while True:
            attempt += 1
            remaining = fetch.deadline - self._monotonic()
            if remaining <= 0:
                raise ServerError(self._mask(
                    "The market data API did not answer %s within the time budget of %g s "
                    "(POLL_TIME_BUDGET_SECONDS)." % (where, fetch.budget)))
            fetch.requests += 1
            started = self._monotonic()
            try:
                response = self._session.get(
                    url,
                    params=params,
                    headers={"Accept": "application/json", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT},
                    auth=self._auth,
                    timeout=min(self.timeout, remaining),
                )
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                error_class = ServerError
                reason = "could not be reached (%s: %s)" % (type(exc).__name__, self._short(exc))
                delay = self._backoff(attempt)
            except requests.RequestException as exc:
                raise MarketDataError(self._mask(
                    "The market data request for %s failed: %s: %s" % (where, type(exc).__name__, exc))) from None
            else:
                status = response.status_code
                shown = urlparse(response.url)
                request_line = "GET %s%s -> %d (%.2f s)" % (
                    shown.path, "?" + shown.query if shown.query else "", status, self._monotonic() - started)
                if 200 <= status < 300:
                    return self._decode(response, where), request_line
                self._emit(logging.WARNING, request_line)
                text = self._server_text(response, prefer="message" if status == 403 else "error")
                if status == 401:
                    raise AuthError(self._mask(
                        "API key rejected by the market data API (HTTP 401 on %s: %s); check "
                        "MASSIVE_API_KEY / POLYGON_API_KEY." % (where, text)))
                if status == 403:
                    raise EntitlementError(self._mask(
                        "Market data plan not entitled to this data (HTTP 403 on %s: %s); the option chain "
                        "snapshot needs at least the Options Starter plan." % (where, text)))
                if status == 404:
                    raise NotFoundError(self._mask("Not found (HTTP 404 on %s: %s)." % (where, text)))
                if status == 429:
                    error_class = RateLimitError
                    reason = "rate limited (HTTP 429: %s)" % text
                    delay = self._retry_after(response)
                    if delay is None:
                        delay = self.retry_delay
                elif status >= 500:
                    error_class = ServerError
                    reason = "failed with HTTP %d (%s)" % (status, text)
                    delay = self._retry_after(response)  # a 503 may say when to come back
                    if delay is None:
                        delay = self._backoff(attempt)
                else:
                    raise MarketDataError(self._mask(
                        "The market data API refused %s with HTTP %d: %s" % (where, status, text)))
            if attempt >= self.max_attempts:
                raise error_class(self._mask(
                    "The market data API %s on %s; gave up after %d attempts (MAX_POLL_RETRIES)."
                    % (reason, where, attempt)))
            if self._monotonic() + delay > fetch.deadline:
                raise error_class(self._mask(
                    "The market data API %s on %s after %d attempt%s; waiting %g s more would pass the "
                    "time budget of %g s (POLL_TIME_BUDGET_SECONDS), so this fetch gives up."
                    % (reason, where, attempt, "" if attempt == 1 else "s", delay, fetch.budget)))
            self._emit(logging.WARNING, "%s: %s; retrying in %g s (attempt %d of %d)"
                       % (where, reason, delay, attempt + 1, self.max_attempts))
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return min(self.retry_delay * (2 ** (attempt - 1)), MAX_BACKOFF_SECONDS)

    @staticmethod
    def _retry_after(response: requests.Response) -> Optional[float]:
        value = (response.headers.get("Retry-After") or "").strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = (moment - datetime.now(timezone.utc)).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return max(0.0, seconds)

    def _short(self, value: Any) -> str:
        text = " ".join(str(value).split())
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS - 3] + "..."

    def _server_text(self, response: requests.Response, prefer: str) -> str:
        """The server's own explanation: `error` or `message` of a JSON body, else the start of the body."""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            other = "error" if prefer == "message" else "message"
            for name in (prefer, other):
                if isinstance(body.get(name), str) and body[name].strip():
                    return self._short(body[name])
        text = self._short(response.text or "")
        return text or "empty body"

    def _decode(self, response: requests.Response, where: str) -> Any:
        try:
            return json.loads(response.content, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedResponseError(self._mask(
                "Malformed market data response (%s): the body is not JSON (HTTP %d, Content-Type %s, %s): %s"
                % (where, response.status_code, response.headers.get("Content-Type", "none"),
                   exc, _excerpt(self._short(response.text or ""))))) from None

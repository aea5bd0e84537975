"""A fake of the market data API on 127.0.0.1, serving a SimulatedMarket in the documented shapes.

Endpoints (see ../shared/reference/market-data-api.md for the real ones):

* ``GET /v3/snapshot/options/I:SPX`` (also ``I%3ASPX``): the chain snapshot with every documented filter,
  sort, order, limit (default 10; above 250 is a 400 error, not clamped) and cursor pagination.
  ``GET /v3/snapshot/options/I:SPX/{optionsTicker}`` answers one contract.
* ``GET /v2/aggs/ticker/{optionsTicker}/range/1/day/{from}/{to}``: daily bars of closed sessions
  (a session with no trades has no bar, as with the real API); other spans are a 400 error.
* ``GET /v3/reference/options/contracts``: listed (or, with expired=true, recently expired) contracts.
* ``GET /v1/marketstatus/upcoming``: NYSE closures and early closes of the next 90 days.

Control endpoints (no key needed): ``GET|POST /_sim/now`` {"now": ISO}, ``POST /_sim/fault``
(the arguments of ``inject_fault``, or {"clear": true}), ``POST /_sim/switches`` (those of
``set_switches``), ``POST /_sim/events`` (a planted event, or {"demo": "YYYY-MM-DD"}), and
``GET /_sim/requests`` (the request log).

The clock is whatever the caller set (``set_now`` or ``/_sim/now``), never the wall clock, so an answer
depends only on (seed, events, now, switches, request): even the request_id is derived from them.
"""
import base64
import gzip
import hashlib
import json
import socket
import threading
import time as time_module
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from spxlib.simulator.market import (
    DEFAULT_NOW,
    Contract,
    PlantedEvent,
    SimulatedMarket,
    SnapshotOptions,
    UnknownContract,
    demo_events,
    parse_now,
)

SNAPSHOT_PATH = "/v3/snapshot/options/I:SPX"
CONTRACTS_PATH = "/v3/reference/options/contracts"
SNAPSHOT_DEFAULT_LIMIT = 10
SNAPSHOT_MAX_LIMIT = 250
CONTRACTS_DEFAULT_LIMIT = 10
CONTRACTS_MAX_LIMIT = 1000
AGGS_MAX_LIMIT = 50000

RATE_LIMIT_MESSAGE = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. "
    "https://massive.com/pricing"
)
NOT_ENTITLED_MESSAGE = (
    "You are not entitled to this data. Please upgrade your plan at https://massive.com/pricing"
)

# Every fault the server can inject. Status faults answer instead of the real response; "slow" sleeps
# then answers normally; the malformed ones answer 200 with a broken body.
FAULT_KINDS = (
    "429",              # rate limited, JSON body, Retry-After when retry_after is given
    "429_empty",        # rate limited with an empty body
    "500", "502", "503",
    "403",              # NOT_AUTHORIZED, "message" instead of "error"
    "slow",             # sleep `seconds`, then the normal answer
    "invalid_json",     # 200 with a truncated JSON body
    "results_not_list",  # 200, valid JSON, "results" is an object
    "missing_details",  # 200, valid JSON, the first result has no "details"
    "empty_body",       # 200 with no body at all
    "disconnect",       # the connection closes without an answer
)
_RANGE_SUFFIXES = ("gt", "gte", "lt", "lte")


class ApiError(Exception):
    """An error answer: HTTP status and JSON body."""

    def __init__(self, status: int, message: str, status_text: str = "ERROR", key: str = "error"):
        super().__init__(message)
        self.status = status
        self.body = {"status": status_text, key: message}


@dataclass
class Fault:
    """One injected fault: fires on the ``on_request``-th request whose path contains ``path_contains``
    (counted from injection) and the next ``times - 1`` ones, or, with ``on_page``, on that page of a
    paginated listing (page 1 is the request without a cursor). ``times=None`` never runs out."""

    kind: str
    path_contains: str = ""
    on_request: Optional[int] = 1
    on_page: Optional[int] = None
    times: Optional[int] = 1
    retry_after: Optional[float] = None
    seconds: float = 0.0
    seen: int = 0
    fired: int = 0

    def matches(self, path: str, page: Optional[int]) -> bool:
        """Count this request and say whether the fault fires on it."""
        if self.path_contains and self.path_contains not in path:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.seen += 1
        if self.on_page is not None:
            hit = page == self.on_page
        else:
            first = self.on_request or 1
            hit = self.seen >= first and (self.times is None or self.seen < first + self.times)
        if hit:
            self.fired += 1
        return hit


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the server saw it. The API key is never kept."""

    method: str
    path: str
    query: Dict[str, str]
    gzip: bool
    status: int
    page: Optional[int] = None
    fault: Optional[str] = None


def encode_cursor(params: Dict[str, str]) -> str:
    """The opaque cursor: the filters and the offset, base64url without padding."""
    text = urlencode(sorted(params.items()))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Dict[str, str]:
    """The filters and offset a cursor carries; ApiError 400 when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()
        found = {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The cursor is not valid.") from None
    if "offset" not in found or "limit" not in found:
        raise ApiError(400, "The cursor is not valid.")
    return found


def _parse_day(name: str, text: str) -> date:
    try:
        if text.isdigit():  # the aggregates endpoint also takes Unix milliseconds
            return datetime.fromtimestamp(int(text) / 1000.0).date()
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "Could not parse the '%s' parameter %r: expected YYYY-MM-DD." % (name, text)) from None


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, "Could not parse the '%s' parameter %r: expected a number." % (name, text)) from None


def _parse_limit(text: Optional[str], default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "Could not parse the 'limit' parameter %r: expected a whole number." % text) from None
    if not 1 <= value <= maximum:
        raise ApiError(400, "The 'limit' parameter must be between 1 and %d, not %d." % (maximum, value))
    return value


def _range_filter(params: Dict[str, str], name: str, parse) -> List[Tuple[str, Any]]:
    """[(op, value)] for ``name`` and ``name.gt|gte|lt|lte``."""
    found = []
    if name in params:
        found.append(("eq", parse(name, params[name])))
    for suffix in _RANGE_SUFFIXES:
        key = "%s.%s" % (name, suffix)
        if key in params:
            found.append((suffix, parse(key, params[key])))
    return found


def _passes(value, conditions) -> bool:
    for op, bound in conditions:
        if (
            (op == "eq" and not value == bound)
            or (op == "gt" and not value > bound)
            or (op == "gte" and not value >= bound)
            or (op == "lt" and not value < bound)
            or (op == "lte" and not value <= bound)
        ):
            return False
    return True


def filter_contracts(contracts: Iterable[Contract], params: Dict[str, str]) -> List[Contract]:
    """The contracts passing contract_type, expiration_date(.op) and strike_price(.op), sorted and ordered
    as the API does (sort ticker | expiration_date | strike_price, ties by ticker; order asc | desc)."""
    contract_type = params.get("contract_type")
    if contract_type not in (None, "", "call", "put"):
        raise ApiError(400, "The 'contract_type' parameter must be call or put, not %r." % contract_type)
    expirations = _range_filter(params, "expiration_date", _parse_day)
    strikes = _range_filter(params, "strike_price", _parse_float)
    sort = params.get("sort") or "ticker"
    if sort not in ("ticker", "expiration_date", "strike_price"):
        raise ApiError(400, "The 'sort' parameter must be ticker, expiration_date or strike_price, not %r." % sort)
    order = params.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise ApiError(400, "The 'order' parameter must be asc or desc, not %r." % order)
    chosen = [
        c for c in contracts
        if (not contract_type or c.contract_type == contract_type)
        and _passes(c.expiration, expirations)
        and _passes(c.strike, strikes)
    ]
    if sort == "expiration_date":
        chosen.sort(key=lambda c: (c.expiration, c.ticker))
    elif sort == "strike_price":
        chosen.sort(key=lambda c: (c.strike, c.ticker))
    else:
        chosen.sort(key=lambda c: c.ticker)
    if order == "desc":
        chosen.reverse()
    return chosen


class FakeApiServer:
    """The fake market data API around a SimulatedMarket, in a background thread.

    ``api_keys=None`` accepts any non-empty key. ``delay_minutes`` is the plan's delay (0: real time).
    Use ``start()``/``stop()`` or ``with FakeApiServer(...) as server:``.
    """

    def __init__(
        self,
        market: SimulatedMarket,
        api_keys: Optional[Sequence[str]] = ("test-key",),
        host: str = "127.0.0.1",
        port: int = 0,
        now: Optional[datetime] = None,
        delay_minutes: float = 15,
        greeks: bool = True,
        last_quote: bool = True,
        last_trade: bool = True,
        underlying_field: str = "value",
        status: str = "OK",
    ):
        self.market = market
        self.api_keys = None if api_keys is None else tuple(api_keys)
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._now = DEFAULT_NOW
        self.delay_minutes = delay_minutes
        self.status = status
        self.options = SnapshotOptions()
        self.set_switches(greeks=greeks, last_quote=last_quote, last_trade=last_trade,
                          underlying_field=underlying_field)
        if now is not None:
            self.set_now(now)
        self._faults: List[Fault] = []
        self._requests: List[RequestRecord] = []
        self._listing_cache: Dict[tuple, List[Contract]] = {}
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # --- Lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "FakeApiServer":
        """Bind and serve in a daemon thread; ``base_url`` is then known."""
        if self._httpd is not None:
            return self
        self._httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-api-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (Ctrl-C)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> "FakeApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    # --- Clock, switches, faults, log ----------------------------------------------------------------
    @property
    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set_now(self, now) -> None:
        """Move the server's clock (an aware datetime or ISO 8601 text with an offset)."""
        moment = parse_now(now) if isinstance(now, str) else now
        if moment.tzinfo is None:
            raise ValueError("naive datetime %r: the clock needs an aware datetime" % (moment,))
        with self._lock:
            self._now = moment

    def advance(self, **delta) -> datetime:
        """Move the clock forward by a timedelta's keywords (minutes=30); returns the new now."""
        with self._lock:
            self._now = self._now + timedelta(**delta)
            return self._now

    def set_switches(self, greeks: Optional[bool] = None, last_quote: Optional[bool] = None,
                     last_trade: Optional[bool] = None, underlying_field: Optional[str] = None,
                     delay_minutes: Optional[float] = None, status: Optional[str] = None) -> None:
        """Drop greeks/last_quote/last_trade, send the underlying as "price" instead of "value", change the
        delay (0 makes timeframes REAL-TIME) or the envelope status ("OK" or "DELAYED")."""
        with self._lock:
            if delay_minutes is not None:
                self.delay_minutes = float(delay_minutes)
            if status is not None:
                self.status = status
            current = self.options
            field_name = underlying_field if underlying_field is not None else current.underlying_field
            if field_name not in ("value", "price"):
                raise ValueError("underlying_field must be 'value' or 'price', not %r" % (field_name,))
            self.options = SnapshotOptions(
                greeks=current.greeks if greeks is None else bool(greeks),
                last_quote=current.last_quote if last_quote is None else bool(last_quote),
                last_trade=current.last_trade if last_trade is None else bool(last_trade),
                underlying_field=field_name,
                timeframe="REAL-TIME" if self.delay_minutes == 0 else "DELAYED",
            )

    def inject_fault(self, kind: str, path_contains: str = "", on_request: Optional[int] = 1,
                     on_page: Optional[int] = None, times: Optional[int] = 1,
                     retry_after: Optional[float] = None, seconds: float = 0.0) -> Fault:
        """Arm a fault (see FAULT_KINDS and Fault); returns it so a test can read ``fired``."""
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault %r; known: %s" % (kind, ", ".join(FAULT_KINDS)))
        fault = Fault(str(kind), path_contains, on_request, on_page, times, retry_after, float(seconds))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> List[RequestRecord]:
        """The API requests served so far (control requests are not logged), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _pick_fault(self, path: str, page: Optional[int]) -> Optional[Fault]:
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault.matches(path, page) and chosen is None:
                    chosen = fault
            return chosen

    # --- The API -----------------------------------------------------------------------------------
    def check_key(self, key: Optional[str]) -> None:
        """ApiError 401 unless the key is one of ours (any non-empty key when api_keys is None)."""
        if not key:
            raise ApiError(401, "API Key was not provided")
        if self.api_keys is not None and key not in self.api_keys:
            raise ApiError(401, "Unknown API Key")

    def request_id(self, now: datetime, target: str) -> str:
        """A request id derived from (seed, now, request, events): identical answers stay byte-identical."""
        text = "%s|%s|%s|%s" % (self.market.seed, now.timestamp(), target, self.market.events_version)
        return hashlib.sha1(text.encode()).hexdigest()[:32]

    def _listing(self, kind: str, day: date, params: Dict[str, str]) -> List[Contract]:
        """Filtered, sorted contracts, cached per (listing, date, filters) so pages do not refilter."""
        filters = tuple(sorted((k, v) for k, v in params.items() if k not in ("limit", "offset", "cursor")))
        key = (kind, day, filters)
        with self._lock:
            cached = self._listing_cache.get(key)
        if cached is not None:
            return cached
        if kind == "chain":
            base = self.market.contracts(day)
        elif kind == "expired":
            base = self.market.expired_contracts(day)
        else:
            base = self.market.contracts(day)
        chosen = filter_contracts(base, params)
        with self._lock:
            if len(self._listing_cache) > 64:
                self._listing_cache.clear()
            self._listing_cache[key] = chosen
        return chosen

    def _page(self, path: str, params: Dict[str, str], default_limit: int, max_limit: int):
        """(filters, offset, limit) from a first request or from its cursor."""
        if "cursor" in params:
            filters = decode_cursor(params["cursor"])
            try:
                offset = int(filters.pop("offset", "0"))
            except ValueError:
                raise ApiError(400, "The cursor is not valid.") from None
        else:
            filters = {k: v for k, v in params.items() if k != "apiKey"}
            offset = 0
        limit = _parse_limit(filters.get("limit"), default_limit, max_limit)
        filters["limit"] = str(limit)
        return filters, offset, limit

    def _listing_page(self, status: str, results: list, path: str, filters: Dict[str, str], offset: int,
                      limit: int, total: int) -> Tuple[dict, int]:
        """A page of a paginated listing and its number: results omitted when empty (as the API may),
        next_url only while more pages remain."""
        body: Dict[str, Any] = {"status": status}
        if results:
            body["results"] = results
        next_url = self._next_url(path, filters, offset, limit, total)
        if next_url:
            body["next_url"] = next_url
        return body, offset // limit + 1

    def _next_url(self, path: str, filters: Dict[str, str], offset: int, limit: int, total: int) -> Optional[str]:
        if offset + limit >= total:
            return None
        cursor = encode_cursor(dict(filters, offset=str(offset + limit)))
        return "%s%s?cursor=%s" % (self.base_url, path, cursor)

    def snapshot_chain(self, now: datetime, params: Dict[str, str]) -> Tuple[dict, int]:
        """The envelope of one chain page and its page number."""
        filters, offset, limit = self._page(SNAPSHOT_PATH, params, SNAPSHOT_DEFAULT_LIMIT, SNAPSHOT_MAX_LIMIT)
        chain_date = self.market.snapshot_moment(now, self.delay_minutes)[0]
        chosen = self._listing("chain", chain_date, filters)
        page = chosen[offset:offset + limit]
        results = [self.market.snapshot_result(c, now, self.delay_minutes, self.options) for c in page]
        return self._listing_page(self.status, results, SNAPSHOT_PATH, filters, offset, limit, len(chosen))

    def snapshot_contract(self, now: datetime, ticker: str) -> dict:
        """The envelope of one contract's snapshot; 404 when it is not in today's chain."""
        try:
            contract = self.market.contract(ticker)
        except UnknownContract:
            raise ApiError(404, "Options contract not found.") from None
        chain_date = self.market.snapshot_moment(now, self.delay_minutes)[0]
        if not contract.listed_from <= chain_date <= contract.expiration:
            raise ApiError(404, "Options contract not found.")
        return {"status": self.status,
                "results": self.market.snapshot_result(contract, now, self.delay_minutes, self.options)}

    def aggregates(self, now: datetime, ticker: str, multiplier: str, timespan: str, first: str, last: str,
                   params: Dict[str, str]) -> dict:
        """The envelope of daily bars of the sessions in [from, to] that closed (plus delay) by now."""
        if multiplier != "1" or timespan != "day":
            raise ApiError(400, "The simulator serves daily bars only (range/1/day), not %s/%s." % (multiplier, timespan))
        try:
            contract = self.market.contract(ticker)
        except UnknownContract:
            raise ApiError(404, "Options contract not found.") from None
        start, end = _parse_day("from", first), _parse_day("to", last)
        limit = _parse_limit(params.get("limit"), 5000, AGGS_MAX_LIMIT)
        seen = now - timedelta(minutes=self.delay_minutes)
        bars = []
        for session in self.market.calendar.iter_sessions(max(start, contract.first_session),
                                                          min(end, contract.expiration)):
            if session.close > seen:
                break
            bar = self.market.daily_bar(contract, session.trade_date)
            if bar is not None:
                bars.append(bar)
        if params.get("sort") == "desc":
            bars.reverse()
        bars = bars[:limit]
        body: Dict[str, Any] = {
            "adjusted": params.get("adjusted", "true") != "false",
            "queryCount": len(bars),
            "resultsCount": len(bars),
            "status": self.status,
            "ticker": contract.ticker,
        }
        if bars:
            body["results"] = bars
        return body

    def reference_contracts(self, now: datetime, params: Dict[str, str]) -> Tuple[dict, int]:
        """The envelope of one page of the contract reference and its page number."""
        filters, offset, limit = self._page(CONTRACTS_PATH, params, CONTRACTS_DEFAULT_LIMIT, CONTRACTS_MAX_LIMIT)
        underlying = filters.get("underlying_ticker", "SPX")
        as_of = _parse_day("as_of", filters["as_of"]) if filters.get("as_of") else now.astimezone(self.market.tz).date()
        expired = filters.get("expired", "false").lower() == "true"
        chosen = [] if underlying != "SPX" else self._listing("expired" if expired else "listed", as_of, filters)
        results = [
            {
                "cfi": "OPEICS" if c.is_put else "OCEICS",
                "contract_type": c.contract_type,
                "exercise_style": "european",
                "expiration_date": c.expiration.isoformat(),
                "primary_exchange": "BATO",
                "shares_per_contract": 100,
                "strike_price": c.strike_price,
                "ticker": c.ticker,
                "underlying_ticker": "SPX",
            }
            for c in chosen[offset:offset + limit]
        ]
        return self._listing_page("OK", results, CONTRACTS_PATH, filters, offset, limit, len(chosen))

    def upcoming(self, now: datetime) -> list:
        """NYSE closures and early closes of the next 90 days, as /v1/marketstatus/upcoming lists them."""
        calendar = self.market.calendar
        today = now.astimezone(self.market.tz).date()
        found = []
        for offset in range(1, 91):
            day = today + timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            if calendar.is_holiday(day):
                name = calendar.holiday_name(day) or "Closed"
                for exchange in ("NASDAQ", "NYSE"):
                    found.append({"date": day.isoformat(), "exchange": exchange, "name": name, "status": "closed"})
            elif calendar.is_half_day(day):
                session = calendar.session(day)
                for exchange in ("NASDAQ", "NYSE"):
                    found.append({
                        "close": session.close.isoformat(),
                        "date": day.isoformat(), "exchange": exchange, "name": "Early Close",
                        "open": session.open.isoformat(), "status": "early-close",
                    })
        return found

    def route(self, now: datetime, path: str, params: Dict[str, str]) -> Tuple[Any, Optional[int]]:
        """(body, page) for an authenticated GET; ApiError for error answers."""
        if path == SNAPSHOT_PATH:
            return self.snapshot_chain(now, params)
        if path.startswith(SNAPSHOT_PATH + "/"):
            return self.snapshot_contract(now, path[len(SNAPSHOT_PATH) + 1:]), None
        if path.startswith("/v3/snapshot/options/"):
            return {"status": self.status}, 1  # only SPX is simulated: other chains are empty
        if path.startswith("/v2/aggs/ticker/"):
            parts = path[len("/v2/aggs/ticker/"):].split("/")
            if len(parts) == 6 and parts[1] == "range":
                return self.aggregates(now, parts[0], parts[2], parts[3], parts[4], parts[5], params), None
        if path == CONTRACTS_PATH:
            return self.reference_contracts(now, params)
        if path == "/v1/marketstatus/upcoming":
            return self.upcoming(now), None
        raise ApiError(404, "Not found: %s" % path, "NOT_FOUND", "message")

    def control(self, method: str, path: str, payload: Dict[str, Any]) -> Any:
        """The /_sim control endpoints (no key)."""
        if path == "/_sim/now":
            if method == "POST":
                if "now" not in payload:
                    raise ApiError(400, 'expected {"now": "ISO 8601 with offset"}')
                try:
                    self.set_now(payload["now"])
                except (TypeError, ValueError) as exc:
                    raise ApiError(400, str(exc)) from None
            return {"now": self.now.isoformat()}
        if path == "/_sim/fault" and method == "POST":
            if payload.get("clear"):
                self.clear_faults()
                return {"cleared": True}
            try:
                fault = self.inject_fault(**payload)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, str(exc)) from None
            return {"fault": asdict(fault)}
        if path == "/_sim/switches" and method == "POST":
            try:
                self.set_switches(**payload)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, str(exc)) from None
            return {"options": asdict(self.options), "delay_minutes": self.delay_minutes, "status": self.status}
        if path == "/_sim/events" and method == "POST":
            try:
                if "demo" in payload:
                    events = demo_events(self.market, payload["demo"])
                else:
                    events = [PlantedEvent(**payload)]
                self.market.plant(*events)
            except (TypeError, ValueError, KeyError) as exc:
                raise ApiError(400, str(exc)) from None
            return {"planted": [_event_json(e, self.market) for e in events]}
        if path == "/_sim/requests":
            return {"requests": [asdict(r) for r in self.requests]}
        raise ApiError(404, "Not found: %s" % path, "NOT_FOUND", "message")


def _event_json(event: PlantedEvent, market: SimulatedMarket) -> dict:
    return {
        "ticker": event.ticker, "trade_date": event.trade_date.isoformat(),
        "start": event.start.strftime("%H:%M"), "end": event.end.strftime("%H:%M"),
        "extra_volume": event.extra_volume, "price": market.event_price(event),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMarketData/1.0"
    sys_version = ""
    timeout = 30
    # Headers and body go out in separate writes: without this, Nagle plus delayed ACK add ~40 ms a request.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet: no request logging to stderr
        pass

    def setup(self):
        super().setup()
        # headers and body go out in separate writes: without this, Nagle plus the client's delayed
        # ACK cost about 40 ms a request on keep-alive connections
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def app(self) -> FakeApiServer:
        return self.server.app  # type: ignore[attr-defined]

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        app = self.app
        now = app.now
        split = urlsplit(self.path)
        path = unquote(split.path)
        raw_query = parse_qs(split.query, keep_blank_values=True)
        params = {key: values[-1] for key, values in raw_query.items()}
        accepts_gzip = "gzip" in (self.headers.get("Accept-Encoding") or "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if path.startswith("/_sim/"):
            try:
                payload = json.loads(raw_body.decode() or "{}") if raw_body else {}
                if not isinstance(payload, dict):
                    raise ApiError(400, "expected a JSON object")
                body, status = app.control(method, path, payload), 200
            except ValueError:
                body, status = {"status": "ERROR", "error": "the body is not JSON"}, 400
            except ApiError as exc:
                body, status = exc.body, exc.status
            self._send(status, json.dumps(body, sort_keys=True).encode(), accepts_gzip)
            return
        key = params.pop("apiKey", None)
        authorization = self.headers.get("Authorization") or ""
        if authorization.lower().startswith("bearer "):
            key = authorization[7:].strip() or key
        # the request_id depends on the request, never on the key
        target = path + ("?" + urlencode(sorted(params.items())) if params else "")
        request_id = app.request_id(now, target)
        page = None
        fault = None
        try:
            if method != "GET":
                raise ApiError(405, "Method not allowed.")
            app.check_key(key)
            page = _page_number(params)
            fault = app._pick_fault(path, page)
            if fault is not None and fault.kind not in ("slow", "invalid_json", "results_not_list",
                                                        "missing_details", "empty_body"):
                # Recorded before answering: a client that has its answer may read the log at once.
                app._record(RequestRecord(method, path, params, accepts_gzip, _fault_status(fault), page, fault.kind))
                self._send_fault(fault, request_id, accepts_gzip)
                return
            if fault is not None and fault.kind == "slow":
                time_module.sleep(fault.seconds)
            body, page = app.route(now, path, params)
            status = 200
        except ApiError as exc:
            body, status = dict(exc.body), exc.status
        if isinstance(body, dict):
            body = _with_request_id(body, request_id)
        payload = json.dumps(body).encode()
        if status == 200 and fault is not None:
            payload = _malform(fault.kind, body)
        app._record(RequestRecord(method, path, params, accepts_gzip, status, page,
                                  fault.kind if fault is not None else None))
        self._send(status, payload, accepts_gzip)

    def _send_fault(self, fault: Fault, request_id: str, accepts_gzip: bool) -> None:
        if fault.kind == "disconnect":
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        headers = {}
        content_type = "application/json"
        if fault.kind == "429":
            body = json.dumps({"status": "ERROR", "request_id": request_id, "error": RATE_LIMIT_MESSAGE}).encode()
        elif fault.kind == "429_empty":
            body = b""
        elif fault.kind == "403":
            body = json.dumps({"status": "NOT_AUTHORIZED", "request_id": request_id,
                               "message": NOT_ENTITLED_MESSAGE}).encode()
        elif fault.kind == "502":
            body = b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
            content_type = "text/html"
        elif fault.kind == "503":
            body = json.dumps({"status": "ERROR", "request_id": request_id,
                               "error": "Service temporarily unavailable."}).encode()
        else:
            body = json.dumps({"status": "ERROR", "request_id": request_id, "error": "Internal server error."}).encode()
        if fault.retry_after is not None and fault.kind in ("429", "429_empty", "503"):
            headers["Retry-After"] = _retry_after_text(fault.retry_after)
        self._send(_fault_status(fault), body, accepts_gzip, content_type, headers)

    def _send(self, status: int, body: bytes, accepts_gzip: bool, content_type: str = "application/json",
              headers: Optional[Dict[str, str]] = None) -> None:
        if accepts_gzip and body:
            body = gzip.compress(body, mtime=0)
        self.send_response(status)
        self.send_header("Content-Type", content_type if body else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if accepts_gzip and body:
            self.send_header("Content-Encoding", "gzip")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)


def _page_number(params: Dict[str, str]) -> int:
    """The page a listing request asks for: 1 without a cursor, else offset // limit + 1."""
    if "cursor" not in params:
        return 1
    try:
        filters = decode_cursor(params["cursor"])
        return int(filters.get("offset", "0")) // max(int(filters.get("limit", "10")), 1) + 1
    except (ApiError, ValueError):
        return 0


def _fault_status(fault: Fault) -> int:
    return {"429": 429, "429_empty": 429, "403": 403, "500": 500, "502": 502, "503": 503,
            "disconnect": 0}.get(fault.kind, 200)


def _retry_after_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _with_request_id(body: dict, request_id: str) -> dict:
    """The envelope with request_id after status, like the real answers."""
    ordered = {}
    for key, value in body.items():
        ordered[key] = value
        if key == "status":
            ordered["request_id"] = request_id
    if "request_id" not in ordered:
        ordered["request_id"] = request_id
    return ordered


def _malform(kind: str, body: Any) -> bytes:
    if kind == "invalid_json":
        return json.dumps(body).encode()[:40] + b'...{"results": ['
    if kind == "empty_body":
        return b""
    if isinstance(body, dict) and kind == "results_not_list":
        broken = dict(body)
        results = broken.get("results")
        broken["results"] = results[0] if isinstance(results, list) and results else {"unexpected": True}
        return json.dumps(broken).encode()
    if isinstance(body, dict) and kind == "missing_details":
        broken = dict(body)
        results = broken.get("results")
        if isinstance(results, list) and results:
            first = {k: v for k, v in results[0].items() if k != "details"}
            broken["results"] = [first] + results[1:]
        return json.dumps(broken).encode()
    return json.dumps(body).encode()

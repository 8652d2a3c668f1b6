"""A local stand-in for Finnhub, speaking its documented protocol, scriptable from tests.

WebSocket (https://finnhub.io/docs/api/websocket-trades): `ws://127.0.0.1:PORT?token=KEY`; a wrong
token is refused with HTTP 401 at the handshake. Clients send `{"type":"subscribe","symbol":S}` /
`{"type":"unsubscribe","symbol":S}`; the server sends `{"type":"trade","data":[...]}` frames (only
the subscribed symbols of each connection), `{"type":"ping"}` and `{"type":"error","msg":...}`
(e.g. when more than `max_symbols` are subscribed). `drop_connections()` aborts the TCP connections
without a closing handshake, as a network failure would.

REST (https://finnhub.io/docs/api/quote): `GET /api/v1/quote?symbol=S&token=KEY` returns
`{"c","d","dp","h","l","o","pc","t"}` (t in seconds; all zeros for an unknown symbol), 401 for a
bad token, and scripted 429 / 5xx answers via `fail_quotes(n, status)`.

REST (https://finnhub.io/docs/api/stock-candles): `GET /api/v1/stock/candle?symbol=S&resolution=R
&from=T0&to=T1&token=KEY` returns `{"c":[..],"h":[..],"l":[..],"o":[..],"s":"ok","t":[..],"v":[..]}`
with the candles whose `t` (seconds) is in [T0, T1], or `{"s":"no_data"}`. It serves the real daily
series bundled in `data/daily_candles.csv.gz` (resolution D, `t` = 00:00 UTC of the trading date;
W and M are aggregated from it: first open, highest high, lowest low, last close, summed volume,
`t` of the period's first trading day); other resolutions and extra candles come from
`set_candles`. 401 for a wrong token, 403 "You don't have access to this resource." while
`deny_candles` is set (a plan without candle access), 422 for a bad parameter, and scripted answers
via `fail_candles(n, status, retry_after)`. Every call is logged in `candle_requests`.

REST (https://finnhub.io/docs/api/company-profile2): `GET /api/v1/stock/profile2?symbol=S&token=KEY`
returns the profile set with `set_profile` (`{"country","currency","exchange","finnhubIndustry",
"ipo","logo","marketCapitalization","name","phone","shareOutstanding","ticker","weburl"}`,
market capitalization in millions) or `{}` for an unknown symbol; 401 for a wrong token.

REST (https://finnhub.io/docs/api/splits, https://finnhub.io/docs/api/stock-dividends):
`GET /api/v1/stock/split?symbol=S&from=YYYY-MM-DD&to=YYYY-MM-DD&token=KEY` returns the splits set
with `set_splits` whose `date` (the ex-date) is in [from, to]: `[{"symbol","date","fromFactor",
"toFactor"}]`; `GET /api/v1/stock/dividend?...` the same for `set_dividends`: `[{"symbol","date",
"amount","adjustedAmount","payDate","recordDate","declarationDate","currency"}]`; `[]` when there are
none. 401 for a wrong token, 422 for a missing symbol or a bad date, scripted answers via
`fail_actions(n, status, retry_after)` (for both paths, in call order). Every call is logged in
`action_requests`.

Runs in a background thread on 127.0.0.1 with ephemeral ports: `with FakeFinnhub() as server: ...`.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

DAILY_CANDLES = Path(__file__).resolve().parent.parent / "data" / "daily_candles.csv.gz"
CANDLE_RESOLUTIONS = ("1", "5", "15", "30", "60", "D", "W", "M")
# one candle as Finnhub's arrays hold it: t (seconds), o, h, l, c, v
Row = tuple[int, float, float, float, float, float]


def load_daily_series(path: Path = DAILY_CANDLES) -> dict[str, list[Row]]:
    """symbol -> its daily candles from the bundled candle file, in time order."""
    series: dict[str, list[Row]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            series.setdefault(row["symbol"], []).append((
                int(row["bar_start"]) // 1000, float(row["open"]), float(row["high"]),
                float(row["low"]), float(row["close"]), int(row["volume"]),
            ))
    for rows in series.values():
        rows.sort()
    return series


def aggregate(rows: list[Row], resolution: str) -> list[Row]:
    """Daily candles -> weekly (ISO week) or monthly ones, `t` of each period's first day."""
    periods: dict[tuple[int, int], list[Row]] = {}
    for row in rows:
        day = dt.datetime.fromtimestamp(row[0], dt.UTC).date()
        key = day.isocalendar()[:2] if resolution == "W" else (day.year, day.month)
        periods.setdefault(key, []).append(row)
    return [
        (group[0][0], group[0][1], max(r[2] for r in group), min(r[3] for r in group),
         group[-1][4], sum(r[5] for r in group))
        for _, group in sorted(periods.items())
    ]


@dataclass(frozen=True)
class CandleRequest:
    """One /stock/candle call as the server saw it."""

    time: float  # time.monotonic() when it arrived
    symbol: str
    resolution: str
    start: int | None
    end: int | None
    status: int
    candles: int  # candles in the answer


@dataclass
class Client:
    connection: ServerConnection
    symbols: list[str] = field(default_factory=list)


class FakeFinnhub:
    """The fake server. All methods are thread-safe and may be called from the test thread."""

    def __init__(self, token: str = "test-token", max_symbols: int = 50) -> None:
        self.token = token
        self.max_symbols = max_symbols
        self.quotes: dict[str, dict[str, Any]] = {}
        self.quote_requests: list[tuple[float, str, int]] = []  # (time, symbol, status)
        self.handshakes: list[int] = []  # HTTP status of every WebSocket handshake
        self.received: list[dict[str, Any]] = []  # every client message
        self.sent_trades: list[dict[str, Any]] = []  # trades actually written to a client
        self._quote_failures: list[int] = []
        self.deny_candles = False  # True: 403, like a plan without candle access
        self.candle_requests: list[CandleRequest] = []
        self._candle_failures: list[tuple[int, float | None]] = []
        self._daily: dict[str, list[Row]] | None = None
        self._extra_candles: dict[tuple[str, str], dict[int, Row]] = {}
        self._clients: list[Client] = []
        self.profiles: dict[str, dict[str, Any]] = {}  # symbol -> /stock/profile2 answer
        self.profile_requests: list[tuple[str, int]] = []  # (symbol, status)
        # "/stock/split" | "/stock/dividend" -> symbol -> the entries served
        self.actions: dict[str, dict[str, list[dict[str, Any]]]] = {
            "/stock/split": {}, "/stock/dividend": {}}
        self.action_requests: list[tuple[str, str, int]] = []  # (path, symbol, status)
        self._action_failures: list[tuple[int, float | None]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-finnhub",
                                        daemon=True)
        self._ws_server: Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeFinnhub:
        self._thread.start()
        self._ws_server = self._call(self._start_ws())
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._http_handler())
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._ws_server is not None:
            self._call(self._stop_ws())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeFinnhub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        assert self._ws_server is not None
        port = next(iter(self._ws_server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    @property
    def api_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}/api/v1"

    def _call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- WebSocket -----------------------------------------------------------------------------

    async def _start_ws(self) -> Server:
        return await serve(self._handler, "127.0.0.1", 0, process_request=self._check_token,
                           ping_interval=None)

    async def _stop_ws(self) -> None:
        assert self._ws_server is not None
        self._ws_server.close()
        await self._ws_server.wait_closed()

    def _check_token(self, connection: ServerConnection, request: Request) -> Response | None:
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        if token != self.token:
            with self._lock:
                self.handshakes.append(401)
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid API key\n")
        with self._lock:
            self.handshakes.append(101)
        return None

    async def _handler(self, connection: ServerConnection) -> None:
        client = Client(connection)
        with self._lock:
            self._clients.append(client)
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    await connection.send(json.dumps({"type": "error", "msg": "Invalid message"}))
                    continue
                with self._lock:
                    self.received.append(message)
                kind, symbol = message.get("type"), message.get("symbol")
                if kind == "subscribe" and isinstance(symbol, str):
                    if symbol in client.symbols:
                        continue
                    if len(client.symbols) >= self.max_symbols:
                        await connection.send(json.dumps(
                            {"type": "error", "msg": "Subscribing to too many symbols"}))
                        continue
                    client.symbols.append(symbol)
                elif kind == "unsubscribe" and isinstance(symbol, str):
                    if symbol in client.symbols:
                        client.symbols.remove(symbol)
                else:
                    await connection.send(json.dumps({"type": "error", "msg": "Invalid message"}))
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)

    def clients(self) -> list[Client]:
        with self._lock:
            return list(self._clients)

    def subscriptions(self) -> list[list[str]]:
        """The subscribed symbols of each open connection."""
        with self._lock:
            return [list(c.symbols) for c in self._clients]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Finnhub: condition not met within {timeout}s")
            time.sleep(0.02)

    def wait_subscribed(self, symbols: list[str], timeout: float = 10.0) -> None:
        """Until exactly one connection is open and it is subscribed to `symbols` (any order)."""
        self.wait_for(lambda: [sorted(s) for s in self.subscriptions()] == [sorted(symbols)],
                      timeout)

    def send_trades(self, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One trade frame per connection holding its subscribed symbols' trades.

        Returns the trades written (those of subscribed symbols); they are also recorded in
        `sent_trades`. Trades use Finnhub's short names: s, p, t, v, c.
        """
        return self._call(self._send_trades(trades))  # type: ignore[no-any-return]

    async def _send_trades(self, trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
        written: list[dict[str, Any]] = []
        for client in self.clients():
            data = [t for t in trades if t.get("s") in client.symbols]
            if not data:
                continue
            try:
                await client.connection.send(json.dumps({"type": "trade", "data": data}))
            except ConnectionClosed:
                continue
            written.extend(data)
        with self._lock:
            self.sent_trades.extend(written)
        return written

    def send_raw(self, text: str) -> int:
        """Send `text` as-is to every connection; returns how many got it."""
        return self._call(self._broadcast(text))  # type: ignore[no-any-return]

    async def _broadcast(self, text: str) -> int:
        count = 0
        for client in self.clients():
            try:
                await client.connection.send(text)
                count += 1
            except ConnectionClosed:
                pass
        return count

    def send_ping(self) -> int:
        return self.send_raw(json.dumps({"type": "ping"}))

    def send_error(self, message: str) -> int:
        return self.send_raw(json.dumps({"type": "error", "msg": message}))

    def drop_connections(self) -> int:
        """Abort every connection's TCP stream (no close frame), like a network failure."""
        clients = self.clients()

        def abort() -> None:
            for client in clients:
                transport = client.connection.transport
                if transport is not None:
                    transport.abort()

        self._loop.call_soon_threadsafe(abort)
        self.wait_for(lambda: all(c not in self._clients for c in clients), timeout=5)
        return len(clients)

    # --- REST ----------------------------------------------------------------------------------

    def set_quote(self, symbol: str, **fields: Any) -> None:
        """Set the /quote answer for a symbol; fields c, d, dp, h, l, o, pc, t (seconds)."""
        with self._lock:
            self.quotes[symbol] = fields

    def fail_quotes(self, count: int, status: int = 429) -> None:
        """The next `count` /quote requests get HTTP `status`."""
        with self._lock:
            self._quote_failures.extend([status] * count)

    def _quote_answer(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        token = query.get("token", [""])[0]
        symbol = query.get("symbol", [""])[0]
        with self._lock:
            if token != self.token:
                status, body = 401, {"error": "Invalid API key"}
            elif self._quote_failures:
                status = self._quote_failures.pop(0)
                body = ({"error": "API limit reached. Please try again later. Remaining Limit: 0"}
                        if status == 429 else {"error": "internal error"})
            elif not symbol:
                status, body = 422, {"error": "Wrong symbol"}
            else:
                status = 200
                body = dict(self.quotes.get(symbol) or
                            {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0,
                             "t": 0})
            self.quote_requests.append((time.monotonic(), symbol, status))
        return status, body

    # --- REST: /stock/profile2 ---------------------------------------------------------------

    def set_profile(self, symbol: str, **fields: Any) -> None:
        """The company profile served for `symbol` (Finnhub's field names: name, exchange,
        currency, finnhubIndustry, marketCapitalization in millions, country, ipo, ...)."""
        with self._lock:
            self.profiles[symbol] = {"ticker": symbol, **fields}

    def _profile_answer(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        token = query.get("token", [""])[0]
        symbol = query.get("symbol", [""])[0]
        with self._lock:
            if token != self.token:
                status, body = 401, {"error": "Invalid API key"}
            elif not symbol:
                status, body = 422, {"error": "Wrong symbol"}
            else:
                # an unknown symbol is `{}` with 200, as Finnhub answers it
                status, body = 200, dict(self.profiles.get(symbol, {}))
            self.profile_requests.append((symbol, status))
        return status, body

    # --- REST: /stock/split, /stock/dividend ------------------------------------------------

    def set_splits(self, symbol: str, splits: list[dict[str, Any]]) -> None:
        """The splits served for `symbol`: Finnhub's fields date (ex-date), fromFactor, toFactor."""
        with self._lock:
            self.actions["/stock/split"][symbol] = [{"symbol": symbol, **s} for s in splits]

    def set_dividends(self, symbol: str, dividends: list[dict[str, Any]]) -> None:
        """The dividends served for `symbol`: Finnhub's fields date (ex-date), amount,
        adjustedAmount, payDate, recordDate, declarationDate, currency."""
        with self._lock:
            self.actions["/stock/dividend"][symbol] = [{"symbol": symbol, **d} for d in dividends]

    def fail_actions(self, count: int, status: int = 429, retry_after: float | None = None) -> None:
        """The next `count` /stock/split or /stock/dividend calls get HTTP `status`."""
        with self._lock:
            self._action_failures.extend([(status, retry_after)] * count)

    def _action_answer(self, path: str, query: dict[str, list[str]]
                       ) -> tuple[int, Any, dict[str, str]]:
        token = query.get("token", [""])[0]
        symbol = query.get("symbol", [""])[0]
        first: dt.date | None
        last: dt.date | None
        try:
            first = dt.date.fromisoformat(query.get("from", [""])[0])
            last = dt.date.fromisoformat(query.get("to", [""])[0])
        except ValueError:
            first = last = None
        headers: dict[str, str] = {}
        body: Any
        with self._lock:
            if token != self.token:
                status, body = 401, {"error": "Invalid API key"}
            elif self._action_failures:
                status, retry_after = self._action_failures.pop(0)
                body = ({"error": "API limit reached. Please try again later. Remaining Limit: 0"}
                        if status == 429 else {"error": "internal error"})
                if retry_after is not None:
                    headers["Retry-After"] = f"{retry_after:g}"
            elif not symbol:
                status, body = 422, {"error": "Wrong symbol"}
            elif first is None or last is None:
                status, body = 422, {"error": "Wrong from/to"}
            else:
                status = 200
                body = [dict(e) for e in self.actions[path].get(symbol, [])
                        if first <= dt.date.fromisoformat(e["date"]) <= last]
            self.action_requests.append((path, symbol, status))
        return status, body, headers

    # --- REST: /stock/candle -------------------------------------------------------------------

    def daily_series(self) -> dict[str, list[Row]]:
        """The bundled real daily candles the server answers D (and W, M) calls from."""
        with self._lock:
            if self._daily is None:
                self._daily = load_daily_series()
            return self._daily

    def set_candles(self, symbol: str, resolution: str, rows: list[Row]) -> None:
        """Serve these candles (t, o, h, l, c, v) for (symbol, resolution) too; a row with the
        `t` of a bundled one replaces it (e.g. to serve a broken candle)."""
        with self._lock:
            self._extra_candles.setdefault((symbol, resolution), {}).update(
                {row[0]: row for row in rows})

    def fail_candles(self, count: int, status: int = 429, retry_after: float | None = None) -> None:
        """The next `count` /stock/candle calls get HTTP `status` (with `Retry-After` if given)."""
        with self._lock:
            self._candle_failures.extend([(status, retry_after)] * count)

    def candles_for(self, symbol: str, resolution: str) -> list[Row]:
        """Everything the server would serve for (symbol, resolution), in time order."""
        daily = self.daily_series().get(symbol, []) if resolution in ("D", "W", "M") else []
        base = daily if resolution == "D" else aggregate(daily, resolution) if daily else []
        with self._lock:
            extra = dict(self._extra_candles.get((symbol, resolution), {}))
        merged = {row[0]: row for row in base}
        merged.update(extra)
        return [merged[t] for t in sorted(merged)]

    def _candle_answer(
        self, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = query.get("token", [""])[0]
        symbol = query.get("symbol", [""])[0]
        resolution = query.get("resolution", [""])[0]

        def integer(name: str) -> int | None:
            try:
                return int(query.get(name, [""])[0])
            except ValueError:
                return None

        start, end = integer("from"), integer("to")
        headers: dict[str, str] = {}
        body: dict[str, Any]
        with self._lock:
            failure = None
            if token == self.token and not self.deny_candles and self._candle_failures:
                failure = self._candle_failures.pop(0)
        if token != self.token:
            status, body = 401, {"error": "Invalid API key"}
        elif self.deny_candles:
            status, body = 403, {"error": "You don't have access to this resource."}
        elif failure is not None:
            status, retry_after = failure
            body = ({"error": "API limit reached. Please try again later. Remaining Limit: 0"}
                    if status == 429 else {"error": "internal error"})
            if retry_after is not None:
                headers["Retry-After"] = f"{retry_after:g}"
        elif not symbol:
            status, body = 422, {"error": "Wrong symbol"}
        elif resolution not in CANDLE_RESOLUTIONS:
            status, body = 422, {"error": "Wrong resolution"}
        elif start is None or end is None:
            status, body = 422, {"error": "Wrong from/to"}
        else:
            rows = [r for r in self.candles_for(symbol, resolution) if start <= r[0] <= end]
            status = 200
            body = {"s": "no_data"} if not rows else {
                "c": [r[4] for r in rows], "h": [r[2] for r in rows], "l": [r[3] for r in rows],
                "o": [r[1] for r in rows], "s": "ok", "t": [r[0] for r in rows],
                "v": [r[5] for r in rows],
            }
        with self._lock:
            self.candle_requests.append(CandleRequest(
                time.monotonic(), symbol, resolution, start, end, status,
                len(body.get("t", [])) if status == 200 else 0,
            ))
        return status, body, headers

    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                # finnhub-python joins API_URL and "/quote" with a "/", giving "//quote".
                path = "/" + "/".join(p for p in parts.path.split("/") if p)
                if path == "/api/v1/quote":
                    status, body = server._quote_answer(parse_qs(parts.query))
                    self._reply(status, body)
                elif path == "/api/v1/stock/profile2":
                    self._reply(*server._profile_answer(parse_qs(parts.query)))
                elif path in ("/api/v1/stock/split", "/api/v1/stock/dividend"):
                    self._reply(*server._action_answer(path.removeprefix("/api/v1"),
                                                       parse_qs(parts.query)))
                elif path == "/api/v1/stock/candle":
                    status, body, headers = server._candle_answer(parse_qs(parts.query))
                    self._reply(status, body, headers)
                else:
                    self._reply(404, {"error": f"no route {path}"})

            def _reply(self, status: int, body: Any,
                       headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

"""Finnhub's trade WebSocket: connect, subscribe, parse frames into Trades, and stay connected.

Protocol (https://finnhub.io/docs/api/websocket-trades): connect to `wss://ws.finnhub.io?token=KEY`,
send `{"type":"subscribe","symbol":"AAPL"}` per symbol (`unsubscribe` to stop), then receive
`{"type":"trade","data":[{"s":..,"p":..,"t":..,"v":..,"c":[..]}, ...]}` frames carrying many trades,
`{"type":"ping"}` keep-alives and `{"type":"error","msg":..}` errors. A bad key is refused with
HTTP 401 at the handshake. Finnhub allows one connection per API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from producer.errors import ProducerError
from producer.metrics import ProducerStats
from tickhouse.schemas import InvalidMessage, Trade, now_ms, validate_trade

log = logging.getLogger(__name__)

SOURCE = "finnhub"
_SHOW_CHARS = 500


class FinnhubAuthError(ProducerError, RuntimeError):
    """Finnhub refused the API key; retrying would only get the key rate-limited or banned."""


@dataclass(slots=True)
class Frame:
    """What one WebSocket message held."""

    kind: str  # trade | ping | error | other | malformed
    trades: list[Trade] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one per rejected trade, or the frame's
    message: str = ""  # the error text of an error frame


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _trade_object(item: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "symbol": item.get("s"),
        "price": item.get("p"),
        "volume": item.get("v"),
        "ts": item.get("t"),
        "source": SOURCE,
    }
    for short, long in (("s", "symbol"), ("p", "price"), ("v", "volume"), ("t", "ts")):
        if short not in item:
            del obj[long]  # so that validation says "missing required field"
    if item.get("c") is not None:
        obj["conditions"] = item["c"]
    return obj


def parse_frame(text: str | bytes, now: int | None = None) -> Frame:
    """One WebSocket message -> Frame. Never raises: problems are reported in `Frame.problems`."""
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        return Frame("malformed", problems=[f"not valid JSON: {err}"])
    if not isinstance(value, dict):
        return Frame("malformed", problems=[f"not a JSON object: {type(value).__name__}"])
    kind = value.get("type")
    if kind == "ping":
        return Frame("ping")
    if kind == "error":
        return Frame("error", message=str(value.get("msg", "")))
    if kind != "trade":
        return Frame("other", problems=[f"unknown frame type {kind!r}"])
    data = value.get("data")
    if not isinstance(data, list):
        return Frame("malformed", problems=["trade frame without a 'data' list"])
    current = now_ms() if now is None else now
    frame = Frame("trade")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            frame.problems.append(f"data[{index}]: not an object: {item!r:.80}")
            continue
        try:
            frame.trades.append(validate_trade(_trade_object(item), current))
        except InvalidMessage as err:
            frame.problems.append(f"data[{index}]: {err}")
    return frame


def backoff_delays(
    initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None
) -> Iterable[float]:
    """Exponential backoff with "equal jitter": each delay in [d/2, d], d doubling to `maximum`."""
    generator = rng or random.Random()
    delay = initial
    while True:
        yield delay / 2 + generator.uniform(0, delay / 2)
        delay = min(delay * 2, maximum)


def subscription_changes(
    current: Iterable[str], wanted: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(symbols to subscribe, symbols to unsubscribe), in the order they were listed."""
    have = list(dict.fromkeys(current))
    want = list(dict.fromkeys(wanted))
    return [s for s in want if s not in have], [s for s in have if s not in want]


class KeyLock:
    """An exclusive lock per API key in the state dir: one Finnhub connection per key."""

    def __init__(self, state_dir: Path, api_key: str) -> None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self.path = state_dir / f"finnhub-{digest}.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise FinnhubAuthError(
                "another Tickhouse producer is already connected with this FINNHUB_API_KEY "
                f"(lock {self.path}); Finnhub allows one WebSocket per key"
            ) from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class FinnhubStream:
    """Keeps one WebSocket open and hands every valid trade to `on_trades`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        symbols: Iterable[str],
        on_trades: Callable[[list[Trade]], None],
        *,
        stats: ProducerStats | None = None,
        silence_timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise FinnhubAuthError(
                "FINNHUB_API_KEY is not set; get a free key at https://finnhub.io and export it"
            )
        self._url = url
        self._api_key = api_key
        self._wanted: list[str] = list(dict.fromkeys(symbols))
        self._subscribed: list[str] = []
        self._on_trades = on_trades
        self.stats = stats if stats is not None else ProducerStats()
        self._silence = silence_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._ws: ClientConnection | None = None
        self.connections = 0

    @property
    def symbols(self) -> list[str]:
        return list(self._wanted)

    @property
    def subscribed(self) -> list[str]:
        return list(self._subscribed)

    def _uri(self) -> str:
        sep = "&" if "?" in self._url else "?"
        return f"{self._url}{sep}token={self._api_key}"

    async def set_symbols(self, symbols: Iterable[str]) -> None:
        """Change the subscriptions on the live connection; other subscriptions stay as they are."""
        self._wanted = list(dict.fromkeys(symbols))
        if self._ws is not None:
            await self._sync_subscriptions(self._ws)

    async def _sync_subscriptions(self, ws: ClientConnection) -> None:
        add, remove = subscription_changes(self._subscribed, self._wanted)
        for symbol in remove:
            await ws.send(json.dumps({"type": "unsubscribe", "symbol": symbol}))
            self._subscribed.remove(symbol)
        for symbol in add:
            await ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
            self._subscribed.append(symbol)
        if add or remove:
            log.info("finnhub: subscribed to %s (added %s, removed %s)",
                     ",".join(self._subscribed) or "-", add or "-", remove or "-")

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set. Raises FinnhubAuthError on a refused key."""
        delays = iter(backoff_delays(self._backoff_initial, self._backoff_max, self._rng))
        while not stop.is_set():
            received = await self._connect_once(stop)
            if stop.is_set():
                break
            if received:
                delays = iter(backoff_delays(self._backoff_initial, self._backoff_max, self._rng))
            delay = next(delays)
            self.stats.reconnects += 1
            log.info("finnhub: reconnecting in %.2fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _connect_once(self, stop: asyncio.Event) -> bool:
        """One connection's life. Returns whether it received anything."""
        received = False
        try:
            async with connect(
                self._uri(), open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2,
                max_size=8 * 1024 * 1024, max_queue=256, proxy=None,
            ) as ws:
                self.connections += 1
                self._ws = ws
                self._subscribed = []
                self.stats.connected = 1
                log.info("finnhub: connected to %s", self._url)
                await self._sync_subscriptions(ws)
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    while True:
                        receiver = asyncio.ensure_future(ws.recv())
                        done, _ = await asyncio.wait(
                            {receiver, stopper}, timeout=self._silence,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                        if stopper in done:
                            receiver.cancel()
                            return received
                        if not done:
                            receiver.cancel()
                            log.warning("finnhub: nothing received for %.0fs; reconnecting",
                                        self._silence)
                            return received
                        received = True
                        self._handle(receiver.result())
                finally:
                    stopper.cancel()
        except InvalidStatus as err:
            status = err.response.status_code
            if status in (401, 403):
                raise FinnhubAuthError(
                    f"Finnhub refused the API key (HTTP {status} at the WebSocket handshake with "
                    f"{self._url}); check FINNHUB_API_KEY"
                ) from None
            log.warning("finnhub: handshake refused with HTTP %s", status)
        except InvalidURI as err:
            raise FinnhubAuthError(f"FINNHUB_WS_URL is not a WebSocket URL: {err}") from None
        except ConnectionClosed as err:
            log.warning("finnhub: connection closed (%s)", err)
        except (OSError, TimeoutError) as err:
            log.warning("finnhub: cannot connect to %s: %s", self._url, err or type(err).__name__)
        finally:
            self._ws = None
            self.stats.connected = 0
        return received

    def _handle(self, message: str | bytes) -> None:
        self.stats.frames += 1
        frame = parse_frame(message)
        if frame.kind == "trade":
            if frame.trades:
                self.stats.trades_in += len(frame.trades)
                self._on_trades(frame.trades)
            if frame.problems:
                self.stats.malformed_frames += len(frame.problems)
                log.warning("finnhub: skipped %d invalid trade(s): %s; frame: %s",
                            len(frame.problems), "; ".join(frame.problems[:5]),
                            _show(message))
        elif frame.kind == "error":
            self.stats.error_frames += 1
            text = frame.message
            if "too many" in text.lower() or "limit" in text.lower():
                log.error("finnhub error: %r — the plan's symbol limit is exceeded; reduce "
                          "SYMBOLS (now %d symbols)", text, len(self._wanted))
            else:
                log.error("finnhub error: %r", text)
        elif frame.kind in ("malformed", "other"):
            self.stats.malformed_frames += 1
            log.warning("finnhub: %s; frame: %s", "; ".join(frame.problems), _show(message))


def _show(message: str | bytes) -> str:
    text = message if isinstance(message, str) else message.decode("utf-8", "replace")
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "..."

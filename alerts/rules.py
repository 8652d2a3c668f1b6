"""Rule evaluators: pure per-symbol state machines fed one trade at a time, in event time.

Nothing here does I/O or reads the wall clock: `Engine.evaluate(symbol, price, volume, ts)`
returns the rules that fired for that trade, so a replay of the same trades fires the same alerts.

Semantics shared by all rules (the unit tests pin each of them):

- Time is the trade's event time `ts` (epoch ms). A trade older than the symbol's newest one is
  evaluated at the newest time seen (per-symbol clock = max ts), so late prints cannot move
  windows backwards.
- Thresholds are inclusive: a value exactly at the threshold fires. Comparisons allow a relative
  tolerance of 1e-9 so that a move exactly at the threshold in decimal (100 -> 102 at 2 %) is not
  lost to binary rounding.
- Windows are inclusive at both ends: `window_seconds=60` at `t` covers ts in [t - 60 s, t].
- Cooldown per (symbol, rule), in event time: after an alert at `t` the same rule for the same
  symbol is suppressed while ts < t + cooldown; a trade at exactly t + cooldown may fire again.
  A suppressed firing does not restart the cooldown.

Rules (rule names as published in `market.alerts`):

- `price_move_up` / `price_move_down`: price >= pct % above the lowest / below the highest price
  of the earlier trades in the last `window_seconds`.
- `volume_spike`: the current minute's volume >= factor x the mean volume of the `minutes`
  complete minutes before it (minutes without trades count as 0). Needs `minutes` of history
  since the symbol's first trade, a mean > 0, and the minute's volume >= `min_volume`. At most
  one per minute.
- `rsi_overbought` / `rsi_oversold`: TA-Lib RSI(period) over 1-minute closes (the last price of
  every minute that had trades, like the marts' bars) crossing: previous RSI below `overbought`
  and the new one at or above it / previous above `oversold` and the new one at or below it.
  A minute's close is known when the first trade of a later minute arrives; that trade fires it.
- `session_high` / `session_low`: a price strictly above the session high / below the session
  low, once the session (calendar day in `timezone`) has `min_trades` earlier trades.
- `stale_feed`: a symbol has had no trade for >= `seconds` when a trade of another symbol
  arrives. Fires once per silence; the symbol's next trade re-arms it.
- `suspicious_tick`: |price - median| / median >= band_pct % over the last `samples` prices
  (needs `min_samples` of them). Every price enters the median window (a real jump becomes the
  new normal after half the window); with `exclude_from_state` a flagged trade does not feed the
  price-based rules (price move, RSI, session extremes); it still counts for volume and
  staleness.
"""

from __future__ import annotations

import bisect
import datetime as dt
import zoneinfo
from collections import deque
from dataclasses import dataclass
from typing import Any

from alerts.config import (
    PriceMoveConfig,
    RsiConfig,
    RulesConfig,
    SessionExtremesConfig,
    StaleFeedConfig,
    SuspiciousTickConfig,
    SymbolRules,
    VolumeSpikeConfig,
)

REL_TOL = 1e-9
MINUTE_MS = 60_000
RULE_NAMES = (
    "price_move_up",
    "price_move_down",
    "volume_spike",
    "rsi_overbought",
    "rsi_oversold",
    "session_high",
    "session_low",
    "stale_feed",
    "suspicious_tick",
)


def at_or_above(value: float, threshold: float) -> bool:
    return value >= threshold - abs(threshold) * REL_TOL


def at_or_below(value: float, threshold: float) -> bool:
    return value <= threshold + abs(threshold) * REL_TOL


def _r(value: float) -> float:
    """Round for display in details; thresholds are compared on the unrounded value."""
    return round(value, 6)


@dataclass(slots=True)
class Firing:
    """A rule that fired on one trade (before cooldown is applied)."""

    symbol: str
    rule: str
    severity: str
    message: str
    details: dict[str, Any]


# --- price move -------------------------------------------------------------------------------


class PriceMove:
    """Window min/max with monotonic deques: O(1) amortized per trade."""

    __slots__ = ("cfg", "maxq", "minq", "window_ms")

    def __init__(self, cfg: PriceMoveConfig) -> None:
        self.cfg = cfg
        self.window_ms = round(cfg.window_seconds * 1000)
        self.minq: deque[tuple[int, float]] = deque()  # increasing prices
        self.maxq: deque[tuple[int, float]] = deque()  # decreasing prices

    def update(self, symbol: str, ts: int, price: float) -> list[Firing] | None:
        start = ts - self.window_ms
        minq, maxq = self.minq, self.maxq
        while minq and minq[0][0] < start:
            minq.popleft()
        while maxq and maxq[0][0] < start:
            maxq.popleft()
        out: list[Firing] | None = None
        if minq:
            pct = self.cfg.pct
            low_ts, low = minq[0]
            up = (price - low) / low * 100.0
            if at_or_above(up, pct):
                out = [self._firing(symbol, "up", price, low, low_ts, up)]
            high_ts, high = maxq[0]
            down = (high - price) / high * 100.0
            if at_or_above(down, pct):
                firing = self._firing(symbol, "down", price, high, high_ts, down)
                if out is None:
                    out = [firing]
                else:
                    out.append(firing)
        while minq and minq[-1][1] >= price:
            minq.pop()
        minq.append((ts, price))
        while maxq and maxq[-1][1] <= price:
            maxq.pop()
        maxq.append((ts, price))
        return out

    def _firing(
        self, symbol: str, direction: str, price: float, ref: float, ref_ts: int, move: float
    ) -> Firing:
        word = "rose" if direction == "up" else "fell"
        window = self.cfg.window_seconds
        return Firing(
            symbol,
            f"price_move_{direction}",
            self.cfg.severity,
            f"{symbol} {word} {move:.2f}% to {price:g} within {window:g}s (from {ref:g})",
            {
                "direction": direction,
                "price": price,
                "reference_price": ref,
                "reference_ts": ref_ts,
                "change_pct": _r(move if direction == "up" else -move),
                "threshold_pct": self.cfg.pct,
                "window_seconds": window,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {"minq": [list(x) for x in self.minq], "maxq": [list(x) for x in self.maxq]}

    def load(self, data: dict[str, Any]) -> None:
        self.minq = deque((int(t), float(p)) for t, p in data["minq"])
        self.maxq = deque((int(t), float(p)) for t, p in data["maxq"])


# --- volume spike -----------------------------------------------------------------------------


class VolumeSpike:
    __slots__ = ("avg", "cfg", "fired", "first_minute", "history", "minute", "volume")

    def __init__(self, cfg: VolumeSpikeConfig) -> None:
        self.cfg = cfg
        self.first_minute = -1
        self.minute = -1
        self.volume = 0.0
        self.avg = -1.0  # mean of the trailing complete minutes; < 0 while history is too short
        self.fired = False
        self.history: deque[tuple[int, float]] = deque(maxlen=cfg.minutes)

    def update(self, symbol: str, ts: int, volume: float) -> Firing | None:
        minute = ts // MINUTE_MS
        if minute != self.minute:
            self._roll(minute)
        self.volume += volume
        if self.fired or self.avg <= 0.0:
            return None
        cfg = self.cfg
        if at_or_above(self.volume, cfg.factor * self.avg) and self.volume >= cfg.min_volume:
            self.fired = True
            ratio = self.volume / self.avg
            return Firing(
                symbol,
                "volume_spike",
                cfg.severity,
                f"{symbol} volume {self.volume:g} this minute is {ratio:.1f}x the "
                f"{cfg.minutes}-minute average {self.avg:g}",
                {
                    "minute_start_ts": minute * MINUTE_MS,
                    "minute_volume": self.volume,
                    "trailing_avg_volume": _r(self.avg),
                    "ratio": _r(ratio),
                    "threshold_factor": cfg.factor,
                    "trailing_minutes": cfg.minutes,
                },
            )
        return None

    def _roll(self, minute: int) -> None:
        if self.minute >= 0:
            self.history.append((self.minute, self.volume))
        else:
            self.first_minute = minute
        self.minute = minute
        self.volume = 0.0
        self.fired = False
        m = self.cfg.minutes
        if minute - m < self.first_minute:
            self.avg = -1.0
            return
        total = 0.0
        for hist_minute, vol in self.history:
            if minute - m <= hist_minute < minute:
                total += vol
        self.avg = total / m

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_minute": self.first_minute,
            "minute": self.minute,
            "volume": self.volume,
            "avg": self.avg,
            "fired": self.fired,
            "history": [list(x) for x in self.history],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.first_minute = int(data["first_minute"])
        self.minute = int(data["minute"])
        self.volume = float(data["volume"])
        self.avg = float(data["avg"])
        self.fired = bool(data["fired"])
        self.history = deque(((int(m), float(v)) for m, v in data["history"]), maxlen=self.cfg.minutes)


# --- RSI --------------------------------------------------------------------------------------


class WilderRsi:
    """TA-Lib's RSI, one close at a time: seeded with the simple mean of the first `period`
    gains and losses, then Wilder-smoothed, so the values equal `talib.RSI(closes, period)` bit
    for bit. The operations follow ta_RSI.c as the bundled TA-Lib build executes it: its
    divisions by `period` are multiplications by the reciprocal (the library is compiled with
    reciprocal math), the final `gain / (gain + loss)` is a true division. None until
    `period + 1` closes were seen."""

    __slots__ = ("avg_gain", "avg_loss", "count", "inverse", "period", "prev_close", "value")

    def __init__(self, period: int) -> None:
        self.period = period
        self.inverse = 1.0 / period
        self.count = 0  # closes seen
        self.prev_close = 0.0
        self.avg_gain = 0.0  # running sums during the seed, averages afterwards
        self.avg_loss = 0.0
        self.value: float | None = None

    def add(self, close: float) -> float | None:
        count = self.count
        self.count = count + 1
        if count == 0:
            self.prev_close = close
            return None
        diff = close - self.prev_close
        self.prev_close = close
        period = self.period
        if count <= period:
            if diff < 0:
                self.avg_loss -= diff
            else:
                self.avg_gain += diff
            if count < period:
                return None
            self.avg_loss *= self.inverse
            self.avg_gain *= self.inverse
        else:
            loss = self.avg_loss * (period - 1)
            gain = self.avg_gain * (period - 1)
            if diff < 0:
                loss -= diff
            else:
                gain += diff
            self.avg_loss = loss * self.inverse
            self.avg_gain = gain * self.inverse
        total = self.avg_gain + self.avg_loss
        # TA_IS_ZERO: |x| < 1e-8
        self.value = 100.0 * (self.avg_gain / total) if not -1e-8 < total < 1e-8 else 0.0
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "prev_close": self.prev_close,
            "avg_gain": self.avg_gain,
            "avg_loss": self.avg_loss,
            "value": self.value,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.count = int(data["count"])
        self.prev_close = float(data["prev_close"])
        self.avg_gain = float(data["avg_gain"])
        self.avg_loss = float(data["avg_loss"])
        self.value = None if data["value"] is None else float(data["value"])


class RsiCross:
    __slots__ = ("cfg", "close", "close_ts", "minute", "rsi")

    def __init__(self, cfg: RsiConfig) -> None:
        self.cfg = cfg
        self.rsi = WilderRsi(cfg.period)
        self.minute = -1
        self.close = 0.0
        self.close_ts = -1  # event time of the trade that set `close`

    def update(self, symbol: str, clock: int, price: float, ts: int) -> Firing | None:
        """`clock` places the trade in a minute; the close is the price of the minute's trade with
        the latest event time `ts` (a late print does not become the close, as in the bars)."""
        minute = clock // MINUTE_MS
        if minute == self.minute:
            if ts >= self.close_ts:
                self.close, self.close_ts = price, ts
            return None
        closed_minute, close = self.minute, self.close
        self.minute, self.close, self.close_ts = minute, price, ts
        if closed_minute < 0:
            return None
        prev = self.rsi.value
        value = self.rsi.add(close)
        if prev is None or value is None:
            return None
        cfg = self.cfg
        if not at_or_above(prev, cfg.overbought) and at_or_above(value, cfg.overbought):
            rule, level, word = "rsi_overbought", cfg.overbought, "above"
        elif not at_or_below(prev, cfg.oversold) and at_or_below(value, cfg.oversold):
            rule, level, word = "rsi_oversold", cfg.oversold, "below"
        else:
            return None
        return Firing(
            symbol,
            rule,
            cfg.severity,
            f"{symbol} RSI({cfg.period}) on 1-minute closes crossed {word} {level:g}: {value:.2f}",
            {
                "rsi": _r(value),
                "previous_rsi": _r(prev),
                "threshold": level,
                "period": cfg.period,
                "bar_interval": "1m",
                "bar_start_ts": closed_minute * MINUTE_MS,
                "close": close,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "minute": self.minute,
            "close": self.close,
            "close_ts": self.close_ts,
            "rsi": self.rsi.to_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        self.minute = int(data["minute"])
        self.close = float(data["close"])
        self.close_ts = int(data.get("close_ts", -1))
        self.rsi.load(data["rsi"])


# --- session extremes -------------------------------------------------------------------------


class SessionExtremes:
    __slots__ = ("cfg", "count", "end_ms", "high", "low", "start_ms", "tz")

    def __init__(self, cfg: SessionExtremesConfig) -> None:
        self.cfg = cfg
        self.tz = zoneinfo.ZoneInfo(cfg.timezone)
        self.start_ms = 0
        self.end_ms = 0  # [start_ms, end_ms) is the current session; empty until the first trade
        self.count = 0
        self.high = 0.0
        self.low = 0.0

    def _new_session(self, ts: int) -> None:
        local = dt.datetime.fromtimestamp(ts / 1000, self.tz)
        midnight = dt.datetime.combine(local.date(), dt.time(), self.tz)
        next_midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), self.tz)
        self.start_ms = int(midnight.timestamp() * 1000)
        self.end_ms = int(next_midnight.timestamp() * 1000)
        self.count = 0

    def update(self, symbol: str, ts: int, price: float) -> Firing | None:
        if not self.start_ms <= ts < self.end_ms:
            self._new_session(ts)
        count = self.count
        self.count = count + 1
        if count == 0:
            self.high = self.low = price
            return None
        out: Firing | None = None
        if price > self.high:
            if count >= self.cfg.min_trades:
                out = self._firing(symbol, "high", price, self.high)
            self.high = price
        elif price < self.low:
            if count >= self.cfg.min_trades:
                out = self._firing(symbol, "low", price, self.low)
            self.low = price
        return out

    def _firing(self, symbol: str, side: str, price: float, previous: float) -> Firing:
        day = dt.datetime.fromtimestamp(self.start_ms / 1000, self.tz).date().isoformat()
        return Firing(
            symbol,
            f"session_{side}",
            self.cfg.severity,
            f"{symbol} new session {side} {price:g} (previous {previous:g}, session {day})",
            {
                "price": price,
                "previous_extreme": previous,
                "session_date": day,
                "timezone": self.cfg.timezone,
                "session_trades": self.count,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "count": self.count,
            "high": self.high,
            "low": self.low,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.start_ms = int(data["start_ms"])
        self.end_ms = int(data["end_ms"])
        self.count = int(data["count"])
        self.high = float(data["high"])
        self.low = float(data["low"])


# --- suspicious tick --------------------------------------------------------------------------


class SuspiciousTick:
    __slots__ = ("cfg", "ordered", "recent")

    def __init__(self, cfg: SuspiciousTickConfig) -> None:
        self.cfg = cfg
        self.recent: deque[float] = deque()
        self.ordered: list[float] = []

    def median(self) -> float:
        ordered = self.ordered
        n = len(ordered)
        mid = n // 2
        return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0

    def update(self, symbol: str, ts: int, price: float) -> Firing | None:
        out: Firing | None = None
        cfg = self.cfg
        if len(self.recent) >= cfg.min_samples:
            median = self.median()
            deviation = abs(price - median) / median * 100.0
            if at_or_above(deviation, cfg.band_pct):
                out = Firing(
                    symbol,
                    "suspicious_tick",
                    cfg.severity,
                    f"{symbol} print {price:g} is {deviation:.2f}% away from the median {median:g} "
                    f"of the last {len(self.recent)} trades (likely a bad print)",
                    {
                        "price": price,
                        "median": median,
                        "deviation_pct": _r(deviation),
                        "band_pct": cfg.band_pct,
                        "samples": len(self.recent),
                    },
                )
        recent, ordered = self.recent, self.ordered
        if len(recent) >= cfg.samples:
            old = recent.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        recent.append(price)
        bisect.insort(ordered, price)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent)}

    def load(self, data: dict[str, Any]) -> None:
        prices = [float(p) for p in data["recent"]][-self.cfg.samples :]
        self.recent = deque(prices)
        self.ordered = sorted(prices)


# --- per symbol and engine --------------------------------------------------------------------


class SymbolState:
    """Everything the rules remember about one symbol."""

    __slots__ = (
        "clock",
        "cooldown_ms",
        "cooldowns",
        "partition",
        "price_move",
        "rsi",
        "rules",
        "session",
        "stale",
        "stale_ms",
        "suspicious",
        "symbol",
        "volume",
    )

    def __init__(self, symbol: str, rules: SymbolRules) -> None:
        self.symbol = symbol
        self.rules = rules
        self.clock = -1  # newest event time seen
        self.partition = -1  # the trades partition the symbol was last seen on
        self.stale = False  # a stale_feed alert is latched until the next trade
        self.cooldowns: dict[str, int] = {}  # rule -> event time of the last alert
        self.price_move = PriceMove(rules.price_move) if rules.price_move.enabled else None
        self.volume = VolumeSpike(rules.volume_spike) if rules.volume_spike.enabled else None
        self.rsi = RsiCross(rules.rsi) if rules.rsi.enabled else None
        self.session = SessionExtremes(rules.session_extremes) if rules.session_extremes.enabled else None
        self.suspicious = SuspiciousTick(rules.suspicious_tick) if rules.suspicious_tick.enabled else None
        self.stale_ms = round(rules.stale_feed.seconds * 1000) if rules.stale_feed.enabled else -1
        self.cooldown_ms = {
            "price_move_up": rules.price_move.cooldown_seconds,
            "price_move_down": rules.price_move.cooldown_seconds,
            "volume_spike": rules.volume_spike.cooldown_seconds,
            "rsi_overbought": rules.rsi.cooldown_seconds,
            "rsi_oversold": rules.rsi.cooldown_seconds,
            "session_high": rules.session_extremes.cooldown_seconds,
            "session_low": rules.session_extremes.cooldown_seconds,
            "stale_feed": rules.stale_feed.cooldown_seconds,
            "suspicious_tick": rules.suspicious_tick.cooldown_seconds,
        }
        self.cooldown_ms = {k: round(v * 1000) for k, v in self.cooldown_ms.items()}

    def allow(self, rule: str, ts: int) -> bool:
        """Apply the (symbol, rule) cooldown; records the alert when allowed."""
        last = self.cooldowns.get(rule)
        if last is not None and ts < last + self.cooldown_ms[rule]:
            return False
        self.cooldowns[rule] = ts
        return True

    def to_dict(self) -> dict[str, Any]:
        parts: dict[str, Any] = {
            "clock": self.clock,
            "partition": self.partition,
            "stale": self.stale,
            "cooldowns": dict(self.cooldowns),
        }
        for name in ("price_move", "volume", "rsi", "session", "suspicious"):
            part = getattr(self, name)
            if part is not None:
                parts[name] = part.to_dict()
        return parts

    def load(self, data: dict[str, Any]) -> None:
        self.clock = int(data["clock"])
        self.partition = int(data["partition"])
        self.stale = bool(data["stale"])
        self.cooldowns = {str(k): int(v) for k, v in data["cooldowns"].items()}
        for name in ("price_move", "volume", "rsi", "session", "suspicious"):
            part = getattr(self, name)
            if part is not None and name in data:
                part.load(data[name])


_NONE: tuple[Firing, ...] = ()


class Engine:
    """All symbols' state; `evaluate` is the hot path."""

    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self.states: dict[str, SymbolState] = {}
        self._next_stale_check = -1  # no symbol can be stale before this event time
        self._stale_config: dict[str, StaleFeedConfig] = {}

    def state(self, symbol: str) -> SymbolState:
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = SymbolState(symbol, self.rules.for_symbol(symbol))
        return state

    def evaluate(
        self, symbol: str, price: float, volume: float, ts: int, partition: int = -1
    ) -> tuple[Firing, ...] | list[Firing]:
        """Feed one trade; returns the firings that passed their cooldown (usually none)."""
        state = self.states.get(symbol)
        if state is None:
            state = self.state(symbol)
        clock = ts if ts > state.clock else state.clock
        state.clock = clock
        state.partition = partition
        out: list[Firing] | None = None
        candidates: list[Firing] | None = None

        price_ok = True
        if state.suspicious is not None:
            firing = state.suspicious.update(symbol, clock, price)
            if firing is not None:
                candidates = [firing]
                price_ok = not state.suspicious.cfg.exclude_from_state
        if price_ok:
            if state.price_move is not None:
                moves = state.price_move.update(symbol, clock, price)
                if moves is not None:
                    if candidates is None:
                        candidates = moves
                    else:
                        candidates.extend(moves)
            if state.rsi is not None:
                firing = state.rsi.update(symbol, clock, price, ts)
                if firing is not None:
                    candidates = [firing] if candidates is None else [*candidates, firing]
            if state.session is not None:
                firing = state.session.update(symbol, clock, price)
                if firing is not None:
                    candidates = [firing] if candidates is None else [*candidates, firing]
        if state.volume is not None:
            firing = state.volume.update(symbol, clock, volume)
            if firing is not None:
                candidates = [firing] if candidates is None else [*candidates, firing]

        if candidates is not None:
            for firing in candidates:
                if state.allow(firing.rule, clock):
                    if out is None:
                        out = [firing]
                    else:
                        out.append(firing)

        state.stale = False
        if state.stale_ms >= 0:
            due = clock + state.stale_ms
            if self._next_stale_check < 0 or due < self._next_stale_check:
                self._next_stale_check = due
        if 0 <= self._next_stale_check <= clock:
            stale = self._check_stale(symbol, clock)
            if stale:
                out = stale if out is None else out + stale
        return _NONE if out is None else out

    def _check_stale(self, symbol: str, ts: int) -> list[Firing]:
        fired: list[Firing] = []
        next_due = -1
        for other, state in self.states.items():
            if state.stale or state.stale_ms < 0:
                continue
            due = state.clock + state.stale_ms
            if other != symbol and ts >= due:
                state.stale = True
                if state.allow("stale_feed", ts):
                    cfg = state.rules.stale_feed
                    silent = (ts - state.clock) / 1000.0
                    fired.append(
                        Firing(
                            other,
                            "stale_feed",
                            cfg.severity,
                            f"{other} has had no trade for {silent:g}s while {symbol} trades",
                            {
                                "last_trade_ts": state.clock,
                                "silent_seconds": silent,
                                "threshold_seconds": cfg.seconds,
                                "observed_via": symbol,
                            },
                        )
                    )
            elif next_due < 0 or due < next_due:
                next_due = due
        self._next_stale_check = next_due
        return fired

    # --- state hand-over -------------------------------------------------------------------

    def snapshot(self, partitions: set[int] | None = None) -> dict[str, Any]:
        """JSON-able state of the symbols last seen on `partitions` (all when None)."""
        return {
            symbol: state.to_dict()
            for symbol, state in self.states.items()
            if partitions is None or state.partition in partitions
        }

    def restore(self, data: dict[str, Any]) -> None:
        for symbol, part in data.items():
            state = SymbolState(symbol, self.rules.for_symbol(symbol))
            state.load(part)
            self.states[symbol] = state
        self._next_stale_check = 0  # recompute on the next trade

    def drop(self, partitions: set[int]) -> None:
        for symbol in [s for s, st in self.states.items() if st.partition in partitions]:
            del self.states[symbol]

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

Trade conditions (`eligibility`, by the consolidated CTA/UTP rules of tickhouse.trade_conditions,
the table the bars use): a print that does not update the last price (an odd lot, an average-price
or cash-sale print, Form T) is not evaluated by `suspicious_tick`, `price_move_*` or the RSI and
does not move their reference prices; `session_high` / `session_low` take the prints that update
high/low, as the bars' high and low do; `volume_spike` counts the volume of the prints that update
volume. Every print, eligible or not, keeps its symbol from going stale.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from alerts import codec
from alerts.codec import TRANSIENT
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
from tickhouse.trade_conditions import REGULAR, Eligibility

REL_TOL = 1e-9
_bisect_left = bisect.bisect_left
_insort = bisect.insort
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


def _at_least(threshold: float) -> float:
    """`at_or_above(value, threshold)` is `value >= _at_least(threshold)`, precomputed."""
    return threshold - abs(threshold) * REL_TOL


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


@dataclass(slots=True, eq=False)
class PriceMove:
    """Window min/max with monotonic deques: O(1) amortized per trade."""

    cfg: PriceMoveConfig = field(metadata=TRANSIENT)
    window_ms: int = field(init=False, metadata=TRANSIENT)
    pct_at_least: float = field(init=False, metadata=TRANSIENT)  # at_or_above(x, pct) == x >= this
    minq: deque[tuple[int, float]] = field(init=False, default_factory=deque)  # increasing prices
    maxq: deque[tuple[int, float]] = field(init=False, default_factory=deque)  # decreasing prices

    def __post_init__(self) -> None:
        self.window_ms = round(self.cfg.window_seconds * 1000)
        self.pct_at_least = _at_least(self.cfg.pct)

    def update(self, symbol: str, ts: int, price: float) -> list[Firing] | None:
        minq, maxq = self.minq, self.maxq
        out: list[Firing] | None = None
        if minq:
            start = ts - self.window_ms
            # the newest entry is in both queues: they run empty together
            while minq[0][0] < start:
                minq.popleft()
                if not minq:
                    maxq.clear()
                    break
            else:
                while maxq[0][0] < start:
                    maxq.popleft()
                at_least = self.pct_at_least
                low_ts, low = minq[0]
                up = (price - low) / low * 100.0
                if up >= at_least:
                    out = [self._firing(symbol, "up", price, low, low_ts, up)]
                high_ts, high = maxq[0]
                down = (high - price) / high * 100.0
                if down >= at_least:
                    firing = self._firing(symbol, "down", price, high, high_ts, down)
                    if out is None:
                        out = [firing]
                    else:
                        out.append(firing)
                while minq and minq[-1][1] >= price:
                    minq.pop()
                while maxq and maxq[-1][1] <= price:
                    maxq.pop()
        entry = (ts, price)
        minq.append(entry)
        maxq.append(entry)
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


# --- volume spike -----------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class VolumeSpike:
    cfg: VolumeSpikeConfig = field(metadata=TRANSIENT)
    first_minute: int = -1
    minute: int = -1
    volume: float = 0.0
    avg: float = -1.0  # mean of the trailing complete minutes; < 0 while history is too short
    fired: bool = False
    history: deque[tuple[int, float]] = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.cfg.minutes)

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


# --- RSI --------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class WilderRsi:
    """TA-Lib's RSI, one close at a time: seeded with the simple mean of the first `period`
    gains and losses, then Wilder-smoothed, so the values equal `talib.RSI(closes, period)` bit
    for bit. The operations follow ta_RSI.c as the bundled TA-Lib build executes it: its
    divisions by `period` are multiplications by the reciprocal (the library is compiled with
    reciprocal math), the final `gain / (gain + loss)` is a true division. None until
    `period + 1` closes were seen."""

    period: int = field(metadata=TRANSIENT)
    inverse: float = field(init=False, metadata=TRANSIENT)
    count: int = 0  # closes seen
    prev_close: float = 0.0
    avg_gain: float = 0.0  # running sums during the seed, averages afterwards
    avg_loss: float = 0.0
    value: float | None = None

    def __post_init__(self) -> None:
        self.inverse = 1.0 / self.period

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


@dataclass(slots=True, eq=False)
class RsiCross:
    cfg: RsiConfig = field(metadata=TRANSIENT)
    rsi: WilderRsi = field(init=False)
    minute: int = -1
    close: float = 0.0
    close_ts: int = -1  # event time of the trade that set `close`

    def __post_init__(self) -> None:
        self.rsi = WilderRsi(self.cfg.period)

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


# --- session extremes -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class SessionExtremes:
    cfg: SessionExtremesConfig = field(metadata=TRANSIENT)
    tz: zoneinfo.ZoneInfo = field(init=False, metadata=TRANSIENT)
    start_ms: int = 0
    end_ms: int = 0  # [start_ms, end_ms) is the current session; empty until the first trade
    count: int = 0
    high: float = 0.0
    low: float = 0.0

    def __post_init__(self) -> None:
        self.tz = zoneinfo.ZoneInfo(self.cfg.timezone)

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


# --- suspicious tick --------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class SuspiciousTick:
    cfg: SuspiciousTickConfig = field(metadata=TRANSIENT)
    band_at_least: float = field(init=False, metadata=TRANSIENT)
    recent: deque[float] = field(init=False, default_factory=deque)
    ordered: list[float] = field(init=False, default_factory=list, metadata=TRANSIENT)  # = sorted(recent)

    def __post_init__(self) -> None:
        self.band_at_least = _at_least(self.cfg.band_pct)

    def median(self) -> float:
        ordered = self.ordered
        n = len(ordered)
        mid = n // 2
        return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0

    def update(self, symbol: str, ts: int, price: float) -> Firing | None:
        out: Firing | None = None
        cfg = self.cfg
        recent, ordered = self.recent, self.ordered
        n = len(recent)
        if n >= cfg.min_samples:
            mid = n // 2
            median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
            deviation = abs(price - median) / median * 100.0
            if deviation >= self.band_at_least:
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
        recent.append(price)
        if n >= cfg.samples:
            old = recent.popleft()
            if old != price:  # a repeated price leaves the sorted window as it is
                del ordered[_bisect_left(ordered, old)]
                _insort(ordered, price)
        else:
            _insort(ordered, price)
        return out

    def _after_load(self) -> None:
        while len(self.recent) > self.cfg.samples:  # the rules file may have fewer samples now
            self.recent.popleft()
        self.ordered = sorted(self.recent)


# --- per symbol and engine --------------------------------------------------------------------


@functools.cache
def _cooldowns_ms(rules: SymbolRules) -> dict[str, int]:
    """Cooldown per rule name in ms; one shared dict per distinct rule configuration."""
    seconds = {
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
    return {k: round(v * 1000) for k, v in seconds.items()}


@dataclass(slots=True, eq=False)
class SymbolState:
    """Everything the rules remember about one symbol."""

    symbol: str = field(metadata=TRANSIENT)
    rules: SymbolRules = field(metadata=TRANSIENT)
    clock: int = -1  # newest event time seen
    partition: int = -1  # the trades partition the symbol was last seen on
    stale: bool = False  # a stale_feed alert is latched until the next trade
    cooldowns: dict[str, int] = field(default_factory=dict)  # rule -> event time of the last alert
    price_move: PriceMove | None = field(init=False, default=None)
    volume: VolumeSpike | None = field(init=False, default=None)
    rsi: RsiCross | None = field(init=False, default=None)
    session: SessionExtremes | None = field(init=False, default=None)
    suspicious: SuspiciousTick | None = field(init=False, default=None)
    stale_ms: int = field(init=False, default=-1, metadata=TRANSIENT)
    cooldown_ms: dict[str, int] = field(init=False, default_factory=dict, metadata=TRANSIENT)

    def __post_init__(self) -> None:
        rules = self.rules
        if rules.price_move.enabled:
            self.price_move = PriceMove(rules.price_move)
        if rules.volume_spike.enabled:
            self.volume = VolumeSpike(rules.volume_spike)
        if rules.rsi.enabled:
            self.rsi = RsiCross(rules.rsi)
        if rules.session_extremes.enabled:
            self.session = SessionExtremes(rules.session_extremes)
        if rules.suspicious_tick.enabled:
            self.suspicious = SuspiciousTick(rules.suspicious_tick)
        self.stale_ms = round(rules.stale_feed.seconds * 1000) if rules.stale_feed.enabled else -1
        self.cooldown_ms = _cooldowns_ms(rules)

    def allow(self, rule: str, ts: int) -> bool:
        """Apply the (symbol, rule) cooldown; records the alert when allowed."""
        last = self.cooldowns.get(rule)
        if last is not None and ts < last + self.cooldown_ms[rule]:
            return False
        self.cooldowns[rule] = ts
        return True

    def to_dict(self) -> dict[str, Any]:
        """The checkpointed state as JSON-able data."""
        return codec.dump(self)

    def load(self, data: dict[str, Any]) -> None:
        codec.load(self, data)


_NONE: tuple[Firing, ...] = ()


class Engine:
    """All symbols' state; `evaluate` is the hot path.

    The engine also keeps what a checkpointer needs: `dirty`, the symbols whose state changed since
    they were last written (a trade of theirs, or a stale_feed latch another symbol's trade set), and
    `evicted`, the symbols it forgot (idle or over `max_symbols`) with their last partition."""

    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self.states: dict[str, SymbolState] = {}
        self.dirty: set[str] = set()
        self.evicted: dict[str, int] = {}  # symbol -> partition it was last seen on
        self._next_stale_check = -1  # no symbol can be stale before this event time
        self._stale_config: dict[str, StaleFeedConfig] = {}

    def state(self, symbol: str) -> SymbolState:
        state = self.states.get(symbol)
        if state is None:
            state = self.states[symbol] = SymbolState(symbol, self.rules.for_symbol(symbol))
        return state

    def evaluate(
        self,
        symbol: str,
        price: float,
        volume: float,
        ts: int,
        partition: int = -1,
        eligibility: Eligibility = REGULAR,
    ) -> tuple[Firing, ...] | list[Firing]:
        """Feed one trade (what its conditions let it update: `eligibility`); returns the firings
        that passed their cooldown (usually none)."""
        state = self.states.get(symbol)
        if state is None:
            state = self.state(symbol)
        self.dirty.add(symbol)
        clock = ts if ts > state.clock else state.clock
        state.clock = clock
        if state.partition != partition:
            if state.partition >= 0:
                self.evicted[symbol] = state.partition  # its record under the old partition goes
            state.partition = partition
        out: list[Firing] | None = None
        candidates: list[Firing] | None = None

        updates_last = eligibility.updates_last
        flagged = False  # a suspicious print kept out of the price-based rules
        if updates_last and state.suspicious is not None:
            firing = state.suspicious.update(symbol, clock, price)
            if firing is not None:
                candidates = [firing]
                flagged = state.suspicious.cfg.exclude_from_state
        if updates_last and not flagged:
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
        if state.session is not None and eligibility.updates_high_low and not flagged:
            firing = state.session.update(symbol, clock, price)
            if firing is not None:
                candidates = [firing] if candidates is None else [*candidates, firing]
        if state.volume is not None and eligibility.updates_volume:
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
                self.dirty.add(other)
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

    # --- memory bounds ---------------------------------------------------------------------

    def evict(self, idle_before: int, max_symbols: int) -> int:
        """Forget the symbols whose newest trade is older than `idle_before` (event time), then the
        least recently traded ones beyond `max_symbols`; returns how many were forgotten. A
        forgotten symbol that trades again starts with fresh state."""
        states = self.states
        gone = [s for s, st in states.items() if st.clock < idle_before]
        over = len(states) - len(gone) - max_symbols
        if over > 0:
            keep = sorted((st.clock, s) for s, st in states.items() if st.clock >= idle_before)
            gone += [s for _, s in keep[:over]]
        for symbol in gone:
            state = states.pop(symbol)
            self.dirty.discard(symbol)
            if state.partition >= 0:
                self.evicted[symbol] = state.partition
        return len(gone)

    # --- state hand-over -------------------------------------------------------------------

    def snapshot(self, partitions: set[int] | None = None) -> dict[str, Any]:
        """JSON-able state of the symbols last seen on `partitions` (all when None)."""
        return {
            symbol: state.to_dict()
            for symbol, state in self.states.items()
            if partitions is None or state.partition in partitions
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take over the symbols of a snapshot (as `snapshot` or a checkpoint record wrote them)."""
        for symbol, part in data.items():
            state = SymbolState(symbol, self.rules.for_symbol(symbol))
            state.load(part)
            self.states[symbol] = state
            self.evicted.pop(symbol, None)
        self._next_stale_check = 0  # recompute on the next trade

    def drop(self, partitions: set[int]) -> None:
        """Forget the symbols of partitions this instance no longer owns (nothing to checkpoint)."""
        for symbol in [s for s, st in self.states.items() if st.partition in partitions]:
            del self.states[symbol]
            self.dirty.discard(symbol)
        for symbol in [s for s, p in self.evicted.items() if p in partitions]:
            del self.evicted[symbol]

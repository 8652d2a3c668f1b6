"""Synthetic trades: geometric Brownian motion with some market microstructure, reproducible.

Per symbol the price follows GBM (annual drift `mu`, volatility `sigma`, time in trading
seconds), with rare jumps. Arrivals are bursty: orders arrive as a Poisson process and each fills
as a cluster of trades of one symbol a few milliseconds apart (geometric size, mean
`mean_cluster`), so that the total rate is `rate` trades per second. Sizes are mostly round
lots of 100 shares (geometric number of lots), some odd lots, and a few `volume = 0` price
updates (as Finnhub sends). Prices are rounded to the cent.
The same seed gives the same trades (timestamps are relative to `start_ts`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from tickhouse.schemas import Trade

SOURCE = "synthetic"
SECONDS_PER_TRADING_YEAR = 252 * 6.5 * 3600

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    symbols: Sequence[str]
    rate: float  # trades per second over all symbols
    duration: float  # seconds of event time
    seed: int = 0
    start_ts: int = 0  # epoch ms of the first possible trade
    mu: float = 0.05
    sigma: float = 0.35
    jump_probability: float = 0.0005
    jump_scale: float = 0.01
    zero_volume_probability: float = 0.01
    odd_lot_probability: float = 0.08
    mean_cluster: float = 3.0  # trades per incoming order, on average
    cluster_gap: float = 0.002  # mean seconds between the trades of one order


def _start_price(symbol: str, rng: random.Random) -> float:
    return round(rng.uniform(20, 500), 2)


def generate(config: SyntheticConfig) -> Iterator[Trade]:
    """Trades in event-time order; stops at `start_ts + duration`."""
    if config.rate <= 0:
        raise ValueError(f"rate={config.rate}: must be > 0 trades per second")
    if not config.symbols:
        raise ValueError("give at least one symbol")
    rng = random.Random(config.seed)
    symbols = list(config.symbols)
    prices = {s: _start_price(s, rng) for s in symbols}
    # Heavier names trade more: Zipf-like weights, fixed by the seed.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(symbols))]
    rng.shuffle(weights)
    # Bursts: orders arrive as a Poisson process; each one fills as a cluster of trades a few
    # milliseconds apart (a sweep through several price levels), so the total rate is `rate`.
    cluster_seconds = config.mean_cluster / config.rate  # mean time per order, all included
    extra = max(config.mean_cluster - 1, 1e-9)  # mean trades after the first of an order
    gap = min(config.cluster_gap, 0.5 * cluster_seconds / extra)
    order_gap = cluster_seconds - extra * gap
    stay = 1 - 1 / config.mean_cluster  # geometric cluster size with that mean
    t = 0.0
    last_t = {s: 0.0 for s in symbols}
    drift = config.mu - config.sigma**2 / 2
    cluster_left = 0
    symbol = symbols[0]
    while True:
        if cluster_left > 0:
            t += rng.expovariate(1 / gap)
            cluster_left -= 1
        else:
            t += rng.expovariate(1 / order_gap)
            symbol = rng.choices(symbols, weights)[0]
            cluster_left = 0
            while rng.random() < stay:
                cluster_left += 1
        if t >= config.duration:
            return
        dt_years = (t - last_t[symbol]) / SECONDS_PER_TRADING_YEAR
        last_t[symbol] = t
        shock = drift * dt_years + config.sigma * math.sqrt(dt_years) * rng.gauss(0, 1)
        if rng.random() < config.jump_probability:
            shock += rng.gauss(0, config.jump_scale)
        prices[symbol] = max(prices[symbol] * math.exp(shock), 0.01)
        price = Decimal(str(prices[symbol])).quantize(_CENT)
        if price <= 0:
            price = _CENT
        draw = rng.random()
        if draw < config.zero_volume_probability:
            volume = 0
        elif draw < config.zero_volume_probability + config.odd_lot_probability:
            volume = rng.randint(1, 99)
        else:
            lots = 1 + int(rng.expovariate(0.7))
            volume = 100 * lots
        yield Trade(
            symbol=symbol,
            price=price,
            volume=volume,
            ts=config.start_ts + int(t * 1000),
            conditions=None,
            source=SOURCE,
        )

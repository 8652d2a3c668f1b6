"""Synthetic trades: geometric Brownian motion with some market microstructure, reproducible.

Per symbol the price follows GBM (annual drift `mu`, volatility `sigma`, time in trading
seconds), with rare jumps. Arrivals are bursty: orders arrive as a Poisson process and each fills
as a cluster of trades of one symbol a few milliseconds apart (geometric size, mean
`mean_cluster`), so that the total rate is `rate` trades per second. Sizes are mostly round
lots of 100 shares (geometric number of lots), some odd lots, and a few `volume = 0` price
updates (as Finnhub sends). Prices are rounded to the cent.

Trade conditions are Finnhub's codes (dbt_project/seeds/trade_conditions.csv): a round lot is a
regular trade (`["1"]`); an odd lot (`["12"]`) prints a little off the market price (a spread of
`odd_lot_spread`, relative), as odd lots do, without moving it; now and then an average-price print
(`["3"]`, probability `average_price_probability`) reports a block at the mean of the symbol's
recent prices. Neither kind moves the consolidated last price, so the bars and the price alerts
skip them and count their volume. Zero-volume price updates carry no conditions.
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
REGULAR = ("1",)
ODD_LOT = ("12",)
AVERAGE_PRICE = ("3",)
_AVERAGE_WEIGHT = 0.02  # of the newest price in the running mean an average-price print reports


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
    odd_lot_spread: float = 0.002  # standard deviation of an odd lot's price off the market, relative
    average_price_probability: float = 0.003
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
    means = dict(prices)  # running mean of each symbol's prices (for average-price prints)
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
        market = prices[symbol] = max(prices[symbol] * math.exp(shock), 0.01)
        means[symbol] += _AVERAGE_WEIGHT * (market - means[symbol])
        conditions: tuple[str, ...] | None
        draw = rng.random()
        if draw < config.zero_volume_probability:
            volume, conditions = 0, None
        elif draw < config.zero_volume_probability + config.odd_lot_probability:
            volume, conditions = rng.randint(1, 99), ODD_LOT
            market *= 1 + rng.gauss(0, config.odd_lot_spread)
        elif rng.random() < config.average_price_probability:
            volume, conditions = 100 * rng.randint(10, 100), AVERAGE_PRICE
            market = means[symbol]
        else:
            lots = 1 + int(rng.expovariate(0.7))
            volume, conditions = 100 * lots, REGULAR
        price = Decimal(str(market)).quantize(_CENT)
        if price <= 0:
            price = _CENT
        yield Trade(
            symbol=symbol,
            price=price,
            volume=volume,
            ts=config.start_ts + int(t * 1000),
            conditions=conditions,
            source=SOURCE,
        )

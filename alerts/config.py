"""The alert rules file: YAML with defaults, per-symbol overrides and notifiers, validated at start.

Layout (see `alerts/rules.yaml` for the shipped defaults)::

    defaults:                 # every rule section, for every symbol
      price_move: {pct: 2.0, window_seconds: 60, cooldown_seconds: 300, severity: warning}
      ...
    symbols:                  # optional per-symbol overrides, merged key by key over `defaults`
      TSLA:
        price_move: {pct: 4.0}
    notifiers:                # optional; secrets come from the environment, never from this file
      - {type: slack, url_env: SLACK_WEBHOOK_URL, min_severity: warning}

Every problem is reported as `RulesError` naming the file, the key path and the offending value.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from alerts.errors import RulesError
from tickhouse.config import SYMBOL_PATTERN
from tickhouse.schemas import SEVERITIES

__all__ = ["DEFAULT_RULES_PATH", "NotifierConfig", "RulesConfig", "RulesError", "load_rules", "parse_rules"]

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "rules.yaml"


@dataclass(frozen=True, slots=True)
class PriceMoveConfig:
    """Fires `price_move_up` / `price_move_down` when the price moved >= pct % from the lowest /
    highest price of the last `window_seconds` (event time)."""

    enabled: bool = True
    pct: float = 2.0
    window_seconds: float = 60.0
    cooldown_seconds: float = 300.0
    severity: str = "warning"


@dataclass(frozen=True, slots=True)
class VolumeSpikeConfig:
    """Fires `volume_spike` when the current minute's volume >= factor x the average volume of the
    `minutes` complete minutes before it (empty minutes count as 0)."""

    enabled: bool = True
    factor: float = 3.0
    minutes: int = 10
    min_volume: float = 0.0  # the current minute must also reach this absolute volume
    cooldown_seconds: float = 300.0
    severity: str = "info"


@dataclass(frozen=True, slots=True)
class RsiConfig:
    """Fires `rsi_overbought` / `rsi_oversold` when RSI(period) over 1-minute closes crosses
    `overbought` upwards / `oversold` downwards (TA-Lib's RSI)."""

    enabled: bool = True
    period: int = 14
    overbought: float = 70.0
    oversold: float = 30.0
    cooldown_seconds: float = 600.0
    severity: str = "info"


@dataclass(frozen=True, slots=True)
class SessionExtremesConfig:
    """Fires `session_high` / `session_low` on a new high / low of the trading session (a calendar
    day in `timezone`), once the session has `min_trades` earlier trades."""

    enabled: bool = True
    timezone: str = "America/New_York"
    min_trades: int = 1
    cooldown_seconds: float = 300.0
    severity: str = "info"


@dataclass(frozen=True, slots=True)
class StaleFeedConfig:
    """Fires `stale_feed` for a symbol without a trade for `seconds` while other symbols trade."""

    enabled: bool = True
    seconds: float = 120.0
    cooldown_seconds: float = 600.0
    severity: str = "warning"


@dataclass(frozen=True, slots=True)
class SuspiciousTickConfig:
    """Fires `suspicious_tick` when the price is >= band_pct % away from the median of the last
    `samples` prices (needs `min_samples` of them). With `exclude_from_state` the flagged trade is
    kept out of the other price rules (it is likely a bad print)."""

    enabled: bool = True
    band_pct: float = 10.0
    samples: int = 21
    min_samples: int = 5
    exclude_from_state: bool = True
    cooldown_seconds: float = 60.0
    severity: str = "warning"


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The effective rule configuration of one symbol."""

    price_move: PriceMoveConfig = field(default_factory=PriceMoveConfig)
    volume_spike: VolumeSpikeConfig = field(default_factory=VolumeSpikeConfig)
    rsi: RsiConfig = field(default_factory=RsiConfig)
    session_extremes: SessionExtremesConfig = field(default_factory=SessionExtremesConfig)
    stale_feed: StaleFeedConfig = field(default_factory=StaleFeedConfig)
    suspicious_tick: SuspiciousTickConfig = field(default_factory=SuspiciousTickConfig)


NOTIFIER_TYPES = ("slack", "webhook", "email")
DEFAULT_URL_ENV = {"slack": "SLACK_WEBHOOK_URL", "webhook": "ALERTS_WEBHOOK_URL"}


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """One notifier; secrets (URLs, SMTP password) are read from the named environment variables.

    Each notifier reads the alerts topic as its own consumer group; an alert it cannot deliver in
    `max_attempts` tries (backoff from `backoff_seconds`, doubling up to 60 s) goes to the dead-letter
    topic."""

    type: str
    name: str
    min_severity: str = "info"
    url_env: str = ""
    timeout_seconds: float = 5.0
    max_attempts: int = 5
    backoff_seconds: float = 0.5
    smtp_host_env: str = "SMTP_HOST"
    smtp_port_env: str = "SMTP_PORT"
    smtp_user_env: str = "SMTP_USER"
    smtp_password_env: str = "SMTP_PASSWORD"
    smtp_starttls: bool = True
    smtp_ca_file_env: str = "SMTP_CA_FILE"  # PEM CAs to trust instead of the system's
    email_from_env: str = "ALERTS_EMAIL_FROM"
    email_to_env: str = "ALERTS_EMAIL_TO"


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """The whole validated rules file."""

    defaults: SymbolRules
    overrides: Mapping[str, SymbolRules]
    notifiers: tuple[NotifierConfig, ...] = ()
    source: str = "<defaults>"

    def for_symbol(self, symbol: str) -> SymbolRules:
        return self.overrides.get(symbol, self.defaults)


_SECTIONS: dict[str, type] = {
    "price_move": PriceMoveConfig,
    "volume_spike": VolumeSpikeConfig,
    "rsi": RsiConfig,
    "session_extremes": SessionExtremesConfig,
    "stale_feed": StaleFeedConfig,
    "suspicious_tick": SuspiciousTickConfig,
}

# (minimum, minimum inclusive?) per numeric key; everything else numeric must be finite and >= 0
_POSITIVE = {
    "pct",
    "window_seconds",
    "factor",
    "seconds",
    "band_pct",
    "timeout_seconds",
}
_INT_MIN = {
    "minutes": 1,
    "period": 2,
    "min_trades": 0,
    "samples": 1,
    "min_samples": 1,
    "max_attempts": 1,
}


def _fail(source: str, path: str, message: str, value: object) -> RulesError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RulesError(f"{source}: {path}: {message}, got {shown}")


def _check_value(source: str, path: str, key: str, value: object, default: object) -> object:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _fail(source, path, "must be true or false", value)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, path, "must be a whole number", value)
        minimum = _INT_MIN.get(key, 0)
        if value < minimum:
            raise _fail(source, path, f"must be >= {minimum}", value)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, path, "must be a number", value)
        number = float(value)
        if not math.isfinite(number):
            raise _fail(source, path, "must be a finite number", value)
        if key in _POSITIVE and number <= 0:
            raise _fail(source, path, "must be > 0", value)
        if number < 0:
            raise _fail(source, path, "must be >= 0", value)
        return number
    if not isinstance(value, str) or not value:
        raise _fail(source, path, "must be a non-empty string", value)
    if key in {"severity", "min_severity"} and value not in SEVERITIES:
        raise _fail(source, path, f"must be one of {', '.join(SEVERITIES)}", value)
    if key == "timezone":
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _fail(source, path, "is not a known IANA time zone", value) from None
    return value


def _merge(source: str, path: str, base: Any, raw: object) -> Any:
    """Overlay the mapping `raw` on the dataclass instance `base`, validating every key."""
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise _fail(source, path, "must be a mapping of settings", raw)
    known = {f.name: getattr(base, f.name) for f in fields(base)}
    changes: dict[str, object] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}"
        if key not in known:
            raise _fail(source, key_path, f"unknown setting; expected one of {', '.join(known)}", value)
        changes[key] = _check_value(source, key_path, str(key), value, known[key])
    return replace(base, **changes)


def _check_section(source: str, path: str, section: Any) -> None:
    if isinstance(section, RsiConfig) and not 0 < section.oversold < section.overbought < 100:
        raise _fail(
            source,
            f"{path}.rsi",
            "needs 0 < oversold < overbought < 100",
            {"oversold": section.oversold, "overbought": section.overbought},
        )
    if isinstance(section, SuspiciousTickConfig) and section.min_samples > section.samples:
        raise _fail(
            source,
            f"{path}.suspicious_tick.min_samples",
            f"must be <= samples ({section.samples})",
            section.min_samples,
        )


def _symbol_rules(source: str, path: str, base: SymbolRules, raw: object) -> SymbolRules:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise _fail(source, path, "must be a mapping of rule sections", raw)
    changes: dict[str, object] = {}
    for name, section_raw in raw.items():
        if name not in _SECTIONS:
            raise _fail(
                source,
                f"{path}.{name}",
                f"unknown rule; expected one of {', '.join(_SECTIONS)}",
                section_raw,
            )
        changes[name] = _merge(source, f"{path}.{name}", getattr(base, name), section_raw)
    merged = replace(base, **changes)  # type: ignore[arg-type]
    for name in _SECTIONS:
        _check_section(source, path, getattr(merged, name))
    return merged


def _notifiers(source: str, raw: object) -> tuple[NotifierConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(source, "notifiers", "must be a list", raw)
    out: list[NotifierConfig] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        path = f"notifiers[{index}]"
        if not isinstance(item, Mapping):
            raise _fail(source, path, "must be a mapping", item)
        kind = item.get("type")
        if kind not in NOTIFIER_TYPES:
            raise _fail(source, f"{path}.type", f"must be one of {', '.join(NOTIFIER_TYPES)}", kind)
        name = item.get("name", kind)
        if not isinstance(name, str) or not name:
            raise _fail(source, f"{path}.name", "must be a non-empty string", name)
        if name in names:
            raise _fail(source, f"{path}.name", "is used by another notifier", name)
        names.add(name)
        base = NotifierConfig(
            type=kind,
            name=name,
            url_env=DEFAULT_URL_ENV.get(kind, ""),
        )
        rest = {k: v for k, v in item.items() if k not in {"type", "name"}}
        if kind == "email" and "url_env" in rest:
            raise _fail(source, f"{path}.url_env", "does not apply to email notifiers", rest["url_env"])
        out.append(_merge(source, path, base, rest))
    return tuple(out)


def parse_rules(raw: object, source: str = "<rules>") -> RulesConfig:
    """Validate an already-loaded YAML document; raises RulesError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _fail(source, "<top level>", "must be a mapping with defaults/symbols/notifiers", raw)
    for key in raw:
        if key not in {"defaults", "symbols", "notifiers"}:
            raise _fail(
                source,
                str(key),
                "unknown top-level key; expected defaults, symbols, notifiers",
                raw[key],
            )
    defaults = _symbol_rules(source, "defaults", SymbolRules(), raw.get("defaults"))
    symbols_raw = raw.get("symbols") or {}
    if not isinstance(symbols_raw, Mapping):
        raise _fail(source, "symbols", "must be a mapping of symbol -> rule sections", symbols_raw)
    overrides: dict[str, SymbolRules] = {}
    for symbol, section in symbols_raw.items():
        if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
            raise _fail(
                source,
                f"symbols.{symbol}",
                "is not a valid symbol (1-32 chars of A-Z a-z 0-9 . : - _ / ^ =)",
                symbol,
            )
        overrides[symbol] = _symbol_rules(source, f"symbols.{symbol}", defaults, section)
    return RulesConfig(
        defaults=defaults,
        overrides=overrides,
        notifiers=_notifiers(source, raw.get("notifiers")),
        source=source,
    )


def load_rules(path: Path | str | None = None) -> RulesConfig:
    """Read and validate a rules file (default: the bundled `alerts/rules.yaml`)."""
    file = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise RulesError(f"{file}: cannot read the rules file: {err.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RulesError(f"{file}: not valid YAML: {err}") from None
    return parse_rules(raw, str(file))

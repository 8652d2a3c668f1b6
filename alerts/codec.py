"""Rule state <-> JSON-able data, generically from the dataclass fields and their type hints.

Every rule state is a dataclass; the fields that are configuration or derived from it are marked
`field(metadata=TRANSIENT)` and are neither written nor read. Nested states (RSI inside the RSI
crossing, every rule inside a symbol) are loaded in place, so their configuration stays the one of
the running rules file; a state that was written while a rule was off, or that a rule now off does
not need, is skipped. A state class may define `_after_load()` to rebuild what it derives.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

TRANSIENT: Mapping[str, bool] = types.MappingProxyType({"checkpoint": False})


_FIELDS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _state_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, type hint) of the checkpointed fields of a state dataclass."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = tuple(
            (f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("checkpoint", True)
        )
    return found


_PLAIN = (bool, int, float, str, type(None))
_DUMPERS: dict[type, tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {}


def _is_plain(hint: Any) -> bool:
    """JSON-able as it is: scalars, optional scalars, tuples of scalars (JSON arrays)."""
    if hint in _PLAIN:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType, tuple):
        return all(_is_plain(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return False


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    """How a field of type `hint` becomes JSON-able; None when it already is. Decided once per
    class, so dumping a state does no type dispatch per value."""
    if _is_plain(hint):
        return None
    if dataclasses.is_dataclass(hint):
        return dump
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        convert = _converter(inner)
        if convert is None:
            return None
        return lambda value: None if value is None else convert(value)
    if origin in (deque, list) and _is_plain(args[0]):
        return list
    if origin in (deque, list):
        item = _converter(args[0])
        assert item is not None
        return lambda value: [item(v) for v in value]
    if origin is dict and _is_plain(args[1]):
        return dict
    raise TypeError(f"cannot checkpoint a field of type {hint!r}")


def dump(state: Any) -> dict[str, Any]:
    """The checkpointed fields of a state dataclass as JSON-able data."""
    cls = type(state)
    dumpers = _DUMPERS.get(cls)
    if dumpers is None:
        dumpers = _DUMPERS[cls] = tuple((name, _converter(hint)) for name, hint in _state_fields(cls))
    out: dict[str, Any] = {}
    for name, convert in dumpers:
        value = getattr(state, name)
        out[name] = value if convert is None else convert(value)
    return out


def load(state: Any, data: Mapping[str, Any]) -> None:
    """Fill the checkpointed fields of `state` from `data` (as `dump` wrote it), in place."""
    for name, hint in _state_fields(type(state)):
        if name in data:
            setattr(state, name, _load_value(hint, data[name], getattr(state, name)))
    after = getattr(state, "_after_load", None)
    if after is not None:
        after()


def _load_value(hint: Any, raw: Any, current: Any) -> Any:
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        if isinstance(raw, Mapping):
            load(current, raw)
        return current  # a rule on now but not in the checkpoint keeps its fresh state
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None:
            return None if type(None) in args else current
        (inner,) = [a for a in args if a is not type(None)]
        if dataclasses.is_dataclass(inner):
            return current  # a rule off now: its old state is not wanted
        return _load_value(inner, raw, current)
    if hint is bool:
        return bool(raw)
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is str:
        return str(raw)
    if origin is deque:
        (item,) = args
        maxlen = current.maxlen if isinstance(current, deque) else None
        return deque((_load_value(item, v, None) for v in raw), maxlen=maxlen)
    if origin is list:
        (item,) = args
        return [_load_value(item, v, None) for v in raw]
    if origin is tuple:
        return tuple(_load_value(a, v, None) for a, v in zip(args, raw, strict=True))
    if origin is dict:
        key, value = args
        return {_load_value(key, k, None): _load_value(value, v, None) for k, v in raw.items()}
    raise TypeError(f"cannot restore a field of type {hint!r}")

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
from collections.abc import Mapping
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


def dump(state: Any) -> dict[str, Any]:
    """The checkpointed fields of a state dataclass as JSON-able data."""
    return {name: _dump_value(getattr(state, name)) for name, _ in _state_fields(type(state))}


def _dump_value(value: Any) -> Any:
    if value is None or type(value) in (bool, int, float, str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dump(value)
    if isinstance(value, deque | list | tuple):
        return [_dump_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump_value(v) for k, v in value.items()}
    raise TypeError(f"cannot checkpoint a {type(value).__name__}: {value!r:.60}")


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

"""Frozen dataclass configs: built from defaults, a YAML recipe and CLI overrides, in that order.

Every config class is a ``@dataclass(frozen=True)`` whose defaults sit beside the code they configure.
Nested configs are dataclass fields. Unknown keys raise ``ConfigError`` with close matches; values are
type-checked against the annotations. The resolved config is saved into every checkpoint and record
(``to_dict``), and ``from_dict(to_dict(cfg)) == cfg``.

    cfg = load_config(PretrainConfig, "recipes/paper.yaml", ["optim.lr=3e-4", "steps=100"])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from core.errors import CpcbenchError

C = TypeVar("C")


class ConfigError(CpcbenchError, ValueError):
    """A config key or value that does not fit the config class."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, known: Iterable[str], where: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {where + key!r}.{hint} Known keys: {', '.join(known)}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to annotation ``tp`` (dataclass, Optional, tuple, list, Literal, scalars)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, _prefix=where + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key {where!r}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key {where!r} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) and "," in value:
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {where!r} must be a list, got {value!r}")
        args = typing.get_args(tp)
        elem = args[0] if args else Any
        items = [_coerce(v, elem, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where!r} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {where!r} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key {where!r} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key {where!r} must be a string, got {value!r}")
    return value


def from_dict(cls: type[C], data: Mapping[str, Any], _prefix: str = "") -> C:
    """Build ``cls`` from a mapping; unknown keys raise, missing keys take the defaults."""
    types_ = _field_types(cls)
    for key in data:
        if key not in types_:
            raise _unknown(key, types_, _prefix)
    kwargs = {k: _coerce(v, types_[k], _prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without default
        raise ConfigError(f"{cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003); the value is read as YAML (numbers, bools, lists)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def with_overrides(cfg: C, overrides: Iterable[str] | Mapping[str, Any]) -> C:
    """A copy of ``cfg`` with dotted-key overrides applied (``["steps=10", "optim.lr=1e-3"]`` or a dict)."""
    data = to_dict(cfg)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        path = key.split(".") if isinstance(key, str) else key
        node = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                sections = [k for k, v in node.items() if isinstance(v, dict)]
                raise _unknown(part, sections, "".join(p + "." for p in path[:i]))
            node = node[part]
        if path[-1] not in node:
            raise _unknown(path[-1], node, "".join(p + "." for p in path[:-1]))
        node[path[-1]] = value
    return from_dict(type(cfg), data)


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """Defaults of ``cls``, then the YAML recipe at ``path``, then ``key=value`` overrides."""
    cfg = from_dict(cls, load_yaml(path)) if path else cls()
    return with_overrides(cfg, list(overrides))


def save_yaml(cfg: Any, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

"""Typed configs: a dataclass per stage, loaded from ``configs/<stage>/<preset>.yaml`` plus ``key=value`` overrides.

Unknown keys and values of the wrong type fail with the file (or the override) and the key named. Nested dataclasses
are YAML mappings, and dotted overrides reach into them (``model.dim=64``). Override values are parsed as YAML
(``lr=3e-4``, ``strides=[8,16]``, ``bf16=true``).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config dataclass."""


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` converted to ``tp`` where that is lossless (int -> float, list -> tuple), else ``ConfigError``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in args):
            # YAML 1.1 reads a bare ``no`` / ``yes`` (``mixed_precision: no``) as a boolean: take the word back
            word = "yes" if value else "no"
            value = word if word in args else value
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))) if args else tuple(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        if not args:
            return dict(value)
        return {_check(k, args[0], f"{where} key"): _check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data`` strictly: unknown keys and wrong types raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(data) - names):
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(names)}")
    return cls(**{k: _check(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "model.dim=64"]`` -> ``{"a": 1, "model": {"dim": 64}}`` (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: cannot parse the value ({err})") from err
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """The dataclass ``cls`` from a YAML file (optional) with ``key=value`` overrides applied on top."""
    data: dict[str, Any] = {}
    where = "config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file is a mapping of keys to values")
        data = loaded or {}
    if overrides:
        data = _merge(data, parse_overrides(overrides))
        where = f"{where} with overrides"
    return from_dict(cls, data, where)


def expand_path(path: str) -> str:
    """``~`` and ``${VAR}`` expanded (paths in configs name ``${MEDGLIP_DATA}``); an unset variable is an error
    naming the path."""
    import os

    expanded = os.path.expandvars(os.path.expanduser(path))
    if "$" in expanded:
        raise ValueError(f"{path}: an environment variable in the path is not set (e.g. MEDGLIP_DATA)")
    return expanded


def parse_with_overrides(parser: Any, argv: Sequence[str] | None, flags: dict[str, str]) -> tuple[Any, list[str]]:
    """Parse ``argv`` with ``parser``; the rest must be ``key=value`` overrides. ``flags`` maps an argument's
    attribute to the config key it sets (``{"grounding": "model.injection"}``); set flags come before the other
    overrides, so an explicit ``key=value`` wins. Returns (args, overrides)."""
    import json

    args, rest = parser.parse_known_args(argv)
    if bad := [r for r in rest if "=" not in r or r.startswith("-")]:
        parser.error(f"unrecognised arguments: {' '.join(bad)} (overrides are key=value)")
    set_flags = [f"{key}={json.dumps(getattr(args, attr))}" for attr, key in flags.items()
                 if getattr(args, attr) is not None]
    return args, set_flags + rest

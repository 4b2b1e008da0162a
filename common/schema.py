"""Typed, validated construction of dataclasses from plain YAML mappings.

Every error names the full key path (``train.lr``) and what was expected, so a typo in
``params.yaml``, an experiment overlay or a ``--set`` override is caught before any work
starts. Ranges and choices live in field metadata: ``field(metadata={"ge": 0})``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """``repr(value)`` cut to SHOWN_CHARS: a message names a value, it never embeds a huge one."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        key, value = get_args(tp)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against the type hint ``tp`` (YAML ints become floats where a float is expected)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {shown(value)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{path}: expected one of {_type_name(tp)}, got {shown(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping ({tp.__name__}), got {shown(value)}")
        return build(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {shown(value)}")
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {shown(value)}")
        key_tp, value_tp = get_args(tp)
        return {
            convert(k, key_tp, f"{path}.{k}"): convert(v, value_tp, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected bool (true/false), got {shown(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected int, got {shown(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path}: expected float, got {shown(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected str, got {shown(value)}")
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # a programming error in a schema


def check_range(value: Any, meta: typing.Mapping[str, Any], path: str, nan_ok: bool = False) -> None:
    """Field metadata ``ge`` / ``gt`` / ``le`` / ``lt`` (None passes; NaN passes with ``nan_ok``:
    the methods' loss weights, where a NaN is left to the trainer's NaN-loss guard)."""
    if value is None or (nan_ok and value != value):
        return
    for key, test, words in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ):
        if key in meta and not test(value, meta[key]):
            raise ConfigError(f"{path}: expected a value {words} {meta[key]}, got {shown(value)}")


def build(cls: type, data: dict[str, Any] | None, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types, bad ranges raise."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]!s}; allowed keys under {path or '<root>'}: "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = convert(data[name], hints[name], key_path)
            check_range(kwargs[name], f.metadata, key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {key_path} ({_type_name(hints[name])})")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(path)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data form of a (nested) dataclass, for YAML/JSON dumps and MLflow params."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their string form."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = data
    return out

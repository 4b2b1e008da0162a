"""One registry of methods: ``build_model(name, num_classes, ...)`` and loss-config resolution.

A method registers a builder with ``@register_method(name, loss=LossSchema(...))``; the builder is
called as ``builder(num_classes, backbone=, weights=, last_stride=, loss=<resolved config>, **kw)``.

Loss mappings may be flat (``triplet_weight: 2``) or nested by term
(``triplet: {enabled: true, weight: 2, margin: 1.3}``): ``<term>.enabled`` -> field ``<term>``,
``<term>.<x>`` -> field ``<term>_<x>``, and ``<term>: true/false`` is ``<term>.enabled``.
Errors name the key path; they are ``vireid.harness.schema.ConfigError`` when the harness is
importable (a ``ValueError`` either way).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_args, get_origin

PROFILES = ("code", "paper")


@dataclass(frozen=True)
class LossSchema:
    """How a method turns (profile, user mapping) into its loss-config dataclass."""

    cls: type
    terms: tuple[str, ...]
    defaults: Callable[[str], dict[str, Any]]
    forced: dict[str, Any] = dataclasses.field(default_factory=dict)
    forced_reason: str = ""

    def resolve(self, loss: dict[str, Any] | None, profile: str = "code", path: str = "loss") -> Any:
        check_profile(profile)
        return build_loss_config(self.cls, loss, self.defaults(profile), self.terms, path, self.forced,
                                 self.forced_reason)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    builder: Callable[..., Any]
    loss: LossSchema


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, loss: LossSchema) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `builder` under `name` (with its loss schema)."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = MethodSpec(name, builder, loss)
        return builder

    return decorate


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(list_methods())}")
    return _REGISTRY[name]


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known profiles: {', '.join(PROFILES)}")


def resolve_loss_config(name: str, loss: Any = None, profile: str = "code", path: str = "loss") -> Any:
    """The method's loss-config dataclass for `profile` with `loss` overlaid."""
    return get_method(name).loss.resolve(loss, profile, path)


def validate_loss_config(method: str, loss: Any, path: str = "loss", profile: str = "code") -> None:
    """Raise (naming the key path) if `loss` is not a valid loss mapping for `method`."""
    resolve_loss_config(method, loss, profile, path)


def build_model(name: str, num_classes: int, backbone: str = "resnet50", weights: str = "none", last_stride: int = 1,
                loss: Any = None, profile: str = "code", **kw: Any):
    """Build method `name` (see `list_methods()`).

    num_classes: training identities; backbone: tiny | resnet18 | resnet34 | resnet50;
    weights: 'none' | 'imagenet' (torch hub cache) | path of a state dict (never downloads);
    last_stride: 1 (drop layer4's stride) or 2; loss: mapping (flat or nested by term) overlaid
    on the `profile` ('code' | 'paper') defaults;
    **kw: method-specific options (IDKL: discriminator_dropout; AGW: non_local, non_local_inner).
    """
    spec = get_method(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    config = resolve_loss_config(name, loss, profile)
    return spec.builder(num_classes, backbone=backbone, weights=weights, last_stride=last_stride, loss=config, **kw)


# --- typed loss mappings ------------------------------------------------------------------------
def config_error(message: str) -> ValueError:
    try:
        from vireid.harness.schema import ConfigError
    except ImportError:  # methods/ used without the harness
        return ValueError(message)
    return ConfigError(message)


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise config_error(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType) and type(None) in get_args(tp):
        if value is None:
            return None
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return _convert(value, inner, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise config_error(f"{path}: expected bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise config_error(f"{path}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise config_error(f"{path}: expected float, got {value!r}")
    raise TypeError(f"unsupported loss-config field type {tp!r}")  # a programming error


def flatten_loss_mapping(loss: dict[str, Any] | None, terms: tuple[str, ...], path: str) -> list[tuple[str, Any, str]]:
    """A flat or term-nested mapping as [(field name, value, key path)]."""
    if loss is None:
        return []
    if not isinstance(loss, dict):
        raise config_error(f"{path}: expected a mapping, got {loss!r}")
    out = []
    for key, value in loss.items():
        if isinstance(value, dict):
            if key not in terms:
                raise config_error(f"{path}.{key}: not a loss term (terms: {', '.join(terms)})")
            for sub, sub_value in value.items():
                out.append((key if sub == "enabled" else f"{key}_{sub}", sub_value, f"{path}.{key}.{sub}"))
        else:
            out.append((key, value, f"{path}.{key}"))
    return out


def build_loss_config(cls: type, loss: dict[str, Any] | None, defaults: dict[str, Any], terms: tuple[str, ...],
                      path: str = "loss", forced: dict[str, Any] | None = None, forced_reason: str = "") -> Any:
    """Dataclass `cls` from `defaults` overlaid with `loss`; `forced` values may not be contradicted.

    `cls` defines ``check(path)``, which raises for combinations no single field can catch."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = dict(defaults)
    for name, value, key_path in flatten_loss_mapping(loss, terms, path):
        if name not in fields:
            parts = key_path.split(".")
            if len(parts) >= 2 and parts[-2] in terms:
                term = parts[-2]
                allowed = ["enabled"] + [f[len(term) + 1:] for f in fields if f.startswith(term + "_")]
                raise config_error(f"unknown key {key_path}; allowed keys under {'.'.join(parts[:-1])}: "
                                   + ", ".join(allowed))
            raise config_error(f"unknown key {key_path}; allowed keys under {path}: {', '.join(fields)}")
        converted = _convert(value, hints[name], key_path)
        minimum = fields[name].metadata.get("ge")
        if minimum is not None and converted is not None and converted < minimum:  # NaN passes, fails loudly later
            raise config_error(f"{key_path}: expected a value >= {minimum}, got {value!r}")
        if forced and name in forced and converted != forced[name]:
            raise config_error(f"{key_path}: {forced_reason or 'fixed by this method'} (must be {forced[name]!r})")
        values[name] = converted
    values.update(forced or {})
    config = cls(**values)
    config.check(path)
    return config

"""One registry of methods: ``build_model(name, num_classes, ...)``, loss-config and option resolution,
and the optimiser's parameter groups.

A method registers a builder with ``@register_method(name, loss=LossSchema(...), options=<dataclass>)``;
the builder is called as ``builder(num_classes, backbone=, weights=, last_stride=, loss=<resolved
config>, **<resolved options>)``. Options are the method's own model settings (``model.options`` in
params.yaml), typed by its options dataclass. A model may define ``param_groups(lr)`` (a list of
``{"name", "params", "lr"}``) when its code trains parts at different rates; `param_groups` falls
back to one group, so the harness never needs to know the method by name.

Loss mappings may be flat (``triplet_weight: 2``) or nested by term
(``triplet: {enabled: true, weight: 2, margin: 1.3}``): ``<term>.enabled`` -> field ``<term>``,
``<term>.<x>`` -> field ``<term>_<x>``, and ``<term>: true/false`` is ``<term>.enabled``.
Errors name the key path; they are :class:`vireid.common.schema.ConfigError` (a ``ValueError``),
from the same typed converter that reads params.yaml. Methods live in one
:class:`~vireid.common.registry.Registry`; a plugin registers one the way idkl.py and agw.py do.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

from vireid.common.registry import Registry
from vireid.common.schema import ConfigError, check_range, convert


@dataclass(frozen=True)
class LossSchema:
    """How a method turns a user mapping into its loss-config dataclass (defaults: the method's code)."""

    cls: type
    terms: tuple[str, ...]
    defaults: Callable[[], dict[str, Any]]
    forced: dict[str, Any] = dataclasses.field(default_factory=dict)
    forced_reason: str = ""

    def resolve(self, loss: dict[str, Any] | None, path: str = "loss") -> Any:
        return build_loss_config(self.cls, loss, self.defaults(), self.terms, path, self.forced,
                                 self.forced_reason)

    def mapping(self, config: Any) -> dict[str, Any]:
        """A resolved loss config as the term-nested mapping params.yaml uses (``{term: {enabled, ...}}``;
        fields outside every term stay flat): the inverse of `resolve`, for complete run records."""
        out: dict[str, Any] = {}
        for name, value in dataclasses.asdict(config).items():
            term = max((t for t in self.terms if name == t or name.startswith(t + "_")), key=len, default=None)
            if term is None:
                out[name] = value
            else:
                out.setdefault(term, {})["enabled" if name == term else name[len(term) + 1:]] = value
        return out


@dataclass(frozen=True)
class NoOptions:
    """Options of a method that has none."""

    def check(self, path: str = "model.options") -> None:
        return None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    builder: Callable[..., Any]
    loss: LossSchema
    options: type = NoOptions


METHODS: Registry[MethodSpec] = Registry(
    "method", builtins=("vireid.methods.idkl", "vireid.methods.agw"), error=ConfigError,
    register_hint="a plugin adds one with vireid.methods.register_method")


def register_method(name: str, loss: LossSchema,
                    options: type = NoOptions) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering `builder` under `name` (with its loss schema and options dataclass)."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        METHODS.register(name, MethodSpec(name, builder, loss, options), same=lambda old, new: old.builder is builder)
        return builder

    return decorate


def list_methods() -> list[str]:
    return sorted(METHODS.names())


def get_method(name: str) -> MethodSpec:
    return METHODS.get(name)


def resolve_loss_config(name: str, loss: Any = None, path: str = "loss") -> Any:
    """The method's loss-config dataclass: its defaults (the method's code) with `loss` overlaid."""
    return get_method(name).loss.resolve(loss, path)


def validate_loss_config(method: str, loss: Any, path: str = "loss") -> None:
    """Raise (naming the key path) if `loss` is not a valid loss mapping for `method`."""
    resolve_loss_config(method, loss, path)


def resolved_loss_mapping(name: str, loss: Any = None, path: str = "loss") -> dict[str, Any]:
    """Every loss setting of method `name` (its defaults with `loss` overlaid), term-nested: what a
    run records, so its params say every weight it trained with, whichever method it is."""
    schema = get_method(name).loss
    return schema.mapping(schema.resolve(loss, path))


def resolve_options(name: str, options: dict[str, Any] | None = None, path: str = "model.options") -> Any:
    """The method's options dataclass: its defaults with `options` overlaid (errors name the key)."""
    cls = get_method(name).options
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected a mapping, got {options!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in options.items():
        key_path = f"{path}.{key}"
        if key not in fields:
            allowed = ", ".join(fields) or f"none (method {name!r} has no options)"
            raise ConfigError(f"unknown key {key_path}; allowed keys under {path}: {allowed}")
        converted = convert(value, hints[key], key_path)
        check_range(converted, fields[key].metadata, key_path, nan_ok=True)
        values[key] = converted
    resolved = cls(**values)
    resolved.check(path)
    return resolved


def build_model(name: str, num_classes: int, backbone: str = "resnet50", weights: str = "none", last_stride: int = 1,
                loss: Any = None, options: dict[str, Any] | None = None, **kw: Any):
    """Build method `name` (see `list_methods()`).

    num_classes: training identities; backbone: tiny | resnet18 | resnet34 | resnet50;
    weights: 'none' | 'imagenet' (torch hub cache) | path of a state dict (never downloads);
    last_stride: 1 (drop layer4's stride) or 2; loss: mapping (flat or nested by term) overlaid
    on the method's defaults; options: the method's options (``model.options``: IDKL
    discriminator_dropout; AGW non_local, non_local_width, backbone_lr_scale), validated;
    **kw: the same options as keyword arguments (they override `options`).
    """
    spec = get_method(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    config = resolve_loss_config(name, loss)
    resolved = dataclasses.asdict(resolve_options(name, {**(options or {}), **kw}))
    return spec.builder(num_classes, backbone=backbone, weights=weights, last_stride=last_stride, loss=config,
                        **resolved)


def param_groups(model: Any, lr: float) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: ``model.param_groups(lr)`` if the method defines it, else one
    group of every parameter at `lr`. Parameters that do not train (``requires_grad`` off) are left out."""
    groups = model.param_groups(lr) if hasattr(model, "param_groups") else [
        {"name": "all", "params": list(model.parameters()), "lr": lr}]
    out = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    seen = [id(p) for g in out for p in g["params"]]
    expected = {id(p) for p in model.parameters() if p.requires_grad}
    if len(seen) != len(set(seen)) or set(seen) != expected:  # a method's grouping that drops or repeats one is a bug
        raise RuntimeError(f"{type(model).__name__}.param_groups: every trainable parameter must be in exactly one "
                           "group")
    return [g for g in out if g["params"]]


# --- typed loss mappings ------------------------------------------------------------------------
def flatten_loss_mapping(loss: dict[str, Any] | None, terms: tuple[str, ...], path: str) -> list[tuple[str, Any, str]]:
    """A flat or term-nested mapping as [(field name, value, key path)]."""
    if loss is None:
        return []
    if not isinstance(loss, dict):
        raise ConfigError(f"{path}: expected a mapping, got {loss!r}")
    out = []
    for key, value in loss.items():
        if isinstance(value, dict):
            if key not in terms:
                raise ConfigError(f"{path}.{key}: not a loss term (terms: {', '.join(terms)})")
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
                raise ConfigError(f"unknown key {key_path}; allowed keys under {'.'.join(parts[:-1])}: "
                                   + ", ".join(allowed))
            raise ConfigError(f"unknown key {key_path}; allowed keys under {path}: {', '.join(fields)}")
        converted = convert(value, hints[name], key_path)
        check_range(converted, fields[name].metadata, key_path, nan_ok=True)
        if forced and name in forced and converted != forced[name]:
            raise ConfigError(f"{key_path}: {forced_reason or 'fixed by this method'} (must be {forced[name]!r})")
        values[name] = converted
    values.update(forced or {})
    config = cls(**values)
    config.check(path)
    return config

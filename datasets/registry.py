"""Datasets by name: ``get_adapter("sysu").read(root, split)`` -> :class:`~vireid.datasets.layout.Layout`.

Each dataset module declares its :class:`~vireid.datasets.spec.DatasetSpec` and registers it
with :func:`register_dataset`; a plugin (``VIREID_PLUGINS``, ``vireid --plugin``) registers
its own the same way (docs/ARCHITECTURE.md "Adding a dataset").
"""
from __future__ import annotations

from vireid.common.registry import Registry
from vireid.datasets.errors import DatasetError
from vireid.datasets.spec import DatasetSpec

__all__ = ["DATASETS", "register_dataset", "get_dataset", "get_adapter", "list_datasets"]

DATASETS: Registry[DatasetSpec] = Registry(
    "dataset", builtins=("vireid.datasets.sysu", "vireid.datasets.regdb", "vireid.datasets.llcm"),
    error=DatasetError, register_hint="a plugin adds one with vireid.datasets.registry.register_dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name`` (refused when another spec holds the name)."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register_dataset: expected a DatasetSpec, got {type(spec).__name__}")
    return DATASETS.register(spec.name, spec)


def get_dataset(name: str) -> DatasetSpec:
    return DATASETS.get(name)


get_adapter = get_dataset  # the name the adapters' callers know


def list_datasets() -> list[str]:
    return DATASETS.names()

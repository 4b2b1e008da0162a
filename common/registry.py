"""One registry mechanism for datasets, methods and protocols, and the plugins that add to them.

A :class:`Registry` maps names to entries. Its built-in entries live in modules it imports on
first use (``builtins``), so importing a package registers nothing and costs nothing. Code
outside the repository adds entries the same way the built-ins do (``register_dataset``,
``register_method``) from a *plugin*: a module named in the environment variable
``VIREID_PLUGINS`` (comma-separated module names or ``.py`` paths; ``vireid --plugin X``
appends to it, so child processes load the same plugins) or an entry point in the group
``vireid.plugins``. Every registry loads the plugins once, before its first lookup.

This module is the bottom layer: ``datasets/``, ``methods/`` and ``harness/`` all use it,
and it imports none of them.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "PluginError", "PLUGINS_ENV", "ENTRY_POINT_GROUP", "load_plugins", "add_plugins",
           "plugin_names"]

PLUGINS_ENV = "VIREID_PLUGINS"
ENTRY_POINT_GROUP = "vireid.plugins"

T = TypeVar("T")


class PluginError(ValueError):
    """A plugin named in VIREID_PLUGINS / --plugin cannot be imported, or registers a name twice."""


_loaded: set[str] = set()


def plugin_names() -> list[str]:
    """The plugins named in ``VIREID_PLUGINS`` (module names or ``.py`` paths), in order."""
    raw = os.environ.get(PLUGINS_ENV, "")
    return [part.strip() for part in raw.replace(os.pathsep, ",").split(",") if part.strip()]


def add_plugins(names: list[str]) -> None:
    """Append plugins to ``VIREID_PLUGINS`` (so subprocesses inherit them) and load them now."""
    current = plugin_names()
    os.environ[PLUGINS_ENV] = ",".join(current + [n for n in names if n not in current])
    load_plugins()


def _import_plugin(name: str) -> None:
    if name.endswith(".py"):
        path = Path(name).resolve()
        if not path.is_file():
            raise PluginError(f"{PLUGINS_ENV} / --plugin: {name}: file not found (expected a Python module)")
        module_name = f"vireid_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise PluginError(f"{PLUGINS_ENV} / --plugin: no module named {name!r} (expected an importable module "
                              "or a .py path)") from None
        raise


def load_plugins() -> None:
    """Import every plugin not imported yet: entry points of ``vireid.plugins``, then ``VIREID_PLUGINS``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry-point:{ep.value}"
        if key not in _loaded:
            _loaded.add(key)
            ep.load()
    for name in plugin_names():
        if name not in _loaded:
            _loaded.add(name)  # first: a plugin that looks a name up must not import itself again
            try:
                _import_plugin(name)
            except BaseException:
                _loaded.discard(name)
                raise


class Registry(Generic[T]):
    """Name -> entry, filled by ``register`` calls in the ``builtins`` modules and in plugins.

    ``error`` is the exception type of a failed lookup; its message lists what is registered and
    how to register more, so a typo in a parameter file is one readable line.
    """

    def __init__(self, kind: str, builtins: tuple[str, ...] = (), error: type[Exception] = ValueError,
                 register_hint: str = "") -> None:
        self.kind = kind
        self.builtins = builtins
        self.error = error
        self.register_hint = register_hint
        self._entries: dict[str, T] = {}
        self._ready = False
        self.version = 0  # bumped by every registration (derived tables rebuild on change)

    def _load(self) -> None:
        if self._ready:
            return
        self._ready = True
        for module in self.builtins:
            importlib.import_module(module)
        load_plugins()

    def register(self, name: str, entry: T, same: Callable[[T, T], bool] | None = None) -> T:
        """Add ``entry`` under ``name``; registering a different entry under a taken name is refused."""
        old = self._entries.get(name)
        if old is not None and old is not entry and not (same and same(old, entry)):
            raise PluginError(f"{self.kind} {name!r} is already registered; choose another name")
        self._entries[name] = entry
        self.version += 1
        return entry

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            hint = f" ({self.register_hint})" if self.register_hint else ""
            raise self.error(f"unknown {self.kind} {name!r}; registered {self.kind}s: {', '.join(self.names())}"
                             f"{hint}") from None

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        self._load()
        return iter(list(self._entries.values()))

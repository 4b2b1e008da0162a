"""The one YAML loader of the harness: safe tags only, no aliases, bounded nesting and size.

`yaml.safe_load` refuses arbitrary objects but still expands aliases: a 546-byte "billion
laughs" document (nine aliases of nine aliases ...) grows into gigabytes of lists. Real
parameter files need neither anchors nor aliases, so aliases are refused outright, as is
nesting deeper than `MAX_DEPTH` (Python would hit its recursion limit) and text longer than
`MAX_CHARS`. Every error names the source (a file, or `--set key`) and the line.

Numbers are read as users write them: YAML 1.1 reads `1e-3` (no dot) as a string, which
made the `--set train.lr=1e-3` of `--help` fail; here it is the float 0.001.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from vireid.harness.schema import ConfigError

__all__ = ["load", "read_text", "YAMLSyntaxError", "MAX_DEPTH", "MAX_CHARS"]

MAX_DEPTH = 64
MAX_CHARS = 4 << 20


class YAMLSyntaxError(ConfigError):
    """The text is not valid YAML at all (as opposed to valid YAML that is refused)."""


class _Refused(Exception):
    def __init__(self, mark, what: str):
        super().__init__(what)
        self.line = mark.line + 1 if mark is not None else None


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(event.start_mark, f"YAML aliases (*{event.anchor}) are not allowed")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(self.peek_event().start_mark, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Exponent without a dot (1e-3, 5E4): a float, as in YAML 1.2 and JSON.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def load(text: str, source: str) -> Any:
    """Parse ``text`` (from ``source``, for messages); ConfigError on anything refused."""
    if len(text) > MAX_CHARS:
        raise ConfigError(f"{source}: {len(text)} characters, more than the {MAX_CHARS} a parameter file may hold")
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ConfigError(f"{source}: {exc}{where}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise YAMLSyntaxError(f"{source}: not valid YAML ({first}{where})") from None
    finally:
        loader.dispose()


def read_text(path) -> str:
    """A YAML file's text; a file that is not UTF-8 is named."""
    from pathlib import Path

    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})") from None

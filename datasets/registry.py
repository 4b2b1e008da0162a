"""Dataset adapters by name: ``get_adapter("sysu").read(root, split)`` -> :class:`~vireid.datasets.layout.Layout`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vireid.datasets import llcm, regdb, sysu
from vireid.datasets.errors import DatasetError
from vireid.datasets.layout import Layout

__all__ = ["Adapter", "get_adapter", "list_datasets"]


@dataclass(frozen=True)
class Adapter:
    name: str
    label: str
    splits: tuple[int, ...]  # valid values of `split` (RegDB's trials; 1 elsewhere)
    reader: Callable[[Path, int], Layout]

    def read(self, root, split: int = 1) -> Layout:
        """Read and check the layout under ``root`` (no image decoding; see vireid.datasets.manifest)."""
        if split not in self.splits:
            raise DatasetError(f"{self.label} has splits {list(self.splits)}; got split {split}")
        return self.reader(Path(root), split)


_ADAPTERS = {
    "sysu": Adapter("sysu", "SYSU-MM01", (1,), sysu.read),
    "regdb": Adapter("regdb", "RegDB", regdb.SPLITS, regdb.read),
    "llcm": Adapter("llcm", "LLCM", llcm.SPLITS, llcm.read),
}


def list_datasets() -> list[str]:
    return list(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {list_datasets()}") from None

"""RegDB with its 10 official splits.

Layout: ``Visible/<person>/<file>.bmp`` and ``Thermal/<person>/<file>.bmp``; per trial
``N`` in 1..10 the index files ``idx/train_visible_N.txt``, ``idx/train_thermal_N.txt``,
``idx/test_visible_N.txt``, ``idx/test_thermal_N.txt`` with lines ``relative/path label``
(``Visible/<person>/<name>.bmp 0``; paths are relative to the root, as the public code joins
them: ``root + '/' + path``).

The public IDKL code reads the person from the image's folder (``int(path.split('/')[-2])``)
and the camera from the modality folder (visible = 2, thermal = 3); so do we. The pid is
thus the dataset's own person number, distinct between the training and the test half
even though both index files relabel their persons from 0 (the label column is checked to
be one label per person but not used as the id).
"""
from __future__ import annotations

from pathlib import Path

from vireid.datasets.layout import Layout, indexed_records, require_dir
from vireid.datasets.schema import INFRARED, VISIBLE

SPLITS = tuple(range(1, 11))
VISIBLE_CAM, THERMAL_CAM = 2, 3

__all__ = ["read", "index_files", "SPLITS", "VISIBLE_CAM", "THERMAL_CAM"]


def index_files(split: int) -> list[tuple[str, str, str, int, str]]:
    """(index file, image folder, modality, camera, split) of trial ``split``."""
    return [
        (f"idx/train_visible_{split}.txt", "Visible", VISIBLE, VISIBLE_CAM, "train"),
        (f"idx/train_thermal_{split}.txt", "Thermal", INFRARED, THERMAL_CAM, "train"),
        (f"idx/test_visible_{split}.txt", "Visible", VISIBLE, VISIBLE_CAM, "test"),
        (f"idx/test_thermal_{split}.txt", "Thermal", INFRARED, THERMAL_CAM, "test"),
    ]


def read(root, split: int = 1) -> Layout:
    root = Path(root)
    require_dir(root, "the RegDB root (Visible/, Thermal/, idx/)")
    for folder in ("Visible", "Thermal", "idx"):
        require_dir(root / folder, f"RegDB's {folder}/ folder")
    files = index_files(split)
    return Layout(indexed_records(root, files), [f[0] for f in files])

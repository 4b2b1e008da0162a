"""LLCM (low-light cross-modality).

Layout: ``vis/<person>/<file>.jpg`` and ``nir/<person>/<file>.jpg`` (file names such as
``0351_c06_s200656_f4830_nir.jpg`` carry the real camera, ``c06``); index files
``idx/train_vis.txt``, ``idx/train_nir.txt``, ``idx/test_vis.txt``, ``idx/test_nir.txt`` with
lines ``relative/path label``, paths relative to the root.

As the public IDKL code (data/dataset.py, LLCMData): the person is the image's folder and
the ``cam`` column codes the modality, visible = 2 and near-infrared = 3, not the real
camera in the file name (the protocol does not use it; it stays readable in ``path``).
"""
from __future__ import annotations

from pathlib import Path

from vireid.datasets.layout import Layout, indexed_records, require_dir
from vireid.datasets.schema import INFRARED, VISIBLE

SPLITS = (1,)
VISIBLE_CAM, NIR_CAM = 2, 3
INDEX_FILES = [
    ("idx/train_vis.txt", "vis", VISIBLE, VISIBLE_CAM, "train"),
    ("idx/train_nir.txt", "nir", INFRARED, NIR_CAM, "train"),
    ("idx/test_vis.txt", "vis", VISIBLE, VISIBLE_CAM, "test"),
    ("idx/test_nir.txt", "nir", INFRARED, NIR_CAM, "test"),
]

__all__ = ["read", "SPLITS", "INDEX_FILES", "VISIBLE_CAM", "NIR_CAM"]


def read(root, split: int = 1) -> Layout:
    root = Path(root)
    require_dir(root, "the LLCM root (vis/, nir/, idx/)")
    for folder in ("vis", "nir", "idx"):
        require_dir(root / folder, f"LLCM's {folder}/ folder")
    return Layout(indexed_records(root, INDEX_FILES), [f[0] for f in INDEX_FILES])

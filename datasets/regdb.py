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

from vireid.datasets import synth
from vireid.datasets.layout import Layout, indexed_records, require_dir
from vireid.datasets.registry import register_dataset
from vireid.datasets.schema import INFRARED, VISIBLE
from vireid.datasets.spec import AGW_CODE, Camera, DatasetSpec, ProtocolDef, SynthDefaults, cross_modal_protocols

SPLITS = tuple(range(1, 11))
VISIBLE_CAM, THERMAL_CAM = 2, 3  # the camera codes of the public code (one camera per modality)

__all__ = ["read", "index_files", "write_synthetic", "SPEC", "SPLITS", "VISIBLE_CAM", "THERMAL_CAM"]


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


def write_synthetic(root: Path, s: synth.SynthSettings) -> list[synth.Shoot]:
    """Visible/ and Thermal/<person>/*.bmp (both 3-channel, as the real BMPs) and the 10 splits' index files."""
    jobs = [synth.Shoot(cam, folder == "Thermal", [(pid, k, f"{folder}/{pid}/{letter}_{pid:04d}_{k + 1:02d}.bmp")
                                                   for pid in range(1, s.n_ids + 1) for k in range(s.images_per_cam)],
                        "bmp")
            for folder, cam, letter in (("Visible", VISIBLE_CAM, "v"), ("Thermal", THERMAL_CAM, "t"))]
    entries = {"Visible": [(rel, pid) for pid, _, rel in jobs[0].shots],
               "Thermal": [(rel, pid) for pid, _, rel in jobs[1].shots]}
    for trial in SPLITS:
        split = synth.split_ids(s, "regdb", trial)
        for rel, folder, _, _, part in index_files(trial):
            synth.write_text(root / rel, synth.index_lines(entries[folder], split[part]))
    return jobs


def _agw_protocol(direction: str, query: str, gallery: str) -> ProtocolDef:
    return ProtocolDef(name=f"regdb-agw/{direction}", direction=direction, query=query, gallery=gallery,
                       normalize=True, cmc="first_match",
                       follows=f"{AGW_CODE} eval_metrics.py eval_regdb, test.py --dataset regdb"
                               + (" --tvsearch" if direction == "i2v" else ""))


SPEC = register_dataset(DatasetSpec(
    name="regdb", label="RegDB", reader=read, splits=SPLITS,
    cameras=(Camera(VISIBLE_CAM, VISIBLE), Camera(THERMAL_CAM, INFRARED)),
    protocols=(*cross_modal_protocols("regdb"), _agw_protocol("v2i", VISIBLE, INFRARED),
               _agw_protocol("i2v", INFRARED, VISIBLE)),
    default_protocols=("regdb/v2i", "regdb/i2v"),
    files=tuple(f"idx/{part}_{kind}_N.txt" for part in ("train", "test") for kind in ("visible", "thermal")),
    synth_writer=write_synthetic, synth=SynthDefaults(test_fraction=0.5, ir_model="thermal")))  # real: 206 of 412

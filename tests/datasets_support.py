"""Tiny dataset trees for the datasets tests: hand-built in each real layout, or synthetic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vireid.datasets.synth import SynthSettings, generate
from vireid.datasets.sysu_perm import write_rand_perm_cam

# Every generator setting (they have no defaults: params.yaml's data.synthetic is their source).
TINY = dict(seed=0, n_ids=8, images_per_cam=2, height=32, width=16, difficulty=0.5, cue_correlation=0.5,
            nir_luma_weight=0.5, val_fraction=0.1)


def tiny_synth(root: Path, layout: str, **overrides) -> Path:
    generate(layout, root, SynthSettings(**{**TINY, **overrides}))
    return root


def _image(path: Path, seed: int, mode: str = "RGB", size=(8, 16), grey: bool = False) -> None:
    """A random image; ``grey``: three equal channels (as real infrared JPEGs and thermal BMPs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    if grey and mode == "RGB":
        pixels[..., 1:] = pixels[..., :1]
    Image.fromarray(pixels, mode).save(path)


def make_sysu(root: Path, train=(1, 2), val=(3,), test=(4, 5), images: int = 2) -> Path:
    """cam1..cam6/<pid>/<n>.jpg for every listed person, exp/*.txt and exp/rand_perm_cam.mat."""
    pids = sorted((*train, *val, *test))
    for cam in range(1, 7):
        for pid in pids:
            for n in range(1, images + 1):
                _image(root / f"cam{cam}/{pid:04d}/{n:04d}.jpg", seed=cam * 1000 + pid * 10 + n)
    (root / "exp").mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("val", val), ("test", test)):
        (root / f"exp/{name}_id.txt").write_text(",".join(map(str, ids)) + "\n")
    perm = {cam: [np.tile(np.arange(1, images + 1), (10, 1)) for _ in range(max(pids))] for cam in range(1, 7)}
    write_rand_perm_cam(root / "exp/rand_perm_cam.mat", perm)
    return root


def _regdb_name(folder: str, pid: int, n: int) -> str:
    return f"{folder}/{pid}/{folder[0].lower()}_{pid}_{n}.bmp"


def _llcm_name(folder: str, pid: int, n: int) -> str:
    cam = (1, 2, 4, 5, 6, 7, 8, 9)[(pid + n) % 8]  # a real camera (no infrared camera 3)
    return f"{folder}/{pid:04d}/{pid:04d}_c{cam:02d}_s{100 * pid + n:06d}_f{n + 1}_{folder}.jpg"


def _indexed(root: Path, folders: tuple[str, str], name_of, files: dict[str, tuple[str, list[int]]],
             images: int) -> Path:
    """Images under each modality folder and index files {name: (folder, pids)}."""
    for fi, folder in enumerate(folders):
        for pid in range(1, 7):
            for n in range(images):
                _image(root / name_of(folder, pid, n), seed=fi * 100 + pid * 10 + n, grey=fi == 1)
    for name, (folder, pids) in files.items():
        label = {p: i for i, p in enumerate(sorted(pids))}
        lines = [f"{name_of(folder, p, n)} {label[p]}" for p in pids for n in range(images)]
        path = root / "idx" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return root


def make_regdb(root: Path, train=(1, 2, 3), test=(4, 5, 6), images: int = 2) -> Path:
    files = {}
    for t in range(1, 11):
        for part, pids in (("train", list(train)), ("test", list(test))):
            files[f"{part}_visible_{t}.txt"] = ("Visible", pids)
            files[f"{part}_thermal_{t}.txt"] = ("Thermal", pids)
    return _indexed(root, ("Visible", "Thermal"), _regdb_name, files, images)


def make_llcm(root: Path, train=(1, 2, 3), test=(4, 5, 6), images: int = 2) -> Path:
    files = {"train_vis.txt": ("vis", list(train)), "train_nir.txt": ("nir", list(train)),
             "test_vis.txt": ("vis", list(test)), "test_nir.txt": ("nir", list(test))}
    return _indexed(root, ("vis", "nir"), _llcm_name, files, images)


MAKERS = {"sysu": make_sysu, "regdb": make_regdb, "llcm": make_llcm}


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file's bytes under ``root`` by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

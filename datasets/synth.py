"""Synthetic cross-modal re-identification data written in the real layouts.

``ensure_synthetic(root, layout, settings)`` writes a dataset at ``root`` exactly as the
real SYSU-MM01, RegDB or LLCM is laid out (folders, file names, image formats, id lists,
index files, ``rand_perm_cam.mat``), so the same adapters, protocols and cache read it.
The drawing itself is in :mod:`vireid.datasets.synth_render`.

Everything derives from ``settings.seed``: identical settings give byte-identical files.
A ``synth.json`` stamp in the root records the settings; a root whose stamp matches is
left alone, a root stamped with other settings is regenerated, and a non-empty root
without a stamp (real data, say) is never touched. ``synth-files.txt`` lists every file the
generator wrote; a stamped root that holds any other file (a manifest written by `data
check`, notes, real images) is refused rather than replaced, so regeneration never deletes
a file that is not the generator's own. The dataset is written to a temporary
sibling folder and renamed into place, so a crash never leaves half a dataset.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vireid.datasets.errors import DatasetError
from vireid.datasets.synth_render import IR_MODELS, Identities, draw_camera, draw_identities, draw_views, render

GENERATOR = "vireid-bench synthetic"
GENERATOR_VERSION = 2  # 2: latent identity code (cue_correlation), NIR vs thermal infrared, and the real
                       # formats (uint8 permutations with absent persons, 3-channel thermal BMPs, LLCM test
                       # copies by camera and idx/test_id.txt)
STAMP = "synth.json"
FILES = "synth-files.txt"  # every file the generator wrote, one relative path a line
LAYOUTS = ("sysu", "regdb", "llcm")
DEFAULT_TEST_FRACTION = {"sysu": 0.3, "regdb": 0.5, "llcm": 0.33}  # real: 96/491, 206/412, 351/1064
DEFAULT_IR_MODEL = {"sysu": "nir", "regdb": "thermal", "llcm": "nir"}  # the real cameras' kind
SYSU_IR_CAMS = (3, 6)
REGDB_TRIALS = 10
SYSU_PERM_TRIALS = 10
SYSU_INDOOR_ABSENT = 0.4  # persons never seen by the indoor visible cameras 1, 2 (real: 40 of 96 test persons)
LLCM_CAMS_PER_MODALITY = 3
JPEG_QUALITY = 92
RENDER_CHUNK = 32  # images drawn at once
# tags of the independent random streams
_IDS, _SPLIT, _CAMERA, _VIEW, _PERM, _LLCM_CAMS, _ABSENT = range(7)

__all__ = ["SynthSettings", "ensure_synthetic", "generate", "read_stamp", "LAYOUTS", "STAMP"]


@dataclass(frozen=True)
class SynthSettings:
    seed: int = 0
    n_ids: int = 100
    images_per_cam: int = 4
    height: int = 96
    width: int = 48
    difficulty: float = 0.5
    cue_correlation: float = 0.5  # how strongly every cue follows the latent identity code (0..1)
    nir_luma_weight: float = 0.5  # NIR cameras: share of a material's NIR reflectance that follows its visible luminance
    ir_model: str | None = None  # "nir" | "thermal"; None: the layout's real kind (DEFAULT_IR_MODEL)
    test_fraction: float | None = None  # None: the layout's default (about the real proportion)
    val_fraction: float = 0.1  # SYSU: ids written to exp/val_id.txt (training ids, as the real set)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SynthSettings":
        """Accepts the field names, plus ``image_size=(height, width)``."""
        values = dict(values)
        if "image_size" in values:
            values["height"], values["width"] = (int(x) for x in values.pop("image_size"))
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown synthetic-data settings {unknown}; expected "
                             f"{[f.name for f in dataclasses.fields(cls)] + ['image_size']}")
        return cls(**values)

    def resolved(self, layout: str) -> "SynthSettings":
        """Checked, with the layout's default test fraction filled in."""
        if layout not in LAYOUTS:
            raise DatasetError(f"unknown synthetic layout {layout!r}; expected one of {list(LAYOUTS)}")
        out = self if self.test_fraction is not None else dataclasses.replace(
            self, test_fraction=DEFAULT_TEST_FRACTION[layout])
        if out.ir_model is None:
            out = dataclasses.replace(out, ir_model=DEFAULT_IR_MODEL[layout])
        checks = [(out.n_ids >= 4, "n_ids must be at least 4"), (out.images_per_cam >= 1, "images_per_cam >= 1"),
                  (out.height >= 8 and out.width >= 4, "images must be at least 8 x 4 pixels"),
                  (0.0 <= out.difficulty <= 1.0, "difficulty must be in [0, 1]"),
                  (0.0 <= out.cue_correlation <= 1.0, "cue_correlation must be in [0, 1]"),
                  (0.0 <= out.nir_luma_weight <= 1.0, "nir_luma_weight must be in [0, 1]"),
                  (out.ir_model in IR_MODELS, f"ir_model must be one of {list(IR_MODELS)}"),
                  (0.0 < out.test_fraction < 1.0, "test_fraction must be in (0, 1)"),
                  (0.0 <= out.val_fraction < 1.0, "val_fraction must be in [0, 1)")]
        for ok, message in checks:
            if not ok:
                raise DatasetError(f"synthetic data: {message} (got {out})")
        n_test, n_val = _split_sizes(out, layout)
        if out.n_ids - n_test - n_val < 2 or n_test < 2:
            raise DatasetError(f"synthetic data: {out.n_ids} ids leave fewer than 2 training or test ids "
                               f"(test_fraction={out.test_fraction}, val_fraction={out.val_fraction})")
        return out

    def stamp(self, layout: str) -> dict[str, Any]:
        return {"generator": GENERATOR, "version": GENERATOR_VERSION, "layout": layout,
                **dataclasses.asdict(self.resolved(layout))}


def _split_sizes(s: SynthSettings, layout: str) -> tuple[int, int]:
    n_test = int(round(s.test_fraction * s.n_ids))
    n_val = int(round(s.val_fraction * s.n_ids)) if layout == "sysu" else 0
    return n_test, n_val


def _rng(s: SynthSettings, *key: int) -> np.random.Generator:
    return np.random.default_rng([s.seed, *key])


@dataclass(frozen=True)
class _Shoot:
    """The images one camera takes: (pid, shot number, relative path) each."""

    key: int  # camera key of the random streams
    infrared: bool
    shots: list[tuple[int, int, str]]
    fmt: str  # "jpg" or "bmp"
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> byte-identical copy (LLCM test_*/)


def render_job(s: SynthSettings, ids: Identities, job: _Shoot) -> np.ndarray:
    """The images of one camera's ``job`` (``s`` resolved), in ``job.shots`` order.

    ``ids`` holds every identity of the dataset (row ``pid - 1``); the audit passes identities
    whose cues it has swapped, and gets the same views and camera as the written files.
    """
    size = (s.height, s.width)
    camera = draw_camera(_rng(s, _CAMERA, job.key), job.infrared, size, s.difficulty, s.ir_model,
                         s.nir_luma_weight)
    index = np.array([pid - 1 for pid, _, _ in job.shots])
    rngs = [_rng(s, _VIEW, job.key, pid, k) for pid, k, _ in job.shots]
    # Render in chunks whose arrays stay in the CPU cache; per-image streams keep the
    # result independent of the chunking.
    return np.concatenate([render(ids.take(index[i:i + RENDER_CHUNK]),
                                  draw_views(rngs[i:i + RENDER_CHUNK], camera, s.difficulty), camera, size)
                           for i in range(0, len(index), RENDER_CHUNK)])


def _shoot(root: Path, s: SynthSettings, ids: Identities, job: _Shoot) -> int:
    """Render one camera's images in a batch and save them; returns the number written."""
    from PIL import Image

    if not job.shots:
        return 0
    images = render_job(s, ids, job)
    for folder in sorted({(root / rel).parent for _, _, rel in job.shots}):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in sorted({(root / rel).parent for rel in job.copies.values()}):
        folder.mkdir(parents=True, exist_ok=True)
    for (_, _, rel), pixels in zip(job.shots, images):
        # infrared images are 3-channel with equal channels, as SYSU-MM01's JPEGs and RegDB's BMPs are
        rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=-1)
        if job.fmt == "bmp":
            Image.fromarray(rgb).save(root / rel, format="BMP")
        else:
            Image.fromarray(rgb).save(root / rel, format="JPEG", quality=JPEG_QUALITY)
        if rel in job.copies:
            shutil.copyfile(root / rel, root / job.copies[rel])
    return len(job.shots)


def draw_dataset_identities(s: SynthSettings) -> Identities:
    """Every identity of the dataset ``s`` (resolved) describes, row ``pid - 1``."""
    return draw_identities(_rng(s, _IDS), s.n_ids, s.difficulty, s.cue_correlation)


def plan(layout: str, root, settings: SynthSettings) -> tuple[SynthSettings, list[_Shoot]]:
    """The resolved settings and the camera jobs of a dataset; writes its index files under ``root``."""
    s = settings.resolved(layout)
    return s, _WRITERS[layout](Path(root), s)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _split_ids(s: SynthSettings, layout: str, key: int) -> dict[str, list[int]]:
    n_test, n_val = _split_sizes(s, layout)
    order = _rng(s, _SPLIT, key).permutation(np.arange(1, s.n_ids + 1))
    return {"test": sorted(order[:n_test].tolist()), "val": sorted(order[n_test:n_test + n_val].tolist()),
            "train": sorted(order[n_test + n_val:].tolist())}


def _index_lines(entries: list[tuple[str, int]], ids: list[int]) -> str:
    """``path label`` lines; labels number the persons 0.. in id order, as the real files do."""
    label = {pid: i for i, pid in enumerate(sorted(ids))}
    return "".join(f"{rel} {label[pid]}\n" for rel, pid in entries if pid in label)


def _write_sysu(root: Path, s: SynthSettings) -> list[_Shoot]:
    """cam1..cam6/PPPP/IIII.jpg, exp/*_id.txt and exp/rand_perm_cam.mat as the official file:
    per camera one entry per person up to the camera's largest person id, uint8 10 x n, 10 x 0
    for a person the camera never saw (about SYSU_INDOOR_ABSENT of the persons in cameras 1, 2)."""
    from vireid.datasets.sysu import ID_FILES, PERM_FILE, image_path
    from vireid.datasets.sysu_perm import write_rand_perm_cam

    if s.images_per_cam > 255:
        raise DatasetError(f"synthetic SYSU-MM01: images_per_cam={s.images_per_cam} does not fit the official "
                           "uint8 permutation matrices (at most 255)")
    pids = range(1, s.n_ids + 1)
    for name, ids in _split_ids(s, "sysu", 0).items():
        _write_text(root / ID_FILES[name], ",".join(str(i) for i in ids) + "\n")
    indoor = {pid for pid in pids if _rng(s, _ABSENT, pid).random() >= SYSU_INDOOR_ABSENT}
    seen = {cam: [pid for pid in pids if cam not in (1, 2) or pid in indoor] for cam in range(1, 7)}
    perms = {}
    numbers = np.arange(1, s.images_per_cam + 1)
    for cam in range(1, 7):
        rng = _rng(s, _PERM, cam)
        perms[cam] = [np.stack([rng.permutation(numbers) for _ in range(SYSU_PERM_TRIALS)]) if pid in seen[cam]
                      else np.zeros((SYSU_PERM_TRIALS, 0)) for pid in range(1, max(seen[cam], default=0) + 1)]
    write_rand_perm_cam(root / PERM_FILE, perms, n_trials=SYSU_PERM_TRIALS)
    return [_Shoot(cam, cam in SYSU_IR_CAMS, [(pid, k, image_path(cam, pid, k + 1)) for pid in seen[cam]
                                              for k in range(s.images_per_cam)], "jpg") for cam in range(1, 7)]


def _write_regdb(root: Path, s: SynthSettings) -> list[_Shoot]:
    """Visible/ and Thermal/<person>/*.bmp (both 3-channel, as the real BMPs) and the 10 splits' index files."""
    from vireid.datasets.regdb import THERMAL_CAM, VISIBLE_CAM, index_files

    jobs = [_Shoot(cam, folder == "Thermal", [(pid, k, f"{folder}/{pid}/{letter}_{pid:04d}_{k + 1:02d}.bmp")
                                              for pid in range(1, s.n_ids + 1) for k in range(s.images_per_cam)],
                   "bmp")
            for folder, cam, letter in (("Visible", VISIBLE_CAM, "v"), ("Thermal", THERMAL_CAM, "t"))]
    entries = {"Visible": [(rel, pid) for pid, _, rel in jobs[0].shots],
               "Thermal": [(rel, pid) for pid, _, rel in jobs[1].shots]}
    for trial in range(1, REGDB_TRIALS + 1):
        split = _split_ids(s, "regdb", trial)
        for rel, folder, _, _, part in index_files(trial):
            _write_text(root / rel, _index_lines(entries[folder], split[part]))
    return jobs


def _write_llcm(root: Path, s: SynthSettings) -> list[_Shoot]:
    """vis/ and nir/PPPP/PPPP_cCC_sSSSSSS_fN_(vis|nir).jpg, idx/{train,test}_{vis,nir}.txt,
    idx/test_id.txt and the test copies by camera, test_vis/camC/PPPP/ and test_nir/camC/PPPP/
    (no infrared camera 3, as the real set)."""
    from vireid.datasets.llcm import CAMERAS, INDEX_FILES, NIR_CAMERAS, TEST_COPIES, TEST_ID_FILE

    split = _split_ids(s, "llcm", 0)
    test = set(split["test"])
    jobs = []
    entries: dict[str, list[tuple[str, int]]] = {"vis": [], "nir": []}
    for code, (folder, cams) in enumerate((("vis", CAMERAS), ("nir", NIR_CAMERAS))):
        seen_by = {pid: set(_rng(s, _LLCM_CAMS, code, pid).choice(cams, LLCM_CAMS_PER_MODALITY, replace=False).tolist())
                   for pid in range(1, s.n_ids + 1)}
        for cam in cams:
            shots = []
            for pid in range(1, s.n_ids + 1):
                if cam in seen_by[pid]:
                    shots += [(pid, k, f"{folder}/{pid:04d}/{pid:04d}_c{cam:02d}_s{100 * pid + cam:06d}_f{10 * (k + 1)}"
                                       f"_{folder}.jpg") for k in range(s.images_per_cam)]
            copies = {rel: f"{TEST_COPIES[folder]}/cam{cam}/{pid:04d}/{rel.rsplit('/', 1)[1]}"
                      for pid, _, rel in shots if pid in test}
            jobs.append(_Shoot(10 * code + cam, folder == "nir", shots, "jpg", copies))
            entries[folder] += [(rel, pid) for pid, _, rel in shots]
    for rel, folder, _, _, part in INDEX_FILES:
        _write_text(root / rel, _index_lines(sorted(entries[folder]), split[part]))
    _write_text(root / TEST_ID_FILE, ",".join(str(i) for i in split["test"]) + "\n")
    return jobs


_WRITERS: dict[str, Callable[[Path, SynthSettings], list[_Shoot]]] = {
    "sysu": _write_sysu, "regdb": _write_regdb, "llcm": _write_llcm}


def generate(layout: str, out, settings: SynthSettings, workers: int = 2) -> dict[str, Any]:
    """Write the dataset into the folder ``out`` (created; expected empty). Returns a summary.

    Cameras render on ``workers`` threads; the bytes do not depend on it. Prefer
    :func:`ensure_synthetic`, which writes atomically and never overwrites real data.
    """
    from concurrent.futures import ThreadPoolExecutor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    s, jobs = plan(layout, out, settings)
    ids = draw_dataset_identities(s)
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        count = sum(pool.map(lambda job: _shoot(out, s, ids, job), jobs))
    _write_text(out / STAMP, json.dumps(s.stamp(layout), indent=2) + "\n")
    _write_text(out / FILES, "\n".join(sorted(_files_under(out) | {FILES})) + "\n")
    return {"layout": layout, "root": str(out), "ids": s.n_ids, "images": count,
            "seconds": round(time.perf_counter() - started, 3)}


def _files_under(root: Path) -> set[str]:
    """Relative paths of every non-directory entry under ``root`` (symlinks not followed)."""
    out = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        out.update((rel / name).as_posix() for name in files)
        out.update((rel / name).as_posix() for name in dirs if (Path(folder) / name).is_symlink())
    return out


def foreign_files(root) -> list[str]:
    """Files under a stamped ``root`` that the generator did not write (sorted)."""
    root = Path(root)
    try:
        own = set((root / FILES).read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        own = {STAMP}  # written before the file list existed: only the stamp is known to be ours
    return sorted(_files_under(root) - own)


def read_stamp(root) -> dict[str, Any] | None:
    path = Path(root) / STAMP
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable synthetic-data stamp ({exc}); delete the folder to "
                           "regenerate") from None
    if not isinstance(stamp, dict) or stamp.get("generator") != GENERATOR:
        raise DatasetError(f"{path}: not a stamp of the vireid-bench generator; refusing to touch {root}")
    return stamp


def ensure_synthetic(root, layout: str, settings: SynthSettings, workers: int = 2) -> dict[str, Any] | None:
    """Generate at ``root`` unless it already holds this exact synthetic dataset.

    Returns the generation summary, or None when the existing dataset was kept. Raises
    :class:`DatasetError` if ``root`` is a non-empty folder the generator did not write.
    """
    root = Path(root)
    wanted = settings.stamp(layout)
    current = read_stamp(root)
    if current == wanted:
        return None
    if current is None and root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root}: exists and was not written by the synthetic generator (no {STAMP}); "
                           "refusing to overwrite it: choose an empty or new folder")
    others = foreign_files(root) if current is not None else []
    if others:
        shown = ", ".join(others[:3]) + (f" (and {len(others) - 3} more)" if len(others) > 3 else "")
        raise DatasetError(f"{root}: holds {len(others)} file(s) the synthetic generator did not write "
                           f"({shown}; own files are listed in {FILES}); refusing to regenerate over them: "
                           "move them away or choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should not be
    try:
        summary = generate(layout, tmp, settings, workers=workers)
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
            os.replace(root, old / "data")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["root"] = str(root)
    return summary

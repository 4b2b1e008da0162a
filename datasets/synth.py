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
from typing import Any

import numpy as np

from vireid.datasets.errors import DatasetError
from vireid.datasets.synth_render import IR_MODELS, Identities, draw_camera, draw_identities, draw_views, render

GENERATOR = "vireid-bench synthetic"
GENERATOR_VERSION = 2  # 2: latent identity code (cue_correlation), NIR vs thermal infrared, and the real
                       # formats (uint8 permutations with absent persons, 3-channel thermal BMPs, LLCM test
                       # copies by camera and idx/test_id.txt)
STAMP = "synth.json"
FILES = "synth-files.txt"  # every file the generator wrote, one relative path a line
JPEG_QUALITY = 92
RENDER_CHUNK = 32  # images drawn at once
# tags of the independent random streams
STREAM_IDS, STREAM_SPLIT, STREAM_CAMERA, STREAM_VIEW, STREAM_PERM, STREAM_LLCM_CAMS, STREAM_ABSENT = range(7)

__all__ = ["SynthSettings", "ensure_synthetic", "generate", "read_stamp", "layouts", "layout_spec", "STAMP", "Shoot",
           "stream", "split_ids", "index_lines", "write_text"]


@dataclass(frozen=True, kw_only=True)
class SynthSettings:
    """The generator's settings. No defaults but the layout's own (None): their one source is
    params.yaml's `data.synthetic` block, whose fields are these (harness.config.SynthConfig)."""

    seed: int
    n_ids: int
    images_per_cam: int
    height: int
    width: int
    difficulty: float  # 0 easy .. 1 hard
    cue_correlation: float  # how strongly every cue follows the latent identity code (0..1)
    nir_luma_weight: float  # NIR cameras: share of a material's NIR reflectance following its visible luminance
    ir_model: str | None = None  # "nir" | "thermal"; None: the layout's real kind (its spec's synth.ir_model)
    test_fraction: float | None = None  # None: the layout's default (about the real proportion)
    val_fraction: float  # SYSU: ids written to exp/val_id.txt (training ids, as the real set)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SynthSettings":
        """From a mapping of exactly the field names (those without a default may not be left out)."""
        fields = dataclasses.fields(cls)
        unknown = sorted(set(values) - {f.name for f in fields})
        missing = [f.name for f in fields if f.name not in values and f.default is dataclasses.MISSING]
        if unknown or missing:
            raise ValueError(f"synthetic-data settings: unknown {unknown}, missing {missing}; expected "
                             f"{[f.name for f in fields]}")
        return cls(**values)

    def resolved(self, layout: str) -> "SynthSettings":
        """Checked, with the layout's default test fraction filled in."""
        defaults = layout_spec(layout).synth
        out = self if self.test_fraction is not None else dataclasses.replace(
            self, test_fraction=defaults.test_fraction)
        if out.ir_model is None:
            out = dataclasses.replace(out, ir_model=defaults.ir_model)
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


def layouts() -> list[str]:
    """The registered datasets that have a synthetic writer."""
    from vireid.datasets.registry import DATASETS

    return [spec.name for spec in DATASETS if spec.synth_writer is not None]


def layout_spec(layout: str):
    """The dataset spec of a synthetic layout (a DatasetError lists the layouts otherwise)."""
    from vireid.datasets.registry import DATASETS

    spec = DATASETS.get(layout) if layout in DATASETS else None
    if spec is None or spec.synth_writer is None:
        raise DatasetError(f"unknown synthetic layout {layout!r}; expected one of {layouts()}")
    return spec


def _split_sizes(s: SynthSettings, layout: str) -> tuple[int, int]:
    n_test = int(round(s.test_fraction * s.n_ids))
    n_val = int(round(s.val_fraction * s.n_ids)) if layout_spec(layout).synth.val_ids else 0
    return n_test, n_val


def stream(s: SynthSettings, *key: int) -> np.random.Generator:
    return np.random.default_rng([s.seed, *key])


@dataclass(frozen=True)
class Shoot:
    """The images one camera takes: (pid, shot number, relative path) each."""

    key: int  # camera key of the random streams
    infrared: bool
    shots: list[tuple[int, int, str]]
    fmt: str  # "jpg" or "bmp"
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> byte-identical copy (LLCM test_*/)


def render_job(s: SynthSettings, ids: Identities, job: Shoot) -> np.ndarray:
    """The images of one camera's ``job`` (``s`` resolved), in ``job.shots`` order.

    ``ids`` holds every identity of the dataset (row ``pid - 1``); the audit passes identities
    whose cues it has swapped, and gets the same views and camera as the written files.
    """
    size = (s.height, s.width)
    camera = draw_camera(stream(s, STREAM_CAMERA, job.key), job.infrared, size, s.difficulty, s.ir_model,
                         s.nir_luma_weight)
    index = np.array([pid - 1 for pid, _, _ in job.shots])
    rngs = [stream(s, STREAM_VIEW, job.key, pid, k) for pid, k, _ in job.shots]
    # Render in chunks whose arrays stay in the CPU cache; per-image streams keep the
    # result independent of the chunking.
    return np.concatenate([render(ids.take(index[i:i + RENDER_CHUNK]),
                                  draw_views(rngs[i:i + RENDER_CHUNK], camera, s.difficulty), camera, size)
                           for i in range(0, len(index), RENDER_CHUNK)])


def _shoot(root: Path, s: SynthSettings, ids: Identities, job: Shoot) -> int:
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
    return draw_identities(stream(s, STREAM_IDS), s.n_ids, s.difficulty, s.cue_correlation)


def plan(layout: str, root, settings: SynthSettings) -> tuple[SynthSettings, list[Shoot]]:
    """The resolved settings and the camera jobs of a dataset; writes its index files under ``root``."""
    s = settings.resolved(layout)
    return s, layout_spec(layout).synth_writer(Path(root), s)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def split_ids(s: SynthSettings, layout: str, key: int) -> dict[str, list[int]]:
    n_test, n_val = _split_sizes(s, layout)
    order = stream(s, STREAM_SPLIT, key).permutation(np.arange(1, s.n_ids + 1))
    return {"test": sorted(order[:n_test].tolist()), "val": sorted(order[n_test:n_test + n_val].tolist()),
            "train": sorted(order[n_test + n_val:].tolist())}


def index_lines(entries: list[tuple[str, int]], ids: list[int]) -> str:
    """``path label`` lines; labels number the persons 0.. in id order, as the real files do."""
    label = {pid: i for i, pid in enumerate(sorted(ids))}
    return "".join(f"{rel} {label[pid]}\n" for rel, pid in entries if pid in label)


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
    write_text(out / STAMP, json.dumps(s.stamp(layout), indent=2) + "\n")
    write_text(out / FILES, "\n".join(sorted(_files_under(out) | {FILES})) + "\n")
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

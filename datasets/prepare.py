"""The prepare step: (synthesise ->) validate -> manifest -> uint8 image cache.

``prepare`` is idempotent: a second call with unchanged files and settings re-reads only
the layout and file metadata (no decoding, no hashing) and reuses the manifest and cache.
``open_prepared`` is what training and evaluation call.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vireid.datasets.cache import ImageCache, build_cache, cache_path, open_cache, remove_stale_caches, verify_cache
from vireid.datasets.errors import DatasetError
from vireid.datasets.manifest import Manifest, build_manifest, read_layout, read_manifest, stat_digest, write_manifest

MANIFEST_NAME = "manifest.parquet"
NOT_PREPARED = "run `vireid data prepare` (or `dvc repro prepare`) first"

__all__ = ["prepare", "open_prepared", "MANIFEST_NAME"]


def _check_size(size) -> tuple[int, int]:
    try:
        height, width = (int(x) for x in size)
    except (TypeError, ValueError):
        raise DatasetError(f"image size must be (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise DatasetError(f"image size must be positive, got {height}x{width}")
    return height, width


def _current_manifest(dataset: str, root: Path, prepared: Path, split: int, workers: int,
                      progress: bool) -> tuple[Manifest, bool]:
    """The prepared manifest if it still describes the files on disk, else a fresh one."""
    path = prepared / MANIFEST_NAME
    layout = read_layout(dataset, root, split)
    if path.is_file():
        try:
            old = read_manifest(path)
        except DatasetError:
            old = None
        if (old is not None and (old.dataset, old.split, old.root) == (dataset, split, str(root))
                and old.stat_digest == stat_digest(root, layout)):
            return old, True
    manifest = build_manifest(dataset, root, split, workers=workers, progress=progress, layout=layout)
    write_manifest(manifest, path)
    return manifest, False


def prepare(dataset: str, root, prepared_dir, size=(384, 144), synth: dict[str, Any] | None = None,
            split: int = 1, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Make ``<prepared_dir>/manifest.parquet`` (+ .json) and the image cache at ``size``.

    ``synth`` (the fields of :class:`vireid.datasets.synth.SynthSettings`) first
    writes a synthetic dataset in the layout of ``dataset`` at ``root`` unless one with the
    same settings is there. Returns a JSON-able summary.
    """
    from vireid.datasets.synth import SynthSettings, ensure_synthetic

    started = time.perf_counter()
    size = _check_size(size)
    root = Path(root).resolve()
    prepared = Path(prepared_dir).resolve()
    generated = None
    if synth is not None:
        generated = ensure_synthetic(root, dataset, SynthSettings.from_dict(synth), workers=workers)
    from vireid.common.io import remove_stale_temps

    for folder in (prepared, prepared / "cache"):
        remove_stale_temps(folder)  # left by a prepare killed with SIGKILL
    manifest, manifest_reused = _current_manifest(dataset, root, prepared, int(split), workers, progress)
    cache_file = cache_path(prepared, manifest.fingerprint, size)
    # A cache is reused only when its content matches the digests written when it was built.
    cache_problem = verify_cache(cache_file) if cache_file.is_file() else None
    cache_reused = cache_file.is_file() and cache_problem is None
    if not cache_reused:
        build_cache(prepared, manifest, size, workers=workers, progress=progress)
    removed = remove_stale_caches(prepared, manifest.fingerprint)
    return {
        "dataset": dataset, "root": str(root), "split": int(split), "prepared_dir": str(prepared),
        "manifest": str(prepared / MANIFEST_NAME), "cache": str(cache_file), "size": list(size),
        "fingerprint": manifest.fingerprint, "images": len(manifest.records), "counts": manifest.counts,
        "warnings": manifest.warnings, "generated": generated, "manifest_reused": manifest_reused,
        "cache_reused": cache_reused,
        "cache_rebuilt_because": cache_problem, "stale_caches_removed": [str(p) for p in removed],
        "seconds": round(time.perf_counter() - started, 3),
    }


def open_prepared(prepared_dir, size) -> tuple[Manifest, ImageCache]:
    """The manifest (``records`` row i <-> ``cache.images[i]``) and the memory-mapped cache."""
    size = _check_size(size)
    prepared = Path(prepared_dir)
    path = prepared / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{prepared}: no prepared dataset (missing {MANIFEST_NAME}); {NOT_PREPARED}")
    manifest = read_manifest(path)
    return manifest, open_cache(prepared, manifest, size)

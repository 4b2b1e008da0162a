"""The uint8 image cache: every image decoded and resized once, memory-mapped for training.

``<prepared_dir>/cache/<fingerprint[:16]>_<H>x<W>.npy`` holds an (N, H, W, 3) uint8 array
whose row i is the image of manifest record i (RGB; infrared images replicated to three
channels by PIL's ``convert("RGB")``). It is written to a temporary file and renamed, so a
cache file that exists is complete; it is reused as long as the fingerprint and size match.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.datasets.errors import DatasetError

__all__ = ["ImageCache", "cache_path", "build_cache", "open_cache", "remove_stale_caches"]


@dataclass
class ImageCache:
    path: Path
    images: np.ndarray  # (N, H, W, 3) uint8, read-only memmap


def cache_path(prepared_dir, fingerprint: str, size: tuple[int, int]) -> Path:
    height, width = size
    return Path(prepared_dir) / "cache" / f"{fingerprint[:16]}_{height}x{width}.npy"


def _fill(tmp: Path, root: Path, paths: list[str], size: tuple[int, int], workers: int, progress: bool) -> None:
    """Decode into a fresh .npy memmap at ``tmp``; the map is closed when this returns."""
    from vireid.datasets.images import load_resized, parallel_map

    height, width = size
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), height, width, 3))

    def fill(i: int) -> None:
        array[i] = load_resized(root / paths[i], size)

    for _ in parallel_map(fill, len(paths), workers, f"caching {height}x{width}" if progress else None):
        pass
    array.flush()


def build_cache(prepared_dir, manifest, size: tuple[int, int], workers: int = 2, progress: bool = True) -> Path:
    """Decode + resize every record image of ``manifest`` into the cache file (atomically)."""
    from vireid.harness.io import atomic_path

    path = cache_path(prepared_dir, manifest.fingerprint, size)
    with atomic_path(path, suffix=".npy.tmp") as tmp:
        _fill(tmp, Path(manifest.root), list(manifest.records["path"]), size, workers, progress)
    return path


def open_cache(prepared_dir, manifest, size: tuple[int, int]) -> ImageCache:
    """The cache of ``manifest`` at ``size``, memory-mapped read-only."""
    path = cache_path(prepared_dir, manifest.fingerprint, size)
    if not path.is_file():
        raise DatasetError(f"{path}: no image cache for this dataset at {size[0]}x{size[1]} "
                           "(run `vireid data prepare` / `dvc repro prepare`)")
    try:
        images = np.load(path, mmap_mode="r")
    except Exception as exc:
        raise DatasetError(f"{path}: unreadable image cache ({type(exc).__name__}: {exc}); delete it and "
                           "run `vireid data prepare` again") from None
    expected = (len(manifest.records), size[0], size[1], 3)
    if images.dtype != np.uint8 or images.shape != expected:
        raise DatasetError(f"{path}: expected a uint8 array of shape {expected}, found {images.dtype} "
                           f"{images.shape}; delete it and run `vireid data prepare` again")
    return ImageCache(path, images)


def remove_stale_caches(prepared_dir, fingerprint: str) -> list[Path]:
    """Delete caches of other fingerprints (an older version of the dataset); keep other sizes."""
    folder = Path(prepared_dir) / "cache"
    stale = [p for p in folder.glob("*.npy") if not p.name.startswith(fingerprint[:16] + "_")] \
        if folder.is_dir() else []
    for p in stale:
        p.unlink()
    return stale

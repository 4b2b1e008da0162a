"""The uint8 image cache: every image decoded and resized once, memory-mapped for training.

``<prepared_dir>/cache/<fingerprint[:16]>_<H>x<W>.npy`` holds an (N, H, W, 3) uint8 array
whose row i is the image of manifest record i (RGB; infrared images replicated to three
channels by PIL's ``convert("RGB")``). It is written to a temporary file and renamed, so a
cache file that exists is complete; it is reused as long as the fingerprint and size match
and its content matches the digests written beside it.

``<cache>.sha256.json`` holds the file size and one SHA-256 per ``CHUNK_BYTES`` of the file,
written at prepare time: a cache overwritten in place (same size, other bytes) or truncated
is caught by `prepare` (which rebuilds it) and by `open_cache` (which refuses it) instead of
being trained on. Hashing runs at disk speed and once per process per file.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vireid.datasets.errors import DatasetError

__all__ = ["ImageCache", "cache_path", "build_cache", "open_cache", "remove_stale_caches", "verify_cache",
           "digest_path"]

CHUNK_BYTES = 16 << 20
DIGEST_SUFFIX = ".sha256.json"
_VERIFIED: set[tuple] = set()  # (path, inode, size, mtime_ns) already checked by this process


@dataclass
class ImageCache:
    path: Path
    images: np.ndarray  # (N, H, W, 3) uint8, read-only memmap


def cache_path(prepared_dir, fingerprint: str, size: tuple[int, int]) -> Path:
    height, width = size
    return Path(prepared_dir) / "cache" / f"{fingerprint[:16]}_{height}x{width}.npy"


def digest_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def _chunk_digests(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    digests = []
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digests.append(hashlib.sha256(chunk).hexdigest())
    return digests


def _write_digests(path: Path, cache_file: Path) -> None:
    from vireid.common.io import atomic_write_json

    atomic_write_json(digest_path(cache_file), {"file": cache_file.name, "bytes": path.stat().st_size,
                                                "chunk_bytes": CHUNK_BYTES, "sha256": _chunk_digests(path)})


def verify_cache(path) -> str | None:
    """None when ``path`` matches its digest file, else what is wrong (for a message)."""
    path = Path(path)
    sidecar = digest_path(path)
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
        size, chunk, digests = int(info["bytes"]), int(info["chunk_bytes"]), list(info["sha256"])
    except FileNotFoundError:
        return f"no digest file {sidecar.name} (written by an older version or an interrupted prepare)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable digest file {sidecar} ({type(exc).__name__})"
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return None
    if st.st_size != size:
        return f"{st.st_size} bytes, expected {size} (truncated or overwritten)"
    if chunk < 1:
        return f"unreadable digest file {sidecar} (chunk_bytes {chunk})"
    found = _chunk_digests(path, chunk)
    bad = [i for i, (a, b) in enumerate(zip(found, digests)) if a != b]
    if len(found) != len(digests) or bad:
        first = bad[0] if bad else min(len(found), len(digests))
        return (f"content differs from the digests written at prepare time ({len(bad)} of {len(digests)} "
                f"chunks, first at byte {first * chunk})")
    _VERIFIED.add(key)
    return None


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
    from vireid.common.io import atomic_path

    path = cache_path(prepared_dir, manifest.fingerprint, size)
    digest_path(path).unlink(missing_ok=True)  # a cache is only trusted with its own digests
    with atomic_path(path, suffix=".npy.tmp") as tmp:
        _fill(tmp, Path(manifest.root), list(manifest.records["path"]), size, workers, progress)
        _write_digests(tmp, path)
    return path


def open_cache(prepared_dir, manifest, size: tuple[int, int]) -> ImageCache:
    """The cache of ``manifest`` at ``size``, memory-mapped read-only."""
    path = cache_path(prepared_dir, manifest.fingerprint, size)
    if not path.is_file():
        raise DatasetError(f"{path}: no image cache for this dataset at {size[0]}x{size[1]} "
                           "(run `vireid data prepare` / `dvc repro prepare`)")
    problem = verify_cache(path)
    if problem:
        raise DatasetError(f"{path}: image cache fails its check: {problem}; run `vireid data prepare` "
                           "to rebuild it")
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
        digest_path(p).unlink(missing_ok=True)
    return stale

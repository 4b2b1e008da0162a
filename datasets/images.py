"""Reading every image once: decode check + content hash (validation), decode + resize (cache).

Both run in a thread pool: PIL and hashlib release the GIL while they work, and threads
share the output arrays without copies.
"""
from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from vireid.datasets.errors import DatasetError

T = TypeVar("T")

__all__ = ["inspect_images", "load_resized", "parallel_map"]


def parallel_map(fn: Callable[[int], T], n: int, workers: int, progress: str | None = None) -> Iterator[T]:
    """``fn(i)`` for i in range(n), results in order, on ``workers`` threads, with an optional tqdm bar."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=progress, unit="img", leave=False, mininterval=0.5)
    try:
        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            for result in pool.map(fn, range(n)):
                if bar is not None:
                    bar.update()
                yield result
    finally:
        if bar is not None:
            bar.close()


def _inspect(path: Path) -> tuple[int, str, str | None]:
    """(size, sha256, error or None) of one image file, decoding it fully."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        return 0, "", f"cannot read ({exc.strerror or exc})"
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return len(data), digest, "image has no pixels"
    except UnidentifiedImageError:
        return len(data), digest, "cannot decode (not an image format PIL recognises)"
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        return len(data), digest, f"cannot decode ({type(exc).__name__}: {exc})"
    return len(data), digest, None


def inspect_images(root: Path, paths: list[str], workers: int = 2, progress: bool = False
                   ) -> tuple[np.ndarray, list[str]]:
    """Decode every image under ``root``; return (sizes int64, sha256 hex digests).

    Raises :class:`DatasetError` naming the unreadable or truncated files.
    """
    root = Path(root)
    results = list(parallel_map(lambda i: _inspect(root / paths[i]), len(paths), workers,
                                "checking images" if progress else None))
    bad = [(paths[i], err) for i, (_, _, err) in enumerate(results) if err]
    if bad:
        shown = "; ".join(f"{root / p}: {err}" for p, err in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DatasetError(f"{len(bad)} unreadable or truncated image(s): {shown}{more}")
    sizes = np.fromiter((r[0] for r in results), dtype=np.int64, count=len(results))
    return sizes, [r[1] for r in results]


def load_resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode as RGB and resize to ``size`` = (H, W) with PIL's bilinear filter (what the
    public code's ``T.Resize`` does); uint8 (H, W, 3)."""
    from PIL import Image

    height, width = size
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    except Exception as exc:
        raise DatasetError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)

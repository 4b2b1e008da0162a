"""Reading every image once: decode check + content hash (validation), decode + resize (cache).

Both run in a thread pool: PIL and hashlib release the GIL while they work, and threads
share the output arrays without copies.

Two rules keep odd files from becoming silently wrong or huge data: 16-bit images (PIL
modes ``I;16*``) are scaled to 8 bits (``convert("RGB")`` would clip most pixels to 255),
32-bit integer and float images are refused by name; an image whose header claims more
than ``max_pixels()`` pixels (``data.max_image_pixels``, ``data check --max-image-pixels``)
is refused before it is decoded, so a tiny PNG cannot expand into gigabytes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from vireid.datasets.errors import DatasetError

T = TypeVar("T")

__all__ = ["inspect_images", "load_resized", "parallel_map", "pixel_limit", "max_pixels", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 25_000_000  # 5000 x 5000; re-id crops are under 0.5 Mpx
_limit = [DEFAULT_MAX_PIXELS]
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
REFUSED_MODES = {"I": "32-bit integer", "F": "32-bit float"}


def max_pixels() -> int:
    return _limit[0]


@contextlib.contextmanager
def pixel_limit(n: int | None):
    """Within the block, refuse images of more than ``n`` pixels (None: the default)."""
    from PIL import Image

    old, old_pil = _limit[0], Image.MAX_IMAGE_PIXELS
    _limit[0] = int(n) if n else DEFAULT_MAX_PIXELS
    # PIL's own bomb check (warn above its limit, refuse above twice it) is replaced by ours.
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        _limit[0], Image.MAX_IMAGE_PIXELS = old, old_pil


def _check_header(im) -> str | None:
    """Why ``im`` (opened, not decoded) must not be decoded, or None."""
    if im.width * im.height > _limit[0]:
        return (f"{im.width}x{im.height} (width x height) = {im.width * im.height} pixels, over the limit of "
                f"{_limit[0]} "
                "(raise data.max_image_pixels / --max-image-pixels to read it)")
    if im.mode in REFUSED_MODES:
        return (f"{REFUSED_MODES[im.mode]} pixels (PIL mode {im.mode}) are not supported; expected 8- or "
                "16-bit images")
    return None


def to_rgb(im):
    """PIL image -> RGB, scaling 16-bit grey levels (0..65535) to 0..255 instead of clipping."""
    from PIL import Image

    if im.mode in SIXTEEN_BIT:
        grey = np.asarray(im).astype(np.uint32)
        return Image.fromarray(((grey * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


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
            refused = _check_header(im)
            if refused:
                return len(data), digest, refused
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
            refused = _check_header(im)
            if not refused:
                rgb = to_rgb(im)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    if refused:
        raise DatasetError(f"{path}: {refused}")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)

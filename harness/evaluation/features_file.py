"""The features file (``features.npz``): test features with their identity, camera and path.

Keys: ``query_feats`` (Q, D) and ``gallery_feats`` (G, D) floating point; ``query_ids``,
``query_cams``, ``gallery_ids``, ``gallery_cams`` 1-D integers; ``query_paths``,
``gallery_paths`` 1-D strings (image paths relative to the dataset root; SYSU-MM01:
``camC/PPPP/IIII.jpg``). The query and gallery tables together form the pool that a
protocol picks its queries and gallery from.

Reading is bounded: each member's ``.npy`` header is read first and the file is refused,
by name, when its arrays would expand to more than ``max_bytes`` (``DEFAULT_MAX_BYTES``;
``eval.max_features_mib``, ``eval-features --max-mib``), so a 2 MB archive cannot claim
2 GiB or 10^12 rows of memory. Strings are paths: bytes that are not UTF-8 are refused.
"""
from __future__ import annotations

import os
import zipfile
from typing import Mapping

import numpy as np

__all__ = ["FeaturesFileError", "TABLES", "REQUIRED_KEYS", "validate_arrays", "load_features", "save_features",
           "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 1 << 30  # SYSU-MM01 test features at 2048 dims take about 40 MB

TABLES = ("query", "gallery")
REQUIRED_KEYS = tuple(f"{t}_{k}" for t in TABLES for k in ("feats", "ids", "cams", "paths"))


class FeaturesFileError(ValueError):
    """A features file (or array dict) is missing a key or holds a malformed array."""


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _check_table(arrays: Mapping[str, np.ndarray], table: str, source: str) -> dict[str, np.ndarray]:
    feats = np.asarray(arrays[f"{table}_feats"])
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise FeaturesFileError(f"{source}: '{table}_feats' must be a non-empty 2-D array (images x dims), "
                                f"got shape {feats.shape}")
    if feats.dtype.kind != "f":
        raise FeaturesFileError(f"{source}: '{table}_feats' must be floating point, got {feats.dtype}")
    if not np.isfinite(feats).all():
        bad = int(np.flatnonzero(~np.isfinite(feats).all(axis=1))[0])
        raise FeaturesFileError(f"{source}: '{table}_feats' holds NaN or infinite values (first in row {bad})")
    out = {"feats": feats.astype(np.float32, copy=False)}
    for key in ("ids", "cams"):
        arr = np.asarray(arrays[f"{table}_{key}"])
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise FeaturesFileError(f"{source}: '{table}_{key}' must be a 1-D integer array, got {arr.dtype} "
                                    f"of shape {arr.shape}")
        out[key] = arr.astype(np.int64)
    paths = np.asarray(arrays[f"{table}_paths"])
    if paths.ndim != 1 or paths.dtype.kind not in "US":
        raise FeaturesFileError(f"{source}: '{table}_paths' must be a 1-D string array, got {paths.dtype} "
                                f"of shape {paths.shape}")
    if paths.dtype.kind == "S":  # bytes: decode as UTF-8, naming the first row that is not
        try:
            paths = np.char.decode(paths, "utf-8")
        except UnicodeDecodeError:
            bad = next(i for i, p in enumerate(paths.tolist()) if not _is_utf8(p))
            raise FeaturesFileError(f"{source}: '{table}_paths' row {bad} is not UTF-8 text "
                                    f"({paths[bad][:40]!r})") from None
    out["paths"] = paths.astype(str)
    for key in ("ids", "cams", "paths"):
        if len(out[key]) != len(feats):
            raise FeaturesFileError(f"{source}: '{table}_{key}' has {len(out[key])} entries but '{table}_feats' "
                                    f"has {len(feats)} rows")
    return out


def validate_arrays(arrays: Mapping[str, np.ndarray], source: str = "features") -> dict[str, np.ndarray]:
    """Checked copies: features float32, ids and cameras int64, paths str.

    Raises :class:`FeaturesFileError` naming ``source`` and the offending key.
    """
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise FeaturesFileError(f"{source}: missing array(s) {', '.join(missing)}")
    tables = {t: _check_table(arrays, t, source) for t in TABLES}
    dq, dg = tables["query"]["feats"].shape[1], tables["gallery"]["feats"].shape[1]
    if dq != dg:
        raise FeaturesFileError(f"{source}: 'query_feats' has {dq} dims but 'gallery_feats' has {dg}")
    return {f"{t}_{k}": v for t, table in tables.items() for k, v in table.items()}


def _member_bytes(npz, key: str, source: str) -> int:
    """Bytes the member ``key`` claims in its ``.npy`` header (read without the data)."""
    try:
        with npz.zip.open(key + ".npy") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _order, dtype = reader(handle)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise FeaturesFileError(f"{source}: array '{key}' has an unreadable header ({exc})") from None
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


def load_features(path: str | os.PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Read and validate a features file (no pickled objects are loaded, at most ``max_bytes``)."""
    source = os.fspath(path)
    limit = int(max_bytes or DEFAULT_MAX_BYTES)
    try:
        with open(source, "rb") as handle:
            magic = handle.read(6)
    except FileNotFoundError:
        raise FeaturesFileError(f"{source}: features file not found") from None
    if magic == b"\x93NUMPY":  # np.load would read the whole array before we could say no
        raise FeaturesFileError(f"{source}: expected an .npz archive of named arrays, found a single array")
    try:
        npz = np.load(source, allow_pickle=False)
    except FileNotFoundError:
        raise FeaturesFileError(f"{source}: features file not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FeaturesFileError(f"{source}: not a readable .npz file ({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise FeaturesFileError(f"{source}: expected an .npz archive of named arrays, found a single array")
    arrays = {}
    with npz:
        claimed = {key: _member_bytes(npz, key, source) for key in npz.files}
        if sum(claimed.values()) > limit:
            big = max(claimed, key=claimed.get)
            raise FeaturesFileError(
                f"{source}: its arrays would take {sum(claimed.values()) / 2**20:.0f} MiB in memory ('{big}' "
                f"alone {claimed[big] / 2**20:.0f} MiB), over the limit of {limit / 2**20:.0f} MiB "
                "(raise it with eval.max_features_mib / --max-mib)")
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # object arrays need pickle
                raise FeaturesFileError(f"{source}: array '{key}' cannot be read ({exc})") from None
    return validate_arrays(arrays, source)


def save_features(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Validate and write atomically (uncompressed .npz)."""
    from vireid.harness.io import atomic_save

    checked = validate_arrays(arrays, os.fspath(path))
    atomic_save(path, lambda tmp: np.savez(tmp, **checked), suffix=".npz")

"""The official SYSU-MM01 gallery permutation file, ``exp/rand_perm_cam.mat``.

Structure of the official file (MATLAB v5, variable ``rand_perm_cam``), as the public code
reads it (IDKL's ``get_gallery_names``: ``perm[cam - 1][0].squeeze()[pid - 1][trial][:shots]``):
a 6 x 1 cell, one entry per camera; each entry a cell with one entry per person id up to
the camera's largest id (333 for cameras 1, 2 and 6, 533 for 3, 4 and 5), indexed by
``pid - 1``; each of those a uint8 10 x n matrix whose row ``t`` is trial ``t``'s order of
the person's n image numbers (1-based) in that camera, 10 x 0 where the person has no
image there. A person beyond a camera's list has no image in it. The file is not in the
SYSU-MM01 archive: it comes from the official evaluation repository
(github.com/wuancong/SYSU-MM01, ``evaluation/data_split/rand_perm_cam.mat``).

The gallery of trial ``t`` with ``num_shots`` shots takes, for each gallery camera and each
test identity, the first ``num_shots`` numbers of row ``t``; the images are named
``camC/PPPP/IIII`` (camera, zero-padded pid, zero-padded image number), here encoded as
integer keys for fast matching.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vireid.datasets.errors import DatasetError

VARIABLE = "rand_perm_cam"
NUM_CAMERAS = 6
HEADER = "MATLAB 5.0 MAT-file, written by vireid-bench (vireid.datasets.sysu_perm)"

__all__ = ["read_rand_perm_cam", "write_rand_perm_cam", "image_keys", "gallery_keys", "VARIABLE"]


def _as_image_numbers(value, path, cam: int, pid: int) -> np.ndarray:
    """Validate one person's matrix and return it as int64 (n_trials, n_images)."""
    where = f"{path}: {VARIABLE}{{{cam}}}{{{pid}}}"
    arr = np.asarray(value)
    if arr.dtype == object:
        raise DatasetError(f"{where}: expected a numeric matrix, found a nested cell")
    if arr.size == 0:
        return np.zeros((0, 0), dtype=np.int64) if arr.ndim != 2 else arr.astype(np.int64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise DatasetError(f"{where}: expected an (n_trials x n_images) matrix, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise DatasetError(f"{where}: image numbers must be finite")
        out = arr.astype(np.int64)
        if not np.array_equal(out, arr):
            raise DatasetError(f"{where}: image numbers must be whole numbers, got {arr.dtype} values "
                               "with a fractional part")
    elif arr.dtype.kind == "b":
        raise DatasetError(f"{where}: expected numbers, got a logical matrix")
    else:
        raise DatasetError(f"{where}: expected numbers, got dtype {arr.dtype}")
    if out.min() < 1:
        raise DatasetError(f"{where}: image numbers are 1-based; found {int(out.min())}")
    return out


def _cells(arr: np.ndarray) -> np.ndarray:
    """A MATLAB cell read by scipy (object array, any 1-D-like shape) as a flat object array."""
    return np.asarray(arr, dtype=object).reshape(-1)


def read_rand_perm_cam(path) -> dict[int, list[np.ndarray]]:
    """Read ``rand_perm_cam.mat``.

    Returns ``{cam: [perm_of_pid_1, perm_of_pid_2, ...]}`` for cameras 1..6; each entry is
    an int64 array (n_trials, n_images) of 1-based image numbers (shape (0, 0) or
    (n_trials, 0) where the person has no image in that camera). Integer and floating
    matrices are both accepted (floats must hold whole numbers).
    Raises :class:`DatasetError` naming the file when it is missing, truncated, malformed
    or has the wrong structure.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: SYSU-MM01 permutation file not found; it is not in the dataset archive: copy "
                           "evaluation/data_split/rand_perm_cam.mat of the official SYSU-MM01 evaluation "
                           "repository (github.com/wuancong/SYSU-MM01) to exp/rand_perm_cam.mat")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises many types for truncated/garbage files
        raise DatasetError(f"{path}: cannot read as a MATLAB .mat file "
                           f"(truncated or malformed?): {type(exc).__name__}: {exc}") from None
    if VARIABLE not in content:
        names = sorted(k for k in content if not k.startswith("__"))
        raise DatasetError(f"{path}: expected a variable '{VARIABLE}', found {names or 'none'}")
    top = content[VARIABLE]
    if not isinstance(top, np.ndarray) or top.dtype != object:
        raise DatasetError(f"{path}: '{VARIABLE}' must be a 6 x 1 cell array, got "
                           f"{getattr(top, 'dtype', type(top))} of shape {getattr(top, 'shape', '?')}")
    cams = _cells(top)
    if cams.size != NUM_CAMERAS:
        raise DatasetError(f"{path}: '{VARIABLE}' must have {NUM_CAMERAS} camera entries, "
                           f"got {cams.size}")
    result: dict[int, list[np.ndarray]] = {}
    for c in range(NUM_CAMERAS):
        inner = cams[c]
        if not isinstance(inner, np.ndarray) or inner.dtype != object:
            raise DatasetError(f"{path}: {VARIABLE}{{{c + 1}}} must be a cell array of persons, "
                               f"got {getattr(inner, 'dtype', type(inner))}")
        persons = _cells(inner)
        result[c + 1] = [_as_image_numbers(p, path, c + 1, i + 1) for i, p in enumerate(persons)]
    return result


def _to_matlab_matrix(value, n_trials: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((n_trials, 0), dtype=np.uint8)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"a permutation must be (n_trials, n_images), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"a permutation must be numeric, got dtype {arr.dtype}")
    if np.any(arr < 1) or not np.array_equal(arr, np.round(arr)):
        raise ValueError("permutation entries must be whole 1-based image numbers")
    if arr.max() > 255:
        raise ValueError(f"image numbers above 255 do not fit the official uint8 matrices (got {int(arr.max())})")
    return arr.astype(np.uint8)


def write_rand_perm_cam(path, perms, n_trials: int = 10) -> None:
    """Write ``perms`` (``{cam: [array per pid-1]}``, cameras 1..6; missing cameras are
    written as an empty person list) in the official structure: variable ``rand_perm_cam``,
    a 6 x 1 cell of (n_persons x 1) cells of uint8 (n_trials x n_images) matrices,
    ``n_trials`` x 0 where a person has no images. The file is replaced atomically; equal
    input gives byte-identical files (the header carries no timestamp).
    """
    import scipy.io

    unknown = sorted(set(perms) - set(range(1, NUM_CAMERAS + 1)))
    if unknown:
        raise ValueError(f"cameras must be 1..{NUM_CAMERAS}, got {unknown}")
    top = np.empty((NUM_CAMERAS, 1), dtype=object)
    for c in range(1, NUM_CAMERAS + 1):
        persons = list(perms.get(c, []))
        inner = np.empty((len(persons), 1), dtype=object)
        for i, p in enumerate(persons):
            inner[i, 0] = _to_matlab_matrix(p, n_trials)
        top[c - 1, 0] = inner
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            scipy.io.savemat(fh, {VARIABLE: top}, format="5", do_compression=False)
            # scipy stamps the 116-byte text header with the time; a fixed one keeps the file
            # byte-identical for identical permutations (the synthetic generator relies on it).
            fh.seek(0)
            fh.write(HEADER.ljust(116).encode("ascii"))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def image_keys(cam, pid, number) -> np.ndarray:
    """Integer keys of the images ``camC/PPPP/IIII``: ``(cam * 10000 + pid) * 10000 + number``."""
    return (np.asarray(cam, dtype=np.int64) * 10_000 + np.asarray(pid, dtype=np.int64)) * 10_000 \
        + np.asarray(number, dtype=np.int64)


def gallery_keys(perm, cams, pids, num_shots: int | None = None) -> np.ndarray:
    """(n_trials, K) :func:`image_keys`: row ``t`` is the gallery of trial ``t`` in the
    official order -- for each camera in ``cams`` (outer loop) and each pid in ``pids``
    (inner loop), the first ``num_shots`` image numbers of row ``t`` of that person's
    permutation (``None``: the whole row, i.e. every image). A person with no image in a
    camera contributes nothing. ``perm`` is what :func:`read_rand_perm_cam` returns.
    """
    parts = []
    for cam in cams:
        cam = int(cam)
        if cam not in perm:
            raise DatasetError(f"the permutation file has no camera {cam}")
        persons = perm[cam]
        for pid in pids:
            pid = int(pid)
            if pid < 1:
                raise DatasetError(f"person ids are 1-based; got {pid}")
            if pid > len(persons):  # the camera's list stops at its largest person id
                continue
            arr = np.asarray(persons[pid - 1])
            if arr.size:
                parts.append(image_keys(cam, pid, (arr.reshape(1, -1) if arr.ndim == 1 else arr)[:, :num_shots]))
    if not parts:
        return np.zeros((0, 0), dtype=np.int64)
    trials = min(len(p) for p in parts)  # the official file has 10 rows for every person
    return np.concatenate([p[:trials] for p in parts], axis=1)

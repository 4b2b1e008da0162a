"""Query x gallery distances: squared Euclidean by one GEMM (smaller = closer).

``d(x, y) = (|x|^2 + |y|^2) - 2 x.y``, the public code's formula, optionally after
L2-normalising every row (``x / max(|x|, 1e-12)``, as ``F.normalize``; the public code does
this for SYSU-MM01 only). The GEMM runs in float32 (default) or float64: NumPy/BLAS on the
CPU, torch on a CUDA device when one is available (``device="auto"``) or requested.

When ``y`` is omitted the matrix is ``x`` against itself; on the CPU the product is then a
symmetric rank-k update (half the flops) and the result is exactly symmetric.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from vireid.harness.evaluation.parallel import run_all

__all__ = ["to_numpy", "normalize_rows", "squared_euclidean", "resolve_device"]

# Rows per block for the elementwise epilogue (keeps the block in cache).
_EPILOGUE_ROWS = 256
# Bytes of one output block on the GPU before it is copied back.
_GPU_BLOCK_BYTES = 1 << 28


def to_numpy(a: Any, dtype=None) -> np.ndarray:
    """A numpy array from a numpy array, a list or a (CPU or CUDA) torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    arr = np.asarray(a)
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def resolve_device(device: str | None = "auto") -> str:
    """'cpu' or a CUDA device string. 'auto' picks CUDA when torch sees one."""
    if device in (None, "auto"):
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover - torch is a dependency
            return "cpu"
    return str(device)


def normalize_rows(x: np.ndarray, eps: float = 1e-12, out: np.ndarray | None = None) -> np.ndarray:
    """``x / max(|x|_2, eps)`` row by row, in x's floating dtype (as ``F.normalize``);
    ``out=x`` normalises in place."""
    x = np.asarray(x)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=x.dtype))
    return np.divide(x, np.maximum(norm, x.dtype.type(eps))[:, None], out=out)


def _float_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"distance dtype must be float32 or float64, got {dt}")
    return dt


def squared_euclidean(x, y=None, *, normalize: bool = False, dtype="float32",
                      device: str | None = "auto") -> np.ndarray:
    """Squared Euclidean distances (len(x), len(y)) as a numpy array of ``dtype``.

    ``y=None`` means ``x`` against itself. ``normalize`` L2-normalises the rows first.
    """
    dt = _float_dtype(dtype)
    x = to_numpy(x, dt)
    same = y is None
    y = x if same else to_numpy(y, dt)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be 2-D with the same width, got {x.shape} and {y.shape}")
    if normalize:
        x = normalize_rows(x)
        y = x if same else normalize_rows(y)
    dev = resolve_device(device)
    if dev.startswith("cuda"):
        return _squared_euclidean_torch(x, y, dev, same)
    return _squared_euclidean_numpy(x, y, same)


def _squared_euclidean_numpy(x: np.ndarray, y: np.ndarray, same: bool) -> np.ndarray:
    x = np.ascontiguousarray(x)
    sqx = np.einsum("ij,ij->i", x, x, dtype=x.dtype)
    if same:
        out = x @ x.T  # BLAS recognises x @ x.T: a symmetric rank-k update, exactly symmetric
        sqy = sqx
    else:
        y = np.ascontiguousarray(y)
        sqy = np.einsum("ij,ij->i", y, y, dtype=y.dtype)
        out = x @ y.T
    minus_two = out.dtype.type(-2)

    def epilogue(start: int) -> None:
        block = out[start:start + _EPILOGUE_ROWS]
        block *= minus_two
        # (|x|^2 + |y|^2) is computed first so that the x-vs-x matrix stays symmetric.
        block += sqx[start:start + _EPILOGUE_ROWS, None] + sqy[None, :]

    run_all([partial(epilogue, start) for start in range(0, out.shape[0], _EPILOGUE_ROWS)])
    return out


def _squared_euclidean_torch(x: np.ndarray, y: np.ndarray, device: str, same: bool) -> np.ndarray:
    import torch

    xt = torch.from_numpy(x).to(device)
    yt = xt if same else torch.from_numpy(y).to(device)
    sqx = (xt * xt).sum(dim=1)
    sqy = sqx if same else (yt * yt).sum(dim=1)
    out = np.empty((x.shape[0], y.shape[0]), dtype=x.dtype)
    rows = max(1, _GPU_BLOCK_BYTES // max(1, y.shape[0] * x.dtype.itemsize))
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        block = sqx[start:stop, None] + sqy[None, :]
        block.addmm_(xt[start:stop], yt.T, beta=1, alpha=-2)
        out[start:stop] = block.cpu().numpy()
    return out

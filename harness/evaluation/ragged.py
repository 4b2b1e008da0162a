"""Ragged ranges as flat arrays, without ``np.repeat`` (which holds the GIL, so that blocks
on several threads would wait for each other): cumulative sums instead."""
from __future__ import annotations

import numpy as np

__all__ = ["owners", "segments"]


def owners(counts: np.ndarray) -> np.ndarray:
    """``owner[t] = i`` for the ``counts[i]`` consecutive positions t of segment i: the
    same as ``np.repeat(np.arange(len(counts)), counts)``."""
    counts = np.asarray(counts)
    total = int(counts.sum())
    owner = np.zeros(total, dtype=np.int64)
    if total:
        nz = np.flatnonzero(counts)
        owner[(np.cumsum(counts[nz]) - counts[nz])[1:]] = np.diff(nz)
        owner[0] = nz[0]
        np.cumsum(owner, out=owner)
    return owner


def segments(starts: np.ndarray, lengths: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """Concatenation of the ranges ``[starts[i], starts[i] + lengths[i])``; ``owner`` is
    :func:`owners` of ``lengths`` when the caller has it already."""
    if owner is None:
        owner = owners(lengths)
    out = (np.asarray(starts) - (np.cumsum(lengths) - lengths)).take(owner)
    out += np.arange(len(owner), dtype=out.dtype)
    return out

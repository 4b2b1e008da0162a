"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised and memory-bounded.

The problem is the public code's: queries and gallery together (N = Q + G), k1 = 20,
k2 = 6, lambda = 0.3, V and the Jaccard accumulator in float16. The result equals the
straightforward per-row formulation (``tests/eval_reference.py``, docs/evaluation.md) bit
for bit, because every rounding step happens on the same values in the same order:

* ``rank``: the first ``max(k1 + 1, k2)`` entries of a stable ascending sort of each row of
  the (N, N) distances (ties: lower index first);
* ``od[i, j] = d[i, j] / max_k d[i, k]`` in the distances' dtype (divisor 1 when the row
  maximum is not positive). The public code divides by the column maximum and transposes,
  the same thing for a symmetric matrix;
* ``R(i)``: the k-reciprocal neighbours among the first k1 + 1; ``E(i)``: R(i) expanded by
  the ``round(k1 / 2) + 1``-reciprocal sets of its members that share more than 2/3 of
  their elements with R(i);
* ``V[i, E(i)] = float16(w / sum(w))``, ``w = exp(-od)`` in float32, the sum in float64
  (exact for these values, so independent of the order);
* query expansion: ``V'[i] = float16((V[r0] + ... + V[r_{k2-1}]) / k2)``, summed in float32
  in rank order over the k2 nearest rows;
* Jaccard: ``temp[i, j]`` accumulates ``min(V'[i, k], V'[j, k])`` in float16 (each addition
  done in float32 and rounded) over ``k`` ascending; ``jac = 1 - temp / (2 - temp)`` in float16;
* ``final = float32(float16(jac * float16(1 - lambda))) + od * float32(lambda)``.

No Python loop runs over rows: the nearest neighbours come from a sampled threshold, one
comparison pass and a sort of the few candidates; the neighbour sets are array operations
on the (N, k) rank table; V is sparse (CSR); the float16 Jaccard accumulation loops over
the *position* within a query's support (about a hundred steps), each step updating every
query of a block at once; ``jac`` is a table lookup on the 65536 float16 values. Memory
beyond the (N, N) input and the (Q, G) output is O(N k) plus fixed-size blocks, processed
on a few threads.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from harness.evaluation.distance import squared_euclidean, to_numpy
from harness.evaluation.parallel import run_all
from harness.evaluation.sortkeys import pack_keys

__all__ = ["k_reciprocal_rerank", "rerank_from_distance", "stable_topk"]

# Distance entries per block of rows (nearest neighbours, final distances).
_BLOCK_ENTRIES = 1 << 22
# Rows per block of the neighbour-set computation.
_ROW_BLOCK = 2048
# Queries per block of the Jaccard accumulation.
_QUERY_BLOCK = 512
# Elements per torch float16 addition: below torch's parallel grain size (32768), so that
# torch never starts its own threads under ours (and never waits on a busy machine).
_TORCH_CHUNK = 32768


def k_reciprocal_rerank(query_feats, gallery_feats, k1: int = 20, k2: int = 6, lam: float = 0.3, *,
                        normalize: bool = False, device: str | None = "auto", workers: int | None = None) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from features (squared Euclidean underneath)."""
    q = to_numpy(query_feats, np.float32)
    feats = np.concatenate([q, to_numpy(gallery_feats, np.float32)], axis=0)
    dist_all = squared_euclidean(feats, None, normalize=normalize, device=device)
    return rerank_from_distance(dist_all, len(q), k1=k1, k2=k2, lam=lam, workers=workers)


def rerank_from_distance(dist_all, num_query: int, k1: int = 20, k2: int = 6, lam: float = 0.3, *,
                         workers: int | None = None) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from the (Q+G, Q+G) distance matrix of the
    queries followed by the gallery."""
    if int(k1) != k1 or k1 < 1 or int(k2) != k2 or k2 < 1:
        raise ValueError(f"k1 and k2 must be positive integers, got k1={k1}, k2={k2}")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    dist_all = np.ascontiguousarray(dist_all)
    if dist_all.dtype not in (np.float32, np.float64):
        dist_all = dist_all.astype(np.float32)
    if dist_all.ndim != 2 or dist_all.shape[0] != dist_all.shape[1]:
        raise ValueError(f"expected a square (N, N) distance matrix, got {dist_all.shape}")
    n = dist_all.shape[0]
    if not 0 < num_query < n:
        raise ValueError(f"num_query must be in 1..{n - 1}, got {num_query}")
    k1, k2 = int(k1), int(k2)
    rank, rowmax = _nearest(dist_all, min(max(k1 + 1, k2), n), workers)
    ptr, cols = _expansion_sets(rank, k1, workers)
    rows = np.repeat(np.arange(n), np.diff(ptr))
    w = np.exp(-(dist_all[rows, cols] / rowmax[rows]).astype(np.float32)).astype(np.float64)
    vals = (w / np.bincount(rows, weights=w, minlength=n)[rows]).astype(np.float16)
    del rows, w
    if k2 != 1:
        ptr, cols, vals = _query_expansion(ptr, cols, vals, rank[:, :k2])
    return _final_distances(dist_all, rowmax, num_query, ptr, cols, vals, float(lam), workers)


def stable_topk(dist: np.ndarray, k: int, workers: int | None = None) -> np.ndarray:
    """Indices (N, k) of the k smallest entries of each row, ascending, ties by lower index:
    the first k columns of a stable argsort, without sorting whole rows."""
    return _nearest(np.ascontiguousarray(dist), k, workers)[0]


def _nearest(dist: np.ndarray, k: int, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Stable top-k indices and the row maxima (divisor 1 where the maximum is not positive)."""
    n, m = dist.shape
    if not 0 < k <= m:
        raise ValueError(f"k must be in 1..{m}, got {k}")
    rank = np.empty((n, k), dtype=np.int64)
    rowmax = np.empty(n, dtype=dist.dtype)
    step = max(1, min(_BLOCK_ENTRIES // m, 1 << (32 - max(1, (m - 1).bit_length()))))
    run_all([partial(_nearest_block, dist, r0, min(n, r0 + step), k, rank, rowmax) for r0 in range(0, n, step)],
            workers)
    return rank, rowmax


def _nearest_block(dist: np.ndarray, r0: int, r1: int, k: int, rank: np.ndarray, rowmax: np.ndarray) -> None:
    """Rows [r0, r1): a threshold from a strided sample of each row (its k-th smallest is at
    least the row's), the entries under it as candidates, one sort of packed keys."""
    block = dist[r0:r1]
    b, m = block.shape
    if not np.isfinite(block).all():
        raise ValueError("the distance matrix holds NaN or infinite values")
    top = block.max(axis=1)
    rowmax[r0:r1] = np.where(top > 0, top, 1)
    stride = max(1, min(8, m // (4 * k)))
    sample = block[:, ::stride]
    tau = np.partition(sample, k - 1, axis=1)[:, k - 1] if stride > 1 else top
    flat = np.flatnonzero(block <= tau[:, None])
    rows = flat // m
    bits = max(1, (m - 1).bit_length())
    key = pack_keys(rows, block.reshape(-1)[flat], flat - rows * m, bits)
    key.sort()
    first = np.searchsorted(key, np.arange(b, dtype=np.uint64) << np.uint64(32 + bits))
    rank[r0:r1] = (key[first[:, None] + np.arange(k)] & np.uint64((1 << bits) - 1)).astype(np.int64)


def _reciprocal(table: np.ndarray, width: int) -> np.ndarray:
    """mask[i, a] = i is among the first ``width`` neighbours of table[i, a]."""
    sub = table[:, :width]
    mask = np.empty(sub.shape, dtype=bool)
    for r0 in range(0, len(sub), _ROW_BLOCK):
        back = sub[sub[r0:r0 + _ROW_BLOCK]]  # (b, width, width)
        mask[r0:r0 + _ROW_BLOCK] = (back == np.arange(r0, r0 + len(back))[:, None, None]).any(axis=2)
    return mask


def _expansion_sets(rank: np.ndarray, k1: int, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    """CSR (row_ptr, cols) of the expanded k-reciprocal sets E(i), columns ascending."""
    n = rank.shape[0]
    kk = min(k1 + 1, rank.shape[1])
    half = min(int(np.around(k1 / 2)) + 1, rank.shape[1])
    rmask = _reciprocal(rank, kk)  # R(i) = rank[i, :kk][rmask[i]]
    hmask = _reciprocal(rank, half)  # R_half(c) = rank[c, :half][hmask[c]]
    parts: list = [None] * ((n + _ROW_BLOCK - 1) // _ROW_BLOCK)

    def block(index: int) -> None:
        r0 = index * _ROW_BLOCK
        f = rank[r0:r0 + _ROW_BLOCK, :kk]  # (b, kk)
        rm = rmask[r0:r0 + _ROW_BLOCK]
        cand = rank[f, :half]  # (b, kk, half): the R_half candidates of every forward neighbour
        cmask = hmask[f]
        member = ((cand[..., None] == f[:, None, None, :]) & rm[:, None, None, :]).any(axis=3)  # in R(i)?
        include = rm & ((member & cmask).sum(axis=2) > 2 / 3 * cmask.sum(axis=2))
        # E(i) = R(i) plus the included R_half sets; -1 marks an unused slot
        allc = np.concatenate([np.where(rm, f, -1),
                               np.where(include[:, :, None] & cmask, cand, -1).reshape(len(f), -1)], axis=1)
        allc.sort(axis=1)
        keep = allc >= 0
        keep[:, 1:] &= allc[:, 1:] != allc[:, :-1]
        rr, slot = np.nonzero(keep)
        parts[index] = (rr + r0, allc[rr, slot])

    run_all([partial(block, i) for i in range(len(parts))], workers)
    rows = np.concatenate([p[0] for p in parts])
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    return ptr, np.concatenate([p[1] for p in parts])


def _query_expansion(ptr: np.ndarray, cols: np.ndarray, vals16: np.ndarray, nbrs: np.ndarray):
    """CSR of V' = float16(float32 sum of the rows ``nbrs[i]`` of V, in order, / k2)."""
    n, k2 = nbrs.shape
    tbits = max(1, (k2 - 1).bit_length())
    if n * n >= 1 << (63 - 16 - tbits):
        raise ValueError(f"re-ranking problem too large for packed keys (N = {n})")
    src = nbrs.reshape(-1)  # the t-th neighbour row of row i, (i, t) in row-major order
    seg = np.diff(ptr)[src]
    total = int(seg.sum())
    owner = np.repeat(np.arange(n * k2) // k2, seg)
    tpos = np.repeat(np.tile(np.arange(k2), n), seg)
    entry = np.repeat(ptr[src] - (np.cumsum(seg) - seg), seg) + np.arange(total)
    # keys (owner row, column, t, value bits): sorting groups each output entry's terms in t order
    key = (owner * n + cols[entry]).astype(np.uint64)
    del owner
    key <<= np.uint64(tbits)
    key |= tpos.astype(np.uint64)
    key <<= np.uint64(16)
    key |= vals16[entry].view(np.uint16).astype(np.uint64)
    del tpos, entry
    key.sort()
    pos = (key >> np.uint64(16 + tbits)).astype(np.int64)
    v = (key & np.uint64(0xFFFF)).astype(np.uint16).view(np.float16)
    del key
    new = np.ones(pos.size, dtype=bool)
    new[1:] = pos[1:] != pos[:-1]
    start = np.flatnonzero(new)
    length = np.diff(np.append(start, pos.size))
    acc = v[start].astype(np.float32)
    for step in range(1, int(length.max()) if length.size else 0):
        sel = np.flatnonzero(length > step)
        acc[sel] += v[start[sel] + step].astype(np.float32)
    out_rows, out_cols = np.divmod(pos[start], n)
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(out_rows, minlength=n), out=out_ptr[1:])
    return out_ptr, out_cols, (acc / np.float32(k2)).astype(np.float16)


def _jaccard_table(lam: float) -> np.ndarray:
    """float32(float16(jac * float16(1 - lam))) for every float16 bit pattern of temp,
    jac = 1 - temp / (2 - temp) in float16 -- the same operations on all 65536 values."""
    temp = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        jac = np.float16(1) - temp / (np.float16(2) - temp)
        return (jac * np.float16(1 - lam)).astype(np.float32)


def _final_distances(dist_all: np.ndarray, rowmax: np.ndarray, nq: int, ptr: np.ndarray, cols: np.ndarray,
                     vals: np.ndarray, lam: float, workers: int | None) -> np.ndarray:
    """(Q, G) float32 final distances, one block of queries at a time."""
    n = dist_all.shape[0]
    ng = n - nq
    # The gallery part of V' by column: for column k, its gallery rows (ascending) and values.
    # int32 indices where they fit: the accumulation below is bound by memory traffic.
    index = np.int32 if max(len(cols), _QUERY_BLOCK * ng) < 1 << 31 else np.int64
    row_of = np.repeat(np.arange(n), np.diff(ptr))
    sel = row_of >= nq
    order = np.argsort(cols[sel], kind="stable")  # stable: gallery rows stay ascending
    crow = (row_of[sel] - nq)[order].astype(index)
    cval = vals[sel][order].view(np.uint16)
    cptr = np.zeros(n + 1, dtype=index)
    np.cumsum(np.bincount(cols[sel], minlength=n), out=cptr[1:])
    del row_of, sel, order
    table = _jaccard_table(lam)
    out = np.empty((nq, ng), dtype=np.float32)
    args = (dist_all, rowmax, nq, ptr, cols, vals.view(np.uint16), cptr, crow, cval, table, np.float32(lam), out)
    run_all([partial(_final_block, q0, min(nq, q0 + _QUERY_BLOCK), *args) for q0 in range(0, nq, _QUERY_BLOCK)],
            workers)
    return out


def _final_block(q0: int, q1: int, dist_all, rowmax, nq, ptr, cols, vals, cptr, crow, cval, table, lam,
                 out) -> None:
    """Queries [q0, q1): temp in float16 (step s adds every query's s-th support column --
    within a step each (query, gallery) pair occurs once, and a pair's steps come in
    ascending column order), then final = table[temp] + od * lambda.

    V' values are handled as their uint16 bit patterns: for non-negative float16 values
    the integer minimum is the float minimum. The float16 addition runs in torch, whose
    CPU kernel does what NumPy's does (float32 sum, rounded to nearest even) with F16C
    conversions, an order of magnitude faster."""
    import torch

    ng = out.shape[1]
    temp = np.zeros((q1 - q0) * ng, dtype=np.float16)
    qlen = ptr[q0 + 1:q1 + 1] - ptr[q0:q1]
    order = np.argsort(-qlen, kind="stable")  # longest supports first: the active rows are a prefix
    qptr = ptr[q0:q1][order]
    qbase = (order * ng).astype(crow.dtype)
    neg_len = -qlen[order]
    clen = np.diff(cptr)
    for s in range(int(qlen.max()) if qlen.size else 0):
        na = int(np.searchsorted(neg_len, -s, side="left"))  # rows with more than s columns
        e = qptr[:na] + s
        k = cols[e]
        lens = clen[k]
        total = int(lens.sum())
        if total == 0:
            continue
        src = np.repeat(cptr[k] - (np.cumsum(lens, dtype=crow.dtype) - lens), lens) + np.arange(total, dtype=crow.dtype)
        tgt = np.repeat(qbase[:na], lens) + crow[src]
        cur = torch.from_numpy(temp[tgt])
        add = torch.from_numpy(np.minimum(np.repeat(vals[e], lens), cval[src]).view(np.float16))
        for c0 in range(0, total, _TORCH_CHUNK):  # chunks below torch's grain size run inline, unthreaded
            cur[c0:c0 + _TORCH_CHUNK].add_(add[c0:c0 + _TORCH_CHUNK])
        temp[tgt] = cur.numpy()
    final = table[temp.view(np.uint16)].reshape(q1 - q0, ng)
    od = dist_all[q0:q1, nq:] / rowmax[q0:q1, None]
    final += od.astype(np.float32, copy=False) * lam
    out[q0:q1] = final

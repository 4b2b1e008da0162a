"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised and memory-bounded.

The problem is the public code's: queries and gallery together (N = Q + G), k1 = 20,
k2 = 6, lambda = 0.3, V and the Jaccard accumulator in float16. The result equals the
straightforward per-row formulation (``tests/eval_reference.py``) bit for bit in float32
(hence in float16), because every rounding step is done in the same order:

* ``rank``: the first ``max(k1 + 1, k2)`` entries of a stable ascending sort of each row of
  the (N, N) distances (ties: lower index first);
* ``od[i, j] = d[i, j] / max_k d[i, k]`` in float32 (the divisor is 1 when the row maximum
  is not positive). The public code divides by the column maximum and transposes, the same
  thing for a symmetric matrix -- ours is exactly symmetric (see ``distance``);
* ``R(i)``: k-reciprocal neighbours among the first k1 + 1; expansion by the
  ``round(k1 / 2) + 1`` reciprocal sets of its members that share more than 2/3 of their
  elements with ``R(i)``;
* ``V[i, E(i)] = float16(w / sum(w))``, ``w = exp(-od)`` in float32, the sum in float64
  (exact for these values, so independent of order);
* query expansion: ``V'[i] = float16((V[r0] + ... + V[r_{k2-1}]) / k2)`` summed
  sequentially in float32 over the k2 nearest rows;
* Jaccard: ``temp[i, j]`` accumulates ``min(V'[i, k], V'[j, k])`` in float16 over ``k``
  ascending; ``jac = 1 - temp / (2 - temp)`` in float16;
* ``final = float32(float16(jac * float16(1 - lambda))) + od * float32(lambda)``.

No Python loop runs over rows: neighbour sets are built with array operations on the
(N, k) rank table, V is kept sparse (CSR), query expansion is a packed-key sort, and the
float16 Jaccard accumulation loops over the *position* inside a query's support (a few
hundred steps), each step updating every query of a block at once.
"""
from __future__ import annotations

import numpy as np

from harness.evaluation.distance import squared_euclidean, to_numpy

__all__ = ["k_reciprocal_rerank", "rerank_from_distance", "stable_topk"]

# Queries per block of the Jaccard accumulation.
_QUERY_BLOCK = 1024
# Rows per block of the neighbour-set computation.
_ROW_BLOCK = 2048


def k_reciprocal_rerank(query_feats, gallery_feats, k1: int = 20, k2: int = 6, lam: float = 0.3, *,
                        normalize: bool = False, dtype="float32", device: str | None = "auto") -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from features (squared Euclidean underneath)."""
    q = to_numpy(query_feats)
    g = to_numpy(gallery_feats)
    feats = np.concatenate([q.astype(dtype, copy=False), g.astype(dtype, copy=False)], axis=0)
    dist_all = squared_euclidean(feats, None, normalize=normalize, dtype=dtype, device=device)
    return rerank_from_distance(dist_all, len(q), k1=k1, k2=k2, lam=lam)


def _check_params(k1: int, k2: int, lam: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1 must be a positive integer, got {k1}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2 must be a positive integer, got {k2}")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")


def stable_topk(dist: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of the k smallest entries of each row, ascending, ties by lower index
    -- the first k columns of a stable argsort, without sorting whole rows."""
    n, m = dist.shape
    k = min(k, m)
    if k == m:
        return np.argsort(dist, axis=1, kind="stable")
    import torch

    out = np.empty((n, k), dtype=np.int64)
    block = max(1, (1 << 24) // m)
    for r0 in range(0, n, block):
        sub = dist[r0:r0 + block]
        vals, idx = torch.topk(torch.from_numpy(sub), k + 1, dim=1, largest=False, sorted=True)
        vals = vals.numpy()
        idx = idx.numpy()
        # Order the k selected by (value, index).
        order = np.lexsort((idx[:, :k], vals[:, :k]), axis=-1)
        sel = np.take_along_axis(idx[:, :k], order, axis=1)
        # Rows where the (k+1)-th smallest ties with the k-th: the selection itself is ambiguous.
        amb = np.flatnonzero(vals[:, k] == vals[:, k - 1])
        if amb.size:
            sel[amb] = np.argsort(sub[amb], axis=1, kind="stable")[:, :k]
        out[r0:r0 + block] = sel
    return out


def _reciprocal(table: np.ndarray, width: int) -> np.ndarray:
    """mask[i, a] = i is among the first ``width`` neighbours of table[i, a]."""
    n = table.shape[0]
    sub = table[:, :width]
    mask = np.empty(sub.shape, dtype=bool)
    for r0 in range(0, n, _ROW_BLOCK):
        r1 = min(n, r0 + _ROW_BLOCK)
        back = sub[sub[r0:r1]]  # (b, width, width)
        mask[r0:r1] = (back == np.arange(r0, r1)[:, None, None]).any(axis=2)
    return mask


def _expansion_sets(rank: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (row_ptr, cols) of the expanded k-reciprocal sets E(i), columns ascending."""
    n = rank.shape[0]
    kk = min(k1 + 1, rank.shape[1])
    half = min(int(np.around(k1 / 2)) + 1, rank.shape[1])
    fwd = rank[:, :kk]
    rmask = _reciprocal(rank, kk)  # R(i) = fwd[i][rmask[i]]
    hmask = _reciprocal(rank, half)  # R_half(c) = rank[c, :half][hmask[c]]
    hsub = rank[:, :half]
    row_list, col_list = [], []
    for r0 in range(0, n, _ROW_BLOCK):
        r1 = min(n, r0 + _ROW_BLOCK)
        f = fwd[r0:r1]  # (b, kk)
        rm = rmask[r0:r1]
        cand_sets = hsub[f]  # (b, kk, half): R_half candidates of every forward neighbour
        cand_mask = hmask[f]  # (b, kk, half)
        # membership of each candidate element in R(i)
        member = ((cand_sets[:, :, :, None] == f[:, None, None, :]) & rm[:, None, None, :]).any(axis=3)
        inter = (member & cand_mask).sum(axis=2)
        size = cand_mask.sum(axis=2)
        include = rm & (inter > 2 / 3 * size)
        b = r1 - r0
        # E(i) = R(i) plus the included R_half sets; -1 marks an unused slot
        base = np.where(rm, f, -1)
        extra = np.where(include[:, :, None] & cand_mask, cand_sets, -1).reshape(b, -1)
        allc = np.concatenate([base, extra], axis=1)
        allc.sort(axis=1)
        keep = allc >= 0
        keep[:, 1:] &= allc[:, 1:] != allc[:, :-1]
        rr, slot = np.nonzero(keep)
        row_list.append(rr + r0)
        col_list.append(allc[rr, slot])
    rows = np.concatenate(row_list)
    cols = np.concatenate(col_list)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    return ptr, cols


def _query_expansion(ptr, cols, vals16, rank, k2: int, n: int):
    """CSR of V' = float16(sequential float32 sum of the k2 nearest rows of V / k2)."""
    tbits = max(1, int(k2 - 1).bit_length())
    if (n * n) >= (1 << (64 - 16 - tbits - 1)):
        raise ValueError("re-ranking problem too large for packed keys")
    lengths = np.diff(ptr)
    nb = rank[:, :k2]  # (n, k2)
    src = nb.reshape(-1)  # neighbour row for (i, t) in row-major (i, t) order
    seg_len = lengths[src]
    total = int(seg_len.sum())
    owner = np.repeat(np.repeat(np.arange(n, dtype=np.int64), k2), seg_len)
    tpos = np.repeat(np.tile(np.arange(k2, dtype=np.int64), n), seg_len)
    starts = np.repeat(ptr[src], seg_len)
    offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    entry = starts + offs
    key = (owner * n + cols[entry]).astype(np.uint64)
    key <<= np.uint64(tbits)
    key |= tpos.astype(np.uint64)
    key <<= np.uint64(16)
    key |= vals16[entry].view(np.uint16).astype(np.uint64)
    del owner, tpos, starts, offs, entry
    key.sort()
    pos = (key >> np.uint64(16 + tbits)).view(np.int64)
    v = (key & np.uint64(0xFFFF)).astype(np.uint16).view(np.float16)
    del key
    new = np.ones(pos.size, dtype=bool)
    new[1:] = pos[1:] != pos[:-1]
    seg_start = np.flatnonzero(new)
    seg_len2 = np.diff(np.append(seg_start, pos.size))
    acc = v[seg_start].astype(np.float32)
    for step in range(1, int(seg_len2.max()) if seg_len2.size else 0):
        sel = np.flatnonzero(seg_len2 > step)
        acc[sel] = acc[sel] + v[seg_start[sel] + step].astype(np.float32)
    out_vals = (acc / np.float32(k2)).astype(np.float16)
    upos = pos[seg_start]
    out_rows = upos // n
    out_cols = upos - out_rows * n
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(out_rows, minlength=n), out=out_ptr[1:])
    return out_ptr, out_cols, out_vals


def _gallery_columns(ptr, cols, vals, num_query: int, n: int):
    """CSC restricted to gallery rows: for column k, (row - Q, value) pairs, rows ascending."""
    row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(ptr))
    sel = row_of >= num_query
    r = row_of[sel] - num_query
    c = cols[sel]
    v = vals[sel]
    order = np.lexsort((r, c))
    c = c[order]
    cptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(c, minlength=n), out=cptr[1:])
    return cptr, r[order], v[order]


def _jaccard_temp(ptr, cols, vals, cptr, crow, cval, num_query: int, num_gallery: int) -> np.ndarray:
    """temp[i, j] = float16 sum over k ascending of min(V'[i, k], V'[Q + j, k])."""
    temp = np.zeros((num_query, num_gallery), dtype=np.float16)
    flat = temp.reshape(-1)
    clen = np.diff(cptr)
    for q0 in range(0, num_query, _QUERY_BLOCK):
        q1 = min(num_query, q0 + _QUERY_BLOCK)
        qptr = ptr[q0:q1]
        qlen = ptr[q0 + 1:q1 + 1] - qptr
        if qlen.size == 0 or qlen.max() == 0:
            continue
        for s in range(int(qlen.max())):
            qi = np.flatnonzero(qlen > s)
            e = qptr[qi] + s
            k = cols[e]
            a = vals[e]
            lens = clen[k]
            tot = int(lens.sum())
            if tot == 0:
                continue
            seg0 = np.cumsum(lens) - lens
            offs = np.arange(tot, dtype=np.int64) - np.repeat(seg0, lens)
            src = np.repeat(cptr[k], lens) + offs
            target = np.repeat((qi + q0) * num_gallery, lens) + crow[src]
            flat[target] = flat[target] + np.minimum(np.repeat(a, lens), cval[src])
    return temp


def rerank_from_distance(dist_all, num_query: int, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from the (Q+G, Q+G) distance matrix of queries
    followed by gallery items."""
    _check_params(k1, k2, lam)
    dist_all = np.asarray(dist_all)
    if dist_all.dtype not in (np.float32, np.float64):
        dist_all = dist_all.astype(np.float32)
    if not dist_all.flags.c_contiguous:
        dist_all = np.ascontiguousarray(dist_all)
    n = dist_all.shape[0]
    if dist_all.ndim != 2 or dist_all.shape[1] != n:
        raise ValueError(f"expected a square (N, N) distance matrix, got {dist_all.shape}")
    if not 0 < num_query < n:
        raise ValueError(f"num_query must be in 1..{n - 1}, got {num_query}")
    num_gallery = n - num_query
    rank = stable_topk(dist_all, max(k1 + 1, k2))
    rowmax = dist_all.max(axis=1)
    rowmax = np.where(rowmax > 0, rowmax, dist_all.dtype.type(1))

    ptr, cols = _expansion_sets(rank, k1)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(ptr))
    od_vals = (dist_all[rows, cols] / rowmax[rows]).astype(np.float32)
    w = np.exp(-od_vals)
    w64 = w.astype(np.float64)
    total = np.bincount(rows, weights=w64, minlength=n)
    vals16 = (w64 / total[rows]).astype(np.float16)
    del rows, od_vals, w, w64
    if k2 != 1:
        ptr, cols, vals16 = _query_expansion(ptr, cols, vals16, rank, min(k2, rank.shape[1]), n)
    cptr, crow, cval = _gallery_columns(ptr, cols, vals16, num_query, n)
    temp = _jaccard_temp(ptr, cols, vals16, cptr, crow, cval, num_query, num_gallery)
    jac = np.float16(1) - temp / (np.float16(2) - temp)
    del temp
    final = (jac * np.float16(1 - lam)).astype(np.float32)
    del jac
    od_qg = (dist_all[:num_query, num_query:] / rowmax[:num_query, None]).astype(np.float32)
    final += od_qg * np.float32(lam)
    return final

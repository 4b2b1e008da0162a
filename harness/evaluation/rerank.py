"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), vectorised, threaded and memory-bounded.

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

Variants (``variant=``), which differ only in the distances the neighbours are ranked by:

* ``"standard"``: the distances themselves (Zhong et al.; the public IDKL code on RegDB
  and LLCM, ``eval_type=False``);
* ``"idkl-sysu"``: the public IDKL code's SYSU-MM01 call (``eval_type=True``), which sets
  every entry of a gallery column to the maximum of the whole matrix before ranking. In the
  stable order of such a row the query columns come first (their entries are at most that
  maximum and their indices lower), then the gallery columns in index order: ``rank`` is the
  stable top-k of the row's query part, padded with Q, Q + 1, ... when k > Q, and "i among
  the first w of x" compares with the maximum wherever a column is a gallery one. ``od``,
  the weights and the final distances still use the unmodified distances, as that code.

How (no Python loop runs over rows or queries, only over a bounded number of blocks or
steps):

* nearest neighbours, per block of rows: the row maxima and the minima of strided groups
  of columns (and of groups of those minima). Those minima are distinct entries of the
  row, so the k-th smallest of them, tau, is at least the row's k-th smallest entry: the
  entries up to tau (a few more than k per row, one comparison pass) hold the answer,
  sorted as (value code, column) keys in a padded (rows, width) matrix -- sorting many
  short rows is far faster than one flat sort;
* neighbour sets: "i is among the first w neighbours of x" is one comparison with the last
  of them, (d[x, i], i) <= (d[x, r], r); membership of R(i) is a bit table (N * N / 8
  bytes), so the 2/3 test costs O(N k^2) lookups; E(i) is sorted and de-duplicated in a
  padded matrix;
* query expansion: the k2 neighbour rows of V side by side as padded (column, t, value)
  keys, sorted per row, so that each entry's terms come together in t order, then summed
  one vectorised step per t;
* Jaccard: the gallery part of V' by column, in pages of a few entries (the last page of a
  column padded with a scratch cell and the value 0). For a block of queries, step s
  adds every query's s-th support column: within a step the cells are distinct, and a
  cell's steps come in ascending column order. The updates of consecutive steps are made
  at once (page-row gathers, a broadcast row offset and minimum); each step is then one
  float16 ``put_(accumulate=True)`` in torch. ``jac`` is a table lookup on the 65536
  float16 values.

Memory beyond the (N, N) input and the (Q, G) output is O(N k) arrays, the bit table and,
per thread, a block of about 2**21 float16 cells with a few MB of update indices. One pool
of threads serves all phases; the blocks are a multiple of the worker count, and the hot
loops call only NumPy and torch functions that release the GIL (np.repeat holds it:
segments come from cumulative sums instead).
"""
from __future__ import annotations

from functools import lru_cache, partial

import numpy as np

from vireid.harness.evaluation.distance import squared_euclidean, to_numpy
from vireid.harness.evaluation.parallel import Workers, balanced_blocks
from vireid.harness.evaluation.ragged import owners, segments
from vireid.harness.evaluation.sortkeys import order_codes

__all__ = ["VARIANTS", "k_reciprocal_rerank", "rerank_from_distance", "stable_topk"]

# What the neighbours are ranked by (module docstring): the distances, or the public IDKL
# code's SYSU-MM01 ranking distances (gallery columns set to the matrix maximum).
VARIANTS = ("standard", "idkl-sysu")

# Distance entries per block of rows (nearest neighbours).
_BLOCK_ENTRIES = 1 << 20
# Largest group of the threshold: the k-th smallest of the group minima bounds the k-th smallest.
_GROUP = 16
# Rows per block of the neighbour-set computation.
_ROW_BLOCK = 2048
# Padded terms per block of the query expansion.
_QE_ENTRIES = 1 << 17
# Jaccard accumulation: at most about this many (query, gallery) cells per query block ...
_QUERY_BLOCK_CELLS = 1 << 21
# ... and at most about this many pages of updates (the block's page lists) ...
_BLOCK_PAGES = 1 << 20
# ... and about this many updates generated at once (index arrays that stay in cache).
_UPDATE_CHUNK = 1 << 18
# Choice of the page size of the gallery lists: the cost of a page beyond its entries.
_PAGE_OVERHEAD = 2
# (query, gallery) cells per piece of the final epilogue.
_EPILOGUE_CELLS = 1 << 16
_NONE = np.iinfo(np.int64).max
_FILL = np.uint64(np.iinfo(np.uint64).max)


def k_reciprocal_rerank(query_feats, gallery_feats, k1: int = 20, k2: int = 6, lam: float = 0.3, *,
                        variant: str = "standard", normalize: bool = False, device: str | None = "auto",
                        workers: int | None = None) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from features (squared Euclidean underneath)."""
    q = to_numpy(query_feats, np.float32)
    feats = np.concatenate([q, to_numpy(gallery_feats, np.float32)], axis=0)
    dist_all = squared_euclidean(feats, None, normalize=normalize, device=device)
    return rerank_from_distance(dist_all, len(q), k1=k1, k2=k2, lam=lam, variant=variant, workers=workers)


def rerank_from_distance(dist_all, num_query: int, k1: int = 20, k2: int = 6, lam: float = 0.3, *,
                         variant: str = "standard", workers: int | None = None) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from the (Q+G, Q+G) distance matrix of the
    queries followed by the gallery; ``variant`` is one of VARIANTS (module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown re-ranking variant {variant!r}; expected one of: {', '.join(VARIANTS)}")
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
    # idkl-sysu: neighbours among the query columns; gallery columns rank as the matrix maximum
    ncol = num_query if variant == "idkl-sysu" else n
    with Workers(workers) as threads:
        rank, top = _nearest(dist_all, min(max(k1 + 1, k2), n), threads, ncol)
        rowmax = np.where(top > 0, top, dist_all.dtype.type(1))
        ptr, cols = _expansion_sets(dist_all, rank, k1, threads, ncol, top.max())
        rows = np.repeat(np.arange(n), np.diff(ptr))
        w = np.exp(-(dist_all[rows, cols] / rowmax[rows]).astype(np.float32)).astype(np.float64)
        vals = (w / np.bincount(rows, weights=w, minlength=n)[rows]).astype(np.float16)
        del rows, w
        if k2 != 1:
            ptr, cols, vals = _query_expansion(ptr, cols, vals, rank[:, :k2], threads)
        return _final_distances(dist_all, rowmax, num_query, ptr, cols, vals, float(lam), threads)


def stable_topk(dist: np.ndarray, k: int, workers: int | None = None) -> np.ndarray:
    """Indices (N, k) of the k smallest entries of each row, ascending, ties by lower index:
    the first k columns of a stable argsort, without sorting whole rows."""
    dist = np.ascontiguousarray(dist)
    with Workers(workers) as threads:
        return _nearest(dist, k, threads, dist.shape[1])[0]


def _row_sort(parts, nrows: int, fill) -> np.ndarray:
    """(nrows, W) matrix whose row r holds the keys of every part's ``rows == r``, sorted,
    then ``fill``. Each part is (rows, keys) with rows non-decreasing. Sorting the rows of
    a padded matrix is many times faster than one sort of the flat keys."""
    counts = [np.bincount(rows, minlength=nrows) for rows, _ in parts]
    total = np.sum(counts, axis=0)
    width = max(1, int(total.max()) if total.size else 1)
    mat = np.full((nrows, width), fill, dtype=parts[0][1].dtype)
    flat = mat.reshape(-1)
    offset = np.zeros(nrows, dtype=np.int64)
    for (rows, keys), cnt in zip(parts, counts):
        start = np.cumsum(cnt) - cnt
        flat[rows * width + offset[rows] + (np.arange(len(rows)) - start[rows])] = keys
        offset += cnt
    mat.sort(axis=1)
    return mat


# ------------------------------------------------------------------ nearest neighbours
def _nearest(dist: np.ndarray, k: int, threads: Workers, ncol: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable top-k indices of the rows as ranked with every column from ``ncol`` on set to
    the matrix maximum (``ncol = m``: the rows as they are), and the maxima of the rows as
    they are; in blocks of about _BLOCK_ENTRIES entries (they stay in cache for the passes)."""
    n, m = dist.shape
    if not 0 < k <= m:
        raise ValueError(f"k must be in 1..{m}, got {k}")
    rank = np.empty((n, k), dtype=np.int64)
    top = np.empty(n, dtype=dist.dtype)
    threads([partial(_nearest_block, dist, r0, r1, k, ncol, rank, top)
             for r0, r1 in balanced_blocks(n, _BLOCK_ENTRIES // m, threads.workers)])
    return rank, top


def _group_min(x: np.ndarray, c: int) -> np.ndarray:
    """(b, w // c) minima of the groups of the columns of x: group g holds the columns
    g + t * (w // c), t = 0, 1, ... (c or c + 1 of them)."""
    b, w = x.shape
    ng = w // c
    out = x[:, :ng * c].reshape(b, c, ng).min(axis=1)
    if ng * c < w:
        np.minimum(out[:, :w - ng * c], x[:, ng * c:], out=out[:, :w - ng * c])
    return out


def _nearest_block(dist: np.ndarray, r0: int, r1: int, k: int, ncol: int, rank: np.ndarray, top: np.ndarray) -> None:
    """Rows [r0, r1). The minima of groups of columns (and of groups of those minima) are
    distinct entries of the row, so the k-th smallest of them, tau, is at least the row's
    k-th smallest entry: the entries up to tau (a few more than k per row, found by one
    comparison pass) hold the answer, sorted as (value code, column) keys -- the order of
    a stable sort.

    With ``ncol < m`` the ranking is that of the first ``ncol`` columns (every later column
    ranks as the matrix maximum, which no entry exceeds, and after them by index): their
    stable top-k, then the columns ncol, ncol + 1, ... where k > ncol."""
    block = dist[r0:r1]
    b, m = block.shape
    top[r0:r1] = block.max(axis=1)
    sub = block if ncol == m else np.ascontiguousarray(block[:, :ncol])
    kk = min(k, ncol)
    c1 = max(1, min(_GROUP, ncol // (2 * kk)))
    mins = _group_min(sub, c1)
    c2 = max(1, min(4, mins.shape[1] // (2 * kk)))
    mins2 = _group_min(mins, c2)
    # NaN propagates through max and min, -inf shows in a group minimum, +inf in the maximum
    finite = np.isfinite(top[r0:r1]).all() and np.isfinite(mins2).all()
    if ncol < m:  # -inf in a column the ranking does not read
        finite = finite and np.isfinite(block[:, ncol:].min(axis=1)).all()
    if not finite:
        raise ValueError("the distance matrix holds NaN or infinite values")
    tau = np.partition(mins2, kk - 1, axis=1)[:, kk - 1]
    flat = np.flatnonzero(sub <= tau[:, None])
    rows = flat // ncol
    cols = flat - rows * ncol
    key = order_codes(sub.reshape(-1)[flat]).astype(np.uint64)
    key <<= np.uint64(32)
    key |= cols.astype(np.uint64)
    mat = _row_sort([(rows, key)], b, _FILL)
    rank[r0:r1, :kk] = (mat[:, :kk] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    rank[r0:r1, kk:] = np.arange(ncol, ncol + k - kk)


# ----------------------------------------------------------------------- neighbour sets
def _expansion_sets(dist: np.ndarray, rank: np.ndarray, k1: int, threads: Workers, ncol: int,
                    fill) -> tuple[np.ndarray, np.ndarray]:
    """CSR (row_ptr, cols) of the expanded k-reciprocal sets E(i), columns ascending.

    "i is among the first w neighbours of x" is one comparison with the last of them: in the
    stable order it holds iff (d[x, i], i) <= (d[x, r], r), r = rank[x, w - 1], where d is
    the ranking distance: ``fill`` (the matrix maximum) in the columns from ``ncol`` on.
    Membership of R(i) is a bit table (N * N / 8 bytes). Two passes over blocks of rows: the
    reciprocal masks (and the table's rows), then the sets."""
    n, m = dist.shape
    flat = dist.reshape(-1)
    kk = min(k1 + 1, rank.shape[1])
    half = min(int(np.around(k1 / 2)) + 1, rank.shape[1])
    me = np.arange(n)
    last = (rank[:, kk - 1], rank[:, half - 1])  # the last of the first kk (half) neighbours ...
    lastd = tuple(flat[me * m + r] if ncol == m else np.where(r >= ncol, fill, flat[me * m + r])
                  for r in last)  # ... and its ranking distance
    nb = (n + 7) // 8
    table = np.zeros(n * nb, dtype=np.uint8)  # bit c of row i: c in R(i)
    hmask = np.empty((n, half), dtype=bool)  # R_half(c) = rank[c, :half][hmask[c]]
    hcount = np.empty(n, dtype=np.int64)
    blocks = balanced_blocks(n, _ROW_BLOCK, threads.workers)
    pairs: list = [None] * len(blocks)
    threads([partial(_reciprocal_block, j, r0, r1, flat, m, ncol, fill, rank[:, :kk], half, last, lastd, table, nb,
                     hmask, hcount, pairs) for j, (r0, r1) in enumerate(blocks)])
    parts: list = [None] * len(blocks)
    threads([partial(_sets_block, j, *pairs[j], rank[:, :half], hmask, hcount, table, nb, parts)
             for j in range(len(blocks))])
    rows = np.concatenate([p[0] for p in parts])
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    return ptr, np.concatenate([p[1] for p in parts])


def _reciprocal_block(j: int, r0: int, r1: int, flat, m, ncol, fill, forward, half, last, lastd, table, nb, hmask,
                      hcount, pairs) -> None:
    """Rows [r0, r1): the pairs (i, c), c in R(i) (rows ascending), their bits in the table,
    and hmask, hcount. The first ``half`` columns share the distances d[x, i] with R; the
    ranking distance of a row i >= ncol (a column of x) is ``fill``."""
    x = forward[r0:r1]
    i = np.arange(r0, r1)[:, None]
    d = flat.take(x * m + i)
    if r1 > ncol:
        d[max(0, ncol - r0):] = fill
    lv, li = lastd[0].take(x), last[0].take(x)
    rm = (d < lv) | ((d == lv) & (i <= li))
    xh, dh = x[:, :half], d[:, :half]
    lv, li = lastd[1].take(xh), last[1].take(xh)
    hm = (dh < lv) | ((dh == lv) & (i <= li))
    hmask[r0:r1] = hm
    hcount[r0:r1] = hm.sum(axis=1)
    flat = np.flatnonzero(rm)
    pi, pc = flat // x.shape[1] + r0, x.reshape(-1).take(flat)
    np.bitwise_or.at(table, pi * nb + (pc >> 3), np.left_shift(1, pc & 7).astype(np.uint8))
    pairs[j] = (pi, pc)


def _sets_block(j: int, i, c, rhalf, hmask, hcount, table, nb, parts) -> None:
    """E(i) for the pairs (i, c), c in R(i), of some rows: R(i) plus the R_half(c) that
    share more than 2/3 of their elements with R(i); only their elements outside R(i) are
    new."""
    if len(i) == 0:
        parts[j] = (i, c)
        return
    cand = rhalf[c]  # (p, half): R_half(c) = cand[cmask]
    cmask = hmask[c]
    member = ((table[(i * nb)[:, None] + (cand >> 3)] >> (cand & 7).astype(np.uint8)) & 1).view(bool)
    member &= cmask  # in R_half(c) and in R(i)
    include = member.sum(axis=1) > 2 / 3 * hcount[c]
    extra = include[:, None] & cmask & ~member
    flat = np.flatnonzero(extra)
    r0 = int(i[0])
    mat = _row_sort([(i - r0, c), (i.take(flat // extra.shape[1]) - r0, cand.reshape(-1).take(flat))],
                    int(i[-1]) - r0 + 1, _NONE)
    keep = mat != _NONE
    keep[:, 1:] &= mat[:, 1:] != mat[:, :-1]
    flat = np.flatnonzero(keep)
    parts[j] = (flat // mat.shape[1] + r0, mat.reshape(-1).take(flat))


# --------------------------------------------------------------------- query expansion
def _query_expansion(ptr: np.ndarray, cols: np.ndarray, vals16: np.ndarray, nbrs: np.ndarray, threads: Workers):
    """CSR of V' = float16(float32 sum of the rows ``nbrs[i]`` of V, in order, / k2).

    V's rows become padded rows of (column, value bits) keys; a row of V' is the sort of
    its k2 neighbours' rows side by side with the position t in between, so that each
    output entry's terms come together, in t order."""
    n, k2 = nbrs.shape
    tbits = max(1, (k2 - 1).bit_length())
    shift = 16 + tbits
    if n >= 1 << (63 - shift):
        raise ValueError(f"re-ranking problem too large for packed keys (N = {n})")
    lens = np.diff(ptr)
    width = max(1, int(lens.max()))
    owner = owners(lens)
    padded = np.full(n * width, _FILL, dtype=np.uint64)
    key = cols.astype(np.uint64)
    key <<= np.uint64(shift)
    key |= vals16.view(np.uint16)
    padded[owner * width + (np.arange(len(owner)) - ptr[owner])] = key
    padded = padded.reshape(n, width)
    del owner, key
    blocks = balanced_blocks(n, max(1, _QE_ENTRIES // (k2 * width)), threads.workers)
    parts: list = [None] * len(blocks)
    threads([partial(_qe_block, j, r0, r1, padded, lens, nbrs, tbits, parts) for j, (r0, r1) in enumerate(blocks)])
    out_rows = np.concatenate([p[0] for p in parts])
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(out_rows, minlength=n), out=out_ptr[1:])
    return out_ptr, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def _qe_block(j, r0, r1, padded, lens, nbrs, tbits, parts) -> None:
    """V' for the rows [r0, r1): sort the padded keys of the k2 neighbour rows, keep the real
    (leading) ones, sum each run of one column in t order (float32), divide, round."""
    b, k2 = r1 - r0, nbrs.shape[1]
    shift = 16 + tbits
    mat = padded.take(nbrs[r0:r1], axis=0)  # (b, k2, width)
    mat |= (np.arange(k2, dtype=np.uint64) << np.uint64(16))[:, None]  # the fill stays the fill
    mat = mat.reshape(b, -1)
    mat.sort(axis=1)
    total = lens.take(nbrs[r0:r1]).sum(axis=1)  # the first `total` keys of each row are real
    rr = owners(total)
    key = mat.reshape(-1).take(segments(np.arange(b) * mat.shape[1], total, rr))
    col = (key >> np.uint64(shift)).astype(np.int64)
    v = (key & np.uint64(0xFFFF)).astype(np.uint16).view(np.float16)
    new = np.ones(len(key), dtype=bool)
    new[1:] = (col[1:] != col[:-1]) | (rr[1:] != rr[:-1])
    start = np.flatnonzero(new)
    length = np.diff(np.append(start, len(key)))
    acc = v.take(start).astype(np.float32)
    for step in range(1, int(length.max()) if length.size else 0):
        sel = np.flatnonzero(length > step)
        acc[sel] += v.take(start.take(sel) + step).astype(np.float32)
    acc /= np.float32(k2)
    parts[j] = (rr.take(start) + r0, col.take(start), acc.astype(np.float16))


# --------------------------------------------------------------------- final distances
@lru_cache(maxsize=8)
def _jaccard_table(lam: float) -> np.ndarray:
    """float32(float16(jac * float16(1 - lam))) for every float16 bit pattern of temp,
    jac = 1 - temp / (2 - temp) in float16 -- the same operations on all 65536 values."""
    temp = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        jac = np.float16(1) - temp / (np.float16(2) - temp)
        table = (jac * np.float16(1 - lam)).astype(np.float32)
    table.flags.writeable = False
    return table


def _stable_order(keys: np.ndarray, bits: int) -> np.ndarray:
    """A stable argsort of non-negative integer keys below 2**bits: 16-bit radix passes
    (NumPy's stable sort of 16-bit keys is a radix sort, of wider ones a merge sort)."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    for shift in range(16, bits, 16):
        order = order[np.argsort(((keys[order] >> shift) & 0xFFFF).astype(np.uint16), kind="stable")]
    return order


def _final_distances(dist_all: np.ndarray, rowmax: np.ndarray, nq: int, ptr: np.ndarray, cols: np.ndarray,
                     vals: np.ndarray, lam: float, threads: Workers) -> np.ndarray:
    """(Q, G) float32 final distances, in blocks of queries of equal work.

    The gallery part of V' is stored by column in pages of ``page`` entries: for column k,
    its gallery rows (ascending) and values, the last page padded with a scratch column
    (index G) and value 0, so that a query's update list for column k is a few whole rows
    of a table (a row gather is several times faster than an element gather). Adding 0 to
    the scratch cell changes nothing."""
    n = dist_all.shape[0]
    ng = n - nq
    g0 = int(ptr[nq])
    gcol = cols[g0:]
    order = _stable_order(gcol, max(1, (n - 1).bit_length()))  # by column, gallery rows ascending
    clen = np.bincount(gcol, minlength=n)
    # updates of each query entry (i, k): the gallery entries of column k
    seg = clen[cols[:g0]]
    page = _page_size(seg)
    npg = -(-clen // page)
    pstart = np.cumsum(npg) - npg
    sorted_col = gcol[order]
    rank_in_col = np.arange(len(order)) - (np.cumsum(clen) - clen)[sorted_col]
    slot = (pstart[sorted_col] * page + rank_in_col)
    pj = np.full(int(npg.sum()) * page, ng, dtype=np.int64)  # scratch column for the padding
    pv = np.zeros(int(npg.sum()) * page, dtype=np.uint16)
    pj[slot] = (np.repeat(np.arange(ng), np.diff(ptr[nq:])))[order]
    pv[slot] = vals[g0:].view(np.uint16)[order]
    pj = pj.reshape(-1, page)
    pv = pv.reshape(-1, page)
    del gcol, order, sorted_col, rank_in_col, slot
    # cut the queries into blocks of equal work (pages), bounded in cells and in pages
    work = np.concatenate([[0], np.cumsum(npg[cols[:g0]])])[ptr[:nq + 1]]  # cumulative pages
    count = min(nq, max(2 * threads.workers, -(-nq * (ng + 1) // _QUERY_BLOCK_CELLS),
                        -(-int(work[-1]) // _BLOCK_PAGES)))
    cuts = np.searchsorted(work, np.linspace(0, work[-1], count + 1)[1:-1])
    edges = [0, *np.unique(cuts[(cuts > 0) & (cuts < nq)]).tolist(), nq]
    table = _jaccard_table(lam)
    out = np.empty((nq, ng), dtype=np.float32)
    args = (dist_all, rowmax, nq, ptr, cols, vals.view(np.uint16), pstart, npg, pj, pv, table, np.float32(lam), out)
    threads([partial(_final_block, q0, q1, *args) for q0, q1 in zip(edges[:-1], edges[1:]) if q1 > q0])
    return out


def _page_size(seg: np.ndarray) -> int:
    """The page size with the least estimated cost: padded updates plus a per-page overhead."""
    best, choice = None, 1
    hist = np.bincount(seg)
    length = np.arange(len(hist))
    for page in (1, 2, 4, 8, 16, 32):
        pages = int(hist @ (-(-length // page)))
        cost = pages * (page + _PAGE_OVERHEAD)
        if best is None or cost < best:
            best, choice = cost, page
    return choice


def _final_block(q0: int, q1: int, dist_all, rowmax, nq, ptr, cols, vals, pstart, npg, pj, pv, table, lam,
                 out) -> None:
    """Queries [q0, q1): temp in float16 (step s adds every query's s-th support column --
    within a step each (query, gallery) pair occurs once, and a pair's steps come in
    ascending column order), then final = table[temp] + od * lambda.

    The (target, value) updates of consecutive steps are generated at once in step-major
    order: rows of the page tables, plus the query's row offset, and the minimum with the
    query's value. V' values are handled as their uint16 bit patterns: for non-negative
    float16 values the integer minimum is the float minimum. Each step is then one torch
    ``put_(accumulate=True)`` on the float16 temp: the float16 addition of torch's CPU
    kernels is NumPy's (float32 sum, rounded to nearest even). Within a step only the
    scratch cells (one per query, column G) repeat, and they only ever receive 0, so the
    result does not depend on the order in which put_ applies a step's updates."""
    import torch

    ng = out.shape[1]
    width = ng + 1  # + the scratch column
    page = pj.shape[1]
    b = q1 - q0
    temp = np.zeros(b * width, dtype=np.float16)
    qlen = ptr[q0 + 1:q1 + 1] - ptr[q0:q1]
    order = np.argsort(-qlen, kind="stable")  # longest supports first: the active rows are a prefix
    slen = qlen[order]
    steps = int(slen[0]) if b else 0
    if steps:
        live = np.arange(steps) < slen[:, None]  # (b, steps)
        entry = (ptr[q0:q1][order][:, None] + np.arange(steps)).T[live.T]  # step-major
        base = np.broadcast_to((order.astype(np.int64) * width)[:, None], live.shape).T[live.T]
        k = cols.take(entry)
        counts = npg.take(k)
        owner = owners(counts)  # the entry of every page
        pages = segments(pstart.take(k), counts, owner)  # the page rows of every entry, step-major
        pbase = base.take(owner)
        pval = vals.take(entry).take(owner)
        del entry, base, k, owner
        ebound = np.zeros(steps + 1, dtype=np.int64)
        np.cumsum(live.sum(axis=0), out=ebound[1:])
        cum = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=cum[1:])
        pbound = cum[ebound]  # page offsets of the steps
        chunk = max(1, _UPDATE_CHUNK // page)
        temp_t = torch.from_numpy(temp)
        s0 = 0
        while s0 < steps:
            # consecutive steps, about _UPDATE_CHUNK updates (at least one step)
            s1 = min(steps, max(s0 + 1, int(np.searchsorted(pbound, pbound[s0] + chunk, side="right")) - 1))
            p0, p1 = pbound[s0], pbound[s1]
            tgt = pj.take(pages[p0:p1], axis=0)
            tgt += pbase[p0:p1, None]
            val = pv.take(pages[p0:p1], axis=0)
            np.minimum(val, pval[p0:p1, None], out=val)
            tgt_t = torch.from_numpy(tgt.reshape(-1))
            val_t = torch.from_numpy(val.reshape(-1).view(np.float16))
            for s in range(s0, s1):  # one step: distinct cells (but the scratch ones, which get 0)
                u0, u1 = (pbound[s] - p0) * page, (pbound[s + 1] - p0) * page
                temp_t.put_(tgt_t[u0:u1], val_t[u0:u1], accumulate=True)
            s0 = s1
    # final = table[temp] + od * lambda, a few rows at a time (buffers that stay in cache)
    temp = temp.view(np.uint16).reshape(b, width)
    rows = max(1, _EPILOGUE_CELLS // max(1, ng))
    od = np.empty((min(rows, b), ng), dtype=dist_all.dtype)
    for r0 in range(0, b, rows):
        r1 = min(b, r0 + rows)
        part = out[q0 + r0:q0 + r1]
        np.take(table, temp[r0:r1, :ng], out=part, mode="wrap")
        o = od[:r1 - r0]
        np.divide(dist_all[q0 + r0:q0 + r1, nq:], rowmax[q0 + r0:q0 + r1, None], out=o)
        o = o.astype(np.float32, copy=False)
        o *= lam
        part += o

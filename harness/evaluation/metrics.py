"""Ranking metrics (CMC, mAP, mINP) from a query x gallery distance matrix, vectorised.

Semantics (the public VI-ReID evaluation code's; docs/evaluation.md has worked examples):

* **Dropped entries.** A gallery entry is ignored for a query when both cameras are at the
  same *location* (``locations`` maps a camera to its location; an unmapped camera is its
  own location). SYSU-MM01: camera 3 is at camera 2's location. Columns outside the
  trial's gallery (``trial_masks``) are ignored too.
* **Order.** Ascending distance; ties are broken by gallery column, lower first (the order
  of a *stable* sort of the row). The public code uses NumPy's default, unstable sort, so
  it may order exact ties differently.
* **AP** over all remaining entries (no de-duplication): the mean over the true matches of
  ``m / rank_m``. **INP** = (number of true matches) / (rank of the hardest true match).
* **CMC** keeps the first occurrence of every identity in rank order: a query's CMC rank is
  1 + the number of distinct wrong identities ranked before its first true match. The
  curve has one point per identity of the trial's gallery; a query never needs more, so
  fewer identities left after dropping entries (indoor search) is no problem.
* **Skipped queries**: a query without a true match among its remaining entries is left
  out of every mean and counted.

Algorithm: no row is sorted whole, and the trials of a protocol share the work. For one
location group the allowed gallery columns of all trials are laid out by (identity,
column), so each identity is a contiguous segment and a query's true matches are one
segment. For a block of query rows:

1. the true matches are gathered (a few per row); per trial, the hardest one's distance;
2. one comparison pass keeps the entries not farther than the hardest true match of any
   trial (of its own trial, for a column of a single trial) -- the only ones that can
   affect a metric;
3. those entries are sorted once, for all trials (packed (row, distance, column) keys);
4. per trial, a running count of the trial's columns along that order (several trials
   packed per 64-bit word) is the rank of each true match: AP and INP follow; the
   identities of the trial's entries before its first true match give the CMC rank.

Entries after the hardest true match are never sorted. Blocks are bounded in size (memory)
and run on a few threads.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Mapping

import numpy as np

from harness.evaluation.parallel import run_all
from harness.evaluation.sortkeys import distinct, pack_keys

__all__ = ["SYSU_LOCATIONS", "TrialRanking", "camera_locations", "rank_trials", "summarize", "compute_metrics"]

# SYSU-MM01: camera 3 (indoor infrared) is at the location of camera 2 (indoor visible).
SYSU_LOCATIONS: dict[int, int] = {3: 2}

# Distance entries per block of query rows (bounds the temporaries to a few MB per thread).
_BLOCK_ENTRIES = 1 << 19
# Trials ranked together (one bit each in a column's trial mask).
_MAX_TRIALS = 64


@dataclass
class TrialRanking:
    """Per-query results of one trial; skipped queries hold NaN (ap, inp) and 0 (cmc_rank)."""

    valid: np.ndarray  # (Q,) bool: the query has a true match among its remaining entries
    ap: np.ndarray  # (Q,) float64
    inp: np.ndarray  # (Q,) float64
    cmc_rank: np.ndarray  # (Q,) int64, 1-based rank of the first true match after de-duplication
    num_matches: np.ndarray  # (Q,) int64, true matches among the remaining entries
    num_identities: int  # distinct identities of the trial's gallery (length of the CMC curve)


def _as_1d(a, name: str, length: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name} must be 1-D of length {length} (the distance matrix), got shape {arr.shape}")
    return arr


def _as_distance(dist) -> np.ndarray:
    dist = np.asarray(dist)
    if dist.ndim != 2 or 0 in dist.shape:
        raise ValueError(f"the distance matrix must be 2-D and non-empty, got shape {dist.shape}")
    if dist.dtype != np.float32 and dist.dtype != np.float64:
        dist = dist.astype(np.float32 if dist.dtype == np.float16 else np.float64)
    if not np.isfinite(dist).all():
        raise ValueError("the distance matrix holds NaN or infinite values")
    return dist


def camera_locations(cams, locations: Mapping[int, int] | None) -> np.ndarray:
    """The location of every camera (``locations`` maps camera -> location; others are their own)."""
    cams = np.asarray(cams).astype(np.int64)
    out = cams.copy()
    for cam, where in (locations or {}).items():
        out[cams == int(cam)] = int(where)
    return out


def rank_trials(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                locations: Mapping[int, int] | None = None, trial_masks=None,
                workers: int | None = None) -> list[TrialRanking]:
    """Per-query AP, INP and CMC rank for each trial.

    ``dist`` (Q, G); ``trial_masks`` (T, G) bool selects the gallery columns of each trial
    (``None``: one trial over every column). Without cameras nothing is dropped.
    """
    dist = _as_distance(dist)
    nq, ng = dist.shape
    q_ids = _as_1d(query_ids, "query_ids", nq)
    g_ids = _as_1d(gallery_ids, "gallery_ids", ng)
    masks = np.ones((1, ng), dtype=bool) if trial_masks is None else np.atleast_2d(np.asarray(trial_masks, dtype=bool))
    if masks.ndim != 2 or masks.shape[1] != ng:
        raise ValueError(f"trial masks must be (trials, {ng}), got shape {masks.shape}")
    col_bits = max(1, int(ng - 1).bit_length())
    if col_bits > 30:
        raise ValueError(f"gallery too large for the packed ranking keys ({ng} columns)")

    uniq, g_lab = np.unique(g_ids, return_inverse=True)
    g_lab = g_lab.reshape(-1)
    pos = np.minimum(np.searchsorted(uniq, q_ids), len(uniq) - 1)
    q_lab = np.where(uniq[pos] == q_ids, pos, -1)  # -1: identity absent from the gallery
    if query_cams is None or gallery_cams is None:
        q_group, group_locs, g_loc = np.zeros(nq, dtype=np.int64), np.zeros(1, dtype=np.int64), None
    else:
        q_loc = camera_locations(_as_1d(query_cams, "query_cams", nq), locations)
        g_loc = camera_locations(_as_1d(gallery_cams, "gallery_cams", ng), locations)
        group_locs, q_group = np.unique(q_loc, return_inverse=True)
        q_group = q_group.reshape(-1)
    # Queries grouped by location, so that every block of rows is a slice of the matrix.
    row_order = np.argsort(q_group, kind="stable")
    bounds = np.searchsorted(q_group[row_order], np.arange(len(group_locs) + 1))
    grouped = dist if np.all(row_order[1:] > row_order[:-1]) else dist[row_order]

    shape = (len(masks), nq)
    res = {"ap": np.full(shape, np.nan), "inp": np.full(shape, np.nan), "cmc_rank": np.zeros(shape, dtype=np.int64),
           "num_matches": np.zeros(shape, dtype=np.int64)}
    tasks = []
    for t0 in range(0, len(masks), _MAX_TRIALS):
        chunk = masks[t0:t0 + _MAX_TRIALS]
        bits = np.zeros(ng, dtype=np.uint64)  # bit t: the column belongs to trial t0 + t
        for t, mask in enumerate(chunk):
            bits |= mask.astype(np.uint64) << np.uint64(t)
        out = {k: v[t0:t0 + len(chunk)] for k, v in res.items()}
        for gi, loc in enumerate(group_locs):
            cols = np.flatnonzero(bits if g_loc is None else bits * (g_loc != loc))
            if cols.size == 0:
                continue
            trials = _Trials(bits, len(chunk), cols, g_lab, len(uniq))
            step = max(1, min(_BLOCK_ENTRIES // cols.size, 1 << (31 - col_bits)))
            for r0 in range(bounds[gi], bounds[gi + 1], step):
                r1 = min(r0 + step, bounds[gi + 1])
                tasks.append(partial(_rank_block, grouped[r0:r1], row_order[r0:r1], trials, q_lab, g_lab, col_bits,
                                     out))
    run_all(tasks, workers)
    return [TrialRanking(valid=res["num_matches"][t] > 0, ap=res["ap"][t], inp=res["inp"][t],
                         cmc_rank=res["cmc_rank"][t], num_matches=res["num_matches"][t],
                         num_identities=int(np.count_nonzero(np.bincount(g_lab[mask], minlength=len(uniq)))))
            for t, mask in enumerate(masks)]


class _Trials:
    """Up to 64 trials seen from one location group: the allowed columns of any trial,
    ordered by (identity, column), and packed running-count words."""

    def __init__(self, bits: np.ndarray, n_trials: int, cols: np.ndarray, g_lab: np.ndarray, n_labels: int):
        self.n = n_trials
        self.bits = bits  # (G,) bit t set: the column belongs to trial t
        self.cols = cols[np.argsort(g_lab[cols], kind="stable")]  # columns ascending within each identity
        self.label_start = np.searchsorted(g_lab[self.cols], np.arange(n_labels + 1))
        # A column of a single trial only matters up to that trial's hardest true match; the
        # others up to the hardest of any trial (index n_trials). Worth a gather when most
        # columns are in one trial (single-shot SYSU), not otherwise (multi-shot).
        col_bits = bits[self.cols]
        single = (col_bits & (col_bits - np.uint64(1))) == 0
        self.col_trial = None
        if np.count_nonzero(single) * 2 > len(cols):
            self.col_trial = np.where(single, np.frexp(col_bits.astype(np.float64))[1] - 1, n_trials)  # bit index
        # Running counts of each trial's columns, several trials per uint64 word: fields wide
        # enough for a row's count; trial t is field t % per_word of word t // per_word.
        self.field = max(1, int(len(cols)).bit_length())
        self.per_word = 64 // self.field
        self.words = np.stack([sum(((bits >> np.uint64(t)) & np.uint64(1)) << np.uint64(self.field * (t - w0))
                                   for t in range(w0, min(w0 + self.per_word, n_trials)))
                               for w0 in range(0, n_trials, self.per_word)])  # (words, G)

    def running(self, cols: np.ndarray) -> np.ndarray:
        """Packed running counts (words, len(cols)) of each trial's columns along ``cols``."""
        return np.stack([np.cumsum(word[cols]) for word in self.words])

    def count(self, running: np.ndarray, trial: np.ndarray, at: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Per pair: the count of ``trial``'s items in positions [start, at] of a sequence,
        from the packed running counts (words, positions) of that sequence. Packed fields
        subtract exactly: the difference of two running sums is a sum of increments."""
        word, width = trial // self.per_word, running.shape[1]
        flat = running.reshape(-1)
        total = flat[word * width + at] - np.where(start > 0, flat[word * width + np.maximum(start, 1) - 1], 0)
        shift = (self.field * (trial % self.per_word)).astype(np.uint64)
        return ((total >> shift) & np.uint64((1 << self.field) - 1)).astype(np.int64)


def _rank_block(block: np.ndarray, rows: np.ndarray, trials: _Trials, q_lab: np.ndarray, g_lab: np.ndarray,
                col_bits: int, res: dict) -> None:
    """Metrics of the queries ``rows`` (distance rows ``block``, one location group) for
    every trial of ``trials``."""
    sub = block.take(trials.cols, axis=1)  # (b, m), identity segments contiguous
    b, m = sub.shape
    lab = q_lab[rows]
    start = trials.label_start[np.maximum(lab, 0)]
    n = np.where(lab >= 0, trials.label_start[np.maximum(lab, 0) + 1] - start, 0)  # matches in any trial
    has = np.flatnonzero(n)
    if has.size == 0:
        return
    # 1. the true matches (row by row, in column order); per trial, the count and the hardest one
    mstart = np.cumsum(n) - n
    mrow = np.repeat(np.arange(b), n)
    mpos = _ragged_arange(start, n)
    mval = sub[mrow, mpos]
    mcol = trials.cols[mpos]
    in_trial = ((trials.bits[mcol][:, None] >> np.arange(trials.n, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    n_trial = np.zeros((b, trials.n), dtype=np.int64)
    n_trial[has] = np.add.reduceat(in_trial, mstart[has], axis=0, dtype=np.int64)
    last = np.full((b, trials.n), -np.inf, dtype=sub.dtype)
    last[has] = np.maximum.reduceat(np.where(in_trial, mval[:, None], -np.inf), mstart[has], axis=0)
    # 2. the entries that can matter: not farther than the hardest true match of any trial
    # (of the column's trial, for the columns of a single trial)
    deepest = last.max(axis=1)[:, None]
    if trials.col_trial is None:
        keep = sub <= deepest
    else:
        keep = sub <= np.concatenate([last, deepest], axis=1).take(trials.col_trial, axis=1)
    keep[mrow, mpos] = False  # the true matches are added with a flag
    flat = np.flatnonzero(keep)
    del keep
    wrow = flat // m
    values = np.concatenate([sub.reshape(-1)[flat], mval])
    # 3. one sort for all trials, by (row, distance, column); the lowest bit flags a true match
    key = pack_keys(np.concatenate([wrow, mrow]), values,
                    np.concatenate([trials.cols[flat - wrow * m] << 1, (mcol << 1) | 1]), col_bits + 1,
                    positive=bool(values.min() > 0))
    del flat, wrow, values
    key.sort()
    shift = np.uint64(33 + col_bits)
    row_start = np.searchsorted(key, np.arange(b, dtype=np.uint64) << shift)
    ocol = ((key >> np.uint64(1)) & np.uint64((1 << col_bits) - 1)).astype(np.int64)  # columns in rank order
    p = np.flatnonzero(key.astype(np.uint8) & 1)  # the true matches, in rank order
    pr = (key[p] >> shift).astype(np.int64)
    del key
    # 4. every (true match, trial holding it) pair: its rank is the running count of the
    # trial's columns at its position, its index k the running count among the true matches
    pi, pt = np.nonzero((trials.bits[ocol[p]][:, None] >> np.arange(trials.n, dtype=np.uint64)) & np.uint64(1))
    prow, pos = pr[pi], p[pi]
    rank = trials.count(trials.running(ocol), pt, pos, row_start[prow])
    k = trials.count(trials.running(ocol[p]), pt, pi, np.searchsorted(pr, prow))
    group = prow * trials.n + pt  # (row, trial) of the pair
    nt = n_trial.reshape(-1)  # matches per (row, trial), index row * n_trials + trial
    valid = np.flatnonzero(nt)
    vrow, vtrial = np.divmod(valid, trials.n)
    res["num_matches"][:, rows] = n_trial.T
    res["ap"][vtrial, rows[vrow]] = np.bincount(group, weights=k / rank, minlength=nt.size)[valid] / nt[valid]
    last_rank, first_pos = np.zeros(nt.size, dtype=np.int64), np.zeros(nt.size, dtype=np.int64)
    is_last, is_first = k == nt[group], k == 1
    last_rank[group[is_last]] = rank[is_last]
    first_pos[group[is_first]] = pos[is_first]
    res["inp"][vtrial, rows[vrow]] = nt[valid] / last_rank[valid]
    # CMC: distinct identities of the trial's entries ranked before its first true match
    first = first_pos[valid]
    before = _ragged_arange(row_start[vrow], first - row_start[vrow])
    bgroup = np.repeat(np.arange(valid.size), first - row_start[vrow])
    held = ((trials.bits[ocol[before]] >> vtrial[bgroup].astype(np.uint64)) & np.uint64(1)).astype(bool)
    pairs = distinct(bgroup[held] * len(trials.label_start) + g_lab[ocol[before[held]]])
    res["cmc_rank"][vtrial, rows[vrow]] = 1 + np.bincount(pairs // len(trials.label_start), minlength=valid.size)


def _ragged_arange(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[i], starts[i] + lengths[i])."""
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


def summarize(ranking: TrialRanking) -> dict:
    """mAP, mINP (fractions), the CMC curve (fractions, one point per gallery identity) and
    the numbers of evaluated and skipped queries."""
    valid = ranking.valid
    n_valid = int(valid.sum())
    length = max(1, ranking.num_identities)
    if n_valid == 0:
        return {"mAP": float("nan"), "mINP": float("nan"), "cmc": np.full(length, np.nan),
                "n_valid": 0, "n_skipped": int(valid.size)}
    hist = np.bincount(ranking.cmc_rank[valid] - 1, minlength=length)
    return {"mAP": float(np.mean(ranking.ap[valid])), "mINP": float(np.mean(ranking.inp[valid])),
            "cmc": np.cumsum(hist) / n_valid, "n_valid": n_valid, "n_skipped": int(valid.size - n_valid)}


def compute_metrics(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                    locations: Mapping[int, int] | None = None) -> dict:
    """One trial over every column: :func:`summarize` of :func:`rank_trials`."""
    (ranking,) = rank_trials(dist, query_ids, gallery_ids, query_cams, gallery_cams, locations=locations)
    return summarize(ranking)

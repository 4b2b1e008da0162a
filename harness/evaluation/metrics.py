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
  The ordinary **first-match** CMC (AGW's ``eval_regdb``) is also returned: the rank of
  the first true match among all remaining entries (``first_rank``; curve: one point per
  gallery entry of the trial, ``summarize(..., cmc="first_match")``).
* **Same identity, same camera** (DEEN's ``eval_llcm``, optional ``identity_cams``): a
  gallery entry of the query's identity taken by the query's camera is dropped; wrong
  identities of that camera stay.
* **Skipped queries**: a query without a true match among its remaining entries is left
  out of every mean and counted.

Algorithm: nothing is sorted but the true matches, and the trials of a protocol share the
work. For one location group, the allowed gallery columns of all trials are listed by
(identity, column), so a query's true matches are one segment of that list. For a block of
query rows:

1. the true matches are gathered (a few per row); per trial, the hardest one's distance;
2. one comparison pass keeps the wrong-identity entries not farther than the hardest true
   match of any trial (of its own trial, for a column of a single trial) -- the only ones
   that can precede a true match;
3. each kept entry's *interval* -- how many of its row's true matches rank before it -- is
   read from a per-row table of distance buckets between the row's nearest and farthest
   true match. The bucket is a monotone function of the distance, so the table is exact
   for every bucket that holds no true match; the few entries that share a bucket with one
   are placed by binary search among the sorted (row, distance, column) keys of the true
   matches, which also breaks ties by column;
4. per (row, interval), the entries are counted for every trial at once (per-trial counts
   packed in the fields of float64 words, summed exactly by ``np.bincount``); running sums
   along the row give, at each true match, how many entries of each trial precede it, so
   its rank in a trial is that count plus its index among the trial's true matches: AP
   and INP follow;
5. the entries of a trial with an interval not past the trial's first true match are the
   ones ranked before it: their distinct identities give the CMC rank.

Entries are never ordered among themselves. Blocks are bounded in size (memory) and run on
a few threads.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping

import numpy as np

from vireid.harness.evaluation.parallel import Workers, balanced_blocks
from vireid.harness.evaluation.ragged import owners, segments
from vireid.harness.evaluation.sortkeys import distinct, pack_keys

__all__ = ["CMC_KINDS", "TrialRanking", "camera_locations", "rank_trials", "summarize",
           "compute_metrics"]

# Distance entries per block of query rows (bounds the temporaries to a few MB per thread).
_BLOCK_ENTRIES = 1 << 20
# Trials ranked together (one bit each in a column's trial mask).
_MAX_TRIALS = 64
# Distance buckets per row between its nearest and farthest true match (step 4 of the algorithm).
_BUCKETS = 1024


@dataclass
class TrialRanking:
    """Per-query results of one trial; skipped queries hold NaN (ap, inp) and 0 (cmc_rank)."""

    valid: np.ndarray  # (Q,) bool: the query has a true match among its remaining entries
    ap: np.ndarray  # (Q,) float64
    inp: np.ndarray  # (Q,) float64
    cmc_rank: np.ndarray  # (Q,) int64, 1-based rank of the first true match after de-duplication
    num_matches: np.ndarray  # (Q,) int64, true matches among the remaining entries
    num_identities: int  # distinct identities of the trial's gallery (length of the CMC curve)
    first_rank: np.ndarray | None = None  # (Q,) int64, 1-based rank of the first true match, no de-duplication
    num_entries: int = 0  # gallery entries of the trial (length of the first-match CMC curve)


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
    return dist


def camera_locations(cams, locations: Mapping[int, int] | None) -> np.ndarray:
    """The location of every camera (``locations`` maps camera -> location; others are their own)."""
    cams = np.asarray(cams).astype(np.int64)
    out = cams.copy()
    for cam, where in (locations or {}).items():
        out[cams == int(cam)] = int(where)
    return out


def rank_trials(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                locations: Mapping[int, int] | None = None, trial_masks=None, identity_cams=None,
                workers: int | None = None) -> list[TrialRanking]:
    """Per-query AP, INP and CMC ranks for each trial.

    ``dist`` (Q, G); ``trial_masks`` (T, G) bool selects the gallery columns of each trial
    (``None``: one trial over every column). Without cameras nothing is dropped by location.
    ``identity_cams`` = (query cameras, gallery cameras): also drop the gallery entries of
    the query's identity from the query's camera (DEEN's LLCM rule).
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
    if identity_cams is not None:
        identity_cams = (np.asarray(_as_1d(identity_cams[0], "identity query cams", nq), dtype=np.int64),
                         np.asarray(_as_1d(identity_cams[1], "identity gallery cams", ng), dtype=np.int64))

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
    # Queries grouped by location; a block's rows are a slice of the matrix when the queries
    # come grouped already, else the block gathers them (on its thread, while they are hot).
    row_order = np.argsort(q_group, kind="stable")
    bounds = np.searchsorted(q_group[row_order], np.arange(len(group_locs) + 1))
    in_order = bool(np.all(row_order[1:] > row_order[:-1]))

    def rows_of(r0: int, r1: int) -> np.ndarray:
        return dist[r0:r1] if in_order else dist.take(row_order[r0:r1], axis=0)

    shape = (len(masks), nq)
    res = {"ap": np.full(shape, np.nan), "inp": np.full(shape, np.nan), "cmc_rank": np.zeros(shape, dtype=np.int64),
           "first_rank": np.zeros(shape, dtype=np.int64), "num_matches": np.zeros(shape, dtype=np.int64)}
    step = max(1, min(_BLOCK_ENTRIES // ng, 1 << (31 - col_bits)))
    pool = Workers(workers)
    tasks = []
    for t0 in range(0, len(masks), _MAX_TRIALS):
        chunk = masks[t0:t0 + _MAX_TRIALS]
        out = {k: v[t0:t0 + len(chunk)] for k, v in res.items()}
        for gi, loc in enumerate(group_locs):
            allowed = chunk.any(axis=0) if g_loc is None else chunk.any(axis=0) & (g_loc != loc)
            if not allowed.any():  # nothing to rank: the rows are still checked
                tasks.append(partial(_check_finite, rows_of(bounds[gi], bounds[gi + 1])))
                continue
            trials = _Trials(chunk, allowed, g_lab, len(uniq))
            for r0, r1 in balanced_blocks(int(bounds[gi + 1] - bounds[gi]), step, pool.workers):
                r0, r1 = r0 + bounds[gi], r1 + bounds[gi]
                tasks.append(partial(_rank_block, partial(rows_of, r0, r1), row_order[r0:r1], trials, q_lab, g_lab,
                                     col_bits, out, identity_cams))
    with pool:
        pool(tasks)
    return [TrialRanking(valid=res["num_matches"][t] > 0, ap=res["ap"][t], inp=res["inp"][t],
                         cmc_rank=res["cmc_rank"][t], num_matches=res["num_matches"][t],
                         num_identities=int(np.count_nonzero(np.bincount(g_lab[mask], minlength=len(uniq)))),
                         first_rank=res["first_rank"][t], num_entries=int(np.count_nonzero(mask)))
            for t, mask in enumerate(masks)]


def _check_finite(block: np.ndarray) -> None:
    if not np.isfinite(block).all():
        raise ValueError("the distance matrix holds NaN or infinite values")


class _Trials:
    """Up to 64 trials seen from one location group: the allowed columns, where each
    identity's columns are, per-column thresholds, and the packed trial-membership words."""

    def __init__(self, masks: np.ndarray, allowed: np.ndarray, g_lab: np.ndarray, n_labels: int):
        self.n = len(masks)
        self.allowed = allowed  # (G,) bool: in some trial, not at the queries' location
        self.bits = np.zeros(len(allowed), dtype=np.uint64)  # bit t set: the column belongs to trial t
        for t, mask in enumerate(masks):
            self.bits |= (mask & allowed).astype(np.uint64) << np.uint64(t)
        cols = np.flatnonzero(allowed)
        self.cols = cols[np.argsort(g_lab[cols], kind="stable")]  # columns ascending within each identity
        self.label_start = np.searchsorted(g_lab[self.cols], np.arange(n_labels + 1))
        # A column of a single trial only matters up to that trial's hardest true match; the
        # others up to the hardest of any trial (index n). Worth a gather when most columns
        # are in one trial (single-shot SYSU), not otherwise (multi-shot).
        single = (self.bits & (self.bits - np.uint64(1))) == 0
        self.col_trial = None
        if self.n > 1 and np.count_nonzero(single[cols]) * 2 > len(cols):
            self.col_trial = np.where(single, np.frexp(self.bits.astype(np.float64))[1] - 1, self.n)  # bit index
        # Per-trial counts packed in uint64 words: fields wide enough for a row's count in one
        # trial, trial t in field t % per_word of word t // per_word.
        self.field = max(1, int((masks & allowed).sum(axis=1).max()).bit_length())
        self.per_word = 64 // self.field
        words = [sum(((self.bits >> np.uint64(t)) & np.uint64(1)) << np.uint64(self.field * (t - w0))
                     for t in range(w0, min(w0 + self.per_word, self.n)))
                 for w0 in range(0, self.n, self.per_word)]
        self.words = np.stack(words)  # (words, G) uint64
        # The trials of each column, CSR
        in_trial = ((self.bits[:, None] >> np.arange(self.n, dtype=np.uint64)) & np.uint64(1)).astype(bool)
        self.n_trials_of = np.count_nonzero(in_trial, axis=1)
        self.trials_ptr = np.cumsum(self.n_trials_of) - self.n_trials_of
        self.trials_of = np.nonzero(in_trial)[1]

    def pairs(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, trial) of every trial holding ``cols[position]``, by position."""
        counts = self.n_trials_of[cols]
        position = owners(counts)
        return position, self.trials_of[segments(self.trials_ptr[cols], counts, position)]

    def count(self, running: np.ndarray, trial: np.ndarray, at: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Per pair: the count of ``trial``'s items in positions [start, at) of a sequence,
        from its packed inclusive running sums (words, positions + 1) that start with a zero
        column. Packed fields subtract exactly: the difference of two running sums is a sum
        of increments (modulo 2**64)."""
        flat = running.reshape(-1)
        base = (trial // self.per_word) * running.shape[1]
        total = flat[base + at] - flat[base + start]
        shift = (self.field * (trial % self.per_word)).astype(np.uint64)
        return ((total >> shift) & np.uint64((1 << self.field) - 1)).astype(np.int64)


def _rank_block(load: Callable[[], np.ndarray], rows: np.ndarray, trials: _Trials, q_lab: np.ndarray,
                g_lab: np.ndarray, col_bits: int, res: dict, identity_cams=None) -> None:
    """Metrics of the queries ``rows`` (distance rows ``load()``, one location group) for
    every trial of ``trials``."""
    block = load()
    _check_finite(block)
    b, m = block.shape
    lab = q_lab[rows]
    start = trials.label_start[np.maximum(lab, 0)]
    n = np.where(lab >= 0, trials.label_start[np.maximum(lab, 0) + 1] - start, 0)  # matches in any trial
    # 1. the true matches (row by row, in column order); per trial, the count and the hardest one
    mrow = owners(n)
    mcol = trials.cols[segments(start, n, mrow)]
    dropped = None
    if identity_cams is not None:  # the query identity's entries from the query's camera do not count
        same = identity_cams[1][mcol] == identity_cams[0][rows][mrow]
        dropped = (mrow[same], mcol[same])
        mrow, mcol = mrow[~same], mcol[~same]
        n = np.bincount(mrow, minlength=b)
    has = np.flatnonzero(n)
    if has.size == 0:
        return
    mstart = np.cumsum(n) - n
    mval = block[mrow, mcol]
    pi, pt = trials.pairs(mcol)
    group = mrow[pi] * trials.n + pt  # (row, trial)
    n_trial = np.bincount(group, minlength=b * trials.n).reshape(b, trials.n)
    last = np.full(b * trials.n, -np.inf, dtype=block.dtype)
    np.maximum.at(last, group, mval[pi])
    last = last.reshape(b, trials.n)
    deepest = last.max(axis=1)
    # 2. the wrong-identity entries that can matter: not farther than the hardest true match
    # of any trial (of the column's trial, for the columns of a single trial)
    if trials.col_trial is None:
        keep = block <= deepest[:, None]
    else:
        keep = block <= np.concatenate([last, deepest[:, None]], axis=1).take(trials.col_trial, axis=1)
    keep &= trials.allowed
    keep[mrow, mcol] = False
    if dropped is not None:
        keep[dropped] = False
    per_row = np.count_nonzero(keep, axis=1)
    flat = np.flatnonzero(keep)
    del keep
    erow = owners(per_row)
    ecol = flat - erow * m
    # 3. each entry's slot: its row's first slot + its interval (the number of the row's true
    # matches ranked before it). A monotone bucketing of the distance between the row's
    # nearest and farthest true match gives it for the entries of a bucket without a true
    # match. float64 arithmetic: for float32 distances nothing overflows.
    lo = np.zeros(b)
    lo[has] = np.minimum.reduceat(mval, mstart[has])
    buckets = int(min(_BUCKETS, max(64, 4 * (len(flat) + len(mrow)) // b)))  # table ~ the entries
    nb = buckets + 1
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        span = deepest - lo
        scale = np.where(span > 0, (buckets - 1) / span, 0)
    scale = np.minimum(scale, np.finfo(np.float64).max / (4 * buckets))

    def bucket(values: np.ndarray, row: np.ndarray) -> np.ndarray:
        """row * nb + bucket, for distances ``values`` of rows ``row``."""
        x = values.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            x -= lo.take(row)
            x *= scale.take(row)
        if values.dtype == np.float64:  # an overflow (inf, or inf * 0) sends the entry to bucket 1,
            x[~np.isfinite(x)] = 0  # where the row's nearest match is: the exact path
        np.floor(x, out=x)
        np.clip(x, -1, buckets - 1, out=x)
        return x.astype(np.int64) + (row * nb + 1)

    count = np.bincount(bucket(mval, mrow), minlength=b * nb)
    slot_start = mstart + np.arange(b)  # a row has n + 1 slots, one per interval
    table = np.cumsum(count) - count  # matches of earlier buckets (and rows) ...
    table.reshape(b, nb)[:] += np.arange(b)[:, None]  # ... + the row: a slot
    table[count > 0] = -1
    slot = table.take(bucket(block.reshape(-1).take(flat), erow))
    del table
    # ... the true matches in rank order, (row, distance, column) keys in one small sort; the
    # other entries (sharing a bucket with a true match) by binary search among them
    exact = np.flatnonzero(slot < 0)
    xrow = erow[exact]
    keys = pack_keys(np.concatenate([mrow, xrow]), np.concatenate([mval, block.reshape(-1)[flat[exact]]]),
                     np.concatenate([mcol, ecol[exact]]), col_bits)
    mkey = np.sort(keys[:len(mrow)])
    slot[exact] = np.searchsorted(mkey, keys[len(mrow):]) + xrow  # slot_start + matches before it
    mcol = (mkey & np.uint64((1 << col_bits) - 1)).astype(np.int64)
    del flat, keys, mkey
    # 4. per slot, the packed per-trial counts of the entries; running sums along each row
    # give, at match i's slot, the entries of each trial ranked before it
    before = np.zeros((len(trials.words), len(mrow) + b + 1), dtype=np.uint64)  # index s + 1: slot s
    for word, acc in zip(trials.words, before):
        np.add.at(acc[1:], slot, word[ecol])
    np.cumsum(before, axis=1, out=before)
    zero = np.zeros((len(trials.words), 1), dtype=np.uint64)
    match_run = np.concatenate([zero, np.cumsum(trials.words[:, mcol], axis=1)], axis=1)  # each trial's matches
    # ... and for every (true match, trial holding it) pair, its index k among the trial's
    # matches and its rank: k + the trial's entries before it
    pi, pt = trials.pairs(mcol)
    prow = mrow[pi]
    i = pi - mstart[prow]
    s0 = slot_start[prow]
    k = trials.count(match_run, pt, pi + 1, mstart[prow])
    rank = k + trials.count(before, pt, s0 + i + 1, s0)
    group = prow * trials.n + pt  # (row, trial) of the pair
    nt = n_trial.reshape(-1)  # matches per (row, trial), index row * n_trials + trial
    valid = np.flatnonzero(nt)
    vrow, vtrial = np.divmod(valid, trials.n)
    res["num_matches"][:, rows] = n_trial.T
    res["ap"][vtrial, rows[vrow]] = np.bincount(group, weights=k / rank, minlength=nt.size)[valid] / nt[valid]
    last_rank, first_i = np.zeros(nt.size, dtype=np.int64), np.full(nt.size, -1, dtype=np.int64)
    is_last, is_first = k == nt[group], k == 1
    last_rank[group[is_last]] = rank[is_last]
    first_i[group[is_first]] = i[is_first]
    res["inp"][vtrial, rows[vrow]] = nt[valid] / last_rank[valid]
    first_rank = np.zeros(nt.size, dtype=np.int64)
    first_rank[group[is_first]] = rank[is_first]
    res["first_rank"][vtrial, rows[vrow]] = first_rank[valid]
    # 5. CMC: distinct identities of the trial's entries ranked before its first true match
    first_i = first_i.reshape(b, trials.n)
    cand = np.flatnonzero(slot <= (slot_start + first_i.max(axis=1)).take(erow))
    ci, ct = trials.pairs(ecol[cand])
    crow = erow[cand[ci]]
    held = slot[cand[ci]] - slot_start[crow] <= first_i[crow, ct]
    ci, ct, crow = ci[held], ct[held], crow[held]
    labels = len(trials.label_start)
    pairs = distinct((crow * trials.n + ct) * labels + g_lab[ecol[cand[ci]]])
    wrong = np.bincount(pairs // labels, minlength=nt.size)
    res["cmc_rank"][vtrial, rows[vrow]] = 1 + wrong[valid]


CMC_KINDS = ("distinct", "first_match")


def summarize(ranking: TrialRanking, cmc: str = "distinct") -> dict:
    """mAP, mINP (fractions), the CMC curve (fractions; ``distinct``: one point per gallery
    identity, ``first_match``: one per gallery entry) and the numbers of evaluated and
    skipped queries."""
    if cmc not in CMC_KINDS:
        raise ValueError(f"unknown CMC kind {cmc!r}; expected one of {CMC_KINDS}")
    valid = ranking.valid
    n_valid = int(valid.sum())
    first = cmc == "first_match"
    length = max(1, ranking.num_entries if first else ranking.num_identities)
    if n_valid == 0:
        return {"mAP": float("nan"), "mINP": float("nan"), "cmc": np.full(length, np.nan),
                "n_valid": 0, "n_skipped": int(valid.size)}
    hist = np.bincount((ranking.first_rank if first else ranking.cmc_rank)[valid] - 1, minlength=length)
    return {"mAP": float(np.mean(ranking.ap[valid])), "mINP": float(np.mean(ranking.inp[valid])),
            "cmc": np.cumsum(hist) / n_valid, "n_valid": n_valid, "n_skipped": int(valid.size - n_valid)}


def compute_metrics(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                    locations: Mapping[int, int] | None = None) -> dict:
    """One trial over every column: :func:`summarize` of :func:`rank_trials`."""
    (ranking,) = rank_trials(dist, query_ids, gallery_ids, query_cams, gallery_cams, locations=locations)
    return summarize(ranking)

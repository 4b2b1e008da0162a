"""Ranking metrics (CMC, mAP, mINP) from a query x gallery distance matrix, vectorised.

Semantics (the public VI-ReID code's, see docs/evaluation.md):

* **Dropped entries.** A gallery entry is ignored for a query when both cameras are at the
  same *location* (``locations`` maps a camera to its location; unmapped cameras are their
  own location). SYSU-MM01: camera 3 is at camera 2's location. Entries outside the trial's
  gallery (``trial_masks``) are ignored too.
* **Order.** Ascending distance; ties are broken by gallery index (column), lowest first --
  the order of a *stable* argsort of the row.
* **AP** over all remaining entries (no de-duplication): mean over the true matches of
  ``m / rank_m``. **INP** = (number of true matches) / (rank of the hardest true match).
* **CMC** keeps the first occurrence of every identity in rank order: the rank of a query
  is 1 + the number of distinct wrong identities whose best entry comes before its first
  true match. The curve has one point per distinct identity of the trial's gallery.
* **Skipped queries**: a query with no true match among its remaining entries is left out
  of every mean and counted.

No argsort of whole rows: for each query only the entries that are not farther than its
hardest true match can influence its metrics. They are selected with one comparison pass,
packed into sortable integer keys (row, distance bits, column) and sorted; ranks follow
from positions. Rows are processed in blocks, so memory stays bounded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

__all__ = ["SYSU_LOCATIONS", "TrialRanking", "rank_trials", "compute_metrics", "summarize"]

# SYSU-MM01: camera 3 (indoor infrared) is at the location of camera 2 (indoor visible).
SYSU_LOCATIONS: dict[int, int] = {3: 2}

# Entries of the distance matrix handled per block (bounds temporary memory).
_BLOCK_ENTRIES = 1 << 22


@dataclass
class TrialRanking:
    """Per-query results of one trial; skipped queries hold 0 / NaN."""

    valid: np.ndarray  # (Q,) bool: the query has at least one true match
    ap: np.ndarray  # (Q,) float64, NaN where skipped
    inp: np.ndarray  # (Q,) float64, NaN where skipped
    cmc_rank: np.ndarray  # (Q,) int64, 1-based de-duplicated rank of the first true match; 0 where skipped
    num_matches: np.ndarray  # (Q,) int64
    num_identities: int  # distinct identities in this trial's gallery (length of the CMC curve)
    extra: dict = field(default_factory=dict)


def _as_ids(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _location_codes(q_cams, g_cams, locations: Mapping[int, int] | None):
    """Integer location of every query and gallery camera."""
    loc = dict(locations or {})

    def convert(cams):
        cams = np.asarray(cams).astype(np.int64)
        out = cams.copy()
        for cam, where in loc.items():
            out[cams == int(cam)] = int(where)
        return out

    return convert(q_cams), convert(g_cams)


def _sortable_uint32(values: np.ndarray) -> np.ndarray:
    """Order-preserving map float32 -> uint32 (-0.0 is folded onto +0.0)."""
    v = values + np.float32(0.0)  # -0.0 + 0.0 == +0.0
    u = v.view(np.uint32)
    flip = np.where(u >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return u ^ flip


def rank_trials(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                locations: Mapping[int, int] | None = None, trial_masks=None) -> list[TrialRanking]:
    """Per-query AP, INP and de-duplicated CMC rank for each trial.

    ``dist`` (Q, G) float32/float64; ``trial_masks`` (T, G) bool selects the gallery columns
    of each trial (``None``: one trial with every column). Cameras are optional; without
    them nothing is dropped.
    """
    dist = np.asarray(dist)
    if dist.ndim != 2:
        raise ValueError(f"distance matrix must be 2-D, got shape {dist.shape}")
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)
    if not dist.flags.c_contiguous:
        dist = np.ascontiguousarray(dist)
    nq, ng = dist.shape
    q_ids = _as_ids(query_ids, "query_ids")
    g_ids = _as_ids(gallery_ids, "gallery_ids")
    if len(q_ids) != nq or len(g_ids) != ng:
        raise ValueError(f"distance matrix is {dist.shape} but there are {len(q_ids)} query and "
                         f"{len(g_ids)} gallery ids")
    if trial_masks is None:
        masks = np.ones((1, ng), dtype=bool)
    else:
        masks = np.asarray(trial_masks, dtype=bool)
        if masks.ndim == 1:
            masks = masks[None, :]
        if masks.shape[1] != ng:
            raise ValueError(f"trial masks have {masks.shape[1]} columns, the gallery has {ng}")
    n_trials = masks.shape[0]
    if nq == 0 or ng == 0:
        raise ValueError(f"empty query or gallery (distance matrix {dist.shape})")
    if not np.isfinite(dist).all():
        raise ValueError("the distance matrix holds NaN or infinite values")

    # Identity labels: gallery ids -> 0..U-1, query ids -> label or -1 when absent.
    uniq, g_lab = np.unique(g_ids, return_inverse=True)
    g_lab = g_lab.astype(np.int64).reshape(-1)
    n_labels = len(uniq)
    pos = np.searchsorted(uniq, q_ids)
    pos_clip = np.minimum(pos, n_labels - 1)
    q_lab = np.where(uniq[pos_clip] == q_ids, pos_clip, -1).astype(np.int64)

    # Location groups: rows of a group share the same set of allowed columns.
    if query_cams is None or gallery_cams is None:
        q_group = np.zeros(nq, dtype=np.int64)
        allowed = np.ones((1, ng), dtype=bool)
    else:
        q_cams = _as_ids(query_cams, "query_cams")
        g_cams = _as_ids(gallery_cams, "gallery_cams")
        if len(q_cams) != nq or len(g_cams) != ng:
            raise ValueError("camera arrays do not match the distance matrix")
        q_loc, g_loc = _location_codes(q_cams, g_cams, locations)
        group_locs, q_group = np.unique(q_loc, return_inverse=True)
        q_group = q_group.reshape(-1)
        allowed = g_loc[None, :] != group_locs[:, None]
    any_active = masks.any(axis=0)
    allowed = allowed & any_active[None, :]
    needs_row_mask = not allowed.all()

    # Candidate true-match columns of every query: its identity's gallery columns.
    col_order = np.argsort(g_lab, kind="stable")
    label_count = np.bincount(g_lab, minlength=n_labels)
    label_start = np.cumsum(label_count) - label_count
    width = int(label_count.max()) if n_labels else 0
    has_lab = q_lab >= 0
    cnt = np.where(has_lab, label_count[np.maximum(q_lab, 0)], 0)
    offs = np.arange(width)
    in_row = offs[None, :] < cnt[:, None]
    flat = np.where(in_row, label_start[np.maximum(q_lab, 0)][:, None] + offs[None, :], 0)
    pcols = np.where(in_row, col_order[flat], 0)  # (Q, width), ascending columns per row
    pdist = np.take_along_axis(dist, pcols, axis=1)
    pbase = in_row & allowed[q_group[:, None], pcols]

    n_match = np.zeros((n_trials, nq), dtype=np.int64)
    tmax = np.full((n_trials, nq), -np.inf, dtype=dist.dtype)
    for t in range(n_trials):
        ok = pbase & masks[t][pcols]
        n_match[t] = ok.sum(axis=1)
        if width:
            tmax[t] = np.where(ok, pdist, -np.inf).max(axis=1)
    tall = tmax.max(axis=0)
    pany = pbase & any_active[pcols]  # true matches active in at least one trial

    # Trials whose gallery is the whole union need no counting; the others are counted with
    # packed per-trial counters (several trials per uint64 word).
    full = [bool(np.array_equal(masks[t], any_active)) for t in range(n_trials)]
    counted = [t for t in range(n_trials) if not full[t]]
    field_bits = 16 if ng < (1 << 16) else 32
    per_word = 64 // field_bits
    words = []  # (trial list, column word values)
    for w0 in range(0, len(counted), per_word):
        group = counted[w0:w0 + per_word]
        colword = np.zeros(ng, dtype=np.uint64)
        for slot, t in enumerate(group):
            colword |= masks[t].astype(np.uint64) << np.uint64(field_bits * slot)
        words.append((group, colword))

    acc = [dict(ap=np.full(nq, np.nan), inp=np.full(nq, np.nan), cmc=np.zeros(nq, dtype=np.int64))
           for _ in range(n_trials)]
    bits_col = max(1, int(ng - 1).bit_length())
    use_keys = dist.dtype == np.float32 and bits_col <= 30
    max_rows = max(1, _BLOCK_ENTRIES // ng)
    if use_keys:
        max_rows = min(max_rows, 1 << (31 - bits_col))
    shift_row = np.uint64(32 + bits_col)
    shift_val = np.uint64(bits_col)
    col_mask = np.int64((1 << bits_col) - 1)

    for r0 in range(0, nq, max_rows):
        r1 = min(nq, r0 + max_rows)
        nrows = r1 - r0
        block = dist[r0:r1]
        cand = block <= tall[r0:r1, None]
        if needs_row_mask:
            groups = q_group[r0:r1]
            if groups.min() == groups.max():
                cand &= allowed[groups[0]][None, :]
            else:
                cand &= allowed[groups]
        rows, cols = np.nonzero(cand)
        del cand
        if rows.size == 0:
            continue
        # positives of the block's rows, (row, column) in row-major order
        prow, pslot = np.nonzero(pany[r0:r1])
        ppcol = pcols[r0 + prow, pslot]
        if use_keys:
            key = _pack(rows, block[rows, cols], cols, shift_row, shift_val)
            del rows
            key.sort()
            pkey = _pack(prow, pdist[r0 + prow, pslot], ppcol, shift_row, shift_val)
            pkey.sort()
            ppos = np.searchsorted(key, pkey)
            ppcol = (pkey.view(np.int64) & col_mask)
            prow = (pkey >> shift_row).view(np.int64)
            bounds = np.arange(nrows + 1, dtype=np.uint64) << shift_row
            row_start = np.searchsorted(key, bounds)
            cols = key.view(np.int64) & col_mask
            del key, pkey
        else:
            vals = block[rows, cols]
            order = np.lexsort((cols, vals, rows))
            rows, cols = rows[order], cols[order]
            del vals, order
            ispos = g_lab[cols] == q_lab[r0 + rows]
            ppos = np.flatnonzero(ispos)
            prow = rows[ppos]
            ppcol = cols[ppos]
            row_start = np.searchsorted(rows, np.arange(nrows + 1))
            del rows, ispos
        counts = {}
        for group, colword in words:
            cum = np.cumsum(colword[cols])
            at_p = cum[ppos]
            before = np.where(row_start[prow] > 0, cum[np.maximum(row_start[prow] - 1, 0)], np.uint64(0))
            diff = at_p - before
            field_mask = np.uint64((1 << field_bits) - 1)
            for slot, t in enumerate(group):
                counts[t] = ((diff >> np.uint64(field_bits * slot)) & field_mask).astype(np.int64)
            del cum
        for t in range(n_trials):
            if full[t]:
                rank = ppos - row_start[prow] + 1
                act = np.ones(ppos.size, dtype=bool)
            else:
                rank = counts[t]
                act = masks[t][ppcol]
            _trial_block(acc[t], r0, nrows, prow[act], ppos[act], rank[act], row_start, cols,
                         masks[t], full[t], g_lab, n_labels)

    out = []
    for t in range(n_trials):
        valid = n_match[t] > 0
        res = acc[t]
        num_ids = int(np.unique(g_lab[masks[t]]).size)
        found = np.isfinite(res["ap"])
        if not np.array_equal(found, valid):  # pragma: no cover - internal consistency
            raise AssertionError("true matches missing from the candidate set")
        out.append(TrialRanking(valid=valid, ap=res["ap"], inp=res["inp"], cmc_rank=res["cmc"],
                                num_matches=n_match[t], num_identities=num_ids))
    return out


def _pack(rows, vals, cols, shift_row, shift_val) -> np.ndarray:
    """uint64 keys ordered by (row, distance, column); float32 distances."""
    key = rows.astype(np.uint64)
    key <<= shift_row
    sv = _sortable_uint32(np.asarray(vals, dtype=np.float32)).astype(np.uint64)
    sv <<= shift_val
    key |= sv
    key |= cols.astype(np.uint64)
    return key


def _trial_block(res: dict, r0: int, nrows: int, prow: np.ndarray, ppos: np.ndarray, prank: np.ndarray,
                 row_start: np.ndarray, cols: np.ndarray, active: np.ndarray, full: bool,
                 g_lab: np.ndarray, n_labels: int) -> None:
    """Metrics of block rows [r0, r0 + nrows) of one trial.

    ``prow``/``ppos``/``prank``: the trial's true matches in rank order within each row (block
    row, position in the sorted candidates, 1-based rank among the trial's entries);
    ``cols``: candidate columns sorted by (row, distance, column); ``row_start`` (nrows + 1).
    """
    if prow.size == 0:
        return
    pcount = np.bincount(prow, minlength=nrows)
    pstart = np.cumsum(pcount) - pcount
    m = np.arange(prow.size, dtype=np.int64) - pstart[prow] + 1
    ap_sum = np.bincount(prow, weights=m / prank, minlength=nrows)
    rows_with = np.flatnonzero(pcount)
    last_rank = prank[pstart[rows_with] + pcount[rows_with] - 1]
    # CMC: distinct identities among the trial's entries before the first true match.
    first_pos = ppos[pstart[rows_with]]
    lengths = first_pos - row_start[rows_with]
    distinct = np.zeros(nrows, dtype=np.int64)
    total = int(lengths.sum())
    if total:
        rr = np.repeat(rows_with, lengths)
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cc = cols[np.repeat(row_start[rows_with], lengths) + offsets]
        if not full:
            keep = active[cc]
            rr, cc = rr[keep], cc[keep]
        if rr.size:
            pair = np.unique(rr * n_labels + g_lab[cc])
            distinct = np.bincount(pair // n_labels, minlength=nrows)
    gr = r0 + rows_with
    res["ap"][gr] = ap_sum[rows_with] / pcount[rows_with]
    res["inp"][gr] = pcount[rows_with] / last_rank
    res["cmc"][gr] = 1 + distinct[rows_with]


def summarize(ranking: TrialRanking) -> dict:
    """mAP, mINP (fractions) and the CMC curve (fractions, one point per gallery identity)."""
    valid = ranking.valid
    n_valid = int(valid.sum())
    length = max(1, ranking.num_identities)
    if n_valid == 0:
        return {"mAP": float("nan"), "mINP": float("nan"), "cmc": np.full(length, np.nan),
                "n_valid": 0, "n_skipped": int(valid.size)}
    hist = np.bincount(ranking.cmc_rank[valid] - 1, minlength=length)[:length]
    cmc = np.cumsum(hist) / n_valid
    return {"mAP": float(np.mean(ranking.ap[valid])), "mINP": float(np.mean(ranking.inp[valid])),
            "cmc": cmc, "n_valid": n_valid, "n_skipped": int(valid.size - n_valid)}


def compute_metrics(dist, query_ids, gallery_ids, query_cams=None, gallery_cams=None, *,
                    locations: Mapping[int, int] | None = None) -> dict:
    """One trial: ``{"mAP", "mINP", "cmc", "n_valid", "n_skipped"}`` (fractions in [0, 1])."""
    (ranking,) = rank_trials(dist, query_ids, gallery_ids, query_cams, gallery_cams, locations=locations)
    return summarize(ranking)

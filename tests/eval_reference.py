"""Independent, deliberately plain implementations used to check the vectorised evaluation.

Everything here loops over queries (metrics) or over rows (re-ranking) in the classic way
of the public code; only the documented rules are shared with the fast code:
ties are broken by gallery index (stable sort), same-location entries are dropped,
queries without a true match are skipped, and re-ranking follows the float16 formulation
described in docs/evaluation.md. Nothing from vireid.harness.evaluation is imported.
"""
from __future__ import annotations

import math

import numpy as np


# ----------------------------------------------------------------------------- metrics
def reference_metrics(dist, q_ids, g_ids, q_cams=None, g_cams=None, locations=None, active=None,
                      identity_cams=None):
    """One query at a time, as the public code: drop the same-location and inactive entries
    (and, with ``identity_cams`` = (query cams, gallery cams), the query identity's entries
    from the query's camera, as DEEN's eval_llcm), sort the rest (stable), then read AP, INP,
    the de-duplicated CMC rank and the first-match rank (AGW's eval_regdb) off the ranked
    identities. Returns per-query arrays and the summaries (fractions): ``cmc`` de-duplicated,
    ``cmc_first`` first-match (one point per active gallery entry)."""
    dist = np.asarray(dist)
    q_ids = np.asarray(q_ids)
    g_ids = np.asarray(g_ids)
    nq, ng = dist.shape
    loc = {int(k): int(v) for k, v in (locations or {}).items()}
    active = np.ones(ng, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    g_loc = None if g_cams is None else np.array([loc.get(int(c), int(c)) for c in g_cams])
    num_ids = len(np.unique(g_ids[active]))
    ap = np.full(nq, np.nan)
    inp = np.full(nq, np.nan)
    cmc_rank = np.zeros(nq, dtype=np.int64)
    first_rank = np.zeros(nq, dtype=np.int64)
    for i in range(nq):
        keep = active.copy()
        if g_loc is not None and q_cams is not None:
            keep &= g_loc != loc.get(int(q_cams[i]), int(q_cams[i]))
        if identity_cams is not None:
            keep &= ~((g_ids == q_ids[i]) & (np.asarray(identity_cams[1]) == identity_cams[0][i]))
        cols = np.flatnonzero(keep)
        ranked = g_ids[cols[np.argsort(dist[i, cols], kind="stable")]]
        matches = ranked == q_ids[i]
        n = int(matches.sum())
        if n == 0:
            continue
        ranks = np.flatnonzero(matches) + 1
        ap[i] = np.mean(np.arange(1, n + 1) / ranks)
        inp[i] = n / ranks[-1]
        first_rank[i] = ranks[0]
        _, first_seen = np.unique(ranked, return_index=True)
        dedup = ranked[np.sort(first_seen)]
        cmc_rank[i] = int(np.flatnonzero(dedup == q_ids[i])[0]) + 1
    valid = cmc_rank > 0
    n_valid = int(valid.sum())
    cmc = np.zeros(max(1, num_ids))
    for r in cmc_rank[valid]:
        cmc[r - 1:] += 1
    cmc = cmc / max(n_valid, 1)
    cmc_first = np.zeros(max(1, int(active.sum())))
    for r in first_rank[valid]:
        cmc_first[r - 1:] += 1
    cmc_first = cmc_first / max(n_valid, 1)
    return {"ap": ap, "inp": inp, "cmc_rank": cmc_rank, "first_rank": first_rank, "valid": valid,
            "cmc_first": cmc_first,
            "mAP": float(np.nanmean(ap)) if n_valid else float("nan"),
            "mINP": float(np.nanmean(inp)) if n_valid else float("nan"),
            "cmc": cmc, "n_valid": n_valid, "n_skipped": nq - n_valid, "num_ids": num_ids}


def reference_sqdist(x, y):
    """Plain float64 squared Euclidean distances."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


# --------------------------------------------------------------------------- re-ranking
def _stable_rank(row):
    return np.argsort(row, kind="stable")


def reference_rerank(dist_all, num_query, k1=20, k2=6, lam=0.3, variant="standard"):
    """k-reciprocal re-ranking (Zhong et al. 2017), row by row, from the (N, N) distances.

    Formulation (shared with the fast code by specification only):
      * ranks: stable ascending sort of each row of ``dist_all`` -- or, with
        ``variant="idkl-sysu"`` (the public IDKL code's SYSU-MM01 call, ``eval_type=True``),
        of a copy whose gallery columns are all set to the maximum of the whole matrix;
        everything below still reads the unmodified ``dist_all``;
      * ``od[i, j] = dist_all[i, j] / max_k dist_all[i, k]`` (float32; divisor 1 if <= 0);
      * V[i, E(i)] = float16( w / fsum(w) ) with w = float32 exp(-od[i, E(i)]);
      * query expansion: V'[i] = float16( (sum_t float32(V[rank_t(i)])) / float32(k2) ), summed
        sequentially over t = 0..k2-1;
      * jaccard: temp[i, j] accumulated in float16 over k ascending of min(V'[i,k], V'[j,k]);
        jac = 1 - temp / (2 - temp) (float16);
      * final = float32(float16(jac * float16(1 - lam))) + od * float32(lam).
    Returns the (Q, G) float32 matrix.
    """
    dist_all = np.asarray(dist_all)
    n = dist_all.shape[0]
    g = n - num_query
    kk = k1 + 1
    half = int(np.around(k1 / 2)) + 1
    if variant == "standard":
        rank_dist = dist_all
    elif variant == "idkl-sysu":
        rank_dist = dist_all.copy()
        rank_dist[:, num_query:] = dist_all.max()
    else:
        raise ValueError(f"unknown variant {variant!r}")
    ranks = [None] * n
    need = max(kk, k2)
    for i in range(n):
        ranks[i] = _stable_rank(rank_dist[i])[:need]
    rowmax = np.array([dist_all[i].max() for i in range(n)], dtype=dist_all.dtype)
    rowmax = np.where(rowmax > 0, rowmax, dist_all.dtype.type(1))
    od_rows = [None] * n

    def od_row(i):
        if od_rows[i] is None:
            od_rows[i] = (dist_all[i] / rowmax[i]).astype(np.float32)
        return od_rows[i]

    V = np.zeros((n, n), dtype=np.float16)
    for i in range(n):
        forward = ranks[i][:kk]
        backward = np.stack([ranks[f][:kk] for f in forward])
        fi = np.where(backward == i)[0]
        k_recip = forward[fi]
        expansion = k_recip
        for cand in k_recip:
            cf = ranks[cand][:half]
            cb = np.stack([ranks[f][:half] for f in cf])
            cfi = np.where(cb == cand)[0]
            cand_recip = cf[cfi]
            if len(np.intersect1d(cand_recip, k_recip)) > 2 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        w = np.exp(-np.ascontiguousarray(od_row(i)[expansion]))
        total = math.fsum(float(v) for v in w)
        V[i, expansion] = (w.astype(np.float64) / total).astype(np.float16)
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            nbrs = ranks[i][:k2]
            acc = V[nbrs[0]].astype(np.float32)
            for t in range(1, len(nbrs)):
                acc = acc + V[nbrs[t]].astype(np.float32)
            V_qe[i] = (acc / np.float32(len(nbrs))).astype(np.float16)
        V = V_qe
    inv_index = [np.where(V[:, k] != 0)[0] for k in range(n)]
    final = np.zeros((num_query, g), dtype=np.float32)
    w_jac = np.float16(1 - lam)
    w_od = np.float32(lam)
    for i in range(num_query):
        temp = np.zeros(n, dtype=np.float16)
        nonzero = np.where(V[i] != 0)[0]
        for k in nonzero:
            js = inv_index[k]
            temp[js] = temp[js] + np.minimum(V[i, k], V[js, k])
        jac = np.float16(1) - temp / (np.float16(2) - temp)
        final[i] = (jac[num_query:] * w_jac).astype(np.float32) + od_row(i)[num_query:] * w_od
    return final


# ------------------------------------------------------------------- DEEN's LLCM gallery
def reference_deen_draw(root, folder, cams, ids, trial):
    """DEEN's ``process_gallery_llcm`` as it is written: ``random.seed(trial)``, then for each
    id (sorted, 4 digits) and camera folder ``<root>/<folder>/camC/PPPP`` that exists, one
    ``random.choice`` of the sorted listing. Returns the chosen file paths."""
    import os
    import random

    random.seed(trial)
    chosen = []
    for pid in sorted("%04d" % i for i in ids):
        for cam in cams:
            img_dir = os.path.join(str(root), folder, f"cam{cam}", pid)
            if os.path.isdir(img_dir):
                chosen.append(random.choice(sorted(img_dir + "/" + f for f in os.listdir(img_dir))))
    return chosen

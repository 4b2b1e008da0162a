"""The evaluation API of the trainer and the CLI: features -> result dicts -> a table.

A result dict is a :class:`~vireid.harness.evaluation.results.ProtocolResult` in JSON form
(docs/ARCHITECTURE.md, docs/evaluation.md); it carries the protocol, direction,
trial list, re-ranking setting, distance and dataset fingerprint next to the metrics
(percentages): the mean over trials of mAP, mINP and R1/R5/R10/R20, the CMC curve, per-trial
values with the numbers of queries and skipped queries, and the standard deviation over
trials.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vireid.harness.evaluation.distance import normalize_rows, squared_euclidean, to_numpy
from vireid.harness.evaluation.features_file import validate_arrays
from vireid.harness.evaluation.metrics import TrialRanking, camera_locations, rank_trials, summarize
from vireid.harness.evaluation.protocols import Protocol, ProtocolError, distance_name, get_protocol
from vireid.harness.evaluation.rerank import VARIANTS, rerank_from_distance
from vireid.harness.evaluation.results import METRICS, ProtocolResult, Rerank, TrialResult

__all__ = ["evaluate_protocol_arrays", "evaluate_cross_modal", "format_results", "rerank_suffix", "rerank_text"]
RANKS = (1, 5, 10, 20)


def evaluate_protocol_arrays(arrays: Mapping[str, np.ndarray], name: str, data_root=None,
                             trials: Sequence[int] | None = None, rerank: bool = False, k1: int = 20, k2: int = 6,
                             lam: float = 0.3, dataset_fingerprint: str | None = None, perm=None,
                             device: str | None = "auto", variant: str = "standard") -> dict[str, Any]:
    """Evaluate the features ``arrays`` (the features-file keys) under protocol ``name``.

    The query and gallery tables together are the pool the protocol picks from by camera.
    SYSU-MM01 protocols need the permutation file: ``perm`` (a path, or what
    ``vireid.datasets.sysu_perm.read_rand_perm_cam`` returns), else ``<data_root>/<protocol.perm_file>``.
    Without ``dataset_fingerprint`` the result is stamped with a hash of the pool's ids,
    cameras and paths. Re-ranking is off unless ``rerank``; ``variant`` (one of
    ``rerank.VARIANTS``) is what its neighbours are ranked by, stamped on the result.
    """
    if variant not in VARIANTS:
        raise ProtocolError(f"unknown re-ranking variant {variant!r}; expected one of: {', '.join(VARIANTS)}")
    protocol = get_protocol(name)
    arrays = validate_arrays(arrays)
    pool = {k: np.concatenate([arrays[f"query_{k}"], arrays[f"gallery_{k}"]]) for k in ("ids", "cams", "paths")}
    table = _perm_table(protocol, perm, data_root) if protocol.needs_perm else None
    trial_sets = protocol.build_trials(pool["ids"], pool["cams"], pool["paths"], table, trials)
    fixed_query = all(np.array_equal(t.query_index, trial_sets[0].query_index) for t in trial_sets)
    # one set of query rows serves every trial (DEEN's VIS-to-IR mode draws them per trial: their union)
    query = trial_sets[0].query_index if fixed_query else np.unique(np.concatenate([t.query_index
                                                                                   for t in trial_sets]))
    if not rerank and not protocol.same_identity_camera:  # queries of one location next to each other
        query = query[np.argsort(camera_locations(pool["cams"][query], protocol.locations), kind="stable")]
    in_trial = np.zeros((len(trial_sets), len(pool["ids"])), dtype=bool)
    for row, t in zip(in_trial, trial_sets):
        row[t.gallery_index] = True
    union = np.flatnonzero(in_trial.any(axis=0))  # one distance matrix serves every trial
    masks = in_trial[:, union]
    # DEEN: the real camera decides which entries of the query's identity are dropped
    real = protocol.real_cameras(pool["ids"], pool["paths"]) if protocol.same_identity_camera else None
    if rerank:
        feats = _pool_rows(arrays, np.concatenate([query, union]), protocol.normalize)
        dist_all = squared_euclidean(feats, None, device=device)
        rankings = [_rerank_trial(dist_all, _rows_of(query, t.query_index), mask, pool, query, union, protocol,
                                  real, k1, k2, lam, variant) for t, mask in zip(trial_sets, masks)]
    else:
        q_feats, g_feats = _pool_rows(arrays, query, protocol.normalize), _pool_rows(arrays, union, protocol.normalize)
        if real is not None:
            rankings = rank_trials(squared_euclidean(q_feats, g_feats, device=device), pool["ids"][query],
                                   pool["ids"][union], trial_masks=masks, identity_cams=(real[query], real[union]))
        else:
            rankings = _rank_by_location(q_feats, pool["ids"][query], pool["cams"][query], g_feats,
                                         pool["ids"][union], pool["cams"][union], protocol.locations, masks, device)
        if not fixed_query:
            rankings = [_take_rows(r, _rows_of(query, t.query_index)) for r, t in zip(rankings, trial_sets)]
    trial_ids = [t.trial for t in trial_sets]
    agg = _aggregate(protocol.name, trial_ids, rankings, protocol.cmc)
    return ProtocolResult(
        protocol=protocol.name, direction=protocol.direction, trials=trial_ids,
        rerank=Rerank(bool(rerank), int(k1), int(k2), float(lam), variant), distance=protocol.distance,
        dataset_fingerprint=dataset_fingerprint or _pool_fingerprint(pool), **{m: agg[m] for m in METRICS},
        cmc=agg["cmc"], per_trial=[TrialResult(**row) for row in agg["per_trial"]], std=agg["std"],
        n_queries=agg["n_queries"], n_queries_skipped=agg["n_queries_skipped"]).to_dict()


def _rows_of(query: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Positions in ``query`` of the pool indices ``index`` (all present)."""
    order = np.argsort(query, kind="stable")
    return order[np.searchsorted(query[order], index)]


def _take_rows(ranking: TrialRanking, rows: np.ndarray) -> TrialRanking:
    """The ranking of the queries ``rows`` only (per-query values do not depend on the others)."""
    return TrialRanking(valid=ranking.valid[rows], ap=ranking.ap[rows], inp=ranking.inp[rows],
                        cmc_rank=ranking.cmc_rank[rows], num_matches=ranking.num_matches[rows],
                        num_identities=ranking.num_identities, first_rank=ranking.first_rank[rows],
                        num_entries=ranking.num_entries)


def _rank_by_location(q_feats: np.ndarray, q_ids: np.ndarray, q_cams: np.ndarray, g_feats: np.ndarray,
                      g_ids: np.ndarray, g_cams: np.ndarray, locations: Mapping[int, int], masks: np.ndarray,
                      device=None) -> list[TrialRanking]:
    """Rank every trial (``masks``: (trials, G)), one query location at a time: the
    distances to same-location gallery columns, which never count, are not computed
    (SYSU-MM01: camera-3 queries against camera-2 images). The allowed columns keep their
    order, so ties are broken as over the whole gallery. Queries already sorted by location
    are taken as slices, others gathered; the rankings come back in the queries' order."""
    q_loc = camera_locations(q_cams, locations)
    g_loc = camera_locations(g_cams, locations)
    order = np.argsort(q_loc, kind="stable")
    bounds = np.flatnonzero(np.diff(q_loc[order])) + 1
    in_order = bool(np.all(order[1:] > order[:-1]))
    groups = [(order[r0:r1], np.flatnonzero(g_loc != q_loc[order[r0]]))
              for r0, r1 in zip([0, *bounds], [*bounds, len(order)])]
    # every distance block first: BLAS threads keep spinning for a while after a product,
    # which would slow the ranking threads down after each block
    dists = [squared_euclidean(q_feats[rows[0]:rows[-1] + 1] if in_order else q_feats.take(rows, axis=0),
                               g_feats if cols.size == len(g_ids) else g_feats.take(cols, axis=0), device=device)
             if cols.size else None for rows, cols in groups]
    parts = [[_skipped(len(rows))] * len(masks) if dist is None  # no column left: every query is skipped
             else rank_trials(dist, q_ids[rows], g_ids[cols], trial_masks=masks[:, cols])
             for dist, (rows, cols) in zip(dists, groups)]
    del dists
    merged = []
    for t, mask in enumerate(masks):
        fields = {}
        for name in ("valid", "ap", "inp", "cmc_rank", "num_matches", "first_rank"):
            values = np.concatenate([getattr(part[t], name) for part in parts])
            fields[name] = values if in_order else values[np.argsort(order)]
        merged.append(TrialRanking(**fields, num_identities=len(np.unique(g_ids[mask])),
                                   num_entries=int(np.count_nonzero(mask))))
    return merged


def _skipped(n: int) -> TrialRanking:
    """The ranking of ``n`` queries that have nothing to be ranked against."""
    return TrialRanking(valid=np.zeros(n, dtype=bool), ap=np.full(n, np.nan), inp=np.full(n, np.nan),
                        cmc_rank=np.zeros(n, dtype=np.int64), num_matches=np.zeros(n, dtype=np.int64),
                        num_identities=0, first_rank=np.zeros(n, dtype=np.int64))


def _pool_rows(arrays: Mapping[str, np.ndarray], index: np.ndarray, normalize: bool) -> np.ndarray:
    """Feature rows ``index`` of the pool (the query table, then the gallery table),
    L2-normalised if asked; a whole table in order is used as it is (never modified)."""
    nq = len(arrays["query_feats"])
    for table, offset in (("query_feats", 0), ("gallery_feats", nq)):
        rows = arrays[table]
        if len(index) == len(rows) and index[0] == offset and np.all(np.diff(index) == 1):
            return normalize_rows(rows) if normalize else rows
    in_query = index < nq
    if in_query.all():
        out = arrays["query_feats"].take(index, axis=0)
    elif not in_query.any():
        out = arrays["gallery_feats"].take(index - nq, axis=0)
    else:
        out = np.empty((len(index), arrays["query_feats"].shape[1]), dtype=np.float32)
        out[in_query] = arrays["query_feats"][index[in_query]]
        out[~in_query] = arrays["gallery_feats"][index[~in_query] - nq]
    return normalize_rows(out, out=out) if normalize else out


def _perm_table(protocol: Protocol, perm, data_root):
    from vireid.datasets.sysu_perm import read_rand_perm_cam

    if isinstance(perm, Mapping):
        return perm
    if perm is None:
        if data_root is None:
            raise ProtocolError(f"{protocol.name} draws its galleries from the official permutation file: "
                                f"pass perm=PATH or data_root (which holds {protocol.perm_file})")
        perm = Path(data_root) / protocol.perm_file
    return read_rand_perm_cam(perm)


def _rerank_trial(dist_all: np.ndarray, rows: np.ndarray, mask: np.ndarray, pool: dict, query: np.ndarray,
                  union: np.ndarray, protocol: Protocol, real, k1: int, k2: int, lam: float,
                  variant: str) -> TrialRanking:
    """Re-rank this trial's queries (``rows`` of ``query``) + its gallery (as the public code,
    per trial) and rank."""
    nq = len(query)
    if not mask.all() or len(rows) != nq or np.any(rows != np.arange(nq)):
        keep = np.concatenate([rows, nq + np.flatnonzero(mask)])
        dist_all = dist_all[np.ix_(keep, keep)]
    query, gallery = query[rows], union[mask]
    dist = rerank_from_distance(dist_all, len(query), k1=k1, k2=k2, lam=lam, variant=variant)
    if real is not None:
        (ranking,) = rank_trials(dist, pool["ids"][query], pool["ids"][gallery],
                                 identity_cams=(real[query], real[gallery]))
    else:
        (ranking,) = rank_trials(dist, pool["ids"][query], pool["ids"][gallery], pool["cams"][query],
                                 pool["cams"][gallery], locations=protocol.locations)
    return ranking


def _pool_fingerprint(pool: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in ("ids", "cams"):
        digest.update(np.ascontiguousarray(pool[key], dtype="<i8").tobytes())
    digest.update("\n".join(pool["paths"].tolist()).encode("utf-8"))
    return "pool-sha256:" + digest.hexdigest()[:16]


def _curve_at(cmc: np.ndarray, rank: int) -> float:
    """CMC at ``rank``; a gallery with fewer identities reads the last point (100 %)."""
    return float(cmc[min(rank, len(cmc)) - 1])


def _trial_metrics(summary: dict) -> dict[str, float]:
    out = {"mAP": 100 * summary["mAP"], "mINP": 100 * summary["mINP"]}
    out.update({f"r{r}": 100 * _curve_at(summary["cmc"], r) for r in RANKS})
    return out


def _aggregate(name: str, trial_ids: list[int], rankings: list[TrialRanking],
               cmc: str = "distinct") -> dict[str, Any]:
    """Means over trials, the mean CMC curve (of kind ``cmc``), per-trial values and the std over trials."""
    per_trial, curves = [], []
    for trial, ranking in zip(trial_ids, rankings):
        summary = summarize(ranking, cmc)
        if summary["n_valid"] == 0:
            raise ProtocolError(f"{name}, trial {trial}: none of the {summary['n_skipped']} queries has a true "
                                "match in the gallery (do the query and gallery identities overlap?)")
        curves.append(100 * summary["cmc"])
        per_trial.append({"trial": trial, **_trial_metrics(summary), "n_queries": int(ranking.valid.size),
                          "n_queries_skipped": summary["n_skipped"]})
    length = max(len(c) for c in curves)
    cmc = np.mean([np.pad(c, (0, length - len(c)), mode="edge") for c in curves], axis=0)
    values = {m: np.array([row[m] for row in per_trial]) for m in METRICS}
    out: dict[str, Any] = {m: float(v.mean()) for m, v in values.items()}
    out["cmc"] = [float(v) for v in cmc]
    out["per_trial"] = per_trial
    out["std"] = {m: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for m, v in values.items()}
    out["n_queries"] = per_trial[0]["n_queries"]
    out["n_queries_skipped"] = max(row["n_queries_skipped"] for row in per_trial)
    return out


def evaluate_cross_modal(query_feats, query_ids, query_cams, gallery_feats, gallery_ids, gallery_cams,
                         dataset: str = "sysu") -> dict[str, Any]:
    """Validation on held-out training identities: every image, one trial, infrared queries
    against the visible gallery, with the dataset's distance and same-location rule.

    Returns mAP, mINP, r1, r5, r10, r20, cmc (percentages), distance, n_queries and
    n_queries_skipped.
    """
    from vireid.datasets.registry import get_dataset

    spec = get_dataset(dataset)
    q_feats, g_feats = to_numpy(query_feats, np.float32), to_numpy(gallery_feats, np.float32)
    if spec.normalize:
        q_feats, g_feats = normalize_rows(q_feats), normalize_rows(g_feats)
    g_ids = to_numpy(gallery_ids)
    (ranking,) = _rank_by_location(q_feats, to_numpy(query_ids), to_numpy(query_cams), g_feats, g_ids,
                                   to_numpy(gallery_cams), spec.locations, np.ones((1, len(g_ids)), dtype=bool))
    out = _aggregate(f"{dataset} validation", [0], [ranking])
    return {"distance": distance_name(spec.normalize), **{k: out[k] for k in (*METRICS, "cmc", "n_queries",
                                                                                    "n_queries_skipped")}}


def _cell(res: Mapping[str, Any], metric: str) -> str:
    std = res.get("std", {}).get(metric, 0.0)
    return f"{res[metric]:.2f}" + (f" ± {std:.2f}" if len(res.get("trials", [])) > 1 else "")


def rerank_suffix(rr: Mapping[str, Any], sep: str = "-") -> str:
    """What sets a result's re-ranking variant apart in names and labels: nothing for the
    standard one (so names stay as they were before variants), else ``sep + variant``."""
    variant = rr.get("variant", "standard")
    return "" if variant == "standard" else f"{sep}{variant}"


def rerank_text(rr: Mapping[str, Any]) -> str:
    """``k1=20, k2=6, lambda=0.3``, after the variant's name unless it is the standard one
    (results written before variants existed carry none: they are standard)."""
    variant = rr.get("variant", "standard")
    return ("" if variant == "standard" else f"{variant}, ") + f"k1={rr['k1']}, k2={rr['k2']}, lambda={rr['lambda']}"


def format_results(results: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table: one row per result (mean ± std over trials)."""
    header = ["protocol", "re-ranking", "trials", "R1", "R5", "R10", "R20", "mAP", "mINP", "skipped"]
    rows = []
    for res in results:
        rr = res["rerank"]
        rerank = f"on ({rerank_text(rr)})" if rr["enabled"] else "off"
        trials = res.get("trials", [])
        rows.append([res["protocol"], rerank, str(len(trials)),
                     *(_cell(res, m) for m in ("r1", "r5", "r10", "r20", "mAP", "mINP")),
                     f"{res.get('n_queries_skipped', 0)}/{res.get('n_queries', '?')}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    note = "values in %, mean ± sample std over trials; skipped: queries without a true match (most in a trial)"
    return "\n".join(lines + [note]) + "\n"

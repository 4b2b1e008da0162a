"""Ranking metrics: hand-worked examples, then equality with the slow per-query reference."""
from __future__ import annotations

import numpy as np
import pytest

import vireid.harness.evaluation.metrics as metrics
from eval_reference import reference_metrics
from vireid.datasets.registry import get_dataset
from vireid.harness.evaluation.metrics import compute_metrics, rank_trials, summarize

SYSU_LOCATIONS = get_dataset("sysu").locations  # camera 3 stands at camera 2's location


def test_hand_worked_example():
    # Gallery columns:      0    1    2    3    4
    g_ids = np.array(["A", "B", "A", "C", "B"])
    dist = np.array([
        [0.5, 0.1, 0.9, 0.3, 0.7],  # query A: order B(1) C(3) A(0) B(4) A(2); matches at ranks 3 and 5
        [0.2, 0.05, 0.4, 0.1, 0.8],  # query B: order B(1) C(3) A(0) A(2) B(4); matches at ranks 1 and 5
        [0.1, 0.2, 0.3, 0.4, 0.5],  # query D: not in the gallery -> skipped
    ])
    (r,) = rank_trials(dist, np.array(["A", "B", "D"]), g_ids)
    # AP(A) = (1/3 + 2/5) / 2 = 11/30; AP(B) = (1/1 + 2/5) / 2 = 7/10
    np.testing.assert_allclose(r.ap[:2], [11 / 30, 7 / 10], rtol=0, atol=1e-15)
    # INP = matches / rank of the hardest match: 2/5 for both
    np.testing.assert_allclose(r.inp[:2], [2 / 5, 2 / 5], rtol=0, atol=1e-15)
    # De-duplicated order for A: B C A -> 3; for B: B ... -> 1
    assert r.cmc_rank.tolist() == [3, 1, 0]
    s = summarize(r)
    assert (s["n_valid"], s["n_skipped"]) == (2, 1)
    assert s["mAP"] == pytest.approx((11 / 30 + 7 / 10) / 2, abs=1e-15)  # = 8/15
    assert s["mINP"] == pytest.approx(0.4, abs=1e-15)
    # 3 gallery identities -> 3 points; ranks {3, 1}: [1/2, 1/2, 2/2]
    np.testing.assert_allclose(s["cmc"], [0.5, 0.5, 1.0])


def test_ties_are_broken_by_gallery_column():
    # query A vs gallery [B, A, A] at [0.2, 0.2, 0.1]: A(2) first, then the tie at 0.2 in
    # column order: B(0) before A(1). Matches at ranks 1 and 3: AP = (1 + 2/3) / 2 = 5/6,
    # INP = 2/3, CMC rank 1.
    (r,) = rank_trials(np.array([[0.2, 0.2, 0.1]]), [1], [2, 1, 1])
    assert r.ap[0] == pytest.approx(5 / 6, abs=1e-15)
    assert r.inp[0] == pytest.approx(2 / 3, abs=1e-15)
    assert r.cmc_rank[0] == 1
    # A tie between the first match and a wrong identity: the lower column wins.
    (r,) = rank_trials(np.array([[0.3, 0.3], [0.3, 0.3]]), [1, 2], [2, 1])
    # query 1: B(0) then A(1) -> rank 2, AP 1/2; query 2: its match is column 0 -> rank 1
    assert r.cmc_rank.tolist() == [2, 1]
    np.testing.assert_allclose(r.ap, [0.5, 1.0])


def test_same_location_entries_are_dropped():
    # gallery: A at camera 2 (0.1), B at camera 1 (0.2), A at camera 1 (0.3)
    dist = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    g_ids, g_cams = [1, 2, 1], [2, 1, 1]
    # a camera-3 query loses the camera-2 entry: B(0.2) A(0.3) -> rank 2, AP 1/2, INP 1/2;
    # a camera-6 query keeps it: A B A -> rank 1, AP (1 + 2/3) / 2 = 5/6, INP 2/3
    (r,) = rank_trials(dist, [1, 1], g_ids, [3, 6], g_cams, locations=SYSU_LOCATIONS)
    assert r.cmc_rank.tolist() == [2, 1]
    np.testing.assert_allclose(r.ap, [1 / 2, 5 / 6])
    np.testing.assert_allclose(r.inp, [1 / 2, 2 / 3])
    assert r.num_matches.tolist() == [1, 2]


def test_fewer_identities_left_than_the_gallery_holds():
    # Indoor search: gallery A@cam2, B@cam1, C@cam2, C@cam1 (3 identities). A camera-3 query
    # of B keeps B@cam1 and C@cam1 only (2 identities) -- the public code's CMC crashes here.
    # Remaining order: C(0.4) B(0.5) -> rank 2. A camera-3 query of A has no match left.
    dist = np.array([[0.1, 0.5, 0.2, 0.4], [0.1, 0.5, 0.2, 0.4]])
    s = compute_metrics(dist, [2, 1], [1, 2, 3, 3], [3, 3], [2, 1, 2, 1], locations=SYSU_LOCATIONS)
    np.testing.assert_allclose(s["cmc"], [0.0, 1.0, 1.0])  # one point per gallery identity
    assert (s["n_valid"], s["n_skipped"]) == (1, 1)
    assert s["mAP"] == pytest.approx(0.5) and s["mINP"] == pytest.approx(0.5)


def test_trial_masks_select_gallery_columns():
    dist = np.array([[0.5, 0.1, 0.9, 0.3, 0.7]])
    masks = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 1, 0, 1, 1]], dtype=bool)
    r_all, r_sub, r_none = rank_trials(dist, ["A"], ["A", "B", "A", "C", "B"], trial_masks=masks)
    assert r_all.cmc_rank[0] == 3
    # trial 2 keeps C(3) A(0) A(2): ranks 2, 3 -> AP (1/2 + 2/3) / 2 = 7/12, CMC rank 2
    assert r_sub.ap[0] == pytest.approx(7 / 12) and r_sub.cmc_rank[0] == 2
    assert r_sub.num_identities == 2
    assert not r_none.valid[0]  # trial 3 has no A


def _random_case(rng, nq, ng, n_ids, kind):
    q_ids = rng.integers(0, n_ids + 2, nq)  # some identities absent from the gallery
    g_ids = rng.integers(0, n_ids, ng)
    if kind == "ties":
        dist = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    elif kind == "duplicates":  # duplicate gallery features: identical columns
        feats_q = rng.standard_normal((nq, 5)).astype(np.float32)
        feats_g = rng.standard_normal((ng, 5)).astype(np.float32)
        feats_g[1::3] = feats_g[0:-1:3][: len(feats_g[1::3])]
        dist = ((feats_q[:, None] - feats_g[None]) ** 2).sum(-1).astype(np.float32)
    elif kind == "float64":
        dist = rng.standard_normal((nq, ng))
    else:  # negative zero, zeros and tiny negatives next to positive values
        dist = rng.choice(np.array([-0.0, 0.0, -1e-7, 0.5, 1.0], dtype=np.float32), (nq, ng))
    return dist, q_ids, g_ids, rng.integers(1, 7, nq), rng.integers(1, 7, ng)


KINDS = ["ties", "duplicates", "float64", "signed_zeros"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("block", [1 << 18, 64])
@pytest.mark.parametrize("max_trials", [64, 2])
@pytest.mark.parametrize("buckets", [1024, 1])
def test_equals_the_per_query_reference(kind, block, max_trials, buckets, monkeypatch):
    monkeypatch.setattr(metrics, "_BLOCK_ENTRIES", block)  # 64: many small blocks on two threads
    monkeypatch.setattr(metrics, "_MAX_TRIALS", max_trials)  # 2: the trials ranked in two rounds
    monkeypatch.setattr(metrics, "_BUCKETS", buckets)  # 1: every interval found by binary search
    rng = np.random.default_rng([KINDS.index(kind), block, max_trials, buckets])
    for _ in range(6):
        nq, ng = int(rng.integers(1, 40)), int(rng.integers(1, 70))
        dist, q_ids, g_ids, q_cams, g_cams = _random_case(rng, nq, ng, int(rng.integers(1, 9)), kind)
        masks = rng.random((5, ng)) < rng.uniform(0.1, 0.9)
        rankings = rank_trials(dist, q_ids, g_ids, q_cams, g_cams, locations=SYSU_LOCATIONS, trial_masks=masks,
                               workers=2)
        for ranking, mask in zip(rankings, masks):
            ref = reference_metrics(dist, q_ids, g_ids, q_cams, g_cams, locations=SYSU_LOCATIONS, active=mask)
            np.testing.assert_array_equal(ranking.valid, ref["valid"])
            np.testing.assert_allclose(ranking.ap, ref["ap"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(ranking.inp, ref["inp"], rtol=0, atol=1e-9)
            np.testing.assert_array_equal(ranking.cmc_rank, ref["cmc_rank"])
            if ref["n_valid"]:
                s = summarize(ranking)
                assert s["n_skipped"] == ref["n_skipped"]
                np.testing.assert_allclose(s["cmc"], ref["cmc"], rtol=0, atol=1e-9)
                assert s["mAP"] == pytest.approx(ref["mAP"], abs=1e-9)
                assert s["mINP"] == pytest.approx(ref["mINP"], abs=1e-9)


def test_larger_random_problem_matches_reference():
    rng = np.random.default_rng(7)
    nq, ng = 300, 400
    centres = rng.standard_normal((30, 16))
    q_ids, g_ids = rng.integers(0, 32, nq), rng.integers(0, 30, ng)
    q = centres[np.minimum(q_ids, 29)] + rng.standard_normal((nq, 16))
    g = centres[g_ids] + rng.standard_normal((ng, 16))
    dist = ((q[:, None] - g[None]) ** 2).sum(-1).astype(np.float32)
    (r,) = rank_trials(dist, q_ids, g_ids)
    ref = reference_metrics(dist, q_ids, g_ids)
    np.testing.assert_allclose(r.ap, ref["ap"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.inp, ref["inp"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(r.cmc_rank, ref["cmc_rank"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_distance_ranges_match_reference(dtype):
    # Bucketing must stay monotone and exact: huge spans, near-overflow values, subnormal
    # gaps between true matches, negative distances and exact ties with true matches.
    rng = np.random.default_rng(11)
    info = np.finfo(dtype)
    pool = np.array([-info.max * 0.75, -info.max / 2, -1.0, -info.tiny, 0.0, info.tiny, info.tiny * 3,
                     info.smallest_subnormal, 1.0, 1.0 + info.eps, 2.0, info.max / 4, info.max / 2, info.max * 0.75],
                    dtype=dtype)
    nq, ng = 40, 60
    dist = rng.choice(pool, (nq, ng))
    q_ids, g_ids = rng.integers(0, 5, nq), rng.integers(0, 5, ng)
    masks = rng.random((3, ng)) < 0.6
    rankings = rank_trials(dist, q_ids, g_ids, trial_masks=masks, workers=2)
    for ranking, mask in zip(rankings, masks):
        ref = reference_metrics(dist, q_ids, g_ids, active=mask)
        np.testing.assert_allclose(ranking.ap, ref["ap"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ranking.inp, ref["inp"], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(ranking.cmc_rank, ref["cmc_rank"])


def test_multi_shot_sized_problem_matches_reference():
    # Many trials per column (as multi-shot SYSU), several identities per row, realistic
    # distances: the packed per-trial counts and the bucket path on a larger problem.
    rng = np.random.default_rng(5)
    nq, ng, n_ids = 120, 900, 30
    centres = rng.standard_normal((n_ids, 32)).astype(np.float32)
    q_ids, g_ids = rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)
    q = centres[q_ids] + 1.5 * rng.standard_normal((nq, 32), dtype=np.float32)
    g = centres[g_ids] + 1.5 * rng.standard_normal((ng, 32), dtype=np.float32)
    dist = ((q[:, None] - g[None]) ** 2).sum(-1).astype(np.float32)
    q_cams, g_cams = rng.choice([3, 6], nq), rng.choice([1, 2, 4, 5], ng)
    masks = rng.random((10, ng)) < 0.5
    rankings = rank_trials(dist, q_ids, g_ids, q_cams, g_cams, locations=SYSU_LOCATIONS, trial_masks=masks)
    for ranking, mask in zip(rankings, masks):
        ref = reference_metrics(dist, q_ids, g_ids, q_cams, g_cams, locations=SYSU_LOCATIONS, active=mask)
        np.testing.assert_allclose(ranking.ap, ref["ap"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(ranking.inp, ref["inp"], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(ranking.cmc_rank, ref["cmc_rank"])


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        rank_trials(np.array([[np.nan, 1.0]]), [1], [1, 2])
    with pytest.raises(ValueError, match="length 2"):
        rank_trials(np.zeros((1, 2)), [1], [1, 2, 3])
    with pytest.raises(ValueError, match="2-D"):
        rank_trials(np.zeros(3), [1], [1, 2, 3])
    with pytest.raises(ValueError, match="trial masks"):
        rank_trials(np.zeros((1, 2)), [1], [1, 2], trial_masks=np.ones((1, 3), dtype=bool))

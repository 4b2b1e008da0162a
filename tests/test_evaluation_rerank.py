"""k-reciprocal re-ranking: the vectorised version equals the per-row formulation."""
from __future__ import annotations

import numpy as np
import pytest

import vireid.harness.evaluation.rerank as rerank
from eval_reference import reference_metrics, reference_rerank
from vireid.harness.evaluation.distance import squared_euclidean
from vireid.harness.evaluation.rerank import k_reciprocal_rerank, rerank_from_distance, stable_topk


def _features(rng, n, dim, n_ids, rounded=False):
    ids = rng.integers(0, n_ids, n)
    feats = rng.standard_normal((n_ids, dim))[ids] + 0.8 * rng.standard_normal((n, dim))
    return (np.round(feats) if rounded else feats).astype(np.float32), ids


def _assert_same(fast, slow, q_ids, g_ids):
    # bit-identical; hence equal in float16 and with identical ranking metrics
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast.astype(np.float16), slow.astype(np.float16))
    a, b = reference_metrics(fast, q_ids, g_ids), reference_metrics(slow, q_ids, g_ids)
    np.testing.assert_array_equal(a["cmc_rank"], b["cmc_rank"])
    np.testing.assert_array_equal(a["ap"], b["ap"])


@pytest.mark.parametrize("nq,ng,k1,k2,rounded", [
    (40, 60, 20, 6, False),  # the defaults
    (120, 150, 20, 6, False),
    (50, 70, 5, 3, True),  # many tied distances
    (30, 45, 20, 1, False),  # no query expansion
    (25, 20, 30, 6, False),  # k1 + 1 > N / 2
])
def test_equals_reference(nq, ng, k1, k2, rounded):
    rng = np.random.default_rng(nq * 1000 + ng)
    feats, ids = _features(rng, nq + ng, 6, 12, rounded)
    dist = squared_euclidean(feats, None, device="cpu")
    fast = rerank_from_distance(dist, nq, k1=k1, k2=k2, lam=0.3)
    _assert_same(fast, reference_rerank(dist, nq, k1=k1, k2=k2, lam=0.3), ids[:nq], ids[nq:])


def test_chunked_path_equals_reference(monkeypatch):
    # tiny blocks: many row blocks, query-expansion blocks, query blocks and update chunks on two threads
    monkeypatch.setattr(rerank, "_BLOCK_ENTRIES", 300)
    monkeypatch.setattr(rerank, "_ROW_BLOCK", 7)
    monkeypatch.setattr(rerank, "_QE_ENTRIES", 200)
    monkeypatch.setattr(rerank, "_QUERY_BLOCK_CELLS", 5 * 100)
    monkeypatch.setattr(rerank, "_UPDATE_CHUNK", 50)
    rng = np.random.default_rng(3)
    feats, ids = _features(rng, 180, 8, 15)
    dist = squared_euclidean(feats, None, device="cpu")
    fast = rerank_from_distance(dist, 80, workers=2)
    _assert_same(fast, reference_rerank(dist, 80), ids[:80], ids[80:])


@pytest.mark.parametrize("overhead", [0, 1000])
def test_page_sizes_equal_reference(monkeypatch, overhead):
    # overhead 0: pages of one entry (no padding); 1000: the largest pages (much padding)
    monkeypatch.setattr(rerank, "_PAGE_OVERHEAD", overhead)
    rng = np.random.default_rng(7)
    feats, ids = _features(rng, 160, 6, 12)
    dist = squared_euclidean(feats, None, device="cpu")
    _assert_same(rerank_from_distance(dist, 70, workers=2), reference_rerank(dist, 70), ids[:70], ids[70:])


def test_asymmetric_distances_equal_reference():
    # the reciprocity tests read d[x, i], not d[i, x]: they must hold without symmetry
    rng = np.random.default_rng(9)
    feats, ids = _features(rng, 130, 6, 12)
    dist = squared_euclidean(feats, None, device="cpu")
    dist = dist * rng.uniform(0.7, 1.3, dist.shape).astype(np.float32)
    _assert_same(rerank_from_distance(dist, 50), reference_rerank(dist, 50), ids[:50], ids[50:])


def test_float64_distances_and_features_entry_point():
    rng = np.random.default_rng(5)
    feats, ids = _features(rng, 90, 5, 10)
    dist = squared_euclidean(feats, None, normalize=True, dtype="float64", device="cpu")
    _assert_same(rerank_from_distance(dist, 40), reference_rerank(dist, 40), ids[:40], ids[40:])
    via_feats = k_reciprocal_rerank(feats[:40], feats[40:], normalize=True, device="cpu")
    dist32 = squared_euclidean(feats, None, normalize=True, device="cpu")
    np.testing.assert_array_equal(via_feats, rerank_from_distance(dist32, 40))


def test_stable_topk_equals_stable_argsort():
    rng = np.random.default_rng(11)
    dist = rng.integers(0, 5, (300, 400)).astype(np.float32)  # heavy ties
    dist[:, ::7] = -0.0
    for k in (1, 21, 400):
        np.testing.assert_array_equal(stable_topk(dist, k), np.argsort(dist, axis=1, kind="stable")[:, :k])


def test_bad_arguments():
    dist = np.zeros((4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="num_query"):
        rerank_from_distance(dist, 4)
    with pytest.raises(ValueError, match="square"):
        rerank_from_distance(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="k1 and k2"):
        rerank_from_distance(dist, 2, k1=0)
    with pytest.raises(ValueError, match="lambda"):
        rerank_from_distance(dist, 2, lam=1.5)
    for value in (np.nan, np.inf, -np.inf):
        bad = np.ones((4, 4), dtype=np.float32)
        bad[1, 2] = value
        with pytest.raises(ValueError, match="NaN"):
            rerank_from_distance(bad, 2)
    big = np.ones((200, 200), dtype=np.float32)  # grouped columns (and a tail) on the way to the threshold
    big[150, 199] = -np.inf
    with pytest.raises(ValueError, match="NaN"):
        rerank_from_distance(big, 100)


# ------------------------------------------------- idkl-sysu: the public code's SYSU-MM01 call
@pytest.mark.parametrize("nq,ng,k1,k2,rounded", [
    (40, 60, 20, 6, False),  # the defaults
    (120, 150, 20, 6, False),
    (50, 70, 5, 3, True),  # many tied distances
    (30, 45, 20, 1, False),  # no query expansion
    (12, 40, 20, 6, False),  # k1 + 1 > Q: gallery columns among the neighbours, in index order
    (4, 30, 20, 6, False),  # k2 > Q: gallery rows in the query expansion
    (25, 20, 30, 6, False),  # k1 + 1 > N / 2
])
def test_idkl_sysu_equals_reference(nq, ng, k1, k2, rounded):
    rng = np.random.default_rng(nq * 1000 + ng + 1)
    feats, ids = _features(rng, nq + ng, 6, 12, rounded)
    dist = squared_euclidean(feats, None, device="cpu")
    fast = rerank_from_distance(dist, nq, k1=k1, k2=k2, lam=0.3, variant="idkl-sysu")
    slow = reference_rerank(dist, nq, k1=k1, k2=k2, lam=0.3, variant="idkl-sysu")
    _assert_same(fast, slow, ids[:nq], ids[nq:])
    assert not np.array_equal(fast, rerank_from_distance(dist, nq, k1=k1, k2=k2, lam=0.3))  # a different variant


def test_idkl_sysu_ties_with_the_maximum():
    # small integers: many query entries equal the matrix maximum, which they share with every
    # gallery column of the ranking distances; the query columns rank first (lower index)
    rng = np.random.default_rng(21)
    dist = rng.integers(0, 4, (90, 90)).astype(np.float32)
    dist = np.minimum(dist, dist.T)
    np.fill_diagonal(dist, 0)
    assert (dist[:40, :40] == dist.max()).sum() > 100
    ids = rng.integers(0, 8, 90)
    for k1, k2 in ((20, 6), (5, 3), (45, 6)):
        _assert_same(rerank_from_distance(dist, 40, k1=k1, k2=k2, variant="idkl-sysu"),
                     reference_rerank(dist, 40, k1=k1, k2=k2, variant="idkl-sysu"), ids[:40], ids[40:])


def test_idkl_sysu_hand_worked_ranks():
    # Q = 2, G = 1; ranking distances: column 2 set to the maximum 4 ->
    # [[0, 1, 4], [1, 0, 4], [4, 2, 4]]: row 2 ranks 1 (2), then 0 and 2 tied at 4 -> 0 first
    dist = np.array([[0, 1, 4], [1, 0, 2], [4, 2, 0]], dtype=np.float32)
    with rerank.Workers(1) as threads:
        rank, top = rerank._nearest(dist, 3, threads, 2)
        standard, _ = rerank._nearest(dist, 3, threads, 3)
    np.testing.assert_array_equal(rank, [[0, 1, 2], [1, 0, 2], [1, 0, 2]])
    np.testing.assert_array_equal(standard, [[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    np.testing.assert_array_equal(top, [4, 2, 4])  # the unmodified row maxima


def test_idkl_sysu_ignores_gallery_to_gallery_distances():
    # with Q >= k1 + 1 no gallery row has a k-reciprocal neighbour, so its weights (the only
    # place its od row enters) vanish: the gallery-gallery block cannot change the result
    rng = np.random.default_rng(13)
    feats, ids = _features(rng, 150, 6, 12)
    dist = squared_euclidean(feats, None, device="cpu")
    other = dist.copy()
    other[60:, 60:] = rng.uniform(0, dist.max(), (90, 90)).astype(np.float32)
    base = rerank_from_distance(dist, 60, variant="idkl-sysu")
    np.testing.assert_array_equal(base, rerank_from_distance(other, 60, variant="idkl-sysu"))
    assert not np.array_equal(rerank_from_distance(dist, 60), rerank_from_distance(other, 60))


def test_idkl_sysu_chunked_asymmetric_float64(monkeypatch):
    monkeypatch.setattr(rerank, "_BLOCK_ENTRIES", 300)
    monkeypatch.setattr(rerank, "_ROW_BLOCK", 7)
    monkeypatch.setattr(rerank, "_QE_ENTRIES", 200)
    monkeypatch.setattr(rerank, "_QUERY_BLOCK_CELLS", 5 * 100)
    monkeypatch.setattr(rerank, "_UPDATE_CHUNK", 50)
    rng = np.random.default_rng(17)
    feats, ids = _features(rng, 180, 8, 15)
    dist = squared_euclidean(feats, None, device="cpu")
    asym = dist * rng.uniform(0.7, 1.3, dist.shape).astype(np.float32)
    d64 = squared_euclidean(feats, None, normalize=True, dtype="float64", device="cpu")
    for d in (dist, asym, d64):
        _assert_same(rerank_from_distance(d, 80, variant="idkl-sysu", workers=2),
                     reference_rerank(d, 80, variant="idkl-sysu"), ids[:80], ids[80:])
    via_feats = k_reciprocal_rerank(feats[:80], feats[80:], variant="idkl-sysu", device="cpu")
    np.testing.assert_array_equal(via_feats, rerank_from_distance(dist, 80, variant="idkl-sysu"))


def test_idkl_sysu_bad_input():
    with pytest.raises(ValueError, match="unknown re-ranking variant 'idkl'.*standard, idkl-sysu"):
        rerank_from_distance(np.zeros((4, 4), dtype=np.float32), 2, variant="idkl")
    for value in (np.nan, np.inf, -np.inf):  # also in a gallery column, which the ranking does not read
        bad = np.ones((200, 200), dtype=np.float32)
        bad[150, 199] = value
        with pytest.raises(ValueError, match="NaN"):
            rerank_from_distance(bad, 100, variant="idkl-sysu")

"""Protocols end to end: SYSU-MM01 trials from rand_perm_cam.mat, RegDB/LLCM directions,
the result-dict contract, the validation API and the table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vireid.datasets.errors import DatasetError
from vireid.datasets.sysu_perm import gallery_keys, image_keys, read_rand_perm_cam, write_rand_perm_cam
from eval_reference import reference_metrics, reference_rerank, reference_sqdist
from eval_support import cross_modal_arrays, sysu_trial_gallery, sysu_tree
from vireid.harness.evaluation.distance import normalize_rows, squared_euclidean
from vireid.harness.evaluation.evaluate import evaluate_cross_modal, evaluate_protocol_arrays, format_results
from vireid.harness.evaluation.protocols import Protocol, ProtocolError, get_protocol

SYSU = {"sysu/all/single": ((1, 2, 4, 5), 1), "sysu/all/multi": ((1, 2, 4, 5), 10),
        "sysu/indoor/single": ((1, 2), 1), "sysu/indoor/multi": ((1, 2), 10)}
RESULT_KEYS = {"protocol", "direction", "trials", "rerank", "distance", "dataset_fingerprint", "mAP", "mINP", "cmc",
               "r1", "r5", "r10", "r20", "per_trial", "std", "n_queries", "n_queries_skipped"}


@pytest.fixture(scope="module")
def sysu(tmp_path_factory):
    root = tmp_path_factory.mktemp("sysu")
    arrays, perms = sysu_tree(root)
    return root, arrays, perms


def _percent(ref: dict) -> dict:
    cmc = ref["cmc"]
    return {"mAP": 100 * ref["mAP"], "mINP": 100 * ref["mINP"],
            **{f"r{r}": 100 * cmc[min(r, len(cmc)) - 1] for r in (1, 5, 10, 20)}}


def _sysu_reference(arrays, perms, name, trial, rerank=False, variant="standard"):
    """Independent per-trial numbers: gallery from the permutations, float64 distances on
    L2-normalised features (or the re-ranked trial matrix), per-query loop."""
    cams, shots = SYSU[name]
    gal = sysu_trial_gallery(arrays, perms, cams, trial, shots)
    q = normalize_rows(arrays["query_feats"].astype(np.float64))
    g = normalize_rows(arrays["gallery_feats"][gal].astype(np.float64))
    if rerank:
        # the documented procedure: one (Q + union) float32 distance matrix, the trial's block re-ranked
        union = np.unique(np.concatenate([sysu_trial_gallery(arrays, perms, cams, t, shots) for t in range(10)]))
        feats = np.concatenate([arrays["query_feats"], arrays["gallery_feats"][union]])
        full = squared_euclidean(feats, None, normalize=True, device="cpu")
        keep = np.concatenate([np.arange(len(q)), len(q) + np.searchsorted(union, gal)])
        dist = reference_rerank(full[np.ix_(keep, keep)], len(q), variant=variant)
    else:
        dist = reference_sqdist(q, g)
    return reference_metrics(dist, arrays["query_ids"], arrays["gallery_ids"][gal], arrays["query_cams"],
                             arrays["gallery_cams"][gal], locations={3: 2})


@pytest.mark.parametrize("name", list(SYSU))
def test_sysu_protocols_follow_the_permutation_file(sysu, name):
    root, arrays, perms = sysu
    res = evaluate_protocol_arrays(arrays, name, data_root=root, dataset_fingerprint="fp")
    assert set(res) == RESULT_KEYS
    assert (res["protocol"], res["direction"], res["trials"]) == (name, "i2v", list(range(10)))
    assert res["rerank"] == {"enabled": False, "k1": 20, "k2": 6, "lambda": 0.3, "variant": "standard"}
    assert res["distance"] == "squared_euclidean_l2normalized" and res["dataset_fingerprint"] == "fp"
    n_ids = len(set(arrays["gallery_ids"][np.isin(arrays["gallery_cams"], SYSU[name][0])].tolist()))
    assert len(res["cmc"]) == n_ids
    for row in res["per_trial"]:
        ref = _sysu_reference(arrays, perms, name, row["trial"])
        for key, value in _percent(ref).items():
            assert row[key] == pytest.approx(value, abs=1e-9), (row["trial"], key)
        assert row["n_queries_skipped"] == ref["n_skipped"]
        assert row["n_queries"] == len(arrays["query_ids"])
    for key in ("mAP", "mINP", "r1", "r5", "r10", "r20"):
        values = [row[key] for row in res["per_trial"]]
        assert res[key] == pytest.approx(np.mean(values), abs=1e-9)
        assert res["std"][key] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
    # person 5 is seen by visible camera 2 only: its 3 camera-3 queries have no match left
    assert res["n_queries_skipped"] == 3
    json.dumps(res, allow_nan=False)


def test_camera3_queries_never_match_camera2(sysu, tmp_path):
    root, arrays, perms = sysu
    # Make every camera-2 image identical to the camera-3 queries of its identity: were the
    # same-location rule not applied, each camera-3 query would rank a true match first.
    hacked = {k: v.copy() for k, v in arrays.items()}
    for i in np.flatnonzero(hacked["gallery_cams"] == 2):
        same = (hacked["query_ids"] == hacked["gallery_ids"][i]) & (hacked["query_cams"] == 3)
        if same.any():
            hacked["gallery_feats"][i] = hacked["query_feats"][np.flatnonzero(same)[0]]
    res = evaluate_protocol_arrays(hacked, "sysu/indoor/multi", data_root=root)
    ref = _sysu_reference(hacked, perms, "sysu/indoor/multi", 0)
    assert res["per_trial"][0]["r1"] == pytest.approx(_percent(ref)["r1"], abs=1e-9)
    no_rule = reference_metrics(
        reference_sqdist(normalize_rows(hacked["query_feats"].astype(np.float64)),
                         normalize_rows(hacked["gallery_feats"].astype(np.float64))),
        hacked["query_ids"], hacked["gallery_ids"], active=np.isin(hacked["gallery_cams"], (1, 2)))
    assert res["per_trial"][0]["r1"] < 100 * no_rule["cmc"][0]


def test_sysu_trial_subset_and_reranking(sysu):
    root, arrays, perms = sysu
    full = evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root)
    part = evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root, trials=[5, 2])
    assert part["trials"] == [5, 2]
    assert part["per_trial"] == [full["per_trial"][5], full["per_trial"][2]]
    assert part["dataset_fingerprint"] == full["dataset_fingerprint"]
    rr = evaluate_protocol_arrays(arrays, "sysu/all/multi", data_root=root, trials=[0, 3], rerank=True,
                                  k1=20, k2=6, lam=0.3)
    assert rr["rerank"] == {"enabled": True, "k1": 20, "k2": 6, "lambda": 0.3, "variant": "standard"}
    for row in rr["per_trial"]:
        ref = _sysu_reference(arrays, perms, "sysu/all/multi", row["trial"], rerank=True)
        for key, value in _percent(ref).items():
            assert row[key] == pytest.approx(value, abs=1e-9), (row["trial"], key)


def test_sysu_idkl_variant_per_trial(sysu):
    # the public code's SYSU-MM01 re-ranking, per trial on the trial's own (Q + G) matrix
    root, arrays, perms = sysu
    rr = evaluate_protocol_arrays(arrays, "sysu/indoor/single", data_root=root, trials=[1, 4], rerank=True,
                                  variant="idkl-sysu")
    assert rr["rerank"] == {"enabled": True, "k1": 20, "k2": 6, "lambda": 0.3, "variant": "idkl-sysu"}
    standard = evaluate_protocol_arrays(arrays, "sysu/indoor/single", data_root=root, trials=[1, 4], rerank=True)
    assert rr["per_trial"] != standard["per_trial"]
    for row in rr["per_trial"]:
        ref = _sysu_reference(arrays, perms, "sysu/indoor/single", row["trial"], rerank=True, variant="idkl-sysu")
        for key, value in _percent(ref).items():
            assert row[key] == pytest.approx(value, abs=1e-9), (row["trial"], key)
    assert "on (idkl-sysu, k1=20, k2=6, lambda=0.3)" in format_results([rr])
    assert "on (k1=20, k2=6, lambda=0.3)" in format_results([standard])
    with pytest.raises(ProtocolError, match="unknown re-ranking variant 'sysu'; expected one of: standard, idkl-sysu"):
        evaluate_protocol_arrays(arrays, "sysu/indoor/single", data_root=root, rerank=True, variant="sysu")


def test_permutation_given_as_path_or_table(sysu):
    root, arrays, _ = sysu
    path = root / "exp" / "rand_perm_cam.mat"
    by_root = evaluate_protocol_arrays(arrays, "sysu/indoor/single", data_root=root)
    assert evaluate_protocol_arrays(arrays, "sysu/indoor/single", perm=path) == by_root
    assert evaluate_protocol_arrays(arrays, "sysu/indoor/single", perm=read_rand_perm_cam(path)) == by_root


@pytest.mark.parametrize("dataset", ["regdb", "llcm"])
@pytest.mark.parametrize("direction", ["v2i", "i2v"])
def test_cross_modal_directions(dataset, direction):
    arrays = cross_modal_arrays(absent=2)
    res = evaluate_protocol_arrays(arrays, f"{dataset}/{direction}")
    assert set(res) == RESULT_KEYS
    assert (res["direction"], res["trials"], res["distance"]) == (direction, [0], "squared_euclidean")
    q, g = ("gallery", "query") if direction == "v2i" else ("query", "gallery")  # v2i: visible queries
    ref = reference_metrics(reference_sqdist(arrays[f"{q}_feats"], arrays[f"{g}_feats"]), arrays[f"{q}_ids"],
                            arrays[f"{g}_ids"])
    for key, value in _percent(ref).items():
        assert res[key] == pytest.approx(value, abs=1e-9)
    assert res["cmc"] == pytest.approx(list(100 * ref["cmc"]), abs=1e-9)
    # i2v: the 2 x 3 infrared images of the 2 identities without a visible image are skipped
    assert res["n_queries_skipped"] == (6 if direction == "i2v" else 0)
    assert res["std"] == {k: 0.0 for k in ("mAP", "mINP", "r1", "r5", "r10", "r20")}
    assert res["dataset_fingerprint"].startswith("pool-sha256:")


def test_a_query_location_with_nothing_to_rank_is_skipped():
    # A protocol whose camera-3 queries share camera 2's location with the whole gallery:
    # those queries have no column left (no distance is computed for them) and are skipped;
    # the camera-6 queries are ranked as usual. Same numbers as the slow loop over all pairs.
    protocol = Protocol(name="test/located", dataset="test", direction="i2v", query_cams=(3, 6), gallery_cams=(2,),
                        known_cams=(2, 3, 6), normalize=False, locations={3: 2})
    rng = np.random.default_rng(4)
    ids = np.repeat(np.arange(6), 4)
    centres = rng.standard_normal((6, 8))
    q_cams = np.tile([3, 6], 12)
    arrays = {"query_feats": (centres[ids] + rng.standard_normal((24, 8))).astype(np.float32), "query_ids": ids,
              "query_cams": q_cams, "query_paths": np.array([f"q{i}" for i in range(24)]),
              "gallery_feats": (centres[ids] + rng.standard_normal((24, 8))).astype(np.float32), "gallery_ids": ids,
              "gallery_cams": np.full(24, 2), "gallery_paths": np.array([f"g{i}" for i in range(24)])}
    res = evaluate_protocol_arrays(arrays, protocol)
    assert (res["n_queries"], res["n_queries_skipped"]) == (24, 12)
    ref = reference_metrics(reference_sqdist(arrays["query_feats"], arrays["gallery_feats"]), ids, ids, q_cams,
                            arrays["gallery_cams"], locations={3: 2})
    assert ref["n_skipped"] == 12
    for key, value in _percent(ref).items():
        assert res[key] == pytest.approx(value, abs=1e-9)


def test_reranking_is_off_unless_asked_and_changes_regdb():
    arrays = cross_modal_arrays(n_ids=10, per_id=4, seed=3)
    plain = evaluate_protocol_arrays(arrays, "regdb/i2v")
    rr = evaluate_protocol_arrays(arrays, "regdb/i2v", rerank=True, k1=5, k2=3, lam=0.5)
    assert plain["rerank"]["enabled"] is False and rr["rerank"] == {"enabled": True, "k1": 5, "k2": 3, "lambda": 0.5,
                                                          "variant": "standard"}
    feats = np.concatenate([arrays["query_feats"], arrays["gallery_feats"]])
    nq = len(arrays["query_ids"])
    dist = reference_rerank(squared_euclidean(feats, None, device="cpu"), nq, k1=5, k2=3, lam=0.5)
    ref = reference_metrics(dist, arrays["query_ids"], arrays["gallery_ids"])
    assert rr["mAP"] == pytest.approx(100 * ref["mAP"], abs=1e-9)


def test_protocol_errors(sysu, tmp_path):
    root, arrays, _ = sysu
    with pytest.raises(ProtocolError, match="permutation file"):
        evaluate_protocol_arrays(arrays, "sysu/all/single")
    with pytest.raises(DatasetError, match="not found"):
        evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=tmp_path)
    with pytest.raises(ProtocolError, match="unknown protocol"):
        evaluate_protocol_arrays(arrays, "sysu/outdoor/single", data_root=root)
    with pytest.raises(ProtocolError, match=r"trials must be in 0\.\.9"):
        evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root, trials=[10])
    extra = {k: v.copy() for k, v in arrays.items()}
    extra["gallery_paths"] = extra["gallery_paths"].astype("<U40")
    extra["gallery_paths"][0] = "cam1/0001/0099.jpg"
    with pytest.raises(ProtocolError, match="cam1/0001/0099.jpg.*unknown to the permutation file"):
        evaluate_protocol_arrays(extra, "sysu/all/single", data_root=root)
    odd = cross_modal_arrays()
    odd["gallery_cams"][0] = 7
    with pytest.raises(ProtocolError, match=r"unexpected camera ids \[7\]"):
        evaluate_protocol_arrays(odd, "regdb/i2v")
    disjoint = cross_modal_arrays()
    disjoint["gallery_ids"] = disjoint["gallery_ids"] + 100
    with pytest.raises(ProtocolError, match="none of the .* queries has a true match"):
        evaluate_protocol_arrays(disjoint, "llcm/i2v")


def test_permutation_file_round_trip(tmp_path):
    perms = {1: [np.array([[2, 1, 3], [3, 2, 1]]), np.zeros((0, 0))], 2: [np.array([[1], [1]]), np.array([[2, 1]] * 2)]}
    a, b = tmp_path / "a.mat", tmp_path / "b.mat"
    write_rand_perm_cam(a, perms)
    write_rand_perm_cam(b, perms)
    assert a.read_bytes() == b.read_bytes()  # no timestamp in the header
    table = read_rand_perm_cam(a)
    assert sorted(table) == [1, 2, 3, 4, 5, 6] and table[3] == []
    np.testing.assert_array_equal(table[1][0], perms[1][0])
    # official order: cameras, then persons, then the first shots of row `trial`
    assert gallery_keys(table, [1, 2], [1, 2], num_shots=2)[1].tolist() == image_keys(
        [1, 1, 2, 2, 2], [1, 1, 1, 2, 2], [3, 2, 1, 2, 1]).tolist()
    assert image_keys(2, 7, 13) == 200070013
    # integer matrices (as some tools write them) are accepted too
    import scipy.io

    top = np.empty((6, 1), dtype=object)
    for c in range(6):
        inner = np.empty((1, 1), dtype=object)
        inner[0, 0] = np.array([[2, 1]], dtype=np.int32)
        top[c, 0] = inner
    scipy.io.savemat(tmp_path / "int.mat", {"rand_perm_cam": top})
    assert read_rand_perm_cam(tmp_path / "int.mat")[4][0].tolist() == [[2, 1]]
    inner[0, 0] = np.array([[1.5, 2.0]])
    scipy.io.savemat(tmp_path / "frac.mat", {"rand_perm_cam": top})
    with pytest.raises(DatasetError, match="whole numbers"):
        read_rand_perm_cam(tmp_path / "frac.mat")


def test_validation_api_matches_reference():
    arrays = cross_modal_arrays(absent=1, seed=4)
    q, g = arrays["query_feats"], arrays["gallery_feats"]
    q_cams = np.where(np.arange(len(q)) % 2, 3, 6)  # SYSU-like infrared cameras
    g_cams = np.where(np.arange(len(g)) % 3, 1, 2)
    res = evaluate_cross_modal(q, arrays["query_ids"], q_cams, g, arrays["gallery_ids"], g_cams, dataset="sysu")
    dist = reference_sqdist(normalize_rows(q.astype(np.float64)), normalize_rows(g.astype(np.float64)))
    ref = reference_metrics(dist, arrays["query_ids"], arrays["gallery_ids"], q_cams, g_cams, locations={3: 2})
    for key, value in _percent(ref).items():
        assert res[key] == pytest.approx(value, abs=1e-9)
    assert res["n_queries_skipped"] == ref["n_skipped"] and len(res["cmc"]) == len(ref["cmc"])
    regdb = evaluate_cross_modal(q, arrays["query_ids"], np.full(len(q), 3), g, arrays["gallery_ids"],
                                 np.full(len(g), 2), dataset="regdb")
    assert regdb["distance"] == "squared_euclidean"
    with pytest.raises(ValueError, match="unknown dataset"):
        evaluate_cross_modal(q, arrays["query_ids"], q_cams, g, arrays["gallery_ids"], g_cams, dataset="market")


def test_format_results_table(sysu):
    root, arrays, _ = sysu
    rows = [evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root),
            evaluate_protocol_arrays(cross_modal_arrays(), "regdb/v2i", rerank=True, k1=5, k2=3)]
    text = format_results(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["protocol", "re-ranking", "trials"]
    assert "sysu/all/single" in lines[2] and " off " in lines[2] and "±" in lines[2]
    assert "regdb/v2i" in lines[3] and "on (k1=5, k2=3, lambda=0.3)" in lines[3] and "±" not in lines[3]
    assert f"{rows[0]['r1']:.2f} ± {rows[0]['std']['r1']:.2f}" in lines[2]
    assert f"{rows[0]['n_queries_skipped']}/{rows[0]['n_queries']}" in lines[2]


def test_registry():
    p = get_protocol("sysu/indoor/multi")
    assert (p.query_cams, p.gallery_cams, p.num_shots, p.num_trials, p.locations) == ((3, 6), (1, 2), 10, 10, {3: 2})
    assert get_protocol("llcm/v2i").query_cams == (2,) and get_protocol("regdb/i2v").gallery_cams == (2,)


def test_table_order_does_not_matter(sysu):
    root, arrays, _ = sysu
    cams = arrays["query_cams"]
    # queries shuffled so that cameras 3 and 6 interleave, with a camera-3 query first and a
    # camera-6 query last; gallery shuffled too
    rng = np.random.default_rng(0)
    order = rng.permutation(len(cams))
    first, last = order[cams[order] == 3][0], order[cams[order] == 6][-1]
    order = np.concatenate([[first], order[(order != first) & (order != last)], [last]])
    assert cams[order[0]] == 3 and cams[order[-1]] == 6 and sorted(order.tolist()) == list(range(len(cams)))
    shuffled = {k: (v[order] if k.startswith("query") else v) for k, v in arrays.items()}
    g = rng.permutation(len(arrays["gallery_ids"]))
    shuffled.update({k: v[g] for k, v in arrays.items() if k.startswith("gallery")})
    for name in ("sysu/all/single", "sysu/indoor/multi"):
        a = evaluate_protocol_arrays(arrays, name, data_root=root, dataset_fingerprint="x")
        b = evaluate_protocol_arrays(shuffled, name, data_root=root, dataset_fingerprint="x")
        for key in ("mAP", "mINP", "r1", "r5", "r10", "r20"):
            assert a[key] == pytest.approx(b[key], abs=1e-9), (name, key)

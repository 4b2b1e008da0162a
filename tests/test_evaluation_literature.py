"""The literature's protocols: AGW's RegDB (first-match CMC) and DEEN's LLCM test mode
(drawn trials, same-person-same-camera removal): hand-worked metrics, then equality with
slow references that follow the public code as it is written."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval_reference import reference_deen_draw, reference_metrics, reference_sqdist
from eval_support import cross_modal_arrays, llcm_test_tree
from vireid.harness.evaluation.distance import normalize_rows
from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays
from vireid.harness.evaluation.metrics import rank_trials, summarize
from vireid.harness.evaluation.protocols import PROTOCOLS, ProtocolError, get_protocol

METRICS = ("mAP", "mINP", "r1", "r5", "r10", "r20")


def _percent(ref: dict, cmc_key: str = "cmc") -> dict:
    cmc = ref[cmc_key]
    return {"mAP": 100 * ref["mAP"], "mINP": 100 * ref["mINP"],
            **{f"r{r}": 100 * cmc[min(r, len(cmc)) - 1] for r in (1, 5, 10, 20)}}


def test_first_match_cmc_hand_worked():
    # query A against B B A C at 0.1 0.2 0.3 0.4: the first true match is 3rd among the
    # entries but 2nd among the distinct identities (B, A)
    (r,) = rank_trials(np.array([[0.1, 0.2, 0.3, 0.4]]), ["A"], ["B", "B", "A", "C"])
    assert (r.first_rank[0], r.cmc_rank[0], r.num_entries, r.num_identities) == (3, 2, 4, 3)
    assert r.ap[0] == pytest.approx(1 / 3) and r.inp[0] == pytest.approx(1 / 3)
    np.testing.assert_allclose(summarize(r, "first_match")["cmc"], [0, 0, 1, 1])
    np.testing.assert_allclose(summarize(r)["cmc"], [0, 1, 1])
    with pytest.raises(ValueError, match="unknown CMC kind"):
        summarize(r, "mean")


def test_same_identity_same_camera_hand_worked():
    # gallery A@cam1 (0.1), B@cam1 (0.2), A@cam2 (0.3); query A taken by camera 1.
    dist = np.array([[0.1, 0.2, 0.3]])
    ids, cams = ["A", "B", "A"], [1, 1, 2]
    # DEEN: A@cam1 is dropped, B@cam1 stays: B A -> rank 2, AP 1/2, one match
    (deen,) = rank_trials(dist, ["A"], ids, identity_cams=([1], cams))
    assert (deen.cmc_rank[0], deen.first_rank[0], deen.num_matches[0]) == (2, 2, 1)
    assert deen.ap[0] == pytest.approx(1 / 2) and deen.inp[0] == pytest.approx(1 / 2)
    # nothing dropped: A B A -> rank 1, AP (1 + 2/3) / 2
    (plain,) = rank_trials(dist, ["A"], ids)
    assert plain.cmc_rank[0] == 1 and plain.ap[0] == pytest.approx(5 / 6)
    # the location rule would drop B@cam1 too: A@cam2 first
    (loc,) = rank_trials(dist, ["A"], ids, [1], cams)
    assert loc.cmc_rank[0] == 1 and loc.ap[0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_new_rules_equal_the_per_query_reference(seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(1, 40)), int(rng.integers(1, 70))
    q_ids, g_ids = rng.integers(0, 7, nq), rng.integers(0, 5, ng)
    dist = rng.integers(0, 5, (nq, ng)).astype(np.float32) if seed % 2 else rng.standard_normal((nq, ng))
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    masks = rng.random((4, ng)) < 0.6
    for cams in (None, (q_cams, g_cams)):
        rankings = rank_trials(dist, q_ids, g_ids, trial_masks=masks, identity_cams=cams, workers=2)
        for ranking, mask in zip(rankings, masks):
            ref = reference_metrics(dist, q_ids, g_ids, active=mask, identity_cams=cams)
            np.testing.assert_array_equal(ranking.valid, ref["valid"])
            np.testing.assert_array_equal(ranking.first_rank, ref["first_rank"])
            np.testing.assert_array_equal(ranking.cmc_rank, ref["cmc_rank"])
            np.testing.assert_allclose(ranking.ap, ref["ap"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(ranking.inp, ref["inp"], rtol=0, atol=1e-9)
            if ref["n_valid"]:
                np.testing.assert_allclose(summarize(ranking, "first_match")["cmc"], ref["cmc_first"], atol=1e-12)


@pytest.mark.parametrize("direction", ["v2i", "i2v"])
def test_regdb_agw_is_the_first_match_cmc_of_eval_regdb(direction):
    arrays = cross_modal_arrays(n_ids=9, per_id=4, absent=2, seed=5)
    res = evaluate_protocol_arrays(arrays, f"regdb-agw/{direction}")
    assert (res["protocol"], res["direction"], res["trials"]) == (f"regdb-agw/{direction}", direction, [0])
    assert res["distance"] == "squared_euclidean_l2normalized"
    q, g = ("gallery", "query") if direction == "v2i" else ("query", "gallery")  # v2i: visible queries
    dist = reference_sqdist(normalize_rows(arrays[f"{q}_feats"].astype(np.float64)),
                            normalize_rows(arrays[f"{g}_feats"].astype(np.float64)))
    ref = reference_metrics(dist, arrays[f"{q}_ids"], arrays[f"{g}_ids"])
    for key, value in _percent(ref, "cmc_first").items():
        assert res[key] == pytest.approx(value, abs=1e-9), key
    assert res["cmc"] == pytest.approx(list(100 * ref["cmc_first"]), abs=1e-9)
    assert len(res["cmc"]) == len(arrays[f"{g}_ids"])  # one point per gallery entry
    # the IDKL-style protocol on the same features differs only in its CMC (and distance)
    idkl = evaluate_protocol_arrays({k: v if not k.endswith("feats") else normalize_rows(v) for k, v in arrays.items()},
                                    f"regdb/{direction}")
    assert idkl["mAP"] == pytest.approx(res["mAP"], abs=1e-4) and len(idkl["cmc"]) < len(res["cmc"])


def _deen_reference(root, arrays, direction, trial):
    """Per-trial numbers as DEEN computes them: its gallery draw over the folder tree, cosine
    ranking, eval_llcm's same-person-same-camera removal; v2i is the transposed matrix."""
    vis_cams, nir_cams = range(1, 10), (1, 2, 4, 5, 6, 7, 8, 9)
    ids = sorted(set(arrays["query_ids"].tolist()) | set(arrays["gallery_ids"].tolist()))
    folder, cams, table = ("test_vis", vis_cams, "gallery") if direction == "i2v" else ("test_nir", nir_cams, "query")
    names = [p.rsplit("/", 1)[-1] for p in arrays[f"{table}_paths"]]
    drawn = np.array([names.index(p.rsplit("/", 1)[-1]) for p in reference_deen_draw(root, folder, cams, ids, trial)])
    feats = {t: normalize_rows(arrays[f"{t}_feats"].astype(np.float64)) for t in ("query", "gallery")}
    real = {t: np.array([int(p.rsplit("/", 1)[-1].split("_c")[1][:2]) for p in arrays[f"{t}_paths"]])
            for t in ("query", "gallery")}
    pick = {t: (drawn if t == table else np.arange(len(arrays[f"{t}_ids"]))) for t in ("query", "gallery")}
    q, g = (pick["query"], pick["gallery"])
    dist = reference_sqdist(feats["query"][q], feats["gallery"][g])
    return reference_metrics(dist, arrays["query_ids"][q], arrays["gallery_ids"][g],
                             identity_cams=(real["query"][q], real["gallery"][g]))


@pytest.mark.parametrize("direction", ["i2v", "v2i"])
def test_llcm_deen_follows_deens_test_mode(tmp_path, direction):
    arrays = llcm_test_tree(tmp_path)
    res = evaluate_protocol_arrays(arrays, f"llcm-deen/{direction}", dataset_fingerprint="fp")
    assert (res["direction"], res["trials"], res["distance"]) == (direction, list(range(10)),
                                                                  "squared_euclidean_l2normalized")
    per_trial = []
    for row in res["per_trial"]:
        ref = _deen_reference(tmp_path, arrays, direction, row["trial"])
        for key, value in _percent(ref).items():
            assert row[key] == pytest.approx(value, abs=1e-9), (row["trial"], key)
        assert (row["n_queries"], row["n_queries_skipped"]) == (len(ref["valid"]), ref["n_skipped"])
        per_trial.append(ref["mAP"])
    assert len(set(np.round(per_trial, 12))) > 1  # the draws differ between trials
    for key in METRICS:
        assert res[key] == pytest.approx(np.mean([r[key] for r in res["per_trial"]]), abs=1e-9)
    # i2v: every infrared image queries; v2i: one per infrared (person, camera) folder, 10 in the tree
    assert res["n_queries"] == (len(arrays["query_ids"]) if direction == "i2v" else 10)
    json.dumps(res, allow_nan=False)
    # a subset of trials gives the same per-trial rows; re-ranking runs per trial
    part = evaluate_protocol_arrays(arrays, f"llcm-deen/{direction}", trials=[7, 3], dataset_fingerprint="fp")
    assert part["per_trial"] == [res["per_trial"][7], res["per_trial"][3]]
    rr = evaluate_protocol_arrays(arrays, f"llcm-deen/{direction}", trials=[1], rerank=True, k1=4, k2=2)
    assert rr["rerank"]["enabled"] and 0 < rr["mAP"] <= 100


def test_llcm_deen_needs_llcm_names(tmp_path):
    arrays = llcm_test_tree(tmp_path)
    bad = dict(arrays, gallery_paths=arrays["gallery_paths"].astype("<U80"))
    bad["gallery_paths"][0] = "vis/0001/img.jpg"
    with pytest.raises(ProtocolError, match="'vis/0001/img.jpg' is not an LLCM image name"):
        evaluate_protocol_arrays(bad, "llcm-deen/i2v")
    wrong = dict(arrays, gallery_ids=arrays["gallery_ids"].copy())
    wrong["gallery_ids"][0] += 1
    with pytest.raises(ProtocolError, match="names person .* but the table says person"):
        evaluate_protocol_arrays(wrong, "llcm-deen/v2i")


def test_every_protocol_names_the_code_it_follows():
    assert {"regdb-agw/v2i", "regdb-agw/i2v", "llcm-deen/v2i", "llcm-deen/i2v"} <= set(PROTOCOLS)
    for p in PROTOCOLS.values():
        assert p.follows and "/" in p.follows.split()[0], p.name  # owner/repository first
    assert get_protocol("regdb-agw/i2v").cmc == "first_match" and get_protocol("llcm-deen/v2i").deen_draw == "query"


def test_cli_lists_protocols_and_eval_features_accepts_them(tmp_path, capsys):
    from vireid.harness.cli import main
    from vireid.harness.evaluation.features_file import save_features

    assert main(["protocols"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["protocol", "dataset"]
    listed = {line.split()[0]: line for line in out[2:]}
    assert set(listed) == set(PROTOCOLS)
    assert "first_match" in listed["regdb-agw/i2v"] and "--tvsearch" in listed["regdb-agw/i2v"]
    assert "test_mode = [2, 1]" in listed["llcm-deen/v2i"] and "1KK077/IDKL" in listed["sysu/all/single"]
    arrays = llcm_test_tree(tmp_path / "llcm")
    save_features(tmp_path / "f.npz", arrays)
    for name in ("llcm-deen/i2v", "llcm-deen/v2i"):
        assert main(["eval-features", str(tmp_path / "f.npz"), "--protocol", name, "--json",
                     str(tmp_path / "r.json")]) == 0
        assert json.loads((tmp_path / "r.json").read_text())["protocol"] == name
    save_features(tmp_path / "g.npz", cross_modal_arrays())
    assert main(["eval-features", str(tmp_path / "g.npz"), "--protocol", "regdb-agw/v2i"]) == 0
    assert "regdb-agw/v2i" in capsys.readouterr().out
    assert main(["eval-features", str(tmp_path / "g.npz"), "--protocol", "llcm-deen/i2v"]) == 2
    assert "is not an LLCM image name" in capsys.readouterr().err

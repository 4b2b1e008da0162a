"""`vireid eval-features` and the features file: happy path and each kind of bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eval_support import cross_modal_arrays, sysu_tree
from vireid.harness.cli import main
from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays
from vireid.harness.evaluation.features_file import FeaturesFileError, load_features, save_features
from vireid.harness.evaluation.protocols import ProtocolError
from vireid.harness.evaluation.results import MetricsFile, ProtocolResult, Rerank, RunInfo


@pytest.fixture(scope="module")
def sysu(tmp_path_factory):
    root = tmp_path_factory.mktemp("sysu")
    arrays, _ = sysu_tree(root)
    path = root / "features.npz"
    save_features(path, arrays)
    return root, arrays, path


def test_happy_path_table_and_json(sysu, tmp_path, capsys):
    root, arrays, path = sysu
    out = tmp_path / "result.json"
    perm = root / "exp" / "rand_perm_cam.mat"
    assert main(["eval-features", str(path), "--protocol", "sysu/all/single", "--perm", str(perm),
                 "--trials", "0", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sysu/all/single" in printed and "R1" in printed and "mINP" in printed and f"wrote {out}" in printed
    result = json.loads(out.read_text())
    assert {"protocol", "rerank", "mAP", "mINP", "cmc", "r1", "r5", "r10", "r20", "per_trial",
            "n_queries_skipped", "direction", "trials", "distance", "dataset_fingerprint", "std"} <= set(result)
    assert result["trials"] == [0, 3] and result["rerank"]["enabled"] is False
    assert all(0 <= v <= 100 for v in result["cmc"])
    expected = evaluate_protocol_arrays(arrays, "sysu/all/single", perm=perm, trials=[0, 3])
    assert result == json.loads(json.dumps(expected))


def test_rerank_flags_and_regdb(tmp_path, capsys):
    path = tmp_path / "regdb.npz"
    save_features(path, cross_modal_arrays())
    out = tmp_path / "r.json"
    assert main(["eval-features", str(path), "--protocol", "regdb/v2i", "--rerank", "--k1", "5", "--k2", "3",
                 "--lambda", "0.5", "--json", str(out)]) == 0
    assert "on (k1=5, k2=3, lambda=0.5)" in capsys.readouterr().out
    assert json.loads(out.read_text())["rerank"] == {"enabled": True, "k1": 5, "k2": 3, "lambda": 0.5,
                                                    "variant": "standard"}


def test_rerank_defaults_come_from_the_params_file(tmp_path, capsys):
    """eval-features' re-ranking defaults are eval.rerank_params of --params (params.yaml if not given)."""
    import yaml

    from vireid.harness.config import REPO_ROOT

    path = tmp_path / "regdb.npz"
    save_features(path, cross_modal_arrays())
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    data["eval"]["rerank_params"] = {"k1": 4, "k2": 2, "lam": 0.6, "variant": "standard"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    assert main(["eval-features", str(path), "--protocol", "regdb/v2i", "--rerank", "--params", str(params)]) == 0
    assert "on (k1=4, k2=2, lambda=0.6)" in capsys.readouterr().out
    assert main(["eval-features", str(path), "--protocol", "regdb/v2i", "--rerank", "--params", str(params),
                 "--k2", "3"]) == 0
    assert "on (k1=4, k2=3, lambda=0.6)" in capsys.readouterr().out


def test_rerank_variant_flag(sysu, tmp_path, capsys):
    root, arrays, path = sysu
    out = tmp_path / "v.json"
    perm = root / "exp" / "rand_perm_cam.mat"
    assert main(["eval-features", str(path), "--protocol", "sysu/all/single", "--perm", str(perm), "--trials", "2",
                 "--rerank", "--rerank-variant", "idkl-sysu", "--json", str(out)]) == 0
    assert "on (idkl-sysu, k1=20, k2=6, lambda=0.3)" in capsys.readouterr().out
    expected = evaluate_protocol_arrays(arrays, "sysu/all/single", perm=perm, trials=[2], rerank=True,
                                        variant="idkl-sysu")
    assert json.loads(out.read_text()) == json.loads(json.dumps(expected))
    assert expected["rerank"]["variant"] == "idkl-sysu"
    with pytest.raises(SystemExit) as info:  # argparse names the choices
        main(["eval-features", str(path), "--protocol", "regdb/v2i", "--rerank", "--rerank-variant", "idkl"])
    assert info.value.code == 2
    assert "invalid choice: 'idkl'" in capsys.readouterr().err


def test_evaluate_command_takes_the_variant_from_params(sysu, tmp_path):
    # `vireid evaluate` on a run folder: eval.rerank_params.variant reaches every re-ranked result
    root, arrays, path = sysu
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_features(run_dir / "features.npz", arrays)
    trained = ProtocolResult(protocol="sysu/all/single", direction="i2v", trials=[0], rerank=Rerank(False),
                             distance="squared_euclidean_l2normalized", dataset_fingerprint="fp", mAP=1.0, mINP=1.0,
                             r1=1.0, r5=1.0, r10=1.0, r20=1.0, cmc=[1.0])
    (run_dir / "metrics.json").write_text(json.dumps(MetricsFile(RunInfo("x", "synth-sysu", 0), [trained]).to_dict()))
    out, summary = tmp_path / "m.json", tmp_path / "s.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--out", str(out), "--summary", str(summary),
                 "--set", f"data.root={root}", "--set", "eval.trials=[0, 1]",
                 "--set", "eval.rerank_params.variant=idkl-sysu"]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["rerank"]["enabled"] for r in results] == [False, True]
    assert {r["rerank"]["variant"] for r in results} == {"idkl-sysu"}
    expected = evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root, trials=[0, 1], rerank=True,
                                        variant="idkl-sysu", dataset_fingerprint="fp")
    assert results[1] == json.loads(json.dumps(expected))
    assert set(json.loads(summary.read_text())) == {"sysu/all/single", "sysu/all/single+rerank-idkl-sysu"}
    assert main(["evaluate", "--run-dir", str(run_dir), "--out", str(out),
                 "--set", "eval.rerank_params.variant=sysu"]) == 2  # one line naming the key


def _write(tmp_path, arrays, name="bad.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _broken(kind):
    arrays = cross_modal_arrays()
    if kind == "missing":
        del arrays["gallery_cams"]
    elif kind == "lengths":
        arrays["query_ids"] = arrays["query_ids"][:-1]
    elif kind == "nan":
        arrays["gallery_feats"][4, 1] = np.nan
    elif kind == "shape":
        arrays["query_feats"] = arrays["query_feats"][:, :, None]
    elif kind == "width":
        arrays["gallery_feats"] = arrays["gallery_feats"][:, :3]
    elif kind == "dtype":
        arrays["query_ids"] = arrays["query_ids"].astype(np.float32)
    elif kind == "paths":
        arrays["query_paths"] = np.arange(len(arrays["query_ids"]))
    return arrays


@pytest.mark.parametrize("kind,message", [
    ("missing", "missing array.*gallery_cams"),
    ("lengths", "'query_ids' has 20 entries but 'query_feats' has 21 rows"),
    ("nan", "'gallery_feats' holds NaN or infinite values .first in row 4"),
    ("shape", "'query_feats' must be a non-empty 2-D array"),
    ("width", "'query_feats' has 6 dims but 'gallery_feats' has 3"),
    ("dtype", "'query_ids' must be a 1-D integer array, got float32"),
    ("paths", "'query_paths' must be a 1-D string array"),
])
def test_bad_arrays_name_the_file_and_key(tmp_path, capsys, kind, message):
    path = _write(tmp_path, _broken(kind))
    with pytest.raises(FeaturesFileError, match=f"{path}: .*{message}"):
        main(["eval-features", str(path), "--protocol", "regdb/i2v", "--debug"])
    # without --debug: one line on stderr, exit code 2
    assert main(["eval-features", str(path), "--protocol", "regdb/i2v"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}: ")


def test_unreadable_files(tmp_path):
    with pytest.raises(FeaturesFileError, match="not found"):
        load_features(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(FeaturesFileError, match="not a readable .npz"):
        load_features(garbage)
    pickled = _write(tmp_path, {**cross_modal_arrays(), "query_paths": np.array(["a", 1], dtype=object)}, "obj.npz")
    with pytest.raises(FeaturesFileError, match="'query_paths' cannot be read"):
        load_features(pickled)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(FeaturesFileError, match="single array"):
        load_features(single)


def test_sysu_path_unknown_to_the_permutation_file(sysu, tmp_path):
    root, arrays, _ = sysu
    bad = {k: v.copy() for k, v in arrays.items()}
    bad["gallery_paths"] = bad["gallery_paths"].astype("<U40")
    first = int(np.flatnonzero((bad["gallery_ids"] == 1) & (bad["gallery_cams"] == 4))[0])
    bad["gallery_paths"][first] = "cam4/0001/0042.jpg"  # person 1 has 11 images in camera 4
    path = _write(tmp_path, bad)
    with pytest.raises(ProtocolError, match=f"{path}: .*cam4/0001/0042.jpg.*unknown to the permutation file"):
        main(["eval-features", str(path), "--protocol", "sysu/all/multi", "--perm",
              str(root / "exp" / "rand_perm_cam.mat"), "--debug"])


def test_sysu_needs_perm(sysu):
    _, _, path = sysu
    with pytest.raises(ProtocolError, match="--perm PATH"):
        main(["eval-features", str(path), "--protocol", "sysu/indoor/single", "--debug"])


def test_save_load_round_trip(tmp_path):
    arrays = cross_modal_arrays()
    arrays["query_feats"] = arrays["query_feats"].astype(np.float16)
    save_features(tmp_path / "f.npz", arrays)
    back = load_features(tmp_path / "f.npz")
    assert back["query_feats"].dtype == np.float32 and back["gallery_ids"].dtype == np.int64
    np.testing.assert_array_equal(back["query_paths"], arrays["query_paths"])
    with pytest.raises(FeaturesFileError, match="missing"):
        save_features(tmp_path / "g.npz", {"query_feats": arrays["query_feats"]})
    assert not (tmp_path / "g.npz").exists()


def test_evaluate_study_names_a_run_folder_that_was_not_trained(tmp_path, capsys):
    assert main(["evaluate-study", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--set", "study.variants=[baseline]", "--set", "study.seeds=[4]"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "runs" / "synth-sysu" / "baseline" / "seed4") in err and "train them first" in err
    assert not (tmp_path / "out").exists()

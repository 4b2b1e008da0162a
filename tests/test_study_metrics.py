"""The study's aggregated metrics file: mean, sample std and n per dataset x variant x protocol."""
from __future__ import annotations

import json

import pytest

from vireid.harness.schema import ConfigError


def write_run(folder, seed, map_all, variant="idkl", rerank=False, split=None):
    result = {"protocol": "sysu/all/single", "rerank": {"enabled": rerank, "k1": 20, "k2": 6, "lambda": 0.3,
                                                        "variant": "standard"},
              "r1": map_all - 10, "r10": 90.0, "r20": 95.0, "mAP": map_all, "mINP": 5.0}
    path = folder / variant / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = {"dataset": "synth-sysu", "variant": variant, "seed": seed}
    if split is not None:
        run["params"] = {"data.regdb_split": split}
    path.write_text(json.dumps({"run": run, "results": [result]}))


def test_mean_std_and_n_over_the_seeds(tmp_path):
    from vireid.harness.study_metrics import aggregate

    for seed, value in enumerate((30.0, 32.0, 34.0)):
        write_run(tmp_path, seed, value)
    write_run(tmp_path, 0, 20.0, variant="baseline")
    out = aggregate(tmp_path)["synth-sysu"]
    assert out["idkl"]["sysu/all/single"]["mAP"] == {"mean": 32.0, "std": 2.0, "n": 3}
    assert out["baseline"]["sysu/all/single"]["r1"] == {"mean": 10.0, "std": 0.0, "n": 1}


def test_a_seed_counted_twice_is_refused(tmp_path):
    from vireid.harness.study_metrics import aggregate

    write_run(tmp_path, 0, 30.0)
    write_run(tmp_path / "copy", 0, 31.0)
    with pytest.raises(ConfigError, match="seed 0: it would count as another seed"):
        aggregate(tmp_path)


def test_no_metrics_is_an_error(tmp_path):
    from vireid.harness.study_metrics import aggregate

    with pytest.raises(ConfigError, match="no metrics.json"):
        aggregate(tmp_path)


def test_the_study_metrics_file_is_committed_not_ignored():
    """`dvc exp show` / `dvc metrics diff` read git-tracked metrics at every commit."""
    import subprocess

    from study_support import REPO

    for path in ("metrics/study.json", "metrics/curves/synth-sysu/idkl.csv"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 1, f"{path} is git-ignored"


def test_on_several_splits_the_replicate_is_the_split(tmp_path):
    """RegDB's literature protocol (study.datasets regdb-split1 ... ): each split's mean over its
    seeds, then mean / std / n over the splits; seed 0 of split 2 is not seed 0 counted twice."""
    from vireid.harness.study_metrics import aggregate

    for split, values in ((1, (30.0, 34.0)), (2, (40.0, 40.0))):
        for seed, value in enumerate(values):
            write_run(tmp_path / f"regdb-split{split}", seed, value, split=split)
    out = aggregate(tmp_path)["synth-sysu"]["idkl"]["sysu/all/single"]["mAP"]
    assert out == {"mean": 36.0, "std": pytest.approx(5.6569, abs=1e-4), "n": 2}

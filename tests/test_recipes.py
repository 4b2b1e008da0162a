"""The training recipes the overlays resolve to: AGW's own on real data, IDKL's per dataset (RegDB
without distalign), training on every identity, and the errors of a bad `recipes:` block."""
from __future__ import annotations

import argparse

import pytest

from vireid.harness.config import load_params
from vireid.harness.schema import ConfigError

REAL = ["sysu", "regdb", "llcm"]

# mangye16/Cross-Modal-Re-ID-baseline train.py: --lr 0.1, SGD(nesterov, momentum 0.9, weight decay
# 5e-4) with the backbone group at 0.1 x lr, lr * (epoch + 1) / 10 for epochs 0..9, x0.1 from 20,
# x0.01 from 50, range(0, 81); --batch-size 8 identities x --num_pos 4 per modality; 288 x 144;
# Pad(10) (fill 0) + RandomCrop + flip, no erasing; no AMP; ImageNet ResNet-50, last stride 1;
# every training identity.
AGW_CODE = {
    "train.optimizer": "sgd", "train.lr": 0.1, "train.momentum": 0.9, "train.weight_decay": 5e-4,
    "train.warmup_epochs": 10, "train.warmup_rule": "ramp", "train.milestones": [20, 50], "train.gamma": 0.1,
    "train.epochs": 81, "train.p": 8, "train.k": 8, "train.amp": "off", "train.steps_per_epoch": None,
    "train.val_fraction": 0.0, "train.augment.flip": True, "train.augment.pad": 10, "train.augment.pad_fill": 0,
    "train.augment.random_erasing": 0.0, "train.augment.channel_aug": False,
    "data.image_height": 288, "data.image_width": 144,
    "model.method": "agw", "model.backbone": "resnet50", "model.weights": "imagenet", "model.last_stride": 1,
    "loss.id.enabled": True, "loss.id.weight": 1.0, "loss.triplet.enabled": True, "loss.triplet.weight": 1.0,
}


@pytest.mark.parametrize("dataset", REAL)
def test_agw_real_data_overlay_is_the_agw_code_recipe(dataset):
    flat = load_params(experiment="agw", dataset=dataset).flat()
    assert {k: flat[k] for k in AGW_CODE} == AGW_CODE
    from vireid.methods import resolve_options

    options = resolve_options("agw", {})
    assert (options.non_local_width, options.non_local, options.backbone_lr_scale) == ("code", [0, 2, 3, 0], 0.1)


def test_agw_on_synthetic_data_keeps_the_cpu_recipe():
    params = load_params(experiment="agw", dataset="synth-sysu")
    base = load_params(dataset="synth-sysu")
    assert params.train == base.train and params.data == base.data


@pytest.mark.parametrize("dataset, size, pk", [("sysu", (384, 144), (12, 10)), ("regdb", (256, 128), (6, 10)),
                                               ("llcm", (384, 144), (12, 10))])
def test_idkl_real_data_overlay_is_the_public_code_recipe(dataset, size, pk):
    params = load_params(experiment="idkl", dataset=dataset)
    t = params.train
    assert (t.optimizer, t.lr, t.weight_decay, t.epochs, t.milestones, t.warmup_epochs) == (
        "adam", 3.5e-4, 5e-3, 160, [55, 95], 0)
    assert (params.data.image_height, params.data.image_width) == size and (t.p, t.k) == pk
    assert (t.amp, t.val_fraction, t.select, t.augment.pad, t.augment.pad_fill, t.augment.random_erasing) == (
        "fp16", 0.0, "last", 10, 127, 0.5)
    # The public RegDB config turns distalign off; SYSU and LLCM keep it on.
    assert params.loss["distalign"]["enabled"] is (dataset != "regdb")
    assert ("RegDB" in params.experiment.label) is (dataset == "regdb")


def test_synthetic_default_still_validates_on_held_out_identities():
    assert load_params(experiment="idkl", dataset="synth-sysu").train.val_fraction == 0.2
    params = load_params(experiment="idkl", dataset="sysu", overrides=["train.val_fraction=0.2", "train.select=best"])
    assert (params.train.val_fraction, params.train.select) == (0.2, "best")


def test_select_best_without_validation_is_an_error():
    with pytest.raises(ConfigError, match="train.select: 'best' needs validation identities"):
        load_params(dataset="sysu", overrides=["train.select=best"])


@pytest.mark.parametrize("recipes, message", [
    ("recipes: {cifar: {train: {lr: 1.0}}}", "recipes.cifar: not a dataset; known datasets: llcm, regdb, "),
    ("recipes: {sysu: {study: {seeds: [0]}}}", "recipes.sysu: unknown key 'study'"),
    ("recipes: {sysu: 3}", "recipes.sysu: expected a mapping"),
    ("recipes: [sysu]", "recipes: expected a mapping of dataset name"),
])
def test_bad_recipes_name_the_file_and_key(tmp_path, recipes, message):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {method: idkl}\n" + recipes + "\n")
    with pytest.raises(ConfigError, match=str(path).replace(".", r"\.") + ".*" + message):
        load_params(experiment=str(path), dataset="sysu")


def test_a_recipe_value_is_typed_like_any_parameter(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model: {method: agw}\nrecipes: {regdb: {train: {lr: fast}}}\n")
    assert load_params(experiment=str(path), dataset="sysu").train.lr == 3.5e-4  # not this dataset's recipe
    with pytest.raises(ConfigError, match="train.lr: expected float, got 'fast'"):
        load_params(experiment=str(path), dataset="regdb")


def test_prepare_for_study_caches_every_variant_size(tmp_path, capsys, monkeypatch):
    """`vireid data prepare --for-study`: one manifest, a cache per image size the variants train at."""
    import shutil

    from study_support import tiny_overrides
    from vireid.harness import cli, config

    experiments = tmp_path / "experiments"
    shutil.copytree(config.EXPERIMENTS_DIR, experiments)
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", experiments)  # variant names, not paths, go in study.variants
    bigger = "bigger"
    (experiments / "bigger.yaml").write_text(
        "model: {method: idkl}\nrecipes: {synth-sysu: {data: {image_height: 40, image_width: 20}}}\n")
    prepared = tmp_path / "synth-sysu"
    # --set wins over a recipe, so the image size comes from params.yaml (64 x 32) here
    sets = [a for kv in tiny_overrides(prepared) if not kv.startswith("data.image_") for a in ("--set", kv)]
    sets += ["--set", f"study.variants=[baseline, {bigger}]"]
    assert cli.main(["data", "prepare", "--data", "synth-sysu", "--for-study", *sets]) == 0
    out = capsys.readouterr().out
    assert f"cache for {bigger}" in out and "(40x20)" in out
    caches = sorted(p.name.split("_", 1)[1] for p in (prepared / "cache").glob("*.npy"))
    assert caches == ["40x20.npy", "64x32.npy"], caches


def test_a_regdb_split_is_a_dataset_name_of_the_study():
    """`regdb-split3`: RegDB's overlay on official split 3, prepared in its own folder, with the
    RegDB recipes of the experiments; one entry per split in study.datasets."""
    from vireid.harness.commands.evaluate_study import study_runs

    base = load_params(experiment="idkl", dataset="regdb")
    split = load_params(experiment="idkl", dataset="regdb-split3")
    assert (split.data.regdb_split, split.data.prepared_dir) == (3, "data/prepared/regdb-split3")
    assert (split.data.name, split.data.root) == (base.data.name, base.data.root) == ("regdb", "data/RegDB")
    assert split.loss == base.loss and split.train == base.train  # the RegDB recipe (distalign off) applies
    assert split.loss["distalign"]["enabled"] is False
    with pytest.raises(ConfigError, match=r"data.regdb_split: RegDB has splits \[1, .*10\]; got 11"):
        load_params(dataset="regdb-split11")
    with pytest.raises(ConfigError, match=r"unknown dataset 'sysu-split2': .*sysu.yaml has no official splits"):
        load_params(dataset="sysu-split2")
    args = argparse.Namespace(params=None, overrides=["study.datasets=[regdb-split1, regdb-split2]",
                                                      "study.variants=[idkl]", "study.seeds=[0]"])
    runs = study_runs(args)
    assert [(ds, v, s, p.data.regdb_split) for ds, v, s, p in runs] == [("regdb-split1", "idkl", 0, 1),
                                                                        ("regdb-split2", "idkl", 0, 2)]

"""params.yaml -> typed config: overlays, overrides and errors that name the key path."""
from __future__ import annotations

import re

import pytest

from vireid.harness.config import ConfigError, list_experiments, load_params, parse_override
from vireid.harness.schema import build
from vireid.harness.config import REPO_ROOT as REPO
from vireid.harness.config import SearchParam, TrainConfig, read_yaml


def test_default_params_load_and_are_typed():
    params = load_params()
    assert isinstance(params.train.lr, float)
    assert params.train.k % 2 == 0
    assert params.protocols()  # dataset defaults when eval.protocols is null


@pytest.mark.parametrize("name", list_experiments())
def test_every_experiment_overlay_resolves(name):
    params = load_params(experiment=name)
    assert params.experiment.name == name


def test_override_is_parsed_as_yaml_and_validated():
    params = load_params(overrides=["train.lr=0.001", "train.epochs=3", "eval.protocols=[sysu/all/single]"])
    assert params.train.lr == pytest.approx(1e-3)
    assert params.train.epochs == 3
    assert params.protocols() == ["sysu/all/single"]
    assert load_params().eval.rerank_params.variant == "standard"
    assert load_params(overrides=["eval.rerank_params.variant=idkl-sysu"]).eval.rerank_params.variant == "idkl-sysu"


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=1", "unknown key train.lrr"),
    ("train.epochs=abc", "train.epochs: expected int"),
    ("train.epochs=0", "train.epochs: expected a value >= 1"),
    ("train.k=5", "train.k: expected an even number"),
    ("train.amp=fp8", "train.amp: expected one of"),
    ("model.backbone=vgg", "model.backbone: expected one of"),
    ("eval.rerank_params.variant=idkl", "eval.rerank_params.variant: expected one of"),
    ("data.synthetic.difficulty=2", "data.synthetic.difficulty: expected a value <= 1"),
    ("nosuchblock.x=1", "unknown key nosuchblock"),
])
def test_bad_overrides_name_the_key_path(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_params(overrides=[override])


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("train.lr")


def test_unknown_experiment_lists_known_ones():
    with pytest.raises(ConfigError, match="known experiments: .*idkl"):
        load_params(experiment="no-such-variant")


def test_experiment_with_unknown_top_level_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: {label: x}\ntrian: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_params(experiment=str(bad))


def test_experiment_overlay_values_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {p: one}\n")
    with pytest.raises(ConfigError, match="train.p: expected int"):
        load_params(experiment=str(bad))


def test_malformed_params_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def _train_block(**changes):
    block = read_yaml(REPO / "params.yaml")["train"]
    return {**block, **changes}


def test_schema_types_and_ranges():
    cfg = build(TrainConfig, _train_block(grad_clip=None, milestones=[1, 2]), "train")
    assert cfg.grad_clip is None and cfg.milestones == [1, 2]
    with pytest.raises(ConfigError, match=r"train.milestones\[1\]: expected int"):
        build(TrainConfig, _train_block(milestones=[1, "x"]), "train")
    with pytest.raises(ConfigError, match="expected low < high"):
        build(SearchParam, {"type": "float", "low": 2, "high": 1}, "tune.search_space.x")


def test_params_file_is_the_only_copy_of_the_defaults(tmp_path):
    """The config dataclasses carry types and bounds, not a second set of defaults: a key
    missing from the params file is an error naming it."""
    import dataclasses

    from vireid.harness import config

    for cls in (config.DataConfig, config.SynthConfig, config.ModelConfig, config.TrainConfig, config.AugmentConfig,
                config.EvalConfig, config.RerankConfig, config.TrackingConfig, config.TuneConfig, config.ReportConfig,
                config.StudyConfig):
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert with_default == [], f"{cls.__name__} has defaults {with_default}; params.yaml holds them"
    text = (REPO / "params.yaml").read_text()
    short = tmp_path / "params.yaml"
    short.write_text(re.sub(r"(?m)^  val_every:.*\n", "", text, count=1))
    with pytest.raises(ConfigError, match=r"missing key train.val_every \(int\)"):
        load_params(short)

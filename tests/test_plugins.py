"""A dataset and a method registered from tests/plugins/ alone go through the normal CLI path,
and the one registry mechanism names what is registered when a name is wrong."""
from __future__ import annotations

import json
import os

import pytest
from study_support import REPO, run_cli, tiny_overrides

from vireid.common.registry import PLUGINS_ENV, PluginError, Registry, load_plugins
from vireid.common.schema import ConfigError
from vireid.datasets.errors import DatasetError

PLUGIN = REPO / "tests" / "plugins" / "toy_plugin.py"
EXPERIMENT = REPO / "tests" / "plugins" / "toynet.yaml"


def test_unknown_names_list_what_is_registered():
    from vireid.datasets.registry import get_dataset
    from vireid.harness.evaluation.protocols import ProtocolError, get_protocol
    from vireid.methods import get_method

    with pytest.raises(DatasetError, match=r"unknown dataset 'market'; registered datasets: sysu, regdb, llcm \("):
        get_dataset("market")
    with pytest.raises(ConfigError, match=r"unknown method 'deen'; registered methods: idkl, baseline, agw \("):
        get_method("deen")
    with pytest.raises(ProtocolError, match=r"unknown protocol 'sysu/outdoor'; registered protocols: sysu/all/single"):
        get_protocol("sysu/outdoor")


def test_registry_refuses_a_second_entry_under_a_taken_name():
    registry: Registry[str] = Registry("widget")
    registry.register("a", "first")
    registry.register("a", "first")  # the same entry again (a module imported twice) is fine
    with pytest.raises(PluginError, match="widget 'a' is already registered"):
        registry.register("a", "second")
    assert registry.names() == ["a"] and "a" in registry and list(registry) == ["first"]


def test_plugins_that_cannot_be_imported_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv(PLUGINS_ENV, "no_such_vireid_plugin")
    with pytest.raises(PluginError, match="no module named 'no_such_vireid_plugin'"):
        load_plugins()
    monkeypatch.setenv(PLUGINS_ENV, str(tmp_path / "missing.py"))
    with pytest.raises(PluginError, match="missing.py: file not found"):
        load_plugins()


def test_config_checks_the_dataset_name_against_the_registry():
    from vireid.harness.config import load_params

    with pytest.raises(ConfigError, match="data.dataset: unknown dataset 'toyset'; registered datasets: sysu"):
        load_params(overrides=["data.dataset=toyset"])


def _toy_overrides(prepared):
    return tiny_overrides(prepared, None, **{"data.dataset": "toyset", "data.name": "toyset", "data.label": "Toy set",
                                             "data.synthetic.n_ids": 12, "train.val_fraction": 0.0})


@pytest.mark.slow
def test_plugin_dataset_and_method_train_and_evaluate_through_the_cli(tmp_path):
    """The done-when test of issue 11: no file of the package names `toyset` or `toynet`."""
    prepared, run_dir = tmp_path / "toyset", tmp_path / "run"
    sets = [a for o in _toy_overrides(prepared) for a in ("--set", o)]
    plugin = ["--plugin", str(PLUGIN)]
    listed = run_cli(*plugin, "protocols").stdout
    assert "toyset/i2v" in listed and "toyset/v2i" in listed
    run_cli(*plugin, "data", "prepare", "--experiment", str(EXPERIMENT), *sets)
    # The environment variable is the other way in (DVC stages and subprocesses inherit it).
    env = {PLUGINS_ENV: str(PLUGIN)}
    run_cli("train", "--experiment", str(EXPERIMENT), "--run-dir", str(run_dir), "--no-progress", *sets, env=env)
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert trained["run"]["method"] == "toynet"
    recorded = trained["run"]["params"]
    assert (recorded["model.options.width"], recorded["loss.center.weight"]) == (4, 0.05)
    assert [r["protocol"] for r in trained["results"]] == ["toyset/i2v", "toyset/v2i"]
    history = (run_dir / "history.csv").read_text().splitlines()
    assert "center" in history[0] and len(history) == 3  # the plugin's own loss term, logged per epoch
    assert [r["distance"] for r in trained["results"]] == ["squared_euclidean", "squared_euclidean_l2normalized"]
    out = tmp_path / "eval.json"
    run_cli(*plugin, "evaluate", "--run-dir", str(run_dir), "--out", str(out), *sets)
    results = json.loads(out.read_text())["results"]
    assert {(r["protocol"], r["rerank"]["enabled"]) for r in results} == {
        ("toyset/i2v", False), ("toyset/i2v", True), ("toyset/v2i", False), ("toyset/v2i", True)}
    assert all(0 <= r["mAP"] <= 100 and r["n_queries"] > 0 for r in results)
    assert os.environ.get(PLUGINS_ENV) is None  # the test process itself loaded nothing


@pytest.fixture
def toy_plugin(monkeypatch):
    """The plugin loaded into this process; the registries are as before after the test."""
    import vireid.common.registry as registry
    from vireid.datasets.registry import DATASETS
    from vireid.methods.registry import METHODS

    for reg in (DATASETS, METHODS):
        reg.names()  # built-ins first
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "version", reg.version)
    monkeypatch.setattr(registry, "_loaded", set(registry._loaded))
    monkeypatch.setenv(PLUGINS_ENV, str(PLUGIN))
    load_plugins()


def test_plugin_method_owns_its_options_loss_and_parameter_groups(toy_plugin):
    from vireid.harness.config import load_params
    from vireid.harness.runner import build_method
    from vireid.methods import param_groups

    params = load_params(experiment=str(EXPERIMENT), overrides=["data.dataset=toyset"])
    model = build_method(params, num_classes=5)
    groups = param_groups(model, 0.1)
    assert [(g["name"], g["lr"]) for g in groups] == [("body", 0.1), ("head", pytest.approx(0.3))]
    assert model.cfg.center and model.cfg.center_weight == 0.05
    with pytest.raises(ConfigError, match="unknown key model.options.depth; allowed keys under model.options: width"):
        load_params(experiment=str(EXPERIMENT), overrides=["data.dataset=toyset", "model.options.depth=3"])
    with pytest.raises(ConfigError, match="loss: toynet needs at least one loss term"):
        load_params(experiment=str(EXPERIMENT), overrides=["data.dataset=toyset", "loss.id.enabled=false",
                                                           "loss.center.enabled=false"])


def test_records_that_disagree_with_the_spec_are_refused(tmp_path):
    import pandas as pd

    from vireid.datasets.manifest import check_cameras
    from vireid.datasets.registry import get_dataset

    spec = get_dataset("regdb")
    good = pd.DataFrame({"cam": [2, 3], "modality": ["visible", "infrared"]})
    check_cameras(good, spec, "here")
    with pytest.raises(DatasetError, match="here: camera 4 is not one of RegDB's cameras \\[2, 3\\]"):
        check_cameras(pd.DataFrame({"cam": [4], "modality": ["visible"]}), spec, "here")
    with pytest.raises(DatasetError, match="camera 3 images are 'visible' but RegDB's spec says 'infrared'"):
        check_cameras(pd.DataFrame({"cam": [3], "modality": ["visible"]}), spec, "here")

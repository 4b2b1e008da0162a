"""The methods registry, loss-config and model-option validation (flat and nested forms, the errors
the harness shows), and `vireid describe-model`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vireid.harness import cli
from vireid.harness.schema import ConfigError
from test_methods_losses import one_thread  # noqa: F401 (autouse fixture)
from vireid.methods import (IDKL_ONLY_TERMS, list_methods, loss_defaults, resolve_loss_config, resolve_options,
                            validate_loss_config)

REPO = Path(__file__).resolve().parents[1]


def test_registered_methods():
    assert list_methods() == ["agw", "baseline", "idkl"]
    with pytest.raises(ValueError, match="unknown method 'idk'; registered methods: idkl, baseline, agw"):
        resolve_loss_config("idk")


def test_flat_and_nested_forms_are_the_same_config():
    nested = {"triplet": {"enabled": True, "weight": 2.0, "margin": 0.5, "specific": False},
              "bg_kl": {"enabled": False}, "distalign": False, "kl_batch_rule": "small"}
    flat = {"triplet": True, "triplet_weight": 2, "triplet_margin": 0.5, "triplet_specific": False,
            "bg_kl": False, "distalign": False, "kl_batch_rule": "small"}
    assert resolve_loss_config("idkl", nested) == resolve_loss_config("idkl", flat)


def test_loss_defaults_are_the_public_code():
    code = loss_defaults()
    assert all(code[t] for t in ("id", "triplet", *IDKL_ONLY_TERMS))
    assert (code["triplet_margin"], code["ip_weight"], code["kl_large_batch"], code["kl_batch_rule"]) == (1.3, 0.1, 120,
                                                                                                          "exact")
    assert (code["bg_kl_inter_large"], code["bg_kl_inter_small"], code["sm_kl_inter_large"],
            code["sm_kl_inter_small"], code["distalign_inter_large"], code["distalign_scale_small"]) == (
        0.8, 0.3, 0.8, 0.3, 0.6, 0.1)


def test_params_yaml_loss_block_is_method_neutral():
    """params.yaml's `loss:` holds no method's keys: every registered method loads with it, from its
    own defaults (IDKL's are the public code's), with no escape hatch in the experiment."""
    from vireid.harness.config import load_params
    from vireid.methods import get_method

    for method in list_methods():
        params = load_params(overrides=[f"model.method={method}"])
        assert resolve_loss_config(method, params.loss) == get_method(method).loss.resolve(None)
    assert resolve_loss_config("idkl", load_params().loss) == resolve_loss_config("idkl", loss_defaults())


@pytest.mark.parametrize("method, loss", [
    ("idkl", {"ip": {"weight": 0.3, "centroid": False}, "kl_batch_rule": "large", "sm_kl_inter_small": 0.2}),
    ("baseline", {"triplet": {"margin": 0.7}}), ("agw", {"triplet": False})])
def test_the_recorded_loss_block_is_complete_and_resolves_to_the_same_config(method, loss):
    from vireid.harness.config import load_params
    from vireid.methods import get_method, resolved_loss_mapping

    mapping = resolved_loss_mapping(method, loss)
    schema = get_method(method).loss
    assert resolve_loss_config(method, mapping) == resolve_loss_config(method, loss)
    flat = [(term, key) for term, value in mapping.items() for key in (value if isinstance(value, dict) else [None])]
    assert len(flat) == len(dataclasses.fields(schema.cls))  # every field once, none invented
    assert set(mapping) - set(schema.terms) <= {"kl_batch_rule", "kl_large_batch"}
    # What a run records (Params.loss) is that mapping.
    overrides = [f"model.method={method}", "loss=" + json.dumps(loss)]
    assert load_params(overrides=overrides).loss == mapping


@pytest.mark.parametrize("method, loss, message", [
    ("idkl", {"tripplet": {"enabled": True}}, "loss.tripplet: not a loss term"),
    ("idkl", {"triplet": {"margn": 1.0}}, "unknown key loss.triplet.margn; allowed keys under loss.triplet: "
                                          "enabled, weight, margin, specific"),
    ("idkl", {"ip_weigth": 1.0}, "unknown key loss.ip_weigth"),
    ("idkl", {"bg_kl": {"weight": -1}}, "loss.bg_kl.weight: expected a value >= 0.0"),
    ("idkl", {"sm_kl": {"enabled": "yes"}}, r"loss.sm_kl.enabled: expected bool"),
    ("idkl", {"kl_batch_rule": "always"}, "loss.kl_batch_rule: expected one of 'exact' | 'large' | 'small'"),
    ("idkl", {"ip": {"entropy": False, "centroid": False}}, "loss.ip: enabled, but both"),
    ("idkl", {t: False for t in ("id", "triplet", *IDKL_ONLY_TERMS)}, "loss: every loss term is off"),
    ("baseline", {"bg_kl": {"enabled": True}}, "loss.bg_kl.enabled: the baseline is IDKL with every IDKL term off"),
    ("agw", {"triplet": {"margin": 0.3}}, "unknown key loss.triplet.margin"),
    ("agw", {"id": False, "triplet": False}, "loss: every loss term is off"),
])
def test_validation_errors_name_the_key(method, loss, message):
    with pytest.raises(ConfigError, match=message):
        validate_loss_config(method, loss, path="loss")


def test_experiment_overlays_validate():
    """Each experiment's loss block, as the harness composes it, is valid for its method and complete."""
    from vireid.harness.config import load_params
    from vireid.methods import resolved_loss_mapping

    for name in ("baseline", "idkl-decompose", "idkl-decompose-ip", "idkl-no-distalign", "idkl", "agw"):
        if (REPO / "experiments" / f"{name}.yaml").is_file():
            params = load_params(experiment=name)
            validate_loss_config(params.model.method, params.loss)
            assert params.loss == resolved_loss_mapping(params.model.method, params.loss)
            resolve_options(params.model.method, params.model.options)


def _cli_json(capsys, *args: str) -> dict:
    assert cli.main(["describe-model", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_describe_model_cli(capsys):
    info = _cli_json(capsys, "-e", "idkl", "--set", "model.backbone=resnet50", "--num-classes", "395")
    assert info["trainable_params"] == 49_485_988 == sum(info["parts"].values())
    assert info["loss_terms"] == ["id", "triplet", "specific_id", "modality", "pseudo_modality", "ip", "bg_kl",
                                  "sm_kl", "distalign"]
    base = _cli_json(capsys, "-e", "baseline", "--set", "model.backbone=resnet50", "--num-classes", "395")
    assert set(base["parts"]) == {"front", "shared_back", "bn_necks", "identity_heads"}
    # The same --set key paths as train and tune (params.yaml's), on the resolved parameters.
    tiny = _cli_json(capsys, "-e", "idkl", "--num-classes", "10")
    assert tiny["backbone"] == "tiny"  # params.yaml's default
    off = _cli_json(capsys, "-e", "idkl", "--num-classes", "10", "--set", "loss.ip.enabled=false")
    assert "ip" not in off["loss_terms"]
    assert off["loss"]["ip"] == {"enabled": False, "weight": 0.1, "entropy": True, "entropy_margin": 0.0,
                                 "centroid": True, "centroid_margin": 0.0}
    no_entropy = _cli_json(capsys, "-e", "idkl", "--num-classes", "10", "--set", "loss.ip.entropy=false")
    assert tiny["parts"]["identity_heads"] - no_entropy["parts"]["identity_heads"] == 128 * 10  # the IP classifier
    half = _cli_json(capsys, "-e", "agw", "--num-classes", "10", "--set", "model.options.non_local_width=half")
    assert half["options"]["non_local_width"] == "half"
    assert cli.main(["describe-model", "-e", "agw", "--set", "model.backbone=resnet18", "--num-classes", "10"]) == 0
    table = capsys.readouterr().out
    assert "non_local" in table and "total" in table and "  loss.triplet: on  weight=1.0\n" in table
    assert cli.main(["describe-model", "-e", "nope", "--num-classes", "10"]) == 2
    assert cli.main(["describe-model", "-e", "idkl", "--set", "loss.nope=1", "--num-classes", "10"]) == 2

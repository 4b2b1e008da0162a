"""`vireid export-backbone`: a trained run's trunk as a `model.weights` file (the study's pretraining)."""
from __future__ import annotations

import pytest
import torch

from vireid.harness.cli import main
from vireid.harness.config import load_params

from study_support import tiny_overrides


def test_the_exported_backbone_initialises_every_backbone_of_another_method(prepared_tiny, tmp_path):
    from vireid.harness.runner import build_method, run_training

    run_dir, out = tmp_path / "pretrain", tmp_path / "backbone.pth"
    run_training(load_params(experiment="baseline", dataset="synth-sysu", overrides=tiny_overrides(prepared_tiny)),
                 run_dir, progress=False)
    assert main(["export-backbone", "--run-dir", str(run_dir), "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["export-backbone", "--run-dir", str(run_dir), "--out", str(out)]) == 0
    assert out.read_bytes() == first  # the same bytes every time (a DVC output)
    trained = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
    idkl = build_method(load_params(experiment="idkl", dataset="synth-sysu",
                                    overrides=tiny_overrides(prepared_tiny, **{"model.weights": str(out)})), 7)
    for name, value in idkl.state_dict().items():
        part, _, key = name.partition(".")
        if part in ("front", "shared_back", "specific_back"):  # IDKL's ResNet copies all start from the file
            source = trained[("front." if key.startswith(("conv1", "bn1", "layer1", "layer2")) else "shared_back.")
                             + key]
            assert torch.equal(value, source), name


def test_a_missing_weights_file_names_the_key_and_how_to_make_it(prepared_tiny, tmp_path):
    from vireid.common.schema import ConfigError
    from vireid.harness.runner import build_method

    params = load_params(experiment="baseline", dataset="synth-sysu",
                         overrides=tiny_overrides(prepared_tiny, **{"model.weights": str(tmp_path / "none.pth")}))
    with pytest.raises(ConfigError, match=r"model.weights: .*none.pth.*no such file.*dvc repro pretrain"):
        build_method(params, 5)


def test_a_method_without_one_shared_backbone_is_refused_by_name(prepared_tiny, tmp_path, capsys):
    from vireid.harness.runner import run_training

    run_training(load_params(experiment="agw", dataset="synth-sysu", overrides=tiny_overrides(prepared_tiny)),
                 tmp_path / "agw", progress=False)
    assert main(["export-backbone", "--run-dir", str(tmp_path / "agw"), "--out", str(tmp_path / "x.pth")]) == 2
    assert "method 'agw' has no single shared backbone" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()

"""`vireid import-checkpoint`: checkpoints laid out as the public IDKL / AGW code saves them, built
from our own models, import back to identical features; bad files are refused naming the keys."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vireid.harness.checkpoint_import import CheckpointImportError, import_checkpoint
from vireid.methods import build_model
from checkpoint_layouts_support import agw_code_tree, count_under, idkl_code_tree, prefixed, randomise

CLASSES = 7


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 16, generator=torch.Generator().manual_seed(seed))


def ours(method: str, backbone: str = "tiny", **kw):
    return randomise(build_model(method, num_classes=CLASSES, backbone=backbone, **kw)).eval()


def reimported(path, fmt):
    imported = import_checkpoint(path, fmt)
    plan = imported.plan
    model = build_model(plan.method, num_classes=plan.num_classes, backbone=plan.backbone, **plan.options)
    model.load_state_dict(imported.state, strict=True)
    return model.eval(), imported


def same_features(a, b, two_stems: bool = False) -> bool:
    x = images()
    outs = [(a.extract(x, modality=m), b.extract(x, modality=m)) for m in ((0, 1) if two_stems else (None,))]
    return all(bool(torch.isfinite(fa).all()) and torch.equal(fa, fb) for fa, fb in outs)


def test_idkl_bare_state_dict_imports_to_identical_features(tmp_path):
    model = ours("idkl")
    tree = idkl_code_tree(model, "tiny")
    torch.save(tree.state_dict(), tmp_path / "model_best.pth")  # what the IDKL code saves
    back, imported = reimported(tmp_path / "model_best.pth", "idkl-official")
    assert imported.plan.method == "idkl" and imported.plan.backbone == "tiny" and imported.plan.num_classes == CLASSES
    assert same_features(model, back)
    for name, tensor in model.state_dict().items():  # every tensor, not only those on the feature path
        assert torch.equal(back.state_dict()[name], tensor), name
    unused = {u["group"]: u["count"] for u in imported.provenance["unused"]}
    fr = "backbone.shared_module_fr.model_sh_fr."
    assert unused["unused stages of the shared front's ResNet copy (layer3, layer4)"] == \
        count_under(tree, fr + "layer3.", fr + "layer4.")
    assert unused["unused attention block (special_att)"] == 2
    assert imported.provenance["mapped"] == len(model.state_dict())
    assert imported.provenance["mapped"] + sum(unused.values()) == len(tree.state_dict())
    assert imported.provenance["container"] == "bare state dict"


def test_idkl_baseline_with_dataparallel_prefix(tmp_path):
    model = ours("baseline")
    tree = idkl_code_tree(model, "tiny")
    torch.save(prefixed(tree.state_dict()), tmp_path / "base.pth")
    back, imported = reimported(tmp_path / "base.pth", "idkl-official")
    assert imported.plan.method == "baseline" and imported.provenance["prefix_stripped"] == "module."
    assert same_features(model, back)
    unused = {u["group"]: u["count"] for u in imported.provenance["unused"]}
    group = "specific branch built but never run without decompose (ResNet copy, IN, bn_neck_sp)"
    assert unused[group] == count_under(tree, "backbone.special.", "backbone.IN.", "bn_neck_sp.")


@pytest.mark.parametrize("backbone, inner", [pytest.param("resnet18", "code", marks=pytest.mark.slow),
                                             ("tiny", "half")])
def test_agw_container_with_metrics_imports_to_identical_features(tmp_path, backbone, inner):
    model = ours("agw", backbone, non_local_width=inner)
    tree = agw_code_tree(model, backbone)
    state = {"net": prefixed(tree.state_dict()), "cmc": np.linspace(0.5, 1.0, 20), "mAP": np.float64(0.4321),
             "mINP": np.mean(np.array([0.25, 0.5])), "epoch": 40}  # as the AGW code's train.py saves it
    torch.save(state, tmp_path / "sysu_agw_best.t")
    back, imported = reimported(tmp_path / "sysu_agw_best.t", "agw-official")
    assert imported.plan.backbone == backbone and imported.plan.options == {"non_local_width": inner}
    assert same_features(model, back, two_stems=True)
    prov = imported.provenance
    assert prov["source_entries"]["epoch"] == 40 and prov["source_entries"]["mAP"] == pytest.approx(0.4321)
    assert len(prov["source_entries"]["cmc"]) == 20
    assert "'net'" in prov["container"]
    unused = {u["group"]: u["count"] for u in prov["unused"]}
    vis = "visible_module.visible."
    assert unused["per-modality layer1-layer4 of the visible module's ResNet copy"] == \
        count_under(tree, *(f"{vis}layer{s}." for s in range(1, 5)))
    assert unused["unused stem of the shared trunk's ResNet copy (conv1, bn1)"] == \
        count_under(tree, "base_resnet.base.conv1.", "base_resnet.base.bn1.")


def _agw_file(tmp_path, edit):
    tree = agw_code_tree(ours("agw"), "tiny")
    state = dict(tree.state_dict())
    edit(state)
    torch.save({"net": state, "epoch": 1}, tmp_path / "edited.t")
    return tmp_path / "edited.t"


def test_missing_key_is_refused_naming_it(tmp_path):
    path = _agw_file(tmp_path, lambda s: s.pop("base_resnet.base.layer2.0.bn1.running_mean"))
    with pytest.raises(CheckpointImportError, match=r"layer2\.0\.bn1\.running_mean \(from "
                                                     r"base_resnet\.base\.layer2\.0\.bn1\.running_mean\)"):
        import_checkpoint(path, "agw-official")


def test_extra_key_is_refused_naming_it(tmp_path):
    path = _agw_file(tmp_path, lambda s: s.update({"classifier.bias": torch.zeros(CLASSES),
                                                   "attention.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointImportError, match=r"2 checkpoint entries match nothing.*classifier\.bias"):
        import_checkpoint(path, "agw-official")


def test_misshaped_key_is_refused_naming_it(tmp_path):
    path = _agw_file(tmp_path, lambda s: s.update({"bottleneck.weight": torch.ones(64)}))
    with pytest.raises(CheckpointImportError, match=r"bottleneck\.weight \(64,\) -> bn_neck\.weight \(128,\)"):
        import_checkpoint(path, "agw-official")


def test_wrong_format_names_what_is_missing(tmp_path):
    torch.save(idkl_code_tree(ours("idkl"), "tiny").state_dict(), tmp_path / "idkl.pth")
    with pytest.raises(CheckpointImportError, match="base_resnet.base"):
        import_checkpoint(tmp_path / "idkl.pth", "agw-official")


def test_mixed_non_local_widths_are_refused(tmp_path):
    def widen(state):
        state["NL_2.0.theta.weight"] = torch.zeros(3, 32, 1, 1)
    with pytest.raises(CheckpointImportError, match=r"inner widths \[1, 3\]"):
        import_checkpoint(_agw_file(tmp_path, widen), "agw-official")


class _Payload:
    """Unpickling this would run code (create the marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    tree = agw_code_tree(ours("agw"), "tiny")
    torch.save({"net": tree.state_dict(), "epoch": 3, "extra": _Payload(marker)}, tmp_path / "evil.t")
    with pytest.raises(CheckpointImportError, match=r"refused without loading.*builtins\.exec"):
        import_checkpoint(tmp_path / "evil.t", "agw-official")
    assert not marker.exists()


def test_not_a_checkpoint_and_wrong_containers(tmp_path):
    (tmp_path / "noise.pth").write_bytes(os.urandom(256))
    with pytest.raises(CheckpointImportError, match="noise.pth: not a readable checkpoint"):
        import_checkpoint(tmp_path / "noise.pth", "idkl-official")
    torch.save({"weights": [1, 2], "epoch": 3}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointImportError, match=r"odd.pth: expected a state dict .*found 'weights' \(list\)"):
        import_checkpoint(tmp_path / "odd.pth", "idkl-official")
    state = agw_code_tree(ours("agw"), "tiny").state_dict()
    half = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    torch.save(half, tmp_path / "half.pth")
    with pytest.raises(CheckpointImportError, match="some keys carry the DataParallel prefix"):
        import_checkpoint(tmp_path / "half.pth", "agw-official")


def test_cli_import_evaluate_report(prepared_tiny, tmp_path):
    """import -> evaluate (features extracted on the dataset) -> report row 'imported: AGW code'."""
    from vireid.harness.cli import main
    from vireid.harness.data import extract_features, load_prepared
    from vireid.harness.imported_run import score_arrays
    from vireid.datasets.transforms import EvalTransform
    from vireid.harness.config import load_params
    from vireid.harness.runner import query_gallery_indices
    from study_support import tiny_overrides

    model = ours("agw", non_local_width="code")
    torch.save({"net": agw_code_tree(model, "tiny").state_dict(), "mAP": np.float64(0.5), "epoch": 9},
               tmp_path / "agw.t")
    run_dir = tmp_path / "runs" / "agw-import"
    sets = [a for o in tiny_overrides(prepared_tiny) for a in ("--set", o)]
    assert main(["import-checkpoint", str(tmp_path / "agw.t"), "--format", "agw-official", "--out", str(run_dir),
                 "--name", "agw-code"]) == 0
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert len(prov["sha256"]) == 64 and prov["model_options"] == {"non_local_width": "code"}
    params = load_params(dataset="synth-sysu", overrides=tiny_overrides(prepared_tiny))
    arrays, info, _ = score_arrays(run_dir, params)
    data = load_prepared(params.data)
    q_idx, _ = query_gallery_indices(data.records, "test")
    direct = extract_features(model, data, q_idx, 64, EvalTransform(), torch.device("cpu"))
    np.testing.assert_array_equal(arrays["query_feats"], direct)
    out = tmp_path / "metrics" / "agw-code" / "metrics.json"
    assert main(["evaluate", "--data", "synth-sysu", *sets, "--run-dir", str(run_dir), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["run"]["kind"] == "imported" and metrics["run"]["imported"]["label"] == "AGW code"
    assert [r["protocol"] for r in metrics["results"]][:len(params.protocols())] == params.protocols()
    assert main(["report", "--runs", str(tmp_path / "metrics"), "--out", str(tmp_path / "report"),
                 "--no-published"]) == 0
    table = (tmp_path / "report" / "tables" / "comparison_ours.csv").read_text()
    assert "imported: AGW code" in table
    # A second import into the same (now non-empty) folder is refused.
    assert main(["import-checkpoint", str(tmp_path / "agw.t"), "--format", "agw-official", "--out",
                 str(run_dir)]) == 2

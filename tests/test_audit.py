"""`vireid data audit`: reference points of a prepared dataset, and the cue-correlation knob."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from study_support import tiny_overrides
from vireid.harness.audit import audit, audit_markdown, gradient_features, grey_features
from vireid.harness.cli import main
from vireid.harness.config import load_params
from vireid.harness.data import load_prepared, prepare_from_params


def _prepared(root: Path, **synth) -> object:
    extra = [f"data.synthetic.{k}={v}" for k, v in synth.items()]
    extra += [f"data.image_height={synth['height']}", f"data.image_width={synth['width']}"]
    params = load_params(dataset="synth-sysu", overrides=tiny_overrides(root) + extra)
    prepare_from_params(params.data)
    return load_prepared(params.data)


def test_matcher_features_are_unit_and_ignore_brightness():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 200, (3, 32, 16, 3)).astype(np.uint8)
    brighter = (images.astype(np.int32) + 40).astype(np.uint8)
    for fn in (grey_features, gradient_features):
        f, g = fn(images), fn(brighter)
        assert f.shape == (3, 24 * 12)
        np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, rtol=1e-5)
        np.testing.assert_allclose(f, g, atol=1e-4)  # an offset changes neither zero-mean pixels nor gradients


def test_audit_reference_points_on_a_tiny_set(prepared_tiny):
    params = load_params(dataset="synth-sysu", overrides=tiny_overrides(prepared_tiny))
    result = audit(load_prepared(params.data), params.protocols())
    n = result["test_identities"]
    assert result["chance_r1_single_gallery"] == pytest.approx(100 / n, abs=0.01)
    cross = result["cross_modal"]
    assert set(cross) == {p for p in params.protocols() if not p.endswith("/multi")}
    for rows in cross.values():
        assert set(rows) == {"chance", "pixels", "gradient", "linear"}
        assert all(0 <= m["r1"] <= 100 and 0 <= m["mAP"] <= 100 for m in rows.values())
    assert set(result["cue_shuffle"]["results"]) == {"none", "shared", "visible", "infrared"}
    # re-rendering without a swap reproduces the written test set's matcher figure
    protocol = result["cue_shuffle"]["protocol"]
    none = result["cue_shuffle"]["results"]["none"]["gradient"]
    assert abs(none["mAP"] - cross[protocol]["gradient"]["mAP"]) < 5
    text = audit_markdown(result)
    assert "| shuffled group |" in text and f"| {protocol} | gradient |" in text


def test_audit_command_writes_json_and_markdown(prepared_tiny, tmp_path, capsys):
    sets = [a for o in tiny_overrides(prepared_tiny) for a in ("--set", o)]
    assert main(["data", "audit", "--data", "synth-sysu", *sets, "--out", str(tmp_path / "audit")]) == 0
    result = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert (tmp_path / "audit" / "audit.md").read_text() == audit_markdown(result)
    assert "Dataset audit" in capsys.readouterr().out


@pytest.mark.slow
def test_cue_correlation_makes_infrared_cues_cross_the_modality_gap(tmp_path):
    """docs/synthetic-dataset.md: with cue_correlation 0 the infrared-only cues carry nothing the
    visible images predict, so shuffling them between identities leaves cross-modal matching as
    it is; at 1 they follow the latent code, and the shuffle costs cross-modal mAP."""
    drops = {}
    for rho in (0.0, 1.0):
        data = _prepared(tmp_path / f"rho{rho}", n_ids=60, images_per_cam=3, height=48, width=24, difficulty=0.1,
                         cue_correlation=rho)
        shuffle = audit(data, ["sysu/all/single"])["cue_shuffle"]["results"]
        drops[rho] = shuffle["none"]["gradient"]["mAP"] - shuffle["infrared"]["gradient"]["mAP"]
    assert abs(drops[0.0]) < 3
    assert drops[1.0] > drops[0.0] + 3


def test_report_refuses_a_file_that_is_not_an_audit(tmp_path):
    from vireid.harness.report import ReportError
    from vireid.harness.report.reference import load_audits

    bad = tmp_path / "audit.json"
    bad.write_text('{"dataset": "sysu"}')
    with pytest.raises(ReportError, match=r"audit.json: not a dataset audit"):
        load_audits([bad])
    bad.write_text("{not json")
    with pytest.raises(ReportError, match=r"audit.json: unreadable dataset audit"):
        load_audits([bad])


def test_doc_region_is_written_from_an_audit(prepared_tiny, tmp_path):
    sets = [a for o in tiny_overrides(prepared_tiny) for a in ("--set", o)]
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- vireid:audit:begin -->\nold\n<!-- vireid:audit:end -->\nafter\n")
    out = tmp_path / "audit"
    assert main(["data", "audit", "--data", "synth-sysu", *sets, "--out", str(out), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and (out / "audit.md").read_text() in text and text.endswith("after\n")
    nodoc = tmp_path / "none.md"
    nodoc.write_text("no region\n")
    assert main(["data", "audit", "--from-audit", str(out), "--doc", str(nodoc)]) == 2
    assert nodoc.read_text() == "no region\n"


@pytest.mark.slow
def test_report_shows_reference_points_next_to_trained_rows(tmp_path):
    """The report's reference table is the audit's, and each variant's R1 is set against the best
    matcher of the same dataset (matched by fingerprint), with the ratio recomputed here."""
    import importlib.util
    import sys

    from vireid.harness.report import build_report

    spec = importlib.util.spec_from_file_location(
        "report_make_runs", Path(__file__).parent / "fixtures" / "report" / "make_runs.py")
    fx = sys.modules.get("report_make_runs") or importlib.util.module_from_spec(spec)
    if "report_make_runs" not in sys.modules:
        sys.modules["report_make_runs"] = fx
        spec.loader.exec_module(fx)
    runs = tmp_path / "runs"
    fx.make_runs(runs)
    audit_file = tmp_path / "audit.json"
    audit_file.write_text(json.dumps({
        "dataset": "sysu", "fingerprint": "fp-sysu", "test_identities": 150, "queries": 1800,
        "gallery_images": 2904, "match_size": [24, 12],
        "cross_modal": {"sysu/all/single": {"chance": {"r1": 0.7, "mAP": 2.0}, "pixels": {"r1": 4.0, "mAP": 5.0},
                                            "gradient": {"r1": 8.0, "mAP": 9.0}, "linear": {"r1": 6.0, "mAP": 7.0}}},
    }))
    written = build_report(runs, tmp_path / "out", published_csv=None, audits=[audit_file])
    md = written["markdown"].read_text()
    assert "### Reference points (dataset audit)" in md
    assert "Nearest neighbour, gradient magnitude" in md
    baseline = [json.loads(p.read_text()) for p in runs.rglob("metrics.json")]
    r1 = [r["r1"] for m in baseline if m["run"]["variant"] == "baseline" for r in m["results"]
          if r["protocol"] == "sysu/all/single" and not r["rerank"]["enabled"]]
    label = next(m["run"]["variant_label"] for m in baseline if m["run"]["variant"] == "baseline")
    mean = sum(r1) / len(r1)
    assert f"{label}: sysu/all/single R1 {mean:.1f} (n={len(r1)}) = {mean / 8.0:.1f}x the best pixel" in md


@pytest.mark.slow
def test_nir_luma_weight_brings_the_infrared_image_closer_to_the_visible_one(tmp_path):
    """docs/synthetic-dataset.md: the larger the share of a material's NIR reflectance that follows
    its visible luminance, the more a cross-modal pixel matcher finds."""
    found = {}
    for w in (0.0, 1.0):
        data = _prepared(tmp_path / f"w{w}", n_ids=60, images_per_cam=3, height=48, width=24, difficulty=0.1,
                         nir_luma_weight=w)
        found[w] = audit(data, ["sysu/all/single"])["cross_modal"]["sysu/all/single"]["pixels"]["mAP"]
    assert found[1.0] > found[0.0] + 3


def test_the_runs_starting_backbone_is_a_reference_point_but_not_a_pixel_matcher(prepared_tiny, tmp_path):
    """With model.weights set, the audit measures that backbone untrained on this dataset; the
    report lists it, and "x the best pixel matcher" still compares with the pixel matchers."""
    import torch

    from vireid.harness.report.reference import best_matcher, reference_tables
    from vireid.methods.backbones import TinyResNet

    weights = tmp_path / "backbone.pth"
    torch.manual_seed(0)
    torch.save(TinyResNet().state_dict(), weights)
    sets = [a for o in tiny_overrides(prepared_tiny, **{"model.weights": str(weights)}) for a in ("--set", o)]
    assert main(["data", "audit", "--data", "synth-sysu", *sets, "--out", str(tmp_path / "audit")]) == 0
    result = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert result["backbone"] == {"weights": str(weights), "arch": "tiny"}
    for protocol, rows in result["cross_modal"].items():
        assert 0 <= rows["pretrained"]["r1"] <= 100
        rows["pretrained"]["r1"] = 100.0  # stronger than every pixel matcher
        assert best_matcher(result, protocol)[0] in ("pixels", "gradient", "linear")
    assert "| sysu/all/single | pretrained |" in (tmp_path / "audit" / "audit.md").read_text()
    result["_path"] = "audit.json"
    labels = [row[0].text for row in reference_tables(result)[0].rows]
    assert "The runs' starting backbone, no fine-tuning (model.weights)" in labels
    # the same weights give the same figures (the audit is a DVC stage)
    assert main(["data", "audit", "--data", "synth-sysu", *sets, "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "audit.json").read_text() == (tmp_path / "audit" / "audit.json").read_text()

"""`vireid data check | synth | prepare | contact-sheet` end to end (in-process)."""
from __future__ import annotations

import json
from pathlib import Path

from datasets_support import TINY, make_sysu
from PIL import Image

from vireid.harness.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_synth_then_check(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--layout", "llcm", "--out", str(out), "--ids", "6", "--images-per-cam", "1",
                 "--height", "32", "--width", "16", "--seed", "2"]) == 0
    assert "wrote 36 images of 6 identities in the llcm layout" in capsys.readouterr().out
    assert main(["data", "synth", "--layout", "llcm", "--out", str(out), "--ids", "6", "--images-per-cam", "1",
                 "--height", "32", "--width", "16", "--seed", "2"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    manifest = tmp_path / "m.csv"
    assert main(["data", "check", "--dataset", "llcm", "--root", str(out), "--out", str(manifest)]) == 0
    text = capsys.readouterr().out
    meta = json.loads((tmp_path / "m.json").read_text())
    assert f"fingerprint: {meta['fingerprint']}" in text
    assert "train  infrared" in text and "36 images, 6 identities" in text


def test_synth_settings_default_to_params_yaml_and_flags_are_checked_as_params(tmp_path, capsys):
    """Each `data synth` flag is `--set data.synthetic.<field>`: params.yaml gives what is not passed,
    and a bad value is refused by the same schema, naming the key."""
    import yaml

    from vireid.datasets.synth import read_stamp

    out = tmp_path / "synth"
    assert main(["data", "synth", "--layout", "regdb", "--out", str(out), "--ids", "6", "--images-per-cam", "1",
                 "--height", "32", "--width", "16", "--set", "data.synthetic.difficulty=0.25",
                 "--ir-model", "nir"]) == 0
    stamp = read_stamp(out)
    block = yaml.safe_load(open(REPO / "params.yaml"))["data"]["synthetic"]
    assert (stamp["n_ids"], stamp["difficulty"], stamp["ir_model"]) == (6, 0.25, "nir")
    assert (stamp["seed"], stamp["cue_correlation"], stamp["nir_luma_weight"]) == (
        block["seed"], block["cue_correlation"], block["nir_luma_weight"])
    capsys.readouterr()
    assert main(["data", "synth", "--layout", "sysu", "--out", str(tmp_path / "bad"), "--ids", "2"]) == 2
    assert "data.synthetic.n_ids: expected a value >= 4, got 2" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_check_defaults_to_the_root_and_reports_errors(tmp_path, capsys):
    root = make_sysu(tmp_path / "SYSU")
    assert main(["data", "check", "--dataset", "sysu", "--root", str(root), "--workers", "1"]) == 0
    assert (root / "manifest.parquet").is_file() and (root / "manifest.json").is_file()
    capsys.readouterr()
    (root / "cam5/0002/0001.jpg").write_bytes(b"garbage")
    out = tmp_path / "bad.parquet"
    assert main(["data", "check", "--dataset", "sysu", "--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: 1 unreadable or truncated image(s)" in err and "cam5/0002/0001.jpg" in err
    assert not out.exists() and not (tmp_path / "bad.json").exists()


def test_prepare_from_params(tmp_path, capsys):
    prepared = tmp_path / "prepared"
    sets = [f"data.root={prepared / 'dataset'}", f"data.prepared_dir={prepared}", "data.synthetic.n_ids=8",
            "data.synthetic.images_per_cam=1", "data.synthetic.height=32", "data.synthetic.width=16",
            "data.image_height=32", "data.image_width=16", "data.cache_workers=1"]
    argv = ["data", "prepare", "--data", "synth-sysu"] + [x for s in sets for x in ("--set", s)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    n_images = len(list((prepared / "dataset").rglob("*.jpg")))  # 8 ids x 6 cameras x 1, less the absent ones
    assert f"generated {n_images} synthetic images" in first and "cache built" in first and 32 < n_images < 48
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "manifest reused" in second and "cache reused" in second


def test_contact_sheet(tmp_path, capsys):
    root = tmp_path / "synth"
    assert main(["data", "synth", "--layout", "sysu", "--out", str(root), "--ids", str(TINY["n_ids"]),
                 "--images-per-cam", "2", "--height", "32", "--width", "16"]) == 0
    sheet = tmp_path / "sheet.png"
    assert main(["data", "contact-sheet", "--root", str(root), "--out", str(sheet), "--ids", "3",
                 "--per-modality", "2"]) == 0
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.height > 3 * 96

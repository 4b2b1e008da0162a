"""The synthetic generator: real layouts, determinism, stamps, and a genuinely cross-modal signal."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets_support import TINY, tiny_synth, tree_digest
from PIL import Image

from vireid.datasets.errors import DatasetError
from vireid.datasets.registry import get_adapter
from vireid.datasets.synth import FILES, STAMP, SynthSettings, ensure_synthetic, generate
from vireid.datasets.sysu import read_id_list
from vireid.datasets.sysu_perm import read_rand_perm_cam


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm"])
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, layout):
    a = tree_digest(tiny_synth(tmp_path / "a", layout, seed=3))
    b = tree_digest(tiny_synth(tmp_path / "b", layout, seed=3))
    c = tree_digest(tiny_synth(tmp_path / "c", layout, seed=4))
    assert a == b
    assert a != c


def test_worker_count_does_not_change_the_bytes(tmp_path):
    generate("sysu", tmp_path / "one", SynthSettings(**TINY), workers=1)
    generate("sysu", tmp_path / "two", SynthSettings(**TINY), workers=2)
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")


def test_sysu_layout(tmp_path):
    root = tiny_synth(tmp_path / "s", "sysu", n_ids=10, test_fraction=0.3, val_fraction=0.1)
    assert sorted(p.name for p in root.iterdir()) == sorted(["cam1", "cam2", "cam3", "cam4", "cam5", "cam6", "exp",
                                                             STAMP, FILES])
    perm = read_rand_perm_cam(root / "exp/rand_perm_cam.mat")
    for cam in range(1, 7):
        persons = sorted(p.name for p in (root / f"cam{cam}").iterdir())
        # every person in cameras 3..6; some never seen indoors (cameras 1, 2), as the real set
        assert persons == [f"{i:04d}" for i in range(1, 11)] if cam > 2 else len(persons) < 10
        for pid in persons:
            assert sorted(p.name for p in (root / f"cam{cam}/{pid}").iterdir()) == ["0001.jpg", "0002.jpg"]
        assert len(perm[cam]) == int(persons[-1])  # one entry per person up to the camera's largest id
        for number, person in enumerate(perm[cam], start=1):
            assert person.shape == ((10, 2) if f"{number:04d}" in persons else (10, 0))
    lines = {n: (root / f"exp/{n}_id.txt").read_text() for n in ("train", "val", "test")}
    assert all(text.count("\n") == 1 for text in lines.values())  # one line each
    ids = {n: read_id_list(root / f"exp/{n}_id.txt") for n in lines}
    assert (len(ids["train"]), len(ids["val"]), len(ids["test"])) == (6, 1, 3)
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == list(range(1, 11))
    assert sorted(perm) == [1, 2, 3, 4, 5, 6]
    for cam in perm:
        for person in perm[cam]:
            assert person.size == 0 or (np.sort(person, axis=1) == [1, 2]).all()
    visible = Image.open(root / "cam1/0001/0001.jpg")
    infrared = Image.open(root / "cam3/0001/0001.jpg")
    assert visible.format == infrared.format == "JPEG"
    assert visible.mode == infrared.mode == "RGB" and visible.size == (16, 32)
    channels = np.asarray(infrared, np.int16)
    assert np.abs(channels - channels.mean(-1, keepdims=True)).max() <= 2  # equal channels (up to JPEG)
    assert np.abs(np.diff(np.asarray(visible, np.int16), axis=-1)).mean() > 5  # a colour image


def test_regdb_layout(tmp_path):
    root = tiny_synth(tmp_path / "r", "regdb")
    names = sorted(p.name for p in (root / "idx").iterdir())
    assert names == sorted(f"{kind}_{mod}_{t}.txt" for kind in ("train", "test") for mod in ("visible", "thermal")
                           for t in range(1, 11))
    first = (root / "idx/train_visible_1.txt").read_text().splitlines()[0].split()
    assert first[0].startswith("Visible/") and first[0].endswith(".bmp") and first[1] == "0"
    thermal = Image.open(next((root / "Thermal").rglob("*.bmp")))
    assert thermal.format == "BMP" and thermal.mode == "RGB"  # 3-channel, as the real thermal BMPs
    splits = [frozenset(get_adapter("regdb").read(root, t).records.query("split == 'test'")["pid"])
              for t in (1, 2, 3)]
    assert len(set(splits)) > 1  # the trials split the identities differently


def test_llcm_layout(tmp_path):
    root = tiny_synth(tmp_path / "l", "llcm")
    assert sorted(p.name for p in (root / "idx").iterdir()) == ["test_id.txt", "test_nir.txt", "test_vis.txt",
                                                                "train_nir.txt", "train_vis.txt"]
    names = [p.name for p in (root / "nir").rglob("*.jpg")]
    assert names and all(n.endswith("_nir.jpg") and "_c0" in n for n in names)


def test_stamp_reuse_regenerate_and_refuse(tmp_path):
    root = tmp_path / "synth"
    settings = SynthSettings(**TINY)
    assert ensure_synthetic(root, "sysu", settings)["images"] == len(list(root.rglob("*.jpg"))) > 8 * 4 * 2
    assert json.loads((root / STAMP).read_text())["seed"] == 0
    assert ensure_synthetic(root, "sysu", settings) is None  # same settings: kept
    changed = ensure_synthetic(root, "sysu", SynthSettings(**{**TINY, "seed": 1}))
    assert changed is not None and json.loads((root / STAMP).read_text())["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    real = tmp_path / "real"
    (real / "cam1").mkdir(parents=True)
    with pytest.raises(DatasetError, match="refusing to overwrite"):
        ensure_synthetic(real, "sysu", settings)
    assert sorted(p.name for p in real.iterdir()) == ["cam1"]


def test_settings_are_checked():
    with pytest.raises(DatasetError, match="difficulty"):
        SynthSettings(**{**TINY, "difficulty": 1.5}).resolved("sysu")
    with pytest.raises(DatasetError, match="fewer than 2"):
        SynthSettings(**{**TINY, "n_ids": 4, "test_fraction": 0.1}).resolved("sysu")
    with pytest.raises(ValueError, match=r"unknown \['ids'\], missing \['n_ids'\]"):
        SynthSettings.from_dict({**{k: v for k, v in TINY.items() if k != "n_ids"}, "ids": 3})
    assert SynthSettings.from_dict(TINY).height == 32


def test_the_params_block_and_the_generator_have_the_same_settings():
    """data.synthetic is the generator's settings plus `enabled`: prepare and `data synth` pass it
    through by field name, so a new setting is added to SynthSettings, SynthConfig and params.yaml only."""
    import dataclasses

    from vireid.harness.config import SynthConfig, load_params
    from vireid.harness.data import synth_settings

    assert [f.name for f in dataclasses.fields(SynthConfig)] == ["enabled"] + [
        f.name for f in dataclasses.fields(SynthSettings)]
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())["data"]["synthetic"]
    settings = SynthSettings.from_dict(synth_settings(load_params().data.synthetic))
    assert dataclasses.asdict(settings) == {k: v for k, v in raw.items() if k != "enabled"}  # no second copy


def _edge_features(root, records) -> np.ndarray:
    """Gradient magnitude of the grey image, z-normalised: polarity-free shape and texture."""
    grey = np.stack([np.asarray(Image.open(root / p).convert("L"), np.float32) for p in records["path"]])
    gy, gx = np.gradient(grey, axis=(1, 2))
    x = np.hypot(gx, gy).reshape(len(grey), -1)
    return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)


def _cross_modal(root):
    rec = get_adapter("sysu").read(root).records
    x = _edge_features(root, rec)
    ir = (rec["modality"] == "infrared").to_numpy()
    pid = rec["pid"].to_numpy()
    corr = x[ir] @ x[~ir].T / x.shape[1]
    same = pid[ir][:, None] == pid[~ir][None, :]
    gap = float(np.mean([c[s].mean() - c[~s].mean() for c, s in zip(corr, same)]))
    rank1 = float(np.mean(pid[~ir][corr.argmax(1)] == pid[ir]))
    return gap, rank1


def test_shared_cues_link_the_modalities_and_difficulty_weakens_them(tmp_path):
    """Same-identity visible/infrared pairs look more alike than different identities, so a
    cross-modal matcher can learn; raising the difficulty shrinks the margin."""
    size = dict(n_ids=30, images_per_cam=2, height=48, width=24)
    gap, rank1 = _cross_modal(tiny_synth(tmp_path / "mid", "sysu", difficulty=0.5, **size))
    easy_gap, easy_rank1 = _cross_modal(tiny_synth(tmp_path / "easy", "sysu", difficulty=0.0, **size))
    hard_gap, _ = _cross_modal(tiny_synth(tmp_path / "hard", "sysu", difficulty=1.0, **size))
    chance = 1 / 30
    assert gap > 0.01 and rank1 > 1.5 * chance
    assert easy_gap > gap > hard_gap
    assert easy_rank1 > rank1


def test_each_modality_has_its_own_cues(tmp_path):
    """Visible images of one identity share clothing colours; infrared images carry no colour."""
    root = tiny_synth(tmp_path / "s", "sysu", n_ids=12, difficulty=0.5)
    rec = get_adapter("sysu").read(root).records
    vis = rec[rec["modality"] == "visible"]
    centre = lambda p: np.asarray(Image.open(root / p), np.float32)[10:16, 6:10].reshape(-1, 3).mean(0)  # noqa: E731
    colours = np.stack([centre(p) for p in vis["path"]])
    pid = vis["pid"].to_numpy()
    dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    same = (pid[:, None] == pid[None]) & ~np.eye(len(pid), dtype=bool)
    assert dist[same].mean() < 0.7 * dist[pid[:, None] != pid[None]].mean()

"""The adapters read each real layout (hand-built and synthetic trees) into schema records."""
from __future__ import annotations

import pytest
from datasets_support import make_llcm, make_regdb, make_sysu, tiny_synth

from vireid.datasets.errors import DatasetError
from vireid.datasets.registry import get_adapter, list_datasets
from vireid.datasets.schema import RECORD_COLUMNS, validate_records


def test_registry_lists_the_three_datasets():
    assert list_datasets() == ["sysu", "regdb", "llcm"]
    with pytest.raises(DatasetError, match="unknown dataset 'market'"):
        get_adapter("market")
    with pytest.raises(DatasetError, match="splits"):
        get_adapter("sysu").read("/nonexistent", split=2)


def test_sysu_hand_built(tmp_path):
    root = make_sysu(tmp_path / "SYSU-MM01")
    layout = get_adapter("sysu").read(root)
    rec = validate_records(layout.records)
    assert tuple(rec.columns) == RECORD_COLUMNS
    assert len(rec) == 5 * 6 * 2
    assert set(rec.loc[rec["split"] == "train", "pid"]) == {1, 2, 3}  # train_id + val_id
    assert set(rec.loc[rec["split"] == "test", "pid"]) == {4, 5}
    assert set(rec.loc[rec["modality"] == "infrared", "cam"]) == {3, 6}
    assert set(rec.loc[rec["modality"] == "visible", "cam"]) == {1, 2, 4, 5}
    row = rec[rec["path"] == "cam3/0004/0002.jpg"].iloc[0]
    assert (row["pid"], row["cam"], row["modality"], row["split"]) == (4, 3, "infrared", "test")
    assert layout.index_files == ["exp/train_id.txt", "exp/val_id.txt", "exp/test_id.txt", "exp/rand_perm_cam.mat"]


def test_sysu_ignores_unlisted_persons_and_warns_about_listed_without_images(tmp_path):
    root = make_sysu(tmp_path / "s", train=(1, 2), val=(3,), test=(4, 5))
    (root / "exp/val_id.txt").write_text("3,9\n")  # 9 has no images
    make_sysu(tmp_path / "other", train=(7,), val=(), test=(8,))
    for cam in range(1, 7):  # person 7 on disk but in no list
        (tmp_path / "other" / f"cam{cam}/0007").rename(root / f"cam{cam}/0007")
    layout = get_adapter("sysu").read(root)
    assert 7 not in set(layout.records["pid"])
    assert any("[9]" in w for w in layout.warnings)


@pytest.mark.parametrize("split", [1, 7])
def test_regdb_hand_built(tmp_path, split):
    root = make_regdb(tmp_path / "RegDB")
    rec = validate_records(get_adapter("regdb").read(root, split=split).records)
    assert len(rec) == 6 * 2 * 2
    assert set(rec.loc[rec["modality"] == "visible", "cam"]) == {2}
    assert set(rec.loc[rec["modality"] == "infrared", "cam"]) == {3}
    # pids are the person folders: distinct between train and test although both files label from 0
    assert set(rec.loc[rec["split"] == "train", "pid"]) == {1, 2, 3}
    assert set(rec.loc[rec["split"] == "test", "pid"]) == {4, 5, 6}
    assert rec["path"].str.match(r"^(Visible|Thermal)/\d+/").all()


def test_llcm_hand_built(tmp_path):
    root = make_llcm(tmp_path / "LLCM")
    layout = get_adapter("llcm").read(root)
    rec = validate_records(layout.records)
    assert set(rec["cam"]) == {2, 3}
    assert (rec.loc[rec["cam"] == 3, "modality"] == "infrared").all()
    assert rec.loc[rec["modality"] == "infrared", "path"].str.startswith("nir/").all()
    assert layout.index_files == ["idx/train_vis.txt", "idx/train_nir.txt", "idx/test_vis.txt", "idx/test_nir.txt"]


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm"])
def test_adapters_read_synthetic_trees(tmp_path, layout):
    root = tiny_synth(tmp_path / layout, layout)
    rec = validate_records(get_adapter(layout).read(root).records)
    train, test = set(rec.loc[rec["split"] == "train", "pid"]), set(rec.loc[rec["split"] == "test", "pid"])
    assert train and test and not train & test
    assert set(rec["pid"]) == set(range(1, 9))
    both = rec.groupby("pid")["modality"].nunique()
    assert (both == 2).all()

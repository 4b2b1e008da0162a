"""Every kind of broken dataset is rejected with an error naming the file, and nothing is written."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from datasets_support import make_llcm, make_regdb, make_sysu

from vireid.datasets.errors import DatasetError, DatasetWarning
from vireid.datasets.manifest import build_manifest
from vireid.datasets.prepare import prepare
from vireid.datasets.samplers import ModalityBalancedIdentitySampler
from vireid.datasets.schema import modality_codes
from vireid.datasets.sysu_perm import read_rand_perm_cam, write_rand_perm_cam


def assert_rejected(dataset: str, root: Path, tmp_path: Path, *names: str) -> str:
    """prepare() fails with every one of ``names`` in the message and writes no manifest or cache."""
    prepared = tmp_path / "prepared"
    with pytest.raises(DatasetError) as info:
        prepare(dataset, root, prepared, size=(16, 8), workers=2, progress=False)
    message = str(info.value)
    for name in names:
        assert name in message, message
    assert not (prepared / "manifest.parquet").exists()
    assert not (prepared / "manifest.json").exists()
    assert not (prepared / "cache").exists()
    return message


@pytest.fixture
def sysu(tmp_path) -> Path:
    return make_sysu(tmp_path / "SYSU-MM01")


@pytest.fixture
def regdb(tmp_path) -> Path:
    return make_regdb(tmp_path / "RegDB")


# --- missing folders and files ---------------------------------------------------------------

def test_missing_root(tmp_path):
    assert_rejected("sysu", tmp_path / "nowhere", tmp_path, "nowhere", "folder not found")


def test_missing_camera_folder(sysu, tmp_path):
    shutil.rmtree(sysu / "cam4")
    assert_rejected("sysu", sysu, tmp_path, str(sysu / "cam4"), "folder not found")


def test_missing_sysu_id_file(sysu, tmp_path):
    (sysu / "exp/test_id.txt").unlink()
    assert_rejected("sysu", sysu, tmp_path, "exp/test_id.txt", "file not found")


def test_missing_modality_folder(regdb, tmp_path):
    shutil.rmtree(regdb / "Thermal")
    assert_rejected("regdb", regdb, tmp_path, str(regdb / "Thermal"))


def test_missing_index_file(regdb, tmp_path):
    (regdb / "idx/test_thermal_1.txt").unlink()
    assert_rejected("regdb", regdb, tmp_path, "idx/test_thermal_1.txt", "file not found")


# --- images ----------------------------------------------------------------------------------

def test_truncated_image(sysu, tmp_path):
    path = sysu / "cam2/0001/0002.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_rejected("sysu", sysu, tmp_path, str(path), "truncated")


def test_unreadable_image(regdb, tmp_path):
    path = regdb / "Thermal/5/t_5_1.bmp"
    path.write_bytes(b"this is not a bitmap")
    assert_rejected("regdb", regdb, tmp_path, str(path), "cannot decode")


# --- the SYSU permutation file ---------------------------------------------------------------

def test_truncated_mat(sysu, tmp_path):
    path = sysu / "exp/rand_perm_cam.mat"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert_rejected("sysu", sysu, tmp_path, str(path))


def test_mat_without_the_variable(sysu, tmp_path):
    path = sysu / "exp/rand_perm_cam.mat"
    scipy.io.savemat(path, {"something_else": np.eye(2)})
    assert_rejected("sysu", sysu, tmp_path, str(path), "rand_perm_cam")


def test_mat_naming_a_missing_image(sysu, tmp_path):
    path = sysu / "exp/rand_perm_cam.mat"
    perm = read_rand_perm_cam(path)
    perm[1][3] = np.tile(np.array([1, 2, 3]), (10, 1))  # person 4 (test), camera 1: image 3 does not exist
    write_rand_perm_cam(path, perm)
    assert_rejected("sysu", sysu, tmp_path, str(path), "cam1/0004/0003.jpg")


# --- index files -----------------------------------------------------------------------------

def _rewrite_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line, expected", [
    ("Visible/1/v_1_9.bmp 0", "not found"),
    ("../outside.bmp 0", "outside the dataset root"),
    ("/etc/passwd 0", "absolute"),
    ("Visible/1/v_1_0.bmp", "malformed line"),
    ("Visible/1/v_1_0.bmp zero", "not an integer"),
    ("Visible\\1\\v_1_0.bmp 0", "backslash"),
    ("Thermal/1/t_1_0.bmp 0", "Visible/<person number>/<file>"),
])
def test_bad_index_lines(regdb, tmp_path, line, expected):
    index = regdb / "idx/train_visible_1.txt"
    _rewrite_line(index, 2, line)
    assert_rejected("regdb", regdb, tmp_path, f"{index}:2", expected)


def test_duplicate_index_line(regdb, tmp_path):
    index = regdb / "idx/train_visible_1.txt"
    _rewrite_line(index, 2, index.read_text().splitlines()[0])
    assert_rejected("regdb", regdb, tmp_path, f"{index}:2", "already listed on line 1")


def test_inconsistent_label(regdb, tmp_path):
    index = regdb / "idx/train_visible_1.txt"
    _rewrite_line(index, 2, "Visible/1/v_1_1.bmp 5")
    assert_rejected("regdb", regdb, tmp_path, f"{index}:2", "one label per person")


def test_empty_index_file(tmp_path):
    root = make_llcm(tmp_path / "LLCM")
    (root / "idx/test_nir.txt").write_text("\n")
    assert_rejected("llcm", root, tmp_path, "idx/test_nir.txt", "empty")


def test_malformed_sysu_id_list(sysu, tmp_path):
    (sysu / "exp/val_id.txt").write_text("3,x\n")
    assert_rejected("sysu", sysu, tmp_path, "exp/val_id.txt", "'x'")


# --- identity splits -------------------------------------------------------------------------

def test_sysu_ids_in_train_and_test(sysu, tmp_path):
    (sysu / "exp/test_id.txt").write_text("1,4,5\n")
    assert_rejected("sysu", sysu, tmp_path, "exp/train_id.txt", "exp/test_id.txt", "identities 1 ")


def test_regdb_ids_in_train_and_test(tmp_path):
    root = make_regdb(tmp_path / "RegDB", train=(1, 2, 3), test=(3, 4, 5))
    assert_rejected("regdb", root, tmp_path, "idx/train_visible_1.txt", "idx/test_visible_1.txt", "identities 3 ")


# --- one-modality identities -----------------------------------------------------------------

def test_one_modality_identity_warns_is_recorded_and_never_sampled(regdb, tmp_path):
    index = regdb / "idx/train_thermal_1.txt"
    index.write_text("".join(line + "\n" for line in index.read_text().splitlines() if "/1/" not in line))
    with pytest.warns(DatasetWarning, match=r"one modality only.*\[1\]"):
        manifest = build_manifest("regdb", regdb, workers=1)
    assert manifest.one_modality_ids == [1]
    assert any("[1]" in w for w in manifest.warnings)
    train = manifest.records[manifest.records["split"] == "train"].reset_index(drop=True)
    with pytest.warns(DatasetWarning, match=r"\[1\]"):
        sampler = ModalityBalancedIdentitySampler(train["pid"].to_numpy(), modality_codes(train["modality"]),
                                                  p=2, k=2, seed=0)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert 1 not in set(train["pid"].to_numpy()[batch])

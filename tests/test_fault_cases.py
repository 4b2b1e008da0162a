"""Hostile inputs and faults (tests/fault_cases.py): one clean line naming the culprit, or a
correct result where the input is merely unusual."""
from __future__ import annotations

import numpy as np
import pytest

from fault_cases import FAULTS, cache_file, main_inprocess, prepared, run_fault, synth_tree


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_fails_cleanly(fault, tmp_path):
    code, message, err = run_fault(fault, tmp_path)
    assert code == fault.code, err
    assert message.startswith("error:") or "error:" in message, err
    assert "Traceback" not in err
    assert fault.expect in message, message
    if fault.written:
        assert not (tmp_path / fault.written).exists(), f"{fault.written} was written"
    if fault.kept:
        assert (tmp_path / fault.kept).exists(), f"{fault.kept} was removed"


def test_prepare_rebuilds_a_cache_overwritten_in_place(tmp_path):
    sets = prepared(tmp_path)
    path = cache_file(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[:200] + bytes(len(good) - 200))
    code, out, err = main_inprocess(["data", "prepare", "--data", "synth-sysu", *sets])
    assert code == 0, err
    assert "cache rebuilt (content differs" in out
    assert path.read_bytes() == good
    code, out, _ = main_inprocess(["data", "prepare", "--data", "synth-sysu", *sets])
    assert "cache reused" in out


def test_prepare_rebuilds_a_cache_without_digests(tmp_path):
    sets = prepared(tmp_path)
    path = cache_file(tmp_path)
    path.with_name(path.name + ".sha256.json").unlink()
    code, out, err = main_inprocess(["data", "prepare", "--data", "synth-sysu", *sets])
    assert code == 0 and "cache rebuilt (no digest file" in out, out + err


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from vireid.datasets.images import load_resized

    grey = (np.arange(32 * 16).reshape(32, 16) * 128).astype(np.uint16)  # 0 .. 65408
    path = tmp_path / "ir.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = load_resized(path, (32, 16))
    expected = np.round(grey.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert (rgb == 255).mean() < 0.01  # convert("RGB") put 99 % of these pixels at 255


def test_sixteen_bit_images_pass_data_check(tmp_path):
    from PIL import Image

    root = synth_tree(tmp_path)
    for img in sorted((root / "cam3").rglob("*.jpg"))[:2]:  # cam3 is infrared
        Image.fromarray(np.full((32, 16), 40000, np.uint16)).save(img, format="PNG")
    code, _, err = main_inprocess(["data", "check", "--dataset", "sysu", "--root", str(root),
                                   "--out", str(tmp_path / "m.csv")])
    assert code == 0, err


def test_pixel_limit_can_be_raised(tmp_path):
    root = synth_tree(tmp_path)
    args = ["data", "check", "--dataset", "sysu", "--root", str(root), "--out", str(tmp_path / "m.csv")]
    code, _, err = main_inprocess(args + ["--max-image-pixels", "100"])
    assert code == 2 and "16x32 (width x height) = 512 pixels, over the limit of 100" in err
    assert main_inprocess(args + ["--max-image-pixels", "512"])[0] == 0


def test_set_mapping_merges_into_its_block():
    from vireid.harness.config import load_params

    params = load_params(overrides=["train.augment={flip: false}"])
    assert params.train.augment.flip is False
    assert params.train.augment.pad == 4  # params.yaml's value, not the code default 10
    assert load_params(overrides=["train.augment.pad=2", "train.augment={flip: false}"]).train.augment.pad == 2


def test_synth_regenerates_a_folder_holding_only_its_own_files(tmp_path):
    root = synth_tree(tmp_path)
    code, out, err = main_inprocess(["data", "synth", "--layout", "sysu", "--out", str(root), "--ids", "8",
                                     "--images-per-cam", "1", "--height", "32", "--width", "16", "--seed", "3"])
    assert code == 0 and "wrote" in out, err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch):
    import vireid.harness.runner as runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_training", interrupted)
    code, _, err = main_inprocess(["train", "--run-dir", str(tmp_path / "run")])
    assert code == 130
    assert err.strip().count("\n") == 0 and "interrupted" in err and "--resume" in err


def test_genuine_bugs_keep_their_traceback(tmp_path, monkeypatch):
    """A torch shape mismatch (RuntimeError) is not a user error: it is raised, not hidden."""
    import vireid.harness.runner as runner

    def broken(params, num_classes):
        import torch

        return torch.nn.Linear(3, 4)(torch.zeros(2, 5))  # RuntimeError: shapes cannot be multiplied

    monkeypatch.setattr(runner, "build_method", broken)
    sets = prepared(tmp_path)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        main_inprocess(["train", "--data", "synth-sysu", "--run-dir", str(tmp_path / "run"), *sets])


def test_user_error_classes():
    from vireid.datasets.errors import DatasetError
    from vireid.harness.cli import is_user_error
    from vireid.harness.schema import ConfigError

    assert is_user_error(ConfigError("x")) and is_user_error(DatasetError("x"))
    assert is_user_error(OSError(28, "No space left on device"))
    assert not is_user_error(RuntimeError("x")) and not is_user_error(ValueError("x"))
    assert not is_user_error(KeyError("x"))


def test_mlflow_store_failure_mid_run_is_one_line(tmp_path, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    def disk_full(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(mlflow, "log_metrics", disk_full)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = prepared(tmp_path)
    code, _, err = main_inprocess(["train", "--data", "synth-sysu", "--run-dir", str(tmp_path / "run"), *sets,
                                   "--set", "tracking.enabled=true", "--set", f"tracking.uri={uri}"])
    assert code == 2, err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("error:")][-1]
    assert f"MLflow tracking store '{uri}' failed while logging (MlflowException" in message
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # what was written is intact

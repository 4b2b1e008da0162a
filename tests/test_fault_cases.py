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


@pytest.mark.slow
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


def test_set_accepts_numbers_as_users_write_them():
    from vireid.harness.config import load_params

    params = load_params(overrides=["train.lr=1e-3", "train.weight_decay=5E-4", "train.grad_clip=+2e1"])
    assert params.train.lr == 0.001 and params.train.weight_decay == 0.0005 and params.train.grad_clip == 20.0
    assert load_params(overrides=["experiment.description=1e-3x"]).experiment.description == "1e-3x"


def test_symlinks_outside_the_root_are_warned_about(tmp_path):
    import shutil

    root = synth_tree(tmp_path)
    person = root / "cam1" / "0001"
    elsewhere = tmp_path / "elsewhere" / "0001"
    elsewhere.parent.mkdir()
    shutil.move(person, elsewhere)
    person.symlink_to(elsewhere, target_is_directory=True)
    code, out, err = main_inprocess(["data", "check", "--dataset", "sysu", "--root", str(root),
                                     "--out", str(tmp_path / "m.csv")])
    assert code == 0, err
    warning = next(line for line in out.splitlines() if line.startswith("warning:") and "outside" in line)
    assert f"resolve outside the dataset root, e.g. cam1/0001/0001.jpg -> {elsewhere}/0001.jpg" in warning


def test_report_cleanup_never_follows_a_symlinked_tables_folder(tmp_path):
    import json

    from fault_cases import sys_path_fixtures

    sys_path_fixtures()
    from report_make_runs import make_runs

    make_runs(tmp_path / "runs", datasets=["synth-sysu"], seeds=[0])
    out = tmp_path / "report"
    args = ["report", "--runs", str(tmp_path / "runs"), "--out", str(out), "--no-published"]
    assert main_inprocess(args)[0] == 0
    from vireid.harness.report.render import MANIFEST, TABLES_DIR

    listed = json.loads((out / MANIFEST).read_text())["files"]
    outside = tmp_path / "precious"
    (out / TABLES_DIR).rename(outside)
    (out / TABLES_DIR).symlink_to(outside, target_is_directory=True)
    # The next build lists no such table: a clean-up through the link would delete it.
    (out / MANIFEST).write_text(json.dumps({"files": listed + [TABLES_DIR + "/old_table.csv"]}))
    (outside / "old_table.csv").write_text("mine\n")
    assert main_inprocess(args)[0] == 0
    assert (outside / "old_table.csv").read_text() == "mine\n"


def test_full_disk_during_checkpoint_names_the_file_and_the_disk(tmp_path):
    import resource
    import signal

    import torch

    from vireid.harness.checkpoint import CheckpointError, save_checkpoint

    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"w": torch.zeros(10)})
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))  # writes past 64 KiB fail with EFBIG
    try:
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(path, {"w": torch.zeros(1 << 18)})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    message = str(info.value)
    assert message.startswith(f"{path}: could not write the checkpoint") and "MiB free on the file system" in message
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_temp_files_of_killed_writers_are_removed_on_the_next_start(tmp_path):
    from vireid.harness.io import atomic_path, remove_stale_temps

    folder = tmp_path / "run"
    folder.mkdir()
    names, writers = [], []
    for suffix in ("", ".npz", ".npy.tmp", ".parquet"):  # as the writers name them
        writers.append(atomic_path(folder / f"out{suffix or '.json'}", suffix=suffix))
        tmp = writers[-1].__enter__()  # a writer killed here (SIGKILL) never reaches its clean-up
        tmp.write_bytes(b"half")
        names.append(tmp.name)
    (folder / ".keep.me").write_text("not ours")
    (folder / "metrics.json").write_text("{}")
    removed = remove_stale_temps(folder)
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in folder.iterdir()) == [".keep.me", "metrics.json"]


def test_prepare_removes_stale_temp_files(tmp_path):
    sets = prepared(tmp_path)
    stale = [tmp_path / "prepared" / ".manifest.parquet.abcd1234.tmp.parquet",
             tmp_path / "prepared" / "cache" / ".x_32x16.npy.k9_w0q1z.npy.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    code, _, err = main_inprocess(["data", "prepare", "--data", "synth-sysu", *sets])
    assert code == 0, err
    assert not any(p.exists() for p in stale)

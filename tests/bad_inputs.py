"""Catalogue of bad inputs: each is run through the real CLI and must fail cleanly.

Used by tests/test_bad_inputs.py (every case: exit code 2, a message naming the culprit,
nothing left behind; in-process through `cli.main`, and a few as real subprocesses, where the
exit status and the absence of a traceback are the point) and, run as a script, to write
docs/bad-inputs.md from the messages the code actually prints:

    .venv/bin/python tests/bad_inputs.py docs/bad-inputs.md
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # study_support, also when run as a script
REPO = Path(__file__).resolve().parent.parent
TINY = ["--ids", "8", "--images-per-cam", "1", "--height", "32", "--width", "16", "--seed", "0"]


@dataclass
class Case:
    name: str  # what is wrong, as a reader of the docs table would say it
    setup: Callable[[Path], list[str]]  # builds the input under a temp folder, returns CLI args
    expect: str  # a fragment the error message must contain (may use {tmp})
    written: str | None = None  # a path (relative to tmp) that must NOT exist afterwards


def cli(*args: str) -> subprocess.CompletedProcess:
    """`vireid ARGS` run in this process (fast), as a CompletedProcess."""
    from fault_cases import main_inprocess

    code, out, err = main_inprocess(list(args))
    return subprocess.CompletedProcess(["vireid", *args], code, out, err)


def cli_subprocess(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vireid.harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def synth_tree(tmp: Path, layout: str = "sysu") -> Path:
    root = tmp / layout
    proc = cli("data", "synth", "--layout", layout, "--out", str(root), *TINY)
    assert proc.returncode == 0, proc.stderr
    return root


def check_args(root: Path, layout: str = "sysu") -> list[str]:
    return ["data", "check", "--dataset", layout, "--root", str(root), "--out", str(root.parent / "manifest.csv")]


# --- dataset trees ---------------------------------------------------------------------------
def missing_root(tmp: Path) -> list[str]:
    return check_args(tmp / "nowhere")


def missing_cam_folder(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    shutil.rmtree(root / "cam3")
    return check_args(root)


def missing_index_file(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    (root / "exp" / "test_id.txt").unlink()
    return check_args(root)


def first_image(root: Path) -> Path:
    return sorted(p for p in (root / "cam1").rglob("*.jpg"))[0]


def truncated_image(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    img = first_image(root)
    img.write_bytes(img.read_bytes()[: len(img.read_bytes()) // 2])
    return check_args(root)


def unreadable_image(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    first_image(root).write_bytes(b"this is not a JPEG")
    return check_args(root)


def truncated_mat(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    mat = root / "exp" / "rand_perm_cam.mat"
    mat.write_bytes(mat.read_bytes()[:200])
    return check_args(root)


def malformed_mat(tmp: Path) -> list[str]:
    from scipy.io import savemat

    root = synth_tree(tmp)
    savemat(root / "exp" / "rand_perm_cam.mat", {"something_else": np.zeros((2, 2))})
    return check_args(root)


def id_in_train_and_test(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    test_ids = (root / "exp" / "test_id.txt").read_text().strip()
    train = root / "exp" / "train_id.txt"
    train.write_text(train.read_text().strip() + "," + test_ids.split(",")[0] + "\n")
    return check_args(root)


def regdb_line(tmp: Path, replace: Callable[[str], str]) -> list[str]:
    root = synth_tree(tmp, "regdb")
    idx = root / "idx" / "train_visible_1.txt"
    lines = idx.read_text().splitlines()
    lines[0] = replace(lines[0])
    idx.write_text("\n".join(lines) + "\n")
    return check_args(root, "regdb")


def index_line_missing_file(tmp: Path) -> list[str]:
    return regdb_line(tmp, lambda line: line.replace(".bmp", "_gone.bmp", 1))


def index_line_outside_root(tmp: Path) -> list[str]:
    return regdb_line(tmp, lambda line: "../../etc/passwd " + line.split()[-1])


def index_line_malformed(tmp: Path) -> list[str]:
    return regdb_line(tmp, lambda line: line.split()[0])


def llcm_missing_index(tmp: Path) -> list[str]:
    root = synth_tree(tmp, "llcm")
    (root / "idx" / "test_nir.txt").unlink()
    return check_args(root, "llcm")


# --- parameters and experiments ----------------------------------------------------------------
def unknown_param_key(tmp: Path) -> list[str]:
    return ["train", "--set", "train.lrr=0.1", "--run-dir", str(tmp / "run")]


def wrong_param_type(tmp: Path) -> list[str]:
    return ["train", "--set", "train.epochs=many", "--run-dir", str(tmp / "run")]


def out_of_range_param(tmp: Path) -> list[str]:
    return ["train", "--set", "train.k=3", "--run-dir", str(tmp / "run")]


def unknown_loss_key(tmp: Path) -> list[str]:
    return ["train", "--set", "loss.ip.wieght=0.2", "--run-dir", str(tmp / "run")]


def experiment_unknown_key(tmp: Path) -> list[str]:
    path = tmp / "typo.yaml"
    path.write_text("model: {method: idkl}\ntrian: {epochs: 3}\n")
    return ["train", "--experiment", str(path), "--run-dir", str(tmp / "run")]


def unknown_experiment(tmp: Path) -> list[str]:
    return ["train", "--experiment", "idkl-typo", "--run-dir", str(tmp / "run")]


def malformed_params_file(tmp: Path) -> list[str]:
    path = tmp / "params.yaml"
    path.write_text("train: [unclosed\n")
    return ["train", "--params", str(path), "--run-dir", str(tmp / "run")]


# --- checkpoints ----------------------------------------------------------------------------
def corrupt_checkpoint(tmp: Path) -> list[str]:
    from study_support import tiny_overrides

    sets = [arg for item in tiny_overrides(tmp / "prepared") for arg in ("--set", item)]
    proc = cli("data", "prepare", "--data", "synth-sysu", *sets)
    assert proc.returncode == 0, proc.stderr
    run = tmp / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x00" * 64)
    return ["train", "--data", "synth-sysu", "--resume", "--run-dir", str(run), *sets]


# --- features for eval-features ---------------------------------------------------------------
def features(tmp: Path, **change) -> list[str]:
    rng = np.random.default_rng(0)
    arrays = {
        "query_feats": rng.normal(size=(4, 8)).astype(np.float32), "query_ids": np.arange(4),
        "query_cams": np.full(4, 3), "query_paths": np.array([f"cam3/{i:04d}/0001.jpg" for i in range(4)]),
        "gallery_feats": rng.normal(size=(4, 8)).astype(np.float32), "gallery_ids": np.arange(4),
        "gallery_cams": np.full(4, 2), "gallery_paths": np.array([f"cam2/{i:04d}/0001.jpg" for i in range(4)]),
    }
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp / "feats.npz"
    np.savez(path, **arrays)
    return ["eval-features", str(path), "--protocol", "regdb/i2v", "--json", str(tmp / "out.json")]


def npz_missing_array(tmp: Path) -> list[str]:
    return features(tmp, gallery_ids=None)


def npz_mismatched_lengths(tmp: Path) -> list[str]:
    return features(tmp, query_ids=np.arange(3))


def npz_nan_features(tmp: Path) -> list[str]:
    feats = np.ones((4, 8), np.float32)
    feats[1, 2] = np.nan
    return features(tmp, query_feats=feats)


def npz_wrong_dtype(tmp: Path) -> list[str]:
    return features(tmp, query_ids=np.array(["a", "b", "c", "d"]))


def npz_wrong_shape(tmp: Path) -> list[str]:
    return features(tmp, gallery_feats=np.ones((4, 3), np.float32))


def npz_not_a_file(tmp: Path) -> list[str]:
    path = tmp / "feats.npz"
    path.write_bytes(b"garbage")
    return ["eval-features", str(path), "--protocol", "regdb/i2v"]


def sysu_path_unknown_to_perm(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    args = features(tmp, query_cams=np.full(4, 3), gallery_cams=np.full(4, 1), gallery_ids=np.arange(4) + 9000,
                    gallery_paths=np.array([f"cam1/{i + 9000:04d}/0001.jpg" for i in range(4)]))
    return args[:3] + ["sysu/all/single", "--perm", str(root / "exp" / "rand_perm_cam.mat")]


def unknown_protocol(tmp: Path) -> list[str]:
    return features(tmp)[:3] + ["sysu/everything"]


# --- tracking and report ----------------------------------------------------------------------
def report_without_runs(tmp: Path) -> list[str]:
    (tmp / "runs").mkdir()
    return ["report", "--runs", str(tmp / "runs"), "--out", str(tmp / "report"), "--no-published"]


def report_malformed_metrics(tmp: Path) -> list[str]:
    run = tmp / "runs" / "a"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"run": {}, "results": [{"protocol": "x"}]}')
    return ["report", "--runs", str(tmp / "runs"), "--out", str(tmp / "report"), "--no-published"]


def report_readme_without_region(tmp: Path) -> list[str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_make_runs_bad", REPO / "tests/fixtures/report/make_runs.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.make_value_runs(tmp / "runs")
    (tmp / "README.md").write_text("# A README with no results region\n")
    return ["report", "--runs", str(tmp / "runs"), "--out", str(tmp / "report"), "--no-published",
            "--readme", str(tmp / "README.md")]


CASES = [
    Case("dataset root missing", missing_root, "nowhere", "manifest.csv"),
    Case("SYSU camera folder missing", missing_cam_folder, "cam3", "manifest.csv"),
    Case("SYSU index file missing", missing_index_file, "test_id.txt", "manifest.csv"),
    Case("truncated image", truncated_image, ".jpg", "manifest.csv"),
    Case("unreadable image", unreadable_image, ".jpg", "manifest.csv"),
    Case("truncated rand_perm_cam.mat", truncated_mat, "rand_perm_cam.mat", "manifest.csv"),
    Case("malformed rand_perm_cam.mat", malformed_mat, "rand_perm_cam", "manifest.csv"),
    Case("identity in train and test", id_in_train_and_test, "train", "manifest.csv"),
    Case("index line points to a missing file", index_line_missing_file, "_gone.bmp", "manifest.csv"),
    Case("index line points outside the root", index_line_outside_root, "etc/passwd", "manifest.csv"),
    Case("index line malformed", index_line_malformed, "train_visible_1.txt", "manifest.csv"),
    Case("LLCM index file missing", llcm_missing_index, "test_nir.txt", "manifest.csv"),
    Case("unknown parameter key", unknown_param_key, "train.lrr", "run"),
    Case("parameter of the wrong type", wrong_param_type, "train.epochs", "run"),
    Case("parameter out of range", out_of_range_param, "train.k", "run"),
    Case("unknown loss key", unknown_loss_key, "loss.ip.wieght", "run"),
    Case("experiment YAML with an unknown key", experiment_unknown_key, "trian", "run"),
    Case("unknown experiment name", unknown_experiment, "idkl-typo", "run"),
    Case("params file is not valid YAML", malformed_params_file, "params.yaml", "run/metrics.json"),
    Case("corrupt checkpoint on --resume", corrupt_checkpoint, "checkpoint.pt", "run/metrics.json"),
    Case("features .npz missing an array", npz_missing_array, "gallery_ids", "out.json"),
    Case("features .npz with mismatched lengths", npz_mismatched_lengths, "query_ids", "out.json"),
    Case("features .npz with NaN features", npz_nan_features, "query_feats", "out.json"),
    Case("features .npz with a wrong dtype", npz_wrong_dtype, "query_ids", "out.json"),
    Case("features .npz with a wrong shape", npz_wrong_shape, "gallery_feats", "out.json"),
    Case("features file is not an .npz", npz_not_a_file, "feats.npz"),
    Case("SYSU path the permutation file does not know", sysu_path_unknown_to_perm, "cam1/9000"),
    Case("unknown protocol", unknown_protocol, "sysu/everything", "out.json"),
    Case("report with no metrics.json", report_without_runs, "metrics.json", "report/report.md"),
    Case("report with a malformed metrics.json", report_malformed_metrics, "metrics.json", "report/report.md"),
    Case("report --readme into a file without a results region", report_readme_without_region, "README.md",
         "report/report.md"),
]


def run_case(case: Case, tmp: Path, subprocess_run: bool = False) -> tuple[subprocess.CompletedProcess, str]:
    args = case.setup(tmp)
    proc = (cli_subprocess if subprocess_run else cli)(*args)
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    return proc, (lines[-1] if lines else proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")


GUARDS = """
## What the harness guards against, and how

- **Which errors are one line.** Only the harness's own error types (classes defined in a
  `vireid.*` module: `ConfigError`, `DatasetError`, `CheckpointError`, `FeaturesFileError`,
  `ProtocolError`, `ReportError`, `TrackingError`, ...) and OS errors (missing file,
  permission, full disk) print `error: ...` and exit 2. Anything else, such as a torch
  `RuntimeError` from a shape mismatch, is a bug and keeps its traceback. Library errors
  that users can cause (MLflow store failures, a corrupt Optuna storage, a malformed
  `metrics.json` or `.npz`) are turned into harness errors where they are raised, naming the
  file or store. `--debug` shows the traceback of any error. Ctrl-C prints one line and
  exits 130.
- **Image cache.** `prepare` writes `<cache>.sha256.json` (size + one SHA-256 per 16 MiB)
  beside the cache; a cache whose bytes differ (overwritten in place, truncated, no digest
  file) is rebuilt by `prepare` and refused by `train`, which checks it once per process
  (about 500 MiB/s; 1.25x the time of a plain read of the file).
- **Images.** 16-bit images (`I;16`) are scaled to 8 bits, 32-bit integer and float images
  are refused by name; an image whose header claims more than `data.max_image_pixels`
  (default 25 000 000; `data check --max-image-pixels`) is refused before decoding.
- **Features files.** Each `.npz` member's header is read first: arrays that would take more
  than `eval.max_features_mib` (default 1024; `eval-features --max-mib`) are refused; a bare
  `.npy` is refused without being read; byte-string paths must be UTF-8.
- **YAML.** One loader for every YAML file (params, overlays, `--set`, best-params): no
  aliases, at most 64 levels, at most 4 MiB; a value shown in a message is cut to 80
  characters.
- **Symlinks.** Index files may not name paths outside the dataset root (`..` is refused).
  Images or person folders that are symlinks resolving outside the root are read but
  reported as a warning by `data check` and `prepare` (a dataset spread over disks is
  legitimate; a surprise is not). Report clean-up never deletes through a `tables/` or
  `figures/` symlink that leaves `--out`.
- **Synthetic data.** `synth-files.txt` lists every file the generator wrote; a folder
  holding anything else is never regenerated over.
- **Early checks.** `eval.protocols`, `eval.trials`, study/variant/dataset names
  (identifiers: they go into DVC commands), the SYSU permutation file's 10 trial rows per
  person, `tune.experiment`, `tune.overrides` and the search-space keys (one trial's
  parameters are resolved before any trial), `--n-trials`/`--jobs` >= 1.
- **Writes.** Every output is written to a temporary file and renamed; a failed checkpoint
  write names the file, the free space and the mount point, and leaves the previous
  checkpoint intact; temporary files left by `kill -9` are removed when the next run or
  prepare starts in that folder.

Behaviour tests beside the table (`tests/test_fault_cases.py`): a cache overwritten in
place or without digests is rebuilt by `prepare`; 16-bit images are scaled, not clipped,
and pass `data check`; the pixel bound can be raised; a `--set` mapping merges; `1e-3` is a
number; `data synth` regenerates a folder of its own files; Ctrl-C exits 130 with one line;
a torch `RuntimeError` keeps its traceback; an MLflow store failure mid-run is one line and
leaves the checkpoint; symlinks outside the root are warned about; report clean-up does not
follow a symlinked `tables/`; a checkpoint write past a file-size limit names the file and
the disk and keeps the previous checkpoint; temporary files of killed writers are removed.
"""


def write_table(out: Path) -> None:
    import tempfile

    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            proc, message = run_case(case, Path(tmp))
            message = message.replace(tmp, "<tmp>").replace(str(REPO), "<repo>").replace("|", "\\|")
            rows.append(f"| {case.name} | {proc.returncode} | `{message}` |")
    from fault_cases import FAULTS, run_fault

    for fault in FAULTS:
        with tempfile.TemporaryDirectory() as tmp:
            code, message, _ = run_fault(fault, Path(tmp))
            message = message.replace(tmp, "<tmp>").replace(str(REPO), "<repo>").replace("|", "\\|")
            rows.append(f"| {fault.name} | {code} | `{message}` |")
    header = ("# Bad inputs and the errors they get\n\n"
              "Every row was produced by `tests/bad_inputs.py` running the real CLI on a broken input\n"
              "(`.venv/bin/python tests/bad_inputs.py docs/bad-inputs.md` rewrites this page);\n"
              "`tests/test_bad_inputs.py` checks each case: exit code 2, a message naming the file or\n"
              "key, and nothing written. Other failure modes tested elsewhere: a checkpoint of another\n"
              "method or class count (`tests/test_faults.py`), an unreachable MLflow server\n"
              "(`tests/test_training.py`), NaN/Inf losses (`tests/test_faults.py`), failing Optuna\n"
              "trials (`tests/test_study.py`). The later rows come from\n"
              "`tests/fault_cases.py` (hostile inputs and faults, run in-process through\n"
              "`vireid.harness.cli.main`; checked by `tests/test_fault_cases.py`).\n\n"
              "| bad input | exit code | message |\n|---|---|---|\n")
    footer = GUARDS
    from vireid.harness.io import atomic_write_text

    atomic_write_text(out, header + "\n".join(rows) + "\n" + footer)


if __name__ == "__main__":
    write_table(Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "docs" / "bad-inputs.md"))

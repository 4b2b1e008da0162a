"""Hostile inputs and faults, run in-process through `vireid.harness.cli.main`.

The companion of tests/bad_inputs.py (which runs each case as a subprocess): these cases
call `main(argv)` directly so the suite stays fast. tests/test_fault_cases.py checks each
one (exit code, a one-line message naming the culprit, no traceback, what must not be
written or must survive); `tests/bad_inputs.py` adds their real messages to
docs/bad-inputs.md.
"""
from __future__ import annotations

import contextlib
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
TINY = ["--ids", "8", "--images-per-cam", "1", "--height", "32", "--width", "16", "--seed", "0"]


@dataclass
class Fault:
    name: str  # what is wrong, as a reader of the docs table would say it
    setup: Callable[[Path], list[str]]  # builds the input under a temp folder, returns CLI args
    expect: str  # a fragment the one-line message must contain
    code: int = 2
    written: str | None = None  # a path (relative to tmp) that must NOT exist afterwards
    kept: str | None = None  # a path (relative to tmp) that must still exist afterwards


def main_inprocess(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `vireid ARGS` run in this process from the repository root."""
    from vireid.harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(REPO), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def ok(args: list[str]) -> str:
    code, out, err = main_inprocess(args)
    assert code == 0, f"vireid {' '.join(args)} failed ({code}): {err}"
    return out


def synth_tree(tmp: Path, layout: str = "sysu") -> Path:
    root = tmp / layout
    ok(["data", "synth", "--layout", layout, "--out", str(root), *TINY])
    return root


def check_args(root: Path, layout: str = "sysu") -> list[str]:
    return ["data", "check", "--dataset", layout, "--root", str(root), "--out", str(root.parent / "manifest.csv")]


def first_image(root: Path) -> Path:
    return sorted((root / "cam1").rglob("*.jpg"))[0]


def tiny_sets(tmp: Path, **extra) -> list[str]:
    from study_support import tiny_overrides

    return [arg for item in tiny_overrides(tmp / "prepared", **extra) for arg in ("--set", item)]


def prepared(tmp: Path) -> list[str]:
    """Prepare the tiny synthetic dataset under tmp; the `--set` args that name it."""
    sets = tiny_sets(tmp)
    ok(["data", "prepare", "--data", "synth-sysu", *sets])
    return sets


def cache_file(tmp: Path) -> Path:
    return next((tmp / "prepared" / "cache").glob("*.npy"))


# --- silently wrong data -----------------------------------------------------------------------
def cache_overwritten(tmp: Path) -> list[str]:
    sets = prepared(tmp)
    path = cache_file(tmp)
    data = bytearray(path.read_bytes())
    half = len(data) // 2
    data[half:] = bytes(len(data) - half)  # same size, second half of the images zeroed
    path.write_bytes(bytes(data))
    return ["train", "--data", "synth-sysu", "--run-dir", str(tmp / "run"), *sets]


def cache_truncated(tmp: Path) -> list[str]:
    sets = prepared(tmp)
    path = cache_file(tmp)
    path.write_bytes(path.read_bytes()[:-1000])
    return ["train", "--data", "synth-sysu", "--run-dir", str(tmp / "run"), *sets]


def float_image(tmp: Path) -> list[str]:
    import numpy as np
    from PIL import Image

    root = synth_tree(tmp)
    img = first_image(root)
    Image.fromarray(np.ones((32, 16), np.float32)).save(img, format="TIFF")  # mode F, named .jpg
    return check_args(root)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit grey pixels (no image data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def image_bomb(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    first_image(root).write_bytes(png_header(12000, 12000))
    return check_args(root)


def synth_over_foreign_file(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    (root / "notes.txt").write_text("my notes\n")
    return ["data", "synth", "--layout", "sysu", "--out", str(root), *TINY[:-1], "1"]


# --- crashes, hangs and resource exhaustion ----------------------------------------------------
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def alias_bomb_overlay(tmp: Path) -> list[str]:
    path = tmp / "bomb.yaml"
    path.write_text("experiment: {name: bomb}\n" + BOMB)
    return ["train", "--experiment", str(path), "--run-dir", str(tmp / "run")]


def alias_bomb_tune_overrides(tmp: Path) -> list[str]:
    path = tmp / "params.yaml"
    text = (REPO / "params.yaml").read_text(encoding="utf-8")
    bomb = "".join("    " + line + "\n" for line in BOMB.splitlines())
    line = next(line for line in text.splitlines() if line.startswith("  overrides:"))  # tune.overrides
    path.write_text(text.replace(line + "\n", "  overrides:\n" + bomb, 1))
    return ["tune", "--params", str(path), "--out-dir", str(tmp / "tune"), "--best-params", str(tmp / "best.yaml")]


def deep_nesting(tmp: Path) -> list[str]:
    return ["train", "--set", "train.milestones=" + "[" * 5000 + "]" * 5000, "--run-dir", str(tmp / "run")]


def params_not_utf8(tmp: Path) -> list[str]:
    path = tmp / "params.yaml"
    path.write_bytes("train: {epochs: 3}\n# caf\u00e9\n".encode("latin-1"))
    return ["train", "--params", str(path), "--run-dir", str(tmp / "run")]


def huge_value(tmp: Path) -> list[str]:
    return ["train", "--set", "train.epochs=" + "x" * 100_000, "--run-dir", str(tmp / "run")]


def npz_with_members(tmp: Path, name: str, members: dict[str, bytes]) -> Path:
    import zipfile

    path = tmp / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, data in members.items():
            archive.writestr(key + ".npy", data)
    return path


def npy_bytes(array) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npz_huge_header(tmp: Path) -> list[str]:
    from bad_inputs import features

    args = features(tmp)
    import numpy as np

    with np.load(tmp / "feats.npz") as npz:
        members = {key: npy_bytes(npz[key]) for key in npz.files}
    members["query_feats"] = npy_header_only((10**12, 8))
    npz_with_members(tmp, "feats.npz", members)
    return args


def npy_not_npz_huge(tmp: Path) -> list[str]:
    path = tmp / "feats.npz"
    path.write_bytes(npy_header_only((10**12, 8)))
    return ["eval-features", str(path), "--protocol", "regdb/i2v"]


def npz_over_limit(tmp: Path) -> list[str]:
    import numpy as np
    from bad_inputs import features

    feats = np.zeros((4, 2**17), np.float32)  # 2 MiB each, compressed to a few KB
    return features(tmp, query_feats=feats, gallery_feats=feats) + ["--max-mib", "3"]


def npz_bytes_paths(tmp: Path) -> list[str]:
    import numpy as np
    from bad_inputs import features

    return features(tmp, gallery_paths=np.array([b"cam2/0000/0001.jpg", b"cam2/\xff\xfe/0001.jpg",
                                                 b"cam2/0002/0001.jpg", b"cam2/0003/0001.jpg"]))


def run_with_metrics(tmp: Path, text: str) -> list[str]:
    run = tmp / "run"
    run.mkdir()
    (run / "metrics.json").write_text(text)
    return ["evaluate", "--run-dir", str(run), "--out", str(tmp / "out.json")]


def metrics_malformed(tmp: Path) -> list[str]:
    return run_with_metrics(tmp, '{"run": {"variant": "idkl"}, "results": [')


def metrics_stub(tmp: Path) -> list[str]:
    return run_with_metrics(tmp, '{"run": {}, "results": []}')


def optuna_corrupt_sqlite(tmp: Path) -> list[str]:
    db = tmp / "optuna.db"
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    return ["tune", "--set", f"tune.storage=sqlite:///{db}", "--out-dir", str(tmp / "tune"),
            "--best-params", str(tmp / "best.yaml"), *tiny_sets(tmp)]


def optuna_journal_garbage(tmp: Path) -> list[str]:
    journal = tmp / "journal.log"
    journal.write_text('{"op_code": 0, "worker_id": "x", "study_name": "s", "directions": [1]}\nthis is garbage\n')
    sets = prepared(tmp)  # a journal is read when the study is opened, after the dataset is checked
    return ["tune", "--set", f"tune.storage={journal}", "--out-dir", str(tmp / "tune"),
            "--best-params", str(tmp / "best.yaml"), *sets]


# --- checks before the first expensive step ----------------------------------------------------
def train_args(tmp: Path, *sets: str) -> list[str]:
    return ["train", *[a for item in sets for a in ("--set", item)], "--run-dir", str(tmp / "run")]


def unknown_eval_protocol(tmp: Path) -> list[str]:
    return train_args(tmp, "eval.protocols=[sysu/all/singel]")


def eval_trial_out_of_range(tmp: Path) -> list[str]:
    return train_args(tmp, "eval.trials=[0, 12]")


def perm_too_few_trials(tmp: Path) -> list[str]:
    from vireid.datasets.sysu_perm import read_rand_perm_cam, write_rand_perm_cam

    root = synth_tree(tmp)
    path = root / "exp" / "rand_perm_cam.mat"
    perm = read_rand_perm_cam(path)
    test_ids = [int(v) for v in (root / "exp" / "test_id.txt").read_text().split(",")]
    cam, pid = next((c, p) for c in sorted(perm) for p in test_ids
                    if p <= len(perm[c]) and perm[c][p - 1].size)  # a person the camera saw (some are absent)
    perm[cam][pid - 1] = perm[cam][pid - 1][:9]  # one person, one camera: 9 of 10 trial rows
    write_rand_perm_cam(path, perm)
    return check_args(root)


def tune_args(tmp: Path, *extra: str) -> list[str]:
    return ["tune", "--out-dir", str(tmp / "tune"), "--best-params", str(tmp / "best.yaml"),
            "--set", f"tune.storage=sqlite:///{tmp / 'optuna.db'}", *extra]


def tune_unknown_experiment(tmp: Path) -> list[str]:
    return tune_args(tmp, "--set", "tune.experiment=idkl-typo")


def tune_bad_search_key(tmp: Path) -> list[str]:
    return tune_args(tmp, "--set", "tune.search_space={loss.ip.wieght: {type: float, low: 0.1, high: 1.0}}")


def tune_zero_trials(tmp: Path) -> list[str]:
    return tune_args(tmp, "--n-trials", "0")


def tune_negative_jobs(tmp: Path) -> list[str]:
    return tune_args(tmp, "--jobs", "-1")


def variant_not_identifier(tmp: Path) -> list[str]:
    return train_args(tmp, 'study.variants=["idkl; rm -rf ~"]')


def report_run(tmp: Path, change: Callable[[dict], None]) -> list[str]:
    import json

    sys_path_fixtures()
    from report_make_runs import make_runs

    paths = make_runs(tmp / "runs", datasets=["synth-sysu"], seeds=[0])
    data = json.loads(paths[0].read_text())
    change(data["results"][0])
    paths[0].write_text(json.dumps(data))
    return ["report", "--runs", str(tmp / "runs"), "--out", str(tmp / "report"), "--no-published"]


def sys_path_fixtures() -> None:
    import importlib.util
    import sys

    if "report_make_runs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("report_make_runs",
                                                      REPO / "tests" / "fixtures" / "report" / "make_runs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["report_make_runs"] = module
        spec.loader.exec_module(module)


def report_unknown_protocol(tmp: Path) -> list[str]:
    return report_run(tmp, lambda res: res.update(protocol="sysu/everything"))


def report_percentage_out_of_range(tmp: Path) -> list[str]:
    return report_run(tmp, lambda res: res.update(mAP=153.2))


def thread_count_too_large(tmp: Path) -> list[str]:
    return train_args(tmp, "train.threads=100000000000000000000")


def image_size_too_large(tmp: Path) -> list[str]:
    return train_args(tmp, "data.image_height=1000000000")


def workers_too_large(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    return check_args(root) + ["--workers", "100000000000000000000"]


def non_ascii_person_folder(tmp: Path) -> list[str]:
    root = synth_tree(tmp)
    (root / "cam1" / "0001").rename(root / "cam1" / "\u0660\u0660\u0660\u0661")  # Arabic-Indic 0001
    return check_args(root)


FAULTS = [
    Fault("image cache overwritten in place (same size)", cache_overwritten, "content differs from the digests",
          written="run/metrics.json"),
    Fault("image cache truncated", cache_truncated, "truncated or overwritten", written="run/metrics.json"),
    Fault("32-bit float image", float_image, "PIL mode F", written="manifest.csv"),
    Fault("PNG header claiming 12000 x 12000 pixels", image_bomb, "max-image-pixels", written="manifest.csv"),
    Fault("`data synth` over a folder holding a foreign file", synth_over_foreign_file, "notes.txt",
          kept="sysu/notes.txt"),
    Fault("YAML alias bomb in an experiment overlay", alias_bomb_overlay, "YAML aliases (*a) are not allowed",
          written="run"),
    Fault("YAML alias bomb in a params file (tune.overrides)", alias_bomb_tune_overrides,
          "YAML aliases (*a) are not allowed", written="best.yaml"),
    Fault("YAML nested 5000 levels deep in --set", deep_nesting, "--set train.milestones: nested deeper than 64",
          written="run"),
    Fault("params file that is not UTF-8", params_not_utf8, "params.yaml: not UTF-8 text", written="run"),
    Fault("a 100 000-character value in --set", huge_value, "(100002 characters)", written="run"),
    Fault("features .npz whose header claims 10^12 rows", npz_huge_header, "'query_feats' alone 30517578 MiB",
          written="out.json"),
    Fault(".npy (not .npz) whose header claims 10^12 rows", npy_not_npz_huge, "found a single array"),
    Fault("features .npz expanding past the memory bound", npz_over_limit, "over the limit of 3 MiB",
          written="out.json"),
    Fault("features .npz with non-UTF-8 byte paths", npz_bytes_paths, "'gallery_paths' row 1 is not UTF-8",
          written="out.json"),
    Fault("malformed metrics.json given to evaluate", metrics_malformed, "metrics.json: not valid JSON",
          written="out.json"),
    Fault("stub metrics.json given to evaluate", metrics_stub, "holds no test results", written="out.json"),
    Fault("corrupt Optuna SQLite file", optuna_corrupt_sqlite, "cannot open the Optuna storage",
          written="best.yaml"),
    Fault("garbage line in an Optuna journal file", optuna_journal_garbage, "journal.log",
          written="best.yaml"),
    Fault("unknown name in eval.protocols (checked before training)", unknown_eval_protocol,
          "eval.protocols: unknown protocol 'sysu/all/singel'", written="run"),
    Fault("eval.trials out of range (checked before training)", eval_trial_out_of_range,
          "eval.trials: sysu/all/single: trials must be in 0..9, got [12]", written="run"),
    Fault("permutation file with 9 trial rows for one person", perm_too_few_trials, "has 9 trial row(s)",
          written="manifest.csv"),
    Fault("unknown tune.experiment (checked before trials)", tune_unknown_experiment, "idkl-typo",
          written="tune"),
    Fault("search-space key that is not a parameter (checked before trials)", tune_bad_search_key,
          "loss.ip.wieght", written="tune"),
    Fault("tune --n-trials 0", tune_zero_trials, "--n-trials: expected a number >= 1, got 0", written="tune"),
    Fault("tune --jobs -1", tune_negative_jobs, "--jobs: expected a number >= 1, got -1", written="tune"),
    Fault("variant name that is not an identifier", variant_not_identifier, "study.variants: 'idkl; rm -rf ~'",
          written="run"),
    Fault("report given an unknown protocol", report_unknown_protocol, "unknown protocol 'sysu/everything'",
          written="report/report.md"),
    Fault("report given a percentage outside 0..100", report_percentage_out_of_range,
          "'results[0].mAP' should be a percentage in 0..100, got 153.2", written="report/report.md"),
    Fault("thread count of 10^20", thread_count_too_large, "train.threads: expected a value <= 4096",
          written="run"),
    Fault("image size of 10^9", image_size_too_large, "data.image_height: expected a value <= 4096",
          written="run"),
    Fault("decoding threads of 10^20 (`data check --workers`)", workers_too_large,
          "argument --workers: expected 1..1024", written="manifest.csv"),
    Fault("non-ASCII digits in a person folder", non_ascii_person_folder, "(ASCII digits 0-9)",
          written="manifest.csv"),
]


def run_fault(fault: Fault, tmp: Path) -> tuple[int, str, str]:
    """(exit code, the `error:` line, all of stderr)."""
    args = fault.setup(tmp)
    code, _out, err = main_inprocess(args)
    lines = [line for line in err.splitlines() if "error:" in line]
    return code, (lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else ""), err

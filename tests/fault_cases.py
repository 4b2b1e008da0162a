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


FAULTS = [
    Fault("image cache overwritten in place (same size)", cache_overwritten, "content differs from the digests",
          written="run/metrics.json"),
    Fault("image cache truncated", cache_truncated, "truncated or overwritten", written="run/metrics.json"),
    Fault("32-bit float image", float_image, "PIL mode F", written="manifest.csv"),
    Fault("PNG header claiming 12000 x 12000 pixels", image_bomb, "max-image-pixels", written="manifest.csv"),
    Fault("`data synth` over a folder holding a foreign file", synth_over_foreign_file, "notes.txt",
          kept="sysu/notes.txt"),
]


def run_fault(fault: Fault, tmp: Path) -> tuple[int, str, str]:
    """(exit code, the `error:` line, all of stderr)."""
    args = fault.setup(tmp)
    code, _out, err = main_inprocess(args)
    lines = [line for line in err.splitlines() if "error:" in line]
    return code, (lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else ""), err

"""Full-state checkpoints, written atomically and loaded with `weights_only=True`.

A checkpoint holds everything needed to continue a run exactly: model, optimiser,
scheduler, AMP scaler, every RNG state (Python, NumPy, torch CPU/CUDA, the augmentation
generator), the sampler state, the epoch, the history so far and the best validation
result. It also records the method and class count, so loading a checkpoint into the
wrong model is a clear error rather than a silent shape mismatch.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid.harness.io import atomic_save

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is unreadable, truncated, or belongs to another model."""


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    np_state = np.random.get_state()
    _, py_internal, py_gauss = random.getstate()
    state = {
        "python": {"internal": list(py_internal), "gauss_next": py_gauss},
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "augment": generator.get_state() if generator is not None else None,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    py = state["python"]
    random.setstate((3, tuple(int(v) for v in py["internal"]), py["gauss_next"]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if generator is not None and state.get("augment") is not None:
        generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plain tensors, numbers, strings, lists, dicts) atomically."""
    payload = dict(state, format_version=FORMAT_VERSION)
    try:
        save_torch(path, payload)
    except (RuntimeError, OSError) as exc:  # torch reports a failed write as "unexpected pos ..." only
        raise CheckpointError(f"{path}: could not write the checkpoint ({first_line(exc)}); "
                              f"{disk_report(Path(path).parent)}; the previous checkpoint is intact") from None


def save_torch(path: str | Path, payload: Any, suffix: str = "") -> None:
    """torch.save, atomically, through a file object: the archive's inner folder is then "archive",
    not the random temporary file name, so one state gives one sequence of bytes (DVC hashes the file)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)

    atomic_save(path, write, suffix=suffix)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def disk_report(folder: Path) -> str:
    """'N MiB free on the file system mounted at M' for the folder's disk."""
    import shutil

    mount = Path(os.path.realpath(folder))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"the disk holding {folder} could not be queried"
    return f"{free / 2**20:.0f} MiB free on the file system mounted at {mount} (full disk or file size limit?)"


def load_checkpoint(path: str | Path, method: str | None = None, num_classes: int | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; check it belongs to `method` with `num_classes` classes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, random bytes
        # torch's own message runs over many lines; its first line says what went wrong.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt, or holding objects other "
                              f"than tensors and plain values; {type(exc).__name__}: {reason})") from None
    if not isinstance(state, dict) or "model" not in state or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a vireid-bench checkpoint (expected format_version {FORMAT_VERSION})")
    if method is not None and state.get("method") != method:
        raise CheckpointError(f"{path}: checkpoint is for method {state.get('method')!r}, not {method!r}")
    if num_classes is not None and state.get("num_classes") != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint has {state.get('num_classes')} identity classes, the dataset has {num_classes}"
        )
    return state

"""A run folder holds one run: one writer at a time, never a mixture of two runs' files.

- `claimed(run_dir)`: a lock file (`writer.local.json`, pid and host) for the whole run; a
  second writer on the same folder is refused while the first is alive. `.dvcignore` keeps
  `*.local.json` out of DVC hashes, and the lock is removed when the run ends.
- `plan(...)`: what to do with what is already in the folder.
  * `resume=False`: the folder must be empty (no file of an earlier run is left beside the
    new run's files); anything else is refused with the files named.
  * `resume=True` (`--resume`): continue from `checkpoint.pt`; refused when the checkpoint's
    settings differ, naming the keys. `train.epochs` may be raised (a longer schedule
    continues the same run); the location of the data (`data.root`, `data.prepared_dir`,
    `data.cache_workers`), `eval.*` (applied after training), `tracking.*` and the
    non-training blocks may differ. The dataset fingerprint and the code digest must match.
  * `resume="partial"` (the DVC train stage, whose outputs persist): continue an unfinished
    run (a checkpoint, no metrics.json) of the same settings and code; otherwise empty the
    folder of run files and start again, so a finished or foreign run is never continued.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from vireid.harness.schema import ConfigError, flatten

CHECKPOINT = "checkpoint.pt"
LOCK = "writer.local.json"
LOCAL_INFO = "run.local.json"  # MLflow run id, git commit, wall-clock: differ between identical runs
RUN_FILES = ("params.yaml", "history.csv", CHECKPOINT, "features.npz", "metrics.json", LOCAL_INFO, "cmc.csv",
             "cmc.png")
TRAINING_BLOCKS = ("data.", "model.", "loss.", "train.", "experiment.name")
MAY_DIFFER = {"data.root", "data.prepared_dir", "data.cache_workers", "data.label", "train.epochs"}


class RunFolderError(ConfigError):
    """The run folder holds something this run must not write over or continue."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def claimed(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold `run_dir`'s writer lock while the block runs (a stale lock of a dead process is taken over)."""
    if not enabled:
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8"))
                pid, host = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = -1, me["host"]  # unreadable: a writer killed while writing it
            if host != me["host"] or (pid > 0 and _alive(pid)):
                raise RunFolderError(f"{run_dir}: another run is writing this folder (pid {pid} on {host}, "
                                     f"{lock.name}); wait for it, or remove {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # stale: its writer died without removing it
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # a run that failed before writing: no empty folder left
                run_dir.rmdir()


def code_digest() -> str:
    """sha256 over the source of the three packages: a checkpoint continues only the code that wrote it."""
    import vireid.datasets
    import vireid.harness
    import vireid.methods

    h = hashlib.sha256()
    for package in (vireid.datasets, vireid.harness, vireid.methods):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def differing_settings(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The training-defining keys whose values differ between two `Params.to_dict()`s."""
    old, new = flatten(saved), flatten(current)
    keys = {k for k in old.keys() | new.keys() if k.startswith(TRAINING_BLOCKS) and k not in MAY_DIFFER}
    return sorted(k for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>"))


def incompatibility(state: dict[str, Any], params: Any, fingerprint: str, code: str) -> str | None:
    """Why the checkpoint `state` cannot be continued by this run, or None."""
    saved = state.get("params")
    if not isinstance(saved, dict):
        return "it records no settings"
    keys = differing_settings(saved, params.to_dict())
    if keys:
        shown = ", ".join(f"{k} ({flatten(saved).get(k, '<absent>')!r} -> {params.flat().get(k, '<absent>')!r})"
                          for k in keys[:6])
        return f"its settings differ: {shown}" + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    done = int(state.get("epoch", 0)) - 1
    if params.train.epochs < done:
        return f"train.epochs {params.train.epochs} is below the {done} epochs it already trained"
    for key, now in (("dataset_fingerprint", fingerprint), ("code_digest", code)):
        if state.get(key) not in (None, now):
            return f"its {key.replace('_', ' ')} differs ({str(state[key])[:12]} -> {now[:12]})"
    return None


def present(run_dir: Path) -> list[str]:
    """Names in `run_dir` other than the writer lock."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.name != LOCK)


def plan(run_dir: Path, resume: bool | str, params: Any, fingerprint: str, code: str, is_main: bool) -> bool:
    """True when training continues from the folder's checkpoint; else the folder is (made) empty.

    Every rank decides from the files before rank 0 changes any (a barrier between, under DDP)."""
    from vireid.harness import distributed as dist
    from vireid.harness.io import remove_stale_temps

    if is_main and run_dir.is_dir():
        remove_stale_temps(run_dir)  # left by a run killed with SIGKILL
    dist.barrier()
    names = present(run_dir)
    decision = _decide(run_dir, names, resume, params, fingerprint, code)
    dist.barrier()
    if decision == "empty" and is_main:
        for name in names:
            (run_dir / name).unlink()
    return decision == "resume"


def _decide(run_dir: Path, names: list[str], resume: bool | str, params: Any, fingerprint: str, code: str) -> str:
    """"fresh" (nothing there), "resume", or "empty" (start over in an emptied folder); or refuse."""
    from vireid.harness.checkpoint import load_checkpoint

    if not names:
        return "fresh"
    checkpoint = run_dir / CHECKPOINT
    if resume is True:
        if not checkpoint.is_file():
            raise RunFolderError(f"{run_dir}: --resume, but the folder holds no {CHECKPOINT} (it holds "
                                 f"{', '.join(names[:6])}); train into an empty --run-dir")
        why = incompatibility(load_checkpoint(checkpoint), params, fingerprint, code)
        if why:
            raise RunFolderError(f"{checkpoint}: cannot be resumed by this run: {why}; resume with the "
                                 "checkpoint's settings, or train into an empty --run-dir")
        return "resume"
    if resume == "partial":
        if checkpoint.is_file() and not (run_dir / "metrics.json").exists():
            if incompatibility(load_checkpoint(checkpoint), params, fingerprint, code) is None:
                return "resume"
        foreign = [n for n in names if n not in RUN_FILES]
        if foreign:
            raise RunFolderError(f"{run_dir}: holds files no run writes ({', '.join(foreign[:6])}); refusing to "
                                 "empty it: move them away or choose another --run-dir")
        return "empty"
    raise RunFolderError(f"{run_dir}: holds the files of an earlier run ({', '.join(names[:6])}"
                         f"{' ...' if len(names) > 6 else ''}); continue it with --resume, or train into an empty "
                         "--run-dir")

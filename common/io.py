"""Atomic file writes: a reader (or DVC) never sees a half-written output.

Each writer writes to a temporary file in the destination folder, flushes and fsyncs it,
then renames it over the destination (`os.replace` is atomic on POSIX). On any error the
temporary file is removed and the previous version of the destination is left untouched.

A process killed with SIGKILL cannot remove its temporary file: every temporary name holds
a ``.tmp`` part (``.<name>.<8 random>.tmp[.ext]``), and :func:`remove_stale_temps` deletes
them when the next run starts in that folder (a folder is written by one process at a time).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What `open(path, "w")` would give; mkstemp's 0600 would hide outputs from other users.
# Read once at import: os.umask is process-wide and not thread-safe.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ".tmp" not in suffix:  # keep the writer's extension (np.savez appends .npz otherwise)
        suffix = ".tmp" + suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file (fsync: full disk)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> None:
    """Call `writer(tmp_path)` (e.g. torch.save, np.savez) then rename atomically."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


# `.<name>.<mkstemp's 8 characters>.tmp[.ext]`, as atomic_path names them.
_TEMP_RE = re.compile(r"\..+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)*\.tmp(\.[A-Za-z0-9]+)?")


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _TEMP_RE.fullmatch(p.name) and p.is_file() and not p.is_symlink()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale

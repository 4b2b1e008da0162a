"""Checks shared by the dataset adapters: folders, index files and their lines.

Every error names the file (and line) it comes from and says what was expected, so a
user can fix a broken download without reading the adapter's code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd

from vireid.datasets.errors import DatasetError

__all__ = ["Layout", "IndexEntry", "require_dir", "require_file", "read_index_file", "check_disjoint",
           "indexed_records"]


@dataclass
class Layout:
    """What an adapter read from a dataset root.

    ``records`` follows the record schema; ``index_files`` are the root-relative
    metadata files the records depend on (they enter the fingerprint);
    ``warnings`` are non-fatal problems found while reading.
    """

    records: pd.DataFrame
    index_files: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IndexEntry:
    path: str  # POSIX, relative to the dataset root
    label: int
    line: int


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: folder not found (expected {what})")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected {what})")
    return path


def _safe_relative(text: str, where: str) -> str:
    """Reject absolute paths, ``..`` and backslashes: an index line must stay inside the root."""
    if "\\" in text:
        raise DatasetError(f"{where}: path {text!r} contains a backslash; expected a POSIX path relative to "
                           "the dataset root")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("/"):
        raise DatasetError(f"{where}: path {text!r} is absolute; expected a path relative to the dataset root")
    if ".." in pure.parts:
        raise DatasetError(f"{where}: path {text!r} points outside the dataset root ('..')")
    return pure.as_posix()


def read_index_file(root: Path, rel: str) -> list[IndexEntry]:
    """Parse an index file of ``relative/path label`` lines (blank lines are skipped).

    Checks every line: two fields, an integer label, a path inside the root naming an
    existing file, no path listed twice.
    """
    path = require_file(root / rel, "an index file of 'relative/path label' lines")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc})") from None
    entries: list[IndexEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 2:
            raise DatasetError(f"{where}: malformed line {raw!r}; expected 'relative/path label'")
        try:
            label = int(fields[1])
        except ValueError:
            raise DatasetError(f"{where}: label {fields[1]!r} is not an integer; expected "
                               "'relative/path label'") from None
        rel_img = _safe_relative(fields[0], where)
        if rel_img in seen:
            raise DatasetError(f"{where}: {rel_img} is already listed on line {seen[rel_img]}")
        if not (root / rel_img).is_file():
            raise DatasetError(f"{where}: image {rel_img} not found under {root}")
        seen[rel_img] = number
        entries.append(IndexEntry(rel_img, label, number))
    if not entries:
        raise DatasetError(f"{path}: index file is empty; expected 'relative/path label' lines")
    return entries


def check_disjoint(train_ids, test_ids, train_source: str, test_source: str) -> None:
    both = sorted(set(int(i) for i in train_ids) & set(int(i) for i in test_ids))
    if both:
        shown = ", ".join(map(str, both[:10])) + (" ..." if len(both) > 10 else "")
        raise DatasetError(f"identities {shown} ({len(both)} in all) appear in both the training split "
                           f"({train_source}) and the test split ({test_source}); expected disjoint identities")


def _person_of(entry: IndexEntry, folder: str, where: str) -> int:
    """The person id is the image's parent folder, ``<folder>/<person>/<file>``, as the public code parses it."""
    parts = entry.path.split("/")
    if len(parts) != 3 or parts[0] != folder or not parts[1].isdigit():
        raise DatasetError(f"{where}:{entry.line}: path {entry.path!r} is not of the form "
                           f"{folder}/<person number>/<file>")
    return int(parts[1])


def indexed_records(root: Path, files: list[tuple[str, str, str, int, str]],
                    real_camera: Callable[[IndexEntry, int, str], int] | None = None) -> pd.DataFrame:
    """Records of an index-file layout (RegDB, LLCM).

    ``files``: (index file, image folder, modality, camera code, split) per index file. The
    pid of an image is its person folder (the dataset's own id, not the relabelled index
    label); the label must be one per person within a file. ``real_camera(entry, pid,
    where)`` gives the ``camera`` column (default: the camera code).
    """
    rows = []
    ids: dict[str, set[int]] = {"train": set(), "test": set()}
    sources: dict[str, list[str]] = {"train": [], "test": []}
    for rel, folder, modality, cam, split in files:
        label_of: dict[int, tuple[int, int]] = {}
        for entry in read_index_file(root, rel):
            pid = _person_of(entry, folder, str(root / rel))
            previous = label_of.setdefault(pid, (entry.label, entry.line))
            if previous[0] != entry.label:
                raise DatasetError(f"{root / rel}:{entry.line}: person {pid} has label {entry.label} but label "
                                   f"{previous[0]} on line {previous[1]}; expected one label per person")
            camera = cam if real_camera is None else real_camera(entry, pid, str(root / rel))
            rows.append((entry.path, pid, cam, modality, split, camera))
        ids[split] |= set(label_of)
        sources[split].append(str(root / rel))
    check_disjoint(ids["train"], ids["test"], " + ".join(sources["train"]), " + ".join(sources["test"]))
    return pd.DataFrame(rows, columns=["path", "pid", "cam", "modality", "split", "camera"])

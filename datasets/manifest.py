"""The manifest: a validated record table plus a content fingerprint of the dataset.

``build_manifest`` reads the layout with the dataset's adapter, decodes every image (in
parallel) and hashes every file; nothing is written unless all of it passes.
``write_manifest`` writes the records (CSV or Parquet, by suffix) and a sidecar JSON
(``<name>.json``: dataset, root, counts, fingerprint, warnings) with atomic renames, the
sidecar last; ``read_manifest`` checks that the two belong together.

Both files depend on content only, so the same dataset prepared in two clones of the
repository gives the same bytes (a DVC output must): the root is written relative to the
sidecar's folder when both lie under the working directory (the project), and the
mtime-based ``stat_digest`` goes to ``<name>.local.json``, which ``.dvcignore`` keeps out
of every DVC hash.

The fingerprint is a sha256 over the dataset name and split, the record table, and the
(path, size, sha256 of the bytes) of every image and metadata file; it does not depend on
where the root lives. Results and caches are keyed by it.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vireid.datasets.errors import DatasetError, DatasetWarning
from vireid.datasets.layout import Layout
from vireid.datasets.schema import MODALITIES, SPLITS, validate_records

FORMAT = "vireid-manifest"
VERSION = 2  # 2: records carry the real camera (column `camera`)
RECORD_SUFFIXES = (".parquet", ".csv")

__all__ = ["Manifest", "read_layout", "build_manifest", "write_manifest", "read_manifest", "sidecar_path",
           "records_digest", "stat_digest", "count_records", "one_modality_ids"]


@dataclass
class Manifest:
    dataset: str
    root: str  # absolute path of the dataset root (the sidecar may store it relative: portable_root)
    split: int  # RegDB trial (1..10); 1 for the other datasets
    records: pd.DataFrame
    fingerprint: str
    counts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    one_modality_ids: list[int] = field(default_factory=list)  # excluded from identity sampling
    index_files: list[str] = field(default_factory=list)
    stat_digest: str = ""  # cheap change detector: paths, sizes and mtimes (see stat_digest)

    def sidecar(self, records_file: str, folder: Path) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "dataset": self.dataset, "root": portable_root(self.root, folder),
            "split": self.split, "fingerprint": self.fingerprint, "records_file": records_file,
            "records_sha256": records_digest(self.records), "counts": self.counts, "warnings": self.warnings,
            "one_modality_ids": self.one_modality_ids, "index_files": self.index_files,
        }


def portable_root(root, folder) -> str:
    """``root`` as the sidecar in ``folder`` stores it: relative (POSIX) when both lie under the
    working directory, so the file does not depend on where the project is; else absolute
    (data outside the project is a fact of the machine, the same for every clone on it)."""
    root, folder, cwd = Path(root).resolve(), Path(folder).resolve(), Path.cwd().resolve()
    if root.is_relative_to(cwd) and folder.is_relative_to(cwd):
        return Path(os.path.relpath(root, folder)).as_posix()
    return str(root)


def local_state_path(path) -> Path:
    """Machine-local state beside a manifest (mtimes): ignored by DVC (`.dvcignore`: *.local.json)."""
    return Path(path).with_suffix(".local.json")


def records_digest(records: pd.DataFrame) -> str:
    text = records.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stat_digest(root: Path, layout: Layout) -> str:
    """sha256 over (path, size, mtime) of every file plus the records: changes when any file
    is touched, without reading the bytes (lets a second ``prepare`` skip the full check)."""
    h = hashlib.sha256(records_digest(layout.records).encode())
    for rel in sorted([*layout.index_files, *layout.records["path"]]):
        try:
            st = os.stat(root / rel)
        except OSError as exc:
            raise DatasetError(f"{root / rel}: cannot stat ({exc.strerror})") from None
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def one_modality_ids(records: pd.DataFrame) -> list[int]:
    n_modalities = records.groupby("pid")["modality"].nunique()
    return sorted(int(p) for p in n_modalities.index[n_modalities < 2])


def count_records(records: pd.DataFrame) -> dict[str, Any]:
    """Images and identities overall, per split and per split x modality."""
    def block(df: pd.DataFrame) -> dict[str, int]:
        return {"ids": int(df["pid"].nunique()), "images": int(len(df))}

    counts: dict[str, Any] = block(records)
    for split in SPLITS:
        sub = records[records["split"] == split]
        counts[split] = block(sub)
        for modality in MODALITIES:
            counts[split][modality] = block(sub[sub["modality"] == modality])
    return counts


def _fingerprint(dataset: str, split: int, records: pd.DataFrame, files: list[tuple[str, int, str]]) -> str:
    h = hashlib.sha256(f"{FORMAT}/{VERSION}\0{dataset}\0{split}\0{records_digest(records)}\n".encode())
    for rel, size, digest in sorted(files):
        h.update(f"{rel}\0{size}\0{digest}\n".encode())
    return h.hexdigest()


def read_layout(dataset: str, root, split: int = 1) -> Layout:
    """The adapter's layout with its records checked against the schema (no decoding)."""
    from vireid.datasets.registry import get_adapter

    root = Path(root).resolve()
    spec = get_adapter(dataset)
    layout = spec.read(root, split)
    records = validate_records(layout.records, source=f"{dataset} at {root}")
    if records.empty:
        raise DatasetError(f"{root}: no images found for {dataset} (check the layout and index files)")
    check_cameras(records, spec, f"{dataset} at {root}")
    return Layout(records, layout.index_files, layout.warnings)


def check_cameras(records, spec, source: str) -> None:
    """Every record's camera is one of the spec's, with the spec's modality (an adapter bug or a
    spec that disagrees with its adapter otherwise)."""
    pairs = records[["cam", "modality"]].drop_duplicates()
    expected = dict(zip(spec.camera_ids, (c.modality for c in spec.cameras)))
    for cam, modality in pairs.itertuples(index=False):
        if cam not in expected:
            raise DatasetError(f"{source}: camera {cam} is not one of {spec.label}'s cameras {list(expected)}")
        if expected[cam] != modality:
            raise DatasetError(f"{source}: camera {cam} images are {modality!r} but {spec.label}'s spec says "
                               f"{expected[cam]!r}")


def outside_root(root: Path, paths: list[str]) -> list[str]:
    """The relative ``paths`` whose real location (symlinks followed) is not under ``root``."""
    base = os.path.realpath(root)
    prefix = base.rstrip(os.sep) + os.sep
    return [p for p in paths if not os.path.realpath(os.path.join(base, p)).startswith(prefix)]


def build_manifest(dataset: str, root, split: int = 1, workers: int = 2, progress: bool = False,
                   layout: Layout | None = None) -> Manifest:
    """Read, validate and fingerprint the dataset at ``root``; raise :class:`DatasetError` on
    any problem. Identities seen in one modality only are a :class:`DatasetWarning`.
    ``layout``: what :func:`read_layout` returned for the same arguments, if already read."""
    from vireid.datasets.images import inspect_images

    root = Path(root).resolve()
    layout = layout or read_layout(dataset, root, split)
    records = layout.records
    digest = stat_digest(root, layout)
    sizes, hashes = inspect_images(root, list(records["path"]), workers=workers, progress=progress)
    files = [(rel, int(s), h) for rel, s, h in zip(records["path"], sizes, hashes)]
    for rel in layout.index_files:
        data = (root / rel).read_bytes()
        files.append((rel, len(data), hashlib.sha256(data).hexdigest()))
    messages = list(layout.warnings)
    outside = outside_root(root, list(records["path"]))
    if outside:
        first = outside[0]
        messages.append(f"{len(outside)} image(s) are symlinks (or under symlinked folders) that resolve outside "
                        f"the dataset root, e.g. {first} -> {os.path.realpath(root / first)}; they are read, "
                        "but the manifest fingerprint covers their content, not where they live")
    single = one_modality_ids(records)
    if single:
        messages.append(f"{len(single)} identit{'y' if len(single) == 1 else 'ies'} with images in one modality "
                        f"only (excluded from identity sampling): {single[:20]}"
                        + (" ..." if len(single) > 20 else ""))
    for message in messages:
        _warnings.warn(f"{dataset} at {root}: {message}", DatasetWarning, stacklevel=2)
    return Manifest(dataset=dataset, root=str(root), split=int(split), records=records,
                    fingerprint=_fingerprint(dataset, split, records, files), counts=count_records(records),
                    warnings=messages, one_modality_ids=single, index_files=list(layout.index_files),
                    stat_digest=digest)


def sidecar_path(path) -> Path:
    return Path(path).with_suffix(".json")


def _check_suffix(path: Path) -> None:
    if path.suffix not in RECORD_SUFFIXES:
        raise DatasetError(f"{path}: a manifest file must end in .parquet or .csv")


def write_manifest(manifest: Manifest, path) -> tuple[Path, Path]:
    """Write the records to ``path`` (.parquet or .csv) and the sidecar JSON next to it,
    each atomically; return both paths."""
    from vireid.common.io import atomic_path, atomic_write_json

    path = Path(path)
    _check_suffix(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix == ".parquet":
            manifest.records.to_parquet(tmp, index=False)
        else:
            manifest.records.to_csv(tmp, index=False, lineterminator="\n")
    side = sidecar_path(path)
    atomic_write_json(local_state_path(path), {"stat_digest": manifest.stat_digest})
    atomic_write_json(side, manifest.sidecar(path.name, side.parent))
    return path, side


def read_manifest(path) -> Manifest:
    path = Path(path)
    _check_suffix(path)
    side = sidecar_path(path)
    for p, what in ((path, "manifest records"), (side, "manifest sidecar JSON")):
        if not p.is_file():
            raise DatasetError(f"{p}: {what} not found (write one with `vireid data check` or "
                               "`vireid data prepare`)")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetError(f"{side}: not a vireid manifest sidecar (expected \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise DatasetError(f"{side}: manifest version {meta.get('version')!r}; expected {VERSION} (re-run prepare)")
    needed = ("dataset", "root", "split", "fingerprint", "records_sha256", "counts")
    missing = [k for k in needed if k not in meta]
    if missing:
        raise DatasetError(f"{side}: missing keys {missing}")
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raw = pd.read_csv(path, dtype={"path": str, "modality": str, "split": str}, keep_default_na=False)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read the manifest records ({type(exc).__name__}: {exc})") from None
    records = validate_records(raw, source=str(path))
    if records_digest(records) != meta["records_sha256"]:
        raise DatasetError(f"{path}: the records do not match {side.name} (an interrupted write or a file from "
                           "another manifest); rebuild the manifest")
    root = os.path.normpath(os.path.join(side.parent.resolve(), meta["root"]))  # a relative root: see portable_root
    return Manifest(dataset=meta["dataset"], root=root, split=int(meta["split"]), records=records,
                    fingerprint=meta["fingerprint"], counts=meta["counts"], warnings=list(meta.get("warnings", [])),
                    one_modality_ids=[int(i) for i in meta.get("one_modality_ids", [])],
                    index_files=list(meta.get("index_files", [])), stat_digest=_local_stat_digest(path))


def _local_stat_digest(path: Path) -> str:
    """The stat digest written beside the manifest, or "" (absent or unreadable: a full check)."""
    try:
        return str(json.loads(local_state_path(path).read_text(encoding="utf-8"))["stat_digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""

"""The record schema shared by every dataset adapter (see docs/ARCHITECTURE.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from vireid.datasets.errors import DatasetError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "RECORD_COLUMNS", "MODALITIES", "SPLITS", "VISIBLE", "INFRARED", "MODALITY_CODE",
    "CODE_MODALITY", "modality_codes", "validate_records", "empty_records",
]

#: Columns of a record table, in order. ``cam`` is the camera code of the public IDKL code
#: (SYSU-MM01: the real camera 1..6; RegDB and LLCM: visible 2, infrared 3), which the
#: IDKL protocols select by; ``camera`` is the dataset's real camera (SYSU-MM01 1..6,
#: RegDB 2/3 -- one camera per modality --, LLCM 1..9 from the file name ``PPPP_cCC_...``),
#: which DEEN's LLCM protocol needs.
RECORD_COLUMNS = ("path", "pid", "cam", "modality", "split", "camera")
VISIBLE = "visible"
INFRARED = "infrared"
#: Allowed values of the ``modality`` column.
MODALITIES = (VISIBLE, INFRARED)
#: Allowed values of the ``split`` column.
SPLITS = ("train", "test")
#: The integer modality code models use: visible = 0, infrared = 1.
MODALITY_CODE = {VISIBLE: 0, INFRARED: 1}
CODE_MODALITY = {v: k for k, v in MODALITY_CODE.items()}


def modality_codes(modalities):
    """Map an iterable / Series of modality names to an int64 numpy array of codes."""
    import numpy as np

    try:
        return np.asarray([MODALITY_CODE[m] for m in modalities], dtype=np.int64)
    except KeyError as exc:
        raise DatasetError(f"unknown modality {exc.args[0]!r}; expected one of {MODALITIES}") from None


def empty_records() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({
        "path": pd.Series([], dtype=object), "pid": pd.Series([], dtype="int64"),
        "cam": pd.Series([], dtype="int64"), "modality": pd.Series([], dtype=object),
        "split": pd.Series([], dtype=object), "camera": pd.Series([], dtype="int64"),
    })


def validate_records(df: "pd.DataFrame", source: str = "records") -> "pd.DataFrame":
    """Check that ``df`` follows the record schema; return it with canonical dtypes,
    columns in :data:`RECORD_COLUMNS` order and rows sorted by ``path``.

    Raises :class:`DatasetError` mentioning ``source`` (a file name or adapter name).
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise DatasetError(f"{source}: expected a pandas DataFrame of records, got {type(df).__name__}")
    missing = [c for c in RECORD_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{source}: missing record columns {missing}; expected exactly "
                           f"{list(RECORD_COLUMNS)}")
    extra = [c for c in df.columns if c not in RECORD_COLUMNS]
    if extra:
        raise DatasetError(f"{source}: unexpected record columns {extra}; expected exactly "
                           f"{list(RECORD_COLUMNS)}")
    out = df.loc[:, list(RECORD_COLUMNS)].copy()
    if out[list(RECORD_COLUMNS)].isna().any().any():
        raise DatasetError(f"{source}: records contain missing values")
    try:
        out["pid"] = out["pid"].astype("int64")
        out["cam"] = out["cam"].astype("int64")
        out["camera"] = out["camera"].astype("int64")
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{source}: pid, cam and camera must be integers ({exc})") from None
    out["path"] = out["path"].astype(str).astype(object)
    out["modality"] = out["modality"].astype(str).astype(object)
    out["split"] = out["split"].astype(str).astype(object)
    bad_mod = sorted(set(out["modality"]) - set(MODALITIES))
    if bad_mod:
        raise DatasetError(f"{source}: unknown modality values {bad_mod}; expected {list(MODALITIES)}")
    bad_split = sorted(set(out["split"]) - set(SPLITS))
    if bad_split:
        raise DatasetError(f"{source}: unknown split values {bad_split}; expected {list(SPLITS)}")
    bad_path = [p for p in out["path"] if p.startswith("/") or "\\" in p or ".." in p.split("/") or p == ""]
    if bad_path:
        raise DatasetError(f"{source}: paths must be POSIX paths relative to the dataset root; "
                           f"got {bad_path[:3]}")
    dup = out["path"][out["path"].duplicated()]
    if len(dup):
        raise DatasetError(f"{source}: duplicate paths {sorted(set(dup))[:3]}")
    out = out.sort_values("path", kind="mergesort").reset_index(drop=True)
    return out

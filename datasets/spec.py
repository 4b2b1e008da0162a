"""What the harness knows about a dataset, declared once, in the dataset's own module.

A :class:`DatasetSpec` holds a dataset's name, splits, cameras (modality and location), the
protocols it offers, the files it reads, its default test protocols and its synthetic
writer. Adapters, protocols, validation, the generator and the config all read these specs:
no other module names a camera number. ``register_dataset(spec)`` adds one (a plugin can).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from vireid.datasets.errors import DatasetError
from vireid.datasets.schema import INFRARED, VISIBLE

if TYPE_CHECKING:
    from vireid.datasets.layout import Layout

__all__ = ["Camera", "ProtocolDef", "DatasetSpec", "SynthDefaults", "cross_modal_protocols", "IDKL_CODE", "AGW_CODE",
           "DEEN_CODE"]

# The public code the protocols follow (``vireid protocols`` shows it).
IDKL_CODE = "1KK077/IDKL"
AGW_CODE = "mangye16/Cross-Modal-Re-ID-baseline"
DEEN_CODE = "ZYK100/LLCM"


@dataclass(frozen=True)
class Camera:
    """One value of the records' ``cam`` column: its modality and where it stands.

    Cameras that share a ``location`` see the same scene; a query's gallery entries from its
    own location never count (SYSU-MM01: camera 3 stands at camera 2's location). ``None``:
    its own location."""

    id: int
    modality: str  # VISIBLE or INFRARED
    location: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in (VISIBLE, INFRARED):
            raise ValueError(f"camera {self.id}: modality must be {VISIBLE!r} or {INFRARED!r}, got {self.modality!r}")


@dataclass(frozen=True)
class ProtocolDef:
    """A named test protocol as data; the evaluation layer turns it into index sets.

    ``query`` / ``gallery``: the modality of each side (their cameras come from the spec) or
    explicit camera ids. ``perm_file``: the dataset-relative file its trials are drawn from
    (SYSU-MM01's permutations). ``normalize``: L2-normalise before the distance (None: the
    dataset's rule)."""

    name: str
    direction: str  # "i2v" (infrared queries) or "v2i"
    query: str | tuple[int, ...]
    gallery: str | tuple[int, ...]
    num_trials: int = 1
    num_shots: int | None = None
    perm_file: str | None = None
    cmc: str = "distinct"  # "distinct" or "first_match" (AGW's eval_regdb)
    deen_draw: str | None = None  # DEEN LLCM: "gallery" or "query", the side drawn per (identity, camera)
    normalize: bool | None = None
    follows: str = ""  # the public code it reproduces


@dataclass(frozen=True)
class SynthDefaults:
    """The generator's defaults for this layout: about the real test share and infrared kind."""

    test_fraction: float
    ir_model: str  # "nir" | "thermal"
    val_ids: bool = False  # the layout lists validation ids apart (SYSU-MM01's exp/val_id.txt)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    reader: Callable[[Path, int], "Layout"]
    cameras: tuple[Camera, ...]
    protocols: tuple[ProtocolDef, ...]
    default_protocols: tuple[str, ...]
    splits: tuple[int, ...] = (1,)  # valid values of `split` (RegDB's trials; 1 elsewhere)
    normalize: bool = False  # the public code L2-normalises the features before the distance
    files: tuple[str, ...] = ()  # the metadata files it reads (id lists, index files, permutations)
    synth_writer: Callable[[Path, Any], list] | None = None  # (root, SynthSettings) -> shoots
    synth: SynthDefaults | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"dataset {self.name!r}: camera ids repeat in {ids}")
        names = [p.name for p in self.protocols]
        unknown = sorted(set(self.default_protocols) - set(names))
        if unknown:
            raise ValueError(f"dataset {self.name!r}: default protocols {unknown} are not among its protocols {names}")
        if (self.synth_writer is None) != (self.synth is None):
            raise ValueError(f"dataset {self.name!r}: a synthetic writer needs its SynthDefaults and vice versa")

    def read(self, root, split: int = 1) -> "Layout":
        """Read and check the layout under ``root`` (no image decoding; see vireid.datasets.manifest)."""
        if split not in self.splits:
            raise DatasetError(f"{self.label} has splits {list(self.splits)}; got split {split}")
        return self.reader(Path(root), split)

    # ------------------------------------------------------------------ cameras
    @property
    def camera_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.cameras)

    def cameras_of(self, modality: str) -> tuple[int, ...]:
        return tuple(c.id for c in self.cameras if c.modality == modality)

    @property
    def infrared_cameras(self) -> tuple[int, ...]:
        return self.cameras_of(INFRARED)

    @property
    def visible_cameras(self) -> tuple[int, ...]:
        return self.cameras_of(VISIBLE)

    @property
    def locations(self) -> dict[int, int]:
        """camera -> location, for the cameras that share another camera's location."""
        return {c.id: c.location for c in self.cameras if c.location is not None and c.location != c.id}

    def modality_of(self, cams) -> list[str]:
        """The modality of each camera id (an unknown one is a DatasetError naming the cameras)."""
        by_id = {c.id: c.modality for c in self.cameras}
        try:
            return [by_id[int(c)] for c in cams]
        except KeyError as exc:
            raise DatasetError(f"{self.label}: camera {exc.args[0]} is not one of its cameras "
                               f"{list(by_id)}") from None

    def side_cameras(self, side: str | tuple[int, ...]) -> tuple[int, ...]:
        """A protocol side's cameras: a modality's cameras, or the listed ids (checked)."""
        if isinstance(side, str):
            return self.cameras_of(side)
        unknown = sorted(set(side) - set(self.camera_ids))
        if unknown:
            raise ValueError(f"dataset {self.name!r}: protocol cameras {unknown} are not among {list(self.camera_ids)}")
        return tuple(side)


def cross_modal_protocols(dataset: str) -> tuple[ProtocolDef, ProtocolDef]:
    """``<dataset>/v2i`` and ``<dataset>/i2v``: every image of one modality against every image
    of the other, one trial, as the IDKL code's ``eval_<dataset>.py`` (RegDB, LLCM)."""
    return tuple(ProtocolDef(name=f"{dataset}/{direction}", direction=direction, query=query, gallery=gallery,
                             follows=f"{IDKL_CODE} IDKL/utils/eval_{dataset}.py ({query} queries)")
                 for direction, query, gallery in (("v2i", VISIBLE, INFRARED), ("i2v", INFRARED, VISIBLE)))

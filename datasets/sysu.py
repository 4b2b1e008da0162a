"""SYSU-MM01 as its authors ship it.

Layout: ``cam1 .. cam6/<pid, 4 digits>/<image, 4 digits>.jpg``; ``exp/train_id.txt``,
``exp/val_id.txt``, ``exp/test_id.txt`` each hold one line of comma-separated ids.
``exp/rand_perm_cam.mat``, the gallery permutation of the official evaluation, is *not* in
the dataset archive: it comes from the official SYSU-MM01 evaluation repository
(github.com/wuancong/SYSU-MM01, ``evaluation/data_split/rand_perm_cam.mat``). Training does
not need it (a warning says it is missing); the sysu/* protocols do.

As in the public IDKL code (data/dataset.py): the training split is train_id + val_id,
the test split is test_id; images of persons in no list are ignored; cameras 3 and 6 are
infrared, 1, 2, 4, 5 visible; the camera column is the real camera number. A listed
person without images is reported as a warning. When the permutation file is there, it
must name, for every test person, exactly the images on disk of the gallery cameras (the
test protocol draws its gallery from it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vireid.datasets import synth
from vireid.datasets.errors import DatasetError
from vireid.datasets.layout import Layout, check_disjoint, require_dir, require_file
from vireid.datasets.registry import register_dataset
from vireid.datasets.schema import INFRARED, VISIBLE
from vireid.datasets.spec import IDKL_CODE, Camera, DatasetSpec, ProtocolDef, SynthDefaults
from vireid.datasets.sysu_perm import read_rand_perm_cam, write_rand_perm_cam

# Cameras 1, 2 (visible) and 3 (infrared) are indoor, in one room: camera 3 stands at camera 2's
# location; 4, 5 (visible) and 6 (infrared) are outdoor.
CAMERA_TABLE = (Camera(1, VISIBLE), Camera(2, VISIBLE), Camera(3, INFRARED, location=2), Camera(4, VISIBLE),
                Camera(5, VISIBLE), Camera(6, INFRARED))
CAMERAS = tuple(c.id for c in CAMERA_TABLE)
INFRARED_CAMERAS = tuple(c.id for c in CAMERA_TABLE if c.modality == INFRARED)
GALLERY_CAMERAS = tuple(c.id for c in CAMERA_TABLE if c.modality == VISIBLE)
INDOOR_GALLERY = (1, 2)
ID_FILES = {"train": "exp/train_id.txt", "val": "exp/val_id.txt", "test": "exp/test_id.txt"}
PERM_FILE = "exp/rand_perm_cam.mat"
PERM_SOURCE = ("the official SYSU-MM01 evaluation repository (github.com/wuancong/SYSU-MM01), "
               "evaluation/data_split/rand_perm_cam.mat")
PERM_TRIALS = 10  # rows per person in the official file; the sysu/* protocols draw trials 0..9

SYNTH_INDOOR_ABSENT = 0.4  # persons never seen by the indoor visible cameras (real: 40 of 96 test persons)

__all__ = ["read", "read_id_list", "image_path", "write_synthetic", "SPEC", "CAMERAS", "INFRARED_CAMERAS", "ID_FILES",
           "PERM_FILE", "PERM_SOURCE"]


def image_path(cam: int, pid: int, number: int) -> str:
    return f"cam{cam}/{pid:04d}/{number:04d}.jpg"


def read_id_list(path: Path) -> list[int]:
    """One line of comma-separated person ids (a trailing newline or comma is tolerated)."""
    require_file(path, "one line of comma-separated person ids")
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if len(lines) != 1:
        raise DatasetError(f"{path}: expected exactly one line of comma-separated person ids, "
                           f"found {len(lines)} non-empty lines")
    tokens = [t.strip() for t in lines[0].strip().rstrip(",").split(",")]
    ids = []
    for token in tokens:
        if not token.isdigit():
            raise DatasetError(f"{path}: {token!r} is not a person id; expected comma-separated integers")
        ids.append(int(token))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DatasetError(f"{path}: person ids listed twice: {dup[:10]}")
    return ids


def _scan_camera(root: Path, cam: int) -> list[tuple[int, int]]:
    """(pid, image number) of every ``camC/PPPP/IIII.jpg``; hidden and non-jpg files are ignored."""
    folder = require_dir(root / f"cam{cam}", f"camera folder cam{cam}/ of SYSU-MM01")
    found = []
    for person in sorted(folder.iterdir()):
        if person.name.startswith("."):
            continue
        if not person.is_dir():
            continue
        if not (person.name.isascii() and person.name.isdigit() and len(person.name) == 4):
            raise DatasetError(f"{person}: expected person folders named by a 4-digit id (ASCII digits 0-9) "
                               f"in cam{cam}/")
        for image in sorted(person.iterdir()):
            if image.suffix.lower() != ".jpg" or image.name.startswith("."):
                continue
            if not (image.stem.isascii() and image.stem.isdigit() and len(image.stem) == 4
                    and image.suffix == ".jpg"):
                raise DatasetError(f"{image}: expected images named by a 4-digit number (e.g. 0001.jpg)")
            found.append((int(person.name), int(image.stem)))
    return found


def _check_permutation(root: Path, table: pd.DataFrame, test_ids: list[int]) -> None:
    perm = read_rand_perm_cam(root / PERM_FILE)
    where = root / PERM_FILE
    on_disk = {key: set(group["number"]) for key, group in table.groupby(["cam", "pid"])}
    for cam in GALLERY_CAMERAS:
        persons = perm[cam]
        for pid in test_ids:
            disk = on_disk.get((cam, pid), set())
            if pid > len(persons):  # the official lists stop at each camera's largest person id
                if disk:
                    raise DatasetError(f"{where}: camera {cam} lists {len(persons)} persons; expected an entry "
                                       f"for test person {pid}")
                continue
            arr = persons[pid - 1]
            listed = set(arr[0].tolist()) if arr.size else set()
            if listed != disk:
                extra = sorted(listed - disk)
                missing = sorted(disk - listed)
                detail = (f"it names {image_path(cam, pid, extra[0])}, which does not exist" if extra else
                          f"it lacks {image_path(cam, pid, missing[0])}")
                raise DatasetError(f"{where}: the permutation of test person {pid} in camera {cam} does not "
                                   f"match the images on disk ({detail})")
            if arr.size and arr.shape[0] < PERM_TRIALS:
                raise DatasetError(f"{where}: test person {pid} in camera {cam} has {arr.shape[0]} trial row(s); "
                                   f"expected {PERM_TRIALS} (one gallery draw per trial of the protocols)")
            rows = np.sort(arr, axis=1) if arr.size else arr
            if arr.size and not np.all(rows == rows[:1]):
                raise DatasetError(f"{where}: the trials of test person {pid} in camera {cam} are not "
                                   "permutations of the same images")


def read(root, split: int = 1) -> Layout:
    root = Path(root)
    require_dir(root, "the SYSU-MM01 root (cam1..cam6/, exp/)")
    require_dir(root / "exp", "exp/ with train_id.txt, val_id.txt, test_id.txt")
    lists = {name: read_id_list(root / rel) for name, rel in ID_FILES.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        check_disjoint(lists[a], lists[b], str(root / ID_FILES[a]), str(root / ID_FILES[b]))
    rows = [(cam, pid, number) for cam in CAMERAS for pid, number in _scan_camera(root, cam)]
    table = pd.DataFrame(rows, columns=["cam", "pid", "number"]).astype("int64")
    split_of = {pid: "train" for pid in lists["train"] + lists["val"]}
    split_of.update({pid: "test" for pid in lists["test"]})
    table = table[table["pid"].isin(split_of)]
    warnings = []
    without = sorted(set(split_of) - set(table["pid"]))
    if without:
        warnings.append(f"{len(without)} listed person(s) have no image in cam1..cam6: {without[:20]}")
    has_perm = (root / PERM_FILE).is_file()
    if has_perm:
        _check_permutation(root, table, lists["test"])
    else:
        warnings.append(f"{PERM_FILE} not found (it is not in the SYSU-MM01 archive): training works, the sysu/* "
                        f"test protocols need it; copy it from {PERM_SOURCE}")
    records = pd.DataFrame({
        "path": [image_path(c, p, n) for c, p, n in table[["cam", "pid", "number"]].itertuples(index=False)],
        "pid": table["pid"].to_numpy(),
        "cam": table["cam"].to_numpy(),
        "modality": np.where(table["cam"].isin(INFRARED_CAMERAS), INFRARED, VISIBLE),
        "split": table["pid"].map(split_of).to_numpy(),
        "camera": table["cam"].to_numpy(),
    })
    return Layout(records, [*ID_FILES.values(), *([PERM_FILE] if has_perm else [])], warnings)


def write_synthetic(root: Path, s: synth.SynthSettings) -> list[synth.Shoot]:
    """cam1..cam6/PPPP/IIII.jpg, exp/*_id.txt and exp/rand_perm_cam.mat as the official file:
    per camera one entry per person up to the camera's largest person id, uint8 10 x n, 10 x 0
    for a person the camera never saw (about SYNTH_INDOOR_ABSENT of the persons in the
    indoor visible cameras)."""
    if s.images_per_cam > 255:
        raise DatasetError(f"synthetic SYSU-MM01: images_per_cam={s.images_per_cam} does not fit the official "
                           "uint8 permutation matrices (at most 255)")
    pids = range(1, s.n_ids + 1)
    for name, ids in synth.split_ids(s, "sysu", 0).items():
        synth.write_text(root / ID_FILES[name], ",".join(str(i) for i in ids) + "\n")
    indoor = {pid for pid in pids if synth.stream(s, synth.STREAM_ABSENT, pid).random() >= SYNTH_INDOOR_ABSENT}
    seen = {cam: [pid for pid in pids if cam not in INDOOR_GALLERY or pid in indoor] for cam in CAMERAS}
    perms = {}
    numbers = np.arange(1, s.images_per_cam + 1)
    for cam in CAMERAS:
        rng = synth.stream(s, synth.STREAM_PERM, cam)
        perms[cam] = [np.stack([rng.permutation(numbers) for _ in range(PERM_TRIALS)]) if pid in seen[cam]
                      else np.zeros((PERM_TRIALS, 0)) for pid in range(1, max(seen[cam], default=0) + 1)]
    write_rand_perm_cam(root / PERM_FILE, perms, n_trials=PERM_TRIALS)
    return [synth.Shoot(cam, cam in INFRARED_CAMERAS, [(pid, k, image_path(cam, pid, k + 1)) for pid in seen[cam]
                                                       for k in range(s.images_per_cam)], "jpg") for cam in CAMERAS]


def _protocol(mode: str, shots: str) -> ProtocolDef:
    n = 1 if shots == "single" else 10
    return ProtocolDef(
        name=f"sysu/{mode}/{shots}", direction="i2v", query=INFRARED,
        gallery=INDOOR_GALLERY if mode == "indoor" else VISIBLE, num_shots=n, num_trials=PERM_TRIALS,
        perm_file=PERM_FILE,
        follows=f"{IDKL_CODE} IDKL/utils/eval_sysu.py (mode={mode}, num_shots={n}, exp/rand_perm_cam.mat)")


SPEC = register_dataset(DatasetSpec(
    name="sysu", label="SYSU-MM01", reader=read, cameras=CAMERA_TABLE, normalize=True,
    protocols=tuple(_protocol(mode, shots) for mode in ("all", "indoor") for shots in ("single", "multi")),
    default_protocols=("sysu/all/single", "sysu/all/multi", "sysu/indoor/single", "sysu/indoor/multi"),
    files=(*ID_FILES.values(), PERM_FILE), synth_writer=write_synthetic,
    synth=SynthDefaults(test_fraction=0.3, ir_model="nir", val_ids=True)))  # real: 96 of 491 persons test

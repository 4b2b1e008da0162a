"""LLCM (low-light cross-modality).

Layout as shipped: ``vis/<person>/<file>.jpg`` and ``nir/<person>/<file>.jpg``, file names
``PPPP_cCC_sSSSSSS_fN_(vis|nir).jpg`` (person, real camera ``CC``, ...); index files
``idx/train_vis.txt``, ``idx/train_nir.txt``, ``idx/test_vis.txt``, ``idx/test_nir.txt`` with
lines ``relative/path label`` (``nir/0351/0351_c06_s200656_f4830_nir.jpg 0``), paths relative
to the root; ``idx/test_id.txt``, one line of comma-separated test person ids; and copies of
the test images by camera, ``test_vis/cam1..9/PPPP/<file>`` and ``test_nir/camC/PPPP/<file>``
(no infrared camera 3), which DEEN's test loader reads.

As the public IDKL code (data/dataset.py, LLCMData): the records come from the index files,
the person is the image's folder and the ``cam`` column codes the modality, visible = 2 and
near-infrared = 3. The real camera of the file name is the ``camera`` column (DEEN's
protocol needs it); its person must equal the folder. When ``idx/test_id.txt`` and the
``test_vis/``/``test_nir/`` copies are present they must agree with the test index files
(same persons; the same files under ``camC/PPPP/``); when absent, a warning says that
DEEN-style loaders need them (our protocols do not).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from vireid.datasets import synth
from vireid.datasets.errors import DatasetError
from vireid.datasets.layout import IndexEntry, Layout, indexed_records, require_dir
from vireid.datasets.registry import register_dataset
from vireid.datasets.schema import INFRARED, VISIBLE
from vireid.datasets.spec import DEEN_CODE, Camera, DatasetSpec, ProtocolDef, SynthDefaults, cross_modal_protocols

SPLITS = (1,)
VISIBLE_CAM, NIR_CAM = 2, 3
CAMERAS = tuple(range(1, 10))
NIR_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)  # the real set has no near-infrared camera 3
INDEX_FILES = [
    ("idx/train_vis.txt", "vis", VISIBLE, VISIBLE_CAM, "train"),
    ("idx/train_nir.txt", "nir", INFRARED, NIR_CAM, "train"),
    ("idx/test_vis.txt", "vis", VISIBLE, VISIBLE_CAM, "test"),
    ("idx/test_nir.txt", "nir", INFRARED, NIR_CAM, "test"),
]
TEST_ID_FILE = "idx/test_id.txt"
TEST_COPIES = {"vis": "test_vis", "nir": "test_nir"}
SYNTH_CAMS_PER_MODALITY = 3  # real cameras that see a synthetic person, per modality
_NAME = re.compile(r"^(\d+)_c(\d+)_s\d+_f\d+_(vis|nir)\.jpg$")

__all__ = ["read", "file_camera", "write_synthetic", "SPEC", "SPLITS", "INDEX_FILES", "VISIBLE_CAM", "NIR_CAM",
           "CAMERAS", "NIR_CAMERAS", "TEST_ID_FILE", "TEST_COPIES"]


def file_camera(entry: IndexEntry, pid: int, where: str) -> int:
    """The real camera in an LLCM file name; its person and modality must fit the folders."""
    folder, _, name = entry.path.split("/")
    m = _NAME.match(name)
    if not m:
        raise DatasetError(f"{where}:{entry.line}: image name {name!r} is not of the form "
                           f"PPPP_cCC_sSSSSSS_fN_{folder}.jpg")
    if int(m.group(1)) != pid or m.group(3) != folder:
        raise DatasetError(f"{where}:{entry.line}: image name {name!r} does not fit its folder {folder}/{pid:04d}/")
    return int(m.group(2))


def _check_test_copies(root: Path, records: pd.DataFrame, warnings: list[str]) -> None:
    from vireid.datasets.sysu import read_id_list

    test = records[records["split"] == "test"]
    if (root / TEST_ID_FILE).is_file():
        listed = set(read_id_list(root / TEST_ID_FILE))
        used = set(test["pid"].tolist())
        if listed != used:
            diff = sorted(listed ^ used)
            raise DatasetError(f"{root / TEST_ID_FILE}: lists persons {sorted(listed - used)[:10]} without a test "
                               f"image and misses test persons {sorted(used - listed)[:10]} "
                               f"({len(diff)} differences); expected the persons of idx/test_*.txt")
    else:
        warnings.append(f"{TEST_ID_FILE} not found: DEEN-style test loaders need it (our protocols do not)")
    for folder, copies in TEST_COPIES.items():
        base = root / copies
        if not base.is_dir():
            warnings.append(f"{copies}/ not found: DEEN-style test loaders read the test images by camera from it "
                            "(our protocols do not)")
            continue
        rows = test[test["path"].str.startswith(folder + "/")]
        expected = {f"cam{c}/{p.split('/')[1]}/{p.split('/')[2]}" for p, c in zip(rows["path"], rows["camera"])}
        found = {f.relative_to(base).as_posix() for f in base.glob("cam*/*/*") if f.is_file()
                 and not f.name.startswith(".")}
        if found != expected:
            extra, missing = sorted(found - expected), sorted(expected - found)
            detail = (f"{base / extra[0]} is not a test image of that camera in idx/test_{folder}.txt" if extra
                      else f"{base / missing[0]} is missing")
            raise DatasetError(f"{base}: the test copies do not match idx/test_{folder}.txt ({detail}; "
                               f"{len(extra)} extra, {len(missing)} missing); expected {copies}/camC/PPPP/<file> "
                               "for every test image")


def read(root, split: int = 1) -> Layout:
    root = Path(root)
    require_dir(root, "the LLCM root (vis/, nir/, idx/)")
    for folder in ("vis", "nir", "idx"):
        require_dir(root / folder, f"LLCM's {folder}/ folder")
    records = indexed_records(root, INDEX_FILES, real_camera=file_camera)
    warnings: list[str] = []
    _check_test_copies(root, records, warnings)
    files = [f[0] for f in INDEX_FILES] + ([TEST_ID_FILE] if (root / TEST_ID_FILE).is_file() else [])
    return Layout(records, files, warnings)


def write_synthetic(root: Path, s: synth.SynthSettings) -> list[synth.Shoot]:
    """vis/ and nir/PPPP/PPPP_cCC_sSSSSSS_fN_(vis|nir).jpg, idx/{train,test}_{vis,nir}.txt,
    idx/test_id.txt and the test copies by camera, test_vis/camC/PPPP/ and test_nir/camC/PPPP/
    (no infrared camera 3, as the real set)."""
    split = synth.split_ids(s, "llcm", 0)
    test = set(split["test"])
    jobs = []
    entries: dict[str, list[tuple[str, int]]] = {"vis": [], "nir": []}
    for code, (folder, cams) in enumerate((("vis", CAMERAS), ("nir", NIR_CAMERAS))):
        seen_by = {pid: set(synth.stream(s, synth.STREAM_LLCM_CAMS, code, pid)
                            .choice(cams, SYNTH_CAMS_PER_MODALITY, replace=False).tolist())
                   for pid in range(1, s.n_ids + 1)}
        for cam in cams:
            shots = []
            for pid in range(1, s.n_ids + 1):
                if cam in seen_by[pid]:
                    shots += [(pid, k, f"{folder}/{pid:04d}/{pid:04d}_c{cam:02d}_s{100 * pid + cam:06d}_f{10 * (k + 1)}"
                                       f"_{folder}.jpg") for k in range(s.images_per_cam)]
            copies = {rel: f"{TEST_COPIES[folder]}/cam{cam}/{pid:04d}/{rel.rsplit('/', 1)[1]}"
                      for pid, _, rel in shots if pid in test}
            jobs.append(synth.Shoot(10 * code + cam, folder == "nir", shots, "jpg", copies))
            entries[folder] += [(rel, pid) for pid, _, rel in shots]
    for rel, folder, _, _, part in INDEX_FILES:
        synth.write_text(root / rel, synth.index_lines(sorted(entries[folder]), split[part]))
    synth.write_text(root / TEST_ID_FILE, ",".join(str(i) for i in split["test"]) + "\n")
    return jobs


def _deen_protocol(direction: str) -> ProtocolDef:
    # test_mode [1, 2] ("IR to VIS"): all infrared queries, drawn visible gallery; [2, 1] ("VIS to
    # IR"): the transposed matrix, each drawn infrared image ranks all visible images.
    mode = "[1, 2]" if direction == "i2v" else "[2, 1]"
    return ProtocolDef(name=f"llcm-deen/{direction}", direction=direction, query=INFRARED, gallery=VISIBLE,
                       normalize=True, num_trials=10, deen_draw="gallery" if direction == "i2v" else "query",
                       follows=f"{DEEN_CODE} DEEN/test.py test_mode = {mode}, data_manager.process_gallery_llcm, "
                               "eval_metrics.eval_llcm")


SPEC = register_dataset(DatasetSpec(
    name="llcm", label="LLCM", reader=read, splits=SPLITS,
    cameras=(Camera(VISIBLE_CAM, VISIBLE), Camera(NIR_CAM, INFRARED)),
    protocols=(*cross_modal_protocols("llcm"), _deen_protocol("i2v"), _deen_protocol("v2i")),
    default_protocols=("llcm/v2i", "llcm/i2v"),
    files=(*(f[0] for f in INDEX_FILES), TEST_ID_FILE), synth_writer=write_synthetic,
    synth=SynthDefaults(test_fraction=0.33, ir_model="nir")))  # real: 351 of 1064 persons test

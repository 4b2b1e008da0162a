"""The real on-disk formats, as the reference loaders parse them (IDKL's data code and
get_gallery_names, DEEN's LLCM test loader): checked on the hand-made trees of
tests/fixtures/formats (written from literal lists) and on synthetic trees of all three
layouts; the adapters' records of the hand-made trees equal the records the lists define."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from datasets_support import tiny_synth
from vireid.datasets.registry import get_adapter
from vireid.datasets.schema import RECORD_COLUMNS, validate_records

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
sys.path.insert(0, str(FIXTURES))
import make_trees as lists  # noqa: E402  (the literal lists the fixture trees were written from)

SOURCES = ["fixture", "synthetic"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    made = {}

    def get(layout: str, source: str) -> Path:
        if source == "fixture":
            return FIXTURES / layout
        if layout not in made:
            made[layout] = tiny_synth(tmp_path_factory.mktemp(layout), layout, n_ids=10)
        return made[layout]
    return get


def _persons(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


@pytest.mark.parametrize("source", SOURCES)
def test_sysu_permutation_file_as_the_official_one(trees, source):
    import scipy.io

    root = trees("sysu", source)
    perm = scipy.io.loadmat(root / "exp/rand_perm_cam.mat")["rand_perm_cam"]
    assert perm.shape == (6, 1) and perm.dtype == object
    absent = 0
    for cam in range(1, 7):
        cell = perm[cam - 1][0]
        on_disk = _persons(root / f"cam{cam}")
        assert cell.shape == (max(on_disk), 1)  # one entry per person up to the camera's largest id
        for pid in range(1, len(cell) + 1):
            matrix = cell[pid - 1][0]
            images = sorted(int(f.stem) for f in (root / f"cam{cam}/{pid:04d}").glob("*.jpg")) \
                if pid in on_disk else []
            assert matrix.dtype == np.uint8 and matrix.shape == (10, len(images)), (cam, pid)
            for row in matrix:
                assert sorted(row.tolist()) == images  # row t: trial t's order of the image numbers
            absent += not images
    assert absent > 0  # some persons are absent from some cameras, as in the real file
    # IDKL's get_gallery_names, as written: every test person of every gallery camera in its list
    test = [int(t) for t in (root / "exp/test_id.txt").read_text().strip().split(",")]
    for cam in (1, 2, 4, 5):
        cam_perm = perm[cam - 1][0].squeeze()
        for i in (i for i in test if i <= len(cam_perm)):
            for ins in cam_perm[i - 1][3][:1].tolist():
                assert (root / "cam{}/{:0>4d}/{:0>4d}.jpg".format(cam, i, ins)).is_file()


@pytest.mark.parametrize("source", SOURCES)
def test_sysu_images_and_id_lists(trees, source):
    root = trees("sysu", source)
    for name in ("train", "val", "test"):
        text = (root / f"exp/{name}_id.txt").read_text()
        assert text.count("\n") == 1 and re.fullmatch(r"\d+(,\d+)*\n", text)
    for path in root.glob("cam*/*/*.jpg"):
        assert re.fullmatch(r"cam[1-6]/\d{4}/\d{4}\.jpg", path.relative_to(root).as_posix())
        assert Image.open(path).mode == "RGB"


@pytest.mark.parametrize("source", SOURCES)
def test_regdb_bmps_and_index_files(trees, source):
    root = trees("regdb", source)
    for n in range(1, 11):
        for part in ("train", "test"):
            for folder, mod in (("Visible", "visible"), ("Thermal", "thermal")):
                for line in (root / f"idx/{part}_{mod}_{n}.txt").read_text().splitlines():
                    path, label = line.split(" ")
                    assert path.startswith(folder + "/") and path.endswith(".bmp") and label.isdigit()
    for folder in ("Visible", "Thermal"):
        for path in (root / folder).rglob("*.bmp"):
            image = Image.open(path)
            assert image.format == "BMP" and image.mode == "RGB", path  # thermal BMPs are 3-channel too
            if folder == "Thermal":
                pixels = np.asarray(image)
                assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


_LLCM_LINE = re.compile(r"(vis|nir)/(\d{4})/\2_c(\d{2})_s\d{6}_f\d+_\1\.jpg \d+")


@pytest.mark.parametrize("source", SOURCES)
def test_llcm_index_files_test_ids_and_test_copies(trees, source):
    root = trees("llcm", source)
    test_images = {"vis": set(), "nir": set()}
    for part in ("train", "test"):
        for kind in ("vis", "nir"):
            for line in (root / f"idx/{part}_{kind}.txt").read_text().splitlines():
                m = _LLCM_LINE.fullmatch(line)
                assert m and m.group(1) == kind, line
                assert kind == "vis" or int(m.group(3)) != 3  # no infrared camera 3
                if part == "test":
                    test_images[kind].add((int(m.group(3)), int(m.group(2)), line.split(" ")[0].rsplit("/", 1)[1]))
    text = (root / "idx/test_id.txt").read_text()
    assert re.fullmatch(r"\d+(,\d+)*\n", text)
    ids = sorted(int(y) for y in text.splitlines()[0].split(","))
    assert ids == sorted({pid for kind in test_images.values() for _, pid, _ in kind})
    # DEEN's process_query_llcm / process_gallery_llcm, as written
    for kind, mode_cams in (("vis", [f"test_vis/cam{c}" for c in range(1, 10)]),
                            ("nir", [f"test_nir/cam{c}" for c in (1, 2, 4, 5, 6, 7, 8, 9)])):
        found = set()
        for pid in ["%04d" % x for x in ids]:
            for cam in mode_cams:
                img_dir = os.path.join(str(root), cam, pid)
                if os.path.isdir(img_dir):
                    for name in sorted(os.listdir(img_dir)):
                        path = img_dir + "/" + name
                        rel = path[len(str(root)):]
                        found.add((int(rel.split("cam")[1][0]), int(rel.split("cam")[1][2:6]), name))
        assert found == test_images[kind]
        assert not (root / f"test_{kind}").joinpath("cam3").exists() or kind == "vis"


def _expected_records(layout: str) -> pd.DataFrame:
    """The records the literal lists define, by the documented rules (IDKL's camera codes)."""
    rows = []
    if layout == "sysu":
        split = {p: ("test" if p in lists.SYSU_IDS["test"] else "train")
                 for ids in lists.SYSU_IDS.values() for p in ids}
        for pid, cams in lists.SYSU_IMAGES.items():
            for cam, n in cams.items():
                rows += [(f"cam{cam}/{pid:04d}/{k:04d}.jpg", pid, cam, "infrared" if cam in (3, 6) else "visible",
                          split[pid], cam) for k in range(1, n + 1)]
    elif layout == "regdb":
        test = lists.REGDB_TEST[1]
        for folder, letter, code in (("Visible", "v", 2), ("Thermal", "t", 3)):
            rows += [(f"{folder}/{p}/{letter}_{p}_{k}.bmp", p, code, "visible" if code == 2 else "infrared",
                      "test" if p in test else "train", code) for p in lists.REGDB_PERSONS
                     for k in range(lists.REGDB_IMAGES)]
    else:
        for kind, table, code in (("vis", lists.LLCM_VIS, 2), ("nir", lists.LLCM_NIR, 3)):
            rows += [(f"{kind}/{p:04d}/{lists.llcm_name(kind, p, cam, k)}", p, code,
                      "visible" if code == 2 else "infrared", "test" if p in lists.LLCM_TEST else "train", cam)
                     for p, cam, n in table for k in range(n)]
    return validate_records(pd.DataFrame(rows, columns=list(RECORD_COLUMNS)))


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm"])
def test_records_of_the_hand_made_trees(layout):
    layout_read = get_adapter(layout).read(FIXTURES / layout)
    got = validate_records(layout_read.records)
    pd.testing.assert_frame_equal(got, _expected_records(layout))
    assert layout_read.warnings == []


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm"])
def test_synthetic_trees_read_and_keep_the_real_camera(trees, layout):
    rec = validate_records(get_adapter(layout).read(trees(layout, "synthetic")).records)
    if layout == "llcm":
        real = rec["path"].str.extract(r"_c(\d{2})_")[0].astype(int)
        assert (rec["camera"] == real).all() and rec["camera"].nunique() > 2
        assert set(rec["cam"]) == {2, 3}
    else:
        assert (rec["camera"] == rec["cam"]).all()


def test_sysu_trains_without_the_permutation_file(tmp_path):
    import shutil

    from vireid.datasets.errors import DatasetError
    from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays

    root = tmp_path / "sysu"
    shutil.copytree(FIXTURES / "sysu", root)
    (root / "exp/rand_perm_cam.mat").unlink()
    layout = get_adapter("sysu").read(root)
    pd.testing.assert_frame_equal(validate_records(layout.records), _expected_records("sysu"))
    assert len(layout.warnings) == 1 and "wuancong/SYSU-MM01" in layout.warnings[0]
    assert "exp/rand_perm_cam.mat" not in layout.index_files
    rec = layout.records
    arrays = {f"{t}_{k}": v
              for t, sel in (("query", rec["modality"] == "infrared"), ("gallery", rec["modality"] == "visible"))
              for k, v in (("feats", np.ones((int(sel.sum()), 2), np.float32)), ("ids", rec["pid"][sel].to_numpy()),
                           ("cams", rec["cam"][sel].to_numpy()), ("paths", rec["path"][sel].to_numpy(str)))}
    with pytest.raises(DatasetError, match="evaluation/data_split/rand_perm_cam.mat"):
        evaluate_protocol_arrays(arrays, "sysu/all/single", data_root=root)

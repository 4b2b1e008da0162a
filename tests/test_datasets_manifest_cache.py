"""Manifest round trips and fingerprints; the uint8 cache; prepare's reuse; open_prepared."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from datasets_support import TINY, make_regdb

from vireid.datasets.cache import cache_path
from vireid.datasets.errors import DatasetError
from vireid.datasets.images import load_resized
from vireid.datasets.manifest import build_manifest, read_manifest, sidecar_path, write_manifest
from vireid.datasets.prepare import MANIFEST_NAME, open_prepared, prepare

SYNTH = dict(TINY)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_manifest_round_trip(tmp_path, suffix):
    root = make_regdb(tmp_path / "RegDB")
    manifest = build_manifest("regdb", root, split=2, workers=2)
    records_file, side = write_manifest(manifest, tmp_path / f"out/manifest{suffix}")
    assert side == tmp_path / "out/manifest.json"
    meta = json.loads(side.read_text())
    assert meta["fingerprint"] == manifest.fingerprint and meta["dataset"] == "regdb" and meta["split"] == 2
    assert meta["counts"]["train"]["visible"] == {"ids": 3, "images": 6}
    back = read_manifest(records_file)
    pd.testing.assert_frame_equal(back.records, manifest.records)
    assert (back.fingerprint, back.counts, back.root) == (manifest.fingerprint, manifest.counts, manifest.root)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_fingerprint_follows_content_not_location(tmp_path):
    root = make_regdb(tmp_path / "a")
    first = build_manifest("regdb", root).fingerprint
    moved = tmp_path / "b"
    shutil.copytree(root, moved)
    assert build_manifest("regdb", moved).fingerprint == first
    image = moved / "Visible/1/v_1_0.bmp"
    data = bytearray(image.read_bytes())
    data[-1] ^= 0xFF  # one pixel byte
    image.write_bytes(bytes(data))
    assert build_manifest("regdb", moved).fingerprint != first
    assert build_manifest("regdb", root, split=3).fingerprint != first


def test_read_manifest_errors(tmp_path):
    root = make_regdb(tmp_path / "RegDB")
    path = tmp_path / "m.csv"
    with pytest.raises(DatasetError, match="m.csv: manifest records not found"):
        read_manifest(path)
    write_manifest(build_manifest("regdb", root), path)
    with pytest.raises(DatasetError, match=r"\.parquet or \.csv"):
        read_manifest(tmp_path / "m.txt")
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:-1]) + "\n")  # one record lost
    with pytest.raises(DatasetError, match="do not match m.json"):
        read_manifest(path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(DatasetError, match="m.json: not valid JSON"):
        read_manifest(path)


def test_prepare_builds_then_reuses_and_cache_matches_fresh_decoding(tmp_path):
    root, prepared = tmp_path / "data", tmp_path / "prepared"
    first = prepare("sysu", root, prepared, size=(24, 12), synth=SYNTH, workers=2, progress=False)
    assert first["generated"]["images"] == len(list(root.rglob("*.jpg"))) > 8 * 4 * 2
    assert not first["manifest_reused"] and not first["cache_reused"]
    manifest, cache = open_prepared(prepared, (24, 12))
    assert cache.images.shape == (len(manifest.records), 24, 12, 3) and cache.images.dtype == np.uint8
    assert not cache.images.flags.writeable
    for i in (0, 17, len(manifest.records) - 1):
        fresh = load_resized(root / manifest.records["path"][i], (24, 12))
        np.testing.assert_array_equal(cache.images[i], fresh)
    assert cache.path == cache_path(prepared, manifest.fingerprint, (24, 12))
    stamps = {p: p.stat().st_mtime_ns for p in (prepared / MANIFEST_NAME, cache.path, root / "synth.json")}

    second = prepare("sysu", root, prepared, size=(24, 12), synth=SYNTH, workers=2, progress=False)
    assert second["generated"] is None and second["manifest_reused"] and second["cache_reused"]
    assert second["fingerprint"] == first["fingerprint"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten

    other = prepare("sysu", root, prepared, size=(16, 8), synth=SYNTH, workers=1, progress=False)
    assert other["manifest_reused"] and not other["cache_reused"]
    assert cache.path.exists()  # other sizes of the same data are kept


def test_prepare_notices_changed_data_and_settings(tmp_path):
    root, prepared = tmp_path / "data", tmp_path / "prepared"
    first = prepare("sysu", root, prepared, size=(16, 8), synth=SYNTH, progress=False)
    changed = prepare("sysu", root, prepared, size=(16, 8), synth={**SYNTH, "seed": 5}, progress=False)
    assert changed["generated"] and not changed["manifest_reused"]
    assert changed["fingerprint"] != first["fingerprint"]
    name = f"{changed['fingerprint'][:16]}_16x8.npy"
    assert sorted(p.name for p in (prepared / "cache").iterdir()) == [name, name + ".sha256.json"]


def test_open_prepared_errors(tmp_path):
    with pytest.raises(DatasetError, match="vireid data prepare"):
        open_prepared(tmp_path / "nothing", (16, 8))
    prepare("sysu", tmp_path / "data", tmp_path / "p", size=(16, 8), synth=SYNTH, progress=False)
    with pytest.raises(DatasetError, match="no image cache .* 32x16"):
        open_prepared(tmp_path / "p", (32, 16))


def test_prepare_works_on_hand_built_real_layouts(tmp_path):
    summary = prepare("regdb", make_regdb(tmp_path / "RegDB"), tmp_path / "p", size=(16, 8), split=4,
                      progress=False)
    assert summary["images"] == 24 and summary["split"] == 4
    manifest, cache = open_prepared(tmp_path / "p", (16, 8))
    assert cache.images.shape == (24, 16, 8, 3)
    grey = cache.images[manifest.records["modality"].to_numpy() == "infrared"]
    assert (grey[..., 0] == grey[..., 1]).all()  # a grey-level thermal BMP becomes 3 equal channels

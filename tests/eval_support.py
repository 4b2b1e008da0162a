"""Tiny evaluation fixtures built here (not by the dataset layer): a SYSU-MM01-layout tree
with its exp/rand_perm_cam.mat, and RegDB/LLCM-style feature tables. Features are seeded
random vectors around an identity centre, so that the metrics are neither 0 nor 100.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vireid.datasets.sysu_perm import write_rand_perm_cam

# Images per (person, camera) of the tiny SYSU tree; 0 = the person has no image there.
# Person 5 is seen by visible camera 2 only: indoor search drops it for camera-3 queries.
SYSU_COUNTS = {
    1: {1: 12, 2: 3, 3: 2, 4: 11, 5: 2, 6: 3},
    2: {1: 2, 2: 12, 3: 3, 4: 0, 5: 10, 6: 2},
    3: {1: 11, 2: 0, 3: 2, 4: 3, 5: 12, 6: 0},
    4: {1: 1, 2: 4, 3: 0, 4: 2, 5: 0, 6: 3},
    5: {1: 0, 2: 11, 3: 3, 4: 0, 5: 0, 6: 2},
    6: {1: 3, 2: 2, 3: 2, 4: 12, 5: 1, 6: 0},
}
N_TRIALS = 10


def sysu_tree(root: Path, seed: int = 0, dim: int = 8) -> tuple[dict[str, np.ndarray], dict]:
    """Write <root>/exp/rand_perm_cam.mat and empty image files camC/PPPP/IIII.jpg.

    Returns the features arrays (query table = infrared cameras 3, 6; gallery table =
    visible cameras) and the permutations ``{cam: [array (10, n) per person]}``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(SYSU_COUNTS) + 1, dim))
    perms = {cam: [] for cam in range(1, 7)}
    tables = {"query": [], "gallery": []}
    for pid, counts in SYSU_COUNTS.items():
        for cam, count in counts.items():
            perms[cam].append(np.stack([rng.permutation(count) + 1 for _ in range(N_TRIALS)]) if count
                              else np.zeros((0, 0)))
            for number in range(1, count + 1):
                path = f"cam{cam}/{pid:04d}/{number:04d}.jpg"
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).touch()
                feat = centres[pid] + 1.2 * rng.standard_normal(dim)
                tables["query" if cam in (3, 6) else "gallery"].append((feat, pid, cam, path))
    write_rand_perm_cam(root / "exp" / "rand_perm_cam.mat", perms)
    arrays = {}
    for name, rows in tables.items():
        arrays[f"{name}_feats"] = np.array([r[0] for r in rows], dtype=np.float32)
        arrays[f"{name}_ids"] = np.array([r[1] for r in rows], dtype=np.int64)
        arrays[f"{name}_cams"] = np.array([r[2] for r in rows], dtype=np.int64)
        arrays[f"{name}_paths"] = np.array([r[3] for r in rows])
    return arrays, perms


def sysu_trial_gallery(arrays: dict, perms: dict, cams: tuple[int, ...], trial: int, shots: int) -> np.ndarray:
    """Indices into the gallery table of one trial, computed directly from the permutations
    (the official rule: every gallery identity, every gallery camera, the first `shots`
    numbers of row `trial`)."""
    paths = list(arrays["gallery_paths"])
    in_cams = np.isin(arrays["gallery_cams"], cams)
    wanted = set()
    for cam in cams:
        for pid in sorted(set(arrays["gallery_ids"][in_cams].tolist())):
            matrix = perms[cam][pid - 1]
            for number in (matrix[trial, :shots] if matrix.size else []):
                wanted.add(f"cam{cam}/{pid:04d}/{int(number):04d}.jpg")
    return np.array(sorted(paths.index(p) for p in wanted))


def cross_modal_arrays(n_ids: int = 7, per_id: int = 3, seed: int = 0, dim: int = 6,
                       absent: int = 0) -> dict[str, np.ndarray]:
    """RegDB/LLCM-style tables: infrared (camera 3) as query, visible (camera 2) as gallery;
    ``absent`` extra infrared identities have no visible image."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids + absent, dim))
    arrays = {}
    for name, cam, ids in (("query", 3, range(n_ids + absent)), ("gallery", 2, range(n_ids))):
        pids = np.repeat(np.arange(len(ids)), per_id) + 1
        arrays[f"{name}_feats"] = (centres[pids - 1] + rng.standard_normal((len(pids), dim))).astype(np.float32)
        arrays[f"{name}_ids"] = pids
        arrays[f"{name}_cams"] = np.full(len(pids), cam)
        arrays[f"{name}_paths"] = np.array([f"{'Thermal' if cam == 3 else 'Visible'}/{p}/{i}.bmp"
                                            for i, p in enumerate(pids)])
    return arrays


# Images per (person, real camera) of a tiny LLCM test set; person 4 has no visible image
# of camera 5 but an infrared one (its camera-5 queries keep only other cameras' matches).
LLCM_VIS = {1: {1: 3, 2: 1, 5: 2}, 2: {2: 2, 4: 3}, 3: {1: 1, 6: 2, 9: 3}, 4: {1: 2, 7: 1}, 5: {3: 2, 8: 2}}
LLCM_NIR = {1: {1: 2, 5: 1}, 2: {2: 1, 4: 2, 9: 1}, 3: {6: 3}, 4: {5: 2, 7: 1}, 5: {8: 1, 2: 2}}


def llcm_test_tree(root: Path, seed: int = 0, dim: int = 6) -> dict[str, np.ndarray]:
    """Write DEEN's LLCM test copies ``test_vis/camC/PPPP/<name>``, ``test_nir/camC/PPPP/<name>``
    (empty files) and return features arrays whose paths are the idx-file form
    ``vis/PPPP/PPPP_cCC_sSSSSSS_fN_vis.jpg`` (query table: infrared, camera code 3; gallery:
    visible, code 2)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim))
    arrays = {}
    for table, kind, code, counts in (("query", "nir", 3, LLCM_NIR), ("gallery", "vis", 2, LLCM_VIS)):
        rows = []
        for pid, per_cam in counts.items():
            for cam, count in per_cam.items():
                for k in range(count):
                    name = f"{pid:04d}_c{cam:02d}_s{1000 * pid + 10 * cam + k:06d}_f{7 * k + 1}_{kind}.jpg"
                    copy = root / f"test_{kind}" / f"cam{cam}" / f"{pid:04d}" / name
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    copy.touch()
                    rows.append((centres[pid] + 1.1 * rng.standard_normal(dim), pid, code, f"{kind}/{pid:04d}/{name}"))
        order = rng.permutation(len(rows))  # the tables need not be sorted
        rows = [rows[i] for i in order]
        arrays[f"{table}_feats"] = np.array([r[0] for r in rows], dtype=np.float32)
        arrays[f"{table}_ids"] = np.array([r[1] for r in rows], dtype=np.int64)
        arrays[f"{table}_cams"] = np.array([r[2] for r in rows], dtype=np.int64)
        arrays[f"{table}_paths"] = np.array([r[3] for r in rows])
    return arrays

"""Named evaluation protocols: candidate table (ids, cams, paths) -> per-trial index sets.

A protocol picks its queries and its gallery from one *pool* of test images (the query and
gallery tables of a features file together) by camera, then draws its trials:

====================== ==================== ======================= ======================= ====== ===========
name                   query                gallery                 drawn per identity/cam  trials CMC
====================== ==================== ======================= ======================= ====== ===========
sysu/all/single        infrared cams 3, 6   visible cams 1, 2, 4, 5 gallery: 1 image        10     distinct
sysu/all/multi         infrared cams 3, 6   visible cams 1, 2, 4, 5 gallery: 10 images      10     distinct
sysu/indoor/single     infrared cams 3, 6   visible cams 1, 2       gallery: 1 image        10     distinct
sysu/indoor/multi      infrared cams 3, 6   visible cams 1, 2       gallery: 10 images      10     distinct
regdb/v2i, llcm/v2i    visible (cam 2)      infrared (cam 3)        all                     1      distinct
regdb/i2v, llcm/i2v    infrared (cam 3)     visible (cam 2)         all                     1      distinct
regdb-agw/v2i          visible (cam 2)      infrared (cam 3)        all                     1      first match
regdb-agw/i2v          infrared (cam 3)     visible (cam 2)         all                     1      first match
llcm-deen/i2v          infrared (cam 3)     visible (cam 2)         gallery: 1 image        10     distinct
llcm-deen/v2i          infrared (cam 3)     visible (cam 2)         query: 1 image          10     distinct
====================== ==================== ======================= ======================= ====== ===========

SYSU-MM01 trials follow the official ``exp/rand_perm_cam.mat``: for each gallery camera and
each identity of the gallery, the first ``num_shots`` image numbers of row ``trial``.
The DEEN LLCM trials (``test_mode`` of DEEN's test.py) draw one image per (identity, *real*
camera, read from the LLCM file name ``PPPP_cCC_...``) exactly as DEEN's
``process_gallery_llcm``: ``random.seed(trial)``, then ``random.choice`` over each
folder's sorted file names, identities ascending, cameras ascending. DEEN's "VIS to IR"
mode (``test_mode = [2, 1]``) computes the transposed matrix: each drawn infrared image
ranks every visible image; ``llcm-deen/v2i`` reproduces that and says so. Both DEEN
protocols drop the gallery entries of the query's identity from the query's real camera
(``eval_llcm``) instead of a location rule.

Every protocol also declares its distance (SYSU, AGW, DEEN: squared Euclidean on
L2-normalised features -- AGW's and DEEN's negative inner product of their L2-normalised
features ranks the same; IDKL's RegDB and LLCM: squared Euclidean on the raw features), its
CMC (``distinct``: de-duplicated identities, IDKL/SYSU style; ``first_match``: the rank of
the first true match, AGW's ``eval_regdb``) and the code it follows (``vireid protocols``).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Protocol", "Trial", "get_protocol", "protocol_names", "protocol_registry", "from_spec",
           "distance_name",
           "parse_sysu_path", "parse_llcm_path", "deen_picks", "ProtocolError"]


class ProtocolError(ValueError):
    """The features (or the permutation file) do not fit the protocol: a user error."""


@dataclass(frozen=True)
class Trial:
    trial: int
    query_index: np.ndarray  # int64 indices into the pool
    gallery_index: np.ndarray


_SYSU_NAME = re.compile(r"(?:^|/)cam([1-6])/(\d{4})/(\d{4})(?:\.[^/.\n]*)?$", re.MULTILINE)


def parse_sysu_path(path: str) -> tuple[int, int, int] | None:
    """``[...]/camC/PPPP/IIII[.jpg]`` -> (cam, pid, image number); None when it does not match."""
    m = _SYSU_NAME.search(str(path).replace("\\", "/"))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


_LLCM_NAME = re.compile(r"(?:^|/)(\d+)_c(\d+)_[^/\n]*$", re.MULTILINE)


def parse_llcm_path(path: str) -> tuple[int, int] | None:
    """``[...]/PPPP_cCC_sSSSSSS_fN_(vis|nir).jpg`` -> (pid, real camera); None when it does not match."""
    m = _LLCM_NAME.search(str(path).replace("\\", "/"))
    return (int(m.group(1)), int(m.group(2))) if m else None


def deen_picks(ids: np.ndarray, cams: np.ndarray, names: np.ndarray, trial: int) -> np.ndarray:
    """Positions of the images DEEN's ``process_gallery_llcm(trial=trial)`` picks: one per
    (identity, camera), ``random.seed(trial)`` then ``random.choice`` of each folder's sorted
    file names, identities ascending, then cameras ascending. One draw per folder (a loop
    over folders, not images)."""
    order = np.lexsort((names, cams, ids))
    key = ids[order] * 1000 + cams[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rng = random.Random(trial)
    picks = [rng.choice(range(n)) for n in sizes.tolist()]  # random.choice(seq) = seq[_randbelow(len(seq))]
    return order[starts + np.asarray(picks, dtype=np.int64)]


@dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str
    direction: str  # "i2v" (infrared queries) or "v2i"
    query_cams: tuple[int, ...]
    gallery_cams: tuple[int, ...]
    known_cams: tuple[int, ...]
    normalize: bool  # L2-normalise features before the squared Euclidean distance
    locations: Mapping[int, int] = field(default_factory=dict)
    num_shots: int | None = None  # SYSU only
    num_trials: int = 1
    needs_perm: bool = False
    perm_file: str | None = None  # dataset-relative permutation file the trials are drawn from
    cmc: str = "distinct"  # "distinct" (de-duplicated identities) or "first_match" (AGW's eval_regdb)
    deen_draw: str | None = None  # DEEN LLCM: "gallery" or "query", the side drawn per (identity, camera)
    follows: str = ""  # the public code this protocol reproduces

    @property
    def distance(self) -> str:
        return distance_name(self.normalize)

    @property
    def same_identity_camera(self) -> bool:
        """Drop the query identity's entries from its real camera (DEEN) instead of a location rule."""
        return self.deen_draw is not None

    def real_cameras(self, ids, paths) -> np.ndarray:
        """The real LLCM camera of every pool image, from its file name (checked against ``ids``)."""
        paths = np.asarray(paths).astype(str).tolist()
        found = _LLCM_NAME.findall("\n".join(paths).replace("\\", "/"))
        if len(found) != len(paths):
            bad = next(p for p in paths if parse_llcm_path(p) is None)
            raise ProtocolError(f"{self.name}: path {bad!r} is not an LLCM image name PPPP_cCC_..._(vis|nir).jpg "
                                "(the real camera is read from it)")
        pid, cam = np.array(found, dtype=np.int64).reshape(-1, 2).T
        wrong = np.flatnonzero(pid != np.asarray(ids))
        if wrong.size:
            i = wrong[0]
            raise ProtocolError(f"{self.name}: path {paths[i]!r} names person {pid[i]} but the table says person "
                                f"{np.asarray(ids)[i]}")
        return cam

    def check_trials(self, trials: Sequence[int] | None) -> list[int]:
        """The requested trials (default: all), validated."""
        if trials is None:
            return list(range(self.num_trials))
        out = [int(t) for t in trials]
        if not out:
            raise ProtocolError(f"{self.name}: the trial list is empty")
        if len(set(out)) != len(out):
            raise ProtocolError(f"{self.name}: repeated trials in {out}")
        bad = [t for t in out if t < 0 or t >= self.num_trials]
        if bad:
            raise ProtocolError(f"{self.name}: trials must be in 0..{self.num_trials - 1}, got {bad}")
        return out

    # ------------------------------------------------------------------ index sets
    def build_trials(self, ids, cams, paths=None, perm=None, trials: Sequence[int] | None = None) -> list[Trial]:
        ids = np.asarray(ids).astype(np.int64)
        cams = np.asarray(cams).astype(np.int64)
        if ids.shape != cams.shape or ids.ndim != 1:
            raise ProtocolError(f"{self.name}: ids and cams must be 1-D of the same length")
        unknown = sorted(set(np.unique(cams).tolist()) - set(self.known_cams))
        if unknown:
            raise ProtocolError(f"{self.name}: unexpected camera ids {unknown}; {self.dataset} cameras are "
                                f"{list(self.known_cams)}")
        trial_list = self.check_trials(trials)
        query = np.flatnonzero(np.isin(cams, self.query_cams))
        gallery = np.flatnonzero(np.isin(cams, self.gallery_cams))
        if query.size == 0:
            raise ProtocolError(f"{self.name}: no query image (cameras {list(self.query_cams)}) among the "
                                "features")
        if gallery.size == 0:
            raise ProtocolError(f"{self.name}: no gallery image (cameras {list(self.gallery_cams)}) among "
                                "the features")
        if self.deen_draw is not None:
            return self._deen_trials(ids, paths, trial_list, query, gallery)
        if not self.needs_perm:
            return [Trial(t, query, gallery) for t in trial_list]
        return self._sysu_trials(ids, cams, paths, perm, trial_list, query, gallery)

    def _deen_trials(self, ids, paths, trial_list, query, gallery) -> list[Trial]:
        """DEEN's trials: one image per (identity, real camera) of the drawn side, the other side whole."""
        if paths is None or len(paths) != len(ids):
            raise ProtocolError(f"{self.name}: one image path per image is needed (the real camera is in its name)")
        side = gallery if self.deen_draw == "gallery" else query
        real = self.real_cameras(ids[side], np.asarray(paths)[side])
        names = np.array([p.rsplit("/", 1)[-1] for p in np.asarray(paths)[side].astype(str).tolist()])
        out = []
        for t in trial_list:
            drawn = np.sort(side[deen_picks(ids[side], real, names, t)])
            out.append(Trial(t, query, drawn) if self.deen_draw == "gallery" else Trial(t, drawn, gallery))
        return out

    def _sysu_trials(self, ids, cams, paths, perm, trial_list, query, gallery) -> list[Trial]:
        """Trials drawn with the official permutations, matched to the gallery by image key."""
        from vireid.datasets.errors import DatasetError
        from vireid.datasets.sysu_perm import gallery_keys, image_keys

        if perm is None:
            raise ProtocolError(f"{self.name} draws its gallery with the official permutation file "
                                f"{self.perm_file}: pass it (--perm PATH or the dataset root)")
        if paths is None or len(paths) != len(ids):
            raise ProtocolError(f"{self.name}: one image path per image is needed to match the permutation file")
        g_paths = np.asarray(paths)[gallery].astype(str).tolist()
        found = _SYSU_NAME.findall("\n".join(g_paths).replace("\\", "/"))
        if len(found) != len(g_paths):  # name the first path that does not parse
            bad = next(p for p in g_paths if parse_sysu_path(p) is None)
            raise ProtocolError(f"{self.name}: gallery path {bad!r} is not of the form camC/PPPP/IIII.jpg")
        p_cam, p_pid, p_num = np.array(found, dtype=np.int64).reshape(-1, 3).T
        wrong = np.flatnonzero((p_cam != cams[gallery]) | (p_pid != ids[gallery]))
        if wrong.size:
            i = wrong[0]
            raise ProtocolError(f"{self.name}: path {g_paths[i]!r} says camera {p_cam[i]}, person {p_pid[i]} but "
                                f"the table says camera {cams[gallery][i]}, person {ids[gallery][i]}")
        keys = image_keys(p_cam, p_pid, p_num)
        order = np.argsort(keys)
        present = keys[order]
        twice = present[1:][present[1:] == present[:-1]]
        if twice.size:
            raise ProtocolError(f"{self.name}: gallery image {g_paths[int(np.flatnonzero(keys == twice[0])[0])]!r} "
                                "appears twice")
        try:  # every image the file knows in these cameras: row 0 of each permutation
            known = np.concatenate([gallery_keys(perm, [c], range(1, len(perm.get(c, [])) + 1))[:1].reshape(-1)
                                    for c in self.gallery_cams])
        except DatasetError as exc:
            raise ProtocolError(f"{self.name}: {exc}") from None
        unknown = np.flatnonzero(~np.isin(keys, known))
        if unknown.size:
            i = unknown[0]
            raise ProtocolError(f"{self.name}: gallery image {g_paths[i]!r} is unknown to the permutation file "
                                f"(it lists no image {p_num[i]} of person {p_pid[i]} in camera {p_cam[i]})")
        try:
            drawn = gallery_keys(perm, self.gallery_cams, np.unique(ids[gallery]), self.num_shots)
        except DatasetError as exc:
            raise ProtocolError(f"{self.name}: {exc}") from None
        late = [t for t in trial_list if t >= len(drawn)]
        if late:
            raise ProtocolError(f"{self.name}: the permutation file has {len(drawn)} trials; trial {late[0]} requested")
        wanted = drawn[trial_list]  # the keys are distinct: each drawn image is found by binary search
        at = np.minimum(np.searchsorted(present, wanted), len(present) - 1)
        hit = present[at] == wanted
        out = []
        for row, t in enumerate(trial_list):
            if not hit[row].all():
                missing = wanted[row][~hit[row]]
                cam, rest = divmod(int(missing[0]), 10 ** 8)
                raise ProtocolError(f"{self.name}: trial {t}: the permutation file names {missing.size} image(s) "
                                    f"absent from the gallery, e.g. cam{cam}/{rest // 10_000:04d}/{rest % 10_000:04d}")
            drawn_here = np.zeros(len(gallery), dtype=bool)
            drawn_here[order[at[row]]] = True
            out.append(Trial(t, query, gallery[drawn_here]))
        return out


def distance_name(normalize: bool) -> str:
    """The ``distance`` stamp of a result."""
    return "squared_euclidean_l2normalized" if normalize else "squared_euclidean"


def from_spec(spec, definition) -> Protocol:
    """The protocol a dataset spec declares (``vireid.datasets.spec.ProtocolDef``): its cameras,
    locations and distance rule come from the spec."""
    normalize = spec.normalize if definition.normalize is None else definition.normalize
    return Protocol(name=definition.name, dataset=spec.name, direction=definition.direction,
                    query_cams=spec.side_cameras(definition.query), gallery_cams=spec.side_cameras(definition.gallery),
                    known_cams=spec.camera_ids, normalize=normalize, locations=spec.locations,
                    num_shots=definition.num_shots, num_trials=definition.num_trials,
                    needs_perm=definition.perm_file is not None, perm_file=definition.perm_file, cmc=definition.cmc,
                    deen_draw=definition.deen_draw, follows=definition.follows)


_TABLE: dict = {"version": None, "registry": None}


def protocol_registry():
    """Every registered dataset's protocols, one :class:`~vireid.common.registry.Registry` (rebuilt
    when a dataset registers)."""
    from vireid.common.registry import Registry
    from vireid.datasets.registry import DATASETS

    specs = list(DATASETS)
    if _TABLE["version"] != DATASETS.version:
        registry = Registry("protocol", error=ProtocolError,
                            register_hint="a dataset spec declares its protocols (vireid.datasets.spec)")
        for spec in specs:
            for definition in spec.protocols:
                registry.register(definition.name, from_spec(spec, definition))
        _TABLE.update(version=DATASETS.version, registry=registry)
    return _TABLE["registry"]


def __getattr__(name: str):
    if name == "PROTOCOLS":  # name -> Protocol, as the registry holds them now
        registry = protocol_registry()
        return {n: registry.get(n) for n in registry.names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def protocol_names() -> list[str]:
    return protocol_registry().names()


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    return protocol_registry().get(name)

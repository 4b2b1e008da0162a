"""Reference points of a prepared dataset: what a reader needs next to a trained model's numbers.

``audit(data)`` measures, on the test split, with no learning at all or closed-form learning only:

* chance: random features (mean of ``CHANCE_DRAWS`` seeded draws), and 1 / number of identities;
* nearest neighbours on raw grey pixels and on gradient magnitude (``MATCH_SIZE``, each image
  zero-mean, unit-norm), cross-modal under the dataset's single-shot test protocols;
* a linear cross-modal matcher: ridge regression from infrared to visible gradient features,
  fitted in closed form on the training identities' per-identity means;
* with ``backbone`` (the runs' ``model.weights``: the synthetic study's pretrained tiny ResNet,
  or ImageNet weights), nearest neighbours on its GeM-pooled features with no training on this
  dataset: what fine-tuning and the method add over the starting point;
* same-modality retrieval with the gradient matcher (visible -> visible and infrared -> infrared,
  across cameras where a modality has several), to show how large the modality gap is;
* for synthetic data only, a cue-shuffle table: the infrared queries re-rendered with one cue
  group (shared, visible-only, infrared-only; docs/synthetic-dataset.md) taken from another test
  identity, matched by the gradient and the linear matcher. A group whose shuffle lowers
  cross-modal accuracy carries identity knowledge that crosses the modality gap.

Everything is deterministic; the result is a JSON-able dict and a Markdown table.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from vireid.harness.evaluation.distance import squared_euclidean
from vireid.harness.evaluation.evaluate import _aggregate, evaluate_protocol_arrays
from vireid.harness.evaluation.metrics import rank_trials

MATCH_SIZE = (24, 12)
CHANCE_DRAWS = 5
RIDGE = 1.0  # ridge penalty, relative to the mean feature energy
SHUFFLE_GROUPS = ("none", "shared", "visible", "infrared")
METRICS = ("r1", "mAP")

__all__ = ["audit", "audit_markdown", "grey_features", "gradient_features"]


def _grey(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) or (N, H, W) -> float32 (N, h, w) grey at MATCH_SIZE (area average)."""
    x = images.astype(np.float32)
    if x.ndim == 4:
        x = x @ np.array([0.299, 0.587, 0.114], np.float32)
    n, h, w = x.shape
    th, tw = MATCH_SIZE
    ys = (np.arange(th + 1) * h) // th
    xs = (np.arange(tw + 1) * w) // tw
    cs = np.pad(x.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))  # summed-area table
    area = (ys[1:] - ys[:-1])[:, None] * (xs[1:] - xs[:-1])[None, :]
    total = cs[:, ys[1:]][:, :, xs[1:]] - cs[:, ys[:-1]][:, :, xs[1:]] - cs[:, ys[1:]][:, :, xs[:-1]] \
        + cs[:, ys[:-1]][:, :, xs[:-1]]
    return total / area


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1)
    x = x - x.mean(axis=1, keepdims=True)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)).astype(np.float32)


def grey_features(images: np.ndarray) -> np.ndarray:
    return _unit(_grey(images))


def gradient_features(images: np.ndarray) -> np.ndarray:
    g = _grey(images)
    gy = np.diff(g, axis=1, append=g[:, -1:, :])
    gx = np.diff(g, axis=2, append=g[:, :, -1:])
    return _unit(np.sqrt(gx ** 2 + gy ** 2))


def _fit_ridge(ir: np.ndarray, vis: np.ndarray, ir_ids: np.ndarray, vis_ids: np.ndarray) -> np.ndarray:
    """W minimising |X W - Y|^2 + lam |W|^2 over per-identity mean features (closed form)."""
    ids = np.intersect1d(ir_ids, vis_ids)
    x = np.stack([ir[ir_ids == i].mean(0) for i in ids]).astype(np.float64)
    y = np.stack([vis[vis_ids == i].mean(0) for i in ids]).astype(np.float64)
    lam = RIDGE * float((x ** 2).sum(1).mean())
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y).astype(np.float32)


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    return {m: round(float(result[m]), 2) for m in METRICS}


def _protocol_eval(feats: dict[str, np.ndarray], tables: dict[str, dict[str, np.ndarray]], protocol: str,
                   root: Path) -> dict[str, float]:
    arrays = {f"{side}_{k}": v for side in ("query", "gallery") for k, v in tables[side].items()}
    arrays["query_feats"], arrays["gallery_feats"] = feats["query"], feats["gallery"]
    return _metrics(evaluate_protocol_arrays(arrays, protocol, data_root=root, device="cpu"))


def _same_modality(feats: np.ndarray, ids: np.ndarray, cams: np.ndarray) -> dict[str, float]:
    """Every image against every other image of its modality from another camera (or, with one
    camera, the other half of its identity's images)."""
    cams = cams.astype(np.int64)
    if len(np.unique(cams)) < 2:
        cams = np.zeros(len(ids), np.int64)
        for pid in np.unique(ids):
            rows = np.flatnonzero(ids == pid)
            cams[rows[len(rows) // 2:]] = 1
    dist = squared_euclidean(feats, feats, device="cpu")
    (ranking,) = rank_trials(dist, ids, ids, cams, cams)
    return _metrics(_aggregate("same-modality", [0], [ranking]))


def _chance(tables, protocol: str, root: Path, dim: int = 32) -> dict[str, float]:
    draws = []
    for seed in range(CHANCE_DRAWS):
        rng = np.random.default_rng(seed)
        feats = {side: rng.standard_normal((len(tables[side]["ids"]), dim)).astype(np.float32)
                 for side in ("query", "gallery")}
        draws.append(_protocol_eval(feats, tables, protocol, root))
    return {m: round(float(np.mean([d[m] for d in draws])), 2) for m in METRICS}


def _synthetic_shuffle(root: Path, tables, protocol: str, cache_size: tuple[int, int],
                       ridge: np.ndarray) -> dict[str, dict[str, dict[str, float]]] | None:
    """Cross-modal accuracy with the infrared queries re-rendered after a cue swap."""
    import tempfile

    from PIL import Image

    from vireid.datasets.synth import SynthSettings, draw_dataset_identities, plan, read_stamp, render_job
    from vireid.datasets.synth_render import swap_cues

    stamp = read_stamp(root)
    if stamp is None:
        return None
    settings = SynthSettings.from_dict({k: v for k, v in stamp.items() if k not in ("generator", "version",
                                                                                    "layout")})
    layout = stamp["layout"]
    with tempfile.TemporaryDirectory() as tmp:  # the writers also lay out index files; not needed here
        s, jobs = plan(layout, tmp, settings)
    ids = draw_dataset_identities(s)
    query_paths = tables["query"]["paths"]
    wanted = {str(p): i for i, p in enumerate(query_paths)}
    test_pids = np.unique(tables["query"]["ids"])
    donor = np.arange(s.n_ids)
    rng = np.random.default_rng(0)
    shifted = test_pids[(np.arange(len(test_pids)) + 1 + rng.integers(0, len(test_pids) - 1)) % len(test_pids)]
    donor[test_pids - 1] = shifted - 1  # a derangement of the test identities
    height, width = cache_size
    out: dict[str, dict[str, dict[str, float]]] = {}
    gallery_grad = gradient_features(tables["gallery_images"])
    for group in SHUFFLE_GROUPS:
        swapped = ids if group == "none" else swap_cues(ids, group, donor)
        images = np.zeros((len(query_paths), height, width, 3), np.uint8)
        for job in jobs:
            keep = [(n, wanted[rel]) for n, (_, _, rel) in enumerate(job.shots) if rel in wanted]
            if not keep or not job.infrared:
                continue
            sub = dataclasses.replace(job, shots=[job.shots[n] for n, _ in keep], copies={})
            for (_, row), pixels in zip(keep, render_job(s, swapped, sub)):
                im = Image.fromarray(pixels).convert("RGB")
                if im.size != (width, height):
                    im = im.resize((width, height), Image.BILINEAR)
                images[row] = np.asarray(im)
        q_grad = gradient_features(images)
        out[group] = {
            "gradient": _protocol_eval({"query": q_grad, "gallery": gallery_grad}, tables, protocol, root),
            "linear": _protocol_eval({"query": _unit(q_grad @ ridge), "gallery": gallery_grad}, tables, protocol,
                                     root),
        }
    return out


def backbone_features(data, rows: np.ndarray, weights: str, arch: str, last_stride: int,
                      batch_size: int = 256) -> np.ndarray:
    """GeM-pooled layer4 features of a backbone loaded from `weights` (no training here), for the
    cached images `rows` at the cache's size, normalised as at test time."""
    import torch

    from vireid.datasets.transforms import EvalTransform
    from vireid.harness.data import extract_features
    from vireid.methods.backbones import back, build_resnet, front, load_weights
    from vireid.methods.layers import GeM

    state, source = load_weights(arch, weights)

    class Extractor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            net = build_resnet(arch, state, last_stride, source)
            self.body, self.pool = torch.nn.Sequential(front(net), back(net)), GeM()

        def extract(self, images, modality=None):
            return self.pool(self.body(images))

    device = torch.device("cpu")
    with torch.no_grad():
        return extract_features(Extractor(), data, rows, batch_size, EvalTransform(), device)


def audit(data, protocols: list[str], backbone: dict[str, Any] | None = None) -> dict[str, Any]:
    """The audit of the prepared dataset ``data`` (:class:`vireid.harness.data.PreparedData`);
    ``backbone``: {"weights", "arch", "last_stride"} of a starting point to measure as well."""
    from vireid.datasets.schema import INFRARED, VISIBLE

    rec = data.records
    images = data.images
    single = [p for p in protocols if not p.endswith("/multi")]

    def table(mask) -> dict[str, np.ndarray]:
        rows = np.flatnonzero(mask)
        return {"ids": rec["pid"].to_numpy()[rows], "cams": rec["cam"].to_numpy()[rows],
                "paths": rec["path"].to_numpy().astype(str)[rows], "rows": rows}

    test = rec["split"].to_numpy() == "test"
    modality = rec["modality"].to_numpy()
    q, g = table(test & (modality == INFRARED)), table(test & (modality == VISIBLE))
    tables = {side: {k: t[k] for k in ("ids", "cams", "paths")} for side, t in (("query", q), ("gallery", g))}
    tables["gallery_images"] = np.asarray(images[g["rows"]])
    q_images = np.asarray(images[q["rows"]])
    train = rec["split"].to_numpy() == "train"
    tr_ir, tr_vis = table(train & (modality == INFRARED)), table(train & (modality == VISIBLE))
    ridge = _fit_ridge(gradient_features(np.asarray(images[tr_ir["rows"]])),
                       gradient_features(np.asarray(images[tr_vis["rows"]])), tr_ir["ids"], tr_vis["ids"])
    feats = {
        "pixels": {"query": grey_features(q_images), "gallery": grey_features(tables["gallery_images"])},
        "gradient": {"query": gradient_features(q_images), "gallery": gradient_features(tables["gallery_images"])},
    }
    feats["linear"] = {"query": _unit(feats["gradient"]["query"] @ ridge), "gallery": feats["gradient"]["gallery"]}
    if backbone is not None:
        feats["pretrained"] = {side: backbone_features(data, t["rows"], **backbone) for side, t in (("query", q),
                                                                                                    ("gallery", g))}
    cross: dict[str, dict[str, dict[str, float]]] = {}
    for protocol in single:
        cross[protocol] = {"chance": _chance(tables, protocol, data.root)}
        for name, f in feats.items():
            cross[protocol][name] = _protocol_eval(f, tables, protocol, data.root)
    same = {
        "visible": _same_modality(feats["gradient"]["gallery"], g["ids"], g["cams"]),
        "infrared": _same_modality(feats["gradient"]["query"], q["ids"], q["cams"]),
    }
    n_ids = len(np.unique(q["ids"]))
    out: dict[str, Any] = {
        "dataset": data.dataset, "fingerprint": data.fingerprint, "test_identities": n_ids,
        "queries": len(q["ids"]), "gallery_images": len(g["ids"]), "chance_r1_single_gallery": round(100 / n_ids, 2),
        "match_size": list(MATCH_SIZE), "cross_modal": cross, "same_modality_gradient": same,
    }
    if backbone is not None:
        out["backbone"] = {"weights": str(backbone["weights"]), "arch": backbone["arch"]}
    if single:
        shuffle = _synthetic_shuffle(Path(data.root), tables, single[0], images.shape[1:3], ridge)
        if shuffle is not None:
            out["cue_shuffle"] = {"protocol": single[0], "results": shuffle}
    return out


def audit_markdown(result: dict[str, Any]) -> str:
    """The audit as Markdown tables (R1 / mAP, percentages)."""
    lines = [f"Dataset audit: `{result['dataset']}` ({result['fingerprint'][:12]}), {result['test_identities']} test "
             f"identities, {result['queries']} infrared queries, {result['gallery_images']} visible images.", "",
             "| protocol | matcher | R1 | mAP |", "|---|---|---:|---:|"]
    for protocol, rows in result["cross_modal"].items():
        for name, m in rows.items():
            lines.append(f"| {protocol} | {name} | {m['r1']:.1f} | {m['mAP']:.1f} |")
    lines += ["", "Same-modality retrieval (gradient matcher, across cameras):", "",
              "| modality | R1 | mAP |", "|---|---:|---:|"]
    for modality, m in result["same_modality_gradient"].items():
        lines.append(f"| {modality} | {m['r1']:.1f} | {m['mAP']:.1f} |")
    if "cue_shuffle" in result:
        shuffle = result["cue_shuffle"]
        lines += ["", f"Cue shuffle ({shuffle['protocol']}; infrared queries re-rendered with one cue group of "
                      "another test identity):", "",
                  "| shuffled group | gradient R1 | gradient mAP | linear R1 | linear mAP |",
                  "|---|---:|---:|---:|---:|"]
        for group, m in shuffle["results"].items():
            lines.append(f"| {group} | {m['gradient']['r1']:.1f} | {m['gradient']['mAP']:.1f} | "
                         f"{m['linear']['r1']:.1f} | {m['linear']['mAP']:.1f} |")
    return "\n".join(lines) + "\n"

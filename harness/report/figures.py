"""Report figures as PNG bytes (matplotlib Agg backend, seaborn, optuna.visualization.matplotlib).

Built from what the runs save: CMC curves and gallery trials from metrics.json; training curves
from each run's history.csv; retrieval examples and distance histograms from its features.npz and
the prepared image cache its params.yaml names. A figure whose inputs are missing is replaced by a
note saying what is missing (a ``str`` in the returned lists).

Every figure is rendered with fixed style settings and PNG metadata stripped of the software
version, so rebuilding a report from the same inputs gives byte-identical images.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from pathlib import Path

from vireid.harness.report.collect import Run, variant_sort_key
from vireid.harness.report.tables import Setting, protocol_label, protocol_title, slug

MAX_RANK = 20
DPI = 100
_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.titlesize": 9,
    "legend.fontsize": 8,
    "svg.hashsalt": "vireid-report",
}


@dataclass
class Figure:
    key: str  # file stem
    title: str
    caption: str
    png: bytes


def _pyplot():
    """pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():  # colour-bar axes (parallel coordinates) are laid out as they are
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------------
def _variant_order(runs: list[Run]) -> dict[str, tuple]:
    order: dict[str, tuple] = {}
    for run in runs:
        order.setdefault(run.variant_label, variant_sort_key(run.ablation_order, run.variant))
    return order


def _by_dataset(runs: list[Run]) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.dataset, variant_sort_key(r.ablation_order, r.variant), r.rel)):
        out.setdefault(run.dataset, []).append(run)
    return out


def _replicate_text(run: Run) -> str:
    return f"seed {run.seed}" if run.split is None else f"split {run.split}, seed {run.seed}"


def _grid(n: int, ncols: int = 3, width: float = 3.2, height: float = 2.5):
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.5), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _wrap(text: str, width: int = 34) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _palette(labels: list[str]) -> dict[str, Any]:
    import seaborn as sns

    return dict(zip(labels, sns.color_palette("tab10", max(len(labels), 1))))


# --------------------------------------------------------------------------------------------
# CMC curves
# --------------------------------------------------------------------------------------------
def cmc_figures(runs: list[Run]) -> list[Figure]:
    """One CMC figure per (dataset, protocol, direction, re-ranking, distance), one panel per
    variant: the variant in colour (mean over replicates, band ± one sd) over the other variants
    in grey, ranks 1..20 (or fewer if the CMC is shorter). Readable with any number of variants."""
    import numpy as np

    plt = _pyplot()
    groups: dict[tuple, dict[str, list[list[float]]]] = {}
    labels: dict[str, str] = {}
    order = _variant_order(runs)
    for run in runs:
        labels.setdefault(run.dataset, run.dataset_label)
        for res in run.results:
            key = (Setting(run.dataset, res["rerank"], res["distance"]), res["protocol"], res["direction"])
            groups.setdefault(key, {}).setdefault(run.variant_label, []).append(res["cmc"])
    keys = sorted(groups, key=lambda k: (k[0].dataset, k[1], k[2], k[0].rerank.sort_key(), k[0].distance))
    figures = []
    for setting, protocol, direction in keys:
        curves = groups[(setting, protocol, direction)]
        max_rank = min(MAX_RANK, min(len(c) for cs in curves.values() for c in cs))
        variants = sorted(curves, key=lambda v: order[v])
        colors = _palette(variants)
        ranks = np.arange(1, max_rank + 1)
        stats = {}
        for v in variants:
            arr = np.array([c[:max_rank] for c in curves[v]])
            stats[v] = (arr.mean(0), arr.std(0, ddof=1) if len(arr) > 1 else None, len(arr))
        plabel = protocol_label(protocol, direction)
        title = f"CMC: {labels[setting.dataset]}, {protocol_title(protocol)}, re-ranking {setting.rerank.label}"
        with plt.rc_context(_RC):
            fig, axes = _grid(len(variants))
            for ax, v in zip(axes, variants):
                for other in variants:
                    if other != v:
                        ax.plot(ranks, stats[other][0], color="0.75", linewidth=0.9)
                mean, sd, n = stats[v]
                ax.plot(ranks, mean, color=colors[v], linewidth=1.8)
                if sd is not None:
                    ax.fill_between(ranks, mean - sd, mean + sd, color=colors[v], alpha=0.25, linewidth=0)
                ax.set_title(_wrap(f"{v} (n={n})"), loc="left")
                ax.set_xlim(1, max_rank)
                ax.set_ylim(0, 100)
                ax.grid(True, alpha=0.3)
                ax.set_xlabel("rank")
                ax.set_ylabel("matching rate (%)")
            fig.suptitle(_wrap(title, 90), x=0.01, ha="left", fontsize=10)
            png = _png(fig)
        rr = setting.rerank
        figures.append(Figure(
            key=f"cmc_{slug(setting.dataset)}_{slug(protocol)}_{slug(direction or 'na')}_{rr.slug}_"
                f"{slug(setting.distance)}",
            title=title,
            caption=(f"CMC curve, ranks 1–{max_rank}, one panel per variant (in colour; the other variants in grey); "
                     f"dataset {labels[setting.dataset]} [{setting.dataset}], protocol {plabel}, "
                     f"re-ranking {rr.label}, "
                     f"distance {setting.distance}. Line = mean over replicates, band = ± one sd (no band with one); "
                     "n = replicates (seeds; on RegDB, splits x seeds)."),
            png=png,
        ))
    return figures


# --------------------------------------------------------------------------------------------
# Training curves (history.csv)
# --------------------------------------------------------------------------------------------
def _histories(runs: list[Run]):
    import pandas as pd

    frames = []
    for run in runs:
        path = None if run.run_dir is None else run.run_dir / "history.csv"
        if path is None or not path.is_file():
            continue
        frame = pd.read_csv(path)
        frame["variant"] = run.variant_label
        frame["replicate"] = str(run.replicate)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def training_figures(runs: list[Run]) -> list:
    """Per dataset: the training loss per term and the validation mAP per epoch, one line per
    variant (mean over replicates) with a band of ± one sd, from each run's history.csv."""
    plt = _pyplot()
    order = _variant_order(runs)
    out: list = []
    for dataset, mine in _by_dataset(runs).items():
        label = mine[0].dataset_label
        frame = _histories(mine)
        if frame is None:
            out.append(f"Training curves for {label} [{dataset}]: no run folder with a history.csv was found "
                       "(give the training runs' folder with `--run-files`).")
            continue
        n_runs = frame.groupby(["variant", "replicate"]).ngroups
        variants = sorted(frame["variant"].unique(), key=lambda v: order[v])
        colors = _palette(variants)
        terms = ["loss"] + sorted(c for c in frame.columns if c.startswith("loss/"))
        with plt.rc_context(_RC):
            fig, axes = _grid(len(terms), ncols=4, width=3.0, height=2.4)
            for ax, term in zip(axes, terms):
                _bands(ax, frame, term, variants, colors)
                ax.set_title("total loss" if term == "loss" else term.split("/", 1)[1], loc="left")
                ax.set_ylabel("")
            _legend(axes[0], variants, colors)
            for ax in axes:
                _integer_x(ax)
            fig.suptitle(f"Training loss per term: {label}", x=0.01, ha="left", fontsize=10)
            png = _png(fig)
        out.append(Figure(f"training_loss_{slug(dataset)}", f"Training loss per term: {label}",
                          f"Mean over each epoch's steps of every weighted loss term (history.csv of {n_runs} runs); "
                          "line = mean over replicates, band = ± one sd.", png))
        if "val/mAP" not in frame.columns or frame["val/mAP"].isna().all():
            out.append(f"Validation curves for {label} [{dataset}]: the runs' history.csv has no validation column "
                       "(train.val_fraction is 0: every training identity was trained on).")
            continue
        with plt.rc_context(_RC):
            fig, ax = plt.subplots(figsize=(7.0, 3.6))
            _bands(ax, frame, "val/mAP", variants, colors, marker="o", label=True)
            ax.set_ylabel("validation mAP (%)")
            _integer_x(ax)
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
            ax.set_title(f"Validation mAP per epoch: {label}", loc="left")
            png = _png(fig)
        out.append(Figure(f"validation_map_{slug(dataset)}", f"Validation mAP per epoch: {label}",
                          "mAP on the held-out training identities (infrared -> visible, all images), "
                          "each epoch it was "
                          "measured; line = mean over replicates, band = ± one sd.", png))
    return out


def _bands(ax, frame, column: str, variants: list[str], colors: dict, marker: str | None = None,
           label: bool = False) -> None:
    """One line per variant: the mean over its runs at each epoch, a band of ± one sd."""
    data = frame.dropna(subset=[column])
    for variant in variants:
        mine = data[data["variant"] == variant]
        if mine.empty:
            continue
        by_epoch = mine.groupby("epoch")[column]
        mean, sd = by_epoch.mean(), by_epoch.std(ddof=1)
        ax.plot(mean.index, mean.values, color=colors[variant], linewidth=1.3, marker=marker, markersize=3,
                label=variant if label else None)
        if sd.notna().any():
            ax.fill_between(mean.index, (mean - sd).values, (mean + sd).values, color=colors[variant], alpha=0.2,
                            linewidth=0)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("epoch")


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax, variants: list[str], colors: dict) -> None:
    """Every variant's colour, in the first panel (the total loss, which every variant has)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=colors[v], linewidth=2) for v in variants]
    ax.legend(handles, variants, loc="best", fontsize=7, frameon=True)


# --------------------------------------------------------------------------------------------
# Features: retrieval examples and distance histograms (features.npz + the image cache)
# --------------------------------------------------------------------------------------------
def _first_with_features(runs: list[Run]) -> dict[str, Run]:
    """Each variant's first run (in path order) whose folder holds features.npz."""
    out: dict[str, Run] = {}
    for run in runs:
        if run.kind == "trained" and run.run_dir is not None and (run.run_dir / "features.npz").is_file():
            out.setdefault(run.variant, run)
    return out


def _distances(run: Run, pick=None):
    """(arrays, query x gallery squared distances with the dataset's normalisation, same-location
    mask) of a run's test features; `pick(n_query, n_gallery)` -> (query rows, gallery rows)
    selects the rows first (the arrays returned are those rows), so no full matrix is built."""
    import numpy as np

    from vireid.harness.evaluation.features_file import load_features
    from vireid.datasets.registry import DATASETS

    arrays = load_features(run.run_dir / "features.npz")
    if pick is not None:
        qs, gs = pick(len(arrays["query_ids"]), len(arrays["gallery_ids"]))
        arrays = {k: v[qs] if k.startswith("query_") else v[gs] for k, v in arrays.items()}
    name = str(run.params.get("data.dataset", ""))
    spec = DATASETS.get(name) if name in DATASETS else None  # the dataset's distance rule and locations
    q, g = arrays["query_feats"].astype(np.float64), arrays["gallery_feats"].astype(np.float64)
    if spec is not None and spec.normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    dist = (q ** 2).sum(1)[:, None] + (g ** 2).sum(1)[None, :] - 2 * q @ g.T
    loc = spec.locations if spec is not None else {}
    qloc = np.array([loc.get(int(c), int(c)) for c in arrays["query_cams"]])
    gloc = np.array([loc.get(int(c), int(c)) for c in arrays["gallery_cams"]])
    same_place = (qloc[:, None] == gloc[None, :]) & (arrays["query_ids"][:, None] == arrays["gallery_ids"][None, :])
    return arrays, np.maximum(dist, 0.0), same_place


def _image_source(run: Run):
    """(images, path -> row) of the prepared cache the run's params.yaml names, or a reason string."""
    from vireid.datasets.errors import DatasetError
    from vireid.datasets.prepare import open_prepared

    prepared = run.params.get("data.prepared_dir")
    size = (run.params.get("data.image_height"), run.params.get("data.image_width"))
    if not prepared or None in size:
        return f"{run.path}: the run's params lack data.prepared_dir or the image size"
    try:
        manifest, cache = open_prepared(Path(prepared), size)
    except (DatasetError, OSError) as exc:
        return f"the image cache of {prepared} cannot be read ({exc})"
    rows = {path: i for i, path in enumerate(manifest.records["path"])}
    return cache.images, rows


RETRIEVAL_QUERIES = 4
RETRIEVAL_TOP = 8


def _retrieval_queries(n_query: int, n_gallery: int):
    """Queries spread evenly over the (id-sorted) query set, against the whole gallery."""
    import numpy as np

    return np.unique(np.linspace(0, n_query - 1, min(RETRIEVAL_QUERIES, n_query)).round().astype(int)), \
        np.arange(n_gallery)


def _pair_sample(n_query: int, n_gallery: int):
    """At most MAX_PAIRS_SIDE queries and gallery images, drawn with seed 0."""
    import numpy as np

    rng = np.random.default_rng(0)
    return np.sort(rng.permutation(n_query)[:MAX_PAIRS_SIDE]), np.sort(rng.permutation(n_gallery)[:MAX_PAIRS_SIDE])


def retrieval_figures(runs: list[Run]) -> list:
    """Per dataset: infrared queries and their top-ranked visible gallery images for the baseline
    and the last ablation row (the full method), the same queries for both; green frame = same
    identity, red = another. Features from features.npz, pixels from the prepared image cache."""
    import numpy as np

    plt = _pyplot()
    out: list = []
    for dataset, mine in _by_dataset(runs).items():
        label = mine[0].dataset_label
        found = _first_with_features(mine)
        ablation = sorted((r for r in found.values() if r.is_ablation), key=lambda r: r.ablation_order)
        chosen = [ablation[0], ablation[-1]] if len(ablation) > 1 else ablation[:1]
        if not chosen:
            out.append(f"Retrieval examples for {label} [{dataset}]: no ablation run folder with features.npz was "
                       "found (give the training runs' folder with `--run-files`).")
            continue
        source = _image_source(chosen[0])
        if isinstance(source, str):
            out.append(f"Retrieval examples for {label} [{dataset}]: not drawn, {source}.")
            continue
        images, rows = source
        panels = []
        for run in chosen:
            arrays, dist, same_place = _distances(run, _retrieval_queries)
            panels.append((run, arrays, np.where(same_place, np.inf, dist), range(len(arrays["query_ids"]))))
        top = min(RETRIEVAL_TOP, panels[0][2].shape[1])
        lines = []  # (variant label, query image, query id, [(gallery image, correct)])
        for run, arrays, dist, picks in panels:
            for qi in picks:
                ranked = np.argsort(dist[qi], kind="stable")[:top]
                lines.append((run.variant_label, rows.get(str(arrays["query_paths"][qi])), arrays["query_ids"][qi],
                              [(rows.get(str(arrays["gallery_paths"][gi])),
                                bool(arrays["gallery_ids"][gi] == arrays["query_ids"][qi])) for gi in ranked]))
        mosaic = _mosaic(images, lines, top)
        height, width = mosaic.shape[:2]
        with plt.rc_context(_RC):
            fig = plt.figure(figsize=(width / DPI + 1.6, height / DPI + 0.5))
            ax = fig.add_axes([1.5 / (width / DPI + 1.6), 0, width / DPI / (width / DPI + 1.6),
                               height / DPI / (height / DPI + 0.5)])
            ax.imshow(mosaic, interpolation="nearest")
            ax.set_axis_off()
            for i, (variant, _, pid, _) in enumerate(lines):
                ax.text(-6, (i + 0.5) * (TILE[0] + GAP), _wrap(f"{variant}\nquery id {pid}", 20), ha="right",
                        va="center", fontsize=7)
            for j in range(top + 1):
                ax.text((j + 0.5) * (TILE[1] + GAP) + (GAP if j else 0), -4, "query" if j == 0 else f"#{j}",
                        ha="center", va="bottom", fontsize=7)
            fig.suptitle(f"Retrieval examples: {label}", x=0.01, ha="left", fontsize=10)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
            plt.close(fig)
            png = buf.getvalue()
        names = " and ".join(f"{run.variant_label} ({run.rel})" for run, *_ in panels)
        out.append(Figure(f"retrieval_{slug(dataset)}", f"Retrieval examples: {label}",
                          f"Infrared queries (first column) and their top {top} visible gallery images over the whole "
                          f"test gallery (same-location images removed as the protocols do), for "
                          f"{names}; green frame = "
                          "same identity, red = another. Images from the prepared image cache.", png))
    return out


TILE = (96, 48)  # (height, width) of one image in the retrieval mosaic
GAP = 6
BORDER = 4
_FRAME = {None: (90, 90, 90), True: (44, 160, 44), False: (214, 39, 40)}


def _mosaic(images, lines: list, top: int):
    """One uint8 picture: a row per query (query, then its ranked gallery images, framed green for
    the same identity and red for another), drawn in one imshow instead of one axes per image."""
    import numpy as np
    from PIL import Image

    th, tw = TILE
    canvas = np.full((len(lines) * (th + GAP), (top + 1) * (tw + GAP) + GAP, 3), 255, dtype=np.uint8)

    def put(r: int, c: int, row: int | None, correct: bool | None) -> None:
        y, x = r * (th + GAP), c * (tw + GAP) + (GAP if c else 0)
        canvas[y:y + th, x:x + tw] = _FRAME[correct]
        if row is not None:
            tile = np.asarray(Image.fromarray(np.asarray(images[row])).resize(
                (tw - 2 * BORDER, th - 2 * BORDER), Image.NEAREST))
            canvas[y + BORDER:y + th - BORDER, x + BORDER:x + tw - BORDER] = tile

    for r, (_, query, _, ranked) in enumerate(lines):
        put(r, 0, query, None)
        for c, (row, correct) in enumerate(ranked, start=1):
            put(r, c, row, correct)
    return canvas


MAX_PAIRS_SIDE = 2000


def distance_figures(runs: list[Run]) -> list:
    """Per dataset: the cross-modal distances of same-identity and different-identity (query,
    gallery) pairs, one panel per variant (its first run with features.npz): the modality gap."""
    import numpy as np

    plt = _pyplot()
    out: list = []
    for dataset, mine in _by_dataset(runs).items():
        label = mine[0].dataset_label
        found = _first_with_features(mine)
        if not found:
            out.append(f"Distance histograms for {label} [{dataset}]: no run folder with features.npz was found "
                       "(give the training runs' folder with `--run-files`).")
            continue
        chosen = sorted(found.values(), key=lambda r: variant_sort_key(r.ablation_order, r.variant))
        with plt.rc_context(_RC):
            fig, axes = _grid(len(chosen), ncols=3, width=3.2, height=2.4)
            for ax, run in zip(axes, chosen):
                arrays, sub, _ = _distances(run, _pair_sample)
                same = arrays["query_ids"][:, None] == arrays["gallery_ids"][None, :]
                bins = np.linspace(float(sub.min()), float(sub.max()) + 1e-9, 41)
                ax.hist(sub[~same], bins=bins, density=True, alpha=0.55, color="tab:red", label="different identity")
                ax.hist(sub[same], bins=bins, density=True, alpha=0.55, color="tab:green", label="same identity")
                ax.set_title(_wrap(run.variant_label), loc="left")
                ax.set_xlabel("squared distance")
                ax.set_yticks([])
            axes[0].legend(loc="upper right", fontsize=7)
            fig.suptitle(f"Cross-modal distances: {label}", x=0.01, ha="left", fontsize=10)
            png = _png(fig)
        out.append(Figure(f"distances_{slug(dataset)}", f"Cross-modal distances: {label}",
                          "Density of the squared distance of infrared-query / visible-gallery pairs of the same "
                          "identity (green) and of different identities (red), test features of each variant's "
                          f"first run (features.npz; at most {MAX_PAIRS_SIDE} queries x {MAX_PAIRS_SIDE} gallery "
                          "images, drawn with seed 0). The gap between the two is what the model learned.", png))
    return out


# --------------------------------------------------------------------------------------------
# Gallery trials (metrics.json per_trial)
# --------------------------------------------------------------------------------------------
def trial_figures(runs: list[Run], metrics: tuple[str, ...] = ("r1", "mAP")) -> list[Figure]:
    """Per (dataset, protocol) with more than one gallery trial, re-ranking off: each run's
    values over its trials (a box per run), runs grouped by variant."""
    import pandas as pd
    import seaborn as sns

    from vireid.harness.report.collect import METRIC_LABELS

    plt = _pyplot()
    rows = []
    for run in runs:
        for res in run.results:
            if res["rerank"].enabled or len(res.get("per_trial") or []) < 2:
                continue
            for t in res["per_trial"]:
                for metric in metrics:
                    if metric in t:
                        rows.append({"dataset": run.dataset, "label": run.dataset_label, "distance": res["distance"],
                                     "protocol": res["protocol"], "direction": res["direction"],
                                     "variant": run.variant_label,
                                     "run": f"{run.variant_label}, {_replicate_text(run)}",
                                     "order": variant_sort_key(run.ablation_order, run.variant),
                                     "metric": METRIC_LABELS[metric], "value": t[metric]})
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    figures = []
    for (dataset, distance, protocol, direction), part in frame.groupby(["dataset", "distance", "protocol",
                                                                          "direction"], sort=True):
        label = part["label"].iloc[0]
        part = part.sort_values(["order", "run"], kind="stable")
        run_order = list(dict.fromkeys(part["run"]))
        variants = list(dict.fromkeys(part["variant"]))
        colors = _palette(variants)
        run_colors = {r: colors[v] for r, v in zip(part["run"], part["variant"])}
        with plt.rc_context(_RC), sns.axes_style("whitegrid"):
            fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.8 + 0.28 * len(run_order)),
                                     squeeze=False, sharey=True)
            for ax, metric in zip(axes[0], [METRIC_LABELS[m] for m in metrics]):
                data = part[part["metric"] == metric]
                sns.boxplot(data=data, x="value", y="run", order=run_order, hue="run", palette=run_colors,
                            legend=False, ax=ax, fliersize=2, linewidth=0.8)
                ax.set_xlabel(f"{metric} (%) per gallery trial")
                ax.set_ylabel("")
            title = f"Gallery-trial spread: {label}, {protocol_title(protocol)}"
            fig.suptitle(title, x=0.01, ha="left", fontsize=10)
            png = _png(fig)
        n_trials = part.groupby("run").size().max() // len(metrics)
        figures.append(Figure(
            f"trials_{slug(dataset)}_{slug(protocol)}_{slug(direction or 'na')}_{slug(distance)}", title,
            f"Each run's value in each of its gallery trials (up to {n_trials}), protocol "
            f"{protocol_label(protocol, direction)}, re-ranking off: the spread one run shows with the gallery draw, "
            "next to the spread between runs.", png))
    return figures


# --------------------------------------------------------------------------------------------
# Optuna (optuna.visualization.matplotlib)
# --------------------------------------------------------------------------------------------
# fANOVA importances from fewer completed trials say nothing; the report shows them from this many.
MIN_IMPORTANCE_TRIALS = 10


def _complete(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
            and t.value is not None]


def _optuna_png(draw) -> bytes:
    """Render one optuna.visualization.matplotlib plot (it sets its own style; kept local here)."""
    import warnings

    import optuna

    plt = _pyplot()
    with plt.rc_context(_RC), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. a slice panel of one distinct value
        axes = draw()
        first = axes.ravel()[0] if hasattr(axes, "ravel") else axes
        fig = first.figure
        fig.set_size_inches(max(6.4, fig.get_size_inches()[0]), max(3.8, fig.get_size_inches()[1]))
        return _png(fig)


def tuning_figures(study) -> list:
    """History, intermediate values, slice and parallel-coordinate plots of a single-objective
    study (optuna.visualization.matplotlib); notes instead where a plot has nothing to show."""
    from optuna.visualization import matplotlib as ovm

    if len(study.directions) != 1:
        return ["Tuning plots are drawn for single-objective studies only."]
    complete = _complete(study)
    if not complete:
        return ["No optimization history to plot (no completed trial)."]
    name = study.study_name
    out: list = [Figure("tuning_history", "Optimization history",
                        f"Objective value of each completed trial of study {name} and the best value so far "
                        "(optuna.visualization.matplotlib.plot_optimization_history).",
                        _optuna_png(lambda: ovm.plot_optimization_history(study)))]
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        out.append(Figure("tuning_intermediate", "Intermediate values",
                          "Values each trial reported while running, pruned trials included "
                          "(plot_intermediate_values).", _optuna_png(lambda: ovm.plot_intermediate_values(study))))
    if any(t.params for t in complete):
        out.append(Figure("tuning_slice", "Slice plot",
                          "Objective value against each tuned parameter, completed trials (plot_slice).",
                          _optuna_png(lambda: ovm.plot_slice(study))))
    if len({k for t in complete for k in t.params}) >= 2 and len(complete) >= 2:
        out.append(Figure("tuning_parallel", "Parallel coordinates",
                          "Each completed trial's parameters and objective value (plot_parallel_coordinate).",
                          _optuna_png(lambda: ovm.plot_parallel_coordinate(study))))
    return out


def importance_figure(study) -> Figure:
    """fANOVA importances (seed 0) drawn by optuna's plot_param_importances."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return Figure("tuning_importances", "Parameter importances",
                  "optuna.visualization.matplotlib.plot_param_importances with the fANOVA evaluator (seed 0).",
                  _optuna_png(lambda: ovm.plot_param_importances(study, evaluator=evaluator)))

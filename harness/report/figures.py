"""Report figures as PNG bytes (matplotlib Agg backend; seaborn for the CMC curves).

Every figure is rendered with fixed style settings and PNG metadata stripped of the software
version, so rebuilding a report from the same inputs gives byte-identical images.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from vireid.harness.report.collect import Run, variant_sort_key
from vireid.harness.report.tables import Setting, protocol_label, slug

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
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# CMC curves
# --------------------------------------------------------------------------------------------
def cmc_figures(runs: list[Run]) -> list[Figure]:
    """One CMC figure per (dataset, protocol, direction, re-ranking, distance): one line per variant,
    the mean over seeds with a band of ± one std over seeds, ranks 1..20 (or fewer if the CMC is
    shorter)."""
    import pandas as pd
    import seaborn as sns

    plt = _pyplot()
    groups: dict[tuple, list[dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    order: dict[str, tuple] = {}
    for run in runs:
        labels.setdefault(run.dataset, run.dataset_label)
        order.setdefault(run.variant_label, variant_sort_key(run.ablation_order, run.variant))
        for res in run.results:
            key = (Setting(run.dataset, res["rerank"], res["distance"]), res["protocol"], res["direction"])
            groups.setdefault(key, []).append({"variant": run.variant_label, "seed": str(run.seed),
                                               "cmc": res["cmc"]})
    keys = sorted(groups, key=lambda k: (k[0].dataset, k[1], k[2], k[0].rerank.sort_key(), k[0].distance))
    figures = []
    for setting, protocol, direction in keys:
        entries = groups[(setting, protocol, direction)]
        max_rank = min(MAX_RANK, min(len(e["cmc"]) for e in entries))
        rows = [{"variant": e["variant"], "seed": e["seed"], "rank": r + 1, "cmc": e["cmc"][r]}
                for e in entries for r in range(max_rank)]
        frame = pd.DataFrame(rows)
        hue_order = sorted(frame["variant"].unique(), key=lambda v: order[v])
        n_seeds = frame.groupby("variant")["seed"].nunique()
        plabel = protocol_label(protocol, direction)
        title = f"CMC: {labels[setting.dataset]}, {plabel}, re-ranking {setting.rerank.label}"
        with plt.rc_context(_RC), sns.axes_style("whitegrid"):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            sns.lineplot(data=frame, x="rank", y="cmc", hue="variant", hue_order=hue_order, errorbar="sd",
                         linewidth=1.4, ax=ax, palette="tab10")
            ax.set_xlabel("rank")
            ax.set_ylabel("matching rate (%)")
            ax.set_xlim(1, max_rank)
            ax.set_xticks(range(1, max_rank + 1) if max_rank <= 20 else range(1, max_rank + 1, 5))
            ax.set_title(title, loc="left")
            handles, texts = ax.get_legend_handles_labels()
            ax.legend(handles, [f"{t} (n={int(n_seeds.get(t, 0))})" for t in texts], loc="lower right",
                      frameon=True, title=None)
            png = _png(fig)
        rr = setting.rerank
        figures.append(Figure(
            key=f"cmc_{slug(setting.dataset)}_{slug(protocol)}_{slug(direction or 'na')}_{rr.slug}_"
                f"{slug(setting.distance)}",
            title=title,
            caption=(f"CMC curve, ranks 1–{max_rank}; dataset {labels[setting.dataset]} [{setting.dataset}], "
                     f"protocol {plabel}, re-ranking {rr.label}, distance {setting.distance}. Line = mean over "
                     "seeds, band = ± one std over seeds (no band with one seed); n = seeds."),
            png=png,
        ))
    return figures


# --------------------------------------------------------------------------------------------
# Optuna
# --------------------------------------------------------------------------------------------
def _complete(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE
            and t.value is not None]


def optimization_history(study) -> Figure | None:
    import optuna

    plt = _pyplot()
    trials = _complete(study)
    if not trials or len(study.directions) != 1:
        return None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    best, running = [], None
    for v in values:
        running = v if running is None else (max(running, v) if maximize else min(running, v))
        best.append(running)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        ax.scatter(numbers, values, s=18, color="tab:blue", label="objective value", zorder=3)
        ax.step(numbers, best, where="post", color="tab:red", label="best so far")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial number")
        ax.set_ylabel("objective value")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
        ax.set_title(f"Optimization history: study {study.study_name} "
                     f"({'maximize' if maximize else 'minimize'})", loc="left")
        png = _png(fig)
    return Figure("tuning_history", "Optimization history",
                  f"Objective value of each completed trial of study {study.study_name} and the best value so "
                  f"far ({'maximize' if maximize else 'minimize'}).", png)


def intermediate_values(study) -> Figure | None:
    plt = _pyplot()
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for t in trials:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [t.intermediate_values[s] for s in steps], marker=".", linewidth=1,
                    linestyle="-" if t.state.name == "COMPLETE" else "--",
                    label=f"trial {t.number} ({t.state.name.lower()})")
        ax.set_xlabel("step")
        ax.set_ylabel("intermediate value")
        ax.grid(True, alpha=0.3)
        if len(trials) <= 12:
            ax.legend(loc="best", fontsize=7)
        ax.set_title(f"Intermediate values: study {study.study_name}", loc="left")
        png = _png(fig)
    return Figure("tuning_intermediate", "Intermediate values",
                  "Values each trial reported while running (dashed: trials that did not complete).", png)


def importance_figure(importances: dict[str, float], study_name: str) -> Figure | None:
    plt = _pyplot()
    if not importances:
        return None
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.4, max(1.8, 0.8 + 0.35 * len(names))))
        ax.barh(names, values, color="tab:green")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
        ax.set_xlabel("importance (fANOVA, normalised)")
        ax.set_xlim(0, max(1.0, max(values) * 1.15) if values and not any(math.isnan(v) for v in values) else 1.0)
        ax.set_title(f"Parameter importances: study {study_name}", loc="left")
        png = _png(fig)
    return Figure("tuning_importances", "Parameter importances",
                  "optuna.importance.get_param_importances with the fANOVA evaluator (seed 0).", png)

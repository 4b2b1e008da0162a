"""Which differences the report tests, and their statistics: paired by seed, Holm-corrected per
setting, written to ``stats.json`` and shown as tables.

Comparisons, within each setting (dataset, re-ranking, distance), for every protocol and every
tested metric (R1 and mAP by default):

- each variant (ablation rows and comparison methods such as AGW) against the baseline, the
  ablation row with the lowest ``ablation_order``;
- each ablation row against the row above it (the step the ablation adds). Row 2's "row above"
  is the baseline: that pair is one comparison with both roles.

Family for Holm's correction: every comparison of one setting (all pairs x protocols x tested
metrics), i.e. the ablation table of that setting plus the comparison methods' rows. A result is
*resolved* when its Holm-adjusted p is below alpha. A pair is formed only from seeds both
variants ran; seeds only one of them has are left out and listed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vireid.harness.report.collect import METRIC_LABELS, TABLE_METRICS, Run, variant_sort_key
from vireid.harness.report.stats import ALPHA, POWER, Paired, holm, mdd, paired_stats
from vireid.harness.report.tables import (MISSING, Cell, Setting, Table, _dataset_labels, _result_index,
                                          _variant_info, protocol_label, slug)

STATS_METRICS = ("r1", "mAP")
KIND_BASELINE = "baseline"
KIND_PREVIOUS = "previous"
MARKS = {KIND_PREVIOUS: "†", KIND_BASELINE: "‡"}
STATS_FILE = "stats.json"


@dataclass
class Comparison:
    setting: Setting
    dataset_label: str
    protocol: str
    direction: str
    metric: str  # key in the result ("r1", "mAP", ...)
    variant: str
    variant_label: str
    reference: str
    reference_label: str
    kinds: tuple[str, ...]  # KIND_BASELINE and/or KIND_PREVIOUS
    seeds: list[Any]
    unpaired: list[Any]  # seeds only one of the two variants has (left out)
    stat: Paired
    p_holm: float | None = None
    family_size: int = 0
    alpha: float = ALPHA

    @property
    def resolved(self) -> bool:
        return self.p_holm is not None and self.p_holm < self.alpha

    @property
    def name(self) -> str:
        return f"{self.variant_label} − {self.reference_label}"

    def to_json(self, power: float = POWER) -> dict[str, Any]:
        s, rr = self.stat, self.setting.rerank
        return {
            "variant": self.variant, "variant_label": self.variant_label,
            "reference": self.reference, "reference_label": self.reference_label,
            "kind": list(self.kinds), "dataset": self.setting.dataset, "protocol": self.protocol,
            "direction": self.direction, "rerank": rr.enabled,
            "rerank_params": {"k1": rr.k1, "k2": rr.k2, "lambda": rr.lam} if rr.enabled else None,
            "distance": self.setting.distance, "metric": METRIC_LABELS[self.metric],
            "n": s.n, "diff": s.diff, "sd": s.sd, "ci_low": s.ci_low, "ci_high": s.ci_high, "t": s.t, "p": s.p,
            "p_holm": self.p_holm, "g": s.g, "mdd": s.mdd, "resolved": self.resolved,
            "undefined": s.undefined, "seeds": list(self.seeds), "unpaired_seeds": list(self.unpaired),
            "family_size": self.family_size, "alpha": self.alpha, "power": power,
        }


def _seed_key(seed: Any) -> str:
    return json.dumps(seed, sort_keys=True)


def comparison_pairs(ablation: list[str], others: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(variant, reference, kinds) in display order: ablation rows 2.. against the baseline and the
    row above, then the comparison methods against the baseline."""
    if not ablation:
        return []
    base = ablation[0]
    pairs: dict[tuple[str, str], list[str]] = {}
    for i, variant in enumerate(ablation[1:], start=1):
        pairs.setdefault((variant, base), []).append(KIND_BASELINE)
        pairs.setdefault((variant, ablation[i - 1]), []).append(KIND_PREVIOUS)
    for variant in others:
        pairs.setdefault((variant, base), []).append(KIND_BASELINE)
    return [(v, r, tuple(k)) for (v, r), k in pairs.items()]


def build_comparisons(runs: list[Run], metrics: tuple[str, ...] = STATS_METRICS, alpha: float = ALPHA,
                      power: float = POWER) -> list[Comparison]:
    """Every comparison of every setting with its paired statistics and Holm-adjusted p."""
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown:
        raise ValueError(f"unknown statistics metric(s) {', '.join(unknown)}; known: {', '.join(TABLE_METRICS)}")
    index = _result_index(runs)
    info = _variant_info(runs)
    labels = _dataset_labels(runs)
    out: list[Comparison] = []
    for setting in sorted({k[0] for k in index}, key=Setting.sort_key):
        keys = [k for k in index if k[0] == setting]
        variants = sorted({k[3] for k in keys}, key=lambda v: variant_sort_key(info[v]["order"], v))
        ablation = [v for v in variants if info[v]["order"] is not None]
        others = [v for v in variants if info[v]["order"] is None]
        meta: list[dict[str, Any]] = []
        diffs: list[np.ndarray] = []
        for protocol, direction in sorted({(k[1], k[2]) for k in keys}):
            for variant, reference, kinds in comparison_pairs(ablation, others):
                a = {_seed_key(s): (s, r) for s, r in index.get((setting, protocol, direction, variant), [])}
                b = {_seed_key(s): (s, r) for s, r in index.get((setting, protocol, direction, reference), [])}
                common = sorted(set(a) & set(b))
                if not common:
                    continue
                unpaired = [(a.get(k) or b.get(k))[0] for k in sorted(set(a) ^ set(b))]
                for metric in metrics:
                    meta.append(dict(setting=setting, dataset_label=labels[setting.dataset], protocol=protocol,
                                     direction=direction, metric=metric, variant=variant,
                                     variant_label=info[variant]["label"], reference=reference,
                                     reference_label=info[reference]["label"], kinds=kinds,
                                     seeds=[a[k][0] for k in common], unpaired=unpaired))
                    diffs.append(np.array([a[k][1][metric] - b[k][1][metric] for k in common]))
        stats = _paired_by_n(diffs, alpha, power)
        adjusted = holm([s.p for s in stats])
        m = sum(p is not None for p in adjusted)
        out += [Comparison(**kw, stat=s, p_holm=p, family_size=m, alpha=alpha)
                for kw, s, p in zip(meta, stats, adjusted)]
    return out


def _paired_by_n(diffs: list[np.ndarray], alpha: float, power: float) -> list[Paired]:
    """:func:`paired_stats` for comparisons of mixed n: one vectorised call per n, results in order."""
    by_n: dict[int, list[int]] = {}
    for i, d in enumerate(diffs):
        by_n.setdefault(len(d), []).append(i)
    out: list[Paired | None] = [None] * len(diffs)
    for idx in by_n.values():
        for i, res in zip(idx, paired_stats(np.stack([diffs[i] for i in idx]), alpha=alpha, power=power)):
            out[i] = res
    return out  # type: ignore[return-value]


def stats_json(comparisons: list[Comparison], power: float = POWER) -> str:
    return json.dumps([c.to_json(power) for c in comparisons], indent=1, allow_nan=False) + "\n"


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def fmt_signed(value: float) -> str:
    return f"{value:+.2f}"


def fmt_p(p: float | None, stat: Paired | None = None) -> str:
    if p is None:
        return na_text(stat)
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def na_text(stat: Paired | None) -> str:
    reason = stat.undefined if stat is not None and stat.undefined else "undefined"
    return f"n/a ({reason})"


def fmt_ci(stat: Paired) -> str:
    if stat.ci_low is None:
        return na_text(stat)
    return f"[{fmt_signed(stat.ci_low)}, {fmt_signed(stat.ci_high)}]"


def verdict(c: Comparison) -> str:
    if c.p_holm is None:
        return f"untested ({c.stat.undefined})"
    return "resolved" if c.resolved else "not resolved"


def _opt(value: float | None, stat: Paired, fmt: str = "{:.2f}") -> str:
    return na_text(stat) if value is None else fmt.format(value)


KIND_TEXT = {(KIND_BASELINE,): "baseline", (KIND_PREVIOUS,): "row above",
             (KIND_BASELINE, KIND_PREVIOUS): "baseline = row above"}


def stats_tables(comparisons: list[Comparison], power: float = POWER) -> list[Table]:
    """One table per setting: every comparison with n, diff, 95 % CI, p, Holm p, g, MDD, verdict."""
    tables = []
    settings = sorted({c.setting for c in comparisons}, key=Setting.sort_key)
    for setting in settings:
        family = [c for c in comparisons if c.setting == setting]
        rows, csv_rows = [], []
        for c in family:
            s = c.stat
            rows.append([Cell(c.name), Cell(KIND_TEXT[c.kinds]), Cell(protocol_label(c.protocol, c.direction)),
                         Cell(METRIC_LABELS[c.metric]), Cell(str(s.n)), Cell(fmt_signed(s.diff)), Cell(fmt_ci(s)),
                         Cell(fmt_p(s.p, s)), Cell(fmt_p(c.p_holm, s)), Cell(_opt(s.g, s)), Cell(_opt(s.mdd, s)),
                         Cell(verdict(c), bold=c.resolved)])
            csv_rows.append(c.to_json(power))
        rr = "on" if setting.rerank.enabled else "off"
        label = family[0].dataset_label
        m = family[0].family_size
        seeds_note = sorted({str(s) for c in family for s in c.unpaired})
        notes = [
            "Paired by seed: diff = mean over seeds of (variant − reference), each seed's value being its mean "
            "over the protocol's gallery trials (trials are spread within a run, not replicates). 95 % CI: "
            "t interval; p: two-sided paired t-test; p (Holm): Holm-corrected across this table's "
            f"{m} tested comparison(s); resolved = Holm p < {family[0].alpha:g}. g: Hedges' g_z = J·mean/sd of the "
            "paired differences, J = 1 − 3/(4(n−1) − 1). MDD: the smallest true difference a paired t-test at "
            f"alpha {family[0].alpha:g} (two-sided) detects with power {power:g} at this n, from the observed sd "
            "of the paired differences.",
        ]
        if seeds_note:
            notes.append("Seeds left out of a pair because only one of its two variants ran them: "
                         + ", ".join(seeds_note) + ".")
        tables.append(Table(
            key=f"stats_{slug(setting.dataset)}_{setting.rerank.slug}_{slug(setting.distance)}",
            title=f"Paired differences: {label}, re-ranking {rr}",
            columns=["Comparison", "Reference", "Protocol", "Metric", "n", "Diff", "95 % CI", "p", "p (Holm)",
                     "g", "MDD", "Verdict"],
            rows=rows,
            stamp=[f"Dataset: {label} [{setting.dataset}]", f"Re-ranking: {setting.rerank.label}",
                   f"Distance: {setting.distance}"],
            notes=notes,
            align=["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "r", "l"],
            csv_rows=csv_rows,
            csv_columns=list(csv_rows[0]) if csv_rows else [],
            meta={"rerank": setting.rerank.enabled, "dataset": setting.dataset},
        ))
    return tables


@dataclass
class StudyMdd:
    setting: Setting
    protocol: str
    direction: str
    metric: str
    n: int
    pooled_sd: float
    mdd: float
    count: int  # comparisons pooled
    alpha: float = ALPHA
    power: float = POWER


def study_mdd(comparisons: list[Comparison], alpha: float = ALPHA, power: float = POWER) -> list[StudyMdd]:
    """The study's minimum detectable difference per (setting, protocol, metric): from the pooled
    SD of paired differences, sqrt(mean of sd^2) over that cell's comparisons at the most common n
    (comparisons share runs, so this is a descriptive pooling, not an independent estimate)."""
    groups: dict[tuple, list[Comparison]] = {}
    for c in comparisons:
        if c.stat.sd is not None and c.stat.n >= 2 and c.stat.undefined != "zero spread":
            groups.setdefault((c.setting, c.protocol, c.direction, c.metric), []).append(c)
    out = []
    for (setting, protocol, direction, metric), items in groups.items():
        ns = [c.stat.n for c in items]
        n = max(set(ns), key=lambda k: (ns.count(k), k))
        chosen = [c for c in items if c.stat.n == n]
        sd = math.sqrt(sum(c.stat.sd ** 2 for c in chosen) / len(chosen))
        out.append(StudyMdd(setting, protocol, direction, metric, n, sd, mdd(sd, n, alpha, power), len(chosen),
                            alpha, power))
    out.sort(key=lambda m: (m.setting.sort_key(), m.protocol, m.direction, TABLE_METRICS.index(m.metric)))
    return out


def mdd_table(items: list[StudyMdd], alpha: float = ALPHA, power: float = POWER) -> Table:
    rows, csv_rows = [], []
    for m in items:
        rows.append([Cell(f"{m.setting.dataset}"), Cell(m.setting.rerank.label), Cell(protocol_label(m.protocol,
                     m.direction)), Cell(METRIC_LABELS[m.metric]), Cell(str(m.n)), Cell(str(m.count)),
                     Cell(f"{m.pooled_sd:.2f}"), Cell(f"{m.mdd:.2f}")])
        csv_rows.append({"dataset": m.setting.dataset, "rerank": m.setting.rerank.enabled,
                         "distance": m.setting.distance, "protocol": m.protocol, "direction": m.direction,
                         "metric": METRIC_LABELS[m.metric], "n": m.n, "comparisons": m.count,
                         "pooled_sd": round(m.pooled_sd, 6), "mdd": round(m.mdd, 6)})
    return Table(
        key="stats_mdd",
        title="Minimum detectable difference at the study's seed count",
        columns=["Dataset", "Re-ranking", "Protocol", "Metric", "n", "Comparisons", "Pooled sd", "MDD"],
        rows=rows,
        notes=[f"MDD: the true mean difference a two-sided paired t-test at alpha {alpha:g} detects with power "
               f"{power:g} at n seeds: nc·sd/sqrt(n), nc from the noncentral t (scipy.stats.nct); sd pooled over "
               "the comparisons of that row as sqrt(mean sd²) of the paired differences. Before Holm's correction: "
               "the corrected test needs more."],
        align=["l", "l", "l", "l", "r", "r", "r", "r"],
        csv_rows=csv_rows,
        csv_columns=["dataset", "rerank", "distance", "protocol", "direction", "metric", "n", "comparisons",
                     "pooled_sd", "mdd"],
    )


# --------------------------------------------------------------------------------------------
# Gallery trials: spread within a run
# --------------------------------------------------------------------------------------------
def trial_spread_tables(runs: list[Run], metrics: tuple[str, ...] = STATS_METRICS) -> list[Table]:
    """Per setting: for each variant and protocol, the number of gallery trials, the mean over runs
    of the within-run SD over trials, and the SD over seeds of the runs' values, side by side."""
    import statistics

    index = _result_index(runs)
    info = _variant_info(runs)
    labels = _dataset_labels(runs)
    tables = []
    for setting in sorted({k[0] for k in index}, key=Setting.sort_key):
        keys = sorted((k for k in index if k[0] == setting),
                      key=lambda k: (variant_sort_key(info[k[3]]["order"], k[3]), k[1], k[2]))
        rows, csv_rows = [], []
        for key in keys:
            entries = index[key]
            trials = sorted({res.get("n_trials") for _, res in entries if res.get("n_trials") is not None})
            cells = [Cell(info[key[3]]["label"]), Cell(protocol_label(key[1], key[2])), Cell(str(len(entries))),
                     Cell("–".join(str(t) for t in (trials[0], trials[-1])) if len(trials) > 1
                          else (str(trials[0]) if trials else MISSING))]
            row = {"variant": key[3], "protocol": key[1], "direction": key[2], "seeds": len(entries),
                   "trials": trials[0] if len(trials) == 1 else None}
            for metric in metrics:
                sds = [res["trial_std"][metric] for _, res in entries
                       if (res.get("n_trials") or 0) > 1 and metric in res.get("trial_std", {})]
                within = statistics.fmean(sds) if sds else None
                seed_sd = statistics.stdev([res[metric] for _, res in entries]) if len(entries) > 1 else None
                cells += [Cell(MISSING if within is None else f"{within:.2f}"),
                          Cell(MISSING if seed_sd is None else f"{seed_sd:.2f}")]
                row[f"{METRIC_LABELS[metric]}_trial_sd"] = None if within is None else round(within, 6)
                row[f"{METRIC_LABELS[metric]}_seed_sd"] = None if seed_sd is None else round(seed_sd, 6)
            rows.append(cells)
            csv_rows.append(row)
        rr = "on" if setting.rerank.enabled else "off"
        heads = [h for m in metrics for h in (f"{METRIC_LABELS[m]} trial sd", f"{METRIC_LABELS[m]} seed sd")]
        tables.append(Table(
            key=f"trial_spread_{slug(setting.dataset)}_{setting.rerank.slug}_{slug(setting.distance)}",
            title=f"Gallery-trial spread within runs: {labels[setting.dataset]}, re-ranking {rr}",
            columns=["Variant", "Protocol", "Seeds", "Trials"] + heads,
            rows=rows,
            stamp=[f"Dataset: {labels[setting.dataset]} [{setting.dataset}]", f"Re-ranking: {setting.rerank.label}",
                   f"Distance: {setting.distance}"],
            notes=["Trial sd: the SD over a run's gallery trials (ddof=1), averaged over that variant's runs: how "
                   "much one run's value moves with the gallery draw. Seed sd: the SD over seeds of the runs' "
                   "values (each a mean over trials). Trials share one model, so they are never used as "
                   "replicates; the statistics use seeds. – = one trial or one seed."],
            align=["l", "l", "r", "r"] + ["r"] * len(heads),
            csv_rows=csv_rows,
            csv_columns=["variant", "protocol", "direction", "seeds", "trials"]
            + [f"{METRIC_LABELS[m]}_{k}" for m in metrics for k in ("trial_sd", "seed_sd")],
            meta={"rerank": setting.rerank.enabled, "dataset": setting.dataset},
        ))
    return tables


# --------------------------------------------------------------------------------------------
# Marks in the ablation table
# --------------------------------------------------------------------------------------------
@dataclass
class MarkIndex:
    """(setting, protocol, direction, variant, metric) -> marks string, for the ablation table."""

    marks: dict[tuple, str] = field(default_factory=dict)
    tested: set = field(default_factory=set)  # (setting, metric) pairs that were tested
    family_sizes: dict[Setting, int] = field(default_factory=dict)
    alpha: float = ALPHA

    @classmethod
    def of(cls, comparisons: list[Comparison]) -> "MarkIndex":
        out = cls()
        for c in comparisons:
            out.tested.add((c.setting, c.metric))
            out.family_sizes[c.setting] = c.family_size
            out.alpha = c.alpha
            if not c.resolved:
                continue
            key = (c.setting, c.protocol, c.direction, c.variant, c.metric)
            text = out.marks.get(key, "")
            for kind in (KIND_PREVIOUS, KIND_BASELINE):
                if kind in c.kinds and MARKS[kind] not in text:
                    text += MARKS[kind]
            out.marks[key] = text
        return out

    def legend(self, setting: Setting, family_size: int) -> str | None:
        alpha = self.alpha
        tested = [METRIC_LABELS[m] for m in TABLE_METRICS if (setting, m) in self.tested]
        if not tested:
            return None
        return (f"Marks ({', '.join(tested)} tested): {MARKS[KIND_PREVIOUS]} = the difference to the row above is "
                f"resolved, {MARKS[KIND_BASELINE]} = the difference to the baseline is resolved (paired t-test over "
                f"seeds, Holm-corrected p < {alpha:g} across this setting's {family_size} tested comparisons, "
                "those of the comparison methods included). A tested cell without a mark is not resolved: see the "
                "paired-differences table.")

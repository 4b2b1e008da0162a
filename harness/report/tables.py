"""Report tables: a small table model and its Markdown, LaTeX (booktabs), HTML and CSV forms.

Aggregation: each run's result value (already a mean over the protocol's trials) is one sample;
a table cell is the mean over seeds ± the sample standard deviation over seeds (ddof=1), with
the number of seeds n. With one seed there is no std and the cell shows the mean alone.
The best mean per column (compared at the displayed precision, so visible ties are all bold)
is bold: ``**`` in Markdown, ``\\textbf`` in LaTeX, ``<b>`` in HTML.
"""
from __future__ import annotations

import html
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from vireid.harness.report.collect import (METRIC_LABELS, TABLE_METRICS, RerankSetting, Run, _sortable,
                                    variant_sort_key)

DECIMALS = 2
MISSING = "–"


# --------------------------------------------------------------------------------------------
# Table model
# --------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One table cell: either plain text or a statistic (mean, std over n seeds)."""

    text: str = ""
    mean: float | None = None
    std: float | None = None
    n: int | None = None
    bold: bool = False
    show_n: bool = False  # append "(n=k)" when the row's cells have different seed counts
    marks: str = ""  # significance marks (e.g. "†"), shown after the value, outside the bold

    @property
    def is_stat(self) -> bool:
        return self.mean is not None


@dataclass
class Table:
    key: str  # file stem, unique within a report
    title: str
    columns: list[str]  # one label per column (sub-labels under the groups)
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # (label, span), covering all columns
    stamp: list[str] = field(default_factory=list)  # "what this table is" lines, shown with it
    notes: list[str] = field(default_factory=list)
    align: list[str] = field(default_factory=list)  # "l" / "r" per column
    csv_rows: list[dict[str, Any]] = field(default_factory=list)  # tidy numeric form for the CSV
    csv_columns: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"rerank": True} for ablation tables

    def __post_init__(self) -> None:
        if not self.align:
            self.align = ["l"] * len(self.columns)


def text_cell(value: Any, bold: bool = False) -> Cell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell(MISSING)
    return Cell(str(value), bold=bold)


def fmt_number(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "x"


# --------------------------------------------------------------------------------------------
# Aggregation over seeds
# --------------------------------------------------------------------------------------------
@dataclass
class Stat:
    mean: float
    std: float | None  # None with a single seed
    n: int
    minimum: float
    maximum: float
    seeds: list[Any]


def seed_stat(values: list[float], seeds: list[Any]) -> Stat:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(mean, std, len(values), min(values), max(values), list(seeds))


@dataclass(frozen=True)
class Setting:
    """What a table (or figure) is about: everything but the variant and the seed."""

    dataset: str
    rerank: RerankSetting
    distance: str

    def sort_key(self) -> tuple:
        return (self.dataset, self.rerank.sort_key(), self.distance)


def protocol_label(protocol: str, direction: str) -> str:
    return f"{protocol} ({direction})" if direction else protocol


def _result_index(runs: list[Run]) -> dict[tuple, list[tuple[Any, dict]]]:
    """(setting, protocol, direction, variant) -> [(replicate, result), ...] in run order: the
    replicate is the seed (on RegDB, split and seed; see :attr:`Run.replicate`)."""
    index: dict[tuple, list[tuple[Any, dict]]] = {}
    for run in runs:
        for res in run.results:
            key = (Setting(run.dataset, res["rerank"], res["distance"]), res["protocol"], res["direction"],
                   run.variant)
            index.setdefault(key, []).append((run.replicate, res))
    return index


def _variant_info(runs: list[Run]) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for run in runs:
        item = info.setdefault(run.variant, {"label": run.variant_label, "order": run.ablation_order,
                                             "method": run.method, "kind": run.kind_label,
                                             "imported": run.kind == "imported"})
        if item["order"] is None and run.ablation_order is not None:
            item["order"] = run.ablation_order
    return info


def _dataset_labels(runs: list[Run]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for run in runs:
        labels.setdefault(run.dataset, run.dataset_label)
    return labels


VALUE_NOTE = ("Values: mean ± std over seeds (sample std, ddof=1), each seed's value being the mean over the "
              "protocol's trials; n = number of seeds; bold = best mean in the column.")


def _mark_best(rows: list[list[Cell]], columns: Iterable[int]) -> None:
    for col in columns:
        stats = [row[col] for row in rows if row[col].is_stat]
        if not stats:
            continue
        best = max(round(c.mean, DECIMALS) for c in stats)
        for c in stats:
            c.bold = round(c.mean, DECIMALS) == best


def _stat_cell(stat: Stat | None) -> Cell:
    if stat is None:
        return Cell(MISSING)
    return Cell(mean=stat.mean, std=stat.std, n=stat.n)


def _n_text(ns: list[int]) -> str:
    ns = sorted(set(ns))
    if not ns:
        return MISSING
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


# The protocols a dataset's papers lead with, in the papers' column order, with their column
# titles; every other protocol goes in a secondary table.
MAIN_PROTOCOLS = {
    "sysu": ("sysu/all/single", "sysu/indoor/single"),
    "regdb": ("regdb/v2i", "regdb/i2v"),
    "llcm": ("llcm/v2i", "llcm/i2v"),
}
PROTOCOL_TITLES = {
    "sysu/all/single": "All-search", "sysu/indoor/single": "Indoor-search",
    "sysu/all/multi": "All-search (multi-shot)", "sysu/indoor/multi": "Indoor-search (multi-shot)",
    "regdb/v2i": "Visible→Thermal", "regdb/i2v": "Thermal→Visible",
    "regdb-agw/v2i": "Visible→Thermal (AGW eval)", "regdb-agw/i2v": "Thermal→Visible (AGW eval)",
    "llcm/v2i": "Visible→Infrared", "llcm/i2v": "Infrared→Visible",
    "llcm-deen/v2i": "Visible→Infrared (DEEN eval)", "llcm-deen/i2v": "Infrared→Visible (DEEN eval)",
}
# Protocol groups per table: 2 x 5 metric columns is what fits a two-column paper's table* and
# a 1280 px page with mean ± sd cells.
GROUPS_PER_TABLE = 2


def protocol_title(protocol: str) -> str:
    """The column-group title papers use (`All-search`, `Visible→Thermal`); the id otherwise."""
    return PROTOCOL_TITLES.get(protocol, protocol)


def _protocol_order(protocol: str) -> tuple:
    names = list(PROTOCOL_TITLES)
    return (names.index(protocol) if protocol in names else len(names), protocol)


def replicate_stat(entries: list[tuple[Any, dict]], metric: str) -> Stat:
    """A cell's statistic. Over seeds; on RegDB runs of several official splits, over splits:
    each split's value is the mean over its seeds and the cell is mean ± sd over the splits
    (the literature's RegDB result is the mean over the 10 splits, one model each)."""
    splits = sorted({res.get("split") for _, res in entries} - {None})
    if len(splits) <= 1:
        return seed_stat([res[metric] for _, res in entries], [s for s, _ in entries])
    per_split = [statistics.fmean(res[metric] for _, res in entries if res.get("split") == split) for split in splits]
    return seed_stat(per_split, [f"split{split}" for split in splits])


def _splits(entries: list[tuple[Any, dict]]) -> list[int]:
    return sorted({res.get("split") for _, res in entries} - {None})


def results_tables(runs: list[Run], marks=None) -> list[Table]:
    """The paper-form results tables: rows = variants (ablation rows by ablation_order, then the
    comparison methods, then imported checkpoints), column groups = protocols, each R1 / R10 /
    R20 / mAP / mINP. Per (dataset, re-ranking, distance): the main table holds the dataset's
    main protocols (:data:`MAIN_PROTOCOLS`) with re-ranking off; every other protocol (multi-shot,
    the reference codes' variants) and every re-ranking setting goes in secondary tables of at
    most :data:`GROUPS_PER_TABLE` protocols. ``meta["kind"]`` is ``main``, ``other`` or ``rerank``.

    `marks` (a :class:`vireid.harness.report.comparisons.MarkIndex`) adds the resolved-difference
    marks to the tested cells and their legend to the notes."""
    from vireid.harness.evaluation.protocols import get_protocol

    index = _result_index(runs)
    info = _variant_info(runs)
    labels = _dataset_labels(runs)
    tables = []
    for setting in sorted({key[0] for key in index}, key=Setting.sort_key):
        keys = [k for k in index if k[0] == setting]
        protocols = sorted({(k[1], k[2]) for k in keys}, key=lambda p: _protocol_order(p[0]))
        main = [p for p in protocols if p[0] in MAIN_PROTOCOLS.get(get_protocol(p[0]).dataset, ())]
        rest = [p for p in protocols if p not in main]
        if setting.rerank.enabled:
            chunks = [("rerank", protocols[i:i + GROUPS_PER_TABLE])
                      for i in range(0, len(protocols), GROUPS_PER_TABLE)]
        else:
            chunks = [("main", main)] if main else []
            chunks += [("other", rest[i:i + GROUPS_PER_TABLE]) for i in range(0, len(rest), GROUPS_PER_TABLE)]
        for kind, chosen in chunks:
            tables.append(_variant_table(setting, labels[setting.dataset], kind, chosen, index, info, marks))
    return tables


def _variant_table(setting: Setting, dataset_label: str, kind: str, protocols: list[tuple[str, str]],
                   index: dict, info: dict, marks) -> Table:
    variants = sorted({k[3] for k in index if k[0] == setting and (k[1], k[2]) in protocols},
                      key=lambda v: (info[v]["imported"], info[v]["order"] is None,
                                     variant_sort_key(info[v]["order"], v)))
    rows, trained_rows, csv_rows, fingerprints, ns, splits = [], [], [], set(), set(), set()
    for variant in variants:
        cells, row_ns = [], []
        for protocol, direction in protocols:
            entries = index.get((setting, protocol, direction, variant), [])
            fingerprints.update(res["dataset_fingerprint"] for _, res in entries)
            splits.update(_splits(entries))
            for metric in TABLE_METRICS:
                stat = replicate_stat(entries, metric) if entries else None
                cells.append(_stat_cell(stat))
                if marks is not None:
                    cells[-1].marks = marks.marks.get((setting, protocol, direction, variant, metric), "")
                if stat is not None:
                    row_ns.append(stat.n)
                    csv_rows.append(_csv_stat_row(setting, dataset_label, protocol, direction, variant,
                                                  info[variant], metric, stat))
        if len(set(row_ns)) > 1:
            for c in cells:
                c.show_n = c.is_stat
        ns.update(row_ns)
        rows.append([Cell(info[variant]["label"])] + cells)
        if not info[variant]["imported"]:
            trained_rows.append(rows[-1])
    _mark_best(trained_rows, range(1, 1 + len(protocols) * len(TABLE_METRICS)))
    rr = setting.rerank
    if kind == "rerank":
        title = f"{dataset_label}: re-ranking {rr.label}"
    else:
        shots = " (single-shot)" if kind == "main" and any("/single" in p for p, _ in protocols) else ""
        title = f"{dataset_label}: {'main' if kind == 'main' else 'other'} protocols{shots}, re-ranking off"
    over = f"the {len(splits)} RegDB splits (each split: the mean over its seeds)" if len(splits) > 1 else "seeds"
    value_note = (f"Mean ± sd over {over} (sample sd, ddof=1), each run's value being its mean over the protocol's "
                  f"gallery trials; n = {_n_text(sorted(ns))} per cell; bold = best mean among trained rows in the "
                  "column.")
    legend = marks.legend(setting, marks.family_sizes.get(setting, 0)) if marks is not None else None
    return Table(
        key=f"{kind}_{slug(setting.dataset)}_{rr.slug}_{slug(setting.distance)}"
            + ("" if kind == "main" else "_" + "_".join(slug(p) for p, _ in protocols)),
        title=title,
        columns=["Variant"] + [METRIC_LABELS[m] for _ in protocols for m in TABLE_METRICS],
        groups=[("", 1)] + [(protocol_title(p), len(TABLE_METRICS)) for p, _ in protocols],
        rows=rows,
        notes=[value_note] + ([legend] if legend else [])
        + [_provenance(setting, dataset_label, protocols, fingerprints, splits)],
        align=["l"] + ["r"] * (len(protocols) * len(TABLE_METRICS)),
        csv_rows=csv_rows,
        csv_columns=CSV_STAT_COLUMNS,
        meta={"rerank": rr.enabled, "dataset": setting.dataset, "kind": kind, "wide": True},
    )


def _provenance(setting: Setting, dataset_label: str, protocols: list[tuple[str, str]], fingerprints: set[str],
                splits: set[int]) -> str:
    """The table's provenance, one line under it: dataset, protocol ids, distance, fingerprint."""
    fingerprints = {f for f in fingerprints if f}
    ids = ", ".join(f"{protocol_title(p)} = {protocol_label(p, d)}" for p, d in protocols)
    text = (f"Provenance: dataset {dataset_label} [{setting.dataset}]; protocols {ids}; distance {setting.distance}; "
            f"re-ranking {setting.rerank.label}; ")
    if len(splits) > 1:
        return text + f"{len(fingerprints)} dataset fingerprints (one per RegDB split: " + \
            ", ".join(str(s) for s in sorted(splits)) + ")."
    if len(fingerprints) == 1:
        return text + f"dataset fingerprint {next(iter(fingerprints))}."
    if fingerprints:
        return text + "WARNING: the runs in this table saw different dataset fingerprints: " + \
            ", ".join(sorted(fingerprints)) + "."
    return text + "no dataset fingerprint recorded."


CSV_STAT_COLUMNS = ["dataset", "dataset_label", "rerank", "rerank_variant", "rerank_k1", "rerank_k2", "rerank_lambda",
                    "distance", "protocol", "direction", "variant", "variant_label", "ablation_order", "method", "kind",
                    "metric", "mean", "std", "n", "min", "max", "seeds"]


def _csv_stat_row(setting: Setting, dataset_label: str, protocol: str, direction: str, variant: str,
                  vinfo: dict, metric: str, stat: Stat) -> dict[str, Any]:
    rr = setting.rerank
    return {
        "dataset": setting.dataset, "dataset_label": dataset_label, "rerank": "on" if rr.enabled else "off",
        "rerank_variant": rr.variant if rr.enabled else None, "rerank_k1": rr.k1, "rerank_k2": rr.k2,
        "rerank_lambda": rr.lam, "distance": setting.distance,
        "protocol": protocol, "direction": direction, "variant": variant, "variant_label": vinfo["label"],
        "ablation_order": vinfo["order"], "method": vinfo["method"], "kind": vinfo["kind"],
        "metric": METRIC_LABELS[metric],
        "mean": round(stat.mean, 6), "std": None if stat.std is None else round(stat.std, 6), "n": stat.n,
        "min": stat.minimum, "max": stat.maximum, "seeds": " ".join(str(s) for s in stat.seeds),
    }


def our_runs_table(runs: list[Run]) -> Table:
    """Every variant (ablation rows and comparison methods such as AGW) on every dataset, protocol
    and re-ranking setting it was evaluated under, one row each; bold marks the best mean within
    each block of rows that share dataset, protocol, re-ranking and distance."""
    index = _result_index(runs)
    info = _variant_info(runs)
    labels = _dataset_labels(runs)
    blocks = sorted({(k[0], k[1], k[2]) for k in index},
                    key=lambda b: (b[0].dataset, b[1], b[2], b[0].rerank.sort_key(), b[0].distance))
    rows, csv_rows = [], []
    first_metric = 7
    for setting, protocol, direction in blocks:
        # Trained runs first, then imported checkpoints (their own kind of row, never bold).
        variants = sorted({k[3] for k in index if k[:3] == (setting, protocol, direction)},
                          key=lambda v: (info[v]["imported"], variant_sort_key(info[v]["order"], v)))
        block_rows, trained_rows = [], []
        for variant in variants:
            entries = index[(setting, protocol, direction, variant)]
            stats = {m: replicate_stat(entries, m) for m in TABLE_METRICS}
            block_rows.append([
                Cell(info[variant]["label"]), Cell(info[variant]["kind"]),
                Cell(f"{labels[setting.dataset]} [{setting.dataset}]"),
                Cell(protocol_label(protocol, direction)), Cell(setting.rerank.label), Cell(setting.distance),
                Cell(str(stats[TABLE_METRICS[0]].n)),
            ] + [_stat_cell(stats[m]) for m in TABLE_METRICS])
            if not info[variant]["imported"]:
                trained_rows.append(block_rows[-1])
            for m in TABLE_METRICS:
                csv_rows.append(_csv_stat_row(setting, labels[setting.dataset], protocol, direction, variant,
                                              info[variant], m, stats[m]))
        _mark_best(trained_rows, range(first_metric, first_metric + len(TABLE_METRICS)))
        rows.extend(block_rows)
    return Table(
        key="comparison_ours",
        title="Our runs (measured by this harness)",
        columns=["Method / variant", "Kind", "Dataset (ran on)", "Protocol", "Re-ranking", "Distance", "n"]
        + [METRIC_LABELS[m] for m in TABLE_METRICS],
        rows=rows,
        stamp=["Source: this harness's own runs (metrics.json files); datasets as labelled in each row. "
               "Rows of kind 'imported: <code>' are checkpoints trained with that public code and evaluated here "
               "(vireid import-checkpoint)."],
        notes=[VALUE_NOTE.replace("bold = best mean in the column",
                                  "bold = best mean among our trained rows of the same dataset, protocol, "
                                  "re-ranking and distance")],
        align=["l"] * 6 + ["r"] * (1 + len(TABLE_METRICS)),
        csv_rows=csv_rows,
        csv_columns=CSV_STAT_COLUMNS,
    )


def published_table(frame) -> Table:
    """The published numbers, as quoted (empty cells stay empty), with their sources."""
    cols = ["method", "venue", "year", "dataset", "protocol", "r1", "r10", "r20", "mAP", "mINP", "source"]
    heads = ["Method", "Venue", "Year", "Dataset", "Protocol", "R1", "R10", "R20", "mAP", "mINP", "Source"]
    rows, csv_rows = [], []
    for _, rec in frame.iterrows():
        rows.append([Cell(rec[c].strip() or MISSING) for c in cols])
        csv_rows.append({c: rec[c] for c in cols})
    return Table(
        key="comparison_published",
        title="Published results (quoted from their sources, not reproduced here)",
        columns=heads,
        rows=rows,
        stamp=["Numbers as printed by the cited source, on the real datasets; an empty cell means the source "
               "does not give that number."],
        align=["l", "l", "r", "l", "l", "r", "r", "r", "r", "r", "l"],
        csv_rows=csv_rows,
        csv_columns=cols,
    )


def _param_text(value: Any) -> str:
    if value is _ABSENT:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)


_ABSENT = object()


def differing_params(runs: list[Run]) -> list[str]:
    """Parameter keys whose value is not the same in every run (absent counts as a value)."""
    import json

    keys = sorted({k for run in runs for k in run.params})
    out = []
    for key in keys:
        values = {json.dumps(run.params.get(key, "<absent>"), sort_keys=True, default=str) for run in runs}
        if len(values) > 1:
            out.append(key)
    return out


def run_table(runs: list[Run]) -> Table:
    params = differing_params(runs)
    ordered = sorted(runs, key=lambda r: (r.dataset, variant_sort_key(r.ablation_order, r.variant),
                                          _sortable(r.seed), r.rel))
    rows, csv_rows = [], []
    for run in ordered:
        train = MISSING if run.train_seconds is None else f"{run.train_seconds:.1f}"
        rows.append([Cell(run.rel), Cell(run.variant_label), Cell(run.dataset), Cell(str(run.seed)),
                     text_cell(run.mlflow_run_id), text_cell(run.git_commit), Cell(train)]
                    + [Cell(_param_text(run.params.get(p, _ABSENT))) for p in params])
        row = {"run": run.rel, "variant": run.variant, "variant_label": run.variant_label, "dataset": run.dataset,
               "seed": run.seed, "mlflow_run_id": run.mlflow_run_id, "git_commit": run.git_commit,
               "train_seconds": run.train_seconds}
        row.update({p: _param_text(run.params.get(p, _ABSENT)) for p in params})
        csv_rows.append(row)
    n_same = len({k for run in runs for k in run.params}) - len(params)
    notes = [f"Parameters shown: the {len(params)} that differ between runs; {n_same} other parameter(s) have the "
             "same value in every run."]
    base = ["run", "variant", "variant_label", "dataset", "seed", "mlflow_run_id", "git_commit", "train_seconds"]
    return Table(
        key="runs",
        title="Runs",
        columns=["Run", "Variant", "Dataset", "Seed", "MLflow run id", "Git commit", "Train time (s)"] + params,
        rows=rows,
        notes=notes,
        align=["l", "l", "l", "r", "l", "l", "r"] + ["l"] * len(params),
        csv_rows=csv_rows,
        csv_columns=base + params,
    )


def simple_table(key: str, title: str, columns: list[str], rows: list[list[Any]], align: list[str] | None = None,
                 notes: list[str] | None = None) -> Table:
    return Table(key=key, title=title, columns=columns, rows=[[text_cell(v) for v in row] for row in rows],
                 align=align or [], notes=notes or [],
                 csv_rows=[dict(zip(columns, row)) for row in rows], csv_columns=list(columns))


# --------------------------------------------------------------------------------------------
# Renderers: the cells are formatted here, the tables laid out by pandas (DataFrame.to_markdown
# through tabulate, Styler.to_latex, Styler.to_html).
# --------------------------------------------------------------------------------------------
def _stat_text(cell: Cell, pm: str) -> str:
    text = fmt_number(cell.mean)
    if cell.std is not None:
        text += f" {pm} {fmt_number(cell.std)}"
    if cell.show_n:
        text += f" (n={cell.n})"
    return text


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def md_cell(cell: Cell) -> str:
    text = _stat_text(cell, "±") if cell.is_stat else _md_escape(cell.text)
    return (f"**{text}**" if cell.bold and text else text) + cell.marks


def _expand_groups(table: Table) -> list[str]:
    if not table.groups:
        return [""] * len(table.columns)
    out = []
    for label, span in table.groups:
        out.extend([label] * span)
    return out


def _has_groups(table: Table) -> bool:
    return bool(table.groups) and any(label for label, _ in table.groups)


def _frame(table: Table, cell_text, head_text, grouped: bool):
    """The table as a DataFrame of formatted strings; grouped: two-level column headers."""
    import pandas as pd

    heads = [head_text(c) for c in table.columns]
    if grouped and _has_groups(table):
        columns = pd.MultiIndex.from_arrays([[head_text(g) for g in _expand_groups(table)], heads])
    else:
        columns = pd.Index(heads)
    return pd.DataFrame([[cell_text(c) for c in row] for row in table.rows], columns=columns, dtype=object)


def to_markdown(table: Table) -> str:
    """A GitHub pipe table (tabulate); a column group goes into its columns' headers."""
    heads = [f"{g} · {c}" if g else c for g, c in zip(_expand_groups(table), table.columns)]
    flat = Table(table.key, table.title, heads, table.rows, align=table.align)
    frame = _frame(flat, md_cell, _md_escape, grouped=False)
    return frame.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=["right" if a == "r" else "left" for a in table.align])


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "·": r"$\cdot$", "→": r"$\rightarrow$",
                  "−": "$-$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "²": "$^2$", "<": "$<$", ">": "$>$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


_LATEX_MARKS = {"†": r"\dagger", "‡": r"\ddagger"}


def _latex_marks(cell: Cell) -> str:
    if not cell.marks:
        return ""
    return "$^{" + "".join(_LATEX_MARKS.get(ch, latex_escape(ch)) for ch in cell.marks) + "}$"


def latex_cell(cell: Cell, stacked: bool = False) -> str:
    """A cell's LaTeX; `stacked` puts the sd in small type under the mean (the wide tables)."""
    if cell.is_stat and stacked:
        mean = fmt_number(cell.mean) + (f" (n={cell.n})" if cell.show_n else "")
        mean = rf"\textbf{{{mean}}}" if cell.bold else mean
        # The marks take no width (\rlap, into the column gap): the numbers stay aligned and the
        # table keeps its width whichever cells are marked.
        marks = rf"\rlap{{{_latex_marks(cell)}}}" if cell.marks else ""
        if cell.std is None:
            return mean + marks
        return (r"\begin{tabular}[t]{@{}r@{}}" + mean + marks
                + rf"\\{{\scriptsize$\pm${fmt_number(cell.std)}}}\end{{tabular}}")
    text = _stat_text(cell, r"$\pm$") if cell.is_stat else latex_escape(cell.text)
    text = rf"\textbf{{{text}}}" if cell.bold and text else text
    return text + _latex_marks(cell)


def to_latex(table: Table) -> str:
    """booktabs LaTeX (pandas Styler.to_latex): the title as caption, the notes under the
    tabular; a wide table (``meta["wide"]``) is a ``table*`` with the sd under each mean."""
    wide = bool(table.meta.get("wide"))
    frame = _frame(table, lambda c: latex_cell(c, stacked=wide), latex_escape, grouped=True)
    body = frame.style.hide(axis="index").to_latex(
        hrules=True, multicol_align="c", column_format="".join(table.align), caption=latex_escape(table.title),
        label=f"tab:{table.key}", environment="table*" if wide else "table", position="t",
        position_float="centering")
    lines = body.rstrip("\n").split("\n")
    size = [r"\footnotesize", r"\setlength{\tabcolsep}{4pt}"] if wide else [r"\small"]
    lines[2:2] = size  # after \begin{table} and \centering
    if _has_groups(table):
        at = next(i for i, line in enumerate(lines) if r"\multicolumn" in line)
        rules, col = [], 1
        for label, span in table.groups:
            if label:
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        lines.insert(at + 1, " ".join(rules))
    notes = list(table.stamp) + list(table.notes)
    if notes:
        lines[-1:-1] = [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize\raggedright "
                        + r" \\ ".join(latex_escape(n) for n in notes) + "}"]
    head = ["% Generated by `vireid report`; do not edit by hand.", "% Needs \\usepackage{booktabs}."]
    return "\n".join(head + lines) + "\n"


def html_cell(cell: Cell) -> str:
    """A cell's inner HTML (the sd of a statistic in its own span, for the page's small type)."""
    if cell.is_stat:
        text = html.escape(fmt_number(cell.mean) + (f" (n={cell.n})" if cell.show_n else ""))
        text = f"<b>{text}</b>" if cell.bold else text
        if cell.marks:
            text += f"<sup>{html.escape(cell.marks)}</sup>"
        if cell.std is not None:
            text += f'<span class="sd"> ± {fmt_number(cell.std)}</span>'
        return f'<span title="n={cell.n}">{text}</span>'
    text = html.escape(cell.text)
    if re.fullmatch(r"https?://\S+", cell.text):
        text = f'<a href="{text}">{text}</a>'
    if cell.bold and text:
        text = f"<b>{text}</b>"
    if cell.marks:
        text += f"<sup>{html.escape(cell.marks)}</sup>"
    return text


def to_html(table: Table) -> str:
    """The table's HTML (pandas Styler.to_html) with class ``report``, id = the table key and an
    ``l``/``r`` alignment class on every cell."""
    import pandas as pd

    frame = _frame(table, html_cell, html.escape, grouped=True)
    classes = pd.DataFrame([list(table.align)] * len(frame), index=frame.index, columns=frame.columns)
    styler = frame.style.hide(axis="index").set_td_classes(classes)
    styler.set_uuid(slug(table.key)).set_table_attributes(f'class="report{" wide" if table.meta.get("wide") else ""}"')
    styler.cell_ids = False
    out = styler.to_html(doctype_html=False, exclude_styles=False, sparse_columns=True)
    return re.sub(r'<style type="text/css">\s*</style>\s*', "", out).strip()


def to_csv(table: Table) -> str:
    """The table's tidy rows (pandas; object columns, so integers stay integers and None is empty)."""
    import pandas as pd

    frame = pd.DataFrame(table.csv_rows, columns=table.csv_columns, dtype=object)
    return frame.to_csv(index=False, lineterminator="\n")

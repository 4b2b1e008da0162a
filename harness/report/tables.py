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
    """(setting, protocol, direction, variant) -> [(seed, result), ...] in run order."""
    index: dict[tuple, list[tuple[Any, dict]]] = {}
    for run in runs:
        for res in run.results:
            key = (Setting(run.dataset, res["rerank"], res["distance"]), res["protocol"], res["direction"],
                   run.variant)
            index.setdefault(key, []).append((run.seed, res))
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


def _stamp(setting: Setting, dataset_label: str, protocols: list[str], fingerprints: set[str]) -> list[str]:
    lines = [f"Dataset: {dataset_label} [{setting.dataset}]",
             f"Re-ranking: {setting.rerank.label}",
             f"Distance: {setting.distance}",
             f"Protocols: {', '.join(protocols)}"]
    fingerprints = {f for f in fingerprints if f}
    if len(fingerprints) == 1:
        lines.append(f"Dataset fingerprint: {next(iter(fingerprints))}")
    elif len(fingerprints) > 1:
        lines.append("WARNING: the runs in this table saw different dataset fingerprints: "
                     + ", ".join(sorted(fingerprints)))
    return lines


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


def ablation_tables(runs: list[Run], marks=None) -> list[Table]:
    """One table per (dataset, re-ranking setting, distance): rows = ablation variants ordered by
    ablation_order, column groups = protocols, columns = R1 / R10 / R20 / mAP / mINP.

    `marks` (a :class:`vireid.harness.report.comparisons.MarkIndex`) adds the resolved-difference
    marks to the tested cells and their legend to the notes."""
    index = _result_index(runs)
    info = _variant_info(runs)
    labels = _dataset_labels(runs)
    settings = sorted({key[0] for key in index}, key=Setting.sort_key)
    tables = []
    for setting in settings:
        keys = [k for k in index if k[0] == setting and info[k[3]]["order"] is not None]
        if not keys:
            continue
        protocols = sorted({(k[1], k[2]) for k in keys})
        variants = sorted({k[3] for k in keys}, key=lambda v: variant_sort_key(info[v]["order"], v))
        rows, csv_rows, fingerprints = [], [], set()
        for variant in variants:
            cells, ns = [], []
            for protocol, direction in protocols:
                entries = index.get((setting, protocol, direction, variant), [])
                fingerprints.update(res["dataset_fingerprint"] for _, res in entries)
                for metric in TABLE_METRICS:
                    stat = (seed_stat([res[metric] for _, res in entries], [s for s, _ in entries])
                            if entries else None)
                    cells.append(_stat_cell(stat))
                    if marks is not None:
                        cells[-1].marks = marks.marks.get((setting, protocol, direction, variant, metric), "")
                    if stat is not None:
                        ns.append(stat.n)
                        csv_rows.append(_csv_stat_row(setting, labels[setting.dataset], protocol, direction,
                                                      variant, info[variant], metric, stat))
            if len(set(ns)) > 1:
                for c in cells:
                    c.show_n = c.is_stat
            order = info[variant]["order"]
            order_text = f"{order:g}"
            rows.append([Cell(order_text), Cell(info[variant]["label"]), Cell(_n_text(ns))] + cells)
        _mark_best(rows, range(3, 3 + len(protocols) * len(TABLE_METRICS)))
        plabels = [protocol_label(p, d) for p, d in protocols]
        rr = "off" if not setting.rerank.enabled else (
            "on" if setting.rerank.variant == "standard" else f"on ({setting.rerank.variant})")
        legend = marks.legend(setting, marks.family_sizes.get(setting, 0)) if marks is not None else None
        tables.append(Table(
            key=f"ablation_{slug(setting.dataset)}_{setting.rerank.slug}_{slug(setting.distance)}",
            title=f"Ablation: {labels[setting.dataset]}, re-ranking {rr}",
            columns=["#", "Variant", "n"] + [METRIC_LABELS[m] for _ in protocols for m in TABLE_METRICS],
            groups=[("", 3)] + [(label, len(TABLE_METRICS)) for label in plabels],
            rows=rows,
            stamp=_stamp(setting, labels[setting.dataset], plabels, fingerprints),
            notes=[VALUE_NOTE] + ([legend] if legend else []),
            align=["r", "l", "r"] + ["r"] * (len(protocols) * len(TABLE_METRICS)),
            csv_rows=csv_rows,
            csv_columns=CSV_STAT_COLUMNS,
            meta={"rerank": setting.rerank.enabled, "dataset": setting.dataset},
        ))
    return tables


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
            stats = {m: seed_stat([res[m] for _, res in entries], [s for s, _ in entries]) for m in TABLE_METRICS}
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
# Renderers
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


def to_markdown(table: Table) -> str:
    heads = []
    spans = _expand_groups(table)
    for col, group in zip(table.columns, spans):
        heads.append(_md_escape(f"{group} · {col}" if group else col))
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in table.align) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _expand_groups(table: Table) -> list[str]:
    if not table.groups:
        return [""] * len(table.columns)
    out = []
    for label, span in table.groups:
        out.extend([label] * span)
    return out


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "·": r"$\cdot$",
                  "−": "$-$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "²": "$^2$", "<": "$<$", ">": "$>$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


_LATEX_MARKS = {"†": r"\dagger", "‡": r"\ddagger"}


def latex_cell(cell: Cell) -> str:
    text = _stat_text(cell, r"$\pm$") if cell.is_stat else latex_escape(cell.text)
    text = rf"\textbf{{{text}}}" if cell.bold and text else text
    if cell.marks:
        text += "$^{" + "".join(_LATEX_MARKS.get(ch, latex_escape(ch)) for ch in cell.marks) + "}$"
    return text


def to_latex(table: Table) -> str:
    caption = latex_escape(table.title)
    if table.stamp:
        caption += ". " + latex_escape("; ".join(table.stamp)) + "."
    if table.notes:
        caption += " " + latex_escape(" ".join(table.notes))
    lines = ["% Generated by `vireid report`; do not edit by hand.",
             "% Needs \\usepackage{booktabs}.",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{caption}}}", rf"\label{{tab:{table.key}}}",
             r"\begin{tabular}{" + "".join(table.align) + "}", r"\toprule"]
    if table.groups and any(label for label, _ in table.groups):
        parts, rules, col = [], [], 1
        for label, span in table.groups:
            if label:
                parts.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(label)}}}")
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            else:
                parts.extend([""] * span)
            col += span
        lines.append(" & ".join(parts) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(latex_escape(c) for c in table.columns) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        lines.append(" & ".join(latex_cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def html_cell(cell: Cell, tag: str = "td") -> str:
    text = html.escape(_stat_text(cell, "±") if cell.is_stat else cell.text)
    if cell.is_stat:
        title = f"n={cell.n}"
        if cell.std is not None:
            title += f", std={cell.std:.4f}"
        inner = f'<span title="{html.escape(title)}">{text}</span>'
    elif re.fullmatch(r"https?://\S+", cell.text):
        inner = f'<a href="{html.escape(cell.text)}">{text}</a>'
    else:
        inner = text
    if cell.bold and text:
        inner = f"<b>{inner}</b>"
    if cell.marks:
        inner += f"<sup>{html.escape(cell.marks)}</sup>"
    return f"<{tag}>{inner}</{tag}>"


def to_html(table: Table) -> str:
    out = [f'<table class="report" id="{html.escape(table.key)}">', "<thead>"]
    if table.groups and any(label for label, _ in table.groups):
        out.append("<tr>" + "".join(
            f'<th colspan="{span}" class="group">{html.escape(label)}</th>' for label, span in table.groups) + "</tr>")
    out.append("<tr>" + "".join(f'<th class="{a}">{html.escape(c)}</th>'
                                for c, a in zip(table.columns, table.align)) + "</tr>")
    out.append("</thead>")
    out.append("<tbody>")
    for row in table.rows:
        out.append("<tr>" + "".join(html_cell(c).replace("<td>", f'<td class="{a}">', 1)
                                    for c, a in zip(row, table.align)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_csv(table: Table) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=table.csv_columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in table.csv_rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()

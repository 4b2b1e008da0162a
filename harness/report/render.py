"""Assemble the report and write it: `report.md`, a self-contained `report.html` (figures inlined
as base64 PNG data URIs, CSS inline, no scripts, no external assets), `tables/*.tex` (booktabs),
`tables/*.csv` and `figures/*.png`.

Every file is written atomically (temporary file + ``os.replace``, see :mod:`vireid.harness.io`); the
figures and tables go first and the two pages last, so an interrupted build leaves the previous
pages intact. The page contains no timestamps and everything is sorted, so the same inputs give
byte-identical output. Files a previous build wrote that this build does not (listed in
``.report-manifest.json``) are removed.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vireid.harness.io import atomic_write_bytes, atomic_write_text
from vireid.harness.report import ReportError
from vireid.harness.report.collect import (Run, load_best_params, load_published, load_runs, load_study,
                                    variant_sort_key)
from vireid.harness.report.comparisons import (STATS_FILE, STATS_METRICS, MarkIndex, build_comparisons, mdd_table,
                                               stats_json, stats_tables, study_mdd, trial_spread_tables)
from vireid.harness.report.reference import best_matcher, load_audits, reference_tables
from vireid.harness.report.stats import ALPHA, POWER
from vireid.harness.report.summary import check_readme, summary_markdown, summary_parts, write_readme
from vireid.harness.report.figures import (Figure, cmc_figures, importance_figure, intermediate_values,
                                    optimization_history)
from vireid.harness.report.tables import (Table, ablation_tables, our_runs_table, published_table, run_table,
                                   simple_table, to_csv, to_html, to_latex, to_markdown)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PUBLISHED = REPO_ROOT / "reports" / "published_results.csv"
MANIFEST = ".report-manifest.json"
SUMMARY_FILE = "summary.md"
TABLES_DIR = "tables"
FIGURES_DIR = "figures"


# --------------------------------------------------------------------------------------------
# Document model
# --------------------------------------------------------------------------------------------
@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str  # plain text; `backticks` become code spans


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str


@dataclass
class TableBlock:
    table: Table
    files: list[str] = field(default_factory=list)  # paths relative to the report


@dataclass
class Image:
    figure: Figure
    rel: str  # path relative to the report


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
def _reference_points(runs: list[Run], audits: list[dict[str, Any]]) -> list:
    """The dataset audit's tables and, per audited dataset, each variant's R1 against the best matcher."""
    if not audits:
        return []
    blocks: list = [Heading(3, "Reference points (dataset audit)"),
                    Para("What a model must beat, measured on the same test split by `vireid data audit`: "
                         "chance, nearest-neighbour matchers and a closed-form linear map. Trained rows above "
                         "are means over seeds.")]
    for audit in audits:
        fp = audit.get("fingerprint", "")
        mine = [r for r in runs if r.kind == "trained" and any(res.get("dataset_fingerprint") == fp
                                                                  for res in r.results)]
        lines = []
        for protocol in audit["cross_modal"]:
            best = best_matcher(audit, protocol)
            if best is None:
                continue
            by_variant: dict[str, list[float]] = {}
            for r in mine:
                for res in r.results:
                    if res.get("protocol") == protocol and not res["rerank"].enabled:
                        by_variant.setdefault(r.variant_label, []).append(float(res["r1"]))
            for label, values in sorted(by_variant.items()):
                mean = sum(values) / len(values)
                ratio = f"{mean / best[1]:.1f}x" if best[1] > 0 else "n/a"
                lines.append(f"{label}: {protocol} R1 {mean:.1f} (n={len(values)}) = {ratio} the best reference "
                             f"matcher ({MATCHER_NAMES.get(best[0], best[0])}, {best[1]:.1f})")
        blocks += [TableBlock(t) for t in reference_tables(audit)]
        if lines:
            blocks.append(Para("; ".join(lines) + "."))
    return blocks


MATCHER_NAMES = {"pixels": "grey-pixel NN", "gradient": "gradient NN", "linear": "linear map"}


def _summary(runs: list[Run], runs_dir: str) -> list:
    datasets = sorted({(r.dataset, r.dataset_label) for r in runs})
    variants: dict[str, Run] = {}
    seeds: dict[str, set] = {}
    for run in runs:
        variants.setdefault(run.variant, run)
        seeds.setdefault(run.variant, set()).add(json.dumps(run.seed, sort_keys=True))
    ordered = sorted(variants.values(), key=lambda r: variant_sort_key(r.ablation_order, r.variant))
    items = [f"{len(runs)} run(s) read from `{runs_dir}` (every `metrics.json` below it).",
             "Datasets: " + "; ".join(f"{label} [{name}]" for name, label in datasets) + "."]
    for run in ordered:
        if run.kind == "imported":
            items.append(f"{run.variant_label} (`{run.variant}`, imported checkpoint trained with the "
                         f"{run.source_label}, evaluated here).")
            continue
        kind = "ablation row" if run.is_ablation else "comparison method"
        items.append(f"{run.variant_label} (`{run.variant}`, {kind}): {len(seeds[run.variant])} seed(s).")
    return [
        Heading(2, "Summary"),
        Bullets(items),
        Para("Our numbers are measured by this harness on the datasets named in each table (a synthetic dataset "
             "is not the real benchmark). Published numbers are quoted from their sources for orientation and "
             "are kept in a separate table; they are not comparable with runs on other data."),
    ]


def _results_summary(parts) -> list:
    blocks: list = [Heading(2, "Results summary")]
    if not parts:
        blocks.append(Para("No comparisons: the runs have no ablation baseline (a run with `ablation_order` set)."))
    for _head, intro, table, lines, mdd_line in parts:
        blocks += [Para(intro), TableBlock(table), Bullets(lines)]
        if mdd_line:
            blocks.append(Para(mdd_line))
    return blocks


def _statistics(runs: list[Run], comparisons, mdds, alpha: float, power: float) -> list:
    blocks: list = [Heading(2, "Statistics"), Para(
        "Seeds are the replicates: variants are paired by seed, and each run's value is its mean over the "
        "protocol's gallery trials. Each table lists every variant against the baseline and every ablation row "
        "against the row above, per protocol and tested metric, with the mean paired difference, its 95 % t "
        "interval, the two-sided paired t-test p, the Holm-corrected p (family: one dataset and re-ranking "
        f"setting), Hedges' g_z, n and the minimum detectable difference. Machine-readable: `{STATS_FILE}`.")]
    if not comparisons:
        blocks.append(Para("No comparisons: the runs have no ablation baseline."))
    else:
        if mdds:
            blocks.append(TableBlock(mdd_table(mdds, alpha, power)))
        for table in stats_tables(comparisons, power):
            blocks.append(TableBlock(table))
    blocks.append(Heading(3, "Gallery-trial spread"))
    blocks += [TableBlock(t) for t in trial_spread_tables(runs)]
    return blocks


def _tuning(study, best_params: dict | None, best_params_path: str | None) -> list:
    blocks: list = [Heading(2, "Hyperparameter tuning")]
    if study is None:
        blocks.append(Para("No Optuna study was given (`--storage` / `--study`), so no tuning study is reported."))
    else:
        blocks += _study_blocks(study)
    if best_params is not None:
        blocks.append(Heading(3, "Best parameters file"))
        blocks.append(Para(f"From `{best_params_path}`."))
        rows = [[k, _value_text(v)] for k, v in sorted(best_params.items(), key=lambda kv: str(kv[0]))]
        blocks.append(TableBlock(simple_table("tuning_best_params_file", "Best parameters file",
                                              ["Parameter", "Value"], rows)))
        if study is not None:
            blocks += _compare_best(study, best_params)
    return blocks


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _compare_best(study, best_params: dict) -> list:
    try:
        trial_params = study.best_trial.params
    except ValueError:
        return []
    differing = sorted(k for k in trial_params if k in best_params and best_params[k] != trial_params[k])
    if differing:
        return [Para("Note: the best-parameters file differs from the study's best trial for: "
                     + ", ".join(f"`{k}`" for k in differing) + ".")]
    return []


def _study_blocks(study) -> list:
    import optuna

    trials = study.get_trials(deepcopy=False)
    directions = [d.name.lower() for d in study.directions]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    blocks: list = [Bullets([
        f"Study `{study.study_name}`, direction: {', '.join(directions)}.",
        f"{len(trials)} trial(s): " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none") + ".",
    ])]
    # Best trial.
    blocks.append(Heading(3, "Best trial"))
    if len(study.directions) > 1:
        best = study.best_trials
        blocks.append(Para(f"Multi-objective study: {len(best)} trial(s) on the Pareto front: "
                           + ", ".join(str(t.number) for t in best) + "."))
    elif not complete:
        blocks.append(Para("No trial has completed, so there is no best trial yet."))
    else:
        best = study.best_trial
        blocks.append(Para(f"Trial {best.number}: value {best.value:.6g}."))
        rows = [[k, _value_text(v)] for k, v in sorted(best.params.items())]
        blocks.append(TableBlock(simple_table("tuning_best_trial", f"Best trial ({best.number}) parameters",
                                              ["Parameter", "Value"], rows)))
    # History and intermediate values.
    blocks.append(Heading(3, "Optimization history"))
    fig = optimization_history(study)
    if fig is None:
        blocks.append(Para("No optimization history to plot (no completed single-objective trial)."))
    else:
        blocks.append(fig)
    fig = intermediate_values(study)
    if fig is not None:
        blocks.append(fig)
    # Importances.
    blocks.append(Heading(3, "Parameter importances"))
    blocks += _importance_blocks(study, complete)
    # Trial table.
    blocks.append(Heading(3, "Trials"))
    names = sorted({k for t in trials for k in t.params})
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.values is None:
            value = "–"
        else:
            value = ", ".join(f"{v:.6g}" for v in t.values)
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append([t.number, t.state.name.lower(), value]
                    + [_value_text(t.params[n]) if n in t.params else None for n in names]
                    + [len(t.intermediate_values), "–" if duration is None else f"{duration:.1f}"])
    blocks.append(TableBlock(simple_table("tuning_trials", "Trials", ["Trial", "State", "Value"] + names
                                          + ["Steps reported", "Duration (s)"], rows,
                                          align=["r", "l", "r"] + ["l"] * len(names) + ["r", "r"])))
    return blocks


def _importance_blocks(study, complete: list) -> list:
    import optuna

    if len(study.directions) > 1:
        return [Para("Parameter importances are not computed for a multi-objective study.")]
    if len(complete) < 2:
        return [Para(f"Too few completed trials to compute parameter importances: need at least 2, the study has "
                     f"{len(complete)}.")]
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as exc:
        return [Para(f"Parameter importances could not be computed: {exc}")]
    if not importances:
        return [Para("No parameter varied across the completed trials, so there are no importances to show.")]
    out: list = []
    fig = importance_figure(importances, study.study_name)
    if fig is not None:
        out.append(fig)
    rows = [[name, f"{value:.4f}"] for name, value in importances.items()]
    out.append(TableBlock(simple_table("tuning_importances", "Parameter importances (fANOVA, seed 0)",
                                       ["Parameter", "Importance"], rows, align=["l", "r"])))
    return out


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
def build_report(runs_dir: str | os.PathLike, out_dir: str | os.PathLike, storage: str | None = None,
                 study: str | None = None, best_params: str | os.PathLike | None = None,
                 published_csv: str | os.PathLike | None = DEFAULT_PUBLISHED, readme: str | os.PathLike | None = None,
                 stats_metrics: tuple[str, ...] = STATS_METRICS, alpha: float = ALPHA,
                 power: float = POWER, audits: list[str | os.PathLike] | tuple = ()) -> dict[str, Any]:
    """Build the report from `runs_dir` into `out_dir` and return the written paths:
    ``{"markdown": Path, "html": Path, "tables_tex": [...], "tables_csv": [...], "figures": [...],
    "stats": Path, "summary": Path, "readme": Path or None}``.

    `stats_metrics` are the metrics the paired tests cover (and the Holm family with them);
    `readme`, a Markdown file with a results region, gets that region replaced by the summary;
    `audits` are `vireid data audit` outputs (audit.json), shown as the reference points.

    `storage` is an Optuna storage URL (``sqlite:///...``) or a journal file (``*.log``/``*.jsonl``);
    `study` the study name (optional when the storage holds one study). Raises
    :class:`vireid.harness.report.ReportError` (a ``ValueError``) for bad inputs, before writing anything.
    """
    if study is not None and storage is None:
        raise ReportError("--study needs --storage (the Optuna storage URL or journal file)")
    runs_dir_text = str(runs_dir)
    out = Path(out_dir)
    # Read everything first: an input error writes nothing.
    runs = load_runs(runs_dir)
    published = load_published(published_csv)
    study_obj = load_study(storage, study) if storage is not None else None
    best = load_best_params(best_params)
    audit_list = load_audits(list(audits))
    if readme is not None:
        check_readme(readme)
    comparisons = build_comparisons(runs, tuple(stats_metrics), alpha, power)
    mdds = study_mdd(comparisons, alpha, power)
    parts = summary_parts(runs, comparisons, mdds)

    blocks: list = [Heading(1, "vireid-bench report")]
    blocks += _summary(runs, runs_dir_text)
    blocks += _results_summary(parts)

    blocks.append(Heading(2, "Ablation"))
    abl = ablation_tables(runs, MarkIndex.of(comparisons))
    if not abl:
        blocks.append(Para("No ablation runs (runs with `ablation_order` set) were found."))
    for rr_on in (False, True):
        chosen = [t for t in abl if t.meta["rerank"] == rr_on]
        if chosen:
            blocks.append(Heading(3, f"Re-ranking {'on' if rr_on else 'off'}"))
            blocks += [TableBlock(t) for t in chosen]

    blocks += _statistics(runs, comparisons, mdds, alpha, power)

    blocks.append(Heading(2, "Comparison"))
    blocks.append(Heading(3, "Our runs"))
    blocks.append(TableBlock(our_runs_table(runs)))
    blocks += _reference_points(runs, audit_list)
    blocks.append(Heading(3, "Published results"))
    if published is None:
        where = "no file given" if published_csv is None else f"`{published_csv}` not found"
        blocks.append(Para(f"No published results ({where})."))
    elif published.empty:
        blocks.append(Para("The published-results file has no rows."))
    else:
        blocks.append(Para("Quoted, not reproduced: numbers on the real benchmarks as printed by each source "
                           "(papers or official code READMEs), read from "
                           f"`{_display_path(published_csv)}`. Not comparable with our runs above."))
        blocks.append(TableBlock(published_table(published)))

    blocks.append(Heading(2, "CMC curves"))
    blocks += cmc_figures(runs)

    blocks += _tuning(study_obj, best, None if best_params is None else str(best_params))

    blocks.append(Heading(2, "Runs"))
    blocks.append(TableBlock(run_table(runs)))

    # Resolve file names (unique, deterministic) and attach them to the blocks.
    used_tables: set[str] = set()
    used_figures: set[str] = set()
    resolved: list = []
    for block in blocks:
        if isinstance(block, TableBlock):
            block.table.key = _unique(block.table.key, used_tables)
            block.files = [f"{TABLES_DIR}/{block.table.key}.tex", f"{TABLES_DIR}/{block.table.key}.csv"]
            resolved.append(block)
        elif isinstance(block, Figure):
            block.key = _unique(block.key, used_figures)
            resolved.append(Image(block, f"{FIGURES_DIR}/{block.key}.png"))
        else:
            resolved.append(block)

    written: dict[str, Any] = {"tables_tex": [], "tables_csv": [], "figures": []}
    rels: list[str] = []
    for block in resolved:
        if isinstance(block, Image):
            path = out / block.rel
            atomic_write_bytes(path, block.figure.png)
            written["figures"].append(path)
            rels.append(block.rel)
        elif isinstance(block, TableBlock):
            tex, csv = (out / f for f in block.files)
            atomic_write_text(tex, to_latex(block.table))
            atomic_write_text(csv, to_csv(block.table))
            written["tables_tex"].append(tex)
            written["tables_csv"].append(csv)
            rels += block.files
    stats_path, summary_path = out / STATS_FILE, out / SUMMARY_FILE
    summary_text = summary_markdown(parts)
    atomic_write_text(stats_path, stats_json(comparisons, power))
    atomic_write_text(summary_path, summary_text)
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(resolved))
    atomic_write_text(html_path, render_html(resolved))
    rels += [STATS_FILE, SUMMARY_FILE, "report.md", "report.html"]
    _cleanup(out, rels)
    written["markdown"] = md_path
    written["html"] = html_path
    written["stats"] = stats_path
    written["summary"] = summary_path
    written["readme"] = None
    if readme is not None:
        write_readme(readme, summary_text)
        written["readme"] = Path(readme)
    return written


def _display_path(path: str | os.PathLike) -> str:
    """`path` relative to the repository when it lies inside it (keeps the page machine-independent)."""
    try:
        return Path(path).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _unique(key: str, used: set[str]) -> str:
    candidate, i = key, 2
    while candidate in used:
        candidate, i = f"{key}-{i}", i + 1
    used.add(candidate)
    return candidate


def _cleanup(out: Path, rels: list[str]) -> None:
    """Remove files the previous build listed in its manifest that this build did not write."""
    manifest = out / MANIFEST
    previous: list[str] = []
    if manifest.is_file():
        try:
            previous = list(json.loads(manifest.read_text(encoding="utf-8")).get("files", []))
        except (ValueError, AttributeError):
            previous = []
    keep = set(rels)
    real_out = os.path.realpath(out)
    for rel in previous:
        if rel in keep or not isinstance(rel, str) or ".." in Path(rel).parts:
            continue
        # A symlinked tables/ or figures/ pointing outside --out is never cleaned through.
        parent = os.path.realpath((out / rel).parent)
        if os.path.commonpath([parent, real_out]) != real_out:
            continue
        if Path(rel).parts[:1] in ((TABLES_DIR,), (FIGURES_DIR,)):
            try:
                (out / rel).unlink()
            except FileNotFoundError:
                pass
    atomic_write_text(manifest, json.dumps({"files": sorted(keep)}, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def render_markdown(blocks: list) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Code):
            parts.append("```\n" + block.text.rstrip("\n") + "\n```")
        elif isinstance(block, TableBlock):
            t = block.table
            lines = [f"**Table: {t.title}**"]
            if t.stamp:
                lines.append("")
                lines += [f"- {s}" for s in t.stamp]
            lines += ["", to_markdown(t), ""]
            notes = list(t.notes) + ["Files: " + ", ".join(f"`{f}`" for f in block.files)]
            lines.append(" ".join(f"_{n}_" if not n.startswith("Files") else n for n in notes))
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{block.figure.title}]({block.rel})\n\n_{block.figure.caption}_")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.45}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
code{background:#f3f4f6;padding:0 .25em;border-radius:3px;font-size:90%}
.table-wrap{overflow-x:auto;margin:1em 0 1.8em}
table.report{border-collapse:collapse;font-size:13px;margin:.5em 0}
table.report th,table.report td{padding:3px 8px;white-space:nowrap}
table.report thead tr:first-child th{border-top:2px solid #1f2328}
table.report thead tr:last-child th{border-bottom:1px solid #1f2328}
table.report tbody tr:last-child td{border-bottom:2px solid #1f2328}
table.report th.group{border-bottom:1px solid #8c959f;text-align:center}
.r{text-align:right}.l{text-align:left}
.caption{font-weight:600;margin:0}.stamp{margin:.2em 0;padding-left:1.2em;font-size:13px;color:#424a53}
.note{font-size:12px;color:#57606a;margin:.2em 0}
figure{margin:1em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #d0d7de}
figcaption{font-size:12px;color:#57606a}
""".strip()


def _inline(text: str) -> str:
    """Escape text, turning `code` spans into <code>."""
    pieces = re.split(r"`([^`]*)`", text)
    out = []
    for i, piece in enumerate(pieces):
        out.append(f"<code>{html.escape(piece)}</code>" if i % 2 else html.escape(piece))
    return "".join(out)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render_html(blocks: list) -> str:
    body: list[str] = []
    title = "vireid-bench report"
    for block in blocks:
        if isinstance(block, Heading):
            if block.level == 1:
                title = block.text
            body.append(f'<h{block.level} id="{_anchor(block.text)}">{_inline(block.text)}</h{block.level}>')
        elif isinstance(block, Para):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, TableBlock):
            t = block.table
            part = ['<div class="table-wrap">', f'<p class="caption">Table: {html.escape(t.title)}</p>']
            if t.stamp:
                part.append('<ul class="stamp">' + "".join(f"<li>{html.escape(s)}</li>" for s in t.stamp) + "</ul>")
            part.append(to_html(t))
            for note in t.notes:
                part.append(f'<p class="note">{html.escape(note)}</p>')
            part.append('<p class="note">Files: ' + ", ".join(f"<code>{html.escape(f)}</code>" for f in block.files)
                        + "</p>")
            part.append("</div>")
            body.append("\n".join(part))
        elif isinstance(block, Image):
            data = base64.b64encode(block.figure.png).decode("ascii")
            body.append(f'<figure id="{html.escape(block.figure.key)}"><img alt="{html.escape(block.figure.title)}" '
                        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.figure.caption)} '
                        f"(<code>{html.escape(block.rel)}</code>)</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")

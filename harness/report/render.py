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
from vireid.harness.report.figures import (MIN_IMPORTANCE_TRIALS, Figure, cmc_figures, distance_figures,
                                           importance_figure, retrieval_figures, training_figures, trial_figures,
                                           tuning_figures)
from vireid.harness.report.tables import (Table, our_runs_table, published_table, results_tables, run_table,
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
                         "chance, nearest-neighbour matchers on pixels, a closed-form linear map and, where the "
                         "runs start from pretrained weights, that backbone before any fine-tuning. Trained rows "
                         "above are means over seeds.")]
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
                start = audit["cross_modal"][protocol].get("pretrained")
                versus = f"; its starting backbone alone: {start['r1']:.1f}" if start else ""
                lines.append(f"{label}: {protocol} R1 {mean:.1f} (n={len(values)}) = {ratio} the best pixel "
                             f"matcher ({MATCHER_NAMES.get(best[0], best[0])}, {best[1]:.1f}){versus}")
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
    # History, intermediate values, slice and parallel coordinates.
    blocks.append(Heading(3, "Tuning plots"))
    blocks += _figure_blocks(tuning_figures(study))
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
        # No wall-clock duration: the report is a DVC output with the same bytes in every clone
        # (trial durations are in the MLflow runs).
        rows.append([t.number, t.state.name.lower(), value]
                    + [_value_text(t.params[n]) if n in t.params else None for n in names]
                    + [len(t.intermediate_values)])
    blocks.append(TableBlock(simple_table("tuning_trials", "Trials", ["Trial", "State", "Value"] + names
                                          + ["Steps reported"], rows,
                                          align=["r", "l", "r"] + ["l"] * len(names) + ["r"])))
    return blocks


def _importance_blocks(study, complete: list) -> list:
    import optuna

    if len(study.directions) > 1:
        return [Para("Parameter importances are not computed for a multi-objective study.")]
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return [Para(f"Too few completed trials to compute parameter importances: need at least "
                     f"{MIN_IMPORTANCE_TRIALS}, the study has {len(complete)}.")]
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as exc:
        return [Para(f"Parameter importances could not be computed: {exc}")]
    if not importances:
        return [Para("No parameter varied across the completed trials, so there are no importances to show.")]
    rows = [[name, f"{value:.4f}"] for name, value in importances.items()]
    return [importance_figure(study),
            TableBlock(simple_table("tuning_importances", "Parameter importances (fANOVA, seed 0)",
                                    ["Parameter", "Importance"], rows, align=["l", "r"]))]


def _figure_blocks(items: list) -> list:
    """Figures as they are; a figure's missing-input note (a str) as a paragraph."""
    return [Para(item) if isinstance(item, str) else item for item in items]


def _results(runs: list[Run], marks: MarkIndex) -> list:
    tables = results_tables(runs, marks)
    if not tables:
        return [Heading(2, "Results"), Para("No runs with results were found.")]
    blocks: list = [Heading(2, "Results"), Para(
        "Rows are variants (ablation rows in ablation order, then comparison methods, then imported checkpoints); "
        "column groups are the protocols papers report, each R1 / R10 / R20 / mAP / mINP. The main tables hold each "
        "dataset's main protocols with re-ranking off; the other protocols and re-ranking follow in secondary "
        "tables.")]
    for kind, head in (("main", "Main results"), ("other", "Other protocols (multi-shot, reference-code evaluations)"),
                       ("rerank", "Re-ranking")):
        chosen = [t for t in tables if t.meta["kind"] == kind]
        if chosen:
            blocks.append(Heading(3, head))
            blocks += [TableBlock(t) for t in chosen]
    return blocks


def _figures(runs: list[Run]) -> list:
    blocks: list = [Heading(2, "Figures"), Heading(3, "CMC curves")]
    blocks += cmc_figures(runs)
    blocks.append(Heading(3, "Training curves"))
    blocks += _figure_blocks(training_figures(runs))
    blocks.append(Heading(3, "Retrieval examples"))
    blocks += _figure_blocks(retrieval_figures(runs))
    blocks.append(Heading(3, "Cross-modal distances"))
    blocks += _figure_blocks(distance_figures(runs))
    blocks.append(Heading(3, "Gallery trials"))
    blocks += trial_figures(runs) or [Para("No protocol has more than one gallery trial.")]
    return blocks


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
def build_report(runs_dir: str | os.PathLike, out_dir: str | os.PathLike, storage: str | None = None,
                 study: str | None = None, best_params: str | os.PathLike | None = None,
                 published_csv: str | os.PathLike | None = DEFAULT_PUBLISHED, readme: str | os.PathLike | None = None,
                 stats_metrics: tuple[str, ...] = STATS_METRICS, alpha: float = ALPHA,
                 power: float = POWER, audits: list[str | os.PathLike] | tuple = (),
                 run_files: str | os.PathLike | None = None) -> dict[str, Any]:
    """Build the report from `runs_dir` into `out_dir` and return the written paths:
    ``{"markdown": Path, "html": Path, "tables_tex": [...], "tables_csv": [...], "figures": [...],
    "stats": Path, "summary": Path, "readme": Path or None}``.

    `stats_metrics` are the metrics the paired tests cover (and the Holm family with them);
    `readme`, a Markdown file with a results region, gets that region replaced by the summary;
    `audits` are `vireid data audit` outputs (audit.json), shown as the reference points;
    `run_files` is the training runs' folder (``runs``) whose history.csv and features.npz the
    figures read, matched to each metrics.json by its path below `runs_dir` (not needed when
    `runs_dir` is that folder itself).

    `storage` is an Optuna storage URL (``sqlite:///...``) or a journal file (``*.log``/``*.jsonl``);
    `study` the study name (optional when the storage holds one study). Raises
    :class:`vireid.harness.report.ReportError` (a ``ValueError``) for bad inputs, before writing anything.
    """
    if study is not None and storage is None:
        raise ReportError("--study needs --storage (the Optuna storage URL or journal file)")
    runs_dir_text = str(runs_dir)
    out = Path(out_dir)
    # Read everything first: an input error writes nothing.
    runs = load_runs(runs_dir, run_files)
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

    blocks += _results(runs, MarkIndex.of(comparisons))

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

    blocks += _figures(runs)

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
    """The page: the blocks as plain values, laid out by the one Jinja2 template
    (``templates/report.html.j2``, autoescaped; tables and inline code come pre-rendered)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.PackageLoader("vireid.harness.report", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    title, items = "vireid-bench report", []
    for block in blocks:
        if isinstance(block, Heading):
            title = block.text if block.level == 1 else title
            items.append({"kind": "heading", "level": block.level, "anchor": _anchor(block.text),
                          "html": Markup(_inline(block.text))})
        elif isinstance(block, Para):
            items.append({"kind": "para", "html": Markup(_inline(block.text))})
        elif isinstance(block, Bullets):
            items.append({"kind": "bullets", "entries": [Markup(_inline(i)) for i in block.items]})
        elif isinstance(block, Code):
            items.append({"kind": "code", "text": block.text})
        elif isinstance(block, TableBlock):
            t = block.table
            items.append({"kind": "table", "key": t.key, "title": t.title, "stamp": t.stamp, "notes": t.notes,
                          "files": block.files, "table": Markup(to_html(t))})
        elif isinstance(block, Image):
            items.append({"kind": "image", "key": block.figure.key, "title": block.figure.title,
                          "caption": block.figure.caption, "rel": block.rel,
                          "data": base64.b64encode(block.figure.png).decode("ascii")})
    return env.get_template("report.html.j2").render(title=title, blocks=items)

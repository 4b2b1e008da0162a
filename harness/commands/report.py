"""`vireid report`: rebuild the results report from run metrics (no retraining)."""
from __future__ import annotations

import argparse

from vireid.harness.commands.common import add_command, add_params_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "report",
        "build reports/study/report.md + report.html, LaTeX/CSV tables and PNG figures from run metrics",
        "Build the results report from <runs>/**/metrics.json, an optional Optuna study and the "
        "published-results CSV. Reads only those inputs; never retrains.",
        ["vireid report --runs results/metrics --out reports/study",
         "vireid report --from-report reports/study --readme README.md"],
    )
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="folder searched recursively for metrics.json (default: params report.runs_dir)")
    p.add_argument("--run-files", default=None, metavar="DIR",
                   help="the training runs' folder (e.g. runs) whose history.csv and features.npz the figures "
                        "read, matched to each metrics.json by its path below --runs (not needed when --runs is "
                        "that folder)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: params report.out_dir, reports/study, as the pipeline's report stage)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage: sqlite:///path.db or a journal file ending in .log/.jsonl")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="Optuna study name (default: the `study` of --best-params, else the storage's only study)")
    p.add_argument("--best-params", default=None, metavar="FILE", help="best-params YAML (e.g. tune/best_params.yaml)")
    p.add_argument("--published", default=None, metavar="FILE",
                   help="published-results CSV (default: reports/published_results.csv in the repository)")
    p.add_argument("--no-published", action="store_true", help="leave the published-results table out")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also write the results summary into FILE's results region (between the "
                        "'<!-- vireid:results:begin' and '<!-- vireid:results:end' comment lines), e.g. README.md")
    p.add_argument("--from-report", default=None, metavar="DIR",
                   help="with --readme: copy DIR/summary.md of an already built report into the README's "
                        "results region, building nothing (e.g. --from-report reports/study)")
    p.add_argument("--stats-metrics", default="r1,mAP", metavar="LIST",
                   help="comma-separated metrics the paired tests cover (default: r1,mAP; from r1,r10,r20,mAP,mINP)")
    p.add_argument("--audit", action="append", default=[], metavar="PATH",
                   help="a `vireid data audit` result (audit.json), or a folder searched for them, whose "
                        "reference points the report shows (repeatable)")
    add_params_args(p, experiment=False, data=False)  # the `report:` block gives the defaults above
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.report import ReportError
    from vireid.harness.report.render import build_report

    if args.from_report is not None:
        return _readme_from_report(args)
    runs, out, published = _paths(args)
    if args.published and not args.no_published:
        from pathlib import Path

        if not Path(args.published).is_file():
            raise ReportError(f"published-results file not found: {args.published}")
    from vireid.harness.report.collect import TABLE_METRICS

    metrics = tuple(m.strip() for m in args.stats_metrics.split(",") if m.strip())
    unknown = [m for m in metrics if m not in TABLE_METRICS]
    if unknown or not metrics:
        raise ReportError(f"--stats-metrics: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(TABLE_METRICS)}")
    study = args.study
    if study is None and args.storage and args.best_params:  # the study that wrote the best parameters
        from vireid.harness.report.collect import load_best_params

        study = (load_best_params(args.best_params) or {}).get("study")
    written = build_report(runs, out, storage=args.storage, study=study,
                           best_params=args.best_params, published_csv=published, readme=args.readme,
                           stats_metrics=metrics, audits=_audit_files(args.audit), run_files=args.run_files)
    print(f"wrote {written['markdown']}")
    print(f"wrote {written['html']}")
    print(f"wrote {len(written['tables_tex'])} LaTeX tables and {len(written['tables_csv'])} CSVs in "
          f"{written['markdown'].parent / 'tables'}")
    print(f"wrote {len(written['figures'])} figures in {written['markdown'].parent / 'figures'}")
    print(f"wrote {written['stats']} and {written['summary']}")
    if written["readme"] is not None:
        print(f"wrote the results region of {written['readme']}")
    return 0


def _paths(args: argparse.Namespace):
    """--runs, --out and --published, else the params file's `report:` block (a relative
    published_csv is the repository's file, as the built-in default)."""
    from pathlib import Path

    from vireid.harness.commands.common import resolve
    from vireid.harness.config import REPO_ROOT

    cfg = resolve(args).report if None in (args.runs, args.out, args.published) else None
    published = args.published
    if published is None and cfg is not None:
        published = Path(cfg.published_csv)
        published = published if published.is_absolute() else REPO_ROOT / published
    return args.runs or cfg.runs_dir, args.out or cfg.out_dir, None if args.no_published else published


def _audit_files(paths: list[str]) -> list:
    from pathlib import Path

    out = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("audit.json"))
            if not found:
                raise ValueError(f"--audit {path}: no audit.json below this folder (run `vireid data audit`)")
            out += found
        else:
            out.append(path)
    return out


def _readme_from_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vireid.harness.report import ReportError
    from vireid.harness.report.render import SUMMARY_FILE
    from vireid.harness.report.summary import check_readme, write_readme

    if args.readme is None:
        raise ReportError("--from-report needs --readme FILE (the file whose results region to write)")
    if args.runs is not None:
        raise ReportError("--from-report copies a built report's summary; drop --runs (or drop --from-report to "
                          "rebuild the report)")
    summary = Path(args.from_report) / SUMMARY_FILE
    if not summary.is_file():
        raise ReportError(f"{summary} not found: build the report first (vireid report --runs ... --out "
                          f"{args.from_report}, or make study)")
    check_readme(args.readme)
    changed = write_readme(args.readme, summary.read_text(encoding="utf-8"))
    print(f"{'wrote' if changed else 'unchanged:'} the results region of {args.readme} (from {summary})")
    return 0

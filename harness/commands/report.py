"""`vireid report`: rebuild the results report from run metrics (no retraining)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="build reports/report.md + report.html, LaTeX/CSV tables and PNG figures from run metrics",
        description="Build the results report from <runs>/**/metrics.json, an optional Optuna study and the "
                    "published-results CSV. Reads only those inputs; never retrains.",
    )
    p.add_argument("--runs", required=True, metavar="DIR", help="folder searched recursively for metrics.json")
    p.add_argument("--out", default="reports", metavar="DIR", help="output folder (default: reports)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage: sqlite:///path.db or a journal file ending in .log/.jsonl")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="Optuna study name (default: the storage's only study)")
    p.add_argument("--best-params", default=None, metavar="FILE", help="best-params YAML (e.g. tune/best_params.yaml)")
    p.add_argument("--published", default=None, metavar="FILE",
                   help="published-results CSV (default: reports/published_results.csv in the repository)")
    p.add_argument("--no-published", action="store_true", help="leave the published-results table out")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.report import ReportError
    from vireid.harness.report.render import DEFAULT_PUBLISHED, build_report

    published = None if args.no_published else (args.published or DEFAULT_PUBLISHED)
    if args.published and not args.no_published:
        from pathlib import Path

        if not Path(args.published).is_file():
            raise ReportError(f"published-results file not found: {args.published}")
    written = build_report(args.runs, args.out, storage=args.storage, study=args.study,
                           best_params=args.best_params, published_csv=published)
    print(f"wrote {written['markdown']}")
    print(f"wrote {written['html']}")
    print(f"wrote {len(written['tables_tex'])} LaTeX tables and {len(written['tables_csv'])} CSVs in "
          f"{written['markdown'].parent / 'tables'}")
    print(f"wrote {len(written['figures'])} figures in {written['markdown'].parent / 'figures'}")
    return 0

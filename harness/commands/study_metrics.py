"""`vireid study-metrics`: the study's aggregated metrics and training curves for DVC."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from vireid.harness.commands.common import add_command

    p = add_command(subparsers, "study-metrics", "mean/std/n per variant x protocol x metric, and training curves",
                    "Aggregate the evaluate stage's metrics over seeds into one JSON file (dvc metrics) and "
                    "average the runs' histories into curves (dvc plots).",
                    ["vireid study-metrics --metrics results/metrics --out metrics/study.json --runs runs "
                     "--curves metrics/curves"])
    p.add_argument("--metrics", required=True, metavar="DIR",
                   help="folder searched for metrics.json (evaluate outputs)")
    p.add_argument("--out", required=True, metavar="FILE", help="the aggregated metrics JSON")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="the study's run folders <DIR>/<dataset>/<variant>/seed<n>")
    p.add_argument("--curves", default=None, metavar="DIR", help="where to write <dataset>/<variant>.csv curves")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.study_metrics import write

    for path in write(args.metrics, args.out, args.runs, args.curves):
        print(f"wrote {path}")
    return 0

"""`vireid tune`: Optuna search over the loss weights declared in `params.yaml: tune`."""
from __future__ import annotations

import argparse
import json

from vireid.harness.commands.common import add_params_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tune", help="tune loss weights with Optuna on the validation identities")
    add_params_args(p, experiment=False)
    p.add_argument("--study", default=None, help="study name (default: tune.study_name)")
    p.add_argument("--n-trials", type=int, default=None, help="total finished trials wanted in the study")
    p.add_argument("--jobs", type=int, default=None, help="worker processes to start (default: tune.jobs)")
    p.add_argument("--out-dir", default="tune", help="folder for trial run outputs (default: tune)")
    p.add_argument("--best-params", default="tune/best_params.yaml", help="where to write the best parameters")
    p.add_argument("--progress", action="store_true", help="progress bars inside each trial")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.tuning import run_study

    summary = run_study(args.params, args.overrides, args.study, args.n_trials, args.jobs, args.out_dir,
                        args.best_params, args.progress,
                        args.data)
    print(json.dumps(summary, indent=2))
    return 0

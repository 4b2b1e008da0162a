"""`vireid tune`: Optuna search over the loss weights declared in `params.yaml: tune`."""
from __future__ import annotations

import argparse
import json

from vireid.harness.commands.common import add_command, add_params_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "tune", "tune loss weights with Optuna on the validation identities",
                    "Run (or resume) the Optuna study of params.yaml's `tune` block: each trial trains on the "
                    "training identities and is scored and pruned on the validation identities; one line per "
                    "trial; the best values go to --best-params.",
                    ["vireid tune --data synth-sysu --jobs 2",
                     "vireid tune --data sysu --set tune.storage=postgresql://user@db-host/vireid_tune",
                     "vireid train -e idkl --best-params tune/best_params.yaml"])
    add_params_args(p, experiment=False)
    p.add_argument("--study", default=None, help="study name (default: tune.study_name)")
    p.add_argument("--n-trials", type=int, default=None, help="total finished trials wanted in the study")
    p.add_argument("--jobs", type=int, default=None, help="worker processes to start (default: tune.jobs)")
    p.add_argument("--out-dir", default="tune", help="folder for trial run outputs (default: tune)")
    p.add_argument("--best-params", default="tune/best_params.yaml", help="where to write the best parameters")
    p.add_argument("--progress", action="store_true", help="each trial's epoch lines (and a bar on a terminal)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.tuning import run_study

    summary = run_study(args.params, args.overrides, args.study, args.n_trials, args.jobs, args.out_dir,
                        args.best_params, args.progress,
                        args.data)
    print(json.dumps(summary, indent=2))
    return 0

"""`vireid train`: one training run (single process, torchrun, or `--ddp` to launch torchrun)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from vireid.harness.commands.common import add_command, add_params_args, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "train", "train, validate and test one model; log it to MLflow",
                    "Train one variant on one dataset, select on the validation identities, test once under "
                    "every protocol and write the run folder (params, history, checkpoint, features, metrics). "
                    "One line per epoch (losses, validation, ETA) goes to stderr; a bar too on a terminal.",
                    ["vireid train -e idkl --data synth-sysu --set train.epochs=20",
                     "vireid train -e idkl --resume --run-dir runs/synth-sysu/idkl/seed1",
                     "vireid train -e baseline --data sysu --ddp --nproc 2"])
    add_params_args(p)
    p.add_argument("--run-dir", default=None,
                   help="output folder, empty unless resuming (default: a new runs/adhoc/<dataset>-<experiment>-"
                        "seed<seed>-<time>, never a folder of the DVC study)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_const", const=True, default=False,
                        help="continue from <run-dir>/checkpoint.pt if present; refused when its settings differ "
                             "(train.epochs may be raised)")
    resume.add_argument("--resume-partial", dest="resume", action="store_const", const="partial",
                        help="continue an unfinished run of the same settings and code in <run-dir>, else empty "
                             "it and start over (the DVC train stage)")
    p.add_argument("--best-params", default=None, metavar="FILE",
                   help="apply the overrides of a tuning result (tune/best_params.yaml)")
    p.add_argument("--ddp", action="store_true", help="launch torchrun with --nproc processes")
    p.add_argument("--nproc", type=int, default=2, help="processes for --ddp (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the epoch lines stay)")
    p.set_defaults(handler=run)


def best_params_overrides(path: str | None) -> list[str]:
    if not path:
        return []
    from vireid.harness.config import read_yaml

    data = read_yaml(path)
    if not isinstance(data.get("overrides"), list):
        from vireid.harness.schema import ConfigError

        raise ConfigError(f"{path}: expected a list under 'overrides' (written by vireid tune)")
    return [str(item) for item in data["overrides"]]


def default_run_dir(params) -> Path:
    """A new folder for an ad-hoc run, beside (never inside) the study's DVC outputs runs/<dataset>/..."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "adhoc" / f"{params.data.name}-{params.experiment.name}-seed{params.train.seed}-{stamp}"


def launch_torchrun(args: argparse.Namespace) -> int:
    argv = [a for a in sys.argv[1:] if a != "--ddp"]
    if argv and argv[0] != "train":
        argv = ["train"] + argv
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "vireid.harness"] + argv
    return subprocess.call(cmd)


def run(args: argparse.Namespace) -> int:
    if args.ddp and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args)
    from vireid.harness import distributed as dist

    params = resolve(args, best_params_overrides(args.best_params))
    dist.init_from_env()
    try:
        from vireid.harness.runner import run_training

        if args.resume and not args.run_dir:
            from vireid.harness.cli import UserError

            raise UserError("--resume needs --run-dir: the run folder to continue")
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(params)
        metrics = run_training(params, run_dir, resume=args.resume, progress=not args.no_progress)
    finally:
        dist.shutdown()
    if metrics:
        from vireid.harness.evaluation.evaluate import format_results

        print(format_results(metrics["results"]))
        print(f"outputs in {run_dir}")
    return 0

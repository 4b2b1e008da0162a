"""`vireid repro-matrix`: the stages of DVC matrices (the study's training runs) N at a time."""
from __future__ import annotations

import argparse

from vireid.harness.commands.common import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "repro-matrix", "run DVC matrix stages' entries N at a time (dvc repro each)",
                    "Run `dvc repro --single-item` for every entry of the given stages (train -> train@...) and "
                    "every stage they depend on, --jobs at a time (one per device with --devices); a stage starts "
                    "once those it depends on have succeeded. DVC decides what is stale and records each entry "
                    "in dvc.lock; run `dvc repro` afterwards for the stages downstream (docs/distributed.md).",
                    ["vireid repro-matrix                # the whole pipeline, study.jobs stages at a time",
                     "vireid repro-matrix train --jobs 2 && dvc repro",
                     "vireid repro-matrix train audit    # the audit beside the training runs",
                     "vireid repro-matrix train --devices 0,1,2,3",
                     "vireid repro-matrix train --list > stages.txt   # one stage per line, e.g. for a Slurm array"])
    p.add_argument("stage", nargs="*",
                   help="stages of dvc.yaml; a matrix stage runs all its entries (e.g. train, audit); "
                        "none: every stage of the pipeline (make study)")
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="entries at a time (default: study.jobs of params.yaml, or one per device)")
    p.add_argument("--params", default=None, help="parameter file for study.jobs (default: params.yaml)")
    p.add_argument("--devices", default=None, metavar="LIST",
                   help="comma-separated CUDA device ids; each job runs with CUDA_VISIBLE_DEVICES=<one of them>")
    p.add_argument("--list", action="store_true",
                   help="print the stage names and the stages they depend on; run nothing")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from vireid.harness.scaleout import StageError, matrix_stages, repro_matrix

    log = logging.getLogger("vireid.scaleout")
    if args.list:
        members, upstream = matrix_stages(args.stage)
        for name in members:
            print(name)
        if upstream:
            print(f"# depends on (run first: dvc repro {' '.join(upstream)})")
        return 0
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    jobs = args.jobs
    if jobs is None and not devices:
        from vireid.harness.config import load_params

        jobs = load_params(args.params).study.jobs
    runs = repro_matrix(args.stage, jobs, devices)
    failed = [r.stage for r in runs if r.returncode and not r.skipped]
    skipped = [r.stage for r in runs if r.skipped]
    if skipped:
        log.warning("%d stages not run because a stage they depend on failed: %s", len(skipped), ", ".join(skipped))
    if failed:
        raise StageError(f"{len(failed)} of {len(runs)} stages failed: {', '.join(failed)} (their output is above); "
                         "the stages that succeeded are recorded in dvc.lock")
    return 0

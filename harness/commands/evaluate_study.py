"""`vireid evaluate-study`: `vireid evaluate` for every run of the study, in one process.

The DVC pipeline's evaluate stage. One stage (not one per run) because each DVC stage costs
seconds of DVC's own bookkeeping under its repository lock, several times the seconds its
evaluation takes (docs/distributed.md, "Where the study's time goes"); the runs are scored
`--jobs` at a time. The runs are the `study` block's variants x datasets x seeds, in the folders
the train stages write, `<runs>/<dataset>/<variant>/seed<seed>`. Outputs per run:
`<out>/<dataset>/<variant>/seed<seed>/metrics.json` (the report's input) and
`<cmc>/<dataset>/<variant>-seed<seed>.csv` (`dvc plots`); `--summary` holds every run's
headline numbers as one `dvc metrics` file, {dataset: {variant: {seed<seed>: {...}}}}.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from vireid.harness.commands.common import add_command, add_params_args, bounded_int

log = logging.getLogger("vireid.evaluate")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "evaluate-study", "evaluate every run of the study (the DVC evaluate stage)",
                    "Score every run folder of the study (params `study`: variants x datasets x seeds) under "
                    "its dataset's protocols, with and without re-ranking, as `vireid evaluate` does for one.",
                    ["vireid evaluate-study --runs runs --out results/metrics --summary results/summary.json "
                     "--cmc results/cmc",
                     "vireid evaluate-study --runs runs --out /tmp/metrics --jobs 1 --set eval.trials=[1,2]"])
    add_params_args(p, experiment=False, data=False)
    p.add_argument("--runs", required=True, metavar="DIR",
                   help="the train stages' folders <DIR>/<dataset>/<variant>/seed<n>")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where to write <dataset>/<variant>/seed<n>/metrics.json")
    p.add_argument("--summary", default=None, metavar="FILE", help="every run's headline numbers (dvc metrics)")
    p.add_argument("--cmc", default=None, metavar="DIR", help="where to write <dataset>/<variant>-seed<n>.csv")
    p.add_argument("--jobs", type=bounded_int(1, 256), default=None,
                   help="runs scored at once, one CPU thread each (default: the CPU count); "
                        "results do not depend on it")
    p.set_defaults(handler=run)


def study_runs(args: argparse.Namespace) -> list[tuple[str, str, int, object]]:
    """(dataset, variant, seed, that dataset's params) of every run of the study, in study order."""
    from vireid.harness.config import load_params

    study = load_params(args.params, None, list(args.overrides)).study
    per_dataset = {ds: load_params(args.params, None, list(args.overrides), dataset=ds) for ds in study.datasets}
    return [(ds, variant, seed, per_dataset[ds]) for ds in study.datasets for variant in study.variants
            for seed in study.seeds]


def _evaluate(params, run_dir: Path) -> dict:
    import torch

    from vireid.harness.commands.evaluate import evaluate_run

    torch.set_num_threads(1)  # one thread per job: `--jobs` jobs share the CPUs
    return evaluate_run(params, run_dir)


def run(args: argparse.Namespace) -> int:
    from joblib import Parallel, delayed, parallel_config

    from vireid.harness.cli import UserError
    from vireid.harness.commands.evaluate import write_outputs
    from vireid.harness.io import atomic_write_json
    from vireid.harness.study_metrics import summary_of

    runs = study_runs(args)
    folders = [Path(args.runs) / ds / variant / f"seed{seed}" for ds, variant, seed, _ in runs]
    missing = [str(f) for f in folders if not (f / "metrics.json").is_file()]
    if missing:
        raise UserError(f"{len(missing)} run folder(s) of the study have no metrics.json, e.g. {missing[0]}; "
                        "train them first (vireid repro-matrix train, or dvc repro)")
    jobs = min(args.jobs or os.cpu_count() or 1, len(runs))
    log.info("scoring %d runs, %d at a time", len(runs), jobs)
    with parallel_config(backend="loky", inner_max_num_threads=1):
        scored = Parallel(n_jobs=jobs)(delayed(_evaluate)(params, folder)
                                       for (_, _, _, params), folder in zip(runs, folders))
    summary: dict = {}
    for (ds, variant, seed, _), folder, metrics in zip(runs, folders, scored):
        cmc = Path(args.cmc) / ds / f"{variant}-seed{seed}.csv" if args.cmc else None
        write_outputs(metrics, Path(args.out) / ds / variant / f"seed{seed}" / "metrics.json", cmc)
        summary.setdefault(ds, {}).setdefault(variant, {})[f"seed{seed}"] = summary_of(metrics["results"])
        headline = next((r for r in metrics["results"] if not r["rerank"]["enabled"]), None)
        if headline:
            log.info("%s: %s R1 %.2f mAP %.2f", folder, headline["protocol"], headline["r1"], headline["mAP"])
    if args.summary:
        atomic_write_json(args.summary, summary)
    print(f"wrote {len(runs)} metrics files under {args.out}")
    return 0

"""`vireid evaluate`: test protocols of a finished run, with and without re-ranking.

Reads `<run-dir>/features.npz` and `<run-dir>/metrics.json`; writes the full result list
(the report's input), a flat summary for `dvc metrics`, and a CMC CSV for `dvc plots`.
A folder written by `vireid import-checkpoint` holds weights only: its test features are
extracted here, on the dataset of this command's params (`--data`), under that dataset's protocols.
`vireid evaluate-study` (harness/commands/evaluate_study.py) does the same for every run of the study.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vireid.harness.commands.common import add_command, add_params_args, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "evaluate", "evaluate a trained run's test features under its protocols",
                    "Score a run folder's test features under every protocol of its dataset, with and without "
                    "re-ranking (eval.rerank_modes); print the headline numbers and write the report's input.",
                    ["vireid evaluate --data synth-sysu --run-dir runs/synth-sysu/idkl/seed1 --out results/idkl.json",
                     "vireid evaluate --data sysu --run-dir runs/imported/idkl --out results/imported.json "
                     "--summary summary.json"])
    add_params_args(p, experiment=False)
    p.add_argument("--run-dir", required=True, help="a folder written by `vireid train` or `vireid import-checkpoint`")
    p.add_argument("--out", required=True, help="metrics JSON for the report (run info + all results)")
    p.add_argument("--summary", default=None, help="flat JSON of headline numbers for `dvc metrics`")
    p.add_argument("--cmc", default=None, help="CSV of CMC curves for `dvc plots`")
    p.set_defaults(handler=run)


def read_trained(path: Path) -> dict:
    """A run's metrics.json as `vireid train` writes it (checked against the results format)."""
    from vireid.harness.cli import UserError
    from vireid.harness.evaluation.results import MetricsFile

    if not path.is_file():
        raise UserError(f"{path}: no metrics.json; train the run first (vireid train)")
    return MetricsFile.read(path, require_results=True).to_dict()


def evaluate_run(params, run_dir: str | Path) -> dict[str, Any]:
    """{"run": run info, "results": every protocol x eval.rerank_modes} of one run folder."""
    from vireid.harness.evaluation.features_file import load_features
    from vireid.harness.imported_run import is_imported, score_arrays
    from vireid.harness.runner import evaluate_arrays

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if is_imported(run_dir) and not metrics_path.is_file():
        arrays, run_info, fingerprint = score_arrays(run_dir, params)
        protocols: list[str] = []
    else:
        trained = read_trained(metrics_path)
        arrays = load_features(run_dir / "features.npz", max_bytes=params.eval.max_features_mib << 20)
        run_info = trained["run"]
        fingerprint = trained["results"][0].get("dataset_fingerprint")
        protocols = list(dict.fromkeys(r["protocol"] for r in trained["results"]))
    results = []
    for rerank in params.eval.rerank_modes:
        results += evaluate_arrays(arrays, protocols or params.protocols(), Path(params.data.root), rerank,
                                   params.eval.rerank_params, fingerprint, params.eval.trials)
    return {"run": run_info, "results": results}


def write_outputs(metrics: dict[str, Any], out: str | Path, cmc: str | Path | None = None) -> None:
    """The report's metrics JSON and, optionally, the CMC CSV of `dvc plots`."""
    from vireid.harness.io import atomic_write_json, atomic_write_text
    from vireid.harness.runner import cmc_table

    atomic_write_json(out, metrics)
    if cmc:
        atomic_write_text(cmc, cmc_table(metrics["results"]))


def run(args: argparse.Namespace) -> int:
    from vireid.harness.evaluation.evaluate import format_results

    metrics = evaluate_run(resolve(args), args.run_dir)
    write_outputs(metrics, args.out, args.cmc)
    if args.summary:
        from vireid.harness.io import atomic_write_json
        from vireid.harness.study_metrics import summary_of

        atomic_write_json(args.summary, summary_of(metrics["results"]))
    print(format_results(metrics["results"]), end="")
    print(f"wrote {args.out}")
    return 0

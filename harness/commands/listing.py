"""`vireid list variants|datasets|protocols|runs`: what the harness knows and what is on disk."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vireid.harness.commands.common import add_command, text_table as table

KINDS = ("variants", "datasets", "protocols", "runs")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "list", "list variants, datasets, protocols or trained runs",
                    "variants: the experiment overlays (experiments/*.yaml) with their method and label; "
                    "datasets: the dataset overlays (experiments/data/*.yaml) and whether each is prepared; "
                    "protocols: the evaluation protocols; runs: run folders below --runs with their state and "
                    "headline result.",
                    ["vireid list variants", "vireid list datasets", "vireid list runs --runs runs/synth-sysu"])
    p.add_argument("kind", choices=KINDS, help="what to list")
    p.add_argument("--runs", default="runs", metavar="DIR", help="folder searched for run folders (default: runs)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def variants() -> str:
    from vireid.harness.config import list_experiments, load_params

    rows = []
    for name in list_experiments():
        params = load_params(experiment=name)
        rows.append([name, params.model.method, params.experiment.label or "-", params.experiment.description or "-"])
    return table(["variant", "method", "label", "description"], rows)


def datasets() -> str:
    from vireid.harness.config import list_dataset_overlays, load_params

    rows = []
    for name in list_dataset_overlays():
        data = load_params(dataset=name).data
        prepared = (Path(data.prepared_dir) / "manifest.parquet").is_file()
        kind = "synthetic" if data.synthetic.enabled else "real"
        rows.append([name, data.dataset, kind, data.label, data.prepared_dir if prepared else "no"])
    return table(["name", "layout", "kind", "label", "prepared"], rows)


def runs(root: Path) -> str:
    """Run folders (those holding params.yaml) and their state: tested, training (checkpoint only)."""
    rows = []
    for params_file in sorted(root.rglob("params.yaml")):
        folder = params_file.parent
        metrics_file = folder / "metrics.json"
        state, headline = ("checkpoint" if (folder / "checkpoint.pt").is_file() else "started"), "-"
        if metrics_file.is_file():
            try:
                results = json.loads(metrics_file.read_text(encoding="utf-8")).get("results") or []
            except (ValueError, AttributeError):
                results = None
            if results:
                first = results[0]
                state, headline = "tested", f"{first['protocol']}: R1 {first['r1']:.2f} mAP {first['mAP']:.2f}"
            else:
                state = "unreadable metrics.json"
        rows.append([folder.relative_to(root).as_posix() or ".", state, headline])
    if not rows:
        return f"no run folders below {root} (train one: vireid train)\n"
    return table(["run", "state", "first result"], rows)


def run(args: argparse.Namespace) -> int:
    if args.kind == "protocols":
        from vireid.harness.commands.protocols import protocol_table

        print(protocol_table(), end="")
    elif args.kind == "variants":
        print(variants(), end="")
    elif args.kind == "datasets":
        print(datasets(), end="")
    else:
        root = Path(args.runs)
        if not root.is_dir():
            from vireid.harness.cli import UserError

            raise UserError(f"--runs {root}: no such folder")
        print(runs(root), end="")
    return 0

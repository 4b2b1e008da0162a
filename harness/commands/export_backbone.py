"""`vireid export-backbone`: a trained run's shared backbone as a `model.weights` file.

The synthetic study's backbones start from a tiny ResNet pretrained on a disjoint synthetic
population (the pipeline's `pretrain` stage), as the paper's start from ImageNet weights: without
it the tiny random-init network needs about four times the steps to converge (docs/synthetic-dataset.md).
The file is a plain torchvision-layout ResNet state dict, so it works for every method's backbones.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vireid.harness.commands.common import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "export-backbone", "write a trained run's backbone as a model.weights file",
                    "Read <run-dir>/checkpoint.pt and write its shared backbone (IDKL and the baseline: the "
                    "front and shared back) as a torchvision-layout ResNet state dict that `model.weights` "
                    "loads into every backbone of a method.",
                    ["vireid export-backbone --run-dir models/pretrain/run --out models/pretrain/backbone.pth",
                     "vireid train -e idkl --set model.weights=models/pretrain/backbone.pth"])
    p.add_argument("--run-dir", required=True, help="a folder written by `vireid train`")
    p.add_argument("--out", required=True, metavar="FILE", help="the state-dict file to write (.pth)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def backbone_state(run_dir: str | Path) -> dict:
    """The backbone of the run's selected model (the best epoch's under train.select best)."""
    from vireid.harness.checkpoint import load_checkpoint
    from vireid.harness.cli import UserError
    from vireid.harness.runner import restore_model

    ckpt = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    params = ckpt["params"]
    best = params["train"]["select"] == "best" and ckpt.get("best_model")
    model = restore_model(params, ckpt["num_classes"], best or ckpt["model"])
    if not hasattr(model, "backbone_state_dict"):
        raise UserError(f"{run_dir}: method {params['model']['method']!r} has no single shared backbone to "
                        "export (IDKL and the baseline have)")
    return model.backbone_state_dict()


def run(args: argparse.Namespace) -> int:
    from vireid.harness.checkpoint import save_torch

    state = backbone_state(args.run_dir)
    save_torch(args.out, state, suffix=".pth")
    print(f"wrote {args.out} ({len(state)} tensors)")
    return 0

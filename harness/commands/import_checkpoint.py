"""`vireid import-checkpoint`: a checkpoint trained with the public IDKL or AGW code -> one of our run folders.

The folder (checkpoint.pt, params.yaml, provenance.json) is scored by `vireid evaluate --run-dir`
under every protocol of the evaluate command's dataset, like a trained run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vireid.harness.commands.common import add_command, add_params_args, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "import-checkpoint", "import weights trained with the public IDKL or AGW code into a run folder",
        examples=["vireid import-checkpoint --format idkl-official model_best.pth --out runs/imported/idkl",
                  "vireid import-checkpoint --format agw-official sysu_agw_p4_n8_lr_0.1_seed_0_best.t "
                  "--out runs/imported/agw"],
        description="Read a checkpoint saved by the public IDKL code (1KK077/IDKL) or the AGW code "
                    "(mangye16/Cross-Modal-Re-ID-baseline) without executing code, map every parameter and buffer "
                    "onto our idkl / baseline / agw model (strictly: missing, unexpected or mis-shaped keys are "
                    "errors), and write a run folder that `vireid evaluate` scores.")
    p.add_argument("file", metavar="FILE", help="the checkpoint (.pth / .t): a state dict, or a dict holding one "
                                                "under 'net' / 'state_dict' / 'model'")
    p.add_argument("--format", required=True, dest="fmt", choices=("idkl-official", "agw-official"),
                   help="the code that saved FILE")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new (or empty) run folder to write")
    p.add_argument("--name", default=None, help="variant name in reports (default: imported-<file stem>)")
    p.add_argument("--last-stride", type=int, choices=(1, 2), default=1,
                   help="layer4 stride the checkpoint was trained with; weights cannot tell (both codes: 1)")
    add_params_args(p, experiment=False)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.checkpoint_import import import_checkpoint, imported_params, write_run

    imported = import_checkpoint(args.file, args.fmt, last_stride=args.last_stride)
    name = args.name or f"imported-{Path(args.file).stem}"
    params = imported_params(imported, resolve(args), name)
    out = write_run(imported, params, args.out)
    prov = imported.provenance
    options = ", ".join(f"{k}={v}" for k, v in prov["model_options"].items())
    print(f"{args.file} ({prov['source_label']}, {prov['container']}"
          + (f", prefix {prov['prefix_stripped']!r} removed" if prov["prefix_stripped"] else "") + ")")
    print(f"sha256 {prov['sha256']}")
    print(f"model: {prov['method']}, backbone {prov['backbone']}, {prov['num_classes']} classes, "
          f"last stride {prov['last_stride']}" + (f", {options}" if options else ""))
    print(f"mapped {prov['mapped']} tensors; unused reference entries:")
    for item in prov["unused"]:
        print(f"  {item['count']:6d}  {item['group']}")
    if not prov["unused"]:
        print("       none")
    print(f"wrote {out} (score it: vireid evaluate --data <dataset> --run-dir {out} --out <metrics.json>)")
    return 0

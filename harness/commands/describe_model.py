"""`vireid describe-model`: trainable parameters of a method, per part and in total.

The model is built on PyTorch's meta device with weights 'none': nothing is downloaded or
allocated, so even three ResNet-50s take a fraction of a second.
"""
from __future__ import annotations

import argparse
import json

from vireid.harness.commands.common import add_command, add_params_args, resolve


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "describe-model", "print a method's trainable parameters per part",
                    "Build the model of the resolved parameters (params.yaml + --experiment + --set, as `vireid "
                    "train` does) on the meta device, count its trainable parameters per part and print every loss "
                    "setting (the method's defaults with params.yaml's and the experiment's `loss:` overlaid).",
                    ["vireid describe-model -e idkl --set model.backbone=resnet50 --num-classes 395",
                     "vireid describe-model -e agw --set model.options.non_local_width=half --num-classes 395 --json",
                     "vireid describe-model -e idkl --set loss.ip.enabled=false --num-classes 10"])
    add_params_args(p)
    p.add_argument("--num-classes", type=int, required=True, help="number of training identities (SYSU-MM01: 395)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(handler=run)


def describe(method: str, backbone: str, num_classes: int, last_stride: int = 1,
             loss: dict | None = None, options: dict | None = None) -> dict:
    import torch

    import dataclasses

    from vireid.methods import build_model, resolve_options, resolved_loss_mapping, trainable_parameters

    from vireid.harness.schema import ConfigError

    try:
        with torch.device("meta"):
            model = build_model(method, num_classes=num_classes, backbone=backbone, weights="none",
                                last_stride=last_stride, loss=loss, options=options)
    except ValueError as exc:  # the methods' checks of these settings (unknown method, options ...)
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
    parts = {name: sum(trainable_parameters(m) for m in mods) for name, mods in model.parts().items()}
    total = trainable_parameters(model)
    if sum(parts.values()) != total:  # a part list that misses a module is a bug worth seeing
        parts["other"] = total - sum(parts.values())
    cfg = getattr(model, "cfg", None)
    return {
        "method": method, "backbone": backbone, "num_classes": num_classes, "last_stride": last_stride,
        "options": dataclasses.asdict(resolve_options(method, options)),
        "loss_terms": cfg.enabled_terms() if cfg is not None else [],
        "loss": resolved_loss_mapping(method, loss),
        "trainable_params": total, "parts": parts,
    }


def run(args: argparse.Namespace) -> int:
    params = resolve(args)
    model = params.model
    info = describe(model.method, model.backbone, args.num_classes, model.last_stride, params.loss,
                    model.options or None)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"method {info['method']}  backbone {info['backbone']}  classes {info['num_classes']}  "
          f"last stride {info['last_stride']}")
    if info["options"]:
        print("options: " + ", ".join(f"{k}={v}" for k, v in info["options"].items()))
    print(f"loss terms: {', '.join(info['loss_terms']) or '-'}")
    for term, value in info["loss"].items():
        if isinstance(value, dict):
            state = "on " if value.get("enabled") else "off"
            value = f"{state} " + " ".join(f"{k}={v}" for k, v in value.items() if k != "enabled")
        print(f"  loss.{term}: {value}")
    width = max(len(k) for k in [*info["parts"], "total"])
    print(f"{'part':<{width}}  {'trainable params':>16}")
    for name, count in info["parts"].items():
        print(f"{name:<{width}}  {count:>16,}")
    print(f"{'total':<{width}}  {info['trainable_params']:>16,}")
    return 0

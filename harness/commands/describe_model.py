"""`vireid describe-model`: trainable parameters of a method, per part and in total.

The model is built on PyTorch's meta device with weights 'none': nothing is downloaded or
allocated, so even three ResNet-50s take a fraction of a second.
"""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("describe-model", help="print a method's trainable parameters per part")
    p.add_argument("--method", required=True, help="a registered method (idkl, baseline, agw, or a plugin's)")
    p.add_argument("--backbone", default="resnet50", help="tiny | resnet18 | resnet34 | resnet50 (default resnet50)")
    p.add_argument("--num-classes", type=int, required=True, help="number of training identities (SYSU-MM01: 395)")
    p.add_argument("--last-stride", type=int, choices=(1, 2), default=1, help="layer4 stride (default 1)")
    p.add_argument("--set", dest="loss_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="loss option (repeatable), e.g. --set bg_kl=false --set triplet.margin=0.3")
    p.add_argument("--option", dest="model_options", action="append", default=[], metavar="KEY=VALUE",
                   help="model option of the method (repeatable, as model.options), e.g. --option non_local_width=half")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def _parse_overrides(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` items as a mapping, parsed as every command's ``--set`` is (``bg_kl=false``,
    ``triplet.margin=0.3``, as in params.yaml)."""
    from vireid.harness.config import apply_override, parse_override

    out: dict = {}
    for item in items:
        keys, value = parse_override(item, flag)
        apply_override(out, keys, value, flag)
    return out


def describe(method: str, backbone: str, num_classes: int, last_stride: int = 1,
             loss: dict | None = None, options: dict | None = None) -> dict:
    import torch

    import dataclasses

    from vireid.methods import build_model, resolve_options, trainable_parameters

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
        "trainable_params": total, "parts": parts,
    }


def run(args: argparse.Namespace) -> int:
    options = _parse_overrides(args.model_options, "--option") or None
    info = describe(args.method, args.backbone, args.num_classes, args.last_stride,
                    _parse_overrides(args.loss_overrides, "--set") or None, options)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"method {info['method']}  backbone {info['backbone']}  classes {info['num_classes']}  "
          f"last stride {info['last_stride']}")
    if info["options"]:
        print("options: " + ", ".join(f"{k}={v}" for k, v in info["options"].items()))
    print(f"loss terms: {', '.join(info['loss_terms']) or '-'}")
    width = max(len(k) for k in [*info["parts"], "total"])
    print(f"{'part':<{width}}  {'trainable params':>16}")
    for name, count in info["parts"].items():
        print(f"{name:<{width}}  {count:>16,}")
    print(f"{'total':<{width}}  {info['trainable_params']:>16,}")
    return 0

"""Methods: backbones, layers, losses, IDKL (+ the baseline = IDKL with its terms off) and AGW.

    from vireid.methods import build_model
    model = build_model("idkl", num_classes=395, backbone="resnet50", weights="none")
"""
from vireid.methods.registry import (LossSchema, NoOptions, build_model, get_method, list_methods, param_groups,
                                     register_method, resolve_loss_config, resolve_options, resolved_loss_mapping,
                                     validate_loss_config)
from vireid.methods.idkl import IDKL, IDKL_ONLY_TERMS, IDKL_TERMS, IDKLLossConfig, IDKLOptions, loss_defaults
from vireid.methods.agw import AGW, AGWLossConfig, AGWOptions

__all__ = [
    "LossSchema", "NoOptions", "build_model", "get_method", "list_methods", "param_groups", "register_method",
    "resolve_loss_config", "resolve_options", "resolved_loss_mapping",
    "validate_loss_config", "IDKL", "IDKL_TERMS", "IDKL_ONLY_TERMS",
    "IDKLLossConfig", "IDKLOptions", "loss_defaults", "AGW", "AGWLossConfig", "AGWOptions", "trainable_parameters",
]


def trainable_parameters(module) -> int:
    """Number of parameters with requires_grad (what the optimiser updates)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

"""Methods: backbones, layers, losses, IDKL (+ the baseline = IDKL with its terms off) and AGW.

    from vireid.methods import build_model
    model = build_model("idkl", num_classes=395, backbone="resnet50", weights="none")
"""
from vireid.methods.registry import (PROFILES, build_model, get_method, list_methods, register_method, resolve_loss_config,
                              validate_loss_config)
from vireid.methods.idkl import IDKL, IDKL_ONLY_TERMS, IDKL_TERMS, IDKLLossConfig, profile_defaults
from vireid.methods.agw import AGW, AGWLossConfig

__all__ = [
    "PROFILES", "build_model", "get_method", "list_methods", "register_method", "resolve_loss_config",
    "validate_loss_config", "IDKL", "IDKL_TERMS", "IDKL_ONLY_TERMS", "IDKLLossConfig", "profile_defaults",
    "AGW", "AGWLossConfig", "trainable_parameters",
]


def trainable_parameters(module) -> int:
    """Number of parameters with requires_grad (what the optimiser updates)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

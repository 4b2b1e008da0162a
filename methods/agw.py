"""AGW (Ye et al., TPAMI 2021), cross-modal version of mangye16/Cross-Modal-Re-ID-baseline.

Network: a modality-specific stem (conv1, bn1, relu, maxpool) per modality, each from its own
ResNet copy, then layer1..layer4 of a third copy shared by both modalities, with non-local
blocks after the last 2 blocks of layer2 and the last 3 blocks of layer3 (the code's
``non_layers = [0, 2, 3, 0]``), GeM (p = 3, ``(mean(x^3) + 1e-12)^(1/3)``), a BN-neck (bias
frozen, scale ~ N(1, 0.01)) and a bias-free classifier (weights ~ N(0, 0.001)).
Losses: identity cross-entropy on the BN-neck logits + weighted regularised triplet (WRT) on the
pooled vector, both weight 1. Test feature: the BN-neck vector, L2-normalised.
Optimiser groups (the code's SGD): BN-neck + classifier at the base lr, everything else at
``backbone_lr_scale`` (0.1) times it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from vireid.common.schema import ConfigError
from vireid.methods import losses as L
from vireid.methods.backbones import FEATURE_DIMS, build_resnet, check_backbone, load_weights, stem
from vireid.methods.layers import BNNeck, GeM, NonLocal
from vireid.methods.registry import LossSchema, register_method

AGW_TERMS = ("id", "triplet")
# Non-local blocks per stage in the AGW code (ResNet-50: after blocks 2,3 of layer2 and 3,4,5 of layer3).
AGW_NON_LOCAL = (0, 2, 3, 0)


@dataclass
class AGWLossConfig:
    id: bool = True
    id_weight: float = field(default=1.0, metadata={"ge": 0.0})
    triplet: bool = True  # weighted regularised triplet (no margin)
    triplet_weight: float = field(default=1.0, metadata={"ge": 0.0})

    def enabled_terms(self) -> list[str]:
        return [t for t in AGW_TERMS if getattr(self, t)]

    def check(self, path: str = "loss") -> None:
        if not self.enabled_terms():
            raise ConfigError(f"{path}: every loss term is off; enable id or triplet")


def agw_loss_defaults() -> dict[str, Any]:
    return dataclasses.asdict(AGWLossConfig())


# Inner width C' of a non-local block on C channels: the code's ``reduc_ratio // reduc_ratio``, or C/2.
NON_LOCAL_WIDTHS = {"code": lambda channels: 1, "half": lambda channels: max(channels // 2, 1)}


@dataclass(frozen=True)
class AGWOptions:
    """`model.options` of agw (defaults: the AGW code)."""

    non_local: list[int] = field(default_factory=lambda: list(AGW_NON_LOCAL))  # blocks per stage, after its last ones
    non_local_width: Literal["code", "half"] = "code"  # code: 1 channel (``r // r``); half: C/2 (Wang et al.)
    backbone_lr_scale: float = field(default=0.1, metadata={"ge": 0.0})  # the code's SGD group 0: 0.1 x lr

    def check(self, path: str = "model.options") -> None:
        if len(self.non_local) != 4 or any(n < 0 for n in self.non_local):
            raise ConfigError(f"{path}.non_local: expected 4 counts >= 0 (one per ResNet stage), "
                               f"got {self.non_local!r}")


def _stage_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class AGW(nn.Module):
    """forward(images, labels, modality) -> {feat (N, D) pooled, feat_bn (N, D), logits (N, C)};
    loss -> {id, triplet}; extract(images, modality) -> L2-normalised BN-neck feature.

    `modality` (0 visible, 1 infrared; a tensor or one int for the whole batch) picks the stem
    and is required by extract too, since the two stems differ. `non_local` gives the blocks per
    stage; `non_local_width` the inner width C' of every block ("code": 1 channel as the AGW code,
    "half": C/2 as Wang et al.).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: str = "none", last_stride: int = 1,
                 loss: AGWLossConfig | None = None, non_local: tuple[int, ...] | list[int] = AGW_NON_LOCAL,
                 non_local_width: str = "code", backbone_lr_scale: float = 0.1):
        super().__init__()
        check_backbone(backbone)
        self.cfg = loss if loss is not None else AGWLossConfig()
        self.num_classes = num_classes
        if non_local_width not in NON_LOCAL_WIDTHS:
            raise ValueError(f"non_local_width: expected one of {', '.join(NON_LOCAL_WIDTHS)}, got {non_local_width!r}")
        self.backbone_lr_scale = backbone_lr_scale
        dim = FEATURE_DIMS[backbone]
        self.feat_dim = dim
        state, source = load_weights(backbone, weights)
        self.visible_stem = stem(build_resnet(backbone, state, last_stride, source))
        self.infrared_stem = stem(build_resnet(backbone, state, last_stride, source))
        base = build_resnet(backbone, state, last_stride, source)
        self.layer1, self.layer2, self.layer3, self.layer4 = base.layer1, base.layer2, base.layer3, base.layer4
        # Non-local blocks after the last n blocks of each stage (n capped at the stage's depth).
        self.non_local = nn.ModuleList()
        self.non_local_after: list[list[int]] = []
        for stage, n in zip(self.stages(), non_local):
            n = min(n, len(stage))
            channels = _stage_channels(stage)
            width = NON_LOCAL_WIDTHS[non_local_width](channels)
            self.non_local.append(nn.ModuleList(NonLocal(channels, width) for _ in range(n)))
            self.non_local_after.append(list(range(len(stage) - n, len(stage))))
        self.pool = GeM(p=3.0, eps=1e-12, clamp=False)
        self.bn_neck = BNNeck(dim, weight_std=0.01)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def stages(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _stem(self, images: torch.Tensor, modality: torch.Tensor | int | None) -> torch.Tensor:
        if modality is None:
            raise ValueError("AGW has one stem per modality: pass modality (0 visible, 1 infrared) "
                             "as a tensor or one int for the whole batch")
        if isinstance(modality, int):
            return (self.infrared_stem if modality == 1 else self.visible_stem)(images)
        ir = modality.to(images.device) == 1
        if bool(ir.all()):
            return self.infrared_stem(images)
        if not bool(ir.any()):
            return self.visible_stem(images)
        x_vis = self.visible_stem(images[~ir])
        x_ir = self.infrared_stem(images[ir])
        x = x_vis.new_empty((images.shape[0],) + tuple(x_vis.shape[1:]))
        x[~ir] = x_vis
        x[ir] = x_ir
        return x

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        for stage, blocks, after in zip(self.stages(), self.non_local, self.non_local_after):
            k = 0
            for i, block in enumerate(stage):
                x = block(x)
                if i in after:
                    x = blocks[k](x)
                    k += 1
        return x

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                modality: torch.Tensor | int | None = None) -> dict[str, torch.Tensor]:
        feat = self.pool(self._trunk(self._stem(images, modality)))
        feat_bn = self.bn_neck(feat)
        return {"feat": feat, "feat_bn": feat_bn, "logits": self.classifier(feat_bn)}

    @torch.no_grad()
    def extract(self, images: torch.Tensor, modality: torch.Tensor | int | None = None) -> torch.Tensor:
        feat = self.pool(self._trunk(self._stem(images, modality)))
        return F.normalize(self.bn_neck(feat), dim=1)

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor,
             modality: torch.Tensor) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        if self.cfg.id:
            terms["id"] = self.cfg.id_weight * L.cross_entropy(outputs["logits"], labels)
        if self.cfg.triplet:
            terms["triplet"] = self.cfg.triplet_weight * L.weighted_regularized_triplet(outputs["feat"], labels)
        return terms

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The code's SGD groups: BN-neck and classifier at `lr`, the rest at backbone_lr_scale x lr."""
        heads = [*self.bn_neck.parameters(), *self.classifier.parameters()]
        ids = {id(p) for p in heads}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [{"name": "heads", "params": heads, "lr": lr},
                {"name": "backbone", "params": rest, "lr": lr * self.backbone_lr_scale}]

    def parts(self) -> dict[str, list[nn.Module]]:
        return {
            "visible_stem": [self.visible_stem],
            "infrared_stem": [self.infrared_stem],
            "shared_trunk": self.stages(),
            "non_local": [self.non_local],
            "bn_necks": [self.bn_neck],
            "identity_heads": [self.classifier],
        }


@register_method("agw", loss=LossSchema(AGWLossConfig, AGW_TERMS, agw_loss_defaults), options=AGWOptions)
def build_agw(num_classes: int, **kw: Any) -> AGW:
    return AGW(num_classes, **kw)

"""IDKL (Ren & Zhang, CVPR 2024) and the baseline (= IDKL with every IDKL term off).

Network (public code 1KK077/IDKL, models/resnet.py + models/baseline.py):
  images -> shared front (conv1..layer2 of ResNet copy A) -> x
  x -> shared back (layer3, layer4 of copy B) -> GeM -> shared vector -> BN-neck -> heads
  x -> specific back (layer3, layer4 of copy C) -> F -> purifier -> GeM -> specific vector -> BN-neck
Only the shared vector after its BN-neck is used at test time. Modules are built only when a
loss term uses them, so every trainable parameter receives a gradient and the baseline has no
specific branch at all.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from vireid.common.schema import ConfigError
from vireid.methods import losses as L
from vireid.methods.backbones import FEATURE_DIMS, back, build_resnet, check_backbone, front, load_weights
from vireid.methods.layers import BNNeck, GeM, ModalityDiscriminator, Purifier
from vireid.methods.registry import LossSchema, register_method

_W = {"ge": 0.0}

# Loss terms in the order `IDKL.loss` reports them.
IDKL_TERMS = ("id", "triplet", "specific_id", "modality", "pseudo_modality", "ip", "bg_kl", "sm_kl", "distalign")
# The terms that make IDKL more than the baseline (id + shared triplet).
IDKL_ONLY_TERMS = ("specific_id", "modality", "pseudo_modality", "ip", "bg_kl", "sm_kl", "distalign")
# Terms that need the specific branch (specific back + purifier).
SPECIFIC_BRANCH_TERMS = ("specific_id", "modality", "ip", "bg_kl", "sm_kl", "distalign")


@dataclass
class IDKLLossConfig:
    """One switch and one weight per loss term (defaults: the public code's SYSU-MM01 config).

    A term's value in `IDKL.loss` is ``<term>_weight * <term's formula>``.
    The "large batch" weights apply when the batch size equals `kl_large_batch` (the code's
    ``bb = 120``) under ``kl_batch_rule='exact'``; 'large' / 'small' apply one set always.
    """

    id: bool = True
    id_weight: float = field(default=1.0, metadata=_W)
    triplet: bool = True
    triplet_weight: float = field(default=1.0, metadata=_W)
    triplet_margin: float = field(default=1.3, metadata=_W)
    triplet_specific: bool = True  # add the same triplet on the specific vector (when that branch exists)
    specific_id: bool = True
    specific_id_weight: float = field(default=1.0, metadata=_W)
    modality: bool = True
    modality_weight: float = field(default=1.0, metadata=_W)
    pseudo_modality: bool = True
    pseudo_modality_weight: float = field(default=1.0, metadata=_W)
    pseudo_modality_targets: Literal["code", "uniform"] = "code"
    ip: bool = True
    ip_weight: float = field(default=0.1, metadata=_W)
    ip_entropy: bool = True
    ip_entropy_margin: float = 0.0
    ip_centroid: bool = True
    ip_centroid_margin: float = 0.0
    bg_kl: bool = True
    bg_kl_weight: float = field(default=1.0, metadata=_W)
    bg_kl_inter_large: float = field(default=0.8, metadata=_W)
    bg_kl_inter_small: float = field(default=0.3, metadata=_W)
    sm_kl: bool = True
    sm_kl_weight: float = field(default=1.0, metadata=_W)
    sm_kl_inter_large: float = field(default=0.8, metadata=_W)
    sm_kl_inter_small: float = field(default=0.3, metadata=_W)
    distalign: bool = True
    distalign_weight: float = field(default=1.0, metadata=_W)
    distalign_inter_large: float = field(default=0.6, metadata=_W)
    distalign_scale_small: float = field(default=0.1, metadata=_W)
    kl_batch_rule: Literal["exact", "large", "small"] = "exact"
    kl_large_batch: int = field(default=120, metadata={"ge": 1})

    # -- what the network needs -------------------------------------------------------------
    @property
    def specific_branch(self) -> bool:
        return any(getattr(self, t) for t in SPECIFIC_BRANCH_TERMS)

    @property
    def shared_logits(self) -> bool:
        return self.id or self.bg_kl or self.sm_kl

    @property
    def specific_logits(self) -> bool:
        return self.specific_branch and (self.specific_id or self.bg_kl or self.sm_kl)

    @property
    def ip_entropy_on(self) -> bool:
        return self.ip and self.ip_entropy

    @property
    def ip_centroid_on(self) -> bool:
        return self.ip and self.ip_centroid

    def enabled_terms(self) -> list[str]:
        return [t for t in IDKL_TERMS if getattr(self, t)]

    def check(self, path: str = "loss") -> None:
        """Reject configurations that would train nothing or leave a term empty."""
        if not self.enabled_terms():
            raise ConfigError(f"{path}: every loss term is off; enable at least one of {', '.join(IDKL_TERMS)}")
        if self.ip and not (self.ip_entropy or self.ip_centroid):
            raise ConfigError(f"{path}.ip: enabled, but both ip.entropy and ip.centroid are off")

    def large_batch(self, batch_size: int) -> bool:
        if self.kl_batch_rule == "large":
            return True
        if self.kl_batch_rule == "small":
            return False
        return batch_size == self.kl_large_batch


def loss_defaults() -> dict[str, Any]:
    """Plain IDKLLossConfig kwargs: the public code's SYSU-MM01 configuration."""
    return dataclasses.asdict(IDKLLossConfig())


@dataclass(frozen=True)
class IDKLOptions:
    """`model.options` of idkl / baseline."""

    discriminator_dropout: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})  # the code's Discrimination

    def check(self, path: str = "model.options") -> None:
        return None


class IDKL(nn.Module):
    """IDKL; with every IDKL-only term off it is the baseline (no specific branch is built).

    forward(images, labels=None, modality=None) -> dict with (as built):
      feat (N, D) shared GeM vector; feat_bn (N, D) after its BN-neck; logits (N, C);
      pseudo_modality_logits (N, 2); sp_feat (N, D) specific GeM vector; sp_feat_bn; sp_logits;
      modality_logits (N, 2); ip_logits_f / ip_logits_fp (N, C) the IP classifier on GeM(F) and
      GeM(F_p); ip_in / ip_in_p (N, D) GeM(IN(F)) and GeM(IN_p).
    loss(outputs, labels, modality) -> {term: weighted value} for the enabled terms.
    extract(images, modality=None) -> (N, D) shared vector after its BN-neck (call in eval mode;
      `modality` is accepted for a uniform interface with AGW and ignored).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights: str = "none", last_stride: int = 1,
                 loss: IDKLLossConfig | None = None, discriminator_dropout: float = 0.5):
        super().__init__()
        check_backbone(backbone)
        cfg = loss if loss is not None else IDKLLossConfig()
        self.cfg = cfg
        self.num_classes = num_classes
        dim = FEATURE_DIMS[backbone]
        self.feat_dim = dim
        state, source = load_weights(backbone, weights)

        def resnet_copy() -> nn.Module:  # a separate ResNet each time, each with the same weights
            return build_resnet(backbone, state, last_stride, source)

        self.front = front(resnet_copy())
        self.shared_back = back(resnet_copy())
        self.pool = GeM(p=3.0, eps=1e-6)
        self.bn_neck = BNNeck(dim)  # its running statistics serve the test-time feature in any case
        if not (cfg.shared_logits or cfg.pseudo_modality):
            self.bn_neck.weight.requires_grad_(False)  # no loss reaches it: keep it out of the optimiser
        if cfg.shared_logits:
            self.classifier = nn.Linear(dim, num_classes, bias=False)
        if cfg.pseudo_modality:
            self.pseudo_modality_head = ModalityDiscriminator(dim, dropout=discriminator_dropout)
        if cfg.specific_branch:
            self.specific_back = back(resnet_copy())
            self.purifier = Purifier(dim)
            if cfg.specific_logits or cfg.modality:
                self.bn_neck_sp = BNNeck(dim)
            if cfg.specific_logits:
                self.classifier_sp = nn.Linear(dim, num_classes, bias=False)
            if cfg.modality:
                self.modality_head = ModalityDiscriminator(dim, dropout=discriminator_dropout)
            if cfg.ip_entropy_on:
                self.classifier_ip = nn.Linear(dim, num_classes, bias=False)

    # -- network ------------------------------------------------------------------------------
    def _has(self, name: str) -> bool:
        return name in self._modules

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                modality: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self.front(images)
        feat = self.pool(self.shared_back(x))
        feat_bn = self.bn_neck(feat)
        out = {"feat": feat, "feat_bn": feat_bn}
        if self._has("classifier"):
            out["logits"] = self.classifier(feat_bn)
        if self._has("pseudo_modality_head"):
            out["pseudo_modality_logits"] = self.pseudo_modality_head(feat_bn)
        if self._has("specific_back"):
            fmap = self.specific_back(x)
            parts = self.purifier(fmap)
            sp_feat = self.pool(parts["purified"])
            out["sp_feat"] = sp_feat
            if self._has("bn_neck_sp"):
                sp_bn = self.bn_neck_sp(sp_feat)
                out["sp_feat_bn"] = sp_bn
                if self._has("classifier_sp"):
                    out["sp_logits"] = self.classifier_sp(sp_bn)
                if self._has("modality_head"):
                    out["modality_logits"] = self.modality_head(sp_bn)
            if self._has("classifier_ip"):
                out["ip_logits_f"] = self.classifier_ip(self.pool(fmap))
                out["ip_logits_fp"] = self.classifier_ip(self.pool(parts["f_p"]))
            if self.cfg.ip_centroid_on:
                out["ip_in"] = self.pool(parts["in"])
                out["ip_in_p"] = self.pool(parts["in_p"])
        return out

    @torch.no_grad()
    def extract(self, images: torch.Tensor, modality: torch.Tensor | None = None) -> torch.Tensor:
        """Test-time feature: the shared vector after its BN-neck. `modality` is ignored."""
        return self.bn_neck(self.pool(self.shared_back(self.front(images))))

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The shared trunk (front + shared back) as one torchvision-layout ResNet state dict, the
        format of `model.weights`: a trained run can initialise the backbones of another (the
        synthetic study's pretraining, `vireid export-backbone`)."""
        out: dict[str, torch.Tensor] = {}
        for part in (self.front, self.shared_back):
            out.update({k: v.detach().clone() for k, v in part.state_dict().items()})
        return out

    # -- losses -------------------------------------------------------------------------------
    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor,
             modality: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        large = cfg.large_batch(int(labels.shape[0]))
        terms: dict[str, torch.Tensor] = {}
        if cfg.id:
            terms["id"] = cfg.id_weight * L.cross_entropy(outputs["logits"], labels)
        if cfg.triplet:
            value = L.batch_hard_triplet(outputs["feat"], labels, cfg.triplet_margin)
            if cfg.triplet_specific and "sp_feat" in outputs:
                value = value + L.batch_hard_triplet(outputs["sp_feat"], labels, cfg.triplet_margin)
            terms["triplet"] = cfg.triplet_weight * value
        if cfg.specific_id:
            terms["specific_id"] = cfg.specific_id_weight * L.cross_entropy(outputs["sp_logits"], labels)
        if cfg.modality:
            terms["modality"] = cfg.modality_weight * L.modality_ce(outputs["modality_logits"], modality)
        if cfg.pseudo_modality:
            terms["pseudo_modality"] = cfg.pseudo_modality_weight * L.pseudo_modality_ce(
                outputs["pseudo_modality_logits"], modality, cfg.pseudo_modality_targets)
        if cfg.ip:  # `check` guarantees at least one of the two parts
            parts = []
            if cfg.ip_entropy:
                parts.append(L.entropy_margin(outputs["ip_logits_f"], outputs["ip_logits_fp"], cfg.ip_entropy_margin))
            if cfg.ip_centroid:
                parts.append(L.modal_centroid(outputs["ip_in"], outputs["ip_in_p"], labels, modality,
                                              cfg.ip_centroid_margin))
            terms["ip"] = cfg.ip_weight * sum(parts)
        if cfg.bg_kl:
            w = cfg.bg_kl_inter_large if large else cfg.bg_kl_inter_small
            terms["bg_kl"] = cfg.bg_kl_weight * L.bg_kl(outputs["logits"], outputs["sp_logits"], modality, w)
        if cfg.sm_kl:
            w = cfg.sm_kl_inter_large if large else cfg.sm_kl_inter_small
            group = int((labels == labels[0]).sum()) // 2  # K/2, as the public code derives it
            terms["sm_kl"] = cfg.sm_kl_weight * L.sm_kl(outputs["logits"], outputs["sp_logits"], modality, group, w)
        if cfg.distalign:
            terms["distalign"] = cfg.distalign_weight * L.distalign(
                outputs["feat"], outputs["sp_feat"], modality, full=large,
                inter_weight=cfg.distalign_inter_large, reduced_scale=cfg.distalign_scale_small)
        return terms

    # -- description ----------------------------------------------------------------------------
    def parts(self) -> dict[str, list[nn.Module]]:
        """Named groups of submodules (for `vireid describe-model`); absent ones are omitted."""
        groups = {
            "front": ["front"],
            "shared_back": ["shared_back"],
            "specific_back": ["specific_back"],
            "purification": ["purifier"],
            "bn_necks": ["bn_neck", "bn_neck_sp"],
            "identity_heads": ["classifier", "classifier_sp", "classifier_ip"],
            "discriminators": ["modality_head", "pseudo_modality_head"],
        }
        out = {}
        for part, names in groups.items():
            mods = [self._modules[n] for n in names if self._has(n)]
            if mods:
                out[part] = mods
        return out


def _idkl_schema(forced: dict[str, Any] | None = None, reason: str = "") -> LossSchema:
    return LossSchema(IDKLLossConfig, IDKL_TERMS, loss_defaults, forced or {}, reason)


@register_method("idkl", loss=_idkl_schema(), options=IDKLOptions)
def build_idkl(num_classes: int, **kw: Any) -> IDKL:
    return IDKL(num_classes, **kw)


@register_method("baseline", loss=_idkl_schema(
    {t: False for t in IDKL_ONLY_TERMS},
    "the baseline is IDKL with every IDKL term off; use method 'idkl' to turn this term on"), options=IDKLOptions)
def build_baseline(num_classes: int, **kw: Any) -> IDKL:
    return IDKL(num_classes, **kw)

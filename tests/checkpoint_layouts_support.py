"""State dicts laid out as the public IDKL and AGW code lays them out, built from our own models.

Each builder assembles a module tree with the public code's attribute names (embed_net's three
full ResNet copies, `NL_k` lists whose `g` is a Sequential, `bottleneck`, ...) around our
model's submodules, plus freshly initialised modules for what the public code builds but
never runs; its `state_dict()` then names every tensor exactly as the public code's would.
Independent of the importer's rule tables on purpose.
"""
from __future__ import annotations

import torch
from torch import nn

from vireid.methods.backbones import build_resnet


class Holder(nn.Module):
    """A bare module whose attributes are the given submodules (in order)."""

    def __init__(self, **children: nn.Module):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter and running statistic away from its initial value (so a wrong mapping shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            else:  # relative noise keeps deep stacks finite; the additive part moves zero-initialised tensors
                tensor.mul_(1 + 0.1 * torch.randn(tensor.shape, generator=gen))
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=gen))
    return model


def code_resnet(backbone: str, **parts: nn.Module) -> nn.Module:
    """A full ResNet as the public code builds it (no fc), `parts` replaced by our modules."""
    resnet = randomise(build_resnet(backbone), seed=len(parts))
    if hasattr(resnet, "fc"):
        del resnet.fc  # the public code's ResNet classes have no fc
    for name, module in parts.items():
        setattr(resnet, name, module)
    return resnet


def channel_attention(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(), nn.Conv2d(dim // 16, dim, 1, bias=False),
                         nn.Sigmoid())


def idkl_code_tree(model, backbone: str) -> nn.Module:
    """1KK077/IDKL `Baseline` (decompose on for our idkl, off for our baseline) around `model`."""
    decompose = "specific_back" in model._modules
    dim = model.feat_dim
    front, back = model.front, model.shared_back
    net = Holder(
        shared_module_fr=Holder(model_sh_fr=code_resnet(backbone, conv1=front.conv1, bn1=front.bn1,
                                                        layer1=front.layer1, layer2=front.layer2)),
        shared_module_bh=Holder(model_sh_bh=code_resnet(backbone, layer3=back.layer3, layer4=back.layer4)),
        special=Holder(special_module=code_resnet(backbone, **(
            {"layer3": model.specific_back.layer3, "layer4": model.specific_back.layer4} if decompose else {}))),
        IN=model.purifier.instance_norm if decompose else randomise(
            nn.InstanceNorm2d(dim, affine=True, track_running_stats=True)),
    )
    if decompose:
        net.special_att = Holder(channel_attention=randomise(channel_attention(dim)),
                                 IN=nn.InstanceNorm2d(dim, track_running_stats=False))
        net.mask1 = Holder(channel_attention=model.purifier.mask_in)
        net.mask2 = Holder(channel_attention=model.purifier.mask_f)
    root = Holder(backbone=net, bn_neck=model.bn_neck,
                  bn_neck_sp=model.bn_neck_sp if decompose else randomise(nn.BatchNorm1d(dim)))
    root.classifier = model.classifier
    if decompose:
        root.classifier_sp = model.classifier_sp
        root.D_special = model.modality_head
        root.C_sp_f = model.classifier_ip
        root.D_shared_pseu = model.pseudo_modality_head
    return root


class CodeNonLocal(nn.Module):
    """The AGW code's Non_local attribute layout: g is a Sequential holding one conv."""

    def __init__(self, ours: nn.Module):
        super().__init__()
        self.g = nn.Sequential(ours.g)
        self.W = ours.W
        self.theta = ours.theta
        self.phi = ours.phi


def agw_code_tree(model, backbone: str) -> nn.Module:
    """mangye16/Cross-Modal-Re-ID-baseline `embed_net` (no_local='on', gm_pool='on') around `model`."""
    root = Holder(
        thermal_module=Holder(thermal=code_resnet(backbone, conv1=model.infrared_stem.conv1,
                                                  bn1=model.infrared_stem.bn1)),
        visible_module=Holder(visible=code_resnet(backbone, conv1=model.visible_stem.conv1,
                                                  bn1=model.visible_stem.bn1)),
        base_resnet=Holder(base=code_resnet(backbone, layer1=model.layer1, layer2=model.layer2,
                                            layer3=model.layer3, layer4=model.layer4)),
    )
    for k, blocks in enumerate(model.non_local):
        setattr(root, f"NL_{k + 1}", nn.ModuleList(CodeNonLocal(b) for b in blocks))
    root.bottleneck = model.bn_neck
    root.classifier = model.classifier
    return root


def prefixed(state: dict, prefix: str = "module.") -> dict:
    """What DataParallel's state_dict() adds."""
    return {prefix + k: v for k, v in state.items()}


def count_under(tree: nn.Module, *prefixes: str) -> int:
    return sum(1 for k in tree.state_dict() if k.startswith(prefixes))

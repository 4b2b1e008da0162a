"""ResNet backbones (torchvision ResNet-18/34/50 and a tiny CPU ResNet), split the way IDKL and
AGW use them, with weights from nowhere, the torch hub cache, or a state-dict file.

Nothing here downloads: ``weights="imagenet"`` looks for the torchvision file in
``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``) and raises FileNotFoundError naming
the file, the folder and the download address when it is absent.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock

BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50")

# Final feature width of each backbone (layer4 output channels).
FEATURE_DIMS = {"tiny": 128, "resnet18": 512, "resnet34": 512, "resnet50": 2048}

TINY_WIDTHS = (16, 32, 64, 128)

# torchvision file names in the hub cache, in the order they are tried. The first is
# torchvision's IMAGENET1K_V1 file; the second is the older name of the same V1 weights, the
# file the public IDKL code downloads.
IMAGENET_FILES = {
    "resnet18": (("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
                 ("resnet18-5c106cde.pth", "https://download.pytorch.org/models/resnet18-5c106cde.pth")),
    "resnet34": (("resnet34-b627a593.pth", "https://download.pytorch.org/models/resnet34-b627a593.pth"),
                 ("resnet34-333f7ec4.pth", "https://download.pytorch.org/models/resnet34-333f7ec4.pth")),
    "resnet50": (("resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
                 ("resnet50-19c8e357.pth", "https://download.pytorch.org/models/resnet50-19c8e357.pth")),
}


class TinyResNet(nn.Module):
    """A ResNet with one BasicBlock per stage and widths 16/32/64/128, for CPU runs.

    Attribute names match torchvision's ResNet (conv1, bn1, relu, maxpool, layer1..layer4), so
    the same splitting, last-stride and state-dict code applies.
    """

    def __init__(self):
        super().__init__()
        w1, w2, w3, w4 = TINY_WIDTHS
        self.conv1 = nn.Conv2d(3, w1, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _tiny_stage(w1, w1, stride=1)
        self.layer2 = _tiny_stage(w1, w2, stride=2)
        self.layer3 = _tiny_stage(w2, w3, stride=2)
        self.layer4 = _tiny_stage(w3, w4, stride=2)
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _tiny_stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes))
    return nn.Sequential(BasicBlock(inplanes, planes, stride, downsample))


def check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")


def drop_last_stride(model: nn.Module) -> None:
    """Make layer4 keep the spatial size: stride 1 in its first block's strided conv and downsample.

    torchvision's Bottleneck strides in conv2 (the 3x3), BasicBlock in conv1; both are handled.
    """
    block = model.layer4[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)
    block.stride = 1


def imagenet_file(arch: str) -> Path:
    """The hub-cache file holding torchvision's ImageNet weights for `arch`; never downloads.

    The folder is ``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``.
    """
    if arch not in IMAGENET_FILES:
        raise ValueError(f"weights='imagenet': there are no ImageNet weights for backbone {arch!r} "
                         f"(available for: {', '.join(IMAGENET_FILES)}); use weights='none' or a path to a state dict")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name, _url in IMAGENET_FILES[arch]:
        if (folder / name).is_file():
            return folder / name
    (name, url), (old_name, _) = IMAGENET_FILES[arch]
    raise FileNotFoundError(
        f"ImageNet weights for {arch} not found: put {name} at {folder / name} (the older file name "
        f"{old_name} is accepted too). Nothing is downloaded; fetch it on a machine with network access "
        f"from {url} (the folder is $TORCH_HOME/hub/checkpoints), or use weights='none' or a path to a state dict")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ValueError(f"backbone weights {str(path)!r}: could not be read as a torch state dict ({exc})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"backbone weights {str(path)!r}: expected a state dict (a mapping of names to tensors), "
                         f"got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(arch: str, weights: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """Resolve `weights` to (state dict or None, description).

    `weights`: 'none', 'imagenet' (torchvision's file in the hub cache) or the path of a state dict
    (a full torchvision-layout ResNet; an ImageNet ``fc`` is ignored, ``module.`` prefixes dropped).
    """
    check_backbone(arch)
    if weights in (None, "none", ""):
        return None, "none"
    if weights == "imagenet":
        path = imagenet_file(arch)
        return _read_state_dict(path), str(path)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {weights!r}: no such file (expected 'none', 'imagenet' "
                                "or the path of a state-dict file)")
    return _read_state_dict(path), str(path)


def _apply_state(model: nn.Module, state: dict[str, torch.Tensor], arch: str, source: str) -> None:
    own = model.state_dict()
    # The classifier (fc) of an ImageNet checkpoint is not part of any re-id backbone here.
    ignore = ("fc.",)
    missing = [k for k in own if k not in state and not k.startswith(ignore)]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
        raise ValueError(f"backbone weights {source!r} do not fit a {arch} backbone: " + ", ".join(parts))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def build_resnet(arch: str, state: dict[str, torch.Tensor] | None = None, last_stride: int = 1,
                 source: str = "state dict") -> nn.Module:
    """A full ResNet of `arch` (torchvision layout), `state` loaded, layer4 stride `last_stride`."""
    check_backbone(arch)
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride: expected 1 or 2, got {last_stride!r}")
    if arch == "tiny":
        model: nn.Module = TinyResNet()
    else:
        model = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}[arch](weights=None)
    if state is not None:
        _apply_state(model, state, arch, source)
    if last_stride == 1:
        drop_last_stride(model)
    return model


def stem(model: nn.Module) -> nn.Sequential:
    """conv1, bn1, relu, maxpool (the AGW modality-specific part)."""
    return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in ("conv1", "bn1", "relu", "maxpool")))


def front(model: nn.Module) -> nn.Sequential:
    """conv1 ... layer2 (IDKL's shared front)."""
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")
    return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))


def back(model: nn.Module) -> nn.Sequential:
    """layer3, layer4 (IDKL's shared back and specific back)."""
    return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in ("layer3", "layer4")))


__all__ = ["BACKBONES", "FEATURE_DIMS", "IMAGENET_FILES", "TinyResNet", "build_resnet", "load_weights",
           "imagenet_file", "drop_last_stride", "stem", "front", "back", "check_backbone"]

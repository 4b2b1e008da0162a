"""A dataset and a method from outside the package: everything a new one needs, in one file.

Loaded with ``vireid --plugin tests/plugins/toy_plugin.py ...`` (or ``VIREID_PLUGINS``); no file
of the package names them. ``toyset``: two cameras (1 visible, 2 infrared) in two folders per
split, ``<split>/<vis|ir>/<pid>_<shot>.jpg``, with a synthetic writer built on the package's
renderer. ``toynet``: a two-layer CNN with its own loss schema, options and parameter groups.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from vireid.common.schema import ConfigError
from vireid.datasets import synth
from vireid.datasets.errors import DatasetError
from vireid.datasets.layout import Layout, require_dir
from vireid.datasets.registry import register_dataset
from vireid.datasets.schema import INFRARED, RECORD_COLUMNS, VISIBLE
from vireid.datasets.spec import Camera, DatasetSpec, ProtocolDef, SynthDefaults
from vireid.methods import LossSchema, register_method

# --------------------------------------------------------------------------- dataset
CAMERAS = ((1, "vis", VISIBLE), (2, "ir", INFRARED))


def read(root: Path, split: int) -> Layout:
    rows = []
    for part in ("train", "test"):
        for cam, folder, modality in CAMERAS:
            for image in sorted(require_dir(root / part / folder, f"toyset's {part}/{folder}/").glob("*.jpg")):
                pid, _, _ = image.stem.partition("_")
                if not pid.isdigit():
                    raise DatasetError(f"{image}: expected <pid>_<shot>.jpg")
                rows.append((f"{part}/{folder}/{image.name}", int(pid), cam, modality, part, cam))
    return Layout(pd.DataFrame(rows, columns=list(RECORD_COLUMNS)), [])


def write_synthetic(root: Path, s: synth.SynthSettings) -> list[synth.Shoot]:
    test = set(synth.split_ids(s, "toyset", 0)["test"])
    part = {pid: "test" if pid in test else "train" for pid in range(1, s.n_ids + 1)}
    return [synth.Shoot(cam, modality == INFRARED, [(pid, k, f"{part[pid]}/{folder}/{pid:04d}_{k}.jpg")
                                                    for pid in part for k in range(s.images_per_cam)], "jpg")
            for cam, folder, modality in CAMERAS]


register_dataset(DatasetSpec(
    name="toyset", label="Toy set", reader=read, cameras=tuple(Camera(cam, modality) for cam, _, modality in CAMERAS),
    protocols=(ProtocolDef(name="toyset/i2v", direction="i2v", query=INFRARED, gallery=VISIBLE),
               ProtocolDef(name="toyset/v2i", direction="v2i", query=VISIBLE, gallery=INFRARED, normalize=True)),
    default_protocols=("toyset/i2v", "toyset/v2i"), synth_writer=write_synthetic,
    synth=SynthDefaults(test_fraction=0.4, ir_model="thermal")))


# --------------------------------------------------------------------------- method
@dataclass
class ToyLoss:
    id: bool = True
    id_weight: float = field(default=1.0, metadata={"ge": 0.0})
    center: bool = False
    center_weight: float = field(default=0.01, metadata={"ge": 0.0})

    def check(self, path: str) -> None:
        if not (self.id or self.center):
            raise ConfigError(f"{path}: toynet needs at least one loss term")


@dataclass(frozen=True)
class ToyOptions:
    width: int = field(default=8, metadata={"ge": 1})
    head_lr_scale: float = field(default=2.0, metadata={"ge": 0.0})

    def check(self, path: str) -> None:
        return None


class ToyNet(nn.Module):
    def __init__(self, num_classes: int, loss: ToyLoss, width: int, head_lr_scale: float) -> None:
        super().__init__()
        self.cfg = loss
        self.head_lr_scale = head_lr_scale
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, images, labels=None, modality=None):
        feat = self.body(images)
        return {"feat": feat, "logits": self.classifier(feat)}

    @torch.no_grad()
    def extract(self, images, modality=None):
        return self.body(images)

    def loss(self, outputs, labels, modality):
        terms = {}
        if self.cfg.id:
            terms["id"] = self.cfg.id_weight * F.cross_entropy(outputs["logits"], labels)
        if self.cfg.center:
            terms["center"] = self.cfg.center_weight * outputs["feat"].pow(2).sum(1).mean()
        return terms

    def param_groups(self, lr: float):
        return [{"name": "body", "params": list(self.body.parameters()), "lr": lr},
                {"name": "head", "params": list(self.classifier.parameters()), "lr": lr * self.head_lr_scale}]


@register_method("toynet", loss=LossSchema(ToyLoss, ("id", "center"), lambda: {}), options=ToyOptions)
def build_toynet(num_classes: int, backbone: str, weights: str, last_stride: int, loss: ToyLoss,
                 **options) -> ToyNet:
    return ToyNet(num_classes, loss, **options)

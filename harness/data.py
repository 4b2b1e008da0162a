"""The prepared dataset as the trainer sees it: manifest + uint8 cache -> tensors.

Training and evaluation read the memory-mapped uint8 cache written by the prepare
step, never JPEGs. Augmentation runs as batched tensor ops on the training device.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from vireid.datasets.schema import MODALITY_CODE


@dataclass
class PreparedData:
    records: pd.DataFrame  # row i <-> cache image i
    images: np.ndarray  # (N, H, W, 3) uint8, memory-mapped
    fingerprint: str
    dataset: str
    root: Path

    @property
    def modality_codes(self) -> np.ndarray:
        return self.records["modality"].map(MODALITY_CODE).to_numpy(np.int64)


def load_prepared(data_cfg: Any) -> PreparedData:
    """Open the manifest and image cache that `vireid data prepare` wrote."""
    from vireid.datasets.prepare import open_prepared

    manifest, cache = open_prepared(data_cfg.prepared_dir, (data_cfg.image_height, data_cfg.image_width))
    return PreparedData(records=manifest.records.reset_index(drop=True), images=cache.images,
                        fingerprint=manifest.fingerprint, dataset=manifest.dataset, root=Path(manifest.root))


def split_identities(records: pd.DataFrame, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a fixed fraction of the *training* identities for validation.

    The choice depends only on the identity list and `seed` (not the training seed), so
    every run of a study validates on the same identities. Only identities seen in both
    modalities can be held out (a cross-modal validation needs both).
    """
    train = records[records["split"] == "train"]
    both = train.groupby("pid")["modality"].nunique()
    candidates = np.sort(both[both == 2].index.to_numpy())
    n_val = int(round(val_fraction * len(candidates)))
    rng = np.random.default_rng(seed)
    val_pids = np.sort(rng.choice(candidates, size=n_val, replace=False)) if n_val else np.array([], np.int64)
    is_val = train["pid"].isin(val_pids).to_numpy()
    return train.index.to_numpy()[~is_val], train.index.to_numpy()[is_val]


class TrainBatches:
    """Sampler + uint8 cache + GPU-style augmentation -> (images, labels, modality) batches."""

    def __init__(self, data: PreparedData, indices: np.ndarray, sampler: Any, augment: Any,
                 device: torch.device, generator: torch.Generator, channels_last: bool = False):
        self.data = data
        self.indices = indices
        pids = data.records["pid"].to_numpy()[indices]
        self.classes = np.unique(pids)
        self.labels = torch.as_tensor(np.searchsorted(self.classes, pids), dtype=torch.long)
        self.modality = torch.as_tensor(data.modality_codes[indices], dtype=torch.long)
        self.sampler = sampler
        self.augment = augment
        self.device = device
        self.generator = generator
        self.channels_last = channels_last

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        local = np.asarray(batch, dtype=np.int64)
        rows = self.indices[local]
        order = np.argsort(rows, kind="stable")  # sorted reads from the memmap are faster
        pixels = np.empty((len(rows),) + self.data.images.shape[1:], dtype=np.uint8)
        pixels[order] = self.data.images[rows[order]]
        images = torch.from_numpy(pixels).to(self.device, non_blocking=True)
        modality = self.modality[local].to(self.device)
        images = self.augment(images, generator=self.generator, modality=modality)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self.labels[local].to(self.device), modality


def iterate_eval_batches(data: PreparedData, indices: np.ndarray, batch_size: int, transform: Any,
                         device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, modality codes) of `indices` in order; two-stem models (AGW) need the modality."""
    codes = data.modality_codes
    for start in range(0, len(indices), batch_size):
        rows = indices[start:start + batch_size]
        images = torch.from_numpy(np.ascontiguousarray(data.images[rows])).to(device)
        yield transform(images), torch.as_tensor(codes[rows], device=device)


@torch.no_grad()
def extract_features(model: torch.nn.Module, data: PreparedData, indices: np.ndarray, batch_size: int,
                     transform: Any, device: torch.device, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Test-time features of `indices` as float32 (N, D), in `indices` order."""
    was_training = model.training
    model.eval()
    feats = []
    for images, modality in iterate_eval_batches(data, indices, batch_size, transform, device):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model.extract(images, modality=modality)
        feats.append(out.float().cpu())
    model.train(was_training)
    if not feats:
        return np.zeros((0, 0), np.float32)
    return torch.cat(feats).numpy()


def synth_settings(synth_cfg: Any) -> dict[str, Any]:
    """`data.synthetic` (less `enabled`) as the generator's settings: the same field names."""
    return {k: v for k, v in asdict(synth_cfg).items() if k != "enabled"}


def prepare_from_params(data_cfg: Any) -> dict[str, Any]:
    """Map the `data` params block onto `vireid.datasets.prepare.prepare` (synthesise if asked)."""
    from vireid.datasets.images import pixel_limit
    from vireid.datasets.prepare import prepare

    synth_args = synth_settings(data_cfg.synthetic) if data_cfg.synthetic.enabled else None
    with pixel_limit(data_cfg.max_image_pixels):
        return prepare(data_cfg.dataset, data_cfg.root, data_cfg.prepared_dir,
                       (data_cfg.image_height, data_cfg.image_width), synth=synth_args,
                       split=data_cfg.regdb_split, workers=data_cfg.cache_workers)

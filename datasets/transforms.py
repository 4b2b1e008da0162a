"""Image transforms as batched tensor ops on the training device (torch only).

The training recipe is the public IDKL code's (data/__init__.py, get_train_loader):
``Resize -> RandomHorizontalFlip -> Pad(10, fill=127) -> RandomCrop -> ToTensor ->
Normalize(ImageNet) -> RandomErasing()``, where torchvision's RandomErasing defaults are
p = 0.5, area 0.02-0.33 of the image, aspect ratio 0.3-3.3 (log-uniform), value 0, at most
10 attempts. :class:`TrainAugment` applies the same steps to a whole uint8 batch at once,
with an independent draw per sample from the given ``torch.Generator``.
:func:`build_pil_transform` is the torchvision/PIL equivalent (for benchmarks and tests).

Optional channel augmentation (``channel_aug``, visible images only) follows CAJ's
ChannelAdapGray (Ye et al., ICCV 2021; present but commented out in the IDKL code): with
equal odds replace all channels by the R, the G or the B channel, or (fourth case) with
probability 1/2 by the grey level 0.2989 R + 0.587 G + 0.114 B. Here it acts on pixel
values before normalisation (CAJ applies it after), so a replicated channel is a real
grey image.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
ERASE_ATTEMPTS = 10
GREY = (0.2989, 0.587, 0.114)

__all__ = ["TrainAugment", "EvalTransform", "build_pil_transform", "IMAGENET_MEAN", "IMAGENET_STD"]


def _rand(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _randint(high: torch.Tensor, generator, device) -> torch.Tensor:
    """Per-element integers uniform in [0, high) (high >= 1, a tensor)."""
    return (_rand(high.shape, generator, device) * high).long().clamp_max(high - 1)


class _ToFloat(nn.Module):
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], resized to ``size`` if needed."""

    def __init__(self, size: tuple[int, int] | None):
        super().__init__()
        self.size = tuple(size) if size is not None else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (B, H, W, 3), got shape {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class EvalTransform(_ToFloat):
    """uint8 (B, H, W, 3) -> ImageNet-normalised float (B, 3, H, W); resize if ``size`` differs."""

    def __init__(self, size: tuple[int, int] | None = None):
        super().__init__(size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalise(self.to_float(images)).contiguous()


class TrainAugment(_ToFloat):
    """The public code's training augmentation, batched; see the module docstring.

    ``forward(images, generator=None, modality=None)``: ``images`` uint8 (B, H, W, 3) on any
    device; ``modality`` (B,) codes (0 = visible) select the images channel augmentation
    may touch (all of them when None). Returns float32 (B, 3, H, W).
    """

    def __init__(self, size: tuple[int, int], flip: bool = True, pad: int = 10, pad_fill: int = 127,
                 random_erasing: float = 0.5, channel_aug: bool = False):
        super().__init__(size)
        if pad < 0 or not 0 <= pad_fill <= 255 or not 0.0 <= random_erasing <= 1.0:
            raise ValueError(f"invalid augmentation settings: pad={pad}, pad_fill={pad_fill}, "
                             f"random_erasing={random_erasing}")
        self.flip, self.pad, self.pad_fill = bool(flip), int(pad), int(pad_fill)
        self.random_erasing, self.channel_aug = float(random_erasing), bool(channel_aug)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None,
                modality: torch.Tensor | None = None) -> torch.Tensor:
        x = self.to_float(images)
        if self.flip:
            x = self._flip(x, generator)
        if self.pad:
            x = self._pad_crop(x, generator)
        if self.channel_aug:
            x = self._channel(x, generator, modality)
        x = self.normalise(x)
        if self.random_erasing > 0:
            x = self._erase(x, generator)
        return x.contiguous()

    def _flip(self, x: torch.Tensor, generator) -> torch.Tensor:
        flip = _rand((x.shape[0],), generator, x.device) < 0.5
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def _pad_crop(self, x: torch.Tensor, generator) -> torch.Tensor:
        """Pad every side by ``pad`` with ``pad_fill`` then crop back at a per-sample offset."""
        b, c, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p), value=self.pad_fill / 255.0)
        span = torch.full((2, b), 2 * p + 1, device=x.device)
        oy, ox = _randint(span, generator, x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, chans, rows, cols]

    def _channel(self, x: torch.Tensor, generator, modality) -> torch.Tensor:
        b = x.shape[0]
        case = (_rand((b,), generator, x.device) * 4).long().clamp_max(3)
        grey_coin = _rand((b,), generator, x.device) < 0.5
        weights = torch.eye(3, device=x.device)[case.clamp_max(2)]  # (B, 3): pick R, G or B
        weights = torch.where((case == 3)[:, None], torch.tensor(GREY, device=x.device), weights)
        single = (x * weights[:, :, None, None]).sum(1, keepdim=True).expand_as(x)
        change = (case < 3) | grey_coin
        if modality is not None:
            change = change & (modality.to(x.device) == 0)
        return torch.where(change.view(-1, 1, 1, 1), single, x)

    def _erase(self, x: torch.Tensor, generator) -> torch.Tensor:
        """torchvision's RandomErasing per sample: first of 10 attempts whose box fits."""
        b, _, h, w = x.shape
        dev = x.device
        apply = _rand((b,), generator, dev) < self.random_erasing
        area = (ERASE_SCALE[0] + (ERASE_SCALE[1] - ERASE_SCALE[0]) * _rand((b, ERASE_ATTEMPTS), generator, dev)) * h * w
        log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * _rand((b, ERASE_ATTEMPTS), generator, dev))
        eh = torch.sqrt(area * ratio).round().long()
        ew = torch.sqrt(area / ratio).round().long()
        fits = (eh < h) & (ew < w)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(b, dtype=torch.long, device=dev))
        pick = lambda t: t.gather(1, first[:, None])[:, 0]  # noqa: E731
        eh, ew = pick(eh), pick(ew)
        apply = apply & fits.any(1)
        top = _randint((h - eh + 1).clamp_min(1), generator, dev)
        left = _randint((w - ew + 1).clamp_min(1), generator, dev)
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        box = ((ys >= top[:, None, None]) & (ys < (top + eh)[:, None, None]) &
               (xs >= left[:, None, None]) & (xs < (left + ew)[:, None, None]) & apply[:, None, None])
        return x.masked_fill(box[:, None], 0.0)


def build_pil_transform(size: tuple[int, int], flip: bool = True, pad: int = 10, pad_fill: int = 127,
                        random_erasing: float = 0.5):
    """The same recipe with torchvision on PIL images (one image at a time, e.g. in
    DataLoader workers): returns a ``torchvision.transforms.Compose``."""
    import torchvision.transforms as T

    steps = [T.Resize(tuple(size))]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    if pad:
        steps += [T.Pad(pad, fill=pad_fill), T.RandomCrop(tuple(size))]
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if random_erasing > 0:
        steps.append(T.RandomErasing(p=random_erasing))
    return T.Compose(steps)

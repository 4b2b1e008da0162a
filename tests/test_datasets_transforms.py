"""Batched tensor transforms versus the torchvision/PIL recipe they replace."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vireid.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainAugment, build_pil_transform

H, W = 32, 16


def _images(n=8, h=H, w=W, seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8))


def _pil(transform, images: torch.Tensor) -> torch.Tensor:
    return torch.stack([transform(Image.fromarray(x.numpy())) for x in images])


def _normalised(images: torch.Tensor) -> torch.Tensor:
    x = images.permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_without_randomness_equals_the_pil_pipeline():
    images = _images()
    pil = _pil(build_pil_transform((H, W), flip=False, pad=0, random_erasing=0), images)
    plain = TrainAugment((H, W), flip=False, pad=0, random_erasing=0)(images)
    assert plain.shape == (8, 3, H, W) and plain.dtype == torch.float32
    torch.testing.assert_close(plain, pil, atol=1e-5, rtol=0)
    torch.testing.assert_close(EvalTransform()(images), pil, atol=1e-5, rtol=0)


def test_resize_when_the_cache_size_differs():
    images = _images(h=48, w=24)
    pil = _pil(build_pil_transform((H, W), flip=False, pad=0, random_erasing=0), images)
    ours = EvalTransform((H, W))(images)
    assert ours.shape == (8, 3, H, W)
    assert (ours - pil).abs().mean() < 0.03  # bilinear + antialias, as PIL (within rounding)
    torch.testing.assert_close(TrainAugment((H, W), flip=False, pad=0, random_erasing=0)(images), ours)


def test_flip_gives_the_image_or_its_mirror():
    images = _images(64)
    out = TrainAugment((H, W), flip=True, pad=0, random_erasing=0)(images, generator=torch.Generator().manual_seed(0))
    ref = _normalised(images)
    same = (out == ref).flatten(1).all(1)
    mirrored = (out == ref.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 16 < int(mirrored.sum()) < 48


def test_pad_and_crop_give_shifted_copies():
    images = _images(32)
    pad = 3
    out = TrainAugment((H, W), flip=False, pad=pad, pad_fill=127, random_erasing=0)(
        images, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, value=127)
    padded = (padded / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    offsets = set()
    for i in range(len(images)):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.allclose(out[i], padded[i, :, dy:dy + H, dx:dx + W], atol=1e-6)]
        assert found, f"sample {i} is not a crop of the padded image"
        offsets.add(found[0])
    assert len(offsets) > 5


def test_random_erasing_boxes():
    images = torch.full((200, H, W, 3), 200, dtype=torch.uint8)
    out = TrainAugment((H, W), flip=False, pad=0, random_erasing=1.0)(
        images, generator=torch.Generator().manual_seed(2))
    erased = (out == 0).all(1)  # (B, H, W)
    fraction = erased.flatten(1).float().mean(1)
    assert (fraction > 0).float().mean() > 0.95  # nearly every sample finds a box that fits
    assert fraction.max() <= 0.34 + 1 / (H * W) * 2 * (H + W)
    for box in erased[fraction > 0]:
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
    none = TrainAugment((H, W), flip=False, pad=0, random_erasing=0.0)(images)
    assert not (none == 0).any()


def test_channel_augmentation_touches_visible_images_only():
    images = _images(64, seed=3)
    modality = torch.tensor([0, 1] * 32)
    out = TrainAugment((H, W), flip=False, pad=0, random_erasing=0, channel_aug=True)(
        images, generator=torch.Generator().manual_seed(3), modality=modality)
    pixels = out * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    grey = (pixels - pixels[:, :1]).abs().flatten(1).amax(1) < 1e-5  # all three channels equal
    assert not grey[modality == 1].any()
    torch.testing.assert_close(out[modality == 1], _normalised(images)[modality == 1])
    assert 0.6 < grey[modality == 0].float().mean() < 0.98  # 3/4 + 1/8 of visible images expected


def test_reproducible_from_the_generator():
    images = _images(16)
    aug = TrainAugment((H, W), channel_aug=True)
    a = aug(images, generator=torch.Generator().manual_seed(9))
    b = aug(images, generator=torch.Generator().manual_seed(9))
    c = aug(images, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_statistics_match_the_pil_pipeline():
    """Many augmentations of one image: same mean, same share of erased and of padding pixels."""
    n = 600
    images = _images(1, seed=4).expand(n, H, W, 3).contiguous()
    torch.manual_seed(0)
    pil = _pil(build_pil_transform((H, W), pad=4), images)
    ours = TrainAugment((H, W), pad=4)(images, generator=torch.Generator().manual_seed(0))
    assert abs(float(ours.mean() - pil.mean())) < 0.02
    fill = float(((127 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))

    def share(x, value):
        return float((x[:, 0] - value).abs().lt(1e-5).float().mean())

    assert abs(share(ours, 0.0) - share(pil, 0.0)) < 0.015
    assert abs(share(ours, fill) - share(pil, fill)) < 0.015
    assert abs(float(ours.std() - pil.std())) < 0.02


def test_module_behaviour():
    aug = TrainAugment((H, W))
    assert {name for name, _ in aug.named_buffers()} == {"mean", "std"}
    assert aug.to("cpu") is aug
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        aug(torch.zeros(2, 3, H, W, dtype=torch.uint8))

"""Backbones: the conv1..layer2 / layer3..layer4 split, the last stride, and where weights come
from (nothing, the torch hub cache, a state-dict file). Nothing here downloads anything."""
from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from test_methods_losses import one_thread  # noqa: F401 (autouse fixture)
from vireid.methods import build_model
from vireid.methods.backbones import BACKBONES, FEATURE_DIMS, TinyResNet, back, build_resnet, front, load_weights


@pytest.mark.parametrize("arch, front_dim", [("resnet18", 128), ("resnet34", 128), ("resnet50", 512)])
@pytest.mark.parametrize("last_stride, back_hw", [(1, (24, 9)), (2, (12, 5))])
def test_split_and_last_stride(arch, front_dim, last_stride, back_hw):
    """Shapes only, on the meta device: front = stride 8, back = stride 16 with last stride 1."""
    with torch.device("meta"):
        model = build_resnet(arch, last_stride=last_stride)
        x = front(model)(torch.empty(2, 3, 384, 144))
        y = back(model)(x)
    assert tuple(x.shape) == (2, front_dim, 48, 18)
    assert tuple(y.shape) == (2, FEATURE_DIMS[arch], *back_hw)


def test_tiny_backbone_shapes():
    model = build_resnet("tiny")
    x = front(model)(torch.randn(2, 3, 64, 32))
    assert tuple(back(model)(x).shape) == (2, FEATURE_DIMS["tiny"], 4, 2)


def test_unknown_backbone_and_stride():
    with pytest.raises(ValueError, match="known backbones: " + ", ".join(BACKBONES)):
        build_resnet("resnet101")
    with pytest.raises(ValueError, match="last_stride"):
        build_resnet("tiny", last_stride=3)


def test_missing_imagenet_weights_say_where_to_put_which_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError) as err:
        build_model("idkl", 4, backbone="resnet50", weights="imagenet")
    message = str(err.value)
    assert str(folder / "resnet50-0676ba61.pth") in message
    assert "resnet50-19c8e357.pth" in message  # the older name of the same file is accepted
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    with pytest.raises(ValueError, match="no ImageNet weights for backbone 'tiny'"):
        load_weights("tiny", "imagenet")


def _same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    for name, tensor in module.state_dict().items():
        torch.testing.assert_close(tensor, state[prefix + name], rtol=0, atol=0)


def test_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch):
    """A (random) torchvision ResNet-18 saved under the older file name loads into all three copies."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()  # includes the ImageNet fc, which is ignored
    torch.save(state, folder / "resnet18-5c106cde.pth")
    model = build_model("idkl", 4, backbone="resnet18", weights="imagenet")
    _same_weights(model.front, state)
    _same_weights(model.shared_back, state)
    _same_weights(model.specific_back, state)


def test_weights_from_a_state_dict_path(tmp_path):
    torch.manual_seed(1)
    state = TinyResNet().state_dict()
    plain, wrapped = tmp_path / "tiny.pth", tmp_path / "wrapped.pth"
    torch.save(state, plain)
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)  # a DataParallel checkpoint
    for path in (plain, wrapped):
        idkl = build_model("idkl", 4, backbone="tiny", weights=str(path))
        _same_weights(idkl.front, state)
        _same_weights(idkl.shared_back, state)
        _same_weights(idkl.specific_back, state)
        agw = build_model("agw", 4, backbone="tiny", weights=str(path))
        _same_weights(agw.visible_stem, state)
        _same_weights(agw.layer3, state, "layer3.")


def test_bad_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_model("idkl", 4, backbone="tiny", weights=str(tmp_path / "missing.pth"))
    wrong = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match="do not fit a tiny backbone"):
        build_model("idkl", 4, backbone="tiny", weights=str(wrong))
    junk = tmp_path / "junk.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="expected a state dict"):
        build_model("idkl", 4, backbone="tiny", weights=str(junk))

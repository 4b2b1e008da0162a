"""AGW as the AGW code has it (mangye16/Cross-Modal-Re-ID-baseline, model.py + train.py): the
trained parameter set with the default options, the C/2 option, `model.options` from params,
the method's optimiser groups and the code's learning-rate schedule."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torchvision

from vireid.harness.config import load_params
from vireid.harness.runner import build_method
from vireid.harness.schema import ConfigError
from vireid.harness.trainer import build_optimizer, build_scheduler
from vireid.methods import build_model, param_groups, resolve_options, trainable_parameters
from test_methods_losses import one_thread  # noqa: F401 (autouse fixture)

# The code's Non_local(C): inter_channels = reduc_ratio // reduc_ratio = 1; g, theta, phi are
# conv1x1(C -> 1) with bias, W = conv1x1(1 -> C) with bias + BatchNorm2d(C): 3 (C + 1) + 2 C + 2 C
# = 7 C + 3 parameters. non_layers = [0, 2, 3, 0] on ResNet-50's [3, 4, 6, 3] blocks: two blocks
# at C = 512 (layer2), three at C = 1024 (layer3).
NON_LOCAL_CHANNELS = [512, 512, 1024, 1024, 1024]


def code_non_local_shapes(c: int) -> list[tuple[int, ...]]:
    return [(1, c, 1, 1), (1,)] * 3 + [(c, 1, 1, 1), (c,), (c,), (c,)]


def code_parameter_shapes(num_classes: int) -> Counter:
    """The shapes of the parameters the AGW code's embed_net trains (receive a gradient).

    visible_module / thermal_module: conv1 + bn1 of their own ResNet-50 (the rest of those copies
    never runs); base_resnet: layer1..layer4 of a third (the code's resnet.py is torchvision's
    ResNet-50 without fc, same shapes); NL_2, NL_3 as above; bottleneck BatchNorm1d(2048) whose
    bias has requires_grad False; classifier Linear(2048, classes, bias=False)."""
    ref = torchvision.models.resnet50()
    shapes = Counter()
    for _ in range(2):  # visible and thermal stems
        shapes.update([tuple(ref.conv1.weight.shape), tuple(ref.bn1.weight.shape), tuple(ref.bn1.bias.shape)])
    for layer in (ref.layer1, ref.layer2, ref.layer3, ref.layer4):
        shapes.update(tuple(p.shape) for p in layer.parameters())
    for c in NON_LOCAL_CHANNELS:
        shapes.update(code_non_local_shapes(c))
    shapes.update([(2048,), (num_classes, 2048)])
    return shapes


# 2 x 9,536 (stems) + 23,498,496 (layer1..4) + 2 x (7 x 512 + 3) + 3 x (7 x 1024 + 3) = 28,687
# (non-local) + 2,048 (BN-neck scale) + 395 x 2,048 = 808,960 (classifier) = 24,357,263.
AGW_CODE_TRAINED_SYSU = 24_357_263


@pytest.mark.slow
def test_agw_default_trains_exactly_the_code_parameter_set():
    with torch.device("meta"):
        model = build_model("agw", 395, backbone="resnet50")
    trained = [p for p in model.parameters() if p.requires_grad]
    assert Counter(tuple(p.shape) for p in trained) == code_parameter_shapes(395)
    assert trainable_parameters(model) == AGW_CODE_TRAINED_SYSU == sum(code_parameter_shapes(395)[s] * torch.Size(s)
                                                                       .numel() for s in code_parameter_shapes(395))
    for block, c in zip([b for stage in model.non_local for b in stage], NON_LOCAL_CHANNELS):
        assert [tuple(p.shape) for p in block.parameters()] == [(1, c, 1, 1), (1,)] * 3 + [
            (c, 1, 1, 1), (c,), (c,), (c,)]


def test_agw_half_width_is_a_named_option():
    with torch.device("meta"):
        half = build_model("agw", 395, backbone="resnet50", options={"non_local_width": "half"})
    assert [b.inter_channels for stage in half.non_local for b in stage] == [c // 2 for c in NON_LOCAL_CHANNELS]
    # each block: 3 (C x C/2 + C/2) + (C/2 x C + C) + 2 C instead of 7 C + 3
    extra = sum(3 * (c * c // 2 + c // 2) + (c // 2 * c + c) + 2 * c - (7 * c + 3) for c in NON_LOCAL_CHANNELS)
    assert trainable_parameters(half) - AGW_CODE_TRAINED_SYSU == extra == 7_329_777


@pytest.mark.slow
def test_agw_resnet50_parameters_receiving_gradients():
    """One real step of the ResNet-50 AGW on 8 tiny images: what gets a gradient is the code's set."""
    torch.manual_seed(0)
    model = build_model("agw", 395, backbone="resnet50").train()
    labels = torch.arange(2).repeat_interleave(4)
    modality = torch.tensor([1, 0] * 4)
    out = model(torch.randn(8, 3, 64, 32), labels, modality)
    sum(model.loss(out, labels, modality).values()).backward()
    assert sum(p.numel() for p in model.parameters() if p.grad is not None) == AGW_CODE_TRAINED_SYSU


def test_model_options_from_params_reach_the_model():
    params = load_params(experiment="agw", overrides=["model.options.non_local_width=half", "model.weights=none",
                                                      "model.options.non_local=[0,1,1,0]"])
    model = build_method(params, 5)
    assert [[b.inter_channels for b in stage] for stage in model.non_local] == [[], [16], [32], []]
    idkl = build_method(load_params(experiment="idkl", overrides=["model.options.discriminator_dropout=0.0",
                                                                  "model.weights=none"]), 5)
    assert idkl.modality_head.dropout == 0.0 == idkl.pseudo_modality_head.dropout


@pytest.mark.parametrize("overrides, message", [
    (["model.options.non_local_width=quarter"], r"model.options.non_local_width: expected one of 'code' \| 'half'"),
    (["model.options.non_local=[0,2,3]"], r"model.options.non_local: expected 4 counts >= 0"),
    (["model.options.non_local=[0,2,x,0]"], r"model.options.non_local\[2\]: expected int"),
    (["model.options.backbone_lr_scale=-1"], "model.options.backbone_lr_scale: expected a value >= 0.0"),
    (["model.options.dropout=0.1"], "unknown key model.options.dropout; allowed keys under model.options: "
                                    "non_local, non_local_width, backbone_lr_scale"),
])
def test_agw_option_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_params(experiment="agw", overrides=overrides)


def test_idkl_option_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown key model.options.non_local_width; allowed keys under "
                                          "model.options: discriminator_dropout"):
        load_params(overrides=["model.options.non_local_width=half"])
    with pytest.raises(ConfigError, match="model.options.discriminator_dropout: expected a value <= 1.0"):
        resolve_options("idkl", {"discriminator_dropout": 1.5})


def test_param_groups_are_the_codes_sgd_groups():
    torch.manual_seed(0)
    agw = build_model("agw", 7, backbone="tiny")
    groups = param_groups(agw, 0.1)
    assert [g["name"] for g in groups] == ["heads", "backbone"]
    heads = {id(p) for p in [agw.bn_neck.weight, agw.classifier.weight]}  # the BN-neck bias does not train
    assert {id(p) for p in groups[0]["params"]} == heads and groups[0]["lr"] == 0.1
    assert groups[1]["lr"] == pytest.approx(0.01)
    trained = {id(p) for p in agw.parameters() if p.requires_grad}
    assert {id(p) for p in groups[1]["params"]} == trained - heads
    idkl = build_model("idkl", 7, backbone="tiny")
    (only,) = param_groups(idkl, 0.002)
    assert only["lr"] == 0.002 and len(only["params"]) == len([p for p in idkl.parameters() if p.requires_grad])


def code_adjust_learning_rate(lr: float, epoch: int) -> tuple[float, float]:
    """train.py's adjust_learning_rate, written out: (backbone group lr, head group lr)."""
    if epoch < 10:
        value = lr * (epoch + 1) / 10
    elif epoch < 20:
        value = lr
    elif epoch < 50:
        value = lr * 0.1
    else:
        value = lr * 0.01
    return 0.1 * value, value


def test_agw_real_recipe_schedule_is_the_codes():
    params = load_params(experiment="agw", dataset="sysu", overrides=["model.backbone=tiny", "model.weights=none"])
    cfg = params.train
    model = build_method(params, 7)
    opt = build_optimizer(param_groups(model, cfg.lr), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 5e-4 for g in opt.param_groups)
    sched = build_scheduler(opt, cfg.milestones, cfg.gamma, cfg.warmup_epochs, cfg.warmup_factor, cfg.warmup_rule)
    for epoch in range(cfg.epochs):
        backbone, head = code_adjust_learning_rate(0.1, epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(head, rel=1e-12), epoch
        assert opt.param_groups[1]["lr"] == pytest.approx(backbone, rel=1e-12), epoch
        opt.step()
        sched.step()
    assert cfg.epochs == 81


def test_factor_warmup_rule_is_unchanged():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, [3], 0.1, warmup_epochs=2, warmup_factor=0.1)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.55, 1.0, 0.1])

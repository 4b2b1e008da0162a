"""IDKL, the baseline and AGW: output shapes, weighted loss terms against independent formulas,
switches, baseline = IDKL with its terms off, gradients, a few optimisation steps, and the
ResNet-50 parameter count of the public code."""
from __future__ import annotations

import pytest
import torch

from vireid.methods import IDKL_ONLY_TERMS, IDKL_TERMS, build_model, trainable_parameters
from vireid.methods.idkl import SPECIFIC_BRANCH_TERMS
from test_methods_losses import one_thread  # noqa: F401 (autouse fixture)
from test_methods_losses import (TOL, ref_bg_kl, ref_cross_entropy, ref_distalign, ref_entropy_margin,
                                 ref_modal_centroid, ref_pseudo_targets, ref_sm_kl, ref_triplet, ref_wrt)

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

P, K, H, W, CLASSES = 4, 4, 32, 16, 6
ALL_OFF = {t: False for t in IDKL_ONLY_TERMS}


def batch(seed: int = 0, p: int = P, k: int = K):
    """P identities x K images, interleaved infrared, visible, ... inside each identity."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    modality = torch.tensor([1, 0] * (p * k // 2))
    images = torch.randn(p * k, 3, H, W, generator=g) + 0.3 * labels[:, None, None, None].float()
    return images, labels, modality


def make(name: str = "idkl", seed: int = 0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("backbone", "tiny")
    return build_model(name, CLASSES, **kw)


def run(model, data):
    images, labels, modality = data
    model.train()
    out = model(images, labels, modality)
    return out, model.loss(out, labels, modality)


# --- outputs --------------------------------------------------------------------------------
def test_idkl_output_shapes_and_extract():
    model = make()
    data = batch()
    out, terms = run(model, data)
    n, d = len(data[1]), model.feat_dim
    shapes = {"feat": (n, d), "feat_bn": (n, d), "logits": (n, CLASSES), "pseudo_modality_logits": (n, 2),
              "sp_feat": (n, d), "sp_feat_bn": (n, d), "sp_logits": (n, CLASSES), "modality_logits": (n, 2),
              "ip_logits_f": (n, CLASSES), "ip_logits_fp": (n, CLASSES), "ip_in": (n, d), "ip_in_p": (n, d)}
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert list(terms) == list(IDKL_TERMS)
    assert all(v.shape == () and torch.isfinite(v) for v in terms.values())
    model.eval()
    feats = model.extract(data[0][:5])
    assert feats.shape == (5, d)
    torch.testing.assert_close(feats, model.bn_neck(model(data[0][:5])["feat"]))


@pytest.mark.parametrize("backbone, dim", [("tiny", 128), ("resnet18", 512)])
def test_feature_dims_per_backbone(backbone, dim):
    model = make("baseline", backbone=backbone)
    model.eval()
    assert model.extract(torch.randn(2, 3, 64, 32)).shape == (2, dim)


def test_agw_outputs_and_stem_routing():
    model = make("agw")
    images, labels, modality = batch()
    out, terms = run(model, (images, labels, modality))
    n, d = len(labels), model.feat_dim
    assert {k: tuple(v.shape) for k, v in out.items()} == {"feat": (n, d), "feat_bn": (n, d), "logits": (n, CLASSES)}
    assert list(terms) == ["id", "triplet"]
    model.eval()
    # A mixed batch goes through the right stem per image: same as extracting each image alone.
    mixed = model.extract(images[:4], modality[:4])
    alone = torch.cat([model.extract(images[i:i + 1], int(modality[i])) for i in range(4)])
    torch.testing.assert_close(mixed, alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(model.extract(images[:2], 0), model.extract(images[:2], 1))
    torch.testing.assert_close(mixed.norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="pass modality"):
        model.extract(images[:2])


def test_agw_non_local_placement_resnet50():
    with torch.device("meta"):
        model = build_model("agw", 395, backbone="resnet50")
    assert [len(b) for b in model.non_local] == [0, 2, 3, 0]
    assert model.non_local_after == [[], [2, 3], [3, 4, 5], []]
    assert [nl.g.in_channels for nl in model.non_local[1]] == [512, 512]
    assert [nl.g.in_channels for nl in model.non_local[2]] == [1024, 1024, 1024]
    assert {nl.inter_channels for stage in model.non_local for nl in stage} == {1}  # the code's r // r
    assert "p" not in dict(model.named_parameters())  # GeM p is fixed


# --- weighted terms against independent formulas -----------------------------------------------
def test_idkl_terms_match_independent_formulas_small_batch():
    weights = {"id_weight": 1.5, "triplet_weight": 0.7, "triplet_margin": 0.9, "specific_id_weight": 2.0,
               "modality_weight": 0.4, "pseudo_modality_weight": 1.2, "ip_weight": 0.3, "bg_kl_weight": 1.1,
               "sm_kl_weight": 0.6, "distalign_weight": 1.3}
    model = make(loss=weights)
    data = batch()
    images, labels, modality = data
    out, terms = run(model, data)
    assert len(labels) != 120  # the public code's small-batch weights apply
    expected = {
        "id": 1.5 * ref_cross_entropy(out["logits"], labels),
        "triplet": 0.7 * (ref_triplet(out["feat"], labels, 0.9) + ref_triplet(out["sp_feat"], labels, 0.9)),
        "specific_id": 2.0 * ref_cross_entropy(out["sp_logits"], labels),
        "modality": 0.4 * ref_cross_entropy(out["modality_logits"], modality),
        "pseudo_modality": 1.2 * ref_cross_entropy(out["pseudo_modality_logits"],
                                                   torch.tensor(ref_pseudo_targets(modality))),
        "ip": 0.3 * (ref_entropy_margin(out["ip_logits_f"], out["ip_logits_fp"], 0.0)
                     + ref_modal_centroid(out["ip_in"], out["ip_in_p"], labels, modality, 0.0)),
        "bg_kl": 1.1 * ref_bg_kl(out["logits"], out["sp_logits"], modality, 0.3),
        "sm_kl": 0.6 * ref_sm_kl(out["logits"], out["sp_logits"], modality, K // 2, 0.3),
        "distalign": 1.3 * ref_distalign(out["feat"], out["sp_feat"], modality, full=False, scale=0.1),
    }
    assert {k: float(v) for k, v in terms.items()} == {k: pytest.approx(v, **TOL) for k, v in expected.items()}


def test_batch_size_switch_parameters():
    """`kl_large_batch` is the code's `bb = 120`: at that batch size the large-batch weights apply."""
    data = batch()
    images, labels, modality = data
    custom = {"bg_kl_inter_large": 0.9, "sm_kl_inter_large": 0.7, "distalign_inter_large": 0.45}
    exact = make(loss={"kl_large_batch": len(labels), **custom})
    out, terms = run(exact, data)
    assert float(terms["bg_kl"]) == pytest.approx(ref_bg_kl(out["logits"], out["sp_logits"], modality, 0.9), **TOL)
    assert float(terms["sm_kl"]) == pytest.approx(
        ref_sm_kl(out["logits"], out["sp_logits"], modality, K // 2, 0.7), **TOL)
    assert float(terms["distalign"]) == pytest.approx(
        ref_distalign(out["feat"], out["sp_feat"], modality, full=True, w_inter=0.45), **TOL)
    for rule, large in (("large", True), ("small", False)):
        model = make(loss={"kl_batch_rule": rule, "bg_kl_inter_small": 0.2})
        out, terms = run(model, data)
        w = 0.8 if large else 0.2
        assert float(terms["bg_kl"]) == pytest.approx(ref_bg_kl(out["logits"], out["sp_logits"], modality, w), **TOL)
        assert float(terms["distalign"]) == pytest.approx(
            ref_distalign(out["feat"], out["sp_feat"], modality, full=large), **TOL)


def test_large_batch_rule_uses_the_batch_120_formulation_at_any_batch():
    data = batch()
    code, large = make(), make(loss={"kl_batch_rule": "large"})
    assert (code.cfg.kl_batch_rule, large.cfg.kl_batch_rule) == ("exact", "large")
    out, terms = run(large, data)
    assert float(terms["bg_kl"]) == pytest.approx(ref_bg_kl(out["logits"], out["sp_logits"], data[2], 0.8), **TOL)


def test_uniform_pseudo_modality_option():
    model = make(loss={"pseudo_modality": {"targets": "uniform"}})
    out, terms = run(model, batch())
    logp = torch.log_softmax(out["pseudo_modality_logits"].double(), 1)
    assert float(terms["pseudo_modality"]) == pytest.approx(float(-(0.5 * logp).sum(1).mean()), **TOL)


def test_agw_terms_match_independent_formulas():
    model = make("agw", loss={"triplet_weight": 0.5})
    data = batch()
    out, terms = run(model, data)
    assert float(terms["id"]) == pytest.approx(ref_cross_entropy(out["logits"], data[1]), **TOL)
    assert float(terms["triplet"]) == pytest.approx(0.5 * ref_wrt(out["feat"], data[1]), **TOL)


# --- switches ---------------------------------------------------------------------------------
def _transfer(src, dst):
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert set(dst_state) <= set(src_state)
    dst.load_state_dict({k: src_state[k] for k in dst_state})


@pytest.mark.parametrize("term", IDKL_TERMS)
def test_each_switch_removes_its_term_and_only_it(term):
    data = batch()
    full = make(discriminator_dropout=0.0)
    reduced = make(loss={term: False}, discriminator_dropout=0.0)
    _transfer(full, reduced)
    _, on = run(full, data)
    _, off = run(reduced, data)
    assert term in on and term not in off
    assert set(off) == set(on) - {term}
    for name in off:
        assert float(off[name]) == pytest.approx(float(on[name]), rel=1e-5, abs=1e-6)
    assert float(sum(off.values())) == pytest.approx(float(sum(on.values()) - on[term]), rel=1e-5, abs=1e-5)


def test_weight_scales_its_term():
    data = batch()
    one = make(discriminator_dropout=0.0)
    three = make(loss={"bg_kl": {"weight": 3.0}, "ip_weight": 0.3}, discriminator_dropout=0.0)
    _, a = run(one, data)
    _, b = run(three, data)
    assert float(b["bg_kl"]) == pytest.approx(3 * float(a["bg_kl"]), rel=1e-5)
    assert float(b["ip"]) == pytest.approx(3 * float(a["ip"]), rel=1e-5)


def test_specific_branch_is_absent_when_its_terms_are_off():
    model = make(loss={t: False for t in SPECIFIC_BRANCH_TERMS})
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("specific_back", "purifier", "bn_neck_sp", "classifier_sp", "classifier_ip",
                                 "modality_head")) for n in names)
    assert any(n.startswith("pseudo_modality_head") for n in names)  # pseudo-modality needs only the shared feature
    out, terms = run(model, batch())
    assert "sp_feat" not in out and "triplet" in terms


# Modules that exist only for one term (given every other term on).
EXCLUSIVE_MODULES = {"modality": {"modality_head"}, "pseudo_modality": {"pseudo_modality_head"},
                     "ip": {"classifier_ip"}}


@pytest.mark.parametrize("term", IDKL_TERMS)
def test_each_switch_removes_the_modules_only_it_uses(term):
    full = set(make()._modules)
    reduced = set(make(loss={term: False})._modules)
    assert full - reduced == EXCLUSIVE_MODULES.get(term, set())


def test_shared_bn_neck_scale_is_frozen_only_when_no_loss_reaches_it():
    assert make().bn_neck.weight.requires_grad
    assert make(loss={**ALL_OFF, "id": False, "pseudo_modality": True}).bn_neck.weight.requires_grad
    assert not make(loss={**ALL_OFF, "id": False, "distalign": True}).bn_neck.weight.requires_grad


def test_ip_parts_build_only_what_they_use():
    assert "classifier_ip" not in make(loss={"ip": {"entropy": False}})._modules
    model = make(loss={"ip": {"centroid": False}})
    out, _ = run(model, batch())
    assert "ip_in" not in out and "ip_logits_f" in out


# Every configuration the ablation or a search can produce: all on, each term off, each IDKL term
# alone on top of the baseline (with and without identity CE), the IP parts, the specific triplet.
GRADIENT_CONFIGS = {
    "all-on": None, "baseline": ALL_OFF, "no-specific-triplet": {"triplet": {"specific": False}},
    "ip-centroid-only": {"ip": {"entropy": False}}, "ip-entropy-only": {"ip": {"centroid": False}},
    "ablation-decompose": {"ip": False, "bg_kl": False, "sm_kl": False, "distalign": False},
    "ablation-decompose-ip": {"bg_kl": False, "sm_kl": False, "distalign": False},
    **{f"without-{t}": {t: False} for t in IDKL_TERMS},
    **{f"baseline+{t}": {**ALL_OFF, t: True} for t in IDKL_ONLY_TERMS},
    **{f"triplet+{t}": {**ALL_OFF, "id": False, t: True} for t in IDKL_ONLY_TERMS},
}


def _assert_every_parameter_gets_a_gradient(model, data):
    _, terms = run(model, data)
    sum(terms.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    biases = {n for n in frozen if n.startswith("bn_neck") and n.endswith(".bias")}
    assert biases and frozen - biases <= {"bn_neck.weight"}  # the shared BN-neck's scale when no loss uses it


@pytest.mark.parametrize("loss", [pytest.param(c, id=name) for name, c in GRADIENT_CONFIGS.items()])
def test_every_trainable_parameter_receives_a_gradient(loss):
    model = make(loss=loss)
    _assert_every_parameter_gets_a_gradient(model, batch())
    if "specific_back" in model._modules:
        assert any(float(p.grad.abs().sum()) > 0 for p in model.specific_back.parameters())


def test_every_agw_parameter_receives_a_gradient():
    _assert_every_parameter_gets_a_gradient(make("agw"), batch())


def test_baseline_is_idkl_with_every_idkl_term_off():
    base = make("baseline")
    idkl_off = make("idkl", loss=ALL_OFF)
    assert type(base) is type(idkl_off) and base.cfg == idkl_off.cfg
    sa, sb = base.state_dict(), idkl_off.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)
    assert not any(k.startswith(("specific_back", "purifier")) for k in sa)
    data = batch()
    out_a, terms_a = run(base, data)
    out_b, terms_b = run(idkl_off, data)
    assert list(out_a) == list(out_b) == ["feat", "feat_bn", "logits"]
    for k in out_a:
        torch.testing.assert_close(out_a[k], out_b[k], rtol=0, atol=0)
    assert list(terms_a) == list(terms_b) == ["id", "triplet"]
    for k in terms_a:
        torch.testing.assert_close(terms_a[k], terms_b[k], rtol=0, atol=0)
    images, labels, _ = data
    assert float(terms_a["id"]) == pytest.approx(ref_cross_entropy(out_a["logits"], labels), **TOL)
    assert float(terms_a["triplet"]) == pytest.approx(ref_triplet(out_a["feat"], labels, 1.3), **TOL)
    base.eval(), idkl_off.eval()
    torch.testing.assert_close(base.extract(images), idkl_off.extract(images), rtol=0, atol=0)


# --- optimisation ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["idkl", "baseline", "agw"])
def test_a_few_steps_lower_the_loss(name):
    model = make(name)
    data = batch(seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(8):
        _, terms = run(model, data)
        total = sum(terms.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert totals[-1] < totals[0], totals


# --- parameter count of the public code -----------------------------------------------------------
SYSU_PARTS = {"front": 1_444_928, "shared_back": 22_063_104, "specific_back": 22_063_104,
              "purification": 1_052_672, "bn_necks": 4_096, "identity_heads": 2_426_880,
              "discriminators": 431_204}


def test_resnet50_parameter_count_matches_the_public_code():
    with torch.device("meta"):
        model = build_model("idkl", 395, backbone="resnet50", weights="none")
        base = build_model("baseline", 395, backbone="resnet50", weights="none")
    assert trainable_parameters(model) == 49_485_988
    parts = {k: sum(trainable_parameters(m) for m in v) for k, v in model.parts().items()}
    assert parts == SYSU_PARTS
    assert trainable_parameters(base) == 1_444_928 + 22_063_104 + 2_048 + 808_960


@pytest.mark.slow
def test_resnet50_parameters_receiving_gradients():
    """One real training step with three ResNet-50s on 8 tiny images (about 6 s on 2 CPU cores)."""
    torch.manual_seed(0)
    model = build_model("idkl", 395, backbone="resnet50", weights="none")
    images, labels, modality = batch(p=2, k=4)
    _, terms = run(model, (images, labels, modality))
    sum(terms.values()).backward()
    assert sum(p.numel() for p in model.parameters() if p.grad is not None) == 49_485_988

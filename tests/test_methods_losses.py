"""Each loss function against a formula written out independently with plain loops.

The ``ref_*`` helpers below are deliberately naive (Python loops over a tiny batch, math on
scalars) so they share no code with methods/losses.py; test_methods_models.py reuses them to check
the weighted terms of `IDKL.loss` and `AGW.loss`.
"""
from __future__ import annotations

import math

import pytest
import torch

from vireid.methods import losses as L

TOL = dict(rel=1e-4, abs=1e-5)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run fastest on one thread, and far faster when other jobs share the cores.
    The other test_methods_* modules import this fixture to use it too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- independent reference formulas -----------------------------------------------------------
def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in t.detach().double()]


def ref_dist(a: list[float], b: list[float], min_sq: float) -> float:
    sq = sum(x * x for x in a) + sum(y * y for y in b) - 2 * sum(x * y for x, y in zip(a, b))
    return math.sqrt(max(sq, min_sq))


def ref_log_softmax(row: list[float]) -> list[float]:
    m = max(row)
    z = math.log(sum(math.exp(v - m) for v in row)) + m
    return [v - z for v in row]


def ref_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    rows = _rows(logits)
    return sum(-ref_log_softmax(r)[int(t)] for r, t in zip(rows, targets)) / len(rows)


def ref_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    x, y = _rows(feats), [int(v) for v in labels]
    total = 0.0
    for i in range(len(x)):
        pos = [ref_dist(x[i], x[j], 1e-12) for j in range(len(x)) if y[j] == y[i]]
        neg = [ref_dist(x[i], x[j], 1e-12) for j in range(len(x)) if y[j] != y[i]]
        total += max(0.0, max(pos) - min(neg) + margin)
    return total / len(x)


def ref_wrt(feats: torch.Tensor, labels: torch.Tensor) -> float:
    x, y = _rows(feats), [int(v) for v in labels]
    n = len(x)
    total = 0.0
    for i in range(n):
        d = [ref_dist(x[i], x[j], 1e-12) for j in range(n)]
        pos = [1.0 if y[j] == y[i] else 0.0 for j in range(n)]
        neg = [1.0 - p for p in pos]
        # AGW's softmax_weights: the row maximum is taken over value * mask (masked entries count as 0).
        vp = [d[j] * pos[j] for j in range(n)]
        mp = max(vp[j] * pos[j] for j in range(n))
        zp = sum(math.exp(vp[j] - mp) * pos[j] for j in range(n)) + 1e-6
        furthest = sum(vp[j] * math.exp(vp[j] - mp) * pos[j] / zp for j in range(n))
        vn = [-d[j] * neg[j] for j in range(n)]
        mn = max(vn[j] * neg[j] for j in range(n))
        zn = sum(math.exp(vn[j] - mn) * neg[j] for j in range(n)) + 1e-6
        closest = sum(d[j] * neg[j] * math.exp(vn[j] - mn) * neg[j] / zn for j in range(n))
        total += math.log(1 + math.exp(-(closest - furthest)))
    return total / n


def ref_entropy(row: list[float]) -> float:
    lp = ref_log_softmax(row)
    return -sum(math.exp(v) * v for v in lp)


def ref_entropy_margin(logits_f: torch.Tensor, logits_fp: torch.Tensor, margin: float) -> float:
    a, b = _rows(logits_f), _rows(logits_fp)
    vals = [math.exp(max(0.0, ref_entropy(b[i]) - ref_entropy(a[i]) + margin)) - 1 for i in range(len(a))]
    return sum(vals) / len(vals)


def ref_centroid_dists(feats: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor) -> list[float]:
    x, y, m = _rows(feats), [int(v) for v in labels], [int(v) for v in modality]
    out = []
    for pid in sorted(set(y)):
        vis = [x[i] for i in range(len(x)) if y[i] == pid and m[i] == 0]
        ir = [x[i] for i in range(len(x)) if y[i] == pid and m[i] == 1]
        if not vis or not ir:
            continue
        cv = [sum(col) / len(vis) for col in zip(*vis)]
        ci = [sum(col) / len(ir) for col in zip(*ir)]
        out.append(math.sqrt(sum((a - b + 1e-6) ** 2 for a, b in zip(cv, ci))))  # F.pairwise_distance eps
    return out


def ref_modal_centroid(ref: torch.Tensor, new: torch.Tensor, labels, modality, margin: float) -> float:
    d_ref = ref_centroid_dists(ref, labels, modality)
    d_new = ref_centroid_dists(new, labels, modality)
    vals = [max(0.0, b - a + margin) for a, b in zip(d_ref, d_new)]
    return sum(vals) / len(vals)


def ref_skl_rows(a: list[list[float]], b: list[list[float]]) -> float:
    total = 0.0
    for ra, rb in zip(a, b):
        la, lb = ref_log_softmax(ra), ref_log_softmax(rb)
        total += sum(math.exp(q) * (q - p) for p, q in zip(la, lb))  # KL(p_b || p_a)
        total += sum(math.exp(p) * (p - q) for p, q in zip(la, lb))  # KL(p_a || p_b)
    return total / len(a)


def ref_skl(a: torch.Tensor, b: torch.Tensor) -> float:
    return ref_skl_rows(_rows(a), _rows(b))


def _select(t: torch.Tensor, modality: torch.Tensor, value: int) -> list[list[float]]:
    rows = _rows(t)
    return [rows[i] for i in range(len(rows)) if int(modality[i]) == value]


def ref_bg_kl(sh: torch.Tensor, sp: torch.Tensor, modality: torch.Tensor, w: float) -> float:
    shv, shi = _select(sh, modality, 0), _select(sh, modality, 1)
    spv, spi = _select(sp, modality, 0), _select(sp, modality, 1)
    return ref_skl_rows(shv, shi) + w * (ref_skl_rows(shv, spv) + ref_skl_rows(shi, spi))


def ref_grouped(rows: list[list[float]], g: int) -> list[list[float]]:
    groups = len(rows) // g
    return [[v for j in range(groups) for v in rows[j * g + r]] for r in range(g)]


def ref_sm_kl(sh: torch.Tensor, sp: torch.Tensor, modality: torch.Tensor, g: int, w: float) -> float:
    shv, shi = ref_grouped(_select(sh, modality, 0), g), ref_grouped(_select(sh, modality, 1), g)
    spv, spi = ref_grouped(_select(sp, modality, 0), g), ref_grouped(_select(sp, modality, 1), g)
    return ref_skl_rows(shv, shi) + w * (ref_skl_rows(shv, spv) + ref_skl_rows(shi, spi))


def ref_dist_rows(rows: list[list[float]]) -> list[list[float]]:
    return [[ref_dist(rows[i], rows[j], 1e-6) for j in range(len(rows)) if j != i] for i in range(len(rows))]


def ref_distalign(sh: torch.Tensor, sp: torch.Tensor, modality: torch.Tensor, full: bool,
                  w_inter: float = 0.6, scale: float = 0.1) -> float:
    shv, shi = _select(sh, modality, 0), _select(sh, modality, 1)
    spv, spi = _select(sp, modality, 0), _select(sp, modality, 1)
    d_shv, d_shi = ref_dist_rows(shv), ref_dist_rows(shi)
    inter = ref_skl_rows(d_shv, ref_dist_rows(spv)) + ref_skl_rows(d_shi, ref_dist_rows(spi))
    intra1 = ref_skl_rows(d_shv, d_shi)
    if not full:
        return scale * (intra1 + inter)
    cross = shv[: len(shv) // 2] + shi[: len(shi) // 2]
    d_cross = ref_dist_rows(cross)
    return intra1 + ref_skl_rows(d_shv, d_cross) + ref_skl_rows(d_cross, d_shi) + w_inter * inter


def ref_pseudo_targets(modality: torch.Tensor) -> list[int]:
    m = [int(v) for v in modality]
    n = len(m)
    repeated = []
    for v in m[: n // 2]:
        repeated += [v, v]
    return [repeated[(j + 1) % n] for j in range(n)]  # rolled left by one


def ref_uniform_ce(logits: torch.Tensor) -> float:
    rows = _rows(logits)
    return sum(-0.5 * sum(ref_log_softmax(r)) for r in rows) / len(rows)


# --- a tiny batch in the sampler's layout: per identity IR, RGB, IR, RGB ----------------------
def tiny_batch(p: int = 3, k: int = 4, dim: int = 5, classes: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(p).repeat_interleave(k)
    modality = torch.tensor([1, 0] * (p * k // 2))
    feats = torch.randn(p * k, dim, generator=g) + labels[:, None].float()
    return feats, labels, modality, g


# --- tests --------------------------------------------------------------------------------------
def test_cross_entropy():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    assert float(L.cross_entropy(logits, targets)) == pytest.approx(ref_cross_entropy(logits, targets), **TOL)


@pytest.mark.parametrize("margin", [0.3, 1.3, 10.0])
def test_batch_hard_triplet(margin):
    feats, labels, _, _ = tiny_batch()
    expected = ref_triplet(feats, labels, margin)
    assert float(L.batch_hard_triplet(feats, labels, margin)) == pytest.approx(expected, **TOL)


def test_batch_hard_triplet_needs_two_identities():
    with pytest.raises(ValueError, match="single identity"):
        L.batch_hard_triplet(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 0.3)


def test_weighted_regularized_triplet():
    feats, labels, _, _ = tiny_batch()
    assert float(L.weighted_regularized_triplet(feats, labels)) == pytest.approx(ref_wrt(feats, labels), **TOL)
    small = feats * 0.1
    assert float(L.weighted_regularized_triplet(small, labels)) == pytest.approx(ref_wrt(small, labels), **TOL)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_entropy_margin(margin):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 5, generator=g), 2 * torch.randn(6, 5, generator=g)
    assert float(L.entropy_margin(a, b, margin)) == pytest.approx(ref_entropy_margin(a, b, margin), **TOL)


def test_modal_centroid():
    feats, labels, modality, g = tiny_batch()
    new = feats + 0.5 * torch.randn(feats.shape, generator=g)
    for margin in (0.0, 0.2):
        got = float(L.modal_centroid(feats, new, labels, modality, margin))
        assert got == pytest.approx(ref_modal_centroid(feats, new, labels, modality, margin), **TOL)


def test_modal_centroid_skips_identities_seen_in_one_modality():
    feats = torch.randn(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    modality = torch.tensor([1, 0, 1, 0, 1, 1])  # identity 2 has no visible image
    got = float(L.modal_centroid(feats, feats * 2, labels, modality))
    assert math.isfinite(got)
    assert got == pytest.approx(ref_modal_centroid(feats, feats * 2, labels, modality, 0.0), **TOL)


def test_symmetric_kl_batchmean():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    assert float(L.symmetric_kl(a, b)) == pytest.approx(ref_skl(a, b), **TOL)
    assert float(L.symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="as many visible as infrared"):
        L.symmetric_kl(a, b[:3])


@pytest.mark.parametrize("w", [0.8, 0.3])
def test_bg_kl(w):
    _, labels, modality, g = tiny_batch()
    sh, sp = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    assert float(L.bg_kl(sh, sp, modality, w)) == pytest.approx(ref_bg_kl(sh, sp, modality, w), **TOL)


@pytest.mark.parametrize("w", [0.8, 0.3])
def test_sm_kl(w):
    _, labels, modality, g = tiny_batch(p=3, k=4)
    sh, sp = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    got = float(L.sm_kl(sh, sp, modality, 2, w))
    assert got == pytest.approx(ref_sm_kl(sh, sp, modality, 2, w), **TOL)


def test_sm_kl_group_concat_layout():
    rows = torch.arange(12.0).view(6, 2)  # 3 groups of 2 rows
    out = L.group_concat(rows, 2)
    assert out.tolist() == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]
    with pytest.raises(ValueError, match="groups of 4"):
        L.group_concat(rows, 4)


@pytest.mark.parametrize("full", [True, False])
def test_distalign(full):
    feats, labels, modality, g = tiny_batch(p=3, k=4)
    sp = torch.randn(feats.shape, generator=g)
    got = float(L.distalign(feats, sp, modality, full=full, inter_weight=0.6, reduced_scale=0.1))
    assert got == pytest.approx(ref_distalign(feats, sp, modality, full, 0.6, 0.1), **TOL)
    got = float(L.distalign(feats, sp, modality, full=full, inter_weight=0.25, reduced_scale=0.5))
    assert got == pytest.approx(ref_distalign(feats, sp, modality, full, 0.25, 0.5), **TOL)


def test_modality_ce():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 2, generator=g)
    modality = torch.tensor([1, 0] * 4)
    assert float(L.modality_ce(logits, modality)) == pytest.approx(ref_cross_entropy(logits, modality), **TOL)


def test_pseudo_modality_targets_and_ce():
    modality = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0])
    assert L.code_pseudo_modality_targets(modality).tolist() == ref_pseudo_targets(modality)
    # the sampler's interleaved layout gives the code's characteristic pattern
    assert L.code_pseudo_modality_targets(torch.tensor([1, 0] * 4)).tolist() == [1, 0, 0, 1, 1, 0, 0, 1]
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(8, 2, generator=g)
    expected = ref_cross_entropy(logits, torch.tensor(ref_pseudo_targets(modality)))
    assert float(L.pseudo_modality_ce(logits, modality, "code")) == pytest.approx(expected, **TOL)
    assert float(L.pseudo_modality_ce(logits, modality, "uniform")) == pytest.approx(ref_uniform_ce(logits), **TOL)
    with pytest.raises(ValueError, match="even batch"):
        L.code_pseudo_modality_targets(torch.tensor([1, 0, 1]))

"""Loss functions as pure functions on tensors (no modules, no state).

Formulas follow the public IDKL code (models/baseline.py, layers/loss/triplet_loss.py) and the
AGW code (loss.py: TripletLoss_WRT); docs/methods.md lists them. ``modality``: 0 = visible,
1 = infrared.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


# --- distances ------------------------------------------------------------------------------
def euclidean_dist(x: torch.Tensor, y: torch.Tensor, min_sq: float = 1e-12) -> torch.Tensor:
    """(N, M) Euclidean distances ``sqrt(clamp(|x|^2 + |y|^2 - 2 x.y, min_sq))``."""
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1, keepdim=True).t() - 2.0 * x @ y.t()
    return sq.clamp(min=min_sq).sqrt()


def off_diagonal(mat: torch.Tensor) -> torch.Tensor:
    """(N, N) -> (N, N-1): every row without its diagonal entry."""
    n = mat.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=mat.device)
    return mat[keep].view(n, n - 1)


# --- identity / metric losses -----------------------------------------------------------------
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets)


def batch_hard_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet: mean over anchors of relu(hardest positive - hardest negative + margin).

    Every anchor needs a positive (itself counts, distance ~1e-6) and at least one negative.
    """
    feats = feats.float()
    dist = euclidean_dist(feats, feats, 1e-12)
    same = labels[:, None] == labels[None, :]
    if bool(same.all()):
        raise ValueError("triplet loss: the batch holds a single identity; it needs at least two")
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def _softmax_weights(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    max_v = (dist * mask).amax(1, keepdim=True)
    e = torch.exp(dist - max_v) * mask
    return e / (e.sum(1, keepdim=True) + 1e-6)


def weighted_regularized_triplet(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AGW's weighted regularised triplet (WRT): softmax-weighted positive/negative distances,
    soft-margin loss ``mean(log(1 + exp(-(d_n - d_p))))``; no margin parameter."""
    feats = feats.float()
    dist = euclidean_dist(feats, feats, 1e-12)
    is_pos = (labels[:, None] == labels[None, :]).float()
    is_neg = 1.0 - is_pos
    dist_ap = dist * is_pos
    dist_an = dist * is_neg
    furthest_pos = (dist_ap * _softmax_weights(dist_ap, is_pos)).sum(1)
    closest_neg = (dist_an * _softmax_weights(-dist_an, is_neg)).sum(1)
    return F.softplus(-(closest_neg - furthest_pos)).mean()


# --- IDKL: purification (IP) ------------------------------------------------------------------
def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of softmax(logits)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1)


def entropy_margin(logits_f: torch.Tensor, logits_fp: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """mean(exp(relu(H(logits_fp) - H(logits_f) + margin)) - 1): the purified map F_p must not be
    less certain about identity than F (both through the same classifier)."""
    return (torch.exp(F.relu(entropy(logits_fp) - entropy(logits_f) + margin)) - 1.0).mean()


def modal_centroid_distances(feats: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
    """Per identity holding both modalities (in sorted id order): the Euclidean distance between
    its visible and infrared centroids, as ``F.pairwise_distance`` (eps 1e-6 added to the difference)."""
    out = []
    for pid in torch.unique(labels):
        vis = feats[(labels == pid) & (modality == 0)]
        ir = feats[(labels == pid) & (modality == 1)]
        if len(vis) == 0 or len(ir) == 0:
            continue  # the public code would produce NaN here; such ids are skipped
        out.append(F.pairwise_distance(vis.mean(0, keepdim=True), ir.mean(0, keepdim=True)))
    if not out:
        return feats.new_zeros(0)
    return torch.cat(out)


def modal_centroid(feats_ref: torch.Tensor, feats_new: torch.Tensor, labels: torch.Tensor,
                   modality: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """mean over identities of relu(d(feats_new) - d(feats_ref) + margin), d = the distance between
    the identity's visible and infrared centroids (IDKL: ref = GeM(IN(F)), new = GeM(IN_p))."""
    d_ref = modal_centroid_distances(feats_ref.float(), labels, modality)
    d_new = modal_centroid_distances(feats_new.float(), labels, modality)
    if d_ref.numel() == 0:
        return feats_new.sum() * 0.0
    return F.relu(d_new - d_ref + margin).mean()


# --- IDKL: distillation -----------------------------------------------------------------------
def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """KL(p_b || p_a) + KL(p_a || p_b) with row softmaxes, each summed over classes and divided by
    the number of rows (``nn.KLDivLoss(reduction='batchmean')`` in both directions). Gradients
    flow into both inputs, as in the public code."""
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"symmetric KL: the two logit sets differ in shape: {tuple(logits_a.shape)} "
                         f"vs {tuple(logits_b.shape)} (the batch needs as many visible as infrared images)")
    la = F.log_softmax(logits_a.float(), dim=1)
    lb = F.log_softmax(logits_b.float(), dim=1)
    return (F.kl_div(la, lb, reduction="batchmean", log_target=True)
            + F.kl_div(lb, la, reduction="batchmean", log_target=True))


def bg_kl(logits_sh: torch.Tensor, logits_sp: torch.Tensor, modality: torch.Tensor,
          inter_weight: float) -> torch.Tensor:
    """Batch-level KL: intra = SKL(shared vis, shared ir); inter = SKL(shared vis, specific vis)
    + SKL(shared ir, specific ir); returns intra + inter_weight * inter."""
    vis, ir = modality == 0, modality == 1
    intra = symmetric_kl(logits_sh[vis], logits_sh[ir])
    inter = symmetric_kl(logits_sh[vis], logits_sp[vis]) + symmetric_kl(logits_sh[ir], logits_sp[ir])
    return intra + inter_weight * inter


def group_concat(logits: torch.Tensor, group_size: int) -> torch.Tensor:
    """Split the rows into consecutive groups of `group_size` and concatenate the groups along the
    class axis: (G * group_size, C) -> (group_size, G * C)."""
    n = logits.shape[0]
    if group_size < 1 or n % group_size:
        raise ValueError(f"sm_kl: {n} rows cannot be split into groups of {group_size} "
                         "(expected P identities x K/2 images per modality)")
    return torch.cat(logits.split(group_size, 0), dim=1)


def sm_kl_pair(logits_a: torch.Tensor, logits_b: torch.Tensor, group_size: int) -> torch.Tensor:
    return symmetric_kl(group_concat(logits_a, group_size), group_concat(logits_b, group_size))


def sm_kl(logits_sh: torch.Tensor, logits_sp: torch.Tensor, modality: torch.Tensor, group_size: int,
          inter_weight: float) -> torch.Tensor:
    """KL over identity-grouped logits (``Sm_kl``): each modality's rows in groups of
    `group_size` (K/2), concatenated along classes; intra = shared vis vs shared ir, inter =
    shared vs specific within each modality; returns intra + inter_weight * inter."""
    vis, ir = modality == 0, modality == 1
    intra = sm_kl_pair(logits_sh[vis], logits_sh[ir], group_size)
    inter = (sm_kl_pair(logits_sh[vis], logits_sp[vis], group_size)
             + sm_kl_pair(logits_sh[ir], logits_sp[ir], group_size))
    return intra + inter_weight * inter


def distance_rows(feats: torch.Tensor) -> torch.Tensor:
    """Euclidean distances within `feats` (``clamp(sq, 1e-6).sqrt()``), diagonal removed: (N, N-1)."""
    return off_diagonal(euclidean_dist(feats, feats, 1e-6))


def distalign(feats_sh: torch.Tensor, feats_sp: torch.Tensor, modality: torch.Tensor, full: bool,
              inter_weight: float = 0.6, reduced_scale: float = 0.1) -> torch.Tensor:
    """Alignment of distance distributions (``TGSA`` in the public code); rows of the distance
    matrices (diagonal removed) are used as logits of the symmetric KL.

    inter = SKL(D(sh vis), D(sp vis)) + SKL(D(sh ir), D(sp ir));
    intra1 = SKL(D(sh vis), D(sh ir)); with `cross` = first half of the visible shared features
    followed by the first half of the infrared ones, intra2 = SKL(D(sh vis), D(cross)),
    intra3 = SKL(D(cross), D(sh ir)).
    full: intra1 + intra2 + intra3 + inter_weight * inter; else reduced_scale * (intra1 + inter).
    """
    feats_sh, feats_sp = feats_sh.float(), feats_sp.float()
    vis, ir = modality == 0, modality == 1
    sh_v, sh_i = feats_sh[vis], feats_sh[ir]
    d_sh_v, d_sh_i = distance_rows(sh_v), distance_rows(sh_i)
    inter = (symmetric_kl(d_sh_v, distance_rows(feats_sp[vis]))
             + symmetric_kl(d_sh_i, distance_rows(feats_sp[ir])))
    intra1 = symmetric_kl(d_sh_v, d_sh_i)
    if not full:
        return reduced_scale * (intra1 + inter)
    cross = torch.cat((sh_v[: sh_v.shape[0] // 2], sh_i[: sh_i.shape[0] // 2]), 0)
    d_cross = distance_rows(cross)
    intra = intra1 + symmetric_kl(d_sh_v, d_cross) + symmetric_kl(d_cross, d_sh_i)
    return intra + inter_weight * inter


# --- IDKL: modality heads ---------------------------------------------------------------------
def modality_ce(logits: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), modality)


def code_pseudo_modality_targets(modality: torch.Tensor) -> torch.Tensor:
    """The public code's pseudo-modality targets: the first half of the batch's modality labels,
    each repeated twice in place (``repeat_interleave``), then rolled left by one."""
    n = modality.shape[0]
    if n % 2:
        raise ValueError(f"pseudo-modality targets (code form) need an even batch, got {n} images")
    return torch.roll(modality[: n // 2].repeat_interleave(2), -1)


def pseudo_modality_ce(logits: torch.Tensor, modality: torch.Tensor, targets: str = "code") -> torch.Tensor:
    """Cross-entropy of the shared-feature discriminator. targets='code': the public code's rolled
    labels; 'uniform': cross-entropy against (1/2, 1/2) (a modality-confusion target)."""
    if targets == "code":
        return F.cross_entropy(logits.float(), code_pseudo_modality_targets(modality))
    if targets == "uniform":
        return -F.log_softmax(logits.float(), dim=1).mean(1).mean()
    raise ValueError(f"pseudo-modality targets: expected 'code' or 'uniform', got {targets!r}")

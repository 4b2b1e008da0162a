"""Building blocks shared by the methods: GeM pooling, BN-neck, IDKL's purifier and modality
discriminator, and AGW's non-local block.

Each block follows the public code it comes from (1KK077/IDKL, mangye16/Cross-Modal-Re-ID-baseline);
the docstrings say where a detail matters (parameter counts, initialisation).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def gem(x: torch.Tensor, p: float = 3.0, eps: float = 1e-6, clamp: bool = True) -> torch.Tensor:
    """Generalised-mean pooling of a (N, C, H, W) map -> (N, C), computed in float32.

    clamp=True (IDKL): ``mean(clamp(x, eps) ** p) ** (1/p)``.
    clamp=False (AGW): ``(mean(x ** p) + eps) ** (1/p)`` (AGW uses eps 1e-12 on post-ReLU maps).
    """
    x = x.float()
    if clamp:
        pooled = x.clamp(min=eps).pow(p).mean(dim=(-2, -1))
    else:
        pooled = x.pow(p).mean(dim=(-2, -1)) + eps
    return pooled.pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a fixed p (IDKL and AGW both use p = 3 and train no p)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, clamp: bool = True):
        super().__init__()
        self.p, self.eps, self.clamp = p, eps, clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps, self.clamp)

    def extra_repr(self) -> str:
        return f"p={self.p:g}, eps={self.eps:g}, clamp={self.clamp}"


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d whose bias is fixed at 0 (``requires_grad=False``): only the scale is trained.

    ``weight_std`` > 0 draws the scale from N(1, weight_std) as AGW's ``weights_init_kaiming``
    does for its bottleneck; IDKL keeps PyTorch's default (all ones).
    """

    def __init__(self, dim: int, weight_std: float = 0.0):
        super().__init__(dim)
        if weight_std > 0:
            nn.init.normal_(self.weight, 1.0, weight_std)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


class ChannelMask(nn.Sequential):
    """Position-wise channel mask: conv1x1(C -> C/r, no bias), ReLU, conv1x1(C/r -> C, no bias), sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        hidden = max(channels // reduction, 1)
        super().__init__(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
            nn.Sigmoid(),
        )


class Purifier(nn.Module):
    """IDKL's IN-guided purification of the modality-specific map F.

    IN = InstanceNorm2d(C, affine, running stats); m_IN = mask1(IN(F)); m_F = mask2(F);
    IN_p = m_IN * IN(F); F_p = m_F * F; purified = m_IN * F_p + m_F * IN_p.
    With C = 2048 and reduction 16 each mask is 2048 -> 128 -> 2048 (524,288 weights);
    the IN adds 2 * C affine parameters.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.instance_norm = nn.InstanceNorm2d(channels, affine=True, track_running_stats=True)
        self.mask_in = ChannelMask(channels, reduction)
        self.mask_f = ChannelMask(channels, reduction)

    def forward(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        f_in = self.instance_norm(f)
        m_in = self.mask_in(f_in)
        m_f = self.mask_f(f)
        in_p = m_in * f_in
        f_p = m_f * f
        purified = m_in * f_p + m_f * in_p
        return {"in": f_in, "in_p": in_p, "f_p": f_p, "purified": purified}


class ModalityDiscriminator(nn.Module):
    """IDKL's ``Discrimination`` MLP: fc(D->100), BN1d, ReLU, dropout, fc(100->100), BN1d, ReLU,
    dropout, fc(100->2). Linear layers have biases (215,602 parameters for D = 2048)."""

    def __init__(self, dim: int, hidden: int = 100, num_outputs: int = 2, dropout: float = 0.5):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, num_outputs)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(F.relu(self.bn1(self.fc1(x))), p=self.dropout, training=self.training)
        x = F.dropout(F.relu(self.bn2(self.fc2(x))), p=self.dropout, training=self.training)
        return self.fc3(x)


class NonLocal(nn.Module):
    """AGW's non-local block (Wang et al.'s dot-product form, f / N), with a residual connection.

    g, theta, phi: conv1x1(C -> C/r) with bias; W: conv1x1(C/r -> C) with bias then BatchNorm2d
    initialised to zero, so the block starts as the identity. r = 2 is the non-local paper's
    bottleneck; the cross-modal AGW code computes its width as ``r // r`` (= 1 channel), which
    docs/methods.md records as a difference. `inner` (when given) sets the width C' directly.
    """

    def __init__(self, channels: int, reduction: int = 2, inner: int | None = None):
        super().__init__()
        if inner is not None and (isinstance(inner, bool) or not isinstance(inner, int) or inner < 1):
            raise ValueError(f"non-local inner width: expected a positive int or None, got {inner!r}")
        self.inter_channels = inner if inner is not None else max(channels // reduction, 1)
        self.g = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.theta = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, self.inter_channels, kernel_size=1)
        self.W = nn.Sequential(nn.Conv2d(self.inter_channels, channels, kernel_size=1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g_x = self.g(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        theta_x = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi_x = self.phi(x).flatten(2)  # (N, C', HW)
        f = torch.matmul(theta_x, phi_x) / phi_x.shape[-1]
        y = torch.matmul(f, g_x).transpose(1, 2).reshape(n, self.inter_channels, h, w)
        return self.W(y) + x

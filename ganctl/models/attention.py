"""Self-attention (SAGAN, Zhang et al. 2019), the one layer every family inserts at a chosen resolution.

As BigGAN-PyTorch writes it (Brock et al. 2019): 1x1 convs to queries and keys of C/8 channels and
values of C/2, keys and values max-pooled 2x2 (a quarter of the positions: 4x cheaper, the same
result in practice), softmax over positions, a 1x1 conv back to C, and a learned gate gamma that
starts at 0, so that at initialisation the layer is the identity and the network is the one without it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ganctl.errors import GanctlError


class SelfAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x + gamma * attention(x). Needs C >= 8 (queries of C/8 channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 8:
            raise GanctlError(f"Self-attention needs at least 8 channels where it sits (queries of C/8), got {channels}: "
                              "place it at a resolution with more channels, or widen the network.")
        self.query = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.key = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.value = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.output = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2)  # (B, C/8, HW)
        pooled = (height >= 2 and width >= 2)  # a 1-pixel map has nothing to pool
        key = (F.max_pool2d(self.key(x), 2) if pooled else self.key(x)).flatten(2)  # (B, C/8, HW/4)
        value = (F.max_pool2d(self.value(x), 2) if pooled else self.value(x)).flatten(2)  # (B, C/2, HW/4)
        weights = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # (B, HW, HW/4)
        attended = torch.bmm(value, weights.transpose(1, 2)).view(batch, channels // 2, height, width)  # (B, C/2, H, W)
        return x + self.gamma * self.output(attended)


def attention_at(resolution: Optional[int], resolutions: Sequence[int], where: str) -> Optional[int]:
    """The index of the first layer (of those whose outputs have `resolutions`) after which the
    self-attention layer goes; None without one. A resolution the network never has is refused."""
    if resolution is None:
        return None
    if resolution not in resolutions:
        sizes = ", ".join(str(size) for size in sorted(set(resolutions)))
        raise GanctlError(f"{where}.attention={resolution}: this network's feature maps are {sizes} pixels wide "
                          f"at these images' size; put the self-attention layer at one of them (or null for none).")
    return list(resolutions).index(resolution)

"""The ResNet GAN of SNGAN (Miyato et al. 2018), as the reference code builds it
(pfnet-research/sngan_projection; Mimicry follows it), for images of the dataset's size.

Two members of one family, chosen by the image size:

  up to 32 px (CIFAR-10)   G: z -> linear to s x s x W -> one up-block of W channels per doubling
                           -> BN, ReLU, 3x3 conv, tanh (W = 256). D: an optimised first block, a
                           downsampling block, two blocks at that size, all W wide (W = 128).
                           At 32x32x3: G 4,276,739 and D 1,053,825 parameters.
  48 px and up (STL-10,    G: z -> linear to s x s x 16W (8W at 48), up-blocks halving the width to
  64, 128: ImageNet)       W; D: an optimised block to W, then blocks doubling it to 16W, all
                           downsampling but the last (W = 64). At 64x64x3: G 12,220,675, D 10,141,441.

Up-blocks: BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3 conv, plus a 1x1-conv shortcut of the
upsampled input. Down-blocks: ReLU, 3x3 conv, ReLU, 3x3 conv, 2x2 average pool, plus a shortcut
(1x1 conv, then the pool) where the block changes the width or the size, else the identity. D ends
in ReLU, global sum pooling (`pooling: mean` for the WGAN-GP ResNet) and a linear layer. Spectral
norm on every D layer, Glorot-uniform init (gain sqrt(2) in the residual branches) as the reference.
Conditioned, G's block BatchNorms become class-conditional and D projects (or classifies) the
pooled features; optional self-attention after the block of a chosen output resolution.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ganctl.errors import GanctlError
from ganctl.models.attention import SelfAttention, attention_at
from ganctl.models.capabilities import block_outputs, blocks_joining, freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning, LabelLayer, LabelledSequential, flat_scores
from ganctl.models.layers import spectrally_normalised


def resnet_layout(image_size: int) -> tuple[int, int]:
    """image_size = start * 2**doublings with 3 <= start <= 7 and at least two doublings (G's
    up-blocks): 28 -> (7, 2), 32 -> (4, 3), 48 -> (6, 3), 64 -> (4, 4), 128 -> (4, 5)."""
    start, doublings = image_size, 0
    while start > 7 and start % 2 == 0:
        start, doublings = start // 2, doublings + 1
    if doublings < 2 or not 3 <= start <= 7:
        raise GanctlError(
            f"The ResNet models cannot make {image_size}x{image_size} images: the size must be a small number "
            "(3 to 7) doubled at least twice, e.g. 28, 32, 48, 64 or 128. Set dataset.image_size to such a size."
        )
    return start, doublings


def _glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """The reference's init: Glorot-uniform weights (Chainer's GlorotUniform(gain)), zero biases."""
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def _glorot_convs(module: nn.Module) -> nn.Module:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            _glorot(layer)
    return module


def _normalise(norm: nn.Module, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    return norm(x, labels) if isinstance(norm, LabelLayer) else norm(x)


class UpBlock(nn.Module):
    """G's residual block: (B, in, H, W) -> (B, out, 2H, 2W); its BatchNorms class-conditional when
    G sees the label that way."""

    def __init__(self, in_channels: int, out_channels: int, conditioning: Conditioning) -> None:
        super().__init__()
        self.norm1, self.norm2 = conditioning.batch_norm(in_channels), conditioning.batch_norm(out_channels)
        self.conv1 = _glorot(nn.Conv2d(in_channels, out_channels, 3, 1, 1), math.sqrt(2))
        self.conv2 = _glorot(nn.Conv2d(out_channels, out_channels, 3, 1, 1), math.sqrt(2))
        self.shortcut = _glorot(nn.Conv2d(in_channels, out_channels, 1))  # it resamples: always learnable

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = F.interpolate(F.relu(_normalise(self.norm1, x, labels)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(_normalise(self.norm2, self.conv1(h), labels)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")  # = the 1x1 conv of the upsampled x


class DownBlock(nn.Module):
    """D's residual block: (B, in, H, W) -> (B, out, H/2, W/2) when it downsamples, else (B, out, H, W).
    `first`: the optimised first block (no ReLU before its first conv, the shortcut pooled before
    its 1x1 conv). The residual branch keeps the input width until its second conv."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        self.downsample, self.first = downsample, first
        hidden = out_channels if first else in_channels
        self.conv1 = _glorot(nn.Conv2d(in_channels, hidden, 3, 1, 1), math.sqrt(2))
        self.conv2 = _glorot(nn.Conv2d(hidden, out_channels, 3, 1, 1), math.sqrt(2))
        learnable = first or downsample or in_channels != out_channels
        self.shortcut = _glorot(nn.Conv2d(in_channels, out_channels, 1)) if learnable else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        shortcut = self.shortcut(x)
        return h + (F.avg_pool2d(shortcut, 2) if self.downsample else shortcut)


def _small(image_size: int) -> bool:
    """The CIFAR-10 member (constant width) up to 32 px; the wider, deeper one from 48 px."""
    return image_size <= 32


class ResNetGenerator(nn.Module):
    """latent (B, Z) -> linear to (B, W0, s, s) -> up-blocks -> BN, ReLU, 3x3 conv, tanh -> (B, C, H, W).
    `width`: the published one when null (256 up to 32 px; 64 from 48 px, the narrowest block's)."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: Optional[int] = None,
                 attention: Optional[int] = None, conditioning: Conditioning = UNCONDITIONAL) -> None:
        super().__init__()
        start, doublings = resnet_layout(image_size)
        if width is not None and width < 1:
            raise GanctlError(f"model.generator.width must be at least 1 (or null for the published width), got {width}.")
        if _small(image_size):
            widths = [width or 256] * (doublings + 1)
        else:  # 16W at the bottom (8W at 48 px), halving to W: the reference's 64 and 128 px generators
            widths = [16] * max(0, doublings - 4) + [16, 8, 4, 2, 1][-(doublings + 1):]
            widths = [multiple * (width or 64) for multiple in widths]
        self.latent_dim, self.start, self.bottom = latent_dim, start, widths[0]
        self.input = LabelledSequential(
            *conditioning.generator_input(),  # (B, Z + E) when the label joins the latent
            _glorot(nn.Linear(conditioning.generator_input_size(latent_dim), start * start * widths[0])),
        )
        blocks: list[nn.Module] = [UpBlock(a, b, conditioning) for a, b in zip(widths, widths[1:])]
        place = attention_at(attention, [start * 2 ** (i + 1) for i in range(doublings)], "model.generator")
        if place is not None:
            blocks.insert(place + 1, _glorot_convs(SelfAttention(widths[place + 1])))
        self.blocks = nn.ModuleList(blocks)
        self.output = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), _glorot(nn.Conv2d(widths[-1], channels, 3, 1, 1)),
                                    nn.Tanh())

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.input(z, labels).view(z.shape[0], self.bottom, self.start, self.start)  # (B, W0, s, s)
        for block in self.blocks:
            x = block(x, labels) if isinstance(block, UpBlock) else block(x)
        return self.output(x)  # (B, C, H, W)

    def first_layer_weight(self) -> torch.Tensor:
        """(W0 * s * s, latent_dim): the first linear layer's weight on the latent (SeFa)."""
        return self.input[-1].weight[:, : self.latent_dim]


class ResNetDiscriminator(nn.Module):
    """(B, C, H, W) -> residual down-blocks -> ReLU, global sum (or mean) pool -> linear -> (B,) scores.
    `width`: the published one when null (128 up to 32 px; 64 from 48 px, the first block's)."""

    def __init__(self, channels: int, image_size: int, width: Optional[int] = None, spectral_norm: bool = True,
                 pooling: str = "sum", attention: Optional[int] = None,
                 freeze: int = 0, conditioning: Conditioning = UNCONDITIONAL) -> None:
        super().__init__()
        _, doublings = resnet_layout(image_size)
        if width is not None and width < 1:
            raise GanctlError(f"model.discriminator.width must be at least 1 (or null for the published width), got {width}.")
        if pooling not in ("sum", "mean"):
            raise GanctlError(f"model.discriminator.pooling must be sum or mean, got {pooling!r}.")
        self.pooling = pooling
        if _small(image_size):  # optimised block and one more downsampling, then two blocks at that size
            widths, downsamples = [width or 128] * 4, [True, True, False, False]
        else:  # W, 2W, 4W, 8W, 16W (then 16W again), every block downsampling but the last
            blocks = max(5, doublings + 1)
            widths = [(width or 64) * min(2 ** i, 16) for i in range(blocks)]
            downsamples = [True] * (blocks - 1) + [False]
        in_channels = conditioning.critic_input_size(channels)
        layers: list[nn.Module] = []
        size, resolutions = image_size, []
        for i, (out_channels, downsample) in enumerate(zip(widths, downsamples)):
            layers.append(DownBlock(in_channels, out_channels, downsample, first=i == 0))
            size = size // 2 if downsample else size
            in_channels = out_channels
            resolutions.append(size)
        place = attention_at(attention, resolutions, "model.discriminator")
        if place is not None:
            layers.insert(place + 1, _glorot_convs(SelfAttention(widths[place])))
        self.input = LabelledSequential(*conditioning.critic_input())  # the label's planes joined to the image
        self.blocks = nn.Sequential(*layers)
        self.output = LabelledSequential(conditioning.critic_output(_glorot(nn.Linear(widths[-1], 1)), widths[-1]))
        if spectral_norm:  # Miyato et al. 2018: each layer's largest singular value held at 1
            for layer in list(self.modules()):
                if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    spectrally_normalised(layer)
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def image_side_blocks(self) -> list[nn.Module]:
        """The residual down-blocks, first to last (self-attention with the block before it), for FreezeD."""
        return blocks_joining(self.blocks, (DownBlock,))

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Each block's output (B, C, h, w), first to last."""
        return block_outputs(self.input, self.blocks, images, labels)

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Any:
        h = F.relu(self.blocks(self.input(images, labels)))  # (B, W, h, w)
        h = h.sum(dim=(2, 3)) if self.pooling == "sum" else h.mean(dim=(2, 3))  # (B, W)
        return flat_scores(self.output(h, labels))  # (B,), or ((B,), (B, K)) with an auxiliary classifier

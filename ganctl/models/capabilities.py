"""What a generator offers beyond `forward(latents, labels)`, declared as protocols and checked with
`isinstance` (the protocols are runtime-checkable: a network has the capability when it has these
members), so that sampling, the regularisers and the CLI ask one question the same way.

    isinstance(generator, StyleGenerator)      # a W space: styles, synthesis, path length, --mix, --space w
    isinstance(generator, TruncatingGenerator)  # its own truncation trick (towards w_avg), not z's
    isinstance(generator, NoisyGenerator)       # noise inputs that projection optimises (StyleGAN2's)
    isinstance(generator, FirstLayerGenerator)  # the linear map its first layer applies (SeFa directions)
    isinstance(discriminator, FeatureDiscriminator)  # its intermediate features (projection's perceptual distance)
    isinstance(discriminator, BlockDiscriminator)    # its blocks from the image side (FreezeD: model.discriminator.freeze)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Iterable, Optional, Protocol, runtime_checkable

import torch
from torch import nn

from ganctl.errors import GanctlError


@runtime_checkable
class StyleGenerator(Protocol):
    """A generator that draws its images from per-layer styles (a mapping network's W, StyleGAN2's):
    they can be mixed and interpolated, and its path length from W to images regularised.
    `forward(z, labels, with_styles=True)` returns (images, styles) with the styles in the graph."""

    style_resolutions: tuple[int, ...]  # the resolution each per-layer style drives (4, 8, 8, 16, ...)
    num_ws: int  # per-layer styles
    w_dim: int  # the width of each
    w_avg: torch.Tensor  # (w_dim,) the tracked mean of W: the centre of its truncation and of projection's start

    def styles(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 1.0) -> torch.Tensor:
        """Per-layer styles (N, num_ws, w_dim) for latents z (truncated at psi)."""
        ...

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from per-layer styles (N, num_ws, w_dim)."""
        ...


@runtime_checkable
class TruncatingGenerator(Protocol):
    """A generator with its own truncation trick (a mapping network's lerp towards the mean w),
    used instead of truncating the Gaussian latents."""

    def forward_truncated(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 0.7) -> torch.Tensor:
        ...


@runtime_checkable
class NoisyGenerator(Protocol):
    """A generator with per-pixel noise inputs (StyleGAN2's): in eval mode it draws with fixed noise maps,
    which can be swapped for others (one per image) while a block runs, as projection does."""

    def noise_maps(self) -> list[torch.Tensor]:
        """The fixed noise maps eval mode uses, one (r, r) per noisy layer, in the order `using_noise` takes."""
        ...

    def using_noise(self, maps: list[torch.Tensor]) -> AbstractContextManager[None]:
        """A block in which eval mode draws with `maps` (per noisy layer: (r, r), or (N, 1, r, r) for a
        batch of N images) instead of its own; its own come back after it."""
        ...


@runtime_checkable
class FirstLayerGenerator(Protocol):
    """A generator whose first layer is linear in its latent: the closed-form semantic directions of
    SeFa (Shen & Zhou 2021) are the top eigenvectors of A^T A for that layer's weight A."""

    def first_layer_weight(self) -> torch.Tensor:
        """A (F, D): the first layer's outputs (before any bias or normalisation) are A @ latent, for the
        latent G is edited in (z, or W for a mapping network); the label's part of the input left out."""
        ...


@runtime_checkable
class FeatureDiscriminator(Protocol):
    """A discriminator whose intermediate features can compare two images (ganctl project's perceptual
    distance without a pretrained network): each depends on its own image alone (no minibatch statistics)."""

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """D's activations after each hidden layer or block, first to last, (B, C, h, w) or (B, F) each."""
        ...


@runtime_checkable
class BlockDiscriminator(Protocol):
    """A discriminator made of blocks that FreezeD (Mo et al. 2020) can hold fixed, counted from the
    image side: `model.discriminator.freeze=N` freezes the first N of them."""

    def image_side_blocks(self) -> list[nn.Module]:
        """D's blocks from the image side, each holding every weight of that block (a self-attention
        layer goes with the block before it); the label's layers and the output head are none of them."""
        ...


def block_outputs(input_layers: nn.Module, blocks: nn.Sequential, images: torch.Tensor,
                  labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """Each block's output (B, C, h, w), first to last, after `input_layers` (a label joined to the
    image): the `feature_maps` of a discriminator built as input, blocks and output."""
    features, h = [], input_layers(images, labels)
    for block in blocks:
        h = block(h)
        features.append(h)
    return features


def blocks_joining(layers: Iterable[nn.Module], starts: tuple[type, ...]) -> list[nn.Module]:
    """`layers` grouped into blocks: a layer of a type in `starts` opens a new block, any other joins
    the open one (layers before the first opener belong to no block)."""
    blocks: list[list[nn.Module]] = []
    for layer in layers:
        if isinstance(layer, starts):
            blocks.append([])
        if blocks:
            blocks[-1].append(layer)
    return [nn.ModuleList(block) for block in blocks]


def freeze_blocks(discriminator: nn.Module, count: int) -> int:
    """FreezeD (Mo et al. 2020): D's first `count` blocks from the image side keep their weights
    (requires_grad off, so no gradient, and the GAN's optimizer leaves them out: neither Adam's moments
    nor weight decay can move them). Returns the number of parameters frozen; a D without blocks, or
    with fewer, is refused."""
    if not count:
        return 0
    if not isinstance(discriminator, BlockDiscriminator):
        raise GanctlError(f"model.discriminator.freeze={count}: {type(discriminator).__name__} has no blocks to freeze "
                          "(FreezeD works with dcgan, wgan, wgangp, sngan, biggan, stylegan2 and r3gan's discriminators); "
                          "set model.discriminator.freeze=0.")
    blocks = discriminator.image_side_blocks()
    if count > len(blocks):
        raise GanctlError(f"model.discriminator.freeze={count}: {type(discriminator).__name__} has {len(blocks)} blocks "
                          f"here (its output layers train in any case); freeze at most {len(blocks)}.")
    frozen = [parameter for block in blocks[:count] for parameter in block.parameters()]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(parameter.numel() for parameter in frozen)

"""BigGAN (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis"), as
its authors' PyTorch code builds it (ajbrock/BigGAN-PyTorch, BigGAN.py and layers.py), for 12-256 px.

The reference's architecture tables fix every block's channels as multiples of a width `ch`:

  image size   G blocks (in -> out, each doubling the size)        D blocks (each halving it, the last one not)
  <= 32        4 -> 4 from a 4x4 start (32 px: three blocks)        C -> 4, 4 -> 4 (both halving), 4 -> 4, 4 -> 4
  64           16 -> 16 -> 8 -> 4 -> 2                              C -> 1 -> 2 -> 4 -> 8 -> 16
  128          16 -> 16 -> 8 -> 4 -> 2 -> 1                         C -> 1 -> 2 -> 4 -> 8 -> 16 -> 16
  256          16 -> 16 -> 8 -> 8 -> 4 -> 2 -> 1                    C -> 1 -> 2 -> 4 -> 8 -> 8 -> 16 -> 16

Smaller images of the form s x 2^k (3 <= s <= 7, k >= 2: 28 px MNIST is 7 x 2^2) take the 32 px
member with an s x s start and k blocks; other sizes are refused.

G: z (split into one chunk for the linear layer and one per block with `hierarchical`) -> linear to
(16ch or 4ch, s, s) -> up-blocks (class-conditional BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3
conv, plus a 1x1-conv shortcut of the upsampled input) -> BN, ReLU, 3x3 conv, tanh. Each block BN's
gain and bias are 1 + W_g c and W_b c, linear maps (no bias) of c = [shared class embedding, the
block's z chunk]: BigGAN's shared embedding and hierarchical latents. Without the shared embedding
(`shared_embedding: false`, the reference's CIFAR-10 setting) each block BN has its own class table
of gains and biases instead. Spectral norm on every conv and linear layer of G; its embeddings are
not normalised ("SN on G's embedding seems to randomly cripple G", the reference's comment).
D: residual down-blocks, "wide" (the hidden width is the output's), the first without the ReLU in
front and with its shortcut pooled before its 1x1 conv, -> ReLU, global sum pooling, linear, plus the
projection <embed(y), h> of a class embedding. Spectral norm on every D layer, the embedding included.
Self-attention (SAGAN) after the block that outputs a chosen resolution, in G and D. Orthogonal init
of every conv, linear and embedding weight (biases keep torch's default, as the reference leaves them).

Unconditional (conditioning=none), G's block BNs take their gains and biases from the z chunks alone
(a linear map with a bias: the learned constant a one-class embedding would give) with
`hierarchical`, and are plain BatchNorm without it (what the reference computes with one class); D has
no projection. With conditioning=concat or acgan, G joins the label's embedding to z's first chunk and
D takes the label planes or an auxiliary classifier, the pieces every family shares.

Spectral norm is torch's (one power iteration a training step, u a buffer, not a parameter); the
reference's own differs only in its epsilon (1e-8, 1e-6 at 128 px, against torch's 1e-12). The
reference's D table lists every 32 px block at "resolution 16" (so D_attn=16 would put attention after
all four blocks); here a resolution is where a block's output really is (16 after the first, 8 after
the rest).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from ganctl.console import warn
from ganctl.errors import GanctlError
from ganctl.models.attention import SelfAttention, attention_at
from ganctl.models.capabilities import block_outputs, blocks_joining, freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning, LabelledSequential, flat_scores
from ganctl.models.layers import spectrally_normalised

INITS = ("ortho", "N02", "glorot")

# The reference's tables (BigGAN.py G_arch / D_arch): block widths as multiples of ch.
GENERATOR_WIDTHS = {32: [4, 4, 4, 4], 64: [16, 16, 8, 4, 2], 128: [16, 16, 8, 4, 2, 1], 256: [16, 16, 8, 8, 4, 2, 1]}
CRITIC_WIDTHS = {32: [4, 4, 4, 4], 64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16]}


def biggan_layout(image_size: int) -> tuple[int, int, int]:
    """(the reference table the size uses, G's start size, G's number of blocks): 32 -> (32, 4, 3),
    28 -> (32, 7, 2), 64 -> (64, 4, 4), 128 -> (128, 4, 5), 256 -> (256, 4, 6)."""
    if image_size in (64, 128, 256):
        return image_size, 4, len(GENERATOR_WIDTHS[image_size]) - 1
    start, doublings = image_size, 0
    while start > 7 and start % 2 == 0:
        start, doublings = start // 2, doublings + 1
    if image_size > 32 or doublings < 2 or not 3 <= start <= 7:
        raise GanctlError(
            f"BigGAN cannot make {image_size}x{image_size} images: its published tables cover 32, 64, 128 and 256 px, "
            "and smaller sizes a small number (3 to 7) doubled at least twice (e.g. 28 or 32). Set dataset.image_size "
            "to such a size (or use model=sngan, which also makes 48 px)."
        )
    return 32, start, doublings


def initialise(network: nn.Module, init: str) -> None:
    """The reference's init of every conv, linear and embedding weight: orthogonal (`ortho`, BigGAN's),
    N(0, 0.02) (`N02`, its CIFAR-10 script's) or Glorot-uniform; biases keep torch's default."""
    for layer in network.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if init == "ortho":
                nn.init.orthogonal_(layer.weight)
            elif init == "N02":
                nn.init.normal_(layer.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(layer.weight)


def _check_options(where: str, width: int, init: str) -> None:
    if not isinstance(width, int) or width < 1:
        raise GanctlError(f"{where}.width must be a whole number, at least 1 (the reference's ch; 64 by default), got {width!r}.")
    if init not in INITS:
        raise GanctlError(f"{where}.init must be one of {', '.join(INITS)}, got {init!r}.")


def _spectrally_normalise(network: nn.Module, kinds: tuple[type, ...]) -> None:
    for layer in list(network.modules()):
        if isinstance(layer, kinds):
            spectrally_normalised(layer)


# --------------------------------------------------------------------------- G


class BigGANBatchNorm(nn.Module):
    """BatchNorm without its own affine parameters, then a gain and bias computed per image:
    (1 + gain(c)) * BN(x) + bias(c), c being (B, n) conditioning vectors read by linear maps, or (B,)
    class indices read by tables (nn.Embedding). The running statistics are shared by every image."""

    def __init__(self, features: int, gain: nn.Module, bias: nn.Module) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)  # the reference's eps 1e-5, momentum 0.1
        self.gain, self.bias = gain, bias

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        normalised = self.norm(x)  # (B, C, H, W)
        shape = (x.shape[0], x.shape[1], 1, 1)
        gain, bias = (map_(condition).view(shape).to(normalised.dtype) for map_ in (self.gain, self.bias))
        return torch.addcmul(bias, normalised, gain + 1)  # bias + normalised * (1 + gain)


def _normalise(norm: nn.Module, x: torch.Tensor, condition: Optional[torch.Tensor]) -> torch.Tensor:
    return norm(x, condition) if isinstance(norm, BigGANBatchNorm) else norm(x)


class GeneratorBlock(nn.Module):
    """(B, in, H, W) -> (B, out, 2H, 2W): BN, ReLU, x2, 3x3 conv, BN, ReLU, 3x3 conv, plus the 1x1 conv of
    the upsampled input (computed before upsampling: the same for nearest upsampling, 4x cheaper)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Any) -> None:
        super().__init__()
        self.norm1, self.norm2 = norm(in_channels), norm(out_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, condition: Optional[torch.Tensor]) -> torch.Tensor:
        h = F.interpolate(F.relu(_normalise(self.norm1, x, condition)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(_normalise(self.norm2, self.conv1(h), condition)))
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode="nearest")


class BigGANGenerator(nn.Module):
    """latent (B, Z) [+ labels (B,)] -> (B, C, H, W) in [-1, 1].

    `width`: the reference's G_ch; `shared_dim`: the shared class embedding's size (null: the latent's,
    as the reference's shared_dim=0); `hierarchical`: z split into a chunk for the linear layer and one
    per block (the latent is cut to a multiple of the chunks, as the reference does); `shared_embedding`:
    one class embedding for every block BN (false: a class table per BN, the reference's G_shared off);
    `attention`: the resolution after whose block self-attention goes (null: none); `init`: ortho | N02 | glorot."""

    conditions_itself = True  # its class-conditional BN is its own; concat (and none) take the shared pieces

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64, shared_dim: Optional[int] = 128,
                 hierarchical: bool = True, shared_embedding: bool = True, attention: Optional[int] = None,
                 init: str = "ortho", conditioning: Conditioning = UNCONDITIONAL) -> None:
        super().__init__()
        _check_options("model.generator", width, init)
        table, start, blocks = biggan_layout(image_size)
        widths = [multiple * width for multiple in GENERATOR_WIDTHS[table][-(blocks + 1):]]
        class_norms = conditioning.generator == "batchnorm"
        if class_norms and hierarchical and not shared_embedding:
            raise GanctlError("model.generator.hierarchical=true needs model.generator.shared_embedding=true: each block's z "
                              "chunk joins the shared class embedding (BigGAN's design). Set both true, or both false "
                              "(the reference's CIFAR-10 setting).")
        slots = blocks + 1 if hierarchical else 1
        self.chunk = latent_dim // slots
        if self.chunk < 1:
            raise GanctlError(f"model.generator.latent_dim={latent_dim} is too small to split into {slots} chunks "
                              f"(hierarchical latents: one for the linear layer and one per block): use at least {slots}.")
        if self.chunk * slots != latent_dim:
            warn(f"model.generator.latent_dim={latent_dim} does not split evenly into {slots} chunks at "
                 f"{image_size} px (hierarchical latents): G reads {self.chunk * slots} values, as BigGAN-PyTorch "
                 f"does. Choose a multiple of {slots} to silence this.")
        self.latent_dim, self.hierarchical, self.start, self.bottom = self.chunk * slots, hierarchical, start, widths[0]
        self.class_norms = class_norms
        self.shared_embedding = class_norms and shared_embedding
        shared_dim = shared_dim or self.latent_dim
        if self.shared_embedding:
            self.shared = nn.Embedding(conditioning.num_classes, shared_dim)  # not normalised (see the module)
        block_chunk = self.chunk if hierarchical else 0

        def norm(features: int) -> nn.Module:
            if class_norms and self.shared_embedding:  # gains of [shared embedding, z chunk]
                return BigGANBatchNorm(features, nn.Linear(shared_dim + block_chunk, features, bias=False),
                                       nn.Linear(shared_dim + block_chunk, features, bias=False))
            if class_norms:  # a table of gains and biases per class
                return BigGANBatchNorm(features, nn.Embedding(conditioning.num_classes, features),
                                       nn.Embedding(conditioning.num_classes, features))
            if hierarchical:  # gains of the z chunk alone
                return BigGANBatchNorm(features, nn.Linear(block_chunk, features), nn.Linear(block_chunk, features))
            return nn.BatchNorm2d(features)

        self.input = LabelledSequential(*conditioning.generator_input())  # the label joined to the first chunk (concat)
        self.linear = nn.Linear(conditioning.generator_input_size(self.chunk), start * start * widths[0])
        self.blocks = nn.ModuleList(GeneratorBlock(a, b, norm) for a, b in zip(widths, widths[1:]))
        place = attention_at(attention, [start * 2 ** (i + 1) for i in range(blocks)], "model.generator")
        self.attention_after = place
        self.attention = SelfAttention(widths[place + 1]) if place is not None else None
        self.output = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], channels, 3, 1, 1), nn.Tanh())
        initialise(self, init)
        _spectrally_normalise(self, (nn.Conv2d, nn.Linear))

    def conditions(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> tuple[torch.Tensor, list[Any]]:
        """z's first chunk (for the linear layer) and what each block's BNs read."""
        chunks = list(z.split(self.chunk, dim=1)) if self.hierarchical else [z]  # (B, chunk) each
        first, rest = chunks[0], chunks[1:]
        if self.class_norms and labels is None:
            raise ValueError("BigGANGenerator is class-conditional: it needs labels")
        if self.shared_embedding:
            shared = self.shared(labels).to(z.dtype)  # (B, shared_dim)
            return first, [torch.cat([shared, chunk], dim=1) for chunk in rest] if rest else [shared] * len(self.blocks)
        if self.class_norms:
            return first, [labels] * len(self.blocks)
        return first, rest if rest else [None] * len(self.blocks)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        first, conditions = self.conditions(z, labels)
        h = self.linear(self.input(first, labels)).view(z.shape[0], self.bottom, self.start, self.start)  # (B, W0, s, s)
        for index, (block, condition) in enumerate(zip(self.blocks, conditions)):
            h = block(h, condition)
            if index == self.attention_after:
                h = self.attention(h)
        return self.output(h)  # (B, C, H, W)

    def first_layer_weight(self) -> torch.Tensor:
        """(F, latent_dim): the layers that read z, block-diagonal in z's chunks: the first chunk's linear
        layer, and with hierarchical latents each block's chunk's BatchNorm gains and biases (SeFa)."""
        def placed(weight: torch.Tensor, slot: int) -> torch.Tensor:  # (F, chunk) at chunk `slot` of z
            block = weight.new_zeros(weight.shape[0], self.latent_dim)
            block[:, slot * self.chunk:(slot + 1) * self.chunk] = weight
            return block

        parts = [placed(self.linear.weight[:, : self.chunk], 0)]
        if self.hierarchical:  # each block's condition ends with its chunk ([shared embedding, chunk] or the chunk)
            parts += [placed(layer.weight[:, -self.chunk:], slot)
                      for slot, block in enumerate(self.blocks, start=1) for norm in (block.norm1, block.norm2)
                      for layer in (norm.gain, norm.bias)]
        return torch.cat(parts)


# --------------------------------------------------------------------------- D


class CriticBlock(nn.Module):
    """(B, in, H, W) -> (B, out, H/2, W/2) when it downsamples, else (B, out, H, W): [ReLU], 3x3 conv to
    `out` (the wide D), ReLU, 3x3 conv, [2x2 average pool], plus the shortcut (a 1x1 conv where the width
    or size changes, else the identity; pooled after the conv, before it in the first block)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, preactivation: bool) -> None:
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        learnable = downsample or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if learnable else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x) if self.preactivation else x)))
        if not self.downsample:
            return h + self.shortcut(x)
        shortcut = F.avg_pool2d(self.shortcut(x), 2) if self.preactivation else self.shortcut(F.avg_pool2d(x, 2))
        return F.avg_pool2d(h, 2) + shortcut


class BigGANDiscriminator(nn.Module):
    """(B, C, H, W) [+ labels (B,)] -> residual down-blocks -> ReLU, global sum pool -> linear (+ the
    projection of the label's embedding) -> (B,) scores. `width`: the reference's D_ch."""

    conditions_itself = True  # every way of seeing the label is wired in below

    def __init__(self, channels: int, image_size: int, width: int = 64, attention: Optional[int] = None,
                 init: str = "ortho", freeze: int = 0, conditioning: Conditioning = UNCONDITIONAL) -> None:
        super().__init__()
        _check_options("model.discriminator", width, init)
        table, _, _ = biggan_layout(image_size)
        widths = [multiple * width for multiple in CRITIC_WIDTHS[table]]
        downsamples = [True, True, False, False] if table == 32 else [True] * (len(widths) - 1) + [False]
        layers: list[nn.Module] = []
        in_channels, size, resolutions = conditioning.critic_input_size(channels), image_size, []
        for index, (out_channels, downsample) in enumerate(zip(widths, downsamples)):
            layers.append(CriticBlock(in_channels, out_channels, downsample, preactivation=index > 0))
            in_channels, size = out_channels, size // 2 if downsample else size
            resolutions.append(size)
        place = attention_at(attention, resolutions, "model.discriminator")
        if place is not None:
            layers.insert(place + 1, SelfAttention(widths[place]))
        self.input = LabelledSequential(*conditioning.critic_input())  # the label's planes joined to the image (concat)
        self.blocks = nn.Sequential(*layers)
        self.output = LabelledSequential(conditioning.critic_output(nn.Linear(widths[-1], 1), widths[-1]))
        initialise(self, init)
        _spectrally_normalise(self, (nn.Conv2d, nn.Linear, nn.Embedding))
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def image_side_blocks(self) -> list[nn.Module]:
        """The residual down-blocks, first to last (self-attention with the block before it), for FreezeD."""
        return blocks_joining(self.blocks, (CriticBlock,))

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Each block's output (B, C, h, w), first to last."""
        return block_outputs(self.input, self.blocks, images, labels)

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Union[torch.Tensor, tuple]:
        h = F.relu(self.blocks(self.input(images, labels))).sum(dim=(2, 3))  # (B, W)
        return flat_scores(self.output(h, labels))  # (B,), or ((B,), (B, K)) with an auxiliary classifier

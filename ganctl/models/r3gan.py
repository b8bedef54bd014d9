"""R3GAN's networks (Huang et al. 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline"),
as the reference code builds them (brownvc/R3GAN, R3GAN/Networks.py, with its plain-PyTorch
BiasedActivationReference and InterpolativeUp/DownsamplerReference), for the dataset's shape.

A plain, normalisation-free ResNeXt-style pair, one stage per resolution:

  G: z [+ the label's embedding] -> a linear map onto a learned s x s basis (the "generative basis")
     -> blocks at s x s -> for each further stage: a 1x1 conv where the width changes, [1,2,1]
     interpolative 2x up-sampling, blocks -> 1x1 conv to the image's channels (no tanh: as the
     reference, G's images are unbounded and clipped only when they are written).
  D: the mirror image: 1x1 conv from the image's channels -> for each stage: blocks, then 2x
     down-sampling and a 1x1 conv where the width changes -> at s x s, a depthwise s x s conv
     (the "discriminative basis") and a linear output; conditional, the linear map gives a vector
     that is projected onto the label's embedding (no unconditional term).

A block: x + conv1x1(act(conv3x3_grouped(act(conv1x1(x))))), expanding the width by `expansion` inside,
the grouped conv with the stage's cardinality; act = a learned bias (from 0) then leaky ReLU(0.2).
Every conv and linear layer is N(0, gain^2 / fan_in) (the reference's MSRInitializer) without a bias
of its own; a block's inner convs take gain sqrt(2 / (1 + 0.2^2)) x L^(-1/4) (fix-up scaling by L, the
network's number of blocks) and its last conv is zero, so every block starts as the identity.

Written for speed where the arithmetic is the same: an activation's bias is the bias of the conv before
it, the [1,2,1] resampling is two passes of elementwise arithmetic (not a depthwise 4x4 conv), and D's
basis a product and a sum (not a depthwise conv): on a CPU oneDNN's backward of those depthwise convs,
and their double backward for R1 and R2, took half of a narrow R3GAN's step.
scripts/compare_r3gan_reference.py maps the parameters' names onto the reference's.

The stage lists (`widths`, `cardinalities`, `blocks`) run from the lowest resolution up, for G and for
D alike (D reverses them, as the reference's train.py does). The image size picks how many stages are
used: image_size = s * 2^k with 3 <= s <= 7 takes the first k + 1 (32 px: four from 4x4; 28 px:
three from 7x7; the reference's basis is always 4x4). `width` scales every stage, and each stage's
cardinality with it, so that a narrow R3GAN trains on a CPU.

Precision: the reference runs G's stages above 4x4 and D's below the image's (its FP16Stages) in
bf16 and the rest in fp32. Here the networks follow `train.precision` as every model does: under
bf16 autocast every stage's convs run in bf16, the 4x4 ones too.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ganctl.errors import GanctlError
from ganctl.models.capabilities import freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning

ACTIVATION_GAIN = math.sqrt(2 / (1 + 0.2**2))  # leaky ReLU(0.2)'s: keeps activations' variance through a layer
LAYERS_PER_BLOCK = 3


def downsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Half the size along `dim` (2 or 3) with the [1,3,3,1] / 8 filter, zero-padded by 1: out[i] =
    (x[2i-1] + 3 x[2i] + 3 x[2i+1] + x[2i+2]) / 8."""
    size = x.shape[dim]
    padded = F.pad(x, (1, 1) if dim == 3 else (0, 0, 1, 1))
    taps = [padded[(slice(None),) * dim + (slice(k, k + size - 1, 2),)] for k in range(4)]  # x[2i - 1 + k], i < size / 2
    return (taps[0] + taps[3] + 3 * (taps[1] + taps[2])) / 8


def upsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Twice the size along `dim` (2 or 3): zeros between the samples, then the [1,3,3,1] / 4 filter:
    out[2m] = (x[m-1] + 3 x[m]) / 4 and out[2m+1] = (3 x[m] + x[m+1]) / 4, zeros beyond the border."""
    size = x.shape[dim]
    padded = F.pad(x, (1, 1) if dim == 3 else (0, 0, 1, 1))
    before, after = padded.narrow(dim, 0, size), padded.narrow(dim, 2, size)
    even, odd = (before + 3 * x) / 4, (3 * x + after) / 4
    shape = list(x.shape)
    shape[dim] *= 2
    return torch.stack([even, odd], dim=dim + 1).reshape(shape)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """2x interpolative up-sampling, the reference's upfirdn2d.upsample2d with the [1,2,1] filter
    (convolved with [1,1]: the separable [1,3,3,1]), written per axis."""
    return upsample_axis(upsample_axis(x, 2), 3)  # (B, C, 2H, 2W)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x interpolative down-sampling, the reference's upfirdn2d.downsample2d, written per axis likewise."""
    return downsample_axis(downsample_axis(x, 2), 3)  # (B, C, H/2, W/2)


def msr_init(layer: nn.Module, gain: float = 1.0) -> nn.Module:
    """The reference's MSRInitializer: weights ~ N(0, gain^2 / fan_in), fan_in = inputs per output."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, gain / math.sqrt(fan_in))
    return layer


def conv(in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, gain: float = 1.0,
         bias: bool = False) -> nn.Conv2d:
    layer = msr_init(nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, groups=groups,
                               bias=bias), gain)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class ResidualBlock(nn.Module):
    """x + the bottleneck branch: 1x1 expand, grouped 3x3, 1x1 back (zero at the start), a leaky
    ReLU(0.2) after each of the first two. The reference's activations carry a learned bias (from 0)
    each: here it is the bias of the conv before it, the same sum in one pass over the features."""

    def __init__(self, channels: int, cardinality: int, expansion: int, total_blocks: int) -> None:
        super().__init__()
        expanded = channels * expansion
        gain = ACTIVATION_GAIN * total_blocks ** (-1 / (2 * LAYERS_PER_BLOCK - 2))
        self.expand = conv(channels, expanded, 1, gain=gain, bias=True)
        self.grouped = conv(expanded, expanded, 3, groups=cardinality, gain=gain, bias=True)
        self.project = conv(expanded, channels, 1, gain=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.expand(x), 0.2)
        y = F.leaky_relu(self.grouped(y), 0.2)
        return x + self.project(y)


class Upsample(nn.Module):
    """A 1x1 conv where the width changes, then [1,2,1] interpolative 2x up-sampling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample(self.conv(x))  # (B, out, 2H, 2W)


class Downsample(nn.Module):
    """[1,2,1] interpolative 2x down-sampling, then a 1x1 conv where the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(downsample(x))  # (B, out, H/2, W/2)


class GenerativeBasis(nn.Module):
    """(B, F) -> (B, W, s, s): a learned basis of s x s maps, each scaled by a linear map of the input."""

    def __init__(self, in_features: int, channels: int, size: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, size, size))
        self.linear = msr_init(nn.Linear(in_features, channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis.unsqueeze(0) * self.linear(x)[:, :, None, None]


class DiscriminativeBasis(nn.Module):
    """(B, W, s, s) -> (B, out): a depthwise s x s filter over the whole map (one value per channel),
    then a linear map. The filter is a product and a sum (the reference's depthwise conv, without
    oneDNN's slow double backward of it)."""

    def __init__(self, channels: int, out_features: int, size: int) -> None:
        super().__init__()
        self.basis = nn.Parameter(torch.randn(channels, size, size) / size)  # the reference's MSR init: fan-in s^2
        self.linear = msr_init(nn.Linear(channels, out_features, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x * self.basis.to(x.dtype)).sum(dim=(2, 3)))


def stage_layout(image_size: int, widths: Sequence[int], cardinalities: Sequence[int], blocks: Sequence[int],
                 expansion: int, width: Optional[int], role: str) -> tuple[int, list[int], list[int], list[int]]:
    """The basis size s and the stages' widths, cardinalities and block counts (lowest resolution
    first) that make `image_size` px: the first k + 1 stages of the lists for image_size = s * 2^k,
    scaled to `width` (the first stage's) when it is given. Refuses what cannot be built."""
    where = f"model.{role}"
    if not (len(widths) == len(cardinalities) == len(blocks) and len(widths) >= 1):
        raise GanctlError(f"{where}.widths, cardinalities and blocks must list one value per stage each "
                          f"(from the lowest resolution up); got {len(widths)}, {len(cardinalities)} and {len(blocks)}.")
    if any(not isinstance(n, int) or n < 1 for n in (*widths, *cardinalities, *blocks)) or expansion < 1:
        raise GanctlError(f"{where}.widths, cardinalities, blocks and expansion must be whole numbers of at least 1.")
    size, doublings = basis_layout(image_size)
    stages = doublings + 1
    if stages > len(widths):
        raise GanctlError(
            f"R3GAN makes {image_size}x{image_size} images from a {size}x{size} basis in {stages} stages, but {where}.widths "
            f"lists {len(widths)}: at most {size * 2 ** (len(widths) - 1)} px. Add stages (the ffhq256_r3gan recipe "
            "lists seven), or set dataset.image_size to a smaller size.")
    if width is not None and (not isinstance(width, int) or isinstance(width, bool) or width < 1):
        raise GanctlError(f"{where}.width must be a whole number of channels (the first stage's), or null; got {width!r}.")
    scale = 1.0 if width is None else width / widths[0]
    stage_widths = [max(1, round(w * scale)) for w in widths[:stages]]
    stage_cardinalities = [max(1, round(c * scale)) for c in cardinalities[:stages]]
    for w, c in zip(stage_widths, stage_cardinalities):
        if (w * expansion) % c:
            raise GanctlError(
                f"{where}.width={width} makes a stage {w} wide ({w * expansion} inside its blocks), which its "
                f"{c} groups do not divide: choose a width that keeps the published channels per group, e.g. a multiple "
                f"of {max(1, widths[0] // cardinalities[0])}.")
    return size, stage_widths, stage_cardinalities, list(blocks[:stages])


def basis_layout(image_size: int) -> tuple[int, int]:
    """image_size = s * 2^k with 3 <= s <= 7 and any k >= 0: (s, k). 32 -> (4, 3), 28 -> (7, 2), 64 -> (4, 4)."""
    size, doublings = image_size, 0
    while size > 7 and size % 2 == 0:
        size, doublings = size // 2, doublings + 1
    if not 3 <= size <= 7:
        raise GanctlError(f"R3GAN cannot make {image_size}x{image_size} images: the size must be 3 to 7 pixels doubled "
                          "any number of times, e.g. 28, 32, 64 or 256. Set dataset.image_size to such a size.")
    return size, doublings


def check_conditioning(conditioning: Conditioning, role: str, supported: str) -> None:
    """R3GAN sees the label one way per network (the reference's); refuse the others rather than ignore them."""
    way = conditioning.generator if role == "generator" else conditioning.discriminator
    if way not in ("none", supported):
        raise GanctlError(
            f"R3GAN's {role} sees the label only as the reference does (conditioning.{role}={supported}), not {way}: "
            "use conditioning=concat conditioning.discriminator=projection.")


class R3GANGenerator(nn.Module):
    """z (B, latent_dim) [and labels (B,)] -> images (B, C, H, W), unbounded (no tanh)."""

    conditions_itself = True  # the label's embedding joined to z is its own (check_conditioning)

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_dim: int = 64,
        widths: Sequence[int] = (768, 768, 768, 768),
        cardinalities: Sequence[int] = (96, 96, 96, 96),
        blocks: Sequence[int] = (2, 2, 2, 2),
        expansion: int = 2,
        width: Optional[int] = None,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        check_conditioning(conditioning, "generator", "concat")
        size, widths, cardinalities, blocks = stage_layout(image_size, list(widths), list(cardinalities), list(blocks),
                                                           expansion, width, "generator")
        self.latent_dim, self.num_classes = latent_dim, conditioning.num_classes
        if self.num_classes:  # the reference's one-hot label through a linear map as wide as z: an embedding
            self.embedding = nn.Embedding(self.num_classes, latent_dim)
            nn.init.normal_(self.embedding.weight, 0.0, 1 / math.sqrt(self.num_classes))
        total = sum(blocks)
        stages = []
        for index, (w, c, n) in enumerate(zip(widths, cardinalities, blocks)):
            transition = (GenerativeBasis(latent_dim * (2 if self.num_classes else 1), w, size) if index == 0
                          else Upsample(widths[index - 1], w))
            stages.append(nn.Sequential(transition, *(ResidualBlock(w, c, expansion, total) for _ in range(n))))
        self.stages = nn.Sequential(*stages)
        self.output = conv(widths[-1], channels, 1)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("this R3GAN generator is class-conditional: it needs labels")
            z = torch.cat([z, self.embedding(labels)], dim=1)  # (B, 2 latent_dim)
        return self.output(self.stages(z))

    def first_layer_weight(self) -> torch.Tensor:
        """(W, latent_dim): the basis's linear map on z (SeFa). Each basis map scales one of its outputs,
        rows SeFa normalises to unit length: the same directions as the full (W * s * s, latent_dim) map."""
        return self.stages[0][0].linear.weight[:, : self.latent_dim]


class R3GANDiscriminator(nn.Module):
    """images (B, C, H, W) [and labels (B,)] -> raw scores (B,)."""

    conditions_itself = True  # its projection onto the label's embedding is its own (check_conditioning)

    def __init__(
        self,
        channels: int,
        image_size: int,
        widths: Sequence[int] = (768, 768, 768, 768),
        cardinalities: Sequence[int] = (96, 96, 96, 96),
        blocks: Sequence[int] = (2, 2, 2, 2),
        expansion: int = 2,
        width: Optional[int] = None,
        freeze: int = 0,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        check_conditioning(conditioning, "discriminator", "projection")
        size, widths, cardinalities, blocks = stage_layout(image_size, list(widths), list(cardinalities), list(blocks),
                                                           expansion, width, "discriminator")
        widths, cardinalities, blocks = widths[::-1], cardinalities[::-1], blocks[::-1]  # from the image down
        self.num_classes = conditioning.num_classes
        total = sum(blocks)
        self.input = conv(channels, widths[0], 1)
        stages = []
        for index, (w, c, n) in enumerate(zip(widths, cardinalities, blocks)):
            last = index == len(widths) - 1
            transition = (DiscriminativeBasis(w, w if self.num_classes else 1, size) if last
                          else Downsample(w, widths[index + 1]))
            stages.append(nn.Sequential(*(ResidualBlock(w, c, expansion, total) for _ in range(n)), transition))
        self.stages = nn.Sequential(*stages)
        if self.num_classes:  # the reference's projection: <D's output vector, a linear map of the one-hot label>
            self.embedding = nn.Embedding(self.num_classes, widths[-1])
            nn.init.normal_(self.embedding.weight, 0.0, 1 / math.sqrt(widths[-1]) / math.sqrt(self.num_classes))
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def image_side_blocks(self) -> list[nn.Module]:
        """Each residual block from the image side, for FreezeD: the 1x1 conv from the image goes with
        the first, each stage's down-sampling with its last block; the last stage's basis is the output."""
        blocks = [nn.ModuleList([block]) for stage in self.stages for block in stage[:-1]]
        blocks[0].insert(0, self.input)
        ends = [sum(len(stage) - 1 for stage in self.stages[: index + 1]) - 1 for index in range(len(self.stages) - 1)]
        for stage, end in zip(self.stages, ends):  # (the last stage's transition is the basis: the output)
            blocks[end].append(stage[-1])
        return blocks

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Each stage's output (B, C, h, w), first to last, the last before its basis: no batch statistics."""
        features, x = [], self.input(images)
        for stage in self.stages:
            x = stage(x) if stage is not self.stages[-1] else stage[:-1](x)
            features.append(x)
        return features

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.stages(self.input(images))  # (B, 1) or (B, W)
        if self.num_classes:
            if labels is None:
                raise ValueError("this R3GAN discriminator is class-conditional: it needs labels")
            x = (x * self.embedding(labels).to(x.dtype)).sum(dim=1)
        return x.flatten()

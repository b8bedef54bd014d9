"""DCGAN (Radford et al. 2016): transposed-conv generator, strided-conv discriminator, sized by the data."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ganctl.console import warn
from ganctl.errors import GanctlError
from ganctl.models.attention import SelfAttention, attention_at
from ganctl.models.capabilities import blocks_joining, freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning, LabelledSequential, flat_scores
from ganctl.models.layers import MinibatchStd, dcgan_init, spectrally_normalised


def dcgan_layout(image_size: int) -> tuple[int, int]:
    """Split image_size into start * 2**stages with 3 <= start <= 7 and at least one stage.

    28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4): the generator starts from a start x start tensor and
    doubles it `stages` times; the discriminator mirrors it.
    """
    start, stages = image_size, 0
    while start > 7 and start % 2 == 0:
        start, stages = start // 2, stages + 1
    if stages == 0 or not 3 <= start <= 7:
        raise GanctlError(
            f"The DCGAN models cannot make {image_size}x{image_size} images: the size must be a small "
            "number (3 to 7) doubled at least once, e.g. 28, 32, 48, 64 or 128. "
            "Set dataset.image_size to such a size."
        )
    return start, stages


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # normalises each sample over (C, H, W); safe with gradient penalties
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise GanctlError(f"Unknown norm '{kind}': use batch, layer or none.")


class DCGANGenerator(nn.Module):
    """latent (B, Z) -> project to (B, F*2**(S-1), s, s) -> S-1 upsampling blocks -> (B, C, H, W);
    conditioned, the label joins the latent or makes every BatchNorm class-conditional."""

    def __init__(
        self,
        latent_dim: int,
        base_filters: int,
        channels: int,
        image_size: int,
        upsample: str = "transpose",
        attention: Optional[int] = None,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "nearest"):
            raise GanctlError(f"Unknown upsample '{upsample}': use transpose or nearest.")
        self.latent_dim = latent_dim
        start, stages = dcgan_layout(image_size)
        width = base_filters * 2 ** (stages - 1)
        inputs = conditioning.generator_input()  # built once: its embedding draws from the RNG
        layers: list[nn.Module] = [
            *inputs,  # (B, Z, 1, 1) -> (B, Z + E, 1, 1) when the label joins the latent
            nn.ConvTranspose2d(conditioning.generator_input_size(latent_dim), width, start, 1, 0, bias=False),  # (B, width, s, s)
            conditioning.batch_norm(width),
            nn.ReLU(inplace=True),
        ]
        place = attention_at(attention, [start * 2 ** stage for stage in range(stages)], "model.generator")
        for stage in range(stages):
            if stage == place:  # after the block that outputs that resolution
                layers.append(SelfAttention(width))
            if stage < stages - 1:
                layers += [*_upsample(upsample, width, width // 2), conditioning.batch_norm(width // 2), nn.ReLU(inplace=True)]
                width //= 2
        layers += [*_upsample(upsample, width, channels), nn.Tanh()]  # (B, C, H, W)
        self.net = LabelledSequential(*layers)
        self.first_layer = len(inputs)  # the index in net of the layer reading the latent
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(z[:, :, None, None], labels)

    def first_layer_weight(self) -> torch.Tensor:
        """(width * s * s, latent_dim): the first transposed conv on the 1x1 latent is a linear map to its
        s x s output, its weight (Z + E, width, s, s) read one output pixel-channel a row (SeFa)."""
        weight = self.net[self.first_layer].weight[: self.latent_dim]  # (Z, width, s, s)
        return weight.flatten(1).t()


def _upsample(kind: str, in_channels: int, out_channels: int) -> list[nn.Module]:
    """Double the spatial size: a 4x4 stride-2 transposed conv, or nearest-neighbour resize + 3x3
    conv (avoids the transposed conv's checkerboard artefacts)."""
    if kind == "transpose":
        return [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)]


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) -> S strided 4x4 convs halving the size -> a start x start conv -> (B,) logits;
    conditioned, the label joins the input, or projects onto (or is classified from) the last features.
    `minibatch_std` > 0 appends, before the last conv, the features' spread over groups of that many
    images (ProGAN's minibatch standard deviation): D sees a batch's variety, against mode collapse."""

    def __init__(
        self, base_filters: int, channels: int, image_size: int, norm: str = "batch", spectral_norm: bool = False,
        attention: Optional[int] = None, minibatch_std: int = 0, freeze: int = 0, conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        start, stages = dcgan_layout(image_size)
        width = base_filters
        layers: list[nn.Module] = [
            *conditioning.critic_input(),  # (B, C + E, H, W) when the label joins the input
            nn.Conv2d(conditioning.critic_input_size(channels), width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        place = attention_at(attention, [image_size // 2 ** (stage + 1) for stage in range(stages)], "model.discriminator")
        for stage in range(stages - 1):  # no normalisation on the first layer, as in the paper
            if stage == place:
                layers.append(SelfAttention(width))
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                _norm2d(norm, width * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        if place == stages - 1:
            layers.append(SelfAttention(width))
        if minibatch_std < 0:
            raise GanctlError(f"model.discriminator.minibatch_std is a group size, or 0 for none; got {minibatch_std}.")
        if minibatch_std:
            layers.append(MinibatchStd(minibatch_std))  # (B, width + 1, s, s)
            width += 1
        layers.append(conditioning.critic_output(nn.Conv2d(width, 1, start, 1, 0), width * start * start))  # (B, 1, 1, 1)
        self.net = LabelledSequential(*layers)
        self.apply(dcgan_init)
        if spectral_norm:  # Miyato et al. 2018: each layer's largest singular value held at 1
            for layer in self.net.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
                    spectrally_normalised(layer)
            if norm == "batch":
                warn("model.discriminator.spectral_norm=true with norm=batch: spectral norm bounds each layer, but "
                     "BatchNorm rescales by the batch's statistics and undoes the bound (SNGAN's critic has no "
                     "BatchNorm). Set model.discriminator.norm=none with spectral norm.")
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Any:
        return flat_scores(self.net(images, labels))  # (B,), or ((B,), (B, K)) with an auxiliary classifier

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        return self.net.activations(images, labels)  # (B, C, h, w) after each strided conv

    def image_side_blocks(self) -> list[nn.Module]:
        """Each strided conv with its norm (the first: the conv from the image), for FreezeD; the last conv
        (and the label's projection or classifier on it) is the output, no block."""
        return blocks_joining(list(self.net)[:-1], (nn.Conv2d,))

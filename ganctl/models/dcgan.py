"""DCGAN (Radford et al. 2016): transposed-conv generator, strided-conv discriminator, sized by the data."""

from __future__ import annotations

import torch
from torch import nn

from ganctl.errors import GanctlError
from ganctl.models.layers import dcgan_init


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
    """latent (B, Z) -> project to (B, F*2**(S-1), s, s) -> S-1 upsampling blocks -> (B, C, H, W)."""

    def __init__(
        self,
        latent_dim: int,
        base_filters: int,
        channels: int,
        image_size: int,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "nearest"):
            raise GanctlError(f"Unknown upsample '{upsample}': use transpose or nearest.")
        self.latent_dim = latent_dim
        start, stages = dcgan_layout(image_size)
        width = base_filters * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, width, start, 1, 0, bias=False),  # (B, width, s, s)
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        for _ in range(stages - 1):
            layers += [*_upsample(upsample, width, width // 2), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True)]
            width //= 2
        layers += [*_upsample(upsample, width, channels), nn.Tanh()]  # (B, C, H, W)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def _upsample(kind: str, in_channels: int, out_channels: int) -> list[nn.Module]:
    """Double the spatial size: a 4x4 stride-2 transposed conv, or nearest-neighbour resize + 3x3
    conv (avoids the transposed conv's checkerboard artefacts)."""
    if kind == "transpose":
        return [nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)]


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) -> S strided 4x4 convs halving the size -> a start x start conv -> (B,) logits."""

    def __init__(
        self, base_filters: int, channels: int, image_size: int, norm: str = "batch", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        start, stages = dcgan_layout(image_size)
        width = base_filters
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(stages - 1):  # no normalisation on the first layer, as in the paper
            layers += [
                nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                _norm2d(norm, width * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        layers.append(nn.Conv2d(width, 1, start, 1, 0))  # (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        if spectral_norm:  # Miyato et al. 2018: each conv's largest singular value held at 1
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()

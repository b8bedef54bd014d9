"""Generators and discriminators.

Every generator maps latents (B, latent_dim) to images (B, C, H, W) in [-1, 1] (tanh output) and
exposes `latent_dim`. Every discriminator maps images to raw scores (B,) -- logits, no sigmoid;
higher means "more real" (the losses module states the convention once).

The dataset's channels and image size are runtime facts: they arrive as constructor arguments
at build time and are never copied by hand into the model configs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganctl.errors import GanctlError


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's init: conv and linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


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


def activation_layer(name: str) -> nn.Module:
    """relu, or leaky_relu with slope 0.2 (the DCGAN paper's, and the Keras book code's)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    raise GanctlError(f"Unknown activation '{name}': use relu or leaky_relu.")


class MLPGenerator(nn.Module):
    """latent (B, Z) -> Linear[-BatchNorm]-activation blocks -> Linear -> tanh -> (B, C, H, W)."""

    def __init__(
        self,
        latent_dim: int,
        hidden: list[int],
        channels: int,
        image_size: int,
        batch_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = (channels, image_size, image_size)
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size) if batch_norm else nn.Identity(), activation_layer(activation)]
            width = size
        layers += [nn.Linear(width, math.prod(self.image_shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """(B, C, H, W) -> flatten -> Linear-LeakyReLU(0.2)[-Dropout] blocks -> Linear -> (B,) logits."""

    def __init__(self, hidden: list[int], channels: int, image_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = channels * image_size * image_size
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


# The configurable conv GAN of the classic Keras book code (Foster, "Generative Deep Learning", ch. 4),
# layer for layer: per-layer lists of filters, kernel sizes, strides and upsampling factors, with
# Keras's "same" padding. BatchNorm momentum is given in Keras's convention (the weight kept by the
# running average, e.g. 0.9), so the book's numbers can be copied; PyTorch's momentum is 1 minus it.


def _keras_batch_norm(momentum: float | None, features: int, dims: int) -> nn.Module:
    if momentum is None:
        return nn.Identity()
    if not 0.0 <= momentum < 1.0:
        raise GanctlError(f"batch_norm_momentum must be in [0, 1) (Keras's convention, e.g. 0.9), got {momentum}.")
    norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return norm(features, momentum=1.0 - momentum, eps=1e-3)  # Keras's default epsilon


def _check_lengths(where: str, lists: dict[str, list], expected: int) -> None:
    for name, values in lists.items():
        if len(values) != expected:
            raise GanctlError(
                f"model.{where}.{name} has {len(values)} entries but the {where} has {expected} conv layers: "
                f"give one entry per layer. " + (
                    "(generator.filters lists the hidden layers only: the last layer makes the image, "
                    "with the dataset's channels.)" if where == "generator" else ""
                )
            )


class ConvGenerator(nn.Module):
    """latent (B, Z) -> Linear to (B, C0, s0, s0) [-BatchNorm]-activation[-Dropout] -> conv layers ->
    (B, C, H, W) with tanh.

    Layer i either upsamples by upsample[i] (nearest) then convolves at stride 1 (Keras's
    UpSampling2D + Conv2D), or, with upsample[i] = 1, is a transposed conv at strides[i]
    (Conv2DTranspose). Hidden layers are followed by [BatchNorm]-activation[-Dropout]; `filters` lists
    the hidden layers' widths, and the last layer outputs the dataset's channels.
    """

    def __init__(
        self,
        latent_dim: int,
        initial_size: int,
        initial_channels: int,
        filters: list[int],
        kernel_sizes: list[int],
        strides: list[int],
        upsample: list[int],
        channels: int,
        image_size: int,
        batch_norm_momentum: float | None = None,
        dropout: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layer_count = len(filters) + 1
        _check_lengths("generator", {"kernel_sizes": kernel_sizes, "strides": strides, "upsample": upsample}, layer_count)
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, initial_channels * initial_size**2),
            _keras_batch_norm(batch_norm_momentum, initial_channels * initial_size**2, dims=1),
            activation_layer(activation),
            nn.Unflatten(1, (initial_channels, initial_size, initial_size)),  # (B, C0, s0, s0)
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))
        size, width = initial_size, initial_channels
        for i, (out, kernel, stride, factor) in enumerate(zip([*filters, channels], kernel_sizes, strides, upsample)):
            if factor > 1:
                layers += [nn.Upsample(scale_factor=factor, mode="nearest"), nn.Conv2d(width, out, kernel, 1, "same")]
                size *= factor
            elif stride > 1:  # "same" transposed conv: exactly stride x the size
                padding = max(0, math.ceil((kernel - stride) / 2))
                layers.append(nn.ConvTranspose2d(width, out, kernel, stride, padding, output_padding=2 * padding - kernel + stride))
                size *= stride
            else:
                layers.append(nn.Conv2d(width, out, kernel, 1, "same"))
            if i < layer_count - 1:
                layers += [_keras_batch_norm(batch_norm_momentum, out, dims=2), activation_layer(activation)]
                if dropout:
                    layers.append(nn.Dropout(dropout))
            width = out
        if size != image_size:
            raise GanctlError(
                f"The conv generator makes {size}x{size} images (initial_size {initial_size}, upsample "
                f"{list(upsample)}, strides {list(strides)}), but the dataset's images are {image_size}x{image_size}. "
                "Change model.generator.initial_size, upsample or strides, or dataset.image_size."
            )
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvDiscriminator(nn.Module):
    """(B, C, H, W) -> conv layers with "same" padding, each -[BatchNorm]-activation[-Dropout]
    (no BatchNorm on the first layer) -> flatten -> Linear -> (B,) logits (no sigmoid)."""

    def __init__(
        self,
        filters: list[int],
        kernel_sizes: list[int],
        strides: list[int],
        channels: int,
        image_size: int,
        batch_norm_momentum: float | None = None,
        dropout: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        _check_lengths("discriminator", {"kernel_sizes": kernel_sizes, "strides": strides}, len(filters))
        layers: list[nn.Module] = []
        width = channels
        for i, (out, kernel, stride) in enumerate(zip(filters, kernel_sizes, strides)):
            padding = "same" if stride == 1 else (kernel - 1) // 2
            layers.append(nn.Conv2d(width, out, kernel, stride, padding))
            if i > 0:
                layers.append(_keras_batch_norm(batch_norm_momentum, out, dims=2))
            layers.append(activation_layer(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():  # the flattened size, from the layers themselves
            features = self.features.eval()(torch.zeros(1, channels, image_size, image_size)).shape[1]
        self.features.train()
        self.output = nn.Linear(features, 1)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(images)).flatten()

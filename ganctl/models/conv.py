"""The configurable conv GAN of the classic Keras book code (Foster, "Generative Deep Learning", ch. 4)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ganctl.errors import GanctlError
from ganctl.models.capabilities import freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning, LabelLayer, LabelledSequential, flat_scores
from ganctl.models.layers import activation_layer, dcgan_init


# The configurable conv GAN of the classic Keras book code (Foster, "Generative Deep Learning", ch. 4),
# layer for layer: per-layer lists of filters, kernel sizes, strides and upsampling factors, with
# Keras's "same" padding. BatchNorm momentum is given in Keras's convention (the weight kept by the
# running average, e.g. 0.9), so the book's numbers can be copied; PyTorch's momentum is 1 minus it.


def _keras_batch_norm(momentum: float | None, features: int, dims: int, conditioning: Conditioning = UNCONDITIONAL) -> nn.Module:
    """BatchNorm with Keras's momentum convention (or none); G's is class-conditional when its conditioning says."""
    if momentum is None:
        return nn.Identity()
    if not 0.0 <= momentum < 1.0:
        raise GanctlError(f"batch_norm_momentum must be in [0, 1) (Keras's convention, e.g. 0.9), got {momentum}.")
    return conditioning.batch_norm(features, dims, momentum=1.0 - momentum, eps=1e-3)  # Keras's default epsilon


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
    the hidden layers' widths, and the last layer outputs the dataset's channels. Conditioned, the
    label joins the latent or makes every BatchNorm class-conditional.
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
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layer_count = len(filters) + 1
        _check_lengths("generator", {"kernel_sizes": kernel_sizes, "strides": strides, "upsample": upsample}, layer_count)
        inputs = conditioning.generator_input()  # built once: its embedding draws from the RNG
        layers: list[nn.Module] = [
            *inputs,  # (B, Z) -> (B, Z + E) when the label joins the latent
            nn.Linear(conditioning.generator_input_size(latent_dim), initial_channels * initial_size**2),
            _keras_batch_norm(batch_norm_momentum, initial_channels * initial_size**2, 1, conditioning),
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
                layers += [_keras_batch_norm(batch_norm_momentum, out, 2, conditioning), activation_layer(activation)]
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
        self.net = LabelledSequential(*layers)
        self.first_layer = len(inputs)  # the index in net of the layer reading the latent
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(z, labels)

    def first_layer_weight(self) -> torch.Tensor:
        """(C0 * s0 * s0, latent_dim): the first linear layer's weight on the latent (SeFa)."""
        return self.net[self.first_layer].weight[:, : self.latent_dim]


class ConvDiscriminator(nn.Module):
    """(B, C, H, W) -> conv layers with "same" padding, each -[BatchNorm]-activation[-Dropout]
    (no BatchNorm on the first layer) -> flatten -> Linear -> (B,) logits (no sigmoid). Conditioned,
    the label joins the input, or projects onto (or is classified from) the flattened features."""

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
        freeze: int = 0,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        _check_lengths("discriminator", {"kernel_sizes": kernel_sizes, "strides": strides}, len(filters))
        layers: list[nn.Module] = [*conditioning.critic_input()]  # (B, C + E, H, W) when the label joins the input
        width = conditioning.critic_input_size(channels)
        for i, (out, kernel, stride) in enumerate(zip(filters, kernel_sizes, strides)):
            padding = "same" if stride == 1 else (kernel - 1) // 2
            layers.append(nn.Conv2d(width, out, kernel, stride, padding))
            if i > 0:
                layers.append(_keras_batch_norm(batch_norm_momentum, out, dims=2))
            layers.append(activation_layer(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = out
        self.features = LabelledSequential(*layers, nn.Flatten())
        with torch.no_grad():  # the flattened size, from the layers themselves
            blank = torch.zeros(1, channels, image_size, image_size)
            features = self.features.eval()(blank, torch.zeros(1, dtype=torch.long)).shape[1]
        self.features.train()
        self.output = conditioning.critic_output(nn.Linear(features, 1), features)
        self.apply(dcgan_init)
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Any:
        features = self.features(images, labels)  # (B, F)
        output = self.output(features, labels) if isinstance(self.output, LabelLayer) else self.output(features)
        return flat_scores(output)  # (B,), or ((B,), (B, K)) with an auxiliary classifier

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        return self.features.activations(images, labels)  # (B, C, h, w) after each conv layer

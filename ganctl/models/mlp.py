"""The vanilla GAN of the classic MNIST tutorials: MLP generator and discriminator."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn

from ganctl.models.capabilities import freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning, LabelledSequential, flat_scores
from ganctl.models.layers import activation_layer


class MLPGenerator(nn.Module):
    """latent (B, Z) -> Linear[-BatchNorm]-activation blocks -> Linear -> tanh -> (B, C, H, W);
    conditioned, the label joins the latent or makes every BatchNorm class-conditional."""

    def __init__(
        self,
        latent_dim: int,
        hidden: list[int],
        channels: int,
        image_size: int,
        batch_norm: bool = True,
        activation: str = "relu",
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image_shape = (channels, image_size, image_size)
        inputs = conditioning.generator_input()  # built once: its embedding draws from the RNG
        layers: list[nn.Module] = [*inputs]  # (B, Z) -> (B, Z + E) when the label joins
        width = conditioning.generator_input_size(latent_dim)
        for size in hidden:
            layers += [
                nn.Linear(width, size),
                conditioning.batch_norm(size, dims=1) if batch_norm else nn.Identity(),
                activation_layer(activation),
            ]
            width = size
        layers += [nn.Linear(width, math.prod(self.image_shape)), nn.Tanh()]
        self.net = LabelledSequential(*layers)
        self.first_layer = len(inputs)  # the index in net of the layer reading the latent

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.net(z, labels).view(-1, *self.image_shape)

    def first_layer_weight(self) -> torch.Tensor:
        """(hidden, latent_dim): the first linear layer's weight on the latent (SeFa)."""
        return self.net[self.first_layer].weight[:, : self.latent_dim]


class MLPDiscriminator(nn.Module):
    """(B, C, H, W) -> flatten -> Linear-LeakyReLU(0.2)[-Dropout] blocks -> Linear -> (B,) logits;
    conditioned, the label joins the flattened image, or projects onto (or is classified from) the
    last hidden features."""

    def __init__(self, hidden: list[int], channels: int, image_size: int, dropout: float = 0.0,
                 freeze: int = 0, conditioning: Conditioning = UNCONDITIONAL) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), *conditioning.critic_input()]
        width = conditioning.critic_input_size(channels * image_size * image_size)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(conditioning.critic_output(nn.Linear(width, 1), width))
        self.net = LabelledSequential(*layers)
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Any:
        return flat_scores(self.net(images, labels))  # (B,), or ((B,), (B, K)) with an auxiliary classifier

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        return self.net.activations(images, labels)  # (B, hidden) after each hidden layer

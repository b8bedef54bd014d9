"""The vanilla GAN of the classic MNIST tutorials: MLP generator and discriminator."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganctl.models.layers import activation_layer


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

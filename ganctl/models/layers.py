"""Pieces the model families share: initialisation and activations."""

from __future__ import annotations

from torch import nn

from ganctl.errors import GanctlError


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's init: conv and linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02) (a norm
    without its own scale, inside a class-conditional BatchNorm, keeps none)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def activation_layer(name: str) -> nn.Module:
    """relu, or leaky_relu with slope 0.2 (the DCGAN paper's, and the Keras book code's)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    raise GanctlError(f"Unknown activation '{name}': use relu or leaky_relu.")

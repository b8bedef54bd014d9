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


def spectrally_normalised(layer: nn.Module) -> nn.Module:
    """torch's spectral norm (Miyato et al. 2018: the weight divided by its largest singular value,
    estimated by one power iteration a training forward). Where the weight matrix is taller than wide
    (more outputs than inputs per output: a 1x1 conv from RGB, a class embedding wider than the
    features), torch.compile's autograd trips over the power iteration's in-place update of the
    singular vectors ("modified by an inplace operation" in the backward); there the normalisation
    runs eagerly, and the layer's own computation is still compiled. Eager results are unchanged."""
    import torch

    rows, columns = layer.weight.shape[0], layer.weight[0].numel()
    nn.utils.parametrizations.spectral_norm(layer)
    if rows > columns:
        normalisation = layer.parametrizations.weight[0]
        normalisation.forward = torch._dynamo.disable(normalisation.forward)
    return layer

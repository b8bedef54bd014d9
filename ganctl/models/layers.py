"""Pieces the model families share: initialisation, activations, spectral norm, minibatch std."""

from __future__ import annotations

from typing import Any

import torch
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
    rows, columns = layer.weight.shape[0], layer.weight[0].numel()
    nn.utils.parametrizations.spectral_norm(layer)
    if rows > columns:
        normalisation = layer.parametrizations.weight[0]
        normalisation.forward = torch._dynamo.disable(normalisation.forward)
    return layer


def grouped(x: torch.Tensor, group: int, features: int) -> torch.Tensor:
    """(N, C, H, W) -> (group, N / group, H * W, features, C / features), in fp32 at least, on an NHWC
    view (no copy for a channels_last x; on a CPU a strided copy of bf16 features was slower)."""
    n, c, h, w = x.shape
    return x.to(torch.promote_types(x.dtype, torch.float32)).permute(0, 2, 3, 1).reshape(group, -1, h * w, features, c // features)


def centred_and_std(x: torch.Tensor, group: int, features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The features less their group's mean, (G, n, HW, F, c), and their standard deviation over the
    group, (n, HW, F, c)."""
    y = grouped(x, group, features)
    centred = y - y.mean(dim=0)
    return centred, (centred.square().mean(dim=0) + 1e-8).sqrt()


def group_spread(x: torch.Tensor, group: int, features: int) -> torch.Tensor:
    """The minibatch standard deviation statistic, (N, C, H, W) -> (N / group, features): the standard
    deviation of every feature over each group of images (i, i + N / group, ...), averaged over the
    positions and the channels of each of `features` groups of channels (StyleGAN2's formula)."""
    return centred_and_std(x, group, features)[1].mean(dim=(1, 3))  # (n, F)


class GroupSpread(torch.autograd.Function):
    """group_spread with its gradient written out: d std / d x_i = (x_i - mean) / (group * std), three
    passes over x where autograd makes a dozen (on a CPU the statistic was a sixth of the default run's
    step). A backward that builds a graph (R1 differentiates D's gradient) differentiates
    group_spread itself instead, so second derivatives are exact."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: int, features: int) -> torch.Tensor:
        centred, std = centred_and_std(x, group, features)
        ctx.save_for_backward(x)
        ctx.centred, ctx.std, ctx.group, ctx.features = centred, std, group, features
        return std.mean(dim=(1, 3))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the gradient must itself be differentiable
            (dx,) = torch.autograd.grad(group_spread(x, ctx.group, ctx.features), x, grad, create_graph=True)
            return dx, None, None
        n, c, h, w = x.shape
        std = ctx.std
        scale = grad[:, None, :, None] / (ctx.group * std.shape[1] * std.shape[3]) / std  # (n, HW, F, c)
        dx = ctx.centred * scale  # (G, n, HW, F, c); not in place: a retained graph may run backward again
        return dx.reshape(n, h, w, c).permute(0, 3, 1, 2).to(x.dtype), None, None


class MinibatchStd(nn.Module):
    """Appends the mean standard deviation of each feature over groups of images (Karras et al.
    2018): D sees how varied a batch is. A batch that the group size does not divide uses its
    largest divisor below the group size."""

    def __init__(self, group_size: int, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = max(g for g in range(1, min(self.group_size, n) + 1) if n % g == 0)
        f = self.num_channels
        y = GroupSpread.apply(x, group, f) if torch.is_grad_enabled() else group_spread(x, group, f)  # (n, F)
        y = y.to(x.dtype).reshape(-1, f, 1, 1).repeat(group, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)

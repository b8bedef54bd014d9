"""StyleGAN2 (Karras et al. 2020) as StyleGAN2-ADA's PyTorch code builds it, in plain PyTorch.

The shapes follow NVlabs/stylegan2-ada-pytorch `training/networks.py` layer for layer, so at the
same settings the networks have the reference's parameters, tensor for tensor (the `cifar` config:
G 19,947,539 and D 20,720,641 parameters; with 10 classes 20,215,315 and 23,089,664), and with the
same weights the same outputs and gradients, to float rounding (scripts/compare_stylegan2_reference.py
checks this against a checkout). Only the ops differ: no custom CUDA ops (upfirdn2d, bias_act, fma).
Resampling with the [1, 3, 3, 1] filter is a per-channel convolution with zeros beyond the border, as
upfirdn2d's; G's upsampling convs are transposed convolutions at stride 2 followed by the filter, and
D's downsampling convs filter at full size and then convolve at stride 2, as conv2d_resample does;
biases and activations are torch ops; the modulated convolution scales the activations around one
ordinary convolution (the reference's "non-fused" path, which it trains with).

    G: z (B, Z) -> normalise -> mapping MLP (lr x0.01) -> w (B, W) -> broadcast to ws (B, num_ws, W)
       -> synthesis: learned 4x4 constant -> per resolution: [upsample] modulated 3x3 convs with
       noise of learned strength -> toRGB (1x1 modulated, not demodulated), summed over resolutions
       (the "skip" architecture) -> image (B, C, H, W), unbounded while training.
    D: image -> per resolution: 3x3 convs, the second downsampling ("orig"; "resnet" adds a
       1x1 skip, both scaled by sqrt(1/2)) -> 4x4: minibatch std, 3x3 conv, fc, out -> (B,) scores.

Every weight is stored N(0, 1) and scaled at run time by its He constant (equalised learning rate);
the mapping network's by lr_multiplier as well, so Adam moves it 100x slower. In training mode G
draws fresh noise, updates its running average of w (`w_avg`, for truncation) and mixes styles;
in eval mode (the Sampler's) it uses its stored noise, leaves w_avg alone and clamps its images to
[-1, 1] as the reference does when it saves them. Class-conditional like StyleGAN2-ADA: G joins an
embedding of the one-hot label to z before the mapping (`conditioning.generator=concat`), D maps
the label through its own mapping network and projects its output on it
(`conditioning.discriminator=projection`): `conditioning=concat conditioning.discriminator=projection`
(embedding_dim is not used: the embeddings are w_dim and the D mapping's width, as in the reference).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganctl.errors import GanctlError
from ganctl.models.capabilities import freeze_blocks
from ganctl.models.conditioning import UNCONDITIONAL, Conditioning
from ganctl.models.layers import MinibatchStd

RESOLUTIONS = (32, 64, 128, 256, 512, 1024)  # 512, 1024: the published models (ganctl import)
LEAKY_GAIN = math.sqrt(2.0)  # lrelu(0.2)'s gain: keeps activations' magnitude from layer to layer


def check_shape(channels: int, image_size: int) -> None:
    if image_size not in RESOLUTIONS:
        raise GanctlError(
            f"StyleGAN2 makes square images of {', '.join(map(str, RESOLUTIONS))} pixels; got {image_size}x{image_size}. "
            "Set dataset.image_size to one of those sizes."
        )
    if channels not in (1, 3):
        raise GanctlError(f"StyleGAN2 makes 1- or 3-channel images; the dataset has {channels} channels.")


def check_conditioning(conditioning: Conditioning, role: str, supported: str) -> None:
    """StyleGAN2 sees the label one way per network; refuse the others rather than ignore them."""
    way = conditioning.generator if role == "generator" else conditioning.discriminator
    if way not in ("none", supported):
        raise GanctlError(
            f"StyleGAN2's {role} sees the label only as StyleGAN2-ADA does (conditioning.{role}={supported}), "
            f"not {way}: use conditioning=concat conditioning.discriminator=projection."
        )


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / RMS(x) over features: z (and the label's embedding) on the unit sphere times sqrt(dim)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def leaky(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * (LEAKY_GAIN * gain)


LOWPASS = (1.0, 3.0, 3.0, 1.0)  # the reference's resample_filter, separable: [1, 3, 3, 1] x [1, 3, 3, 1] / 64


def lowpass_kernel(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """The 4x4 low-pass filter, one per channel of x (C, 1, 4, 4), summing to `gain`, in x's dtype."""
    taps = x.new_tensor(LOWPASS)
    return (torch.outer(taps, taps) * (gain / taps.sum() ** 2)).repeat(x.shape[1], 1, 1, 1)


def lowpass(x: torch.Tensor, padding: int, stride: int = 1, gain: float = 1.0) -> torch.Tensor:
    """upfirdn2d with the [1, 3, 3, 1] filter: zero-pad by `padding` on every side, filter each channel,
    keep every `stride`-th pixel. (B, C, H, W) -> (B, C, (H + 2 padding - 4) // stride + 1, ...)."""
    return F.conv2d(F.pad(x, [padding] * 4), lowpass_kernel(x, gain), stride=stride, groups=x.shape[1])


def upsample(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling as the reference's upfirdn2d.upsample2d: zeros between the pixels, then the filter
    (gain 4): bilinear interpolation inside the image, with zeros beyond its border."""
    return F.conv_transpose2d(x, lowpass_kernel(x, 4.0), stride=2, padding=1, groups=x.shape[1])  # (B, C, 2H, 2W)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """2x downsampling as the reference's upfirdn2d.downsample2d: the filter at stride 2, zero-padded by 1."""
    return lowpass(x, padding=1, stride=2)  # (B, C, H/2, W/2)


def clamped(x: torch.Tensor, bound: Optional[float]) -> torch.Tensor:
    """x within +-bound (None: unbounded): StyleGAN2-ADA's `conv_clamp`, applied to each conv layer's
    output after its bias, activation and gain (bias_act's `clamp`), so fp16 activations cannot overflow."""
    return x if bound is None else x.clamp(-bound, bound)


def check_clamp(conv_clamp: Optional[float], role: str) -> Optional[float]:
    number = isinstance(conv_clamp, (int, float)) and not isinstance(conv_clamp, bool)
    if conv_clamp is not None and not (number and math.isfinite(conv_clamp) and conv_clamp > 0):
        raise GanctlError(f"model.{role}.conv_clamp must be a positive number (StyleGAN2-ADA uses 256) or null, got {conv_clamp!r}.")
    return None if conv_clamp is None else float(conv_clamp)


class FullyConnected(nn.Module):
    """A linear layer with equalised learning rate: weight N(0, 1) / lr_multiplier, scaled by
    lr_multiplier / sqrt(fan_in) at run time; optional lrelu."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False, lr_multiplier: float = 1.0,
                 bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain, self.bias_gain = lr_multiplier / math.sqrt(in_features), lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return leaky(x) if self.activation else x


class Conv(nn.Module):
    """A convolution with equalised learning rate and lrelu (or none), optionally halving the size as
    the reference's conv2d_resample(down=2) does: a 1x1 conv after downsampling; a 3x3 conv at stride 2
    after the low-pass filter at full size (zero-padded by 2), so its taps are neighbouring pixels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: bool = True,
                 bias: bool = True, down: bool = False, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        padding = weight.shape[-1] // 2
        if not self.down:
            x = F.conv2d(x, weight, padding=padding)
        elif weight.shape[-1] == 1:
            x = F.conv2d(downsample(x), weight)  # (B, O, H/2, W/2)
        else:
            x = F.conv2d(lowpass(x, padding + 1), weight, stride=2)  # (B, O, H/2, W/2)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        x = leaky(x, gain) if self.activation else x * gain
        return clamped(x, None if self.conv_clamp is None else self.conv_clamp * gain)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                   padding: int = 0, up: bool = False) -> torch.Tensor:
    """StyleGAN2's modulated convolution, computed by scaling the activations: conv(x * s) with the
    shared weight, times each output's demodulation 1 / ||w * s|| -- the same as convolving with each
    image's own weight w * s / ||w * s||, at the price of one ordinary convolution. `up` (a 3x3 weight):
    2x upsampling as the reference's conv2d_resample(up=2, padding=1), a transposed convolution at
    stride 2 -- a true convolution of the zero-stuffed input, its kernel flipped against conv2d's --
    then the low-pass filter (gain 4)."""
    batch = x.shape[0]
    x = x * styles.to(x.dtype).view(batch, -1, 1, 1)  # (B, I, H, W)
    if up:
        x = F.conv_transpose2d(x, weight.to(x.dtype).transpose(0, 1), stride=2)  # (B, O, 2H + 1, 2W + 1)
        x = lowpass(x, padding=1, gain=4.0)  # (B, O, 2H, 2W)
    else:
        x = F.conv2d(x, weight.to(x.dtype), padding=padding)  # (B, O, H, W)
    if demodulate:
        squared = weight.square().sum(dim=(2, 3))  # (O, I)
        coefficients = (styles.square() @ squared.t() + 1e-8).rsqrt()  # (B, O)
        x = x * coefficients.to(x.dtype).view(batch, -1, 1, 1)
    return x


class SynthesisLayer(nn.Module):
    """A modulated 3x3 conv [upsampling 2x], noise of learned strength, bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 noise: bool = True, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution, self.noise = resolution, noise
        self.up, self.conv_clamp = up, conv_clamp
        if noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))  # eval mode's fixed noise
            self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv(x, self.weight, self.affine(w), padding=1, up=self.up)  # (B, O, H, W)
        if self.noise:
            noise = (torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
                     if self.training else self.noise_const.to(x.dtype))
            x = x + noise * self.noise_strength.to(x.dtype)
        return clamped(leaky(x + self.bias.to(x.dtype).view(1, -1, 1, 1)), self.conv_clamp)


class ToRGB(nn.Module):
    """A modulated 1x1 conv to the image's channels, without demodulation."""

    def __init__(self, in_channels: int, channels: int, w_dim: int, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = modulated_conv(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False)
        return clamped(x + self.bias.to(x.dtype).view(1, -1, 1, 1), self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of G: (the 4x4 constant | 2x upsampling conv), a conv, and toRGB; the image so
    far is upsampled and the block's RGB added (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, channels: int,
                 noise: bool, conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, noise=noise, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, noise=noise, conv_clamp=conv_clamp)
        self.torgb = ToRGB(out_channels, channels, w_dim, conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.resolution = resolution

    def forward(self, x: Optional[torch.Tensor], image: Optional[torch.Tensor], ws: torch.Tensor):
        styles = ws.unbind(dim=1)  # num_conv + 1 of (B, W): the convs', then toRGB's
        if x is None:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)  # (B, C, 4, 4)
            x = self.conv1(x, styles[0])
        else:
            x = self.conv1(self.conv0(x, styles[0]), styles[1])
        rgb = self.torgb(x, styles[self.num_conv]).float()
        image = rgb if image is None else upsample(image) + rgb
        return x, image


class MappingNetwork(nn.Module):
    """z (and the label) -> w: normalised inputs, `layers` lrelu FC layers at lr_multiplier."""

    def __init__(self, z_dim: int, num_classes: int, w_dim: int, layers: int, lr_multiplier: float,
                 embed_features: Optional[int] = None) -> None:
        super().__init__()
        embed_features = (embed_features or w_dim) if num_classes else 0
        self.z_dim, self.num_classes = z_dim, num_classes
        if num_classes:
            self.embed = FullyConnected(num_classes, embed_features)  # of the one-hot label
        features = [z_dim + embed_features] + [w_dim] * layers
        self.layers = nn.Sequential(*(FullyConnected(features[i], features[i + 1], activation=True,
                                                     lr_multiplier=lr_multiplier) for i in range(layers)))

    def forward(self, z: Optional[torch.Tensor], labels: Optional[torch.Tensor]) -> torch.Tensor:
        inputs = [normalize_2nd_moment(z.float())] if self.z_dim else []
        if self.num_classes:
            if labels is None:
                raise ValueError("a class-conditional StyleGAN2 needs labels")
            one_hot = F.one_hot(labels, self.num_classes).float()  # (B, K)
            inputs.append(normalize_2nd_moment(self.embed(one_hot)))
        return self.layers(torch.cat(inputs, dim=1))  # (B, W)


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


class StyleGAN2Generator(nn.Module):
    """z (B, latent_dim) [and labels (B,)] -> images (B, C, H, W). W is exposed for what works in it:
    `mapping` (training: w_avg update, style mixing; path length), and the Sampler's hooks
    `forward_truncated` (the truncation trick), `styles` and `synthesis` with `style_resolutions`
    (style-mixing grids, walks in W: `ganctl sample --mix`, `--space w`)."""

    conditions_itself = True  # its label embedding lives in the mapping network (check_conditioning)

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_dim: int = 512,
        w_dim: int = 512,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        channel_base: int = 32768,
        channel_max: int = 512,
        noise: bool = True,
        style_mixing: float = 0.9,
        w_avg_beta: float = 0.995,
        conv_clamp: Optional[float] = None,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        check_shape(channels, image_size)
        check_conditioning(conditioning, "generator", "concat")
        conv_clamp = check_clamp(conv_clamp, "generator")
        if not 0.0 <= style_mixing <= 1.0:
            raise GanctlError(f"model.generator.style_mixing must be a probability in [0, 1], got {style_mixing}.")
        if mapping_layers < 1:
            raise GanctlError(f"model.generator.mapping_layers must be at least 1, got {mapping_layers}.")
        self.latent_dim, self.w_dim = latent_dim, w_dim
        self.style_mixing, self.w_avg_beta = style_mixing, w_avg_beta
        self.mapping_network = MappingNetwork(latent_dim, conditioning.num_classes, w_dim, mapping_layers,
                                              mapping_lr_multiplier)
        resolutions = [2**i for i in range(2, int(math.log2(image_size)) + 1)]
        blocks, self.num_ws = [], 0
        for resolution in resolutions:
            in_channels = channels_at(resolution // 2, channel_base, channel_max) if resolution > 4 else 0
            block = SynthesisBlock(in_channels, channels_at(resolution, channel_base, channel_max), w_dim, resolution,
                                   channels, noise, conv_clamp)
            blocks.append(block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB's; each other toRGB shares the next block's first w
        self.blocks = nn.ModuleList(blocks)
        # The resolution each of the num_ws styles drives: a block's convs', then the last toRGB's (each
        # other toRGB shares the next block's first style).
        self.style_resolutions = tuple(r for block in blocks for r in [block.resolution] * block.num_conv) + (image_size,)
        self.register_buffer("w_avg", torch.zeros(w_dim))  # running mean of w: the centre truncation pulls to

    def mapping(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ws (B, num_ws, W) for z: in training mode the running mean of w moves towards this batch's,
        and with probability style_mixing the ws from a random layer on come from a second z."""
        w = self.mapping_network(z, labels)  # (B, W)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # (B, num_ws, W)
        if self.training and self.style_mixing > 0:
            cutoff = torch.randint(1, self.num_ws, (), device=ws.device)
            cutoff = torch.where(torch.rand((), device=ws.device) < self.style_mixing, cutoff, self.num_ws)
            mixed = self.mapping_network(torch.randn_like(z), labels).unsqueeze(1)  # (B, 1, W)
            layer = torch.arange(self.num_ws, device=ws.device).view(1, -1, 1)
            ws = torch.where(layer < cutoff, ws, mixed)
        return ws

    def synthesis(self, ws: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Images (B, C, H, W) for ws (B, num_ws, W); clamped to [-1, 1] in eval mode unless `clamp` is
        false (the raw images StyleGAN2-ADA's code returns, for comparisons with it)."""
        x = image = None
        index = 0
        for block in self.blocks:
            x, image = block(x, image, ws.narrow(1, index, block.num_conv + 1))
            index += block.num_conv
        return image if self.training or not clamp else image.clamp(-1.0, 1.0)

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, with_styles: bool = False):
        """Images (B, C, H, W); with_styles: (images, ws), ws in the graph (path-length regularisation)."""
        ws = self.mapping(z, labels)
        images = self.synthesis(ws)
        return (images, ws) if with_styles else images

    def styles(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 1.0) -> torch.Tensor:
        """The styles (B, num_ws, W) G draws z with (the same w for every layer), truncated in W:
        w_avg + psi * (w - w_avg) (psi 1: none; 0: the average). `synthesis` draws them, so styles can
        be mixed or interpolated in between. Use in eval mode (the Sampler's): no w_avg update, no mixing."""
        ws = self.mapping(z, labels)
        return ws if psi == 1 else self.w_avg.to(ws.dtype).lerp(ws, psi)

    def forward_truncated(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 0.7) -> torch.Tensor:
        """Images with the truncation trick in W (see `styles`); use in eval mode (the Sampler's)."""
        return self.synthesis(self.styles(z, labels, psi))

    def noisy_layers(self) -> list[SynthesisLayer]:
        return [layer for layer in self.modules() if isinstance(layer, SynthesisLayer) and layer.noise]

    def noise_maps(self) -> list[torch.Tensor]:
        """Eval mode's fixed noise, one (r, r) map per noisy layer, 4x4 first."""
        return [layer.noise_const for layer in self.noisy_layers()]

    @contextmanager
    def using_noise(self, maps: list[torch.Tensor]) -> Iterator[None]:
        """Eval mode draws with `maps` in the block ((r, r) each, or (N, 1, r, r): one per image, as the
        reference's projector optimises them), then with its own again."""
        layers = self.noisy_layers()
        if len(maps) != len(layers):
            raise ValueError(f"{len(maps)} noise maps for {len(layers)} noisy layers")
        own = [layer.noise_const for layer in layers]
        try:
            for layer, noise in zip(layers, maps):
                layer.noise_const = noise  # broadcast against (N, C, r, r) in SynthesisLayer.forward
            yield
        finally:
            for layer, noise in zip(layers, own):
                layer.noise_const = noise

    def first_layer_weight(self) -> torch.Tensor:
        """(sum of channels, w_dim): every modulated conv's style affine and the last toRGB's, stacked, as
        SeFa factorises StyleGAN2 (its default: every layer; the other toRGB affines left out, as there)."""
        affines = [layer.affine for layer in self.modules() if isinstance(layer, SynthesisLayer)] + [self.blocks[-1].torgb.affine]
        return torch.cat([affine.weight * affine.weight_gain for affine in affines])


class DiscriminatorBlock(nn.Module):
    """One resolution of D: [fromRGB,] a 3x3 conv, a downsampling 3x3 conv [, a 1x1 skip (resnet)]."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, channels: int, architecture: str,
                 conv_clamp: Optional[float] = None) -> None:
        super().__init__()
        if in_channels == 0:
            self.fromrgb = Conv(channels, tmp_channels, 1, conv_clamp=conv_clamp)
        self.conv0 = Conv(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv(tmp_channels, out_channels, 3, down=True, conv_clamp=conv_clamp)
        if architecture == "resnet":  # (unclamped, as the reference's)
            self.skip = Conv(tmp_channels, out_channels, 1, activation=False, bias=False, down=True)
        self.architecture = architecture

    def forward(self, x: Optional[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        if x is None:
            x = self.fromrgb(image)
        if self.architecture == "resnet":
            skip = self.skip(x, gain=math.sqrt(0.5))
            return skip + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return self.conv1(self.conv0(x))


class StyleGAN2Discriminator(nn.Module):
    """images (B, C, H, W) [and labels (B,)] -> raw scores (B,)."""

    conditions_itself = True  # its label mapping and projection are its own (check_conditioning)

    def __init__(
        self,
        channels: int,
        image_size: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_channels: int = 1,
        mapping_layers: int = 8,
        conv_clamp: Optional[float] = None,
        freeze: int = 0,
        conditioning: Conditioning = UNCONDITIONAL,
    ) -> None:
        super().__init__()
        check_shape(channels, image_size)
        check_conditioning(conditioning, "discriminator", "projection")
        conv_clamp = check_clamp(conv_clamp, "discriminator")
        if architecture not in ("orig", "resnet"):
            raise GanctlError(f"model.discriminator.architecture must be orig or resnet, got {architecture!r}.")
        if mbstd_group_size < 1 or mbstd_channels < 0:
            raise GanctlError("model.discriminator.mbstd_group_size must be at least 1 and mbstd_channels 0 or more.")
        resolutions = [2**i for i in range(int(math.log2(image_size)), 2, -1)]
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(channels_at(r, channel_base, channel_max) if r < image_size else 0,
                               channels_at(r, channel_base, channel_max), channels_at(r // 2, channel_base, channel_max),
                               channels, architecture, conv_clamp)
            for r in resolutions
        )
        width = channels_at(4, channel_base, channel_max)
        self.num_classes = conditioning.num_classes
        cmap_dim = width if self.num_classes else 0
        if self.num_classes:
            self.mapping = MappingNetwork(0, self.num_classes, cmap_dim, mapping_layers, 0.01)
        self.mbstd = MinibatchStd(mbstd_group_size, mbstd_channels) if mbstd_channels > 0 else nn.Identity()
        self.conv = Conv(width + mbstd_channels, width, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnected(width * 16, width, activation=True)
        self.out = FullyConnected(width, cmap_dim or 1)
        self.cmap_dim = cmap_dim
        freeze_blocks(self, freeze)  # FreezeD (model.discriminator.freeze): its first blocks from the image side fixed

    def image_side_blocks(self) -> list[nn.Module]:
        """One block per resolution from the image's down (the first with its fromRGB), for FreezeD;
        the 4x4 epilogue (minibatch std, conv, fully connected layers) is the output."""
        return list(self.blocks)

    def feature_maps(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Each block's output (B, C_r, r/2, r/2), first to last (before the minibatch std)."""
        features, x = [], None
        for block in self.blocks:
            x = block(x, images)
            features.append(x)
        return features

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = None
        for block in self.blocks:
            x = block(x, images)  # (B, C_r, r/2, r/2)
        x = self.conv(self.mbstd(x))  # (B, C_4, 4, 4)
        x = self.out(self.fc(x.flatten(1)))  # (B, 1) or (B, cmap)
        if not self.num_classes:
            return x.flatten()
        if labels is None:
            raise ValueError("a class-conditional StyleGAN2 discriminator needs labels")
        cmap = self.mapping(None, labels)  # (B, cmap)
        return (x * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)  # projection on the mapped label

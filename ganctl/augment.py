"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

On small datasets D memorises the real images and G stops learning. Applying the same random,
differentiable transforms to real *and* fake images before D sees them keeps D honest without
changing what G learns to produce: G's gradients flow through the transforms. Batched tensor ops
only, on the training device.

The policies are the reference code's (github.com/mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py):
`color` (random brightness, saturation and contrast, in that order, each per image), `translation`
and `cutout`; the paper's strongest setting for small data is [color, translation, cutout].
For ADA, whose transforms apply with an adaptive probability, see `ganctl.ada`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganctl.config import DIFFAUGMENT_POLICIES

POLICIES = DIFFAUGMENT_POLICIES  # (the setting's home: config)


def color(images: torch.Tensor) -> torch.Tensor:
    """DiffAugment's colour policy on images in [-1, 1]: per image, add a brightness offset in
    [-0.5, 0.5), scale the colour (the deviation from each pixel's channel mean) by [0, 2) and the
    contrast (the deviation from the image's mean) by [0.5, 1.5), as the reference code does. Like it,
    no clamping: values can leave [-1, 1] by at most those amounts."""
    batch = images.shape[0]
    images = images + (torch.rand(batch, 1, 1, 1, device=images.device) - 0.5)  # brightness
    mean = images.mean(1, keepdim=True)
    images = (images - mean) * (torch.rand(batch, 1, 1, 1, device=images.device) * 2) + mean  # saturation
    mean = images.mean((1, 2, 3), keepdim=True)
    return (images - mean) * (torch.rand(batch, 1, 1, 1, device=images.device) + 0.5) + mean  # contrast


def translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * size pixels in x and y, filling with the background (-1)."""
    batch, _, height, width = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), device=images.device)
    dx = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), device=images.device)
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    rows = (rows + dy + 1).clamp(0, height + 1).expand(batch, height, width)  # +1: index into the padded image
    cols = (cols + dx + 1).clamp(0, width + 1).expand(batch, height, width)
    padded = F.pad(images, [1, 1, 1, 1], value=-1.0)  # (B, C, H + 2, W + 2)
    batch_index = torch.arange(batch, device=images.device).view(batch, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch_index, rows, cols].permute(0, 3, 1, 2)


def cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Blank one random square of ratio * size per image (set to the background, -1)."""
    batch, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    top = torch.randint(0, height + 1 - size_y % 2, (batch, 1, 1), device=images.device) - size_y // 2
    left = torch.randint(0, width + 1 - size_x % 2, (batch, 1, 1), device=images.device) - size_x // 2
    rows = torch.arange(height, device=images.device).view(1, height, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)  # (B, H, W)
    return torch.where(inside.unsqueeze(1), torch.full_like(images, -1.0), images)


def augment(images: torch.Tensor, policy: list[str] | tuple[str, ...]) -> torch.Tensor:
    """Apply each named transform in order; an empty policy returns the images unchanged."""
    for name in policy:
        images = TRANSFORMS[name](images)
    return images


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}

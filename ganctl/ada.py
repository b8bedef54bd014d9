"""Adaptive discriminator augmentation (ADA, Karras et al. 2020), a procedure the GAN's step owns.

On a small dataset D memorises the real images, its scores on them drift positive and G's
gradients stop meaning anything. ADA shows D every image -- real and fake, in D's step and in G's
-- through a pipeline of random, differentiable transforms, each applied to each image with
probability p. Because p < 1 leaves every transform's effect visible in the data, G is not pushed
to produce augmented-looking images ("non-leaking"). p is either fixed or steered by the
overfitting heuristic r_t = E[sign(D(real))]: every `interval` steps

    p <- clamp(p + sign(r_t - target) * images / (kimg * 1000), 0, 1)

where `images` is the number of real images D scored since the last adjustment (all ranks': the
reference's batch * interval) and r_t their mean sign, summed over every rank so that all keep the
same p. This follows stylegan2-ada-pytorch (training/training_loop.py: target 0.6, interval 4,
kimg 500; training/augment.py: the transforms and their strengths), which clamps p at 0 only;
p above 1 acts like 1 there, and clamping it lets p fall as soon as D stops overfitting.

The transforms are the reference's integer-pixel and colour ones, in its order: x-flip (half the
chosen images), 90-degree rotations, integer translation by up to 1/8 of the size (reflection
padding), brightness (+N(0, 0.2)), contrast (x 2^N(0, 0.5), about 0, mid-grey of [-1, 1]),
saturation (the deviation from each pixel's channel mean x 2^N(0, 1); none for one channel) and
cutout (a square of half the size set to 0). Left out: the reference's fractional geometric
transforms (scale, rotation, anisotropy, sub-pixel shift), luma flip, hue and the filters/noise.
Colour transforms, as in the reference, can move pixels past [-1, 1]; the others keep the values.

Everything is batched tensor work on the images' device, no host synchronisation: p is a tensor,
and the heuristic's sums stay on the device between adjustments. Images not chosen for a transform
come out of it bit for bit unchanged, so p = 0 is the identity.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist

from ganctl import distributed
from ganctl.config import ADA_MODES, ADA_TRANSFORMS
from ganctl.console import warn

MODES, TRANSFORMS = ADA_MODES, ADA_TRANSFORMS  # (the settings' home: config.AdaSettings)
TRANSLATION = 0.125  # largest shift, a fraction of the image size (the reference's xint_max)
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0  # log2 std for contrast and saturation
CUTOUT = 0.5  # the blanked square's side, a fraction of the image size


def chosen(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Which images a transform applies to: each with probability p, (B, 1, 1, 1) bool."""
    return (torch.rand(images.shape[0], 1, 1, 1, device=images.device) < p)


def reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices outside [0, size) mirrored back in, without repeating the edge (torch's `reflect` padding)."""
    period = 2 * (size - 1) if size > 1 else 1
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def geometric(images: torch.Tensor, p: torch.Tensor | float, flip: bool = False, rotate: bool = False,
              translate: bool = False) -> torch.Tensor:
    """The integer geometric transforms, in this order, as one gather of source pixels (B, C, H, W):
    x-flip (half the chosen images: the reference flips with probability 1/2 when chosen), rotation
    by 0, 90, 180 or 270 degrees (square images), and a shift by a whole number of pixels, up to
    TRANSLATION of the size in x and y, the uncovered border filled by reflection. Each pixel's source
    is found by undoing them from the last (so the gradient is one scatter, not one per transform)."""
    batch, channels, height, width = images.shape
    device = images.device
    rows = torch.arange(height, device=device).view(1, height, 1).expand(batch, height, width)
    cols = torch.arange(width, device=device).view(1, 1, width).expand(batch, height, width)
    mirror = turns = shift = None
    if flip:
        mirror = chosen(images, p).view(batch, 1, 1) & (torch.rand(batch, 1, 1, device=device) < 0.5)
    if rotate:
        turns = torch.randint(0, 4, (batch, 1, 1), device=device)
        turns = torch.where(chosen(images, p).view(batch, 1, 1), turns, torch.zeros_like(turns))
    if translate:
        shift = (torch.rand(batch, 2, device=device) * 2 - 1) * TRANSLATION  # uniform, as a fraction of the size
        shift = torch.where(chosen(images, p).view(batch, 1), shift, torch.zeros_like(shift))
        dy = (shift[:, :1] * height).round().long().view(batch, 1, 1)
        dx = (shift[:, 1:] * width).round().long().view(batch, 1, 1)
        rows, cols = reflect(rows - dy, height), reflect(cols - dx, width)
    if rotate:  # torch.rot90(k, (2, 3)): out[i, j] = in[j, n-1-i] (k = 1), in[n-1-i, n-1-j] (2), in[n-1-j, i] (3)
        last = height - 1
        rows, cols = (torch.where(turns == 1, cols, torch.where(turns == 2, last - rows, torch.where(turns == 3, last - cols, rows))),
                      torch.where(turns == 1, last - rows, torch.where(turns == 2, last - cols, torch.where(turns == 3, rows, cols))))
    if flip:
        cols = torch.where(mirror, width - 1 - cols, cols)
    index = (rows * width + cols).reshape(batch, 1, height * width).expand(batch, channels, height * width)
    return images.reshape(batch, channels, height * width).gather(2, index).view(batch, channels, height, width)


def xflip(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Mirror left-right half of the chosen images."""
    return geometric(images, p, flip=True)


def rotate90(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Rotate each chosen image by 0, 90, 180 or 270 degrees (square images)."""
    return geometric(images, p, rotate=True)


def translation(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Shift each chosen image by a whole number of pixels (reflection padding)."""
    return geometric(images, p, translate=True)


def brightness(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Add N(0, BRIGHTNESS_STD) to every pixel of each chosen image."""
    offset = torch.randn(images.shape[0], 1, 1, 1, device=images.device) * BRIGHTNESS_STD
    return torch.where(chosen(images, p), images + offset, images)


def contrast(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Scale each chosen image about mid-grey (0) by 2^N(0, CONTRAST_STD)."""
    factor = torch.exp2(torch.randn(images.shape[0], 1, 1, 1, device=images.device) * CONTRAST_STD)
    return torch.where(chosen(images, p), images * factor, images)


def saturation(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Scale each chosen image's colour (each pixel's deviation from its channel mean, the
    reference's luma axis) by 2^N(0, SATURATION_STD). Grey images have none: unchanged."""
    factor = torch.exp2(torch.randn(images.shape[0], 1, 1, 1, device=images.device) * SATURATION_STD)
    if images.shape[1] == 1:
        return images
    mean = images.mean(1, keepdim=True)
    return torch.where(chosen(images, p), mean + (images - mean) * factor, images)


def cutout(images: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Set a square of CUTOUT x the size, centred anywhere in the image (clipped at its border), to 0
    in each chosen image."""
    batch, _, height, width = images.shape
    centre = torch.rand(batch, 2, 1, 1, device=images.device)  # (y, x) as fractions of the size
    rows = (torch.arange(height, device=images.device).view(1, height, 1) + 0.5) / height
    cols = (torch.arange(width, device=images.device).view(1, 1, width) + 0.5) / width
    inside = ((rows - centre[:, 0]).abs() < CUTOUT / 2) & ((cols - centre[:, 1]).abs() < CUTOUT / 2)  # (B, H, W)
    inside = inside.unsqueeze(1) & chosen(images, p)
    return torch.where(inside, torch.zeros_like(images), images)


FUNCTIONS = {"xflip": xflip, "rotate90": rotate90, "translation": translation, "brightness": brightness,
             "contrast": contrast, "saturation": saturation, "cutout": cutout}


def pipeline(images: torch.Tensor, p: torch.Tensor | float, transforms: tuple[str, ...] | list[str] = TRANSFORMS) -> torch.Tensor:
    """The chosen transforms (in TRANSFORMS' order, whatever order they are named in), each applied
    to each image with probability p. (B, C, H, W) in, the same shape out; differentiable. The
    geometric ones are done as one gather: the same images as applying them one by one."""
    flip, rotate, translate = ("xflip" in transforms), ("rotate90" in transforms), ("translation" in transforms)
    if flip or rotate or translate:
        images = geometric(images, p, flip, rotate, translate)
    for name in ("brightness", "contrast", "saturation", "cutout"):
        if name in transforms:
            images = FUNCTIONS[name](images, p)
    return images


class AdaptiveAugment:
    """ADA as the GAN's step uses it: `augment(images)` for every image D sees, `observe(real_scores)`
    after D scores the real batch, `adjust(step)` once per step. Mode `none` leaves images alone and
    draws no random numbers (runs without ADA train exactly as before it)."""

    def __init__(self, mode: str, p: float, target: float, interval: int, kimg: float, transforms: list[str],
                 device: torch.device, group: Optional[distributed.Group] = None) -> None:
        self.mode, self.target, self.interval, self.kimg = mode, target, interval, kimg
        self.transforms = tuple(transforms)
        self.group = group or distributed.Group()
        self.p = torch.tensor(float(p), device=device)
        self.signs = torch.zeros(2, device=device)  # since the last adjustment: sum of sign(D(real)), real images

    @classmethod
    def from_settings(cls, settings: Any, device: torch.device, group: Optional[distributed.Group] = None) -> "AdaptiveAugment":
        """From the config's `train.ada` block (absent: mode none)."""
        if settings is None:
            return cls("none", 0.0, 0.6, 4, 500, [], device, group)
        return cls(settings.mode, settings.p, settings.target, settings.interval, settings.kimg,
                   list(settings.transforms), device, group)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def adaptive(self) -> bool:
        return self.mode == "adaptive"

    def check(self, loss: Any, policy: list[str]) -> None:
        """Warn about combinations known to be unwise: DiffAugment as well, or a heuristic that the
        loss's scores cannot feed (`loss`: a losses.GANLoss, not imported: config.check imports this module)."""
        if self.enabled and policy:
            warn(f"ADA (train.ada.mode={self.mode}) together with DiffAugment (train.augment={list(policy)}): D's "
                 "images are augmented twice, and DiffAugment's transforms (applied to every image) leak into "
                 "what G learns to make where ADA's (with p < 1) do not. Use one: train.augment=[] for ADA.")
        if self.adaptive and loss.boundary != 0:  # the loss option declares where its line between real and fake is
            warn("ADA's heuristic r_t = E[sign(D(real))] takes 0 as the line between D's real and fake scores (BCE, "
                 "hinge); this loss's scores have no such line (a Wasserstein critic's have no fixed zero; least "
                 "squares puts it at 0.5), so p will not follow overfitting. Use train.ada.mode=fixed with a chosen "
                 "train.ada.p, or a BCE-family or hinge loss.")

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Images as D should see them: through the pipeline at the current p (unchanged in mode none)."""
        return pipeline(images, self.p, self.transforms) if self.enabled else images

    def observe(self, real_scores: torch.Tensor) -> None:
        """Count D's raw scores (B,) of augmented real images into r_t (adaptive mode)."""
        if self.adaptive:
            with torch.no_grad():
                self.signs += torch.stack([real_scores.sign().sum(), real_scores.new_tensor(real_scores.numel())])

    def adjust(self, step: int) -> None:
        """Every `interval` steps (by the step number, so a resumed run keeps the schedule), move p
        towards the target by the reference's rule, from every rank's counts."""
        if not self.adaptive or step % self.interval:
            return
        signs = self.signs.clone()
        if self.group.enabled:
            dist.all_reduce(signs)  # every rank gets the same totals, hence the same p
        r_t = signs[0] / signs[1].clamp(min=1)
        self.p = (self.p + torch.sign(r_t - self.target) * signs[1] / (self.kimg * 1000)).clamp(0.0, 1.0)
        self.signs.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"p": self.p.detach().clone(), "signs": self.signs.detach().clone()}

    def load_state_dict(self, state: Optional[dict[str, torch.Tensor]]) -> None:
        """p and the heuristic's counts as saved (a checkpoint from before ADA has none: kept as built)."""
        if not state:
            return
        p, signs = state["p"], state["signs"]
        if p.shape != () or signs.shape != (2,) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"ADA's state holds p of shape {tuple(p.shape)} and counts of shape {tuple(signs.shape)}")
        self.p = p.to(self.p.device, self.p.dtype).clone()
        self.signs = signs.to(self.signs.device, self.signs.dtype).clone()

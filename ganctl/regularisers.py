"""Regularisers: every term of the GAN's objective beyond D's and G's losses, each a small unit.

A loss option lists the units it uses under `loss.regularisers`, one `_target_` node per unit, by a
name of its own (the name is the statistic it reports, `reg/<name>`):

    regularisers:
      r1: {_target_: ganctl.regularisers.R1, gamma: 0.1, every: 16}
      r2: {_target_: ganctl.regularisers.R2, gamma: 0.1, every: 16}

A unit knows its network (D's update or G's), its weight and lazy interval (`every`: evaluated at
every k-th update, weighted by k, as StyleGAN2 does), whether it is due, the term itself, whether it
differentiates through a gradient (a double backward: torch.compile cannot, BatchNorm spoils
per-image gradients), its own state (path length's running mean) and what it reports. The GAN's
step loops over them. A user's own unit subclasses `Regulariser` in a module they trust:
`ganctl --trust my_module train +loss.regularisers.mine._target_=my_module.MyPenalty`.

Which images a D-side term sees: the same as D's loss -- through DiffAugment (train.augment) and
ADA, at the images' positions before augmentation (the gradient is taken there), as
stylegan2-ada-pytorch takes R1. Before the units, the gradient penalty's interpolates skipped
DiffAugment (ADA only); `GradientPenalty(diffaugment=false)` keeps that, and checkpoints from then
are upgraded to it.

Before the units, a loss option set these as flat keys (`loss.r1_gamma`, ...). They stay as
shorthands on the command line and are upgraded in old checkpoints: `config.LEGACY_LOSS_KEYS` says
what each one became.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from ganctl import distributed
from ganctl.errors import GanctlError
from ganctl.models.capabilities import StyleGenerator


# --------------------------------------------------------------------------- the terms, as functions

def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017): (||grad_x D(x)||_2 - 1)^2 on random interpolates
    x = a * real + (1 - a) * fake, a ~ U(0, 1) per image, averaged over the batch.

    The graph of the gradient is kept (create_graph) so the penalty trains D: a double backward.
    The gradient and its norm are fp32 whatever precision the critic runs at (the interpolates are).
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    interpolates = torch.lerp(fake.detach(), real.detach(), alpha).requires_grad_(True)  # (B, C, H, W)
    scores = critic(interpolates).float()
    (gradients,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    return ((gradients.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def squared_gradient_norm(critic: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The zero-centred gradient penalties (Mescheder et al. 2018): ||grad_x D(x)||^2 at the images,
    averaged over the batch -- R1 at real images, R2 at fakes. The weight is gamma / 2, as StyleGAN2
    applies it; `critic` sees what D sees (augmented images), the gradient is taken at the images
    before augmentation, in fp32, its graph kept to train D."""
    images = images.detach().float().requires_grad_(True)  # (B, C, H, W)
    scores = critic(images).float()
    (gradients,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return gradients.square().sum(dim=(1, 2, 3)).mean()


def squared_score_change(critic: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, sigma: float) -> torch.Tensor:
    """The finite-difference form of ||grad_x D(x)||^2, without a double backward (Seaweed-APT's
    "approximated R1", Lin et al. 2025): ((D(x + sigma e) - D(x)) / sigma)^2 for Gaussian e ~ N(0, I),
    averaged over the batch. For a D that is smooth at the scale sigma, D(x + sigma e) - D(x) is about
    sigma <grad D(x), e>, whose square has mean sigma^2 ||grad D(x)||^2: so the same gamma means the same
    as for the exact penalty (Seaweed-APT weights the squared change itself). `critic` scores the images
    as given (already as D sees them), in fp32: at bf16 the rounding of D's scores (about 2^-8 of them) is
    larger than the change a small sigma makes. Both passes train D."""
    images = images.detach().float()  # (B, C, H, W)
    moved = images + sigma * torch.randn_like(images)
    change = critic(moved).float() - critic(images).float()  # (B,)
    return (change / sigma).square().mean()


def path_lengths(images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's path lengths (Karras et al. 2020): per image, ||J_w^T y|| for a random image-space
    direction y ~ N(0, 1) / sqrt(H * W), averaged over G's layers' styles `styles` (B, L, W) that made
    `images` (B, C, H, W). Regularising them towards their running mean makes a step in W change the
    image by about the same amount everywhere. The graph is kept: a double backward through G."""
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (gradients,) = torch.autograd.grad((images * noise).sum(), styles, create_graph=True)
    return gradients.float().square().sum(dim=2).mean(dim=1).sqrt()  # (B,), fp32 whatever precision G runs at


@torch.no_grad()
def clip_weights(critic: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter into [-clip, clip] after its step."""
    parameters = list(critic.parameters())
    torch._foreach_clamp_min_(parameters, -clip)
    torch._foreach_clamp_max_(parameters, clip)



# --------------------------------------------------------------------------- the units


@dataclass
class CriticInputs:
    """What a D-side term works on in one critic update."""

    real: torch.Tensor  # (B, C, H, W) the update's real images
    fake: torch.Tensor  # (B, C, H, W) its fakes
    scores: Callable[[torch.Tensor], torch.Tensor]  # D's raw scores (B,) of images, seen as D sees them (augmented, labelled)
    unaugmented_scores: Callable[[torch.Tensor], torch.Tensor]  # the same through ADA only (the old gradient penalty's view)
    view: Callable[[torch.Tensor], torch.Tensor]  # the images as D sees them: one draw of its augmentation
    seen_scores: Callable[[torch.Tensor], torch.Tensor]  # D's raw scores (B,) of images already seen through `view`, in fp32


@dataclass
class GeneratorInputs:
    """What a G-side term works on in one generator update."""

    latents: torch.Tensor  # (B, latent_dim) the step's latents
    labels: Optional[torch.Tensor]  # their classes (B,), conditional
    images_and_styles: Callable[[torch.Tensor, Optional[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]  # G with its W
    group: distributed.Group  # the ranks, for statistics every rank must share
    micro_batch: Optional[int] = None  # the most images one pass may take (train.batch_gpu); None: all of them


def non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"{name} must be 0 (off) or positive, got {value!r}")
    return value


def at_least_one(name: str, value: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a whole number, at least 1; got {value!r}")
    return value


class Regulariser:
    """A term of one network's loss: `weight * every * penalty(inputs)` at the updates it is due."""

    network: ClassVar[str] = "discriminator"  # whose update it joins: "discriminator" or "generator"
    double_backward: ClassVar[bool] = False  # it differentiates through a gradient of the network
    per_image: ClassVar[bool] = False  # it needs each image's score to depend on that image alone (no BatchNorm)
    smoothing: ClassVar[bool] = False  # it keeps D smooth: a collapse guard's rollback strengthens it (`factor`)
    title: ClassVar[str] = "a regulariser"  # for messages

    def __init__(self, weight: float = 0.0, every: int = 1) -> None:
        self.weight, self.every = float(non_negative("weight", weight)), at_least_one("every", every)
        self.name = ""  # its name in loss.regularisers: set by the loss that lists it
        self.latest = torch.zeros(())  # its latest evaluation (lazy units report the last one), on the device
        self.factor = 1.0  # times its configured weight: set by a collapse guard (GAN.retune), else 1

    @property
    def statistic(self) -> str:
        """The name it reports under among the step's statistics."""
        return f"reg/{self.name}"

    @property
    def active(self) -> bool:
        return self.weight > 0

    @property
    def reports(self) -> bool:
        """Whether it has a value to report among the step's statistics."""
        return self.active

    @property
    def scale(self) -> float:
        """Its factor in the loss: the weight, times the interval for a lazy one (times a guard's factor)."""
        return self.weight * self.every * self.factor

    def due(self, update: int) -> bool:
        """Whether update number `update` (0, 1, ... of its network) adds the term."""
        return self.active and update % self.every == 0

    def set_weight(self, value: float) -> None:
        """Its weight from now on (a schedule's value for this step: train.schedules.<its name>)."""
        self.weight = float(value)

    def penalty(self, inputs: Any) -> torch.Tensor:
        """The term before its weight: a scalar with its graph."""
        raise NotImplementedError

    def loss(self, inputs: Any) -> torch.Tensor:
        """The weighted term to add to the network's loss; keeps its value as `latest`."""
        value = self.penalty(inputs)
        self.latest = value.detach()
        return self.scale * value

    def after_update(self, network: nn.Module) -> None:
        """Anything it does to the network after each of its updates (weight clipping)."""

    def check(self, network: nn.Module) -> None:
        """Refuse a network it cannot regularise (one clear message)."""
        if self.active and self.per_image and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules()):
            raise GanctlError(
                f"{self.title[0].upper()}{self.title[1:]} (loss.regularisers.{self.name}) needs a critic "
                "without BatchNorm: it penalises each image's own gradient, and BatchNorm makes every score depend on the "
                "whole batch (Gulrajani et al. 2017). Use a critic without it: model=dcgan_r1, or "
                "model.discriminator.norm=none (or layer) for the DCGAN critic, model.discriminator.batch_norm_momentum=null "
                "for the conv critic, or model=wgangp for WGAN-GP."
            )

    def to(self, device: torch.device) -> "Regulariser":
        """Its state on the training device."""
        self.latest = self.latest.to(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Its state as saved (a unit without state ignores it)."""


class R1(Regulariser):
    """R1 (Mescheder et al. 2018): gamma/2 ||grad D(x)||^2 at real images, the usual choice with the
    non-saturating loss and StyleGAN2's (lazy: every 16 critic updates).

    `sigma`: null takes the exact gradient (a double backward, so D stays eager under torch.compile);
    a number approximates its square by finite differences at that noise scale (`squared_score_change`:
    two forward passes and an ordinary backward, so D compiles). The approximation takes the gradient at
    the images as D sees them (after one draw of the augmentation), the exact form at the images before it."""

    per_image = smoothing = True
    title = "R1"

    def __init__(self, gamma: float = 0.0, every: int = 1, sigma: Optional[float] = None) -> None:
        super().__init__(non_negative("gamma", gamma) / 2, every)
        self.gamma = gamma
        if sigma is not None and not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0):
            raise ValueError(f"sigma must be a positive noise scale (e.g. 0.01), or null for the exact gradient; got {sigma!r}")
        self.sigma = None if sigma is None else float(sigma)

    @property
    def double_backward(self) -> bool:  # (a class constant for the other units: here the setting decides)
        return self.sigma is None

    def set_weight(self, value: float) -> None:
        """gamma from now on (a schedule's value: train.schedules.<its name> schedules gamma, as R3GAN's)."""
        self.gamma, self.weight = float(value), float(value) / 2

    @property
    def scale(self) -> float:
        return self.gamma / 2 * self.every * self.factor  # (in this order: the same bits as before the units)

    def squared_gradient(self, inputs: CriticInputs, images: torch.Tensor) -> torch.Tensor:
        """||grad D||^2 at `images` as D sees them, averaged over the batch: exact, or by finite differences."""
        if self.sigma is None:
            return squared_gradient_norm(inputs.scores, images)
        return squared_score_change(inputs.seen_scores, inputs.view(images), self.sigma)

    def penalty(self, inputs: CriticInputs) -> torch.Tensor:
        return self.squared_gradient(inputs, inputs.real)


class R2(R1):
    """R2: gamma/2 ||grad D(G(z))||^2 at the fakes D just scored; with R1 the symmetric form (R3GAN)."""

    title = "R2"

    def penalty(self, inputs: CriticInputs) -> torch.Tensor:
        return self.squared_gradient(inputs, inputs.fake)


class GradientPenalty(Regulariser):
    """WGAN-GP's (Gulrajani et al. 2017): weight x (||grad D||_2 - 1)^2 at random interpolates of real
    and fake images (of the same class, with that label). `diffaugment`: false shows D the
    interpolates through ADA only, as ganctl did before the units."""

    double_backward = per_image = smoothing = True
    title = "the gradient penalty"

    def __init__(self, weight: float = 0.0, every: int = 1, diffaugment: bool = True) -> None:
        super().__init__(weight, every)
        self.diffaugment = diffaugment

    def penalty(self, inputs: CriticInputs) -> torch.Tensor:
        return gradient_penalty(inputs.scores if self.diffaugment else inputs.unaugmented_scores, inputs.real, inputs.fake)


class WeightClip(Regulariser):
    """WGAN's Lipschitz constraint (Arjovsky et al. 2017): every critic weight clamped into
    [-bound, bound] after each critic update. No term in the loss; nothing to report."""

    title = "weight clipping"

    def __init__(self, bound: float = 0.0) -> None:
        super().__init__(non_negative("bound", bound))
        self.bound = bound

    @property
    def reports(self) -> bool:
        return False

    def set_weight(self, value: float) -> None:
        self.bound = self.weight = float(value)

    def due(self, update: int) -> bool:
        return False

    def after_update(self, network: nn.Module) -> None:
        if self.active:
            clip_weights(network, self.bound)


class PathLength(Regulariser):
    """StyleGAN2's path-length regularisation of G (Karras et al. 2020): weight x (length - running
    mean)^2 on the first 1/batch_shrink of the step's latents, the mean moving towards each batch's
    lengths at rate `decay` (lazy: every 4 generator steps). Reports the batch's mean length. In
    micro-batches (train.batch_gpu) it takes at most one micro-batch of them, in one pass."""

    network = "generator"
    double_backward = True
    title = "path-length regularisation"

    def __init__(self, weight: float = 0.0, every: int = 4, decay: float = 0.01, batch_shrink: int = 2) -> None:
        super().__init__(weight, every)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay, self.batch_shrink = decay, at_least_one("batch_shrink", batch_shrink)
        self.mean = torch.zeros(())  # the running mean of the path lengths (the checkpoint keeps it)

    def check(self, network: nn.Module) -> None:
        if self.active and not isinstance(network, StyleGenerator):
            raise GanctlError(
                f"loss.regularisers.{self.name} (path length) regularises a generator's mapping from W "
                f"to images, but {type(network).__name__} has no W space: use model=stylegan2, or set its weight to 0."
            )

    def penalty(self, inputs: GeneratorInputs) -> torch.Tensor:
        size = min(max(1, inputs.latents.shape[0] // self.batch_shrink), inputs.micro_batch or inputs.latents.shape[0])
        labels = inputs.labels[:size] if inputs.labels is not None else None
        images, styles = inputs.images_and_styles(inputs.latents[:size], labels)
        lengths = path_lengths(images.float(), styles)  # (size,)
        batch_mean = lengths.mean()
        if inputs.group.enabled:  # every rank's running mean follows all ranks' lengths, so the ranks keep one
            batch_mean = batch_mean + (distributed.mean_over_ranks(batch_mean, inputs.group) - batch_mean).detach()
        mean = self.mean.lerp(batch_mean, self.decay)  # as the reference: not detached
        self.mean.copy_(mean.detach())
        self.reported = batch_mean.detach()
        return (lengths - mean).square().mean()

    def loss(self, inputs: GeneratorInputs) -> torch.Tensor:
        value = self.scale * self.penalty(inputs)
        self.latest = self.reported  # the mean path length, not the penalty
        return value

    def to(self, device: torch.device) -> "PathLength":
        self.mean = self.mean.to(device)
        return super().to(device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state.get("mean") is not None:
            self.mean.copy_(state["mean"])

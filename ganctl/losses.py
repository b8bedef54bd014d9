"""GAN losses as small pure functions of discriminator scores.

Sign convention, stated once: a discriminator returns raw scores (logits, no sigmoid), one per
image, shape (B,); higher means "more real". Every discriminator loss takes (real_scores,
fake_scores) and every generator loss takes fake_scores; both return a scalar to minimise. A
relativistic generator loss also takes `real_scores`, D's scores of the step's real images.

Penalties and constraints that need the critic itself (the WGAN-GP gradient penalty, R1, WGAN's weight
clipping), and StyleGAN2's path lengths of G, are separate functions below, as is ACGAN's classification loss on an auxiliary
classifier's class logits (a class-conditional critic's second output). `GANLoss` is a loss option made concrete: the pair of
functions and how the critic is trained with them (critic steps, penalty, clipping) and watched
(what to log). It is the one place that reads those keys of the config; the GAN's step follows it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl.registry import build
from ganctl.console import warn
from ganctl.errors import GanctlError


def bce_targets(
    scores: torch.Tensor, target: float, label_noise: float, flip_prob: float, other_target: float
) -> torch.Tensor:
    """Per-image BCE targets: `target`, jittered by up to `label_noise` towards the other class and
    kept inside [0, 1]; with probability `flip_prob` an image gets the other class's target instead."""
    targets = torch.full_like(scores, target)
    if label_noise > 0:
        toward_other = 1.0 if other_target > target else -1.0
        targets = (targets + toward_other * label_noise * torch.rand_like(scores)).clamp_(0.0, 1.0)
    if flip_prob > 0:
        targets = torch.where(torch.rand_like(scores) < flip_prob, torch.full_like(scores, other_target), targets)
    return targets


def bce_discriminator_loss(
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    real_target: float = 1.0,
    label_noise: float = 0.0,
    flip_prob: float = 0.0,
) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) on logits, with the classic label tricks for D:

    real_target < 1 is one-sided label smoothing (fakes keep target 0); label_noise jitters every
    target towards the other class by up to that much -- real in [real_target - noise, real_target],
    fake in [0, noise] -- so targets never leave [0, 1] (noise added the other way, above 1 and below
    0, gives negative "losses"); flip_prob swaps an image's target with the other class's.
    """
    real_targets = bce_targets(real_scores, real_target, label_noise, flip_prob, other_target=0.0)
    fake_targets = bce_targets(fake_scores, 0.0, label_noise, flip_prob, other_target=real_target)
    real = F.binary_cross_entropy_with_logits(real_scores, real_targets)
    fake = F.binary_cross_entropy_with_logits(fake_scores, fake_targets)
    return real + fake


def bce_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: maximise log D(G(z)), i.e. minimise -log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))


def hinge_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z))): D stops pushing scores once they clear the margin."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-D(G(z)): G raises its fakes' scores."""
    return -fake_scores.mean()


def relativistic_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """RpGAN, the relativistic pairing loss (Jolicoeur-Martineau 2018; R3GAN, Huang et al. 2024):
    softplus(D(G(z)) - D(x)) over pairs of a real and a fake image. D ranks each real image above its
    fake instead of both against a fixed boundary."""
    return F.softplus(fake_scores - real_scores).mean()


def relativistic_generator_loss(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
    """softplus(D(x) - D(G(z))): G raises each fake above the real image it is paired with."""
    return F.softplus(real_scores - fake_scores).mean()


def minimax_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The original saturating generator loss: minimise log(1 - D(G(z))) (Goodfellow et al. 2014).

    Its gradient vanishes when D confidently rejects the fakes, which is why `bce` (non-saturating)
    is the default; this one is here for comparison. log(1 - sigmoid(s)) = -softplus(s).
    """
    return -F.softplus(fake_scores).mean()


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Least squares (Mao et al. 2017): 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2 on raw scores."""
    return 0.5 * ((real_scores - 1.0) ** 2).mean() + 0.5 * (fake_scores**2).mean()


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least squares: 1/2 (D(G(z)) - 1)^2."""
    return 0.5 * ((fake_scores - 1.0) ** 2).mean()


def wasserstein_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN critic loss (Arjovsky et al. 2017): D(G(z)) - D(x). Minimising it maximises
    mean D(x) - mean D(G(z)), the critic's estimate of the Wasserstein distance (up to a constant),
    which is only meaningful while D is kept Lipschitz: by weight clipping or a gradient penalty."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-D(G(z)): G raises the critic's scores of its fakes."""
    return -fake_scores.mean()


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


def path_lengths(images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's path lengths (Karras et al. 2020): per image, ||J_w^T y|| for a random image-space
    direction y ~ N(0, 1) / sqrt(H * W), averaged over G's layers' styles `styles` (B, L, W) that made
    `images` (B, C, H, W). Regularising them towards their running mean makes a step in W change the
    image by about the same amount everywhere. The graph is kept: a double backward through G."""
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (gradients,) = torch.autograd.grad((images * noise).sum(), styles, create_graph=True)
    return gradients.float().square().sum(dim=2).mean(dim=1).sqrt()  # (B,), fp32 whatever precision G runs at


def classification_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ACGAN's auxiliary classification loss (Odena et al. 2017): the cross-entropy of D's class
    logits (B, K) against the labels (B,) -- minus the log-likelihood of the right class, L_C. Both
    networks minimise it: D on real and fake images (it learns to name the class), G on its fakes (it
    learns to make images of the class it was asked for)."""
    return F.cross_entropy(class_logits, labels)


@torch.no_grad()
def clip_weights(critic: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter into [-clip, clip] after its step."""
    parameters = list(critic.parameters())
    torch._foreach_clamp_min_(parameters, -clip)
    torch._foreach_clamp_max_(parameters, clip)


# --------------------------------------------------------------------------- a loss option, made concrete

REPORTS = ("probability", "wasserstein", "scores")
LAZY_KEYS = ("r1_gamma", "r1_every", "r2_gamma", "r2_every", "path_length", "path_length_every", "path_length_decay", "path_length_batch_shrink")
MOMENTUM_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.NAdam", "torch.optim.RAdam", "torch.optim.Adamax")


@dataclass(frozen=True)
class GANLoss:
    """D's and G's loss functions, and how the critic is trained and reported (conf/loss/*.yaml)."""

    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: Callable[..., torch.Tensor]  # (fake_scores), or (fake_scores, real_scores) for a relativistic loss
    critic_steps: int = 1  # D updates per G update
    gradient_penalty: float = 0.0  # weight of the WGAN-GP penalty; 0 = none
    clip: float = 0.0  # WGAN weight clipping bound; 0 = none
    report: str = "scores"  # how D's scores are logged: probability | wasserstein | scores
    r1_gamma: float = 0.0  # R1 on real images, weight gamma / 2; 0 = none
    r1_every: int = 1  # lazy R1: every k-th critic update, its weight times k (StyleGAN2: 16)
    r2_gamma: float = 0.0  # R2 on fake images, weight gamma / 2; 0 = none
    r2_every: int = 1  # lazy R2: every k-th critic update, its weight times k
    path_length: float = 0.0  # StyleGAN2's path-length regularisation of G, its weight; 0 = none
    path_length_every: int = 4  # lazy: every k-th generator step, its weight times k
    path_length_decay: float = 0.01  # how fast the running mean of the path lengths follows them
    path_length_batch_shrink: int = 2  # its images: the batch's first 1/k latents

    @classmethod
    def from_config(cls, node: DictConfig) -> "GANLoss":
        """The loss option, its values checked; a GanctlError names the first bad one."""
        if node.critic_steps < 1:
            raise GanctlError(f"loss.critic_steps must be at least 1, got {node.critic_steps}.")
        lazy = {key: OmegaConf.select(node, key, default=getattr(cls, key)) for key in LAZY_KEYS}
        for key in ("r1_every", "r2_every", "path_length_every", "path_length_batch_shrink"):
            if lazy[key] < 1:
                raise GanctlError(f"loss.{key} must be at least 1, got {lazy[key]}.")
        if not 0.0 < lazy["path_length_decay"] <= 1.0:
            raise GanctlError(f"loss.path_length_decay must be in (0, 1], got {lazy['path_length_decay']}.")
        for key, value in [("gradient_penalty", node.gradient_penalty), ("clip", node.clip),
                           ("r1_gamma", lazy["r1_gamma"]), ("r2_gamma", lazy["r2_gamma"]), ("path_length", lazy["path_length"])]:
            if value < 0:
                raise GanctlError(f"loss.{key} must be 0 (off) or positive, got {value}.")
        if node.report not in REPORTS:
            raise GanctlError(f"loss.report must be one of {', '.join(REPORTS)}, got {node.report!r}.")
        labels = OmegaConf.select(node, "discriminator", default={})
        for key in ("real_target", "label_noise", "flip_prob"):
            value = labels.get(key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise GanctlError(f"loss.discriminator.{key} must be in [0.0, 1.0], got {value}.")
        return cls(
            discriminator=build(node.discriminator, "loss.discriminator"),
            generator=build(node.generator, "loss.generator"),
            critic_steps=node.critic_steps,
            gradient_penalty=node.gradient_penalty,
            clip=node.clip,
            report=node.report,
            **lazy,
        )

    @property
    def double_backward(self) -> str:
        """What makes D's update differentiate through a gradient of D (torch.compile cannot), or ""."""
        return " and ".join(name for name, on in (("the gradient penalty", self.gradient_penalty > 0),
                                                  ("R1", self.r1_gamma > 0), ("R2", self.r2_gamma > 0)) if on)

    @cached_property
    def relativistic(self) -> bool:
        """Whether G's loss takes `real_scores` too (read once, not every step)."""
        try:
            return "real_scores" in inspect.signature(self.generator).parameters
        except (TypeError, ValueError):  # a callable without a signature to read: G's loss of fakes alone
            return False

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
        """G's loss on D's scores of its fakes; a relativistic loss also sees D's scores of the real images."""
        if self.relativistic:
            return self.generator(fake_scores, real_scores=real_scores)
        return self.generator(fake_scores)

    def r1_due(self, critic_update: int) -> bool:
        """Whether the critic update numbered `critic_update` (0, 1, ...) adds R1."""
        return self.r1_gamma > 0 and critic_update % self.r1_every == 0

    def r2_due(self, critic_update: int) -> bool:
        """Whether the critic update numbered `critic_update` (0, 1, ...) adds R2."""
        return self.r2_gamma > 0 and critic_update % self.r2_every == 0

    def path_length_due(self, step: int) -> bool:
        """Whether generator step `step` (1, 2, ...) adds the path-length penalty (the first does)."""
        return self.path_length > 0 and (step - 1) % self.path_length_every == 0

    def check_generator(self, generator: nn.Module) -> None:
        """Refuse regularisers that the generator has no place for."""
        if self.path_length > 0 and not hasattr(generator, "synthesis"):
            raise GanctlError(
                f"loss.path_length regularises a generator's mapping from W to images, but {type(generator).__name__} "
                "has no W space: use model=stylegan2, or set loss.path_length=0."
            )

    def check_critic(self, critic: nn.Module, optimizer: Optional[DictConfig] = None) -> None:
        """Refuse pairs of this loss and a critic known to be wrong; warn about ones known to be
        unwise (`optimizer`: the critic's optimizer config, e.g. cfg.optimizer.d)."""
        if (self.gradient_penalty > 0 or self.r1_gamma > 0 or self.r2_gamma > 0) and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules()
        ):
            raise GanctlError(
                "A gradient penalty needs a critic without BatchNorm: the penalty is on each image's own "
                "gradient, and BatchNorm makes every score depend on the whole batch (Gulrajani et al. 2017). "
                "Use model=wgangp, or set model.discriminator.norm=layer (or none) for the DCGAN critic, or "
                "model.discriminator.batch_norm_momentum=null for the conv critic."
            )
        if self.report == "wasserstein" and isinstance(list(critic.modules())[-1], nn.Sigmoid):
            raise GanctlError(
                "A Wasserstein critic must output unbounded scores, but this discriminator ends in a sigmoid. "
                "Remove the sigmoid, or use a BCE-family loss (loss=bce), which applies the sigmoid itself."
            )
        if self.report == "wasserstein" and not (self.clip > 0 or self.gradient_penalty > 0):
            warn("A Wasserstein loss with neither weight clipping (loss.clip) nor a gradient penalty "
                 "(loss.gradient_penalty): nothing keeps the critic Lipschitz, and its scores can grow without bound.")
        target = OmegaConf.select(optimizer, "_target_", default="") if optimizer is not None else ""
        momentum = (OmegaConf.select(optimizer, "momentum", default=0) or 0) if optimizer is not None else 0
        if self.clip > 0 and (target in MOMENTUM_OPTIMIZERS or momentum > 0):
            warn(f"Weight clipping with a momentum optimizer ({target.rsplit('.', 1)[-1]}) for the critic: "
                 "the WGAN paper found it unstable and used RMSprop (optimizer=wgan).")
        if self.clip > 0 and self.gradient_penalty > 0:
            warn("Both weight clipping and a gradient penalty: WGAN-GP replaces clipping with the penalty; "
                 "set loss.clip=0 (or use loss=wgangp).")

    def scalars(self, means: dict[str, float]) -> dict[str, float]:
        """What to log, from the means of the GAN step's STATISTICS (ganctl.gan) over a log interval: the losses, and D's view of
        real and fake images as this loss reads it (probabilities for the BCE family; for Wasserstein
        losses the distance estimate mean D(real) - mean D(fake), and the penalty term)."""
        scalars = {"loss/d": means["d_loss"], "loss/g": means["g_loss"]}
        if self.r1_gamma:  # the latest lazy evaluation's value
            scalars["r1_penalty"] = means["r1_penalty"]
        if self.r2_gamma:
            scalars["r2_penalty"] = means["r2_penalty"]
        if self.path_length:
            scalars["path_length"] = means["path_length"]
        if self.report == "probability":
            return {**scalars, "d/real": means["real_probability"], "d/fake": means["fake_probability"]}
        scalars.update({"d/real": means["real_score"], "d/fake": means["fake_score"]})
        if self.report == "wasserstein":
            scalars["wasserstein"] = means["real_score"] - means["fake_score"]
        if self.gradient_penalty:
            scalars["gradient_penalty"] = means["penalty"]
        return scalars

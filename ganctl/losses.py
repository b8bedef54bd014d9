"""GAN losses as small pure functions of discriminator scores.

Sign convention, stated once: a discriminator returns raw scores (logits, no sigmoid), one per
image, shape (B,); higher means "more real". Every discriminator loss takes (real_scores,
fake_scores) and every generator loss takes fake_scores; both return a scalar to minimise. A
relativistic generator loss also takes `real_scores`, D's scores of the step's real images.

Penalties and constraints that need the critic itself (the WGAN-GP gradient penalty, R1, R2, WGAN's
weight clipping) and StyleGAN2's path lengths of G are regularisers (`ganctl.regularisers`). ACGAN's
classification loss on an auxiliary classifier's class logits (a class-conditional critic's second
output) is below. `GANLoss` is a loss option made concrete: the pair of functions, how the critic is
trained with them (critic steps, regularisers) and how its scores are read; the GAN's step follows it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl.config import LossSettings
from ganctl.console import warn
from ganctl.errors import GanctlError
from ganctl.registry import build
from ganctl.regularisers import GradientPenalty, Regulariser, WeightClip


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


def classification_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ACGAN's auxiliary classification loss (Odena et al. 2017): the cross-entropy of D's class
    logits (B, K) against the labels (B,) -- minus the log-likelihood of the right class, L_C. Both
    networks minimise it: D on real and fake images (it learns to name the class), G on its fakes (it
    learns to make images of the class it was asked for)."""
    return F.cross_entropy(class_logits, labels)


# --------------------------------------------------------------------------- a loss option, made concrete

MOMENTUM_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.NAdam", "torch.optim.RAdam", "torch.optim.Adamax")


@dataclass(frozen=True)
class GANLoss:
    """A loss option made concrete (conf/loss/*.yaml, its settings `config.LossSettings`): D's and G's
    loss functions, how many critic updates a step makes, how D's scores are reported, and the
    regularisers, in the order the option lists them (`ganctl.regularisers`)."""

    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator: Callable[..., torch.Tensor]  # (fake_scores), or (fake_scores, real_scores=...) when relativistic
    critic_steps: int
    report: str  # probability | wasserstein | scores
    relativistic: bool  # G's loss also takes D's scores of the real images (RpGAN)
    rescore_reals: bool  # ... scored again by the updated D in G's update (R3GAN), not D's scores from its own update
    boundary: Optional[float]  # D's score on the line between real and fake (None: no such line)
    regularisers: tuple[Regulariser, ...]

    @classmethod
    def from_config(cls, node: DictConfig) -> "GANLoss":
        """The loss option, its values checked; a GanctlError names the first bad one."""
        LossSettings.check(node)
        generator = build(node.generator, "loss.generator")
        check_relativistic(generator, node.relativistic)
        units = []
        for name, unit_node in node.regularisers.items():
            unit = build(unit_node, f"loss.regularisers.{name}")
            if not isinstance(unit, Regulariser):
                raise GanctlError(f"loss.regularisers.{name} must build a ganctl.regularisers.Regulariser, "
                                  f"got {type(unit).__name__}.")
            unit.name = name
            units.append(unit)
        return cls(discriminator=build(node.discriminator, "loss.discriminator"), generator=generator,
                   critic_steps=node.critic_steps, report=node.report, relativistic=node.relativistic,
                   rescore_reals=node.rescore_reals, boundary=node.boundary, regularisers=tuple(units))

    def terms(self, network: str) -> list[Regulariser]:
        """The regularisers of one network's update ("discriminator" or "generator") that are on."""
        return [unit for unit in self.regularisers if unit.network == network and unit.active]

    def double_backward(self, network: str) -> str:
        """What makes the network's update differentiate through its own gradient (torch.compile
        cannot), or ""."""
        return " and ".join(unit.title for unit in self.terms(network) if unit.double_backward)

    def active(self, kind: type) -> bool:
        """Whether a regulariser of this kind is on."""
        return any(isinstance(unit, kind) for unit in self.terms(kind.network))

    def generator_loss(self, fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
        """G's loss on D's scores of its fakes; a relativistic loss also sees D's scores of the real images."""
        if self.relativistic:
            return self.generator(fake_scores, real_scores=real_scores)
        return self.generator(fake_scores)

    def check_generator(self, generator: nn.Module) -> None:
        """Refuse regularisers that the generator has no place for."""
        for unit in self.terms("generator"):
            unit.check(generator)

    def check_critic(self, critic: nn.Module, optimizer: Optional[DictConfig] = None) -> None:
        """Refuse pairs of this loss and a critic known to be wrong; warn about ones known to be
        unwise (`optimizer`: the critic's optimizer config, e.g. cfg.optimizer.d)."""
        for unit in self.terms("discriminator"):
            unit.check(critic)
        if self.report == "wasserstein" and isinstance(list(critic.modules())[-1], nn.Sigmoid):
            raise GanctlError(
                "A Wasserstein critic must output unbounded scores, but this discriminator ends in a sigmoid. "
                "Remove the sigmoid, or use a BCE-family loss (loss=bce), which applies the sigmoid itself."
            )
        clipped, penalised = self.active(WeightClip), self.active(GradientPenalty)
        if self.report == "wasserstein" and not (clipped or penalised):
            warn("A Wasserstein loss with neither weight clipping (loss.clip) nor a gradient penalty "
                 "(loss.gradient_penalty): nothing keeps the critic Lipschitz, and its scores can grow without bound.")
        target = OmegaConf.select(optimizer, "_target_", default="") if optimizer is not None else ""
        momentum = (OmegaConf.select(optimizer, "momentum", default=0) or 0) if optimizer is not None else 0
        if clipped and (target in MOMENTUM_OPTIMIZERS or momentum > 0):
            warn(f"Weight clipping with a momentum optimizer ({target.rsplit('.', 1)[-1]}) for the critic: "
                 "the WGAN paper found it unstable and used RMSprop (optimizer=wgan).")
        if clipped and penalised:
            warn("Both weight clipping and a gradient penalty: WGAN-GP replaces clipping with the penalty; "
                 "set loss.clip=0 (or use loss=wgangp).")


def check_relativistic(generator_loss: Callable[..., torch.Tensor], relativistic: bool) -> None:
    """A loss option's `relativistic` must say what its G loss takes (D's scores of the real images or not)."""
    try:
        parameters = inspect.signature(generator_loss).parameters
    except (TypeError, ValueError):  # a callable without a signature to read: trust the option
        return
    takes = "real_scores" in parameters
    needs = takes and parameters["real_scores"].default is inspect.Parameter.empty
    if relativistic and not takes:
        raise GanctlError("loss.relativistic=true, but the loss.generator function takes no real_scores: "
                          "set loss.relativistic=false, or use a relativistic G loss (loss=rpgan).")
    if needs and not relativistic:
        raise GanctlError("The loss.generator function needs D's scores of the real images (real_scores): "
                          "set loss.relativistic=true (loss=rpgan does).")

"""GAN losses as small pure functions of discriminator scores.

Sign convention, stated once: a discriminator returns raw scores (logits, no sigmoid), one per
image, shape (B,); higher means "more real". Every discriminator loss takes (real_scores,
fake_scores) and every generator loss takes fake_scores; both return a scalar to minimise.

Penalties and constraints that need the critic itself (the WGAN-GP gradient penalty, WGAN's weight
clipping) are separate functions below; the training loop applies them when the loss config asks.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


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


@torch.no_grad()
def clip_weights(critic: nn.Module, clip: float) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter into [-clip, clip] after its step."""
    parameters = list(critic.parameters())
    torch._foreach_clamp_min_(parameters, -clip)
    torch._foreach_clamp_max_(parameters, clip)

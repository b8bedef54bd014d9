"""GAN losses as small pure functions of discriminator scores.

Sign convention, stated once: a discriminator returns raw scores (logits, no sigmoid), one per
image, shape (B,); higher means "more real". Every discriminator loss takes (real_scores,
fake_scores) and every generator loss takes fake_scores; both return a scalar to minimise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) on logits; real_target < 1 is one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_scores, torch.full_like(real_scores, real_target))
    fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
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

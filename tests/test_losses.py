"""Loss values against hand-computed numbers, and gradient signs."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from ganctl.losses import bce_discriminator_loss, bce_generator_loss


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_bce_discriminator_loss_by_hand() -> None:
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    # -log sigmoid(r) = softplus(-r);  -log(1 - sigmoid(f)) = softplus(f)
    expected = (softplus(-2.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-3.0)) / 2
    assert_close(bce_discriminator_loss(real, fake), torch.tensor(expected))


def test_bce_label_smoothing_by_hand() -> None:
    real, fake = torch.tensor([2.0]), torch.tensor([0.0])
    # target 0.9: 0.9 * softplus(-r) + 0.1 * softplus(r)
    expected = 0.9 * softplus(-2.0) + 0.1 * softplus(2.0) + softplus(0.0)
    assert_close(bce_discriminator_loss(real, fake, real_target=0.9), torch.tensor(expected))


def test_bce_generator_loss_is_non_saturating() -> None:
    fake = torch.tensor([-5.0, 1.0], requires_grad=True)
    loss = bce_generator_loss(fake)
    assert_close(loss, torch.tensor((softplus(5.0) + softplus(-1.0)) / 2))
    loss.backward()
    # Raising D's score on fakes lowers G's loss, and the gradient stays large where D rejects the fake.
    assert (fake.grad < 0).all()
    assert fake.grad[0].abs() > 0.4


def test_bce_discriminator_gradient_signs() -> None:
    real = torch.tensor([0.0], requires_grad=True)
    fake = torch.tensor([0.0], requires_grad=True)
    bce_discriminator_loss(real, fake).backward()
    assert real.grad.item() < 0 < fake.grad.item()


def test_hinge_losses_by_hand() -> None:
    from ganctl.losses import hinge_discriminator_loss, hinge_generator_loss

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    # real: max(0, 1 - 2) = 0, max(0, 1 - 0.5) = 0.5; fake: max(0, 1 - 3) = 0, max(0, 1 + 0) = 1
    assert_close(hinge_discriminator_loss(real, fake), torch.tensor(0.25 + 0.5))
    assert_close(hinge_generator_loss(fake), torch.tensor(1.5))


def test_minimax_generator_loss_saturates() -> None:
    from ganctl.losses import minimax_generator_loss

    fake = torch.tensor([-5.0, 1.0], requires_grad=True)
    loss = minimax_generator_loss(fake)
    # log(1 - sigmoid(s)) for s = -5 and 1
    expected = (math.log(1 - 1 / (1 + math.exp(5.0))) + math.log(1 - 1 / (1 + math.exp(-1.0)))) / 2
    assert_close(loss, torch.tensor(expected))
    loss.backward()
    assert (fake.grad < 0).all()
    assert fake.grad[0].abs() < 0.01  # where D rejects the fake, the gradient all but vanishes


def test_lsgan_losses_by_hand() -> None:
    from ganctl.losses import lsgan_discriminator_loss, lsgan_generator_loss

    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert_close(lsgan_discriminator_loss(real, fake), torch.tensor(0.5 * (0 + 4) / 2 + 0.5 * (0 + 4) / 2))
    assert_close(lsgan_generator_loss(fake), torch.tensor(0.5 * (1 + 9) / 2))

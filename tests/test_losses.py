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


def test_label_noise_keeps_targets_inside_zero_one() -> None:
    from ganctl.losses import bce_targets

    torch.manual_seed(0)
    scores = torch.zeros(10_000)
    real = bce_targets(scores, 1.0, label_noise=0.3, flip_prob=0.0, other_target=0.0)
    fake = bce_targets(scores, 0.0, label_noise=0.3, flip_prob=0.0, other_target=1.0)
    assert 0.7 <= real.min() and real.max() <= 1.0 and real.std() > 0.05
    assert 0.0 <= fake.min() and fake.max() <= 0.3 and fake.std() > 0.05
    smoothed = bce_targets(scores, 0.9, label_noise=0.5, flip_prob=0.0, other_target=0.0)
    assert 0.4 <= smoothed.min() and smoothed.max() <= 0.9


def test_noisy_bce_discriminator_loss_is_never_negative() -> None:
    # The tutorial bug ganctl avoids: targets pushed above 1 make BCE negative for confident D.
    torch.manual_seed(0)
    real, fake = torch.full((1000,), 20.0), torch.full((1000,), -20.0)
    loss = bce_discriminator_loss(real, fake, label_noise=0.2, flip_prob=0.0)
    assert loss.item() >= 0.0


def test_label_flip_swaps_the_expected_fraction() -> None:
    from ganctl.losses import bce_targets

    torch.manual_seed(0)
    targets = bce_targets(torch.zeros(20_000), 1.0, label_noise=0.0, flip_prob=0.1, other_target=0.0)
    assert set(targets.unique().tolist()) == {0.0, 1.0}
    assert abs((targets == 0).float().mean().item() - 0.1) < 0.01
    # flip_prob=1 turns D's loss into the loss of the swapped labels exactly
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    assert_close(bce_discriminator_loss(real, fake, flip_prob=1.0), bce_discriminator_loss(fake, real))


def test_wasserstein_losses_by_hand_and_gradient_signs() -> None:
    from ganctl.losses import wasserstein_discriminator_loss, wasserstein_generator_loss

    real = torch.tensor([3.0, 1.0], requires_grad=True)
    fake = torch.tensor([-2.0, 0.0], requires_grad=True)
    loss = wasserstein_discriminator_loss(real, fake)
    assert_close(loss, torch.tensor(-1.0 - 2.0))  # mean fake (-1) - mean real (2)
    loss.backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # D raises real scores, lowers fakes
    fake_g = torch.tensor([-2.0, 0.0], requires_grad=True)
    generator_loss = wasserstein_generator_loss(fake_g)
    assert_close(generator_loss, torch.tensor(1.0))
    generator_loss.backward()
    assert (fake_g.grad < 0).all()


class LinearCritic(torch.nn.Module):
    """D(x) = w . flatten(x): its gradient with respect to every image is w."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1) @ self.weight


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic_and_positive_otherwise() -> None:
    from ganctl.regularisers import gradient_penalty

    torch.manual_seed(0)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    unit = torch.randn(16)
    unit /= unit.norm()
    assert gradient_penalty(LinearCritic(unit), real, fake).item() < 1e-10
    assert_close(gradient_penalty(LinearCritic(3.0 * unit), real, fake), torch.tensor(4.0))  # (3 - 1)^2
    assert_close(gradient_penalty(LinearCritic(0.5 * unit), real, fake), torch.tensor(0.25))


def test_gradient_penalty_trains_the_critic_towards_unit_gradients() -> None:
    from ganctl.regularisers import gradient_penalty

    critic = LinearCritic(torch.full((16,), 1.0))  # gradient norm 4
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    gradient_penalty(critic, real, fake).backward()  # a double backward through autograd.grad
    assert critic.weight.grad is not None and (critic.weight.grad > 0).all()  # shrinking w lowers it


def test_clip_weights_clamps_every_parameter() -> None:
    from ganctl.regularisers import clip_weights

    critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.normal_()  # every tensor has entries beyond the bound (BatchNorm's too)
    clip_weights(critic, 0.01)
    bound = torch.tensor(0.01)  # in float32, like the parameters
    assert all(parameter.abs().max() <= bound for parameter in critic.parameters())
    assert all(parameter.abs().max() == bound for parameter in critic.parameters())  # each had a larger entry


def test_r2_penalises_d_at_the_fakes_on_its_lazy_interval(monkeypatch) -> None:
    import pytest

    from ganctl import data, regularisers
    from ganctl.errors import GanctlError
    from helpers import TINY, build_gan, compose_config

    seen: list[torch.Tensor] = []
    penalty = regularisers.squared_gradient_norm
    monkeypatch.setattr(regularisers, "squared_gradient_norm", lambda critic, images: seen.append(images) or penalty(critic, images))
    cfg, _ = compose_config(*TINY, "model=wgangp", "loss=bce", "loss.r2_gamma=1", "loss.r2_every=2",
                            "model.generator.base_filters=8", "model.discriminator.base_filters=8", "model.generator.latent_dim=16")
    gan, images = build_gan(cfg)
    batches = data.endless(images, 8)
    r2 = [gan.step(batches, step)["reg/r2"].item() for step in (1, 2, 3)]
    assert r2[0] > 0 and r2[1] == r2[0] and r2[2] != r2[0]  # due at critic updates 0 and 2; the latest is reported
    assert len(seen) == 2
    real_levels = torch.arange(256) / 127.5 - 1  # real images are quantised to 256 levels; fakes are tanh outputs
    assert not torch.isin(seen[0], real_levels).all()
    cfg, _ = compose_config(*TINY, "model=dcgan_small", "loss.r2_gamma=1")  # a BatchNorm critic
    with pytest.raises(GanctlError, match="BatchNorm"):  # per image, as R1 and the gradient penalty
        build_gan(cfg)
    with pytest.raises(GanctlError, match="loss.regularisers.r2 from its config: every must be a whole number, at least 1"):
        build_gan(compose_config(*TINY, "model=wgangp", "loss.r2_gamma=1", "loss.r2_every=0")[0])


def test_relativistic_losses_by_hand_pair_each_real_with_its_fake() -> None:
    from ganctl.losses import relativistic_discriminator_loss, relativistic_generator_loss

    real, fake = torch.tensor([2.0, -1.0], requires_grad=True), torch.tensor([0.5, 1.0], requires_grad=True)
    d_loss = relativistic_discriminator_loss(real, fake)  # softplus(fake - real), pair by pair
    assert_close(d_loss, torch.tensor((softplus(-1.5) + softplus(2.0)) / 2))
    assert_close(relativistic_discriminator_loss(real, fake.flip(0)), torch.tensor((softplus(-1.0) + softplus(1.5)) / 2))
    d_loss.backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # D raises reals and lowers fakes
    g_loss = relativistic_generator_loss(fake, real_scores=real.detach())
    assert_close(g_loss, torch.tensor((softplus(1.5) + softplus(-2.0)) / 2))


def test_a_relativistic_generator_loss_sees_the_real_scores_of_ds_update(monkeypatch) -> None:
    from ganctl import data, losses
    from helpers import TINY, TINY_DCGAN, build_gan, compose_config

    seen: list[torch.Tensor] = []
    loss = losses.relativistic_generator_loss
    monkeypatch.setattr(losses, "relativistic_generator_loss", lambda fake_scores, real_scores: seen.append(real_scores) or loss(fake_scores, real_scores))
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, "loss=rpgan_r1r2")
    units = cfg.loss.regularisers
    assert (units.r1.gamma, units.r2.gamma, units.r1.every, units.r2.every) == (0.1, 0.1, 16, 16)
    gan, images = build_gan(cfg)
    statistics = gan.step(data.endless(images, 8), 1)
    assert len(seen) == 1 and seen[0].shape == (8,) and not seen[0].requires_grad
    assert_close(seen[0].mean(), statistics["d/real"])  # D's scores of the step's reals
    assert statistics["reg/r1"] > 0 and statistics["reg/r2"] > 0
    plain = losses.GANLoss.from_config(compose_config("loss=bce")[0].loss)  # other G losses see fakes only
    assert_close(plain.generator_loss(torch.zeros(2), real_scores=torch.full((2,), 5.0)), torch.tensor(softplus(0.0)))

"""R3GAN (model=r3gan, loss=r3gan, the four recipes): the reference's networks parameter for parameter,
blocks that start as the identity with fix-up scaled inits, narrow and conditional networks at the
dataset's size, what it refuses, and the loss: R1 and R2 at every critic update and G's loss on the
reals re-scored by the updated D (rpgan_r1r2 keeps D's scores from before its update). The numbers
against the reference code itself: scripts/compare_r3gan_reference.py (docs/benchmarks.md)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from ganctl import data, regularisers
from ganctl.errors import GanctlError
from ganctl.models import UNCONDITIONAL, Conditioning, R3GANDiscriminator, R3GANGenerator
from ganctl.models.r3gan import ACTIVATION_GAIN, ResidualBlock
from ganctl.registry import build
from helpers import TINY, build_gan, compose_config

# Narrow enough to train a step in well under a second at 28 px (three stages of 8 channels, one block each).
TINY_R3GAN = ["model=r3gan", "model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16",
              "model.generator.blocks=[1,1,1,1]", "model.discriminator.blocks=[1,1,1,1]", "train.channels_last=false"]

CIFAR10 = {"widths": [768] * 4, "cardinalities": [96] * 4, "blocks": [2] * 4}
FFHQ64 = {"widths": [768] * 4 + [384], "cardinalities": [96] * 4 + [48], "blocks": [2] * 5}
FFHQ256 = {"widths": [768] * 4 + [384, 192, 96], "cardinalities": [96] * 4 + [48, 24, 12], "blocks": [2] * 7}
IMAGENET32 = {"widths": [1536] * 4, "cardinalities": [96] * 4, "blocks": [2] * 4}


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


# The figures, counted from brownvc/R3GAN (commit 19a7ddf: training/networks.py with train.py's
# presets); ImageNet-32's counted the same way here.
@pytest.mark.parametrize("image_size,classes,preset,sizes", [
    (32, 10, CIFAR10, (20_781_952, 21_280_512)),  # the CIFAR-10 command (--cond=1)
    (32, 0, CIFAR10, (20_732_160, 20_683_776)),
    (64, 0, FFHQ64, (22_429_824, 22_381_440)),
    (256, 0, FFHQ256, (23_057_952, 23_009_568)),
    (32, 1000, IMAGENET32, (82_914_304, 86_548_992)),
])
def test_r3gan_is_the_reference_network_parameter_for_parameter(image_size: int, classes: int, preset: dict, sizes) -> None:
    conditioning = Conditioning("concat", "projection", classes) if classes else UNCONDITIONAL
    with torch.device("meta"):  # 20M-90M parameters: counted without allocating them
        generator = R3GANGenerator(3, image_size, conditioning=conditioning, **preset)
        critic = R3GANDiscriminator(3, image_size, conditioning=conditioning, **preset)
    assert (count(generator), count(critic)) == sizes


def test_the_recipes_build_the_published_networks() -> None:
    for experiment, preset in (("cifar10_r3gan", CIFAR10), ("ffhq64_r3gan", FFHQ64), ("ffhq256_r3gan", FFHQ256),
                               ("imagenet32_r3gan", IMAGENET32)):
        cfg, _ = compose_config(f"experiment={experiment}", "dataset.root=unused")
        for role in ("generator", "discriminator"):
            node = cfg.model[role]
            assert {key: list(node[key]) for key in preset} == preset, (experiment, role)


@pytest.mark.parametrize("channels,image_size,classes", [(1, 28, 0), (3, 32, 10), (3, 8, 0)])
def test_narrow_r3gans_make_images_of_the_datasets_shape_and_score_them(channels: int, image_size: int, classes: int) -> None:
    conditioning = Conditioning("concat", "projection", classes) if classes else UNCONDITIONAL
    generator = R3GANGenerator(channels, image_size, latent_dim=16, width=16, conditioning=conditioning)
    critic = R3GANDiscriminator(channels, image_size, width=16, conditioning=conditioning)
    labels = torch.randint(classes, (5,)) if classes else None
    images = generator(torch.randn(5, 16), labels)
    assert images.shape == (5, channels, image_size, image_size)
    assert critic(images, labels).shape == (5,)
    stages = {28: 3, 32: 4, 8: 2}[image_size]  # 7x7, 4x4 and 4x4 bases
    assert len(generator.stages) == len(critic.stages) == stages


def test_width_scales_every_stage_and_its_groups_keeping_the_channels_per_group() -> None:
    generator = R3GANGenerator(3, 256, width=64, **FFHQ256)  # 768 -> 64: every stage / 12
    widths = [stage[-1].expand.in_channels for stage in generator.stages]
    groups = [stage[-1].grouped.groups for stage in generator.stages]
    assert widths == [64, 64, 64, 64, 32, 16, 8] and groups == [8, 8, 8, 8, 4, 2, 1]
    assert all(2 * width // group == 16 for width, group in zip(widths, groups))  # as the reference's 16 per group


def test_every_block_starts_as_the_identity_with_fixup_scaled_weights() -> None:
    """The reference's initialisation: each block's last conv is zero, so a block passes its input
    through; its inner convs are N(0, (gain x L^-1/4)^2 / fan_in) for L blocks in the network."""
    torch.manual_seed(0)
    block = ResidualBlock(256, 32, 2, total_blocks=16)
    x = torch.randn(2, 256, 4, 4)
    assert torch.equal(block(x), x)
    expected = ACTIVATION_GAIN * 16 ** -0.25 / math.sqrt(256)  # the 1x1 expansion: fan-in 256
    assert block.expand.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert block.grouped.weight.std().item() == pytest.approx(ACTIVATION_GAIN * 16 ** -0.25 / math.sqrt(16 * 9), rel=0.02)
    assert not block.project.weight.any() and block.project.bias is None
    assert not block.expand.bias.any() and not block.grouped.bias.any()  # the activations' biases, from 0


@pytest.mark.parametrize("make,message", [
    (lambda: R3GANGenerator(1, 11), "R3GAN cannot make 11x11 images"),
    (lambda: R3GANGenerator(3, 64, **CIFAR10), "64 px needs|at most 32 px"),
    (lambda: R3GANDiscriminator(3, 32, width=50, **CIFAR10), "model.discriminator.width=50 makes a stage 50 wide"),
    (lambda: R3GANGenerator(3, 32, width=0), "model.generator.width must be a whole number"),
    (lambda: R3GANGenerator(3, 32, widths=[768] * 4, cardinalities=[96] * 3, blocks=[2] * 4), "one value per stage"),
    (lambda: R3GANGenerator(3, 32, conditioning=Conditioning("batchnorm", "projection", 10)),
     "conditioning.generator=concat"),
    (lambda: R3GANDiscriminator(3, 32, conditioning=Conditioning("concat", "auxiliary", 10)),
     "conditioning.discriminator=projection"),
])
def test_what_r3gan_cannot_make_is_refused_with_the_reason(make, message: str) -> None:
    with pytest.raises(GanctlError, match=message) as refused:
        make()
    assert "\n" not in str(refused.value)


def test_model_r3gan_selects_r3gans_loss_and_optimizer() -> None:
    cfg, choices = compose_config("model=r3gan")
    assert (choices["loss"], choices["optimizer"]) == ("r3gan", "r3gan")
    assert cfg.loss.rescore_reals and cfg.loss.relativistic
    assert [(unit.every, unit.sigma) for unit in cfg.loss.regularisers.values()] == [(1, None), (1, None)]
    assert list(cfg.optimizer.d.betas) == [0.0, 0.9] and cfg.optimizer.g.eps == 1e-8


# ---------------------------------------------------------------- the loss


def spied_steps(overrides: list[str], steps: int, monkeypatch: pytest.MonkeyPatch) -> tuple[nn.Module, list[dict]]:
    """Trains `steps` steps; returns D and, per step, its real batch, D's weights before and after it,
    the scores G's loss compared its fakes with, and how many R1/R2 penalties were taken."""
    gan, images = build_gan(compose_config(*TINY, *overrides)[0])
    records: list[dict] = []
    original = regularisers.squared_gradient_norm
    monkeypatch.setattr(regularisers, "squared_gradient_norm",
                        lambda *args: records[-1].__setitem__("penalties", records[-1]["penalties"] + 1) or original(*args))

    relativistic_loss = gan.loss.generator

    def generator_loss(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
        records[-1]["compared_with"] = real_scores.detach().clone()
        return relativistic_loss(fake_scores, real_scores=real_scores)

    gan.loss = dataclasses.replace(gan.loss, generator=generator_loss)
    batches = data.endless(images, 8)

    def recorded():
        while True:
            real, labels = next(batches)
            records[-1]["real"] = real
            yield real, labels

    stream = recorded()
    for step in range(1, steps + 1):
        records.append({"penalties": 0, "before": copy.deepcopy(gan.discriminator.state_dict())})
        gan.step(stream, step)
        records[-1]["after"] = copy.deepcopy(gan.discriminator.state_dict())
    return gan.discriminator, records


def scores(critic: nn.Module, weights: dict, images: torch.Tensor) -> torch.Tensor:
    """D's scores of images with the given weights (on a copy of D)."""
    critic = copy.deepcopy(critic)
    critic.load_state_dict(weights)
    with torch.no_grad():
        return critic(images).float()


def test_r3gan_penalises_every_critic_update_and_g_compares_with_reals_the_updated_d_scored(monkeypatch) -> None:
    critic, records = spied_steps([*TINY_R3GAN, "train.precision=fp32"], 2, monkeypatch)
    for record in records:
        assert record["penalties"] == 2  # R1 and R2 at every step (not every 16th)
        updated = scores(critic, record["after"], record["real"])
        torch.testing.assert_close(record["compared_with"], updated, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(record["compared_with"], scores(critic, record["before"], record["real"]), rtol=1e-4, atol=1e-5)


def test_rpgan_r1r2_compares_with_ds_scores_from_before_its_update_and_penalises_lazily(monkeypatch) -> None:
    critic, records = spied_steps(["model.generator.base_filters=8", "model.discriminator.base_filters=8",
                                   "train.precision=fp32", "train.channels_last=false", "loss.r1_every=2",
                                   "loss.r2_every=2"], 3, monkeypatch)
    assert [record["penalties"] for record in records] == [2, 0, 2]
    for record in records:
        torch.testing.assert_close(record["compared_with"], scores(critic, record["before"], record["real"]), rtol=1e-5, atol=1e-6)


def test_rescoring_the_reals_needs_a_relativistic_loss() -> None:
    from ganctl import config

    with pytest.raises(GanctlError, match=r"loss.rescore_reals=true .* \(loss.relativistic=false\)"):
        config.check(compose_config("loss=bce", "loss.rescore_reals=true")[0])

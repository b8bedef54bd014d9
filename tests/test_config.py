"""Every option of every group composes and instantiates; models build for the sizes they promise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ganctl.config import config_dir
from ganctl.data import bundled_mnist
from ganctl.errors import GanctlError
from ganctl.models import DCGANDiscriminator, DCGANGenerator, dcgan_layout
from helpers import compose_config

GROUP_OPTIONS = {
    group: sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
    for group in ("model", "loss", "optimizer", "dataset")
}


def test_every_group_has_options() -> None:
    assert GROUP_OPTIONS["model"] == ["conv", "dcgan", "dcgan_small", "mlp", "wgan", "wgangp"]
    assert GROUP_OPTIONS["loss"] == ["bce", "hinge", "lsgan", "minimax", "wgan", "wgangp"]
    assert GROUP_OPTIONS["optimizer"] == ["adam", "adam_fast", "rmsprop", "wgan", "wgangp"]
    assert GROUP_OPTIONS["dataset"] == ["celeba", "cifar10", "fashion_mnist", "folder", "mnist", "quickdraw"]
    assert all(GROUP_OPTIONS.values())


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_option_composes_and_instantiates(group: str, option: str) -> None:
    cfg, choices = compose_config(f"{group}={option}")
    assert choices[group] == option
    generator = instantiate(cfg.model.generator, channels=1, image_size=28)
    discriminator = instantiate(cfg.model.discriminator, channels=1, image_size=28)
    images = generator(torch.randn(3, generator.latent_dim))
    assert images.shape == (3, 1, 28, 28)
    assert discriminator(images).shape == (3,)
    instantiate(cfg.optimizer.g)(generator.parameters())
    instantiate(cfg.optimizer.d)(discriminator.parameters())
    loss = instantiate(cfg.loss.discriminator)(torch.zeros(3), torch.zeros(3))
    assert loss.ndim == 0


def test_dataset_default_is_the_bundled_digits() -> None:
    cfg, _ = compose_config()
    digits = instantiate(cfg.dataset)
    assert digits.images.dtype == torch.uint8 and digits.images.shape == (4000, 1, 28, 28)
    counts = torch.bincount(bundled_mnist()[1], minlength=10)
    assert counts.tolist() == [400] * 10
    assert torch.equal(digits.labels, bundled_mnist()[1]) and digits.classes == [str(digit) for digit in range(10)]


def test_dataset_image_size_resizes() -> None:
    cfg, _ = compose_config("dataset.image_size=32")
    assert instantiate(cfg.dataset).images.shape == (4000, 1, 32, 32)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size: int, channels: int) -> None:
    generator = DCGANGenerator(latent_dim=16, base_filters=8, channels=channels, image_size=size)
    discriminator = DCGANDiscriminator(base_filters=8, channels=channels, image_size=size)
    images = generator(torch.randn(2, 16))
    assert images.shape == (2, channels, size, size)
    assert images.abs().max() <= 1.0
    assert discriminator(images).shape == (2,)


def test_dcgan_defaults_are_the_paper_network() -> None:
    """64 base filters, latent 100, 64x64x1: about 3.6M G and 2.8M D parameters."""
    cfg, _ = compose_config("model=dcgan")
    generator = instantiate(cfg.model.generator, channels=1, image_size=64)
    discriminator = instantiate(cfg.model.discriminator, channels=1, image_size=64)
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(3.57e6, rel=0.01)
    assert sum(p.numel() for p in discriminator.parameters()) == pytest.approx(2.77e6, rel=0.01)


def test_dcgan_layout() -> None:
    assert dcgan_layout(28) == (7, 2)
    assert dcgan_layout(32) == (4, 3)
    assert dcgan_layout(64) == (4, 4)
    for bad in (7, 30, 100, 1):
        with pytest.raises(GanctlError, match="cannot make"):
            dcgan_layout(bad)


def test_nearest_upsampling_generator() -> None:
    generator = DCGANGenerator(latent_dim=8, base_filters=8, channels=3, image_size=32, upsample="nearest")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in list(generator.modules())[3:])
    assert generator(torch.randn(2, 8)).shape == (2, 3, 32, 32)


def test_spectral_norm_discriminator() -> None:
    discriminator = DCGANDiscriminator(base_filters=8, channels=1, image_size=28, norm="none", spectral_norm=True)
    convs = [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules())
    discriminator(torch.randn(4, 1, 28, 28))  # a training-mode forward runs the power iteration
    for conv in convs:
        top_singular_value = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert top_singular_value == pytest.approx(1.0, abs=0.2)

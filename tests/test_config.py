"""Every option of every group composes and instantiates; models build for the sizes they promise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ganctl.config import config_dir
from ganctl import data
from ganctl.data import bundled_mnist
from ganctl.errors import GanctlError
from ganctl.models import DCGANDiscriminator, DCGANGenerator, dcgan_layout
from helpers import compose_config

GROUP_OPTIONS = {
    group: sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
    for group in ("model", "loss", "optimizer", "dataset")
}


def test_every_option_of_every_group_is_in_the_readmes_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = {(group, option) for group, options in re.findall(r"^\| `(\w+)` \| (.+?) \|", readme, re.MULTILINE)
             for option in re.findall(r"`(\w+)`", options)}
    for group, options in GROUP_OPTIONS.items():
        assert options, group
        assert [option for option in options if (group, option) not in table] == [], group


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_option_composes_and_instantiates(group: str, option: str) -> None:
    cfg, choices = compose_config(f"{group}={option}")
    assert choices[group] == option
    size = 32 if choices["model"] == "stylegan2" else 28  # StyleGAN2 makes powers of two from 32
    generator = instantiate(cfg.model.generator, channels=1, image_size=size)
    discriminator = instantiate(cfg.model.discriminator, channels=1, image_size=size)
    images = generator(torch.randn(3, generator.latent_dim))
    assert images.shape == (3, 1, size, size)
    assert discriminator(images).shape == (3,)
    instantiate(cfg.optimizer.g)(generator.parameters())
    instantiate(cfg.optimizer.d)(discriminator.parameters())
    loss = instantiate(cfg.loss.discriminator)(torch.zeros(3), torch.zeros(3))
    assert loss.ndim == 0


def test_dataset_default_is_the_bundled_digits() -> None:
    cfg, _ = compose_config()
    digits = data.build(cfg.dataset, torch.device("cpu"))
    assert digits.images.dtype == torch.uint8 and digits.images.shape == (4000, 1, 28, 28)
    counts = torch.bincount(bundled_mnist()[1], minlength=10)
    assert counts.tolist() == [400] * 10
    assert torch.equal(digits.labels, bundled_mnist()[1]) and digits.classes == [str(digit) for digit in range(10)]


def test_dataset_image_size_resizes() -> None:
    cfg, _ = compose_config("dataset.image_size=32")
    assert data.build(cfg.dataset, torch.device("cpu")).images.shape == (4000, 1, 32, 32)


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


@pytest.mark.parametrize("arguments,message", [
    (["train.step=10"], "Unknown key train.step (train.step=10): did you mean train.steps?"),
    (["+train.step=10"], "Unknown key train.step (+train.step=10): did you mean train.steps?"),
    (["++train.step=10"], "did you mean train.steps?"),
    (["+trian.steps=10"], "Unknown key trian.steps (+trian.steps=10): did you mean train.steps?"),
    (["modle=mlp"], "did you mean model?"),
    (["train.ema.decayy=0.5"], "did you mean train.ema.decay?"),
    (["model.generator.base_filterz=8"], "did you mean model.generator.base_filters?"),
    (["+optimizer.g.momentum=0.9"], "torch.optim.Adam (at optimizer.g) takes lr, betas, eps"),
    (["model=dcgan,mlp", "model.generator.base_filters=8"], "(model.generator.base_filters=8, with model=mlp)"),
    (["optimizer.g.eps=1e-6"], "add it with +optimizer.g.eps=1e-6"),
    (["optimizer.g.eps=-1"], "torch.optim.Adam refuses these settings (Invalid epsilon value: -1)"),  # not advice it then refuses
    (["+metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.feature.sizes=4"],
     "did you mean metrics.feature.size?"),
])
def test_unknown_keys_are_refused_with_the_closest_known_one(arguments: list[str], message: str) -> None:
    from ganctl.overrides import check_override_keys

    with pytest.raises(GanctlError) as refused:
        check_override_keys(arguments)
    assert message in str(refused.value)


@pytest.mark.parametrize("arguments", [
    ["+optimizer.g.foreach=false"],  # a keyword torch.optim.Adam takes
    ["optimizer=rmsprop", "+optimizer.g.momentum=0.9"],  # RMSprop has momentum
    ["optimizer.g._target_=torch.optim.SGD", "+optimizer.g.momentum=0.9"],
    ["+metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.feature.size=4"],
    ["model=mlp", "model.generator.hidden=[8]", "loss=hinge", "train.steps=3", "resume=null", "hydra.run.dir=x"],
    ["loss=bce,minimax", "loss.discriminator.real_target=0.9"],  # both options' D loss takes it
])
def test_known_keys_pass(arguments: list[str]) -> None:
    from ganctl.overrides import check_override_keys

    check_override_keys(arguments)


@pytest.mark.parametrize("override,message", [
    ("+train.step=10", "Unknown key train.step: did you mean train.steps?"),
    ("+model.generator.foo=1", "ganctl.models.DCGANGenerator (at model.generator) takes latent_dim, base_filters, upsample"),
    ("optimizer.d.betas=[1.5,0.999]", "optimizer.d: torch.optim.Adam refuses these settings (Invalid beta parameter at index 0: 1.5)"),
    ("optimizer.g.betas=[0.5]", "optimizer.g.betas must be a list of 2 numbers for torch.optim.Adam"),
    ("+optimizer.g.eps=-1", "optimizer.g: torch.optim.Adam refuses these settings (Invalid epsilon value: -1)"),
])
def test_the_composed_config_is_checked_key_by_key(override: str, message: str) -> None:
    """What reaches a run (an experiment's keys, a `+` the command line let through) is checked too."""
    from ganctl.config import check

    cfg, _ = compose_config(override)
    with pytest.raises(GanctlError) as refused:
        check(cfg)
    assert message in str(refused.value)


def test_optimizer_settings_are_checked_for_any_torch_optim_class() -> None:
    from ganctl.config import check

    cfg, _ = compose_config("optimizer=rmsprop", "optimizer.d.alpha=-1", "optimizer.g._target_=torch.optim.SGD",
                            "+optimizer.g.momentum=0.9", "~optimizer.g.alpha", "~optimizer.g.eps")
    with pytest.raises(GanctlError, match=r"optimizer.d: torch.optim.RMSprop refuses these settings"):
        check(cfg)
    cfg.optimizer.d.alpha = 0.9
    check(cfg)  # SGD with momentum: fine
    cfg.optimizer.g.momentum = -0.5
    with pytest.raises(GanctlError, match=r"optimizer.g: torch.optim.SGD refuses these settings \(Invalid momentum value: -0.5\)"):
        check(cfg)


@pytest.mark.parametrize("arguments,message", [
    (["model", "=", "mlp"], "an override is one word, without spaces around = : model=mlp"),
    (["--steps", "100"], "not flags: write train.steps=100"),
    (["train.augment=translation"], "train.augment takes a list: write train.augment=[translation]"),
])
def test_habits_from_other_tools_are_answered_with_the_fix(arguments: list[str], message: str, capsys, tmp_path: Path) -> None:
    from ganctl.cli import main

    assert main(["train", *arguments, f"hydra.run.dir={tmp_path / 'run'}"]) == 1
    assert message in " ".join(capsys.readouterr().err.split())


def test_values_hydras_grammar_reads_only_quoted_are_quoted_for_it() -> None:
    from ganctl.app import quoted

    assert quoted("dataset.root=~/data") == "dataset.root='~/data'"  # (the readers expand ~)
    assert quoted("dataset.root=/data/a&b (1)") == "dataset.root='/data/a&b (1)'"
    for grammar in ("loss=bce,hinge", "optimizer.g.lr=interval(1e-4,1e-2)", "train.augment=[color]", "train.steps=5"):
        assert quoted(grammar) == grammar  # what Hydra reads as written keeps its meaning

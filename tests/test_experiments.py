"""Every classic setup (conf/experiment/) composes to what its file says and trains two steps on
small stand-in data in its dataset's real format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganctl.config import config_dir
from helpers import compose_config, run
from test_data import write_celeba_jpegs, write_cifar10, write_mixed_folder

# The ResNet recipes' published widths take minutes per step on a CPU: the two-step runs narrow them
# (the settings test below checks the recipes themselves).
NARROW = {name: ["model.generator.width=8", "model.discriminator.width=8", "train.channels_last=false"]
          for name in ("cifar10_sngan", "cifar10_cgan_pd", "cifar10_wgangp_resnet")}
NARROW["cifar10_biggan"] = ["model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=16",
                            "train.channels_last=false"]
EXPERIMENTS = sorted(path.stem for path in (Path(config_dir()) / "experiment").glob("*.yaml"))


def stand_in_data(experiment: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Small files in the experiment's dataset format; the overrides that point the config at them."""
    if experiment.startswith("mnist"):
        return []  # the bundled digits
    if experiment == "camel_gan":
        np.save(root / "full_numpy_bitmap_camel.npy", np.random.default_rng(0).integers(0, 256, (12, 784), dtype=np.uint8))
        return [f"dataset.root={root / 'full_numpy_bitmap_camel.npy'}"]
    if experiment.startswith("cifar10"):
        write_cifar10(root, monkeypatch)
        return [f"dataset.root={root}"]
    if experiment == "celeba_wgangp":
        write_celeba_jpegs(root / "img_align_celeba", 6)
        return [f"dataset.root={root / 'img_align_celeba'}"]
    if experiment in ("ffhq256_stylegan2", "ffhq64_r3gan", "ffhq256_r3gan"):
        write_mixed_folder(root / "faces")
        return [f"dataset.root={root / 'faces'}"]
    if experiment == "imagenet32_r3gan":  # class-conditional: one subfolder per class
        for index, name in enumerate(("n01440764", "n01443537")):
            (root / "imagenet" / name).mkdir(parents=True)
            for copy in range(2):
                Image.new("RGB", (40, 36), (60 * index, 20 * copy, 90)).save(root / "imagenet" / name / f"{copy}.JPEG")
        return [f"dataset.root={root / 'imagenet'}"]
    if experiment == "lego_dcgan":
        write_mixed_folder(root / "lego")
        return [f"dataset.root={root / 'lego'}"]
    raise AssertionError(f"no stand-in data for the new experiment {experiment}: add it here")


def test_every_experiment_is_tested() -> None:
    assert set(EXPERIMENTS) == {"mnist_vanilla", "mnist_mlp_bn", "lego_dcgan", "camel_gan", "cifar10_wgan", "celeba_wgangp",
                                "mnist_cgan", "cifar10_sngan", "cifar10_cgan_pd", "cifar10_wgangp_resnet",
                                "cifar10_biggan", "cifar10_stylegan2_ada", "ffhq256_stylegan2", "cifar10_r3gan", "ffhq64_r3gan",
                                "ffhq256_r3gan", "imagenet32_r3gan"}


# The StyleGAN2 recipes' networks are 20M+ parameters a side: two CPU steps with them at a few channels.
NARROW.update({experiment: [f"model.{net}.channel_base={base}" for net in ("generator", "discriminator")]
               + [f"model.{net}.channel_max=8" for net in ("generator", "discriminator")]
               + ["model.generator.latent_dim=16", "model.generator.w_dim=16"]
               for experiment, base in (("cifar10_stylegan2_ada", 256), ("ffhq256_stylegan2", 1024))})


# The R3GAN recipes at 8 channels in the widest stage (every stage and its groups scaled with it), one block a stage.
NARROW.update({experiment: [f"model.{net}.{key}={value}" for net in ("generator", "discriminator")
                            for key, value in (("width", 8), ("blocks", [1] * stages))] + ["model.generator.latent_dim=16"]
               for experiment, stages in (("cifar10_r3gan", 4), ("ffhq64_r3gan", 5), ("ffhq256_r3gan", 7), ("imagenet32_r3gan", 4))})
NARROW["ffhq256_r3gan"].append("dataset.image_size=64")  # its first five stages (at 256 px two steps cost more than all the other recipes; the 256 px layout: test_r3gan.py)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_two_steps(experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    overrides = [f"experiment={experiment}", *stand_in_data(experiment, tmp_path / "data", monkeypatch), *NARROW.get(experiment, []),
                 "train.steps=2", "train.batch_size=4", "train.num_samples=4", "train.log_every=1", "train.device=cpu", "train.curves=false"]
    result = run(tmp_path / "run", *overrides)
    assert result.step == 2
    assert all(math.isfinite(value) for value in result.summary["losses"].values())


@pytest.mark.parametrize("experiment,expected", [
    ("mnist_vanilla", {"model": "mlp", "train.batch_size": 128, "loss.discriminator.real_target": 0.9,
                       "model.discriminator.dropout": 0.3, "model.generator.batch_norm": False, "optimizer.d.lr": 2e-4}),
    ("mnist_mlp_bn", {"model.generator.latent_dim": 10, "model.generator.hidden": [128, 256, 512, 1024],
                      "model.discriminator.hidden": [512, 256, 128], "loss": "bce"}),
    ("lego_dcgan", {"dataset": "folder", "dataset.image_size": 64, "dataset.channels": 1, "model": "dcgan",
                    "optimizer.g.betas": [0.4, 0.999], "loss.discriminator.label_noise": 0.1, "train.batch_size": 128}),
    ("camel_gan", {"dataset": "quickdraw", "model": "conv", "optimizer.d.lr": 8e-4, "optimizer.g.lr": 4e-4,
                   "model.discriminator.strides": [2, 2, 2, 1], "model.discriminator.dropout": 0.4}),
    ("cifar10_wgan", {"dataset": "cifar10", "loss.regularisers.clip.bound": 0.01, "loss.critic_steps": 5, "optimizer.d.lr": 5e-5,
                      "optimizer.d._target_": "torch.optim.RMSprop", "dataset.image_size": 32}),
    ("celeba_wgangp", {"dataset": "celeba", "dataset.image_size": 64, "loss.regularisers.gradient_penalty.weight": 10.0,
                       "model.discriminator.norm": "layer", "optimizer.d.betas": [0.0, 0.9]}),
    ("cifar10_stylegan2_ada", {"dataset": "cifar10", "model": "stylegan2", "model.generator.mapping_layers": 2,
                               "model.generator.channel_base": 32768, "model.discriminator.architecture": "orig",
                               "model.discriminator.mbstd_group_size": 32, "loss.regularisers.r1.gamma": 0.01,
                               "loss.regularisers.r1.every": 16, "loss.regularisers.path_length.weight": 0.0, "model.generator.style_mixing": 0.0, "optimizer.g.lr": 0.0025,
                               "optimizer.d.betas": [0.0, 0.99], "train.batch_size": 64, "train.ema.half_life_kimg": 500,
                               "train.ema.rampup": 0.05, "train.steps": 1_562_500, "conditioning.generator": "concat",
                               "conditioning.discriminator": "projection"}),
    ("ffhq256_stylegan2", {"dataset": "folder", "dataset.image_size": 256, "model.generator.channel_base": 16384,
                           "model.discriminator.architecture": "resnet", "model.discriminator.mbstd_group_size": 8,
                           "loss.regularisers.r1.gamma": 1.0, "loss.regularisers.path_length.weight": 2.0,
                           "model.generator.style_mixing": 0.9,
                           "train.ema.half_life_kimg": 20, "train.ema.rampup": None}),
    ("cifar10_r3gan", {"dataset": "cifar10", "model": "r3gan", "loss": "r3gan", "optimizer": "r3gan",
                       "conditioning.generator": "concat", "conditioning.discriminator": "projection",
                       "model.generator.widths": [768] * 4, "model.discriminator.cardinalities": [96] * 4,
                       "model.generator.latent_dim": 64, "train.batch_size": 512, "loss.rescore_reals": True,
                       "loss.regularisers.r1.every": 1, "loss.regularisers.r2.every": 1, "optimizer.g.betas": [0.0, 0.9],
                       "optimizer.d.eps": 1e-8, "train.ada.mode": "fixed",
                       "train.schedules": {"lr": {"base": 2e-4, "final": 5e-5, "images": 2e7},
                                           "beta2": {"base": 0.9, "final": 0.99, "images": 2e7},
                                           "r1": {"base": 0.05, "final": 0.005, "images": 2e7},
                                           "r2": {"base": 0.05, "final": 0.005, "images": 2e7},
                                           "ema_half_life_kimg": {"base": 0.0, "final": 5000.0, "images": 2e7},
                                           "ada_p": {"base": 0.0, "final": 0.55, "images": 2e7}}}),
    ("ffhq256_r3gan", {"dataset": "folder", "dataset.image_size": 256, "conditioning": "none",
                       "model.generator.widths": [768, 768, 768, 768, 384, 192, 96], "train.batch_size": 256,
                       "model.discriminator.cardinalities": [96, 96, 96, 96, 48, 24, 12],
                       "train.schedules.r1": {"base": 150.0, "final": 15.0, "images": 2e7},
                       "train.schedules.ada_p": {"base": 0.0, "final": 0.3, "images": 2e7}}),
    ("imagenet32_r3gan", {"model.generator.widths": [1536] * 4, "train.batch_size": 4096, "conditioning.discriminator": "projection",
                          "train.schedules.ema_half_life_kimg": {"base": 0.0, "final": 50000.0, "images": 2e8}}),
    ("mnist_cgan", {"dataset": "mnist", "model": "dcgan_small", "optimizer": "adam_fast", "conditioning": "projection",
                    "conditioning.generator": "batchnorm", "conditioning.discriminator": "projection"}),
    ("cifar10_sngan", {"dataset": "cifar10", "model": "sngan", "loss": "hinge", "loss.critic_steps": 5,
                       "optimizer.g.lr": 2e-4, "optimizer.d.betas": [0.0, 0.9], "train.steps": 50000, "train.batch_size": 64,
                       "train.lr_schedule": "linear", "model.discriminator.spectral_norm": True, "conditioning": "none"}),
    ("cifar10_cgan_pd", {"model": "sngan", "loss": "hinge", "conditioning.generator": "batchnorm",
                         "conditioning.discriminator": "projection", "loss.critic_steps": 5, "optimizer.d.lr": 2e-4,
                         "train.steps": 50000, "train.lr_schedule": "linear"}),
    ("cifar10_biggan", {"dataset": "cifar10", "model": "biggan", "loss": "hinge", "conditioning": "projection",
                        "model.generator.width": 64, "model.discriminator.width": 64, "model.generator.latent_dim": 128,
                        "model.generator.shared_embedding": False, "model.generator.hierarchical": False,
                        "model.generator.attention": None, "model.discriminator.attention": None, "model.generator.init": "N02",
                        "model.discriminator.init": "N02", "loss.critic_steps": 4, "optimizer.g.lr": 2e-4, "optimizer.d.lr": 2e-4,
                        "optimizer.g.betas": [0.0, 0.999], "optimizer.d.betas": [0.0, 0.999], "train.batch_size": 50,
                        "train.steps": 125000, "train.lr_schedule": "constant", "train.ema.start": 1000}),
    ("cifar10_wgangp_resnet", {"model": "sngan", "loss.regularisers.gradient_penalty.weight": 10.0, "loss.critic_steps": 5,
                               "model.generator.width": 128, "model.discriminator.width": 128,
                               "model.discriminator.spectral_norm": False, "model.discriminator.pooling": "mean",
                               "optimizer.g.lr": 2e-4, "optimizer.g.betas": [0.0, 0.9], "train.steps": 100000,
                               "train.lr_schedule": "linear"}),
])
def test_experiment_has_its_classic_settings(experiment: str, expected: dict) -> None:
    from omegaconf import OmegaConf

    cfg, choices = compose_config(f"experiment={experiment}")
    for key, value in expected.items():
        actual = choices[key] if key in choices else OmegaConf.select(cfg, key)
        actual = OmegaConf.to_container(actual) if OmegaConf.is_config(actual) else actual
        assert actual == value, key


def test_command_line_wins_over_an_experiment() -> None:
    cfg, choices = compose_config("experiment=camel_gan", "train.steps=10", "optimizer=adam")
    assert cfg.train.steps == 10 and choices["optimizer"] == "adam" and choices["model"] == "conv"

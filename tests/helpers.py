"""Test helpers: the real composed config with tiny CPU overrides, and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from ganctl.config import config_dir
from ganctl.overrides import expand_shorthands
from ganctl import config  # noqa: F401  (registers the schema with Hydra's ConfigStore)

# Small networks and few steps: every test trains in seconds on a CPU.
TINY = [
    "train.steps=4",
    "train.batch_size=8",
    "train.log_every=2",
    "train.sample_every=2",
    "train.ckpt_every=2",
    "train.num_samples=16",
    "train.device=cpu",
    "train.curves=false",  # matplotlib costs a second or two a run; tests/test_plots.py draws them
]
TINY_DCGAN = ["model.generator.base_filters=8", "model.discriminator.base_filters=8", "model.generator.latent_dim=16"]
# A StyleGAN2 of a few thousand parameters: the full procedure (R1, path length, mixing) in well under a second a step.
TINY_STYLEGAN2 = [
    "model=stylegan2", "dataset.image_size=32", "model.generator.latent_dim=16", "model.generator.w_dim=16",
    "model.generator.mapping_layers=2", "model.generator.channel_base=256", "model.generator.channel_max=16",
    "model.discriminator.channel_base=256", "model.discriminator.channel_max=16", "model.discriminator.mapping_layers=2",
    "train.channels_last=false", "train.precision=fp32",
]


def compose_config(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
    """The config `ganctl train <overrides>` would run with (shorthands expanded as the CLI does), and
    the chosen group options."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=expand_shorthands(list(overrides)), return_hydra_config=True)
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def build_gan(cfg: DictConfig, device: str = "cpu"):
    """The GAN a run of `cfg` trains, built as the run builds it (from the seed, for the dataset's shape)."""
    import torch

    from ganctl import data
    from ganctl.gan import GAN
    from ganctl.train import seed_everything

    seed_everything(cfg.train.seed)
    images = data.build(cfg.dataset, torch.device(device))
    return GAN.from_config(cfg, images.channels, images.image_size, torch.device(device)), images


def run(run_dir: Path, *overrides: str, resume: dict | None = None):
    """Train `ganctl train <overrides>` in run_dir in this process (resume: a checkpoint's state, whose
    stored config the overrides are merged onto as `ganctl train resume=...` does)."""
    from ganctl.train import train

    cfg, choices = compose_config(*overrides)
    if resume is not None:
        cfg = config.resumed_config(resume["config"], resume["choices"], cfg, expand_shorthands(list(overrides)), choices)
        choices = resume["choices"]
    config.check(cfg)
    return train(cfg, run_dir, choices, resume=resume)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `ganctl` console script (falling back to `python -m ganctl`)."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "ganctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def train_in_process(*args: str):
    """`ganctl train ARGS` (one that names hydra.run.dir, or resume= which implies it) without a new
    process: the arguments as `app.main` rewrites them, the composed config, then `app.run` itself
    (the run directory's lock, which checkpoint resume= means, the checks against later work, training)."""
    from omegaconf import OmegaConf

    from ganctl import app

    args = app.resume_arguments(list(args))
    run_dir = next(a.split("=", 1)[1] for a in reversed(args) if a.startswith("hydra.run.dir="))
    task = expand_shorthands([a for a in args if not a.startswith("hydra.")])
    cfg, choices = compose_config(*task)
    hydra_cfg = OmegaConf.create({"runtime": {"output_dir": str(Path(run_dir).resolve()), "choices": choices},
                                  "overrides": {"task": task}})
    return app.run(cfg, hydra_cfg)


def poison_generator_loss(monkeypatch, at_call: int = 3) -> None:
    """G's loss (the default's relativistic one) turns NaN at its `at_call`-th call, step `at_call` of a run."""
    from ganctl import losses

    calls = {"n": 0}
    real_loss = losses.relativistic_generator_loss

    def poisoned(fake_scores, real_scores):
        calls["n"] += 1
        return real_loss(fake_scores, real_scores) * (float("nan") if calls["n"] == at_call else 1.0)

    monkeypatch.setattr(losses, "relativistic_generator_loss", poisoned)

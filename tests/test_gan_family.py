"""Every model x loss pair trains with finite losses, or is refused before training in one line by a
rule of one of its loss's regularisers (each rule has its own test: the BatchNorm critic here, the W
space in test_stylegan2.py); what each loss needs watched is logged; unwise pairs are warned about."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganctl import checkpoint, registry
from ganctl.config import config_dir
from ganctl.errors import GanctlError
from helpers import TINY, compose_config, run_cli, run

def options(group: str) -> list[str]:
    return sorted(path.stem for path in (Path(config_dir()) / group).glob("*.yaml"))


MODELS, LOSSES = options("model"), options("loss")  # every option, including ones added later
SMALL = {  # narrower networks than the presets, so that 36 pairs train in seconds
    "dcgan": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "dcgan_small": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "dcgan_r1": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "wgan": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "wgangp": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "mlp": ["model.generator.hidden=[32]", "model.discriminator.hidden=[32]"],
    "conv": ["model.generator.filters=[16,8,8]", "model.discriminator.filters=[8,8,16,16]"],
    "sngan": ["model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16", "train.channels_last=false"],
    "biggan": ["model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=12",
               "model.generator.shared_dim=8", "train.channels_last=false"],
    "r3gan": ["model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16",
              "model.generator.blocks=[1,1,1,1]", "model.discriminator.blocks=[1,1,1,1]", "train.channels_last=false"],
    "stylegan2": ["dataset.image_size=32", "model.generator.latent_dim=16", "model.generator.w_dim=16",
                  "model.generator.mapping_layers=1", "model.generator.channel_base=128", "model.generator.channel_max=8",
                  "model.discriminator.channel_base=128", "model.discriminator.channel_max=8"],
}
FAST = [*TINY, "train.steps=2", "train.sample_every=0", "train.ckpt_every=0", "loss.critic_steps=2"]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", MODELS)
def test_every_pair_trains_or_is_refused_by_a_rule_of_its_regularisers(tmp_path: Path, model: str, loss: str) -> None:
    overrides = [f"model={model}", f"loss={loss}", *SMALL.get(model, []), *FAST]
    try:
        result = run(tmp_path, *overrides)
    except GanctlError as error:
        units = compose_config(*overrides)[0].loss.regularisers
        assert any(f"loss.regularisers.{name}" in str(error) for name in units), error
        assert "\n" not in str(error) and not (tmp_path / "checkpoints").exists()  # one line, before training
        return
    assert result.step == 2
    assert all(math.isfinite(value) for value in result.summary["losses"].values())


def scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_wgan_keeps_every_critic_parameter_inside_the_clip_bound(tmp_path: Path) -> None:
    run(tmp_path, "model=wgan", *SMALL["wgan"], *TINY, "optimizer.d.lr=0.05")  # a large lr pushes past c
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    cfg, _ = compose_config("model=wgan", *SMALL["wgan"])
    critic = registry.build(cfg.model.discriminator, "model.discriminator", channels=1, image_size=28)
    critic.load_state_dict(state["discriminator"])
    bound = torch.tensor(0.01)
    assert all(parameter.abs().max() <= bound for parameter in critic.parameters())
    assert any(parameter.abs().max() == bound for parameter in critic.parameters())  # clipping was active
    logged = scalars(tmp_path)
    assert "d/wasserstein" in logged and "reg/gradient_penalty" not in logged


def test_wgangp_logs_the_distance_estimate_and_the_penalty(tmp_path: Path) -> None:
    run(tmp_path, "model=wgangp", *SMALL["wgangp"], *TINY)
    logged = scalars(tmp_path)
    assert len(logged["d/wasserstein"]) == 2 and len(logged["reg/gradient_penalty"]) == 2
    for real, fake, distance in zip(logged["d/real"], logged["d/fake"], logged["d/wasserstein"]):
        assert distance == pytest.approx(real - fake, rel=1e-5, abs=1e-6)
    assert all(value >= 0 for value in logged["reg/gradient_penalty"])


def test_bce_family_logs_probabilities(tmp_path: Path) -> None:
    run(tmp_path, "loss=minimax", *SMALL["dcgan_small"], *TINY)
    logged = scalars(tmp_path)
    assert all(0.0 <= value <= 1.0 for value in logged["d/real"] + logged["d/fake"])
    assert "d/wasserstein" not in logged


@pytest.mark.parametrize("loss,critic_steps", [("hinge", 3), ("wgangp", 5)])
def test_critic_steps_per_generator_step(tmp_path: Path, loss: str, critic_steps: int) -> None:
    model = "wgangp" if loss == "wgangp" else "dcgan_small"
    overrides = [f"model={model}", f"loss={loss}", *SMALL[model], *TINY]
    if loss == "hinge":
        overrides.append(f"loss.critic_steps={critic_steps}")
    run(tmp_path, *overrides)
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    adam_steps = lambda optimizer: {int(s["step"]) for s in optimizer["state"].values()}  # noqa: E731
    assert adam_steps(state["optimizer_g"]) == {4}
    assert adam_steps(state["optimizer_d"]) == {4 * critic_steps}


def test_label_tricks_train(tmp_path: Path) -> None:
    result = run(tmp_path, *SMALL["dcgan_small"], *TINY, "loss=bce", "loss.discriminator.real_target=0.9",
                 "loss.discriminator.label_noise=0.1", "loss.discriminator.flip_prob=0.05")
    assert result.summary["losses"]["d_loss"] > 0


@pytest.mark.parametrize("override,message", [
    ("loss.discriminator.label_noise=1.5", "label_noise must be in"),
    ("loss.discriminator.real_target=1.2", "real_target must be in"),
    ("loss.critic_steps=0", "critic_steps must be at least 1"),
])
def test_bad_loss_values_are_refused(override: str, message: str) -> None:
    from ganctl.losses import GANLoss

    cfg, _ = compose_config("loss=bce", override)  # BCE: the loss with label settings
    with pytest.raises(GanctlError, match=message):
        GANLoss.from_config(cfg.loss)


def test_sigmoid_on_a_wasserstein_critic_is_refused() -> None:
    from ganctl.losses import GANLoss

    cfg, _ = compose_config("model=wgan")
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 1), torch.nn.Sigmoid())
    with pytest.raises(GanctlError, match="ends in a sigmoid"):
        GANLoss.from_config(cfg.loss).check_critic(critic, cfg.optimizer.d)


@pytest.mark.parametrize("overrides,warning", [
    (["model=wgan", "optimizer=adam"], "Weight clipping with a momentum optimizer (Adam)"),
    (["model=wgangp", "loss.gradient_penalty=0"], "nothing keeps the critic Lipschitz"),
    (["model=wgangp", "loss.clip=0.01"], "Both weight clipping and a gradient penalty"),
])
def test_unwise_pairs_are_warned_about(tmp_path: Path, caplog, overrides: list[str], warning: str) -> None:
    model = overrides[0].split("=")[1]
    with caplog.at_level(logging.WARNING, logger="ganctl"):
        run(tmp_path, *overrides, *SMALL[model], *FAST)
    assert warning in caplog.text


def test_no_warning_for_the_reference_settings(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ganctl"):
        run(tmp_path, "model=wgan", *SMALL["wgan"], *FAST)
    assert "warning" not in caplog.text.lower() and not caplog.records


def test_cli_refuses_batchnorm_with_a_gradient_penalty(tmp_path: Path) -> None:
    result = run_cli("train", "model=dcgan", "loss=wgangp", *TINY, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert "gradient penalty (loss.regularisers.gradient_penalty) needs a critic without BatchNorm" in result.stderr
    assert "model=wgangp" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a refused run leaves no directory behind

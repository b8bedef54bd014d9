"""Regularisers as units (ganctl/regularisers.py): the images every D-side term sees, the flat keys of
earlier versions (command-line shorthands, old checkpoints), and a user's own unit trained from the
command line and shown by its name everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, data, plots
from ganctl.errors import GanctlError
from ganctl.overrides import expand_shorthands

from helpers import TINY, TINY_DCGAN, build_gan, compose_config, run_cli


def test_every_d_side_term_sees_the_images_as_d_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """With DiffAugment on, R1's reals, R2's fakes and the gradient penalty's interpolates all go through
    it (and ADA) before D scores them; `diffaugment=false` keeps the old penalty's view (ADA only)."""
    from ganctl import gan as gan_module

    seen: list[torch.Tensor] = []
    original = gan_module.augment
    monkeypatch.setattr(gan_module, "augment", lambda images, policy: seen.append(images.detach()) or original(images, policy))
    overrides = [*TINY, *TINY_DCGAN, "model=wgangp", "loss.critic_steps=1", "train.augment=[translation]",
                 "loss.r1_gamma=1", "loss.r2_gamma=1"]
    for diffaugment, interpolates_seen in ((True, True), (False, False)):
        seen.clear()
        gan, images = build_gan(compose_config(*overrides, f"++loss.regularisers.gradient_penalty.diffaugment={diffaugment}")[0])
        gan.step(data.endless(images, 8), 1)
        # D's loss: the reals and the fakes; then each term, in the loss's order: the interpolates (the
        # gradient penalty), the reals (R1), the fakes (R2); then G's update: the fakes.
        assert len(seen) == (6 if interpolates_seen else 5)
        terms = seen[2:-1]
        assert torch.equal(terms[-2], seen[0]) and torch.equal(terms[-1], seen[1])  # R1 at the reals, R2 at the fakes
        if interpolates_seen:
            assert not torch.equal(terms[0], seen[0]) and not torch.equal(terms[0], seen[1])


def test_the_flat_keys_of_earlier_versions_keep_their_meaning() -> None:
    """On the command line: a shorthand sets its unit's key, adding the unit when the loss lacks it,
    sweeps included; in an old checkpoint's config: the units those keys described."""
    cfg, _ = compose_config("loss=bce", "loss.r1_gamma=10", "loss.r1_every=4", "loss.clip=0")
    assert dict(cfg.loss.regularisers.r1) == {"_target_": "ganctl.regularisers.R1", "gamma": 10, "every": 4}
    assert cfg.loss.regularisers.clip.bound == 0
    assert compose_config("model=wgangp", "loss.gradient_penalty=0")[0].loss.regularisers.gradient_penalty.weight == 0
    assert expand_shorthands(["-m", "loss.r2_gamma=1,10", "train.steps=5"]) == [
        "-m", "++loss.regularisers.r2._target_=ganctl.regularisers.R2", "++loss.regularisers.r2.gamma=1,10", "train.steps=5"]
    old = {"config": {"loss": {"generator": {"_target_": "ganctl.losses.wasserstein_generator_loss"},
                               "discriminator": {"_target_": "ganctl.losses.wasserstein_discriminator_loss"},
                               "gradient_penalty": 10.0, "clip": 0.0, "r1_gamma": 0.0, "r1_every": 16,
                               "path_length": 0.0, "path_length_every": 4}},
           "choices": {"model": "wgangp"}, "rng": {}, "path_length_mean": torch.zeros(())}
    upgraded = checkpoint.upgrade(old)
    loss = upgraded["config"]["loss"]
    assert loss["regularisers"] == {"gradient_penalty": {"_target_": "ganctl.regularisers.GradientPenalty", "weight": 10.0,
                                                         "diffaugment": False}}  # only what was on, as it was computed
    assert (loss["relativistic"], loss["boundary"]) == (False, None) and "path_length_mean" not in upgraded


PENALTY = '''
from ganctl.regularisers import Regulariser


class LogitPenalty(Regulariser):
    """D's squared scores of the real images: keeps its logits small."""

    def penalty(self, inputs):
        return inputs.scores(inputs.real).square().mean()
'''


def test_a_users_own_regulariser_trains_from_the_command_line_and_shows_by_its_name(tmp_path: Path) -> None:
    (tmp_path / "my_penalties.py").write_text(PENALTY)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    run_dir = tmp_path / "run"
    unit = ["+loss.regularisers.logits._target_=my_penalties.LogitPenalty", "+loss.regularisers.logits.weight=0.01"]
    result = run_cli("--trust", "my_penalties", "train", *TINY, *TINY_DCGAN, *unit, "train.curves=true",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["statistics"]["reg/logits"] > 0 and {"reg/r1", "reg/r2"} <= set(summary["statistics"])
    series = plots.read_scalars(run_dir)  # TensorBoard
    assert len(series["reg/logits"][1]) == 2
    figure = plots.curves_figure(series, "t")  # what curves.png draws
    panels = {axis.get_title(): [line.get_label() for line in axis.get_lines()] for axis in figure.axes if axis.get_visible()}
    assert panels["regularisers"] == ["reg/logits", "reg/r1", "reg/r2"] and (run_dir / "curves.png").exists()
    assert "logits" in (run_dir / "train.log").read_text()  # the progress lines
    refused = run_cli("sample", str(run_dir), "--num", "4", cwd=tmp_path, env=env)  # the file names the unit; only the user trusts it
    assert refused.returncode == 1 and "--trust my_penalties" in refused.stderr, refused.stderr
    assert run_cli("--trust", "my_penalties", "sample", str(run_dir), "--num", "4", cwd=tmp_path, env=env).returncode == 0


def test_finite_difference_r1_estimates_the_exact_penalty_and_its_gradient_without_a_double_backward() -> None:
    """R1/R2 with `sigma` (Seaweed-APT's approximated R1): ((D(x + sigma e) - D(x)) / sigma)^2 has mean
    ||grad D(x)||^2, for the default run's critic too, and its gradient for D's weights points, on
    average, where the exact penalty's does; it takes no double backward, so D compiles under train.compile."""
    from ganctl import speed
    from ganctl.regularisers import R1, squared_gradient_norm, squared_score_change

    torch.manual_seed(0)
    cfg = compose_config(*TINY_DCGAN, "train.precision=fp32", "train.channels_last=false",
                         "loss.regularisers.r1.sigma=0.001", "loss.regularisers.r2.sigma=0.001")[0]
    gan, images = build_gan(cfg)
    real = images.images[:16].float() / 127.5 - 1
    estimate = torch.stack([squared_score_change(gan.discriminator, real, 1e-3) for _ in range(100)]).mean()
    assert estimate.item() == pytest.approx(squared_gradient_norm(gan.discriminator, real).item(), rel=0.1)

    # The gradient of a one-draw estimate is noisy in proportion to the image's size: on 4-pixel images,
    # 4,000 draws of each of 8 pin its mean down.
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1),
                                 torch.nn.Flatten(0))
    small = torch.randn(8, 1, 2, 2)
    weights = list(critic.parameters())
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(squared_gradient_norm(critic, small), weights[:3])])
    drawn = squared_score_change(critic, small.repeat(4000, 1, 1, 1), 1e-3)
    approximate = torch.cat([g.flatten() for g in torch.autograd.grad(drawn, weights[:3])])  # (the last bias moves neither)
    assert torch.nn.functional.cosine_similarity(exact, approximate, dim=0) > 0.95

    assert not R1(gamma=1.0, sigma=0.01).double_backward and R1(gamma=1.0).double_backward
    assert gan.loss.double_backward("discriminator") == ""  # so nothing keeps D eager:
    assert isinstance(speed.compiled(gan.discriminator, "D", True, gan.loss.double_backward("discriminator")), speed.CompiledOrEager)
    with pytest.raises(GanctlError, match="sigma must be a positive noise scale"):
        build_gan(compose_config(*TINY_DCGAN, "loss.regularisers.r1.sigma=0")[0])

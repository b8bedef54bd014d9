"""Schedules (train.schedules, ganctl/schedules.py): R3GAN's cosine with warm-up, computed by hand;
every knob set by it at each step, logged and drawn; a run with every knob scheduled resumes exactly;
the settings it refuses, each in one line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, config, data
from ganctl.errors import GanctlError
from ganctl.overrides import check_override_keys
from ganctl.schedules import Schedule
from helpers import TINY, TINY_DCGAN, build_gan, compose_config, run
from test_gan_family import scalars
from test_train import straight_and_resumed

# Every knob on a schedule that ends within the tiny runs' 4 steps of 8 images.
EVERY_KNOB = {
    "lr": "{base:2e-3,final:5e-4,images:24}",
    "beta2": "{base:0.9,final:0.99,images:24}",
    "r1": "{base:0.2,final:0.02,images:24,warmup_images:8,warmup_value:0.05}",
    "ema_half_life_kimg": "{base:0,final:0.05,images:24}",
    "ada_p": "{base:0,final:0.5,images:24}",
}
SCHEDULED = [*TINY, *TINY_DCGAN, "train.precision=fp32", "train.channels_last=false", "train.ada.mode=fixed",
             "loss.r1_every=1", *(f"+train.schedules.{knob}={value}" for knob, value in EVERY_KNOB.items())]


def test_the_cosine_with_warm_up_by_hand() -> None:
    cosine = Schedule(base=2.0, final=1.0, images=100)
    assert (cosine(0), cosine(100), cosine(10**9)) == (2.0, 1.0, 1.0)
    assert cosine(50) == pytest.approx(1.5)  # half way down a half cosine: the midpoint
    assert cosine(25) == pytest.approx(2.0 - 0.5 * (1 - math.cos(math.pi / 4)))
    warm = Schedule(base=1.0, final=0.0, images=110, warmup_images=10, warmup_value=0.2)
    assert (warm(0), warm(5), warm(10)) == (pytest.approx(0.2), pytest.approx(0.6), pytest.approx(1.0))  # linear to base
    assert warm(60) == pytest.approx(0.5)  # the cosine runs from the warm-up's end to `images`


def test_every_knob_takes_its_scheduled_value_at_each_step() -> None:
    gan, images = build_gan(compose_config(*SCHEDULED)[0])
    schedules = {knob: Schedule.from_node(config_node) for knob, config_node in compose_config(*SCHEDULED)[0].train.schedules.items()}
    batches = data.endless(images, 8)
    r1 = next(unit for unit in gan.loss.regularisers if unit.name == "r1")
    for step in range(1, 5):
        gan.step(batches, step)
        if step == 1:  # a half-life of 0 images: the EMA is a copy of G
            assert all(torch.equal(a, b) for a, b in zip(gan.generator_ema.parameters(), gan.generator.parameters()))
        seen = (step - 1) * 8  # the images of the steps before this one
        for optimizer in (gan.optimizer_g, gan.optimizer_d):
            assert optimizer.param_groups[0]["lr"] == pytest.approx(schedules["lr"](seen))
            assert optimizer.param_groups[0]["betas"] == (0.5, pytest.approx(schedules["beta2"](seen)))  # beta1 kept
        assert r1.gamma == pytest.approx(schedules["r1"](seen)) and r1.scale == pytest.approx(schedules["r1"](seen) / 2)
        assert gan.ada.p.item() == pytest.approx(schedules["ada_p"](seen))
        assert gan.ema_half_life == pytest.approx(schedules["ema_half_life_kimg"](seen) * 1000)
    assert gan.scalars({})["schedule/r1"] == pytest.approx(schedules["r1"](24))


def test_a_run_with_every_knob_scheduled_logs_them_and_resumes_exactly(tmp_path: Path) -> None:
    straight, resumed = straight_and_resumed(tmp_path, SCHEDULED)
    torch.testing.assert_close(straight, resumed, rtol=0, atol=0)
    for run_dir in (tmp_path / "straight", tmp_path / "resumed"):
        state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
        assert state["augment"]["p"].item() == pytest.approx(Schedule(0.0, 0.5, 24)(24))
    logged = scalars(tmp_path / "straight")
    assert sorted(tag for tag in logged if tag.startswith("schedule/")) == sorted(f"schedule/{knob}" for knob in EVERY_KNOB)
    assert logged["schedule/lr"] == pytest.approx([Schedule(2e-3, 5e-4, 24)(8), 5e-4])  # steps 2 and 4: after 8 and 24 images
    assert logged["lr/g"] == pytest.approx(logged["schedule/lr"])


@pytest.mark.parametrize("overrides,message", [
    (["+train.schedules.lrr={base:1,final:1,images:1}"], "train.schedules.lrr: no such knob; schedules are for lr, beta2"),
    (["+train.schedules.lr={base:1e-3,fnal:1e-4,images:10}"], "Unknown key train.schedules.lr.fnal: did you mean train.schedules.lr.final"),
    (["+train.schedules.lr={base:1e-3,images:10}"], "train.schedules.lr needs final"),
    (["+train.schedules.lr={base:1e-3,final:0,images:10}"], "train.schedules.lr.final must be a learning rate above 0"),
    (["+train.schedules.beta2={base:0.9,final:1.0,images:10}"], r"train.schedules.beta2.final must be Adam's beta2, in \[0, 1\)"),
    (["+train.schedules.lr={base:1e-3,final:1e-4,images:10,warmup_images:10}"], "warmup_images must be 0 or more and below"),
    (["+train.schedules.lr={base:1e-3,final:1e-4,images:10}", "train.lr_schedule=linear"], "both move the learning rate"),
    (["+train.schedules.ada_p={base:0,final:0.5,images:10}"], "needs train.ada.mode=fixed"),
    (["+train.schedules.ema_half_life_kimg={base:0,final:5,images:10}", "train.ema.half_life_kimg=10"],
     "leave train.ema.half_life_kimg and train.ema.rampup null"),
])
def test_what_a_schedule_cannot_be_is_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(GanctlError, match=message) as refused:
        config.check(compose_config(*overrides)[0])
    assert "\n" not in str(refused.value)


def test_a_schedule_for_a_knob_the_gan_lacks_is_refused_before_training() -> None:
    off = compose_config(*TINY_DCGAN, "loss.r1_gamma=0", "+train.schedules.r1={base:1,final:0.1,images:10}")[0]
    with pytest.raises(GanctlError, match="train.schedules.r1 schedules loss.regularisers.r1, which is off"):
        build_gan(off)
    without_betas = compose_config(*TINY_DCGAN, "optimizer=rmsprop", "+train.schedules.beta2={base:0.9,final:0.99,images:10}")[0]
    with pytest.raises(GanctlError, match="an optimizer here has no betas"):
        build_gan(without_betas)


def test_a_new_schedule_on_the_command_line_is_added_with_a_plus() -> None:
    check_override_keys(["+train.schedules.lr={base:1e-3,final:1e-4,images:10}", "train.steps=3"])  # accepted
    with pytest.raises(GanctlError, match=r"add it with \+train.schedules.lr="):
        check_override_keys(["train.schedules.lr={base:1e-3,final:1e-4,images:10}"])

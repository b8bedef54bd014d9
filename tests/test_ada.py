"""ADA (ganctl/ada.py): each transform keeps shape and values and lets gradients through, p = 0 is
the identity, p follows the overfitting heuristic by the reference's rule, the GAN's step uses it
with every loss, and p resumes exactly. (Two ranks agreeing on p: tests/test_ddp.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganctl import ada, checkpoint, config
from ganctl import data as datasets
from ganctl.ada import TRANSFORMS, AdaptiveAugment, pipeline
from ganctl.errors import GanctlError
from ganctl.gan import GAN
from helpers import TINY, TINY_DCGAN, build_gan, compose_config, run

ON = ["train.ada.mode=adaptive", "train.ada.interval=1", "train.ada.kimg=0.05"]  # p moves 0.16 per step at batch 8


def images(batch: int = 16, channels: int = 3, size: int = 8) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_keeps_shape_and_lets_gradients_through(name: str) -> None:
    torch.manual_seed(0)
    x = images().requires_grad_(True)
    out = pipeline(x, 1.0, [name])
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.equal(out, x)  # p = 1: it did something
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if name in ("xflip", "rotate90", "translation"):  # pixels are moved, never changed
        per_image = lambda t: t.detach().flatten(1).sort(1).values  # noqa: E731
        if name != "translation":
            assert torch.equal(per_image(out), per_image(x))
        assert torch.isin(out.detach(), x.detach()).all()
    if name == "cutout":  # a square of half the size set to mid-grey, the rest untouched
        blank = (out == 0).all(1)
        assert torch.equal(torch.where(blank.unsqueeze(1), x, out), x.detach())
        assert ((blank.flatten(1).sum(1) >= 4) & (blank.flatten(1).sum(1) <= 16)).all()
    if name == "brightness":  # one offset per image
        shift = (out - x).detach().flatten(1)
        torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))
    if name == "contrast":  # one factor per image, about 0
        ratio = (out / x).detach().flatten(1)
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    if name == "saturation":  # each pixel's channel mean is kept
        torch.testing.assert_close(out.mean(1), x.mean(1))


def test_the_pipeline_is_its_transforms_one_by_one() -> None:
    x = images()
    torch.manual_seed(3)
    one_by_one = x
    for name in TRANSFORMS:
        one_by_one = ada.FUNCTIONS[name](one_by_one, 0.7)
    torch.manual_seed(3)
    assert torch.equal(pipeline(x, 0.7), one_by_one)
    square = torch.arange(16.0).view(1, 1, 4, 4).expand(8, 1, 4, 4)
    turned = ada.rotate90(square, 1.0)
    assert all(any(torch.equal(image, square[0].rot90(k, (1, 2))) for k in range(4)) for image in turned)
    flipped = ada.xflip(square, 1.0)
    assert all(torch.equal(image, square[0]) or torch.equal(image, square[0].flip(2)) for image in flipped)


def test_p_zero_is_the_identity_and_grey_images_keep_their_saturation() -> None:
    x = images()
    assert torch.equal(pipeline(x, 0.0), x)
    assert torch.equal(pipeline(x, torch.tensor(0.0)), x)
    grey = images(channels=1)
    assert torch.equal(ada.saturation(grey, 1.0), grey)


def test_each_image_is_augmented_with_probability_p() -> None:
    torch.manual_seed(0)
    x = images(batch=4000, size=4)
    changed = (ada.brightness(x, 0.3) != x).flatten(1).any(1).float().mean()
    assert changed.item() == pytest.approx(0.3, abs=0.03)


def test_p_rises_while_d_overfits_and_falls_otherwise_by_the_reference_rule() -> None:
    heuristic = AdaptiveAugment("adaptive", 0.5, target=0.6, interval=2, kimg=1, transforms=list(TRANSFORMS),
                                device=torch.device("cpu"))
    overfit = torch.tensor([3.0, 1.0, 0.5, 2.0, 1.0, 4.0, 0.1, 9.0])  # D scores every real image positive: r_t = 1
    heuristic.observe(overfit)
    heuristic.adjust(1)  # not an adjustment step: the counts accumulate
    assert heuristic.p.item() == 0.5
    heuristic.observe(overfit)
    heuristic.adjust(2)  # 16 images since the last: p += 16 / 1000
    assert heuristic.p.item() == pytest.approx(0.516)
    assert heuristic.signs.tolist() == [0.0, 0.0]
    honest = torch.tensor([1.0, -1.0, -2.0, 3.0])  # r_t = 0 < 0.6
    for step in (3, 4):
        heuristic.observe(honest)
        heuristic.adjust(step)
    assert heuristic.p.item() == pytest.approx(0.508)
    low = AdaptiveAugment("adaptive", 0.001, 0.6, 1, 1, ["xflip"], torch.device("cpu"))
    low.observe(-torch.ones(8))
    low.adjust(1)
    assert low.p.item() == 0.0  # clamped into [0, 1]
    fixed = AdaptiveAugment("fixed", 0.3, 0.6, 1, 1, ["xflip"], torch.device("cpu"))
    fixed.observe(torch.ones(8))
    fixed.adjust(1)
    assert fixed.p.item() == pytest.approx(0.3)


def test_the_step_raises_p_when_d_scores_every_real_image_positive() -> None:
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, *ON, "train.ada.interval=2")
    gan, data = build_gan(cfg)
    gan.critic_call = lambda x: x.flatten(1).mean(1) * 0 + 5.0 + sum(p.sum() * 0 for p in gan.discriminator.parameters())
    batches = datasets.endless(data, 8)
    p = [gan.step(batches, step)["augment/p"].item() for step in range(1, 5)]
    assert p == pytest.approx([0.0, 0.32, 0.32, 0.64])  # every 2 steps: + 16 images / 50


@pytest.mark.parametrize("overrides", [["loss=bce"], ["loss=hinge"], ["loss=lsgan"], ["loss=minimax"],
                                       ["loss=wgan", "loss.critic_steps=2"],
                                       ["loss=wgangp", "loss.critic_steps=1", "model.discriminator.norm=layer"],
                                       ["conditioning=projection", "train.precision=bf16", "train.augment=[color]"]],
                         ids=lambda o: o[0].split("=")[-1])
def test_a_few_steps_with_ada_train_every_loss(overrides: list[str]) -> None:
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, *ON, "train.ada.p=0.5", *overrides)
    data = datasets.build(cfg.dataset, torch.device("cpu"), labels=config.is_conditional(cfg))
    gan = GAN.from_config(cfg, data.channels, data.image_size, torch.device("cpu"), classes=data.classes)
    batches = datasets.endless(data, 8, labels=gan.conditional)
    before = [p.clone() for p in gan.generator.parameters()]
    stats = [gan.step(batches, step) for step in range(1, 3)]
    assert all(torch.isfinite(value) for step in stats for value in step.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, gan.generator.parameters()))
    move = gan.loss.critic_steps * 8 / 50  # each step's real images / (kimg * 1000), up or down (or 0 at r_t = target)
    assert any(gan.ada.p.item() == pytest.approx(min(max(0.5 + k * move, 0), 1)) for k in range(-2, 3))
    assert set(stats[-1]) >= {"augment/p", "augment/r_t"}


def test_settings_are_checked_and_unwise_combinations_warned(capsys: pytest.CaptureFixture) -> None:
    for override, message in [("train.ada.mode=always", "train.ada.mode"), ("train.ada.p=1.5", "train.ada.p"),
                              ("train.ada.transforms=[xflip,hue]", "'hue'"), ("train.ada.kimg=0", "train.ada.kimg")]:
        cfg, _ = compose_config(*TINY, override)
        with pytest.raises(GanctlError, match=message):
            config.check(cfg)
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, *ON, "train.augment=[translation]", "loss=lsgan")
    build_gan(cfg)
    err = capsys.readouterr().err
    assert "together with DiffAugment" in err and "r_t = E[sign(D(real))]" in err
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, *ON)
    build_gan(cfg)
    assert "warning" not in capsys.readouterr().err


def test_resume_with_p_moving_is_exact(tmp_path: Path) -> None:
    """Stopped at step 3, one step into an interval of 2: the resumed run keeps p, the heuristic's
    counts and the schedule, and ends where 4 steps straight do."""
    overrides = [*TINY, "model=dcgan_small", *TINY_DCGAN, "train.precision=fp32", "train.channels_last=false", "train.ada.mode=adaptive",
                 "train.ada.interval=2", "train.ada.kimg=0.05", "train.ckpt_every=0"]
    run(tmp_path / "straight", *overrides, "train.steps=4")
    run(tmp_path / "resumed", *overrides, "train.steps=3")
    state = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert state["augment"]["signs"][1].item() == 8  # step 3's real images, counted towards step 4's adjustment
    run(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", "train.steps=4", resume=state)
    a, b = (checkpoint.load(tmp_path / name / "checkpoints" / "last.pt") for name in ("straight", "resumed"))
    keys = ("generator", "discriminator", "generator_ema", "optimizer_d", "augment")
    torch.testing.assert_close({k: a[k] for k in keys}, {k: b[k] for k in keys}, rtol=0, atol=0)
    assert a["augment"]["p"].item() > 0
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["statistics"]["augment/p"] == pytest.approx(a["augment"]["p"].item(), abs=0.2)
    events = EventAccumulator(str(tmp_path / "straight" / "tb")).Reload()
    assert [e.value for e in events.Scalars("augment/p")] == pytest.approx([0.16, 0.48])  # means of p over steps 1-2, 3-4
    assert len(events.Scalars("augment/r_t")) == 2


def test_a_damaged_ada_state_is_refused_clearly() -> None:
    cfg, _ = compose_config(*TINY, *TINY_DCGAN, *ON)
    gan, _ = build_gan(cfg)
    state = gan.state_dict()
    for bad in ({"p": torch.tensor([0.5, 0.5]), "signs": torch.zeros(2)}, {"p": torch.tensor(7.0), "signs": torch.zeros(2)},
                {"p": "0.5"}, [1, 2]):
        with pytest.raises(GanctlError, match="not a complete ganctl checkpoint"):
            gan.load_state_dict({**state, "augment": bad})

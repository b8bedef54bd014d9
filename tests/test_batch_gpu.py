"""train.batch_gpu: a step in micro-batches is the whole batch's step, up to float summation order, for
networks without BatchNorm; its statistics are the whole batch's; bad values are refused in one message;
a run in micro-batches resumes exactly; running out of memory names the micro-batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, config
from ganctl import data as datasets
from ganctl.errors import GanctlError
from ganctl.gan import GAN, MicroBatches
from ganctl.train import seed_everything
from helpers import TINY, TINY_DCGAN, TINY_STYLEGAN2, compose_config, run

# Networks whose forward passes draw no random numbers and hold no BatchNorm: R3GAN's, and StyleGAN2's
# without noise inputs or style mixing (its D pools minibatch-std groups of 4).
TINY_R3GAN = ["model=r3gan", "model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16",
              "model.generator.blocks=[1,1,1,1]", "model.discriminator.blocks=[1,1,1,1]", "train.channels_last=false"]
STILL_STYLEGAN2 = [*TINY_STYLEGAN2, "model.generator.noise=false", "model.generator.style_mixing=0"]
# The conv model without BatchNorm or dropout: an auxiliary classifier (ACGAN) in D.
STILL_CONV = ["model=conv", "model.generator.batch_norm_momentum=null", "model.discriminator.dropout=null",
              "model.generator.latent_dim=16", "model.generator.filters=[16,8,8]", "model.discriminator.filters=[8,8,16,16]"]
EXACT = ["train.device=cpu", "train.precision=fp32", "train.channels_last=false"]


def trained(overrides: list[str], batch_gpu: int, batch_size: int = 16, steps: int = 2) -> tuple[GAN, list[dict]]:
    """A GAN built as a run builds it, after `steps` steps on the same batches, and the steps' statistics."""
    cfg, _ = compose_config(f"train.batch_size={batch_size}", f"train.batch_gpu={batch_gpu}", *EXACT, *overrides)
    config.check(cfg)
    seed_everything(0)
    images = datasets.build(cfg.dataset, torch.device("cpu"), labels=config.is_conditional(cfg))
    gan = GAN.from_config(cfg, images.channels, images.image_size, torch.device("cpu"), classes=images.classes)
    torch.manual_seed(1)
    batches = datasets.endless(images, batch_size, labels=gan.conditional)
    return gan, [{name: value.item() for name, value in gan.step(batches, step).items()} for step in range(1, steps + 1)]


@pytest.mark.parametrize("overrides, batch_gpu", [
    (TINY_R3GAN, 4),  # RpGAN's pairs, R1 and R2 at every update, G's loss on re-scored reals
    ([*TINY_R3GAN, "loss=rpgan_r1r2", "loss.r1_every=2", "loss.r2_every=2"], 4),  # lazy R1 and R2 (due at update 0, not 1)
    ([*TINY_R3GAN, "conditioning=concat", "conditioning.discriminator=projection"], 4),  # each pass's labels
    ([*STILL_CONV, "conditioning=acgan"], 4),  # the classifier's loss and accuracies
    ([*STILL_STYLEGAN2, "loss.r1_every=2", "loss.path_length_every=2"], 8),  # minibatch std, lazy R1 and path length
], ids=["r3gan", "lazy-r1-r2", "conditional", "acgan", "stylegan2-path-length"])
def test_a_step_in_micro_batches_is_the_whole_batch_step(overrides: list[str], batch_gpu: int) -> None:
    (whole, whole_stats), (parts, parts_stats) = trained(overrides, 16), trained(overrides, batch_gpu)
    for network in ("generator", "discriminator", "generator_ema"):  # (weights: StyleGAN2's w_avg moves per forward pass)
        torch.testing.assert_close(dict(getattr(parts, network).named_parameters()), dict(getattr(whole, network).named_parameters()),
                                   rtol=1e-5, atol=1e-5)
    # The statistics are the whole batch's (weighted means), not the last micro-batch's.
    for in_parts, whole_batch in zip(parts_stats, whole_stats):
        assert in_parts == pytest.approx(whole_batch, rel=1e-5, abs=1e-6)


def test_minibatch_std_groups_stay_whole_in_every_micro_batch() -> None:
    passes = MicroBatches(16, 4, group=4)
    order = passes.arrange(torch.arange(16))
    groups = [set(range(start, 16, 4)) for start in range(4)]  # D's groups in one pass: images i, i + 4, i + 8, i + 12
    for share, part, _ in passes:
        assert share == 0.25 and set(order[part].tolist()) in groups
    assert [last for *_, last in passes] == [False, False, False, True]
    assert MicroBatches(16, 16, group=4).arrange(torch.arange(16)).tolist() == list(range(16))  # one pass: as it is


def test_micro_batches_with_minibatch_std_of_four_at_four_images() -> None:
    """The group's images are spread over the batch (i, i + B/4, ...): each micro-batch must be arranged to hold whole ones."""
    overrides = [*STILL_STYLEGAN2, "loss.regularisers.path_length.weight=0"]
    (whole, _), (parts, _) = trained(overrides, 16, steps=1), trained(overrides, 4, steps=1)
    torch.testing.assert_close(dict(parts.discriminator.named_parameters()), dict(whole.discriminator.named_parameters()),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_gpu", ["0", "3", "16", "-4"])
def test_a_micro_batch_that_does_not_divide_the_batch_is_refused(batch_gpu: str) -> None:
    cfg, _ = compose_config(*TINY, f"train.batch_gpu={batch_gpu}")
    with pytest.raises(GanctlError, match=rf"train.batch_gpu={batch_gpu} must be a whole number of images that divides the batch of 8 "
                                          r"per process \(e.g. train.batch_gpu=4, train.batch_gpu=2, train.batch_gpu=1\)"):
        config.check(cfg)


def test_a_bad_micro_batch_is_one_message_on_the_command_line(tmp_path: Path) -> None:
    from helpers import run_cli

    result = run_cli("train", *TINY, "train.batch_gpu=3", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "train.batch_gpu=3 must be a whole number" in result.stderr and "Traceback" not in result.stderr


def test_minibatch_std_groups_must_divide_the_micro_batch(tmp_path: Path) -> None:
    # model=dcgan_r1 (the default) pools groups of 4 images
    with pytest.raises(GanctlError, match=r"groups of 4 images, which do not divide the micro-batch of train.batch_gpu=2: "
                                          r"choose a micro-batch of whole groups \(e.g. train.batch_gpu=4\)"):
        run(tmp_path, *TINY, *TINY_DCGAN, "train.batch_gpu=2")
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_a_run_in_micro_batches_resumes_exactly(tmp_path: Path) -> None:
    overrides = [*TINY, *TINY_DCGAN, "train.batch_gpu=4", "train.ckpt_every=0"]
    run(tmp_path / "straight", *overrides)
    run(tmp_path / "resumed", *overrides, "train.steps=2")
    state = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert state["config"]["train"]["batch_gpu"] == 4
    run(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", "train.steps=4", resume=state)
    straight, resumed = (checkpoint.load(tmp_path / name / "checkpoints" / "last.pt") for name in ("straight", "resumed"))
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d"):
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_out_of_memory_in_a_micro_batch_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganctl import losses

    real_loss, calls = losses.relativistic_generator_loss, {"n": 0}

    def out_of_memory(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:  # two passes a step: step 3's first
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(fake_scores, real_scores)

    monkeypatch.setattr(losses, "relativistic_generator_loss", out_of_memory)
    with pytest.raises(GanctlError, match=r"Out of CPU memory at step 3, micro-batch 1 of 2 in G's update \(train.batch_gpu=4 of "
                                          r"train.batch_size=8 images per process\): try a smaller micro-batch "
                                          r"\(e.g. train.batch_gpu=2\).*checkpoints/last.pt holds step 2\."):
        run(tmp_path, *TINY, *TINY_DCGAN, "train.batch_gpu=4")
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_the_memory_check_measures_one_micro_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from ganctl import fits

    monkeypatch.setattr(fits, "free_memory", lambda device: 1000)
    measured, critic, cpu = fits.Trial(generator_bytes=100, discriminator_bytes=50), torch.nn.Linear(2, 1), torch.device("cpu")
    with pytest.raises(GanctlError, match=r"train.batch_size=8 needs .* the same batch in micro-batches \(train.batch_gpu=1\)"):
        fits.check_batch(critic, measured, 8, cpu)  # 8 x 200 bytes (the suggestion leaves 3/4 for the backward pass)
    fits.check_batch(critic, measured, 8, cpu, micro_batch=4)  # 4 x 200: fits
    with pytest.raises(GanctlError, match=r"train.batch_gpu=8 needs .* try train.batch_gpu=1, or a smaller model"):
        fits.check_batch(critic, measured, 16, cpu, micro_batch=8)

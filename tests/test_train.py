"""A few-step run writes what it promises; resume is exact; resumed configs refuse changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganctl import checkpoint, config
from ganctl.errors import GanctlError
from ganctl.gan import GAN, ema_decay, update_ema
from helpers import compose_config, poison_generator_loss, run


def test_short_run_writes_checkpoints_logs_samples_and_summary(tmp_path: Path, tiny_overrides: list[str]) -> None:
    result = run(tmp_path, *tiny_overrides)
    assert result.step == 4 and result.interrupted_by is None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt", "step_0000002.pt", "step_0000004.pt"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 4
    assert summary["wall_seconds"] > 0 and summary["images_per_second"] > 0
    assert set(summary["losses"]) == {"d_loss", "g_loss"}
    assert all(isinstance(v, float) for v in summary["losses"].values())
    assert (summary["model"], summary["loss"], summary["dataset"], summary["optimizer"]) == ("dcgan_r1", "rpgan_r1r2", "mnist", "adam_fast")
    assert summary["torch_threads"] == torch.get_num_threads()  # same config + seed = same run, at the same count

    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss/d", "loss/g", "d/real", "d/fake", "speed/images_per_second"} <= scalars
    assert [e.step for e in events.Scalars("loss/d")] == [2, 4]
    assert events.Tags()["images"] == ["samples/fixed_latents"]

    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 4
    assert state["config"]["train"]["steps"] == 4
    assert state["choices"]["model"] == "dcgan_r1"
    assert set(state["rng"]) >= {"torch", "numpy", "python"}


def test_mlp_trains_with_finite_losses(tmp_path: Path) -> None:
    result = run(tmp_path, "model=mlp", "model.generator.hidden=[32,64]", "model.discriminator.hidden=[32]", "train.steps=3",
                 "train.batch_size=8", "train.device=cpu")
    assert all(torch.isfinite(torch.tensor(v)) for v in result.summary["losses"].values())


def weights_and_optimizers(path: Path) -> dict:
    state = checkpoint.load(path)
    return {k: state[k] for k in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d")}


def straight_and_resumed(tmp_path: Path, overrides: list[str], steps: int = 4) -> tuple[dict, dict]:
    """The weights and optimizer states of a run of `steps` straight, and of one stopped halfway and resumed."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(straight, *overrides, f"train.steps={steps}")
    run(resumed, *overrides, f"train.steps={steps // 2}")
    state = checkpoint.load(resumed / "checkpoints" / "last.pt")
    run(resumed, f"resume={resumed}", f"train.steps={steps}", resume=state)
    return tuple(weights_and_optimizers(path / "checkpoints" / "last.pt") for path in (straight, resumed))


def test_resume_is_exact(tmp_path: Path, tiny_overrides: list[str]) -> None:
    straight = tmp_path / "straight"
    run(straight, *tiny_overrides, "train.steps=6", "train.ckpt_every=0")

    resumed = tmp_path / "resumed"
    run(resumed, *tiny_overrides, "train.steps=3", "train.ckpt_every=0")
    state = checkpoint.load(resumed / "checkpoints" / "last.pt")
    assert state["step"] == 3
    run(resumed, f"resume={resumed}", "train.steps=6", resume=state)

    a, b = weights_and_optimizers(straight / "checkpoints" / "last.pt"), weights_and_optimizers(resumed / "checkpoints" / "last.pt")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert checkpoint.load(resumed / "checkpoints" / "last.pt")["step"] == 6


def test_resume_refuses_architecture_changes(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides)
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    cfg, choices = compose_config(*tiny_overrides, "model.generator.base_filters=16")
    with pytest.raises(GanctlError, match="model.generator.base_filters"):
        config.resumed_config(state["config"], state["choices"], cfg, ["model.generator.base_filters=16"], choices)
    cfg, choices = compose_config("model=mlp")
    with pytest.raises(GanctlError, match="model=dcgan"):
        config.resumed_config(state["config"], state["choices"], cfg, ["model=mlp"], choices)
    # Schedule keys may change, and a key given with its stored value is fine.
    cfg, choices = compose_config("train.steps=10", "train.log_every=5", "train.batch_size=8")
    merged = config.resumed_config(state["config"], state["choices"], cfg,
                                   ["train.steps=10", "train.log_every=5", "train.batch_size=8"], choices)
    assert (merged.train.steps, merged.train.log_every, merged.model.generator.base_filters) == (10, 5, 8)


def test_resume_of_a_finished_run_does_nothing(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    result = run(tmp_path, f"resume={tmp_path}", resume=state)
    assert result.step == 4
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_a_new_run_never_overwrites_an_existing_one(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(GanctlError, match="resume="):
        run(tmp_path, *tiny_overrides)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_ema_update_by_hand() -> None:
    model, ema = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        ema.weight.fill_(1.0)
        model.running_mean.fill_(5.0)
    update_ema(ema, model, decay=0.9)
    torch.testing.assert_close(ema.weight, torch.full((2,), 0.9 * 1.0 + 0.1 * 3.0))
    torch.testing.assert_close(ema.running_mean, torch.full((2,), 5.0))  # buffers are copied, not averaged


def test_ema_decay_warms_up() -> None:
    assert ema_decay(0.999, 0) == 0.0
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 100_000) == 0.999


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.steps=0", "train.steps must be at least 1"),
        ("train.batch_size=-2", "train.batch_size must be at least 1"),
        ("train.log_every=-1", "train.log_every must be at least 1"),
        ("train.num_samples=0", "train.num_samples must be at least 1"),
        ("optimizer.g.lr=-1e-3", "optimizer.g.lr must be a positive number"),
        ("train.ema.decay=1.5", "train.ema.decay"),
        ("train.device=tpu", "not a device"),
        ("dataset.image_size=30", "cannot make 30x30"),
        ("model.generator.latent_dim=0", "model.generator cannot make images as configured .*latent_dim=0"),
        ("model.discriminator.base_filters=0", "model.discriminator cannot make images as configured .*base_filters=0"),
        ("model.discriminator.minibatch_std=3", "groups of 3 images, which do not divide the batch of 8"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, tiny_overrides: list[str], override: str, message: str) -> None:
    with pytest.raises(GanctlError, match=message):
        run(tmp_path, *tiny_overrides, override)
    assert not (tmp_path / "checkpoints").exists()



def test_a_batch_whose_activations_exceed_free_memory_is_refused_before_the_first_step(
        tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ganctl import fits

    monkeypatch.setattr(fits, "free_memory", lambda device: 1024)  # 1 KiB free: the OS's answer, made small
    with pytest.raises(GanctlError, match=r"train.batch_size=8 needs at least .* GiB .* more than the 0.0 GiB of CPU memory free"):
        run(tmp_path, *tiny_overrides)
    assert not (tmp_path / "checkpoints").exists()

def test_a_signal_mid_run_then_resume_is_exact(tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT after step 3 of 6 (raised for real, from inside the loop), then resume: the same
    weights, optimizer and schedule states as 6 steps straight, here with a decaying learning rate."""
    import signal

    overrides = [*tiny_overrides, "train.steps=6", "train.lr_schedule=linear"]
    run(tmp_path / "straight", *overrides)

    real_step = GAN.step

    def step_then_interrupt(gan: GAN, batches, step: int):
        statistics = real_step(gan, batches, step)
        if step == 3:
            signal.raise_signal(signal.SIGINT)
        return statistics

    monkeypatch.setattr(GAN, "step", step_then_interrupt)
    interrupted = run(tmp_path / "resumed", *overrides)
    assert (interrupted.step, interrupted.interrupted_by) == (3, "SIGINT")
    monkeypatch.setattr(GAN, "step", real_step)

    state = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert state["step"] == 3
    run(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", resume=state)
    a = checkpoint.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d", "schedulers"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert b["optimizer_g"]["param_groups"][0]["lr"] == 0.0  # linear decay reached 0 at the last step


def test_lr_schedules() -> None:
    from ganctl.gan import lr_factor

    assert [lr_factor("constant", s, 4) for s in (0, 2, 4)] == [1.0, 1.0, 1.0]
    assert [lr_factor("linear", s, 4) for s in (0, 1, 4)] == [1.0, 0.75, 0.0]
    assert lr_factor("cosine", 2, 4) == pytest.approx(0.5)
    assert lr_factor("cosine", 4, 4) == pytest.approx(0.0)


def test_periodic_evaluation_writes_cards_and_keeps_the_best_checkpoint(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    evaluation = ["train.eval_every=2", "metrics.num_fake=64", "metrics.num_real=200", "metrics.names=[fid,kid]",
                  "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:4}"]
    run_dir = tmp_path / "run"
    run(run_dir, *tiny_overrides, *evaluation)

    cards = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(card["metric"], card["step"]) for card in cards] == [("fid", 2), ("kid", 2), ("fid", 4), ("kid", 4)]
    assert all(card["num_fake"] == 64 and card["num_real"] == 200 for card in cards)
    fids = {card["step"]: card["value"] for card in cards if card["metric"] == "fid"}
    best_step = min(fids, key=fids.get)

    best = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["best"] == {"metric": "fid", "value": fids[best_step], "step": best_step}
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert [card["metric"] for card in last["metrics"]] == ["fid", "kid"] and last["metrics"][0]["step"] == 4
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    assert [event.step for event in events.Scalars("metrics/fid")] == [2, 4]
    assert json.loads((run_dir / "summary.json").read_text())["metrics/fid"] == fids[4]


def test_graceful_stop_aborts_only_on_a_second_ctrl_c() -> None:
    import signal

    from ganctl.train import GracefulStop

    stop = GracefulStop()
    stop.handle(signal.SIGTERM, None)
    stop.handle(signal.SIGUSR2, None)  # SLURM preemption: SIGTERM, then SIGUSR2 -- still a clean stop
    assert stop.requested == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGINT, None)
    first = GracefulStop()
    first.handle(signal.SIGINT, None)
    assert first.requested == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
        first.handle(signal.SIGINT, None)


def test_a_second_ctrl_c_stops_at_once_and_says_how_to_continue(
    tmp_path: Path, tiny_overrides: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog
) -> None:
    import logging
    import signal

    real_step = GAN.step

    def step_with_two_ctrl_cs(gan: GAN, batches, step: int):
        if step == 3:
            signal.raise_signal(signal.SIGINT)  # stop after this step, please
            signal.raise_signal(signal.SIGINT)  # no: now
        return real_step(gan, batches, step)

    monkeypatch.setattr(GAN, "step", step_with_two_ctrl_cs)
    with caplog.at_level(logging.WARNING, logger="ganctl"), pytest.raises(KeyboardInterrupt):
        run(tmp_path, *tiny_overrides, "train.steps=6")  # train.ckpt_every=2: last.pt holds step 2
    said = " ".join(capsys.readouterr().err.split())
    assert "Stopped at once by a second Ctrl-C during step 3" in said and f"ganctl train resume={tmp_path}" in said
    assert "Stopped at once by a second Ctrl-C during step 3" in caplog.text  # train.log's record of it
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_a_diverged_run_says_so_in_its_train_log(tmp_path: Path, tiny_overrides: list[str], monkeypatch, capsys) -> None:
    from ganctl import losses
    from ganctl.cli import main

    monkeypatch.setattr(losses, "relativistic_discriminator_loss", lambda real, fake: (real + fake).mean() * float("inf"))
    assert main(["train", *tiny_overrides, f"hydra.run.dir={tmp_path / 'run'}"]) == 1
    assert "Training diverged at step 1" in capsys.readouterr().err
    assert "Training diverged at step 1" in (tmp_path / "run" / "train.log").read_text()


def test_divergence_stops_with_the_last_finite_checkpoint(tmp_path: Path, tiny_overrides: list[str], monkeypatch) -> None:
    poison_generator_loss(monkeypatch)  # G's loss turns NaN at step 3
    with pytest.raises(GanctlError, match=r"diverged at step 3: the generator \(G\) loss or weights.*last.pt holds step 2"):
        run(tmp_path, *tiny_overrides, "train.log_every=1", "train.steps=6")
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 2
    for name in ("generator", "discriminator"):
        assert all(torch.isfinite(t).all() for t in state[name].values() if t.is_floating_point())
    assert not (tmp_path / "checkpoints" / "step_0000004.pt").exists()


def test_divergence_before_the_first_checkpoint_leaves_none(tmp_path: Path, tiny_overrides: list[str], monkeypatch) -> None:
    from ganctl import losses

    monkeypatch.setattr(losses, "relativistic_discriminator_loss", lambda real, fake: (real + fake).mean() * float("inf"))
    with pytest.raises(GanctlError, match=r"diverged at step 1: the discriminator \(D\).*no checkpoint was written"):
        run(tmp_path, *tiny_overrides, "train.log_every=3")
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_keep_last_keeps_the_newest_step_checkpoints(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides, "train.steps=8", "train.ckpt_every=2", "train.keep_last=2")
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000006.pt", "step_0000008.pt"]


def test_stray_temporary_files_are_cleaned_at_the_next_start(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides)
    stray = tmp_path / "checkpoints" / ".last.pt.tmp"
    stray.write_bytes(b"half a checkpoint")  # what a SIGKILL during a write leaves
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    run(tmp_path, *tiny_overrides, "train.steps=5", resume=state)
    assert not stray.exists()
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 5


def test_non_finite_weights_are_never_saved(tmp_path: Path, tiny_overrides: list[str], monkeypatch) -> None:
    real_step = GAN.step

    def poison_at_step_4(gan: GAN, batches, step: int):  # as an infinite gradient would: G's weights go bad after its step-4 update, the losses not yet
        statistics = real_step(gan, batches, step)
        if step == 4:
            with torch.no_grad():
                next(gan.generator.parameters()).fill_(float("nan"))
        return statistics

    monkeypatch.setattr(GAN, "step", poison_at_step_4)
    with pytest.raises(GanctlError, match=r"diverged at step 4: the generator \(G\).*last.pt holds step 2"):
        run(tmp_path, *tiny_overrides, "train.log_every=10", "train.sample_every=0")
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_out_of_memory_is_one_clear_message(tmp_path: Path, tiny_overrides: list[str], monkeypatch) -> None:
    from ganctl import losses

    real_loss, calls = losses.relativistic_generator_loss, {"n": 0}

    def out_of_memory(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(fake_scores, real_scores)

    monkeypatch.setattr(losses, "relativistic_generator_loss", out_of_memory)
    with pytest.raises(GanctlError, match=r"Out of CPU memory at step 3 with train.batch_size=8: try a smaller batch.*last.pt holds step 2"):
        run(tmp_path, *tiny_overrides)
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["step"] == 2


def test_a_checkpoint_from_an_earlier_ganctl_resumes(tmp_path: Path, tiny_overrides: list[str]) -> None:
    run(tmp_path, *tiny_overrides)
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    for key in ("keep_last", "eval_every", "sync_batchnorm", "precision", "channels_last", "compile"):  # came later
        del state["config"]["train"][key]
    del state["scalers"]
    loss = state["config"]["loss"]
    for key in ("report", "relativistic", "boundary"):
        del loss[key]
    units = loss.pop("regularisers")  # before the units: flat keys
    loss.update(r1_gamma=units["r1"]["gamma"], r1_every=units["r1"]["every"], r2_gamma=units["r2"]["gamma"],
                r2_every=units["r2"]["every"], clip=0.0, gradient_penalty=0.0)
    del state["config"]["metrics"]
    state["version"] = 1
    checkpoint.save(state, tmp_path / "old.pt")
    state = checkpoint.load(tmp_path / "old.pt")  # as every reader gets it: upgraded
    # The units that were on with the settings they had; a null setting today (R1's sigma) is the unit's default.
    assert state["config"]["loss"]["regularisers"] == {name: {key: value for key, value in unit.items() if value is not None}
                                                       for name, unit in units.items()}
    result = run(tmp_path, *tiny_overrides, "train.steps=6", resume=state)
    assert result.step == 6
    resumed = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["config"]["train"]
    assert resumed["keep_last"] == 0
    # It goes on computing as it did: fp32, NCHW, eager (today's defaults would change the rounding).
    assert (resumed["precision"], resumed["channels_last"], resumed["compile"]) == ("fp32", False, False)

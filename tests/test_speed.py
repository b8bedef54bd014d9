"""The fast paths: precision, channels_last, torch.compile, fused optimizers, D frozen in G's step.

fp32 stays bit-for-bit the plain training loop; the faster paths are checked against fp32 for the
quality of what they train. Speed itself is measured by scripts/bench.py, not here.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ganctl import checkpoint, config, speed
from ganctl.errors import GanctlError
from ganctl.regularisers import gradient_penalty
from ganctl.models import DCGANDiscriminator
from ganctl.train import train
from helpers import TINY, TINY_DCGAN, build_gan, compose_config, run_cli, run

CPU = torch.device("cpu")
needs_native_bf16 = pytest.mark.skipif(not speed.cpu_has_native_bf16(), reason="this CPU has no native bf16")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


QUIET = [*TINY, "train.ckpt_every=0", "train.sample_every=0"]


def test_fp32_is_bit_for_bit_the_plain_loop(tmp_path: Path) -> None:
    """ganctl's fp32 step -- D's weights frozen in G's step -- gives exactly the weights of the loop
    written the common way (D's weight gradients computed and thrown away), from the same seed and the
    same draws, with Adam's update computed by the same kernel (fused rounds unlike the loop over
    parameters)."""
    overrides = [*QUIET, "model=dcgan_small", *TINY_DCGAN, "train.steps=3", "train.precision=fp32", "train.channels_last=false",
                 "train.ema.decay=0"]  # the classic DCGAN step: BatchNorm critic, no R1
    run(tmp_path, *overrides)
    trained = checkpoint.load(checkpoint.last_path(tmp_path))

    cfg, _ = compose_config(*overrides)
    gan, data = build_gan(cfg)  # the same initial weights, and the RNG where the loop starts drawing
    G, D = gan.generator, gan.discriminator
    adam = dict(lr=cfg.optimizer.g.lr, betas=tuple(cfg.optimizer.g.betas), fused=speed.fused_kernels_on(CPU) or None)
    optimizer_g, optimizer_d = torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam)
    for _ in range(3):
        real = data.sample(cfg.train.batch_size)
        fake = G(torch.randn(cfg.train.batch_size, G.latent_dim))
        d_loss = gan.loss.discriminator(D(real), D(fake.detach()))
        optimizer_d.zero_grad()
        d_loss.backward()
        optimizer_d.step()
        g_loss = gan.loss.generator(D(fake))
        optimizer_g.zero_grad()
        g_loss.backward()
        optimizer_g.step()
    torch.testing.assert_close(trained["generator"], G.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(trained["discriminator"], D.state_dict(), rtol=0, atol=0)


def test_channels_last_is_for_conv_models_and_changes_only_rounding(tmp_path: Path) -> None:
    quiet = [*QUIET, "model=dcgan_small", "train.precision=fp32"]  # fp32 rounding; Adam steps without R1's extra term
    cfg, _ = compose_config(*quiet)
    gan, _ = build_gan(cfg)
    conv_weights = [p for net in (gan.generator, gan.discriminator) for p in net.parameters() if p.ndim == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert sum(not p.is_contiguous() for p in conv_weights) >= len(conv_weights) - 2  # (a 1-channel end is both)
    mlp, _ = build_gan(compose_config(*QUIET, "model=mlp")[0])
    assert all(p.is_contiguous() for p in mlp.generator.parameters())

    # Adam moves a weight by about lr per step whatever the gradient's size (at most sqrt(10)/3 lr at
    # the second step with beta1 = 0.5), so rounding can part the two runs by at most twice that, for
    # a weight whose gradient is near zero and takes opposite signs; nearly every weight stays far closer.
    steps, lr = 3, cfg.optimizer.g.lr
    a, b = (run(tmp_path / str(on), *quiet, f"train.steps={steps}", f"train.channels_last={on}") for on in ("true", "false"))
    weights = [checkpoint.load(checkpoint.last_path(tmp_path / on)) for on in ("true", "false")]
    for net in ("generator", "discriminator"):
        torch.testing.assert_close(weights[0][net], weights[1][net], rtol=0, atol=2 * 1.06 * lr * steps)
        apart = torch.cat([(weights[0][net][k] - weights[1][net][k]).abs().flatten() for k in weights[0][net]])
        assert apart.median() < 0.1 * lr and (apart > lr).float().mean() < 0.01  # rounding, not another training
    torch.testing.assert_close(a.summary["losses"], b.summary["losses"], rtol=1e-2, atol=1e-4)


def test_optimizers_are_fused_where_torch_has_the_kernels_else_foreach_unless_the_config_says() -> None:
    gan, _ = build_gan(compose_config(*QUIET)[0])
    fused = speed.fused_kernels_on(CPU)  # torch 2.4 and later
    assert all(bool(o.defaults["fused"]) is fused and bool(o.defaults["foreach"]) is not fused for o in (gan.optimizer_g, gan.optimizer_d))
    chosen, _ = build_gan(compose_config(*QUIET, "+optimizer.g.foreach=false", "optimizer=rmsprop")[0])  # RMSprop: no fused kernel
    assert chosen.optimizer_g.defaults["foreach"] is False and chosen.optimizer_d.defaults["foreach"] is True
    own, _ = build_gan(compose_config(*QUIET, "+optimizer.d.foreach=true")[0])
    assert own.optimizer_d.defaults["foreach"] is True and not own.optimizer_d.defaults["fused"]


def test_d_is_frozen_only_inside_the_context() -> None:
    critic = DCGANDiscriminator(base_filters=4, channels=1, image_size=28)
    critic.net[0].weight.requires_grad_(False)  # a weight the user froze stays frozen
    images = torch.randn(2, 1, 28, 28, requires_grad=True)
    with speed.frozen(critic):
        critic(images).sum().backward()
    assert images.grad is not None and all(p.grad is None for p in critic.parameters())
    assert [p.requires_grad for p in critic.parameters()] == [False] + [True] * (len(list(critic.parameters())) - 1)


def test_gradient_penalty_double_backward_under_bf16_autocast() -> None:
    """The penalty's double backward runs through a bf16 critic and lands near fp32's value and
    weight gradients. (fp16 runs the penalty's critic pass in fp32: its range would overflow.)"""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * 7 * 7, 1), nn.Flatten(0))
    real, fake = torch.randn(16, 1, 14, 14), torch.randn(16, 1, 14, 14)

    def penalty_and_grads(precision: str):
        model = copy.deepcopy(critic)
        autocast = speed.autocast(CPU, precision)

        def scores(images: torch.Tensor) -> torch.Tensor:
            with autocast():
                return model(images).float()

        torch.manual_seed(1)  # the same interpolates
        penalty = gradient_penalty(scores, real, fake)
        penalty.backward()
        return penalty, [p.grad for p in model.parameters()]

    reference, reference_grads = penalty_and_grads("fp32")
    penalty, grads = penalty_and_grads("bf16")
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty)
    assert penalty != reference  # bf16 did run
    torch.testing.assert_close(penalty, reference, rtol=0.05, atol=1e-3)
    assert sum(grad is not None for grad in reference_grads) >= 2  # the weights (biases get none from a gradient norm)
    for grad, expected in zip(grads, reference_grads):
        if expected is None:
            assert grad is None
            continue
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, expected, rtol=0.1, atol=0.05 * expected.abs().max().item())


def pooled_fid_run(run_dir: Path, *overrides: str):
    """A 250-step run on the bundled digits, judged by FID on pooled pixels (offline, fast)."""
    return run(
        run_dir, "train.device=cpu", "train.steps=250", "train.eval_every=250", "train.log_every=50",
        "train.sample_every=0", "train.ckpt_every=0", "metrics.names=[fid]", "metrics.num_fake=1000",
        "metrics.num_real=1000", "+metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", *overrides,
    ).summary


@pytest.mark.parametrize("precision, model", [
    pytest.param("bf16", "dcgan_small", marks=needs_native_bf16),
    ("fp16", "mlp"),  # fp16 is emulated on CPUs (slow convolutions): an MLP stands in for its loss scaling
])
def test_faster_precisions_train_as_well_as_fp32(tmp_path: Path, precision: str, model: str) -> None:
    """From the same seed, bf16 / fp16 end where fp32 does: FID within 2x of fp32's (seeds alone move
    it by about 20%) and below a third of the untrained generator's; D's view of real and fake images
    within 0.1. (Not the last losses: a 50-step mean of a GAN's losses moves by a quarter between runs
    that differ in rounding alone -- fp16's G loss was 1.26 against fp32's 1.00 on both CPU kinds.)"""
    smaller = ["model.generator.hidden=[128,256]", "model.discriminator.hidden=[256,128]"] if model == "mlp" else []
    fast = pooled_fid_run(tmp_path / precision, f"model={model}", *smaller, f"train.precision={precision}")
    exact = pooled_fid_run(tmp_path / "fp32", f"model={model}", *smaller, "train.precision=fp32")
    untrained = pooled_fid_run(tmp_path / "untrained", f"model={model}", *smaller, "train.steps=1", "train.eval_every=1")
    assert fast["metrics/fid"] < 2 * exact["metrics/fid"] + 0.05
    assert max(fast["metrics/fid"], exact["metrics/fid"]) < 0.35 * untrained["metrics/fid"]
    assert abs(fast["d_real"] - exact["d_real"]) < 0.1 and abs(fast["d_fake"] - exact["d_fake"]) < 0.1
    assert all(math.isfinite(value) for value in (*fast["losses"].values(), *exact["losses"].values()))


@pytest.mark.parametrize("precision,conditioning", [
    pytest.param("bf16", "none", marks=needs_native_bf16), ("fp16", "none"),
    pytest.param("bf16", "acgan", marks=needs_native_bf16),  # labels, and the classifier's loss, under autocast
])
def test_resume_is_exact_at_every_precision(tmp_path: Path, precision: str, conditioning: str) -> None:
    """Interrupted and resumed, a bf16 or fp16 run ends bit-for-bit where a straight one does
    (fp16's loss scales travel in the checkpoint); a class-conditional one too."""
    overrides = [*QUIET, f"train.precision={precision}", "model=mlp", "loss=wgangp", "optimizer=wgangp",
                 f"conditioning={conditioning}"]
    run(tmp_path / "straight", *overrides, "train.steps=6")
    run(tmp_path / "resumed", *overrides, "train.steps=3")
    state = checkpoint.load(checkpoint.last_path(tmp_path / "resumed"))
    cfg, choices = compose_config(*overrides, "train.steps=6")
    cfg = config.resumed_config(state["config"], state["choices"], cfg, ["train.steps=6"], choices)
    train(cfg, tmp_path / "resumed", choices, resume=state)
    straight, resumed = (checkpoint.load(checkpoint.last_path(tmp_path / name)) for name in ("straight", "resumed"))
    for key in ("generator", "discriminator", "optimizer_g", "optimizer_d", "scalers"):
        torch.testing.assert_close(straight[key], resumed[key], rtol=0, atol=0)


def test_fp16_loss_scales_are_saved_and_restored() -> None:
    cfg, _ = compose_config(*QUIET, "model=mlp", "train.precision=fp16")
    gan, _ = build_gan(cfg)
    for scaler, scale in zip((gan.scaler_g, gan.scaler_d), (512.0, 1024.0)):
        scaler.scale(torch.ones(()))  # GradScaler makes its scale lazily, at the first use
        scaler.update(scale)
    state = gan.state_dict()
    assert [s["scale"] for s in state["scalers"]] == [512.0, 1024.0]
    fresh, _ = build_gan(cfg)
    fresh.load_state_dict(state)
    assert [scaler.get_scale() for scaler in (fresh.scaler_g, fresh.scaler_d)] == [512.0, 1024.0]


def test_compile_compiles_g_and_d(tmp_path: Path) -> None:
    """Conditioned by ACGAN, the hardest case for the compiled wrappers: G takes labels, D returns
    (scores, class logits)."""
    from torch._dynamo.utils import counters

    compiled_before = counters["frames"]["ok"]
    result = run(tmp_path, *QUIET, "model=mlp", "train.compile=true", "train.steps=2", "conditioning=acgan")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.summary["losses"].values())
    assert counters["frames"]["ok"] - compiled_before >= 2  # G's forward and D's, at least


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is for machines without a CUDA runtime")
def test_compile_on_a_cpu_does_not_warn_about_cuda_home(tmp_path: Path) -> None:
    """torch's C++ extension loader (which the CPU backend imports) warns about CUDA_HOME wherever a
    CUDA toolkit is found without a GPU; a run on the CPU never needs it, so it is not shown."""
    code = ("import torch\nfrom ganctl import speed\nspeed.compiled(torch.nn.Linear(2, 2), 'G', True)\n"
            "import torch.utils.cpp_extension")
    env = {**os.environ, "CUDA_HOME": str(tmp_path)}  # a toolkit 'found': torch would warn
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "CUDA_HOME" not in result.stderr, result.stderr


def test_compile_falls_back_to_eager_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import torch._dynamo
    import torch._inductor.compile_fx

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", no_compiler)
    torch._dynamo.reset()  # nothing compiled by earlier tests is reused
    result = run(tmp_path, *QUIET, "model=mlp", "train.compile=true", "train.steps=2")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.summary["losses"].values())
    err = capsys.readouterr().err
    assert "torch.compile could not compile G (no C++ compiler found); it runs eagerly" in err
    assert "Traceback" not in err


def test_the_eager_warning_names_what_needs_the_double_backward(capsys: pytest.CaptureFixture) -> None:
    """The gradient penalty, R1 and path-length regularisation keep their network eager, and the warning
    says which (a compiled run with an eager, penalised D trains: tests/test_stylegan2.py)."""
    build_gan(compose_config(*QUIET, "model=mlp", "loss=wgangp", "train.compile=true")[0])
    assert "D runs eagerly, because the gradient penalty needs a double backward" in capsys.readouterr().err
    cfg, _ = compose_config(*QUIET, "model=mlp", "loss.r1_gamma=1", "train.compile=true")
    build_gan(cfg)
    assert "D runs eagerly, because R1 needs a double backward" in capsys.readouterr().err
    speed.compiled(torch.nn.Linear(2, 2), "G", True, "path-length regularisation")
    assert "G runs eagerly, because path-length regularisation needs a double backward" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["dcgan_small", "wgangp"])
def test_no_host_reads_inside_training_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    """Losses and statistics stay on the device between logs: a run's host reads of tensor values
    (item, tolist, bool, float, ...) do not grow with its steps. (On a GPU each would be a sync.)
    torch.optim's reads of its step counters are not counted: they live on the host by design."""
    reads = {"count": 0}
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            reads["count"] += "torch/optim/" not in caller.replace("\\", "/")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def host_reads(steps: int) -> int:
        reads["count"] = 0
        overrides = [*QUIET, f"model={model}", "dataset.image_size=32", "train.log_every=1000"]
        run(tmp_path / str(steps), *overrides, *(TINY_DCGAN if model == "dcgan_small" else []), f"train.steps={steps}")
        return reads["count"]

    assert host_reads(3) == host_reads(9)


def test_bad_precision_is_one_clear_error(tmp_path: Path) -> None:
    result = run_cli("train", *QUIET, "train.precision=fp8", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.precision must be one of auto, fp32, bf16, fp16, got 'fp8'" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_auto_precision_is_bf16_only_on_cpus_with_native_bf16(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: native)
        assert speed.resolve_precision("auto", CPU) == expected
        assert speed.resolve_precision("fp32", CPU) == "fp32"
        speed.resolve_precision("fp16", CPU)  # the advice names what this CPU does well
        assert f"use {expected}" in " ".join(capsys.readouterr().err.split())
    assert speed.resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(GanctlError, match="train.precision must be one of"):
        speed.resolve_precision("half", CPU)


def test_checkpoints_keep_the_precision_auto_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What auto picked is stored, so a resume computes the same on any machine; a checkpoint that
    stored auto comes from a ganctl whose auto meant fp32 on CPUs, and continues in fp32."""
    from helpers import run as run_resumable

    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    overrides = [*QUIET, "model=mlp", "train.steps=2"]
    run_resumable(tmp_path / "new", *overrides)
    assert checkpoint.load(checkpoint.last_path(tmp_path / "new"))["config"]["train"]["precision"] == "bf16"
    older = checkpoint.load(checkpoint.last_path(tmp_path / "new"))
    older["config"]["train"]["precision"] = "auto"
    checkpoint.save(older, tmp_path / "older.pt")
    run_resumable(tmp_path / "new", *overrides[:-1], "train.steps=3", resume=checkpoint.load(tmp_path / "older.pt"))
    assert checkpoint.load(checkpoint.last_path(tmp_path / "new"))["config"]["train"]["precision"] == "fp32"


@needs_cuda
def test_cuda_runs_bf16_by_default_with_fused_optimizers(tmp_path: Path) -> None:
    cfg, _ = compose_config(*QUIET, "train.device=cuda")
    gan, _ = build_gan(cfg, "cuda")
    assert gan.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert gan.optimizer_g.defaults["fused"] is True
    for precision in ("bf16", "fp16"):
        result = run(tmp_path / precision, *QUIET, "train.device=cuda", f"train.precision={precision}",
                     "model=wgangp", "dataset.image_size=32")
        assert all(torch.isfinite(torch.tensor(v)) for v in result.summary["losses"].values())
    assert torch.backends.cudnn.benchmark

"""Build the parts of a run from its config, then the one training loop."""

from __future__ import annotations

import copy
import math
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision.utils import make_grid, save_image

from ganctl import checkpoint, distributed, speed
from ganctl.config import build as instantiate
from ganctl.augment import augment
from ganctl.losses import clip_weights, gradient_penalty
from ganctl import data as datasets
from ganctl.errors import GanctlError
from ganctl.logger import NullLogger, RunLogger, console, print_summary, warn, write_summary

log = logging.getLogger("ganctl")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GanctlError(f"train.device={name} is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise GanctlError(f"train.device={name}, but no such CUDA GPU is visible here. Use train.device=auto or cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanctlError("train.device=mps, but Apple's MPS backend is not available here. Use train.device=auto or cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise GanctlError(f"train.device={name} is not supported: use auto, cpu, cuda, cuda:N or mps.")
    return device


@dataclass
class Parts:
    """Everything the loop trains with, built from the config."""

    data: datasets.InMemoryImages | datasets.StreamingImages
    generator: nn.Module
    discriminator: nn.Module
    generator_ema: Optional[nn.Module]
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]  # G's, then D's; stepped once per G step
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    precision: str  # fp32 | bf16 | fp16 (train.precision made concrete for the device)
    scalers: list[torch.amp.GradScaler]  # G's, then D's: fp16's loss scaling (pass-throughs otherwise)


def build(cfg: DictConfig, device: torch.device) -> Parts:
    data = datasets.build(cfg.dataset, device)
    shape = {"channels": data.channels, "image_size": data.image_size}
    channels_last = cfg.train.channels_last
    generator = speed.memory_format(instantiate(cfg.model.generator, "model.generator", **shape).to(device), channels_last)
    discriminator = speed.memory_format(
        instantiate(cfg.model.discriminator, "model.discriminator", **shape).to(device), channels_last
    )
    generator_ema = None
    if cfg.train.ema.decay > 0:
        generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    check_critic(cfg.loss, cfg.optimizer, discriminator)
    optimizer_g = speed.optimizer(instantiate(cfg.optimizer.g, "optimizer.g"), generator.parameters(), device)
    optimizer_d = speed.optimizer(instantiate(cfg.optimizer.d, "optimizer.d"), discriminator.parameters(), device)
    precision = speed.resolve_precision(cfg.train.precision, device)
    factor = partial(lr_factor, cfg.train.lr_schedule, total_steps=cfg.train.steps)
    return Parts(
        data=data,
        generator=generator,
        discriminator=discriminator,
        generator_ema=generator_ema,
        optimizer_g=optimizer_g,
        optimizer_d=optimizer_d,
        schedulers=[torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in (optimizer_g, optimizer_d)],
        d_loss=instantiate(cfg.loss.discriminator, "loss.discriminator"),
        g_loss=instantiate(cfg.loss.generator, "loss.generator"),
        precision=precision,
        scalers=[speed.grad_scaler(device, precision) for _ in range(2)],
    )


MOMENTUM_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.NAdam", "torch.optim.RAdam", "torch.optim.Adamax")


def check_critic(loss: DictConfig, optimizer: DictConfig, critic: nn.Module) -> None:
    """Refuse loss x critic pairs known to be wrong; warn about ones known to be unwise."""
    if loss.gradient_penalty > 0 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules()):
        raise GanctlError(
            "A gradient penalty needs a critic without BatchNorm: the penalty is on each image's own "
            "gradient, and BatchNorm makes every score depend on the whole batch (Gulrajani et al. 2017). "
            "Use model=wgangp, or set model.discriminator.norm=layer (or none) for the DCGAN critic, or "
            "model.discriminator.batch_norm_momentum=null for the conv critic."
        )
    if loss.report == "wasserstein" and isinstance(list(critic.modules())[-1], nn.Sigmoid):
        raise GanctlError(
            "A Wasserstein critic must output unbounded scores, but this discriminator ends in a sigmoid. "
            "Remove the sigmoid, or use a BCE-family loss (loss=bce), which applies the sigmoid itself."
        )
    if loss.report == "wasserstein" and not (loss.clip > 0 or loss.gradient_penalty > 0):
        warn("A Wasserstein loss with neither weight clipping (loss.clip) nor a gradient penalty "
             "(loss.gradient_penalty): nothing keeps the critic Lipschitz, and its scores can grow without bound.")
    momentum = OmegaConf.select(optimizer, "d.momentum", default=0) or 0
    if loss.clip > 0 and (optimizer.d._target_ in MOMENTUM_OPTIMIZERS or momentum > 0):
        warn(f"Weight clipping with a momentum optimizer ({optimizer.d._target_.rsplit('.', 1)[-1]}) for the critic: "
             "the WGAN paper found it unstable and used RMSprop (optimizer=wgan).")
    if loss.clip > 0 and loss.gradient_penalty > 0:
        warn("Both weight clipping and a gradient penalty: WGAN-GP replaces clipping with the penalty; "
             "set loss.clip=0 (or use loss=wgangp).")


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """The learning rate's multiplier after `step` generator steps: constant, or decaying to 0 at
    the last step, linearly or along a half cosine."""
    progress = min(step / total_steps, 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model for weights; buffers (BatchNorm statistics) are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


def ema_decay(decay: float, steps_averaged: int) -> float:
    """The EMA's decay after `steps_averaged` steps: warmed up as min(decay, (1 + t) / (10 + t)) so
    that early averages are not dominated by the random initial weights; 0 (a copy) before the start."""
    if steps_averaged <= 0:
        return 0.0
    return min(decay, (1 + steps_averaged) / (10 + steps_averaged))


@torch.no_grad()
def render(generator: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images for the given latents with G in eval mode (BatchNorm uses its running statistics)."""
    was_training = generator.training
    generator.eval()
    images = generator(latents)
    generator.train(was_training)
    return images


class GracefulStop:
    """SIGINT / SIGTERM / SIGUSR2 ask the loop to stop after the current step; a second SIGINT aborts."""

    SIGNALS = tuple(s for s in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, s))

    def __init__(self) -> None:
        self.requested: Optional[str] = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number: int, frame: Any) -> None:
        name = signal.Signals(number).name
        if self.requested is not None and name == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, last.pt stays as it was
        # A scheduler's repeated or mixed signals (SLURM preemption: SIGTERM, then SIGUSR2) keep the
        # first request: the step completes and the checkpoint is written.
        self.requested = self.requested or name

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


STATS = ("d_loss", "g_loss", "real_score", "fake_score", "real_probability", "fake_probability", "penalty")


def watched(loss: DictConfig, values: list[float]) -> dict[str, float]:
    """The scalars to log for this loss, from the means of STATS over the log interval: the losses,
    and D's view of real and fake images as the loss reads it (probabilities for the BCE family; for
    Wasserstein losses the distance estimate mean D(real) - mean D(fake), and the penalty term)."""
    stat = dict(zip(STATS, values))
    scalars = {"loss/d": stat["d_loss"], "loss/g": stat["g_loss"]}
    if loss.report == "probability":
        return {**scalars, "d/real": stat["real_probability"], "d/fake": stat["fake_probability"]}
    scalars.update({"d/real": stat["real_score"], "d/fake": stat["fake_score"]})
    if loss.report == "wasserstein":
        scalars["wasserstein"] = stat["real_score"] - stat["fake_score"]
    if loss.gradient_penalty:
        scalars["gradient_penalty"] = stat["penalty"]
    return scalars


def run_results(last_logged: dict[str, float], cards: list[dict[str, Any]], best: Optional[dict]) -> dict[str, Any]:
    """The summary's view of how training ended: the last logged losses and scores, the latest
    metric values and the best one."""
    return {
        "losses": {"d_loss": last_logged.get("loss/d"), "g_loss": last_logged.get("loss/g")},
        "d_real": last_logged.get("d/real"),
        "d_fake": last_logged.get("d/fake"),
        **{name: last_logged[name] for name in ("wasserstein", "gradient_penalty") if name in last_logged},
        **{f"metrics/{card['metric']}": card["value"] for card in cards},
        **({"best": best} if best else {}),
    }


class DivergenceWatch:
    """Notices the first step whose D or G loss is not finite, on the device (no host sync in the
    step); `check` reads it where the loop synchronises anyway, and before every checkpoint."""

    def __init__(self, device: torch.device) -> None:
        self.first = torch.zeros(3, dtype=torch.long, device=device)  # step, D's loss bad, G's loss bad

    def update(self, step: int, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        bad = (~torch.isfinite(torch.stack([d_loss.detach(), g_loss.detach()]))).long()  # (2,)
        new = (self.first[0] == 0) & (bad.sum() > 0)
        self.first = torch.where(new, torch.cat([torch.full_like(bad[:1], step), bad]), self.first)

    def check(self, run_dir: Path, last_saved: int, step_now: int = 0, parts: Optional[Parts] = None) -> None:
        """Raise if a loss went non-finite; with `parts`, also if any weight did (a non-finite
        gradient poisons the weights one step before it shows in a loss): before every checkpoint."""
        step, d_bad, g_bad = self.first.tolist()
        if not step and parts is not None:
            finite = [torch.stack([p.isfinite().all() for p in net.parameters()]).all()
                      for net in (parts.discriminator, parts.generator)]
            d_bad, g_bad = (not bool(ok) for ok in finite)
            step = step_now if d_bad or g_bad else 0
        if not step:
            return
        network = "discriminator (D)" if d_bad else "generator (G)"
        kept = (f"checkpoints/last.pt holds step {last_saved}, the last finite state (weights and optimizer "
                f"states); continue from it with `ganctl train resume={run_dir}` after a change"
                if last_saved > 0 else "no checkpoint was written before it")
        raise GanctlError(
            f"Training diverged at step {step}: the {network} loss or weights became NaN or infinite, so training "
            f"stopped and nothing after it was saved; {kept}. Common fixes: a lower learning rate "
            "(optimizer.d.lr / optimizer.g.lr), loss=wgangp or model.discriminator.spectral_norm=true."
        )


@dataclass
class RunResult:
    run_dir: Path
    step: int
    summary: dict[str, Any]
    interrupted_by: Optional[str] = None  # the signal's name when the run was stopped early


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def restore(parts: Parts, state: dict[str, Any], device: torch.device) -> None:
    """Load a checkpoint's networks, optimizers, schedulers and RNG states into the built parts."""
    parts.generator.load_state_dict(state["generator"])
    parts.discriminator.load_state_dict(state["discriminator"])
    parts.optimizer_g.load_state_dict(state["optimizer_g"])
    parts.optimizer_d.load_state_dict(state["optimizer_d"])
    for scheduler, scheduler_state in zip(parts.schedulers, state["schedulers"]):
        scheduler.load_state_dict(scheduler_state)
    if parts.generator_ema is not None:
        parts.generator_ema.load_state_dict(state["generator_ema"])
    for scaler, scaler_state in zip(parts.scalers, state.get("scalers") or []):
        if scaler.is_enabled() and scaler_state:  # fp16 continued; a change of precision starts afresh
            scaler.load_state_dict(scaler_state)
    checkpoint.restore_rng_states(state["rng"], device)


def training_state(parts: Parts, device: torch.device, **fields: Any) -> dict[str, Any]:
    """A checkpoint: the parts' state dicts and the RNG states, plus `fields` (step, config, ...)."""
    return {
        "format": checkpoint.FORMAT,
        "version": checkpoint.VERSION,
        **fields,
        "generator": parts.generator.state_dict(),
        "discriminator": parts.discriminator.state_dict(),
        "generator_ema": parts.generator_ema.state_dict() if parts.generator_ema is not None else None,
        "optimizer_g": parts.optimizer_g.state_dict(),
        "optimizer_d": parts.optimizer_d.state_dict(),
        "schedulers": [scheduler.state_dict() for scheduler in parts.schedulers],
        "scalers": [scaler.state_dict() for scaler in parts.scalers],
        "rng": checkpoint.rng_states(device),
        "data": {"channels": parts.data.channels, "image_size": parts.data.image_size},
    }


def build_evaluator(cfg: DictConfig, data: Any, device: torch.device) -> Any:
    """The image-quality metrics of train.eval_every, against the configured split of the dataset."""
    from ganctl import metrics

    real = data if cfg.metrics.split == "train" else datasets.build(cfg.dataset, device, split=cfg.metrics.split)
    return metrics.Evaluator(cfg.metrics, real, device)


def train(cfg: DictConfig, run_dir: Path, choices: dict[str, str], resume: Optional[dict[str, Any]] = None) -> RunResult:
    """Train G and D as the config says, writing checkpoints, logs and samples into run_dir."""
    settings = cfg.train
    group, device = distributed.setup(resolve_device(settings.device))
    try:
        return train_on(cfg, Path(distributed.broadcast(str(run_dir), group)), choices, resume, group, device)
    finally:
        distributed.teardown(group)


def train_on(
    cfg: DictConfig, run_dir: Path, choices: dict[str, str], resume: Optional[dict[str, Any]],
    group: distributed.Group, device: torch.device,
) -> RunResult:
    """The training run itself, in one process of `group` (a single process without torchrun)."""
    settings = cfg.train
    if group.main:
        for path in checkpoint.clean_temporary(run_dir):
            log.info("Removed %s, left by an interrupted checkpoint write", path)
    if resume is None and checkpoint.last_path(run_dir).exists():
        raise GanctlError(
            f"{run_dir} already holds a run (checkpoints/last.pt). Continue it with "
            f"`ganctl train resume={run_dir}`, or choose a new directory with hydra.run.dir=<dir>."
        )
    seed_everything(settings.seed)
    parts = build(cfg, device)
    G, D = parts.generator, parts.discriminator
    start_step, wall_before, cards, best = 0, 0.0, [], None
    if resume is not None:
        restore(parts, resume, device)
        start_step, wall_before = resume["step"], resume["wall_seconds"]
        cards, best = resume.get("metrics", []), resume.get("best")
    distributed.reseed(group)  # several ranks: each draws its own batches and latents
    # What the loop calls: DDP-wrapped when there are several ranks, compiled when asked. G's step
    # needs no gradient for D's weights, so nothing of D's to synchronise: it calls D itself.
    speed.configure_backends(device, parts.precision)
    penalised = cfg.loss.gradient_penalty > 0
    G_train = speed.compiled(distributed.wrap(G, group, device, settings.sync_batchnorm), "G", settings.compile)
    D_train = speed.compiled(distributed.wrap(D, group, device, settings.sync_batchnorm), "D", settings.compile, penalised)
    D_scores_g = D_train if not group.enabled else speed.compiled(D, "D", settings.compile, penalised)
    if start_step >= settings.steps:
        console.print(f"{run_dir} already reached {start_step} of train.steps={settings.steps}; nothing to do. "
                      f"Pass a larger train.steps to train further.")
        return RunResult(run_dir, start_step, {})
    evaluator = build_evaluator(cfg, parts.data, device) if settings.eval_every and group.main else None

    log.info(
        "%s %s: %s, %d images of %dx%dx%d, G %.2fM and D %.2fM parameters, steps %d -> %d",
        "Resuming" if resume else "Training", run_dir, ", ".join(f"{k}={v}" for k, v in choices.items()),
        len(parts.data), parts.data.channels, parts.data.image_size, parts.data.image_size,
        sum(p.numel() for p in G.parameters()) / 1e6, sum(p.numel() for p in D.parameters()) / 1e6,
        start_step, settings.steps,
    )
    # The fixed-latent grid uses its own generator so that drawing it never shifts the training RNG.
    fixed_latents = torch.randn(settings.num_samples, G.latent_dim, generator=torch.Generator().manual_seed(settings.seed)).to(device)
    sample_model = parts.generator_ema or G
    logger = RunLogger(run_dir, settings.steps, start_step, settings.batch_size) if group.main else NullLogger()
    stats = torch.zeros(len(STATS), device=device)  # running sums of STATS, read once per log
    stats_count, last_logged, stopping = 0, {}, False
    last_saved = start_step  # the step that checkpoints/last.pt holds (0: none yet)
    divergence = DivergenceWatch(device)
    loss, penalty = cfg.loss, torch.zeros((), device=device)
    batch_size, critic_steps, policy = settings.batch_size, loss.critic_steps, list(settings.augment)
    autocast, (scaler_g, scaler_d) = speed.autocast(device, parts.precision), parts.scalers
    # fp16's narrow range would overflow the penalty's loss-scaled double backward: it runs in fp32.
    penalty_autocast = speed.autocast(device, "fp32" if parts.precision == "fp16" else parts.precision)

    def generate(latents: torch.Tensor) -> torch.Tensor:
        """G's images at the run's precision, handed on in fp32."""
        with autocast():
            return G_train(latents).float()

    def scores(critic: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, amp=autocast) -> torch.Tensor:
        """D's raw scores at the run's precision; the losses see them in fp32."""
        with amp():
            return critic(images).float()

    def state(step: int) -> dict[str, Any]:
        return training_state(
            parts, device, step=step, wall_seconds=wall_before + time.perf_counter() - started,
            config=OmegaConf.to_container(cfg, resolve=True), choices=dict(choices), metrics=cards, best=best,
        )

    def snapshot(step: int, periodic: bool) -> None:
        nonlocal last_saved
        divergence.check(run_dir, last_saved, step, parts)  # never a NaN-poisoned checkpoint
        paths = [checkpoint.step_path(run_dir, step)] if periodic else []
        checkpoint.save(state(step), *paths, checkpoint.last_path(run_dir))
        last_saved = step
        if periodic and settings.keep_last:
            checkpoint.prune(run_dir, settings.keep_last)

    def write_grid(step: int) -> None:
        divergence.check(run_dir, last_saved)
        grid = make_grid(render(sample_model, fixed_latents), nrow=8, normalize=True, value_range=(-1, 1))
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        save_image(grid, run_dir / "samples" / f"step_{step:07d}.png")
        logger.image("samples/fixed_latents", grid, step)

    def evaluate(step: int) -> None:
        """Metric cards to metrics.jsonl and TensorBoard; checkpoints/best.pt when the best metric improves."""
        from ganctl import metrics

        nonlocal cards, best
        cards = evaluator(sample_model, step)
        metrics.append_jsonl(run_dir, cards)
        logger.scalars(metrics.scalars(cards), step)
        card = next(card for card in cards if card["metric"] == cfg.metrics.best)
        if metrics.is_better(card["metric"], card["value"], best and best["value"]):
            divergence.check(run_dir, last_saved, step, parts)
            best = {"metric": card["metric"], "value": card["value"], "step": step}
            checkpoint.save(state(step), checkpoint.best_path(run_dir))

    started = time.perf_counter()
    step = start_step
    with GracefulStop() as stop:
        try:
            for step in range(start_step + 1, settings.steps + 1):
                # Critic update(s). The last one's fakes keep their graph for G's update.
                for critic_step in range(critic_steps):
                    real = parts.data.sample(batch_size)  # (B, C, H, W) in [-1, 1]
                    latents = torch.randn(batch_size, G.latent_dim, device=device)
                    with torch.set_grad_enabled(critic_step == critic_steps - 1):
                        fake = generate(latents)
                    real_scores = scores(D_train, augment(real, policy))
                    fake_scores = scores(D_train, augment(fake.detach(), policy))
                    d_loss = parts.d_loss(real_scores, fake_scores)
                    if penalised:
                        penalty = gradient_penalty(partial(scores, D_train, amp=penalty_autocast), real, fake)
                        d_loss = d_loss + loss.gradient_penalty * penalty
                    parts.optimizer_d.zero_grad(set_to_none=True)
                    scaler_d.scale(d_loss).backward()
                    scaler_d.step(parts.optimizer_d)
                    scaler_d.update()
                    if loss.clip:
                        clip_weights(D, loss.clip)

                # Generator update on the same fakes, scored by the updated D.
                with speed.frozen(D):
                    g_loss = parts.g_loss(scores(D_scores_g, augment(fake, policy)))
                parts.optimizer_g.zero_grad(set_to_none=True)
                scaler_g.scale(g_loss).backward()
                scaler_g.step(parts.optimizer_g)
                scaler_g.update()
                for scheduler in parts.schedulers:
                    scheduler.step()

                if parts.generator_ema is not None:
                    update_ema(parts.generator_ema, G, ema_decay(settings.ema.decay, step - settings.ema.start))

                stats += torch.stack([d_loss, g_loss, real_scores.mean(), fake_scores.mean(),
                                      real_scores.sigmoid().mean(), fake_scores.sigmoid().mean(), penalty]).detach()
                stats_count += 1
                divergence.update(step, d_loss, g_loss)
                stopping = distributed.any_rank(stop.requested is not None, group)  # all ranks stop together
                if group.main and (step % settings.log_every == 0 or step == settings.steps or stopping):
                    last_logged = watched(loss, (stats / stats_count).tolist())  # the one host sync
                    divergence.check(run_dir, last_saved)
                    logger.log(last_logged, step)
                    stats.zero_()
                    stats_count = 0
                if group.main and settings.sample_every and step % settings.sample_every == 0:
                    write_grid(step)
                if group.main and settings.eval_every and (step % settings.eval_every == 0 or step == settings.steps):
                    evaluate(step)
                if group.main and settings.ckpt_every and step % settings.ckpt_every == 0:
                    snapshot(step, periodic=True)
                if stopping:
                    break
            if group.main and last_saved != step:
                snapshot(step, periodic=False)
            if group.main and (not settings.sample_every or step % settings.sample_every):
                write_grid(step)
        except torch.cuda.OutOfMemoryError as error:  # torch.OutOfMemoryError in newer versions
            raise GanctlError(
                f"Out of {device.type.upper()} memory at step {step} with train.batch_size={batch_size}: "
                f"try a smaller batch (e.g. train.batch_size={max(1, batch_size // 2)}) or a smaller model. "
                + (f"checkpoints/last.pt holds step {last_saved}." if last_saved else "No checkpoint was written yet.")
            ) from error
        finally:
            logger.close()

    wall = time.perf_counter() - started
    summary = {
        "steps": step,
        "wall_seconds": wall_before + wall,
        "images_per_second": (step - start_step) * batch_size * group.world_size / max(wall, 1e-9),
        **run_results(last_logged, cards, best),
        **{name: choices.get(name) for name in ("model", "loss", "optimizer", "dataset")},
        "device": str(device),
        "run_dir": str(run_dir),
    }
    if group.enabled:  # DDP keeps every rank's weights identical: check it, and say so
        summary["ranks"] = {"world_size": group.world_size, "weights_agree": distributed.weights_agree([G, D], group)}
    stopped_by = stop.requested or ("SIGTERM" if stopping else None)  # a rank can stop on another's signal
    if not group.main:
        return RunResult(run_dir, step, summary, interrupted_by=stopped_by)
    if stopped_by:
        console.print(
            f"[yellow]Stopped by {stopped_by} after step {step}[/]; saved {checkpoint.last_path(run_dir)}.\n"
            f"Continue with:\n  ganctl train resume={run_dir}"
        )
        log.info("Stopped by %s after step %d; saved last.pt", stopped_by, step)
        return RunResult(run_dir, step, summary, interrupted_by=stopped_by)
    log.info("Finished: %s", summary)
    write_summary(run_dir, summary)
    print_summary(summary, run_dir)
    return RunResult(run_dir, step, summary)

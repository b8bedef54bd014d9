"""The run: refuse or resume, seed, build, then the loop of GAN steps with its logs, grids,
evaluations and checkpoints, and the summary. What one step does lives in `ganctl.gan`."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape
from torchvision.utils import make_grid, save_image

from ganctl import checkpoint, config, distributed, finetune, fits, plots, rundir, search, threads, trackers
from ganctl import data as datasets
from ganctl.console import console, warn, word
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.gan import GAN
from ganctl.guard import Guard
from ganctl.logger import NullLogger, RunLogger, print_summary, write_summary

log = logging.getLogger("ganctl")


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


class RunningMeans:
    """Sums of the steps' statistics, kept on the device; `read` is the one host sync per log interval."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.sums: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, statistics: dict[str, torch.Tensor]) -> None:
        """One step's statistics by name (a run's steps report the same names)."""
        values = torch.stack(list(statistics.values()))
        if self.sums is None:
            self.names, self.sums = tuple(statistics), torch.zeros_like(values)
        self.sums += values
        self.count += 1

    def read(self) -> dict[str, float]:
        means = dict(zip(self.names, (self.sums / self.count).tolist()))
        self.clear()
        return means

    def clear(self) -> None:
        """Forget the interval's sums (a guard's rollback: the abandoned branch's steps)."""
        if self.sums is not None:
            self.sums.zero_()
        self.count = 0


class Diverged(GanctlError):
    """Training diverged: a loss or weight became NaN or infinite (a guarded run may roll back)."""


class DivergenceWatch:
    """Notices the first step whose D or G loss is not finite, on the device (no host sync in the
    step); `check` reads it where the loop synchronises anyway, and before every checkpoint."""

    def __init__(self, run_dir: Path, device: torch.device) -> None:
        self.run_dir = run_dir
        self.first = torch.zeros(3, dtype=torch.long, device=device)  # step, D's loss bad, G's loss bad

    def reset(self) -> None:
        """Watch afresh (after a guard's rollback to finite weights)."""
        self.first.zero_()

    def update(self, step: int, statistics: dict[str, torch.Tensor]) -> None:
        bad = (~torch.isfinite(torch.stack([statistics["loss/d"], statistics["loss/g"]]))).long()  # (2,)
        new = (self.first[0] == 0) & (bad.sum() > 0)
        self.first = torch.where(new, torch.cat([torch.full_like(bad[:1], step), bad]), self.first)

    def check(self, last_saved: int, step_now: int = 0, gan: Optional[GAN] = None) -> None:
        """Raise if a loss went non-finite; with `gan`, also if any weight did (a non-finite
        gradient poisons the weights one step before it shows in a loss): before every checkpoint."""
        step, d_bad, g_bad = self.first.tolist()
        if not step and gan is not None:
            finite = [torch.stack([p.isfinite().all() for p in net.parameters()]).all()
                      for net in (gan.discriminator, gan.generator)]
            d_bad, g_bad = (not bool(ok) for ok in finite)
            step = step_now if d_bad or g_bad else 0
        if not step:
            return
        network = "discriminator (D)" if d_bad else "generator (G)"
        kept = (f"checkpoints/last.pt holds step {last_saved}, the last finite state (weights and optimizer "
                f"states); continue from it with `ganctl train {word(f'resume={self.run_dir}')}` after a change"
                if last_saved > 0 else "no checkpoint was written before it")
        raise Diverged(
            f"Training diverged at step {step}: the {network} loss or weights became NaN or infinite, so training "
            f"stopped and nothing after it was saved; {kept}. Common fixes: a lower learning rate "
            "(optimizer.d.lr / optimizer.g.lr), loss=wgangp or model.discriminator.spectral_norm=true."
        )


class RunOutputs:
    """What a run writes into its directory, and what it has written: checkpoints (never a
    NaN-poisoned one), the fixed-latent grids, the metric cards and best.pt."""

    def __init__(self, run_dir: Path, cfg: DictConfig, choices: dict[str, str], gan: GAN, data_shape: dict[str, int],
                 device: torch.device, resume: Optional[dict[str, Any]], guard: Guard,
                 lineage: Optional[dict[str, Any]] = None, cpu_threads: Optional[threads.ThreadChoice] = None) -> None:
        self.run_dir, self.cfg, self.choices, self.gan, self.data_shape, self.device = run_dir, cfg, choices, gan, data_shape, device
        self.cpu_threads = cpu_threads  # torch's thread count and why, for the summary
        # fewer CPU threads while other processes take the CPUs (on a CPU device: elsewhere they change no result)
        self.backoff = threads.Backoff(cpu_threads) if cpu_threads and device.type == "cpu" else None
        self.lineage = lineage  # a fine-tuned run's (`finetune.Lineage`), in every checkpoint and the summary
        self.guard, self.stopped_by_guard, self.rolled_back_at = guard, False, 0
        resume = resume or {}
        self.last_saved: int = resume.get("step", 0)  # the step checkpoints/last.pt holds (0: none yet)
        self.cards: list[dict[str, Any]] = resume.get("metrics") or []
        self.best: Optional[dict[str, Any]] = resume.get("best")
        self.wall_before: float = resume.get("wall_seconds", 0.0)
        self.divergence = DivergenceWatch(run_dir, device)
        self.started = time.perf_counter()

    def state(self, step: int) -> dict[str, Any]:
        config = OmegaConf.to_container(self.cfg, resolve=True)
        config["train"]["precision"] = self.gan.precision  # what auto chose: a resume computes the same on any machine
        return checkpoint.training_state(
            self.gan.state_dict(), step=step, wall_seconds=self.wall_before + time.perf_counter() - self.started,
            config=config, choices=dict(self.choices),
            metrics=self.cards, best=self.best, data=self.data_shape, device=self.device, lineage=self.lineage,
            guard=self.guard.state_dict() if self.guard.recorded else None,
        )

    def save(self, step: int, periodic: bool) -> None:
        """last.pt, and with `periodic` also step_<N>.pt (pruned to train.keep_last)."""
        self.divergence.check(self.last_saved, step, self.gan)
        paths = [checkpoint.step_path(self.run_dir, step)] if periodic else []
        checkpoint.save(self.state(step), *paths, checkpoint.last_path(self.run_dir))
        self.last_saved = step
        if periodic and self.cfg.train.keep_last:
            checkpoint.prune(self.run_dir, self.cfg.train.keep_last, step)

    def grid(self, step: int, logger: RunLogger | NullLogger) -> None:
        """The fixed-latent grid (one row per class for a conditional GAN). Its latents come from their
        own RNG (train.seed), so drawing them never shifts the training RNG."""
        self.divergence.check(self.last_saved)
        images, per_row = self.gan.sampler.grid(self.cfg.train.num_samples, self.cfg.train.seed)
        grid = make_grid(images, nrow=per_row, normalize=True, value_range=(-1, 1))
        write_atomically(self.run_dir / "samples" / f"step_{step:07d}.png", lambda f: save_image(grid, f, format="PNG"))
        logger.image("samples/fixed_latents", grid, step)

    def evaluate(self, step: int, evaluator: Any, logger: RunLogger | NullLogger) -> None:
        """Metric cards to metrics.jsonl and TensorBoard; checkpoints/best.pt when the best metric improves;
        then the guard's decision (a rollback or a stop) when the run has one."""
        from ganctl import metrics

        self.cards = evaluator(self.gan.sampler, step, self.gan.discriminator)
        for card in self.cards:
            if self.lineage:
                card["lineage"] = finetune.on_card(self.lineage)
            if self.guard.active:
                card["branch"] = self.guard.branch_record()
        metrics.append_jsonl(self.run_dir, self.cards)
        logger.scalars(metrics.scalars(self.cards), step)
        card = next(card for card in self.cards if card["metric"] == self.cfg.metrics.best)
        previous = self.best
        if metrics.is_better(card["metric"], card["value"], self.best and self.best["value"]):
            self.divergence.check(self.last_saved, step, self.gan)
            self.best = {"metric": card["metric"], "value": card["value"], "step": step}
            checkpoint.save(self.state(step), checkpoint.best_path(self.run_dir))
        if self.guard.active and step < self.cfg.train.steps:  # (the last evaluation is the run's result: nothing left to guard)
            self.judge(step, card["value"], previous, logger)

    def judge(self, step: int, value: float, previous: Optional[dict[str, Any]], logger: RunLogger | NullLogger) -> None:
        """The guard's decision on an evaluation of `value` at `step` against the best before it, carried out."""
        self.follow(self.guard.after_evaluation(step, value, previous, checkpoint.best_path(self.run_dir).is_file()), logger)

    def judge_where_the_last_leg_ended(self, resume: Optional[dict[str, Any]], logger: RunLogger | NullLogger) -> None:
        """A run resumed past the step its last leg ended at: that step's evaluation was the leg's result, so
        `evaluate` left it to the guard unjudged; the guard judges it now, before the first new step, as in a
        run that had not ended there (which would roll back or stop at that step), so that both go on alike."""
        if not (self.guard.active and resume and resume["step"] == resume["config"]["train"]["steps"] < self.cfg.train.steps):
            return
        step = resume["step"]
        card = next((card for card in self.cards if card["metric"] == self.cfg.metrics.best and card["step"] == step), None)
        if card is None:  # (no evaluation at that step)
            return
        previous = None if self.best and self.best["step"] == step else self.best  # the best before that evaluation
        self.judge(step, card["value"], previous, logger)
        if self.rolled_back_at == step or self.stopped_by_guard:
            self.save(step, periodic=False)  # (last.pt as the run that had gone on holds it)

    def diverged(self, step: int, error: Diverged, logger: RunLogger | NullLogger) -> None:
        """A divergence in a guarded run: roll back to best.pt (else last.pt, the last finite state) or stop."""
        if not self.guard.active:
            raise error
        best = checkpoint.best_path(self.run_dir)
        restorable = self.best["step"] if self.best and best.is_file() else (self.last_saved or None)
        decision = self.guard.at_divergence(step, restorable)
        if decision.action == "stop":
            log.warning(decision.describe())
            raise error
        self.follow(decision, logger)

    def follow(self, decision: Any, logger: RunLogger | NullLogger) -> None:
        """Carry out a guard's decision: log it (train.log, the terminal, and as guard/* scalars every
        tracker); a rollback restores the checkpoint exactly (its schedules' place included) and applies
        the changes; a stop ends the run after this step."""
        if decision.action == "continue":
            if decision.strike:  # worse, but not yet for long enough to act
                log.info(decision.describe())
            return
        log.warning(decision.describe())
        console.print(f"[yellow]{escape(decision.describe())}[/]")
        logger.scalars({"guard/branch": float(decision.branch), "guard/rollback": float(decision.action == "rollback"),
                        "guard/stop": float(decision.action == "stop")}, decision.step)
        if decision.action == "stop":
            self.stopped_by_guard = True
            return
        best = checkpoint.best_path(self.run_dir)
        path = best if self.best and self.best["step"] == decision.restored and best.is_file() else checkpoint.last_path(self.run_dir)
        state = checkpoint.load(path)
        self.gan.load_state_dict(checkpoint.gan_state(state))
        checkpoint.restore_rng_states(state["rng"], self.device)
        self.guard.restored(decision, state.get("guard"))
        self.guard.apply(self.gan)
        self.divergence.reset()
        self.rolled_back_at = decision.step


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


def prepare_run_dir(run_dir: Path, resume: Optional[dict[str, Any]], group: distributed.Group) -> None:
    """Remove what an interrupted checkpoint write left; refuse to start a new run over an old one."""
    if group.main:
        for path in checkpoint.clean_temporary(run_dir):
            log.info("Removed %s, left by an interrupted checkpoint write", path)
    if resume is None:
        rundir.refuse_new_run_over(run_dir)


def build_guard(cfg: DictConfig, gan: GAN, resume: Optional[dict[str, Any]], group: distributed.Group) -> Guard:
    """The run's collapse guard (train.guard; none for a run from before it), with the changes it made
    before a resume applied to the GAN. Several processes train without it (a rollback would have to
    restore every rank at once), and say so."""
    from ganctl.metrics import HIGHER_IS_BETTER

    settings = OmegaConf.select(cfg, "train.guard")
    best = cfg.metrics.best
    guard = Guard(settings, best, HIGHER_IS_BETTER.get(best, False), gan, (resume or {}).get("guard"))
    if guard.active and group.enabled:
        warn(f"train.guard.policy={guard.policy} is for one process; with {group.world_size} it is off (it acts on the "
             "main process's evaluations, and a rollback would have to restore every rank).")
        guard.policy = "none"
    if guard.active and not cfg.train.eval_every and group.main:
        note = (f"train.guard.policy={guard.policy} with train.eval_every=0: no evaluation to judge, so it acts only at a "
                "divergence (a NaN or infinite loss or weight). Set train.eval_every to let it watch metrics.best.")
        log.info(note)
        console.print(escape(note))  # (a note, not a warning: the recipes guard themselves this way)
    return guard


def build_evaluator(cfg: DictConfig, data: Any, gan: GAN, device: torch.device) -> Any:
    """The image-quality metrics of train.eval_every, against the configured split of the dataset
    (and class by class too, for a conditional GAN)."""
    from ganctl import metrics

    real = data if cfg.metrics.split == "train" else datasets.build(cfg.dataset, device, cfg.metrics.split, gan.conditional)
    return metrics.Evaluator(config.resolved_metrics(cfg.metrics, cfg.dataset), real, device, classes=gan.classes)


def train(cfg: DictConfig, run_dir: Path, choices: dict[str, str], resume: Optional[dict[str, Any]] = None) -> RunResult:
    """Train G and D as the config says, writing checkpoints, logs and samples into run_dir."""
    group, device = distributed.setup(resolve_device(cfg.train.device), cfg.train.ddp_backend)
    try:
        with threads.applied(OmegaConf.select(cfg, "train.threads")) as cpu_threads:  # before anything computes
            result = train_on(cfg, Path(distributed.broadcast(str(run_dir), group)), choices, resume, group, device, cpu_threads)
    except BaseException:
        distributed.teardown(failed=True)
        raise
    distributed.teardown()
    return result


def train_on(
    cfg: DictConfig, run_dir: Path, choices: dict[str, str], resume: Optional[dict[str, Any]],
    group: distributed.Group, device: torch.device, cpu_threads: threads.ThreadChoice,
) -> RunResult:
    """The training run itself, in one process of `group` (a single process without torchrun), with
    `cpu_threads` torch threads."""
    settings = cfg.train
    prepare_run_dir(run_dir, resume, group)
    batch_size = distributed.per_process_batch(settings.batch_size, settings.global_batch_size, group)
    seed_everything(settings.seed)
    data = datasets.build(cfg.dataset, device, labels=config.is_conditional(cfg))  # labels refused if missing
    gan = GAN.from_config(cfg, data.channels, data.image_size, device, group, data.classes)
    micro_batch = config.check_batch_gpu(settings.batch_gpu, batch_size)  # (with a global batch: known only now)
    fits.check_batch(gan.discriminator, gan.measured, batch_size, device, micro_batch)
    start_step, lineage = 0, (resume or {}).get("lineage")
    if resume is None and OmegaConf.select(cfg, "init_from") is not None:  # fine-tuning: a new run from those weights
        lineage = finetune.start_from(cfg.init_from, gan, cfg, data, strict=cfg.init_strict)
    if resume is not None:
        gan.load_state_dict(checkpoint.gan_state(resume))
        checkpoint.restore_rng_states(resume["rng"], device)
        start_step = resume["step"]
    distributed.reseed(group)  # several ranks: each draws its own batches and latents
    if start_step >= settings.steps:
        console.print(f"{run_dir} already reached {start_step} of train.steps={settings.steps}; nothing to do. "
                      f"Pass a larger train.steps to train further.")
        return RunResult(run_dir, start_step, {})
    evaluator = build_evaluator(cfg, data, gan, device) if settings.eval_every and group.main else None
    log.info(
        "%s %s: %s, %d images of %dx%dx%d, G %.2fM and D %.2fM parameters, steps %d -> %d, %s",
        "Resuming" if resume else "Training", run_dir, ", ".join(f"{k}={v}" for k, v in choices.items()),
        len(data), data.channels, data.image_size, data.image_size,
        sum(p.numel() for p in gan.generator.parameters()) / 1e6,
        sum(p.numel() for p in gan.discriminator.parameters()) / 1e6, start_step, settings.steps, cpu_threads.describe(),
    )
    log_versions(device)
    frozen = sum(parameter.numel() for parameter in gan.discriminator.parameters() if not parameter.requires_grad)
    if frozen and group.main:
        blocks = cfg.model.discriminator.freeze
        message = f"FreezeD: D's first {blocks} block{'s' if blocks != 1 else ''} frozen ({frozen:,} parameters)"
        log.info(message)
        console.print(message)
    if lineage is not None:
        log.info(finetune.describe(lineage))
    images_per_step = batch_size * group.world_size  # every rank's images, as the summary counts them
    logger = (RunLogger(run_dir, settings.steps, start_step, images_per_step,
                        trackers=trackers.open_trackers(cfg, run_dir, choices, start_step)) if group.main else NullLogger())
    pruning = search.pruning(cfg) if group.main else None  # an Optuna trial: report to the study, stop when it prunes
    shape = {"channels": data.channels, "image_size": data.image_size, **({"classes": gan.classes} if gan.conditional else {})}
    outputs = RunOutputs(run_dir, cfg, choices, gan, shape, device, resume, build_guard(cfg, gan, resume, group), lineage,
                         cpu_threads)
    means, batches = RunningMeans(), datasets.endless(data, batch_size, labels=gan.conditional)
    outputs.judge_where_the_last_leg_ended(resume, logger)
    last_step = start_step if outputs.stopped_by_guard else settings.steps
    step, stopping, last_logged = start_step, False, {}
    ended = "failed"  # what the trackers record unless the loop ends as planned (or by a signal: killed)
    with GracefulStop() as stop:
        try:
            for step in range(start_step + 1, last_step + 1):
                statistics = gan.step(batches, step)
                means.add(statistics)
                if outputs.backoff and (change := outputs.backoff.tick(step)) is not None:
                    log.info(change)
                outputs.divergence.update(step, statistics)
                stopping = distributed.any_rank(stop.requested is not None, group)  # all ranks stop together
                try:
                    if group.main and (step % settings.log_every == 0 or step == settings.steps or stopping):
                        last_logged = gan.scalars(means.read())  # the one host sync
                        outputs.divergence.check(outputs.last_saved)
                        logger.log(last_logged, step)
                        if pruning is not None and pruning.prunes(step, statistics=last_logged):
                            stop.requested = stop.requested or search.PRUNED
                    if group.main and settings.sample_every and step % settings.sample_every == 0:
                        outputs.grid(step, logger)
                    if group.main and settings.eval_every and (step % settings.eval_every == 0 or step == settings.steps):
                        outputs.evaluate(step, evaluator, logger)  # a guarded run may roll back or stop here
                        if pruning is not None and pruning.prunes(step, cards=outputs.cards):
                            stop.requested = stop.requested or search.PRUNED
                    if group.main and settings.ckpt_every and step % settings.ckpt_every == 0:
                        outputs.save(step, periodic=True)
                except Diverged as error:
                    outputs.diverged(step, error, logger)  # a guarded run's rollback, else the error again
                if outputs.rolled_back_at == step:
                    means.clear()  # the abandoned branch's steps
                if stopping or outputs.stopped_by_guard:
                    break
            if group.main and outputs.last_saved != step:
                outputs.save(step, periodic=False)
            if group.main and (not settings.sample_every or step % settings.sample_every):
                outputs.grid(step, logger)
            ended = "ran"
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, checkpoints as they were
            ended = "killed"
            if group.main:
                report_stopped_at_once(run_dir, step)
            raise
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:  # (CUDA's type; the CPU allocator's RuntimeError)
            if not fits.out_of_memory(error):
                raise
            raise GanctlError(out_of_memory_message(device, step, batch_size, micro_batch, gan.position, outputs.last_saved)) from error
        finally:
            logger.close()
            if ended != "ran":
                logger.end(ended)
    stopped_by = stop.requested or ("SIGTERM" if stopping else None)  # a rank can stop on another's signal
    return finish(cfg, run_dir, choices, gan, group, device, outputs, step - start_step, step, last_logged, stopped_by, logger)


def out_of_memory_message(device: torch.device, step: int, batch_size: int, micro_batch: int, position: str,
                          last_saved: int) -> str:
    """What to do when a step ran out of memory: a smaller micro-batch (train.batch_gpu, a divisor of the
    batch per process), or one in the first place; and which checkpoint holds the last state."""
    smaller = max((k for k in range(1, micro_batch // 2 + 1) if batch_size % k == 0), default=1)
    if micro_batch < batch_size:
        where = (f"at step {step}, {position or 'outside its passes'} (train.batch_gpu={micro_batch} of train.batch_size={batch_size} images "
                 f"per process): try a smaller micro-batch (e.g. train.batch_gpu={smaller}), a smaller batch or a smaller model.")
    else:
        where = (f"at step {step} with train.batch_size={batch_size}: try a smaller batch (e.g. train.batch_size="
                 f"{max(1, batch_size // 2)}), the same batch in micro-batches (e.g. train.batch_gpu={smaller}), or a smaller model.")
    kept = f"checkpoints/last.pt holds step {last_saved}." if last_saved else "No checkpoint was written yet."
    return f"Out of {device.type.upper()} memory {where} {kept}"


def log_versions(device: torch.device) -> None:
    """What the run trains with, in train.log, where `ganctl report` reads it back (a run's checkpoints
    and summary do not record it)."""
    import platform

    import torchvision

    from ganctl import __version__

    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    log.info("Versions: ganctl %s, torch %s, torchvision %s, Python %s; device %s%s",
             __version__, torch.__version__, torchvision.__version__, platform.python_version(), device, name)


def report_stopped_at_once(run_dir: Path, step: int) -> None:
    """A second Ctrl-C wrote no checkpoint: say so in train.log and on the terminal, with the resume
    command when last.pt is there (it is always complete: checkpoints are written atomically)."""
    last = checkpoint.last_path(run_dir)
    kept = (f"{last} is the last complete checkpoint. Continue with:\n  ganctl train {word(f'resume={run_dir}')}" if last.exists()
            else "no checkpoint was written yet.")
    log.warning("Stopped at once by a second Ctrl-C during step %d; %s", step, kept)
    console.print(f"[yellow]Stopped at once by a second Ctrl-C[/] during step {step}; {escape(kept)}")


def run_results(last_logged: dict[str, float], cards: list[dict[str, Any]], best: Optional[dict]) -> dict[str, Any]:
    """The summary's view of how training ended: every statistic of the last log interval by name
    (`statistics`; the losses and D's view again under the keys sweeps read), the latest metric
    values and the best one."""
    return {
        "losses": {"d_loss": last_logged.get("loss/d"), "g_loss": last_logged.get("loss/g")},
        "d_real": last_logged.get("d/real"),
        "d_fake": last_logged.get("d/fake"),
        "statistics": dict(last_logged),
        **{f"metrics/{card['metric']}": card["value"] for card in cards},
        **({"best": best} if best else {}),
    }


def finish(
    cfg: DictConfig, run_dir: Path, choices: dict[str, str], gan: GAN, group: distributed.Group, device: torch.device,
    outputs: RunOutputs, steps_trained: int, step: int, last_logged: dict[str, float], stopped_by: Optional[str],
    logger: RunLogger | NullLogger,
) -> RunResult:
    """The run's summary: summary.json and the table when it finished, the resume command when stopped."""
    wall = time.perf_counter() - outputs.started
    images_per_step = distributed.per_process_batch(cfg.train.batch_size, cfg.train.global_batch_size, group) * group.world_size
    summary = {
        "steps": step,
        "wall_seconds": outputs.wall_before + wall,
        "images_per_second": steps_trained * images_per_step / max(wall, 1e-9),
        **run_results(last_logged, outputs.cards, outputs.best),
        **{name: choices.get(name) for name in ("model", "loss", "optimizer", "dataset", "conditioning")},
        **({"guard": outputs.guard.state_dict()} if outputs.guard.recorded else {}),
        **({"stopped_by_guard": step} if outputs.stopped_by_guard else {}),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),  # CPU results are bit-for-bit the same at the same count
        **({"torch_threads_reason": outputs.cpu_threads.reason} if outputs.cpu_threads else {}),  # what chose it (ganctl/threads.py)
        **({"torch_threads_changes": outputs.backoff.changes} if outputs.backoff and outputs.backoff.changes else {}),
        "run_dir": str(run_dir),
        **({"lineage": outputs.lineage} if outputs.lineage else {}),
    }
    if group.enabled:  # DDP keeps every rank's weights identical: check it, and say so
        summary["ranks"] = {"world_size": group.world_size,
                            "weights_agree": distributed.weights_agree([gan.generator, gan.discriminator], group),
                            **({"augment_p_agrees": distributed.tensors_agree([gan.ada.p], group)} if gan.ada.enabled else {}),
                            **{f"{unit.name}_state_agrees": distributed.tensors_agree(list(unit.state_dict().values()), group)
                               for unit in gan.loss.regularisers if unit.active and unit.state_dict()}}
    if not group.main:
        return RunResult(run_dir, step, summary, interrupted_by=stopped_by)
    curves = plots.write_curves(run_dir) if cfg.train.curves else None  # curves.png, from the run's own TensorBoard events
    artifacts = ((curves, "plots"),) if curves else ()
    logger.end("killed" if stopped_by else "finished", (*artifacts, (checkpoint.last_path(run_dir), "checkpoints")))
    if stopped_by:
        console.print(
            f"[yellow]Stopped by {stopped_by} after step {step}[/]; saved {checkpoint.last_path(run_dir)}.\n"
            f"Continue with:\n  ganctl train {escape(word(f'resume={run_dir}'))}"
        )
        log.info("Stopped by %s after step %d; saved last.pt", stopped_by, step)
        return RunResult(run_dir, step, summary, interrupted_by=stopped_by)
    log.info("Finished: %s", summary)
    write_summary(run_dir, summary)
    print_summary(summary, run_dir)
    return RunResult(run_dir, step, summary)

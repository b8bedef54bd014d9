"""The GAN: its networks and optimizers, how one step trains them, and the one door to G's images.

    gan = GAN.from_config(cfg, channels=1, image_size=28, device=device)
    stats = gan.step(batches, step)   # critic update(s), then G's: on-device statistics (STATISTICS)
    images = gan.generate(latents)    # G in eval mode (its EMA when there is one), fp32, on the CPU
    state = gan.state_dict()          # networks, EMA, optimizers, schedulers, loss scales

One step, for every loss: `loss.critic_steps` critic updates, each on a fresh real batch and fresh
fakes (the gradient penalty on their interpolates, weight clipping after the update), then one
generator update on the last critic step's fakes, scored by the updated critic with its weights
frozen; then the learning-rate schedules and the EMA of G. Nothing in it reads a value back to the
host: the run reads the statistics once per log interval.

`Sampler` is how anything makes images from G -- the training grid, the metrics and `ganctl sample`
(which builds one from a checkpoint alone, without D or the optimizers).
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any, Callable, Iterator, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from ganctl import distributed, speed
from ganctl.augment import augment
from ganctl.config import build
from ganctl.errors import GanctlError
from ganctl.losses import GANLoss, clip_weights, gradient_penalty

# What `GAN.step` returns, stacked in this order: the losses, D's mean raw scores and mean
# probabilities (sigmoid of the scores) of the real and fake images, and the penalty term.
STATISTICS = ("d_loss", "g_loss", "real_score", "fake_score", "real_probability", "fake_probability", "penalty")


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


class Sampler:
    """The one door to G's images: latents from a seed, G in eval mode (BatchNorm uses its running
    statistics and does not update them), images in [-1, 1] in fp32."""

    def __init__(self, generator: nn.Module, weights: str = "raw") -> None:
        self.generator = generator
        self.weights = weights  # "ema" or "raw": which of G's weights make the images

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def latents(self, num: int, seed: int) -> torch.Tensor:
        """(num, latent_dim) standard normal latents on the CPU, from their own RNG: the same seed
        gives the same latents on any device, and drawing them never moves the training RNG."""
        return torch.randn(num, self.latent_dim, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def batches(self, latents: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """G's images (B, C, H, W) for `latents` in chunks of batch_size, on G's device."""
        was_training = self.generator.training
        self.generator.eval()
        device = next(self.generator.parameters()).device
        try:
            for chunk in latents.split(batch_size):
                yield self.generator(chunk.to(device)).float()
        finally:
            self.generator.train(was_training)

    def __call__(self, latents: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """G's images (N, C, H, W) for all of `latents`, on the CPU."""
        return torch.cat([images.cpu() for images in self.batches(latents, batch_size)])

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], device: torch.device, ema: bool = True) -> "Sampler":
        """G as a checkpoint stores it, rebuilt from its own config: the EMA weights when present and asked for."""
        generator = build(state["config"]["model"]["generator"], "model.generator", **state["data"])
        weights = "ema" if ema and state.get("generator_ema") is not None else "raw"
        try:
            generator.load_state_dict(state["generator_ema" if weights == "ema" else "generator"])
        except (KeyError, RuntimeError, TypeError) as error:
            raise GanctlError(
                f"The checkpoint's generator weights do not fit the generator its config describes "
                f"({str(error).strip().splitlines()[0][:200]}): the file is not a complete ganctl checkpoint."
            ) from None
        return cls(generator.to(device).eval(), weights)


class GAN:
    """G and D, their optimizers, schedulers and loss scales, the EMA of G, and one training step."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        loss: GANLoss,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        settings: DictConfig,
        device: torch.device,
        group: Optional[distributed.Group] = None,
    ) -> None:
        """`settings` is the config's train block: EMA, learning-rate schedule, precision, augmentation,
        compile and sync_batchnorm are read from it."""
        group = group or distributed.Group()
        self.generator, self.discriminator, self.loss, self.device = generator, discriminator, loss, device
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False) if settings.ema.decay > 0 else None
        self.ema_decay, self.ema_start = settings.ema.decay, settings.ema.start
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        factor = partial(lr_factor, settings.lr_schedule, total_steps=settings.steps)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in (optimizer_g, optimizer_d)]
        self.precision = speed.resolve_precision(settings.precision, device)
        self.scaler_g, self.scaler_d = (speed.grad_scaler(device, self.precision) for _ in range(2))
        self.autocast = speed.autocast(device, self.precision)
        # fp16's narrow range would overflow the penalty's loss-scaled double backward: it runs in fp32.
        self.penalty_autocast = speed.autocast(device, "fp32" if self.precision == "fp16" else self.precision)
        self.policy = list(settings.augment)
        self.sampler = Sampler(self.generator_ema or generator, "ema" if self.generator_ema is not None else "raw")
        # What the step calls: DDP-wrapped when there are several ranks, compiled when asked. G's step
        # needs no gradient for D's weights, so nothing of D's to synchronise there: it calls D itself.
        speed.configure_backends(device, self.precision)
        sync_bn, compiled = settings.sync_batchnorm, settings.compile
        self.generator_call = speed.compiled(distributed.wrap(generator, group, device, sync_bn), "G", compiled)
        self.critic_call = speed.compiled(
            distributed.wrap(discriminator, group, device, sync_bn), "D", compiled, loss.double_backward
        )
        self.critic_call_in_g_step = (
            self.critic_call if not group.enabled else speed.compiled(discriminator, "D", compiled, loss.double_backward)
        )
        self.no_penalty = torch.zeros((), device=device)

    @classmethod
    def from_config(
        cls, cfg: DictConfig, channels: int, image_size: int, device: torch.device, group: Optional[distributed.Group] = None
    ) -> "GAN":
        """The model, loss and optimizer options of `cfg` for images of the given shape (the
        dataset's, a runtime fact); refuses a loss and critic that cannot train together."""
        loss = GANLoss.from_config(cfg.loss)
        shape = {"channels": channels, "image_size": image_size}
        channels_last = cfg.train.channels_last
        generator = speed.memory_format(build(cfg.model.generator, "model.generator", **shape).to(device), channels_last)
        discriminator = speed.memory_format(
            build(cfg.model.discriminator, "model.discriminator", **shape).to(device), channels_last
        )
        loss.check_critic(discriminator, cfg.optimizer.d)
        optimizer_g = speed.optimizer(build(cfg.optimizer.g, "optimizer.g"), generator.parameters(), device)
        optimizer_d = speed.optimizer(build(cfg.optimizer.d, "optimizer.d"), discriminator.parameters(), device)
        return cls(generator, discriminator, loss, optimizer_g, optimizer_d, cfg.train, device, group)

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    def step(self, batches: Iterator[torch.Tensor], step: int) -> torch.Tensor:
        """Train one step on real batches drawn from `batches` (one per critic update); `step` is
        its number (1, 2, ...), for the EMA's warm-up. Returns STATISTICS stacked, (7,) on the device."""
        loss, policy, penalty = self.loss, self.policy, self.no_penalty
        for critic_step in range(loss.critic_steps):
            real = next(batches)  # (B, C, H, W) in [-1, 1]
            latents = torch.randn(real.shape[0], self.latent_dim, device=self.device)
            with torch.set_grad_enabled(critic_step == loss.critic_steps - 1):
                fake = self.fakes(latents)  # the last critic step's fakes keep their graph for G's update
            real_scores = self.scores(self.critic_call, augment(real, policy))
            fake_scores = self.scores(self.critic_call, augment(fake.detach(), policy))
            d_loss = loss.discriminator(real_scores, fake_scores)
            if loss.gradient_penalty:
                penalty = gradient_penalty(partial(self.scores, self.critic_call, amp=self.penalty_autocast), real, fake)
                d_loss = d_loss + loss.gradient_penalty * penalty
            self.update(self.optimizer_d, self.scaler_d, d_loss)
            if loss.clip:
                clip_weights(self.discriminator, loss.clip)

        # The generator update on the same fakes, scored by the updated D.
        with speed.frozen(self.discriminator):
            g_loss = loss.generator(self.scores(self.critic_call_in_g_step, augment(fake, policy)))
        self.update(self.optimizer_g, self.scaler_g, g_loss)
        for scheduler in self.schedulers:
            scheduler.step()
        if self.generator_ema is not None:
            update_ema(self.generator_ema, self.generator, ema_decay(self.ema_decay, step - self.ema_start))
        return torch.stack([d_loss, g_loss, real_scores.mean(), fake_scores.mean(),
                            real_scores.sigmoid().mean(), fake_scores.sigmoid().mean(), penalty]).detach()

    def fakes(self, latents: torch.Tensor) -> torch.Tensor:
        """G's images at the run's precision, handed on in fp32."""
        with self.autocast():
            return self.generator_call(latents).float()

    def scores(self, critic: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, amp=None) -> torch.Tensor:
        """D's raw scores at the run's precision (or `amp`'s); the losses see them in fp32."""
        with (amp or self.autocast)():
            return critic(images).float()

    @staticmethod
    def update(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def generate(self, latents: torch.Tensor) -> torch.Tensor:
        """Images for `latents` through the one door (`Sampler`): G's EMA when there is one."""
        return self.sampler(latents)

    def scalars(self, means: dict[str, float]) -> dict[str, float]:
        """What to log from the means of STATISTICS over a log interval (the loss decides)."""
        return self.loss.scalars(means)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": self.generator_ema.state_dict() if self.generator_ema is not None else None,
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "scalers": [scaler.state_dict() for scaler in (self.scaler_g, self.scaler_d)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict (a checkpoint's). A loss scale carries over only when fp16
        continues; a change of precision starts it afresh."""
        try:
            self.generator.load_state_dict(state["generator"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.optimizer_g.load_state_dict(state["optimizer_g"])
            self.optimizer_d.load_state_dict(state["optimizer_d"])
            for scheduler, scheduler_state in zip(self.schedulers, state["schedulers"]):
                scheduler.load_state_dict(scheduler_state)
            if self.generator_ema is not None:
                self.generator_ema.load_state_dict(state["generator_ema"])
            for scaler, scaler_state in zip((self.scaler_g, self.scaler_d), state.get("scalers") or []):
                if scaler.is_enabled() and scaler_state:
                    scaler.load_state_dict(scaler_state)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
            raise GanctlError(
                f"The checkpoint's state does not fit the GAN its config describes ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else 'missing entry'}): "
                "the file is not a complete ganctl checkpoint."
            ) from None

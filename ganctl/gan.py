"""The GAN: its networks and optimizers, how one step trains them, and the one door to G's images.

    gan = GAN.from_config(cfg, channels=1, image_size=28, device=device, classes=None)
    stats = gan.step(batches, step)   # critic update(s), then G's: on-device statistics by name
    images = gan.generate(latents)    # G in eval mode (its EMA when there is one), fp32, on the CPU
    images = gan.generate(latents, labels)  # a conditional GAN's, of the classes `labels` (B,)
    state = gan.state_dict()          # networks, EMA, optimizers, schedulers, loss scales

One step, for every loss: `loss.critic_steps` critic updates, each on a fresh real batch and fresh
fakes (the gradient penalty on their interpolates, weight clipping after the update), then one
generator update on the last critic step's fakes, scored by the updated critic with its weights
frozen; then the learning-rate schedules and the EMA of G. Nothing in it reads a value back to the
host: the run reads the statistics once per log interval.

With `train.batch_gpu` each update runs in micro-batches of that many images (`MicroBatches`), its
gradient accumulated over them before the optimizer's step: each pass's loss weighs by its share of
the batch, D's minibatch-std groups stay whole, G makes its fakes again pass by pass for its own
update, and the statistics are the whole batch's. One pass (the default) is the step as it always was.

A class-conditional GAN (`classes`: the dataset's class names, a runtime fact like the image
shape; `cfg.conditioning` says how G and D see the label) makes its fakes of the real batch's
classes, so the data's class frequencies are G's, and real and fake images of a step share their
labels: D scores both with them, and the gradient penalty's interpolates keep them. An auxiliary
classifier (ACGAN) adds its cross-entropy on real and fake images to D's loss, and on the fakes to G's.

`Sampler` (`ganctl.sampling`) is how anything makes images from G -- the training grid, the metrics and
`ganctl sample` (which builds one from a checkpoint alone, without D or the optimizers) -- of the classes
asked for; the GAN holds one on its EMA.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl import config, distributed, fits, speed
from ganctl.ada import AdaptiveAugment
from ganctl.augment import augment
from ganctl.registry import build
from ganctl.errors import GanctlError
from ganctl.losses import GANLoss, classification_loss
from ganctl.models.conditioning import AuxiliaryOutput
from ganctl.regularisers import CriticInputs, GeneratorInputs, Regulariser
from ganctl.sampling import Sampler, build_discriminator, build_generator, conditioning_of
from ganctl.schedules import Schedule


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


def half_life_decay(half_life_images: float, rampup: Optional[float], images_seen: int, images_per_step: int) -> float:
    """StyleGAN2-ADA's EMA decay: a half-life in images, 0.5 ** (images_per_step / half-life), the
    half-life ramped up as at most rampup x the images seen before this update (0: a copy)."""
    if rampup is not None:
        half_life_images = min(half_life_images, images_seen * rampup)
    return 0.5 ** (images_per_step / max(half_life_images, 1e-8))


def ema_decay(decay: float, steps_averaged: int) -> float:
    """The EMA's decay after `steps_averaged` steps: warmed up as min(decay, (1 + t) / (10 + t)) so
    that early averages are not dominated by the random initial weights; 0 (a copy) before the start."""
    if steps_averaged <= 0:
        return 0.0
    return min(decay, (1 + steps_averaged) / (10 + steps_averaged))


def piece(tensor: Optional[torch.Tensor], part: slice) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor[part]


@dataclass(frozen=True)
class MicroBatches:
    """A step's batch of `size` images in passes of `micro` (train.batch_gpu; the whole batch: one pass).
    Iterating gives each pass's share of the batch (its loss's weight: the mean over the batch is
    the share-weighted sum of the passes' means), its slice, and whether it is the last.

    D's minibatch standard deviation pools images i, i + size / group, ... of its batch: `arrange`
    puts the step's images in an order whose micro-batches hold whole groups of the full batch, so D
    sees the same statistic as in one pass (`group`: its size; it divides `micro`, `fits.check_batch`)."""

    size: int
    micro: int
    group: int = 1

    @property
    def count(self) -> int:
        return self.size // self.micro

    def arrange(self, tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The batch (B, ...) in micro-batch order (as it is in one pass, or without groups)."""
        if tensor is None or self.count == 1 or self.group == 1 or self.micro % self.group:
            return tensor
        order = torch.arange(self.size, device=tensor.device).reshape(self.group, self.count, self.micro // self.group)
        return tensor[order.transpose(0, 1).reshape(-1)]  # pass k: images t * size / group + k * micro / group + j

    def __iter__(self) -> Iterator[tuple[float, slice, bool]]:
        for index in range(self.count):
            yield self.micro / self.size, slice(index * self.micro, (index + 1) * self.micro), index == self.count - 1

    def describe(self, update: str, index: int) -> str:
        """Where a step is, for a message (out of memory): "" in one pass."""
        return f"micro-batch {index + 1} of {self.count} in {update} update" if self.count > 1 else ""


@dataclass
class CriticUpdate:
    """What one update of D leaves for G's update and the step's statistics, in micro-batch order:
    its real images, latents and labels, D's scores and class logits of the images (detached), its
    loss and ACGAN's class loss (the whole batch's), and its fakes with their graph (one pass only)."""

    real: torch.Tensor
    latents: torch.Tensor
    labels: Optional[torch.Tensor]
    d_loss: Any = 0
    class_loss: Any = 0
    real_scores: Optional[torch.Tensor] = None
    fake_scores: Optional[torch.Tensor] = None
    real_classes: Optional[torch.Tensor] = None
    fake: Optional[torch.Tensor] = None


def regularised(loss: torch.Tensor, terms: list[Regulariser], update: int, inputs: Any) -> torch.Tensor:
    """A network's loss plus its regularisers' terms that are due at its update number `update` (0, 1, ...)."""
    for term in terms:
        if term.due(update):
            loss = loss + term.loss(inputs)
    return loss


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
        classes: Optional[list[str]] = None,
        auxiliary_weight: float = 1.0,
    ) -> None:
        """`settings` is the config's train block: EMA, learning-rate schedule, precision, augmentation,
        compile and sync_batchnorm are read from it. `classes`: a class-conditional GAN's class names;
        `auxiliary_weight`: the weight of an auxiliary classifier's loss (ACGAN), when D has one."""
        group = group or distributed.Group()
        self.generator, self.discriminator, self.loss, self.device = generator, discriminator, loss, device
        self.group = group
        self.classes = list(classes) if classes is not None else None
        self.auxiliary = any(isinstance(module, AuxiliaryOutput) for module in discriminator.modules())
        self.auxiliary_weight = auxiliary_weight
        # Knobs on a cosine over the images seen (train.schedules): set at the start of each step.
        self.schedules = {knob: Schedule.from_node(node) for knob, node in (settings.get("schedules") or {}).items()}
        self.images_per_step = settings.get("global_batch_size") or settings.batch_size * group.world_size
        self.scheduled: dict[str, float] = {}  # the knobs' values in the latest step
        half_life = settings.ema.get("half_life_kimg")
        averaged = settings.ema.decay > 0 or half_life is not None or "ema_half_life_kimg" in self.schedules
        self.generator_ema = copy.deepcopy(generator).eval().requires_grad_(False) if averaged else None
        self.ema_decay, self.ema_start = settings.ema.decay, settings.ema.start
        self.ema_half_life = half_life * 1000 if half_life is not None else None  # images
        self.ema_rampup, self.world_size = settings.ema.get("rampup"), group.world_size
        self.optimizer_g, self.optimizer_d = optimizer_g, optimizer_d
        factor = partial(lr_factor, settings.lr_schedule, total_steps=settings.steps)
        self.schedulers = ([] if "lr" in self.schedules else  # (a scheduled lr: the schedule sets it)
                           [torch.optim.lr_scheduler.LambdaLR(optimizer, factor) for optimizer in (optimizer_g, optimizer_d)])
        # A collapse guard's change (ganctl/guard.py, `retune`): factors over whatever the schedule or the constant
        # gives, a shift of ADA's target, and the steps its rollbacks abandoned. 1, 1, 0, 0 unguarded.
        self.lr_scale, self.penalty_scale, self.ada_target_shift, self.steps_spent = 1.0, 1.0, 0.0, 0
        self.precision = speed.resolve_precision(settings.precision, device)
        self.scaler_g, self.scaler_d = (speed.grad_scaler(device, self.precision) for _ in range(2))
        self.autocast = speed.autocast(device, self.precision)
        # fp16's narrow range would overflow the penalty's loss-scaled double backward: it runs in fp32.
        self.penalty_autocast = speed.autocast(device, "fp32" if self.precision == "fp16" else self.precision)
        # A finite difference of bf16 scores is mostly their rounding: R1/R2 by finite differences score in fp32.
        self.fp32_autocast = speed.autocast(device, "fp32")
        self.policy = list(settings.augment)
        self.ada = AdaptiveAugment.from_settings(settings.get("ada"), device, group)  # its p: state, adjusted by the step
        self.ada.check(loss, self.policy)
        self.configured_ada_target = self.ada.target  # (what a collapse guard's shift moves: `retune`)
        self.sampler = Sampler(self.generator_ema or generator, "ema" if self.generator_ema is not None else "raw", self.classes)
        # What the step calls: DDP-wrapped when there are several ranks, compiled when asked. G's step
        # needs no gradient for D's weights, so nothing of D's to synchronise there: it calls D itself.
        speed.configure_backends(device, self.precision)
        sync_bn, compiled = settings.sync_batchnorm, settings.compile
        self.generator_module = distributed.wrap(generator, group, device, sync_bn)  # (DDP's: its no_sync between passes)
        self.critic_module = distributed.wrap(discriminator, group, device, sync_bn)
        self.generator_call = speed.compiled(self.generator_module, "G", compiled, loss.double_backward("generator"))
        self.critic_call = speed.compiled(self.critic_module, "D", compiled, loss.double_backward("discriminator"))
        self.critic_call_in_g_step = (self.critic_call if not group.enabled else
                                      speed.compiled(discriminator, "D", compiled, loss.double_backward("discriminator")))
        self.critic_terms, self.generator_terms = loss.terms("discriminator"), loss.terms("generator")
        for unit in loss.regularisers:
            unit.to(device)
        self.knobs = self.knob_setters()
        # train.batch_gpu: images per forward and backward pass (None: the whole batch), and D's minibatch-std group
        self.batch_gpu, self.minibatch_group = settings.get("batch_gpu"), fits.minibatch_std_group(discriminator)
        self.position = ""  # which micro-batch of which update the step is in, for an out-of-memory message

    @classmethod
    def from_config(
        cls, cfg: DictConfig, channels: int, image_size: int, device: torch.device, group: Optional[distributed.Group] = None,
        classes: Optional[list[str]] = None,
    ) -> "GAN":
        """The model, loss, conditioning and optimizer options of `cfg` for images of the given shape
        and classes (the dataset's, runtime facts; `classes` None: it has no labels); refuses a loss and
        critic that cannot train together, and conditioning that the data or the models cannot take."""
        loss = GANLoss.from_config(cfg.loss)
        conditioning = conditioning_of(cfg, classes)
        channels_last = cfg.train.channels_last
        with warnings.catch_warnings():  # a layer of size 0 says so here; the trial below refuses it in one line
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
            generator = build_generator(cfg.model.generator, channels, image_size, conditioning)
            discriminator = build_discriminator(cfg.model.discriminator, channels, image_size, conditioning)
        generator = speed.memory_format(generator.to(device), channels_last)
        discriminator = speed.memory_format(discriminator.to(device), channels_last)
        loss.check_critic(discriminator, cfg.optimizer.d)
        loss.check_generator(generator)
        measured = fits.trial(generator, discriminator, cfg.model, conditioning.conditional)  # refuses what cannot run
        optimizer_g = speed.optimizer(build(cfg.optimizer.g, "optimizer.g"), generator.parameters(), device)
        trained = [parameter for parameter in discriminator.parameters() if parameter.requires_grad]  # (FreezeD's are not)
        optimizer_d = speed.optimizer(build(cfg.optimizer.d, "optimizer.d"), trained, device)
        auxiliary_weight = OmegaConf.select(cfg, "conditioning.auxiliary_weight", default=1.0)
        gan = cls(generator, discriminator, loss, optimizer_g, optimizer_d, cfg.train, device, group,
                  classes if conditioning.conditional else None, auxiliary_weight)
        gan.measured = measured  # its activations per image: `fits.check_batch`
        return gan

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def conditional(self) -> bool:
        """Whether G and D see class labels: the batches must bring them (`data.endless(..., labels=True)`)."""
        return self.classes is not None

    def knob_setters(self) -> dict[str, Callable[[float], None]]:
        """What sets each scheduled knob (train.schedules) to its value for a step; a knob this GAN has no
        place for is refused."""
        def learning_rate(value: float) -> None:
            for optimizer in (self.optimizer_g, self.optimizer_d):
                for group in optimizer.param_groups:
                    group["lr"] = value * self.lr_scale  # (a collapse guard's factor: 1 unguarded)

        def beta2(value: float) -> None:
            for optimizer in (self.optimizer_g, self.optimizer_d):
                for group in optimizer.param_groups:
                    group["betas"] = (group["betas"][0], value)

        def half_life(value: float) -> None:
            self.ema_half_life = value * 1000  # images

        def augment_p(value: float) -> None:
            self.ada.p.fill_(value)  # (in place, on the device: no sync; a resumed ADA holds a new tensor, so look it up)

        setters: dict[str, Callable[[float], None]] = {"lr": learning_rate, "beta2": beta2,
                                                       "ema_half_life_kimg": half_life, "ada_p": augment_p}
        units = {unit.name: unit for unit in self.loss.regularisers}
        for knob in self.schedules:
            if knob == "beta2" and any("betas" not in optimizer.param_groups[0] for optimizer in (self.optimizer_g, self.optimizer_d)):
                raise GanctlError("train.schedules.beta2 schedules Adam's beta2, but an optimizer here has no betas: "
                                  "use an Adam-family optimizer (optimizer=r3gan, adam, ...), or drop the schedule.")
            if knob in units and not units[knob].active:
                raise GanctlError(f"train.schedules.{knob} schedules loss.regularisers.{knob}, which is off (weight 0): "
                                  "give it a weight (any: the schedule sets it), or drop the schedule.")
        return {knob: setters[knob] if knob in setters else units[knob].set_weight for knob in self.schedules}

    def follow_schedules(self, step: int) -> None:
        """Set every scheduled knob to its value after the images of the steps before `step`."""
        images_seen = (step - 1 - self.steps_spent) * self.images_per_step  # (a guard's rollbacks: steps not counted)
        self.scheduled = {knob: schedule(images_seen) for knob, schedule in self.schedules.items()}
        for knob, value in self.scheduled.items():
            self.knobs[knob](value)

    def step(self, batches: Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]], step: int) -> dict[str, torch.Tensor]:
        """Train one step on real batches drawn from `batches` (one per critic update: images and, for a
        conditional GAN, their labels); `step` is its number (1, 2, ...), for the EMA's warm-up, the
        lazy regularisers and the schedules. Returns the step's statistics by name, on the device (`statistics`).

        With train.batch_gpu, each update accumulates its gradient over micro-batches (`MicroBatches`):
        the step draws its whole batch of latents as without, each pass's loss weighs by its share of
        the batch, and the statistics are the whole batch's."""
        loss = self.loss
        self.follow_schedules(step)
        for critic_step in range(loss.critic_steps):
            real, labels = next(batches)  # (B, C, H, W) in [-1, 1]; their classes (B,), or None
            latents = torch.randn(real.shape[0], self.latent_dim, device=self.device)
            passes = MicroBatches(real.shape[0], config.check_batch_gpu(self.batch_gpu, real.shape[0]), self.minibatch_group)
            # One pass: the last critic update's fakes keep their graph for G's update; several: G makes them again.
            keep_fakes = critic_step == loss.critic_steps - 1 and passes.count == 1
            critic = self.critic_update(passes, real, latents, labels, (step - 1) * loss.critic_steps + critic_step, keep_fakes)
        g_loss, fake_classes_g = self.generator_update(passes, critic, GeneratorInputs(latents, labels, self.images_and_styles,
                                                                                       self.group, passes.micro), step)
        for scheduler in self.schedulers:
            scheduler.step()
        if self.lr_scale != 1.0:  # a collapse guard's factor over the schedule (`retune`)
            self.scale_learning_rates()
        self.ada.adjust(step)
        if self.generator_ema is not None:
            update_ema(self.generator_ema, self.generator, self.ema_decay_at(step, real.shape[0] * self.world_size))
        classified = None if fake_classes_g is None else (critic.class_loss, critic.real_classes, fake_classes_g, critic.labels)
        return self.statistics(critic.d_loss, g_loss, critic.real_scores, critic.fake_scores, classified)

    def critic_update(self, passes: MicroBatches, real: torch.Tensor, latents: torch.Tensor, labels: Optional[torch.Tensor],
                      update: int, keep_fakes: bool) -> CriticUpdate:
        """One update of D (its number `update`: 0, 1, ...) on the real images and G's images of `latents`,
        their gradients accumulated pass by pass; weight clipping after it. What G's update and the
        statistics need of it comes back, in micro-batch order."""
        real, latents, labels = passes.arrange(real), passes.arrange(latents), passes.arrange(labels)
        self.optimizer_d.zero_grad(set_to_none=True)
        done = CriticUpdate(real, latents, labels)
        reported: dict[Regulariser, torch.Tensor] = {}
        scores: list[tuple[torch.Tensor, ...]] = []
        for index, (share, part, last) in enumerate(passes):
            self.position = passes.describe("D's", index)
            real_m, latents_m, labels_m = real[part], latents[part], piece(labels, part)
            with distributed.accumulating(self.critic_module, sync=last):
                with torch.set_grad_enabled(keep_fakes):
                    fake = self.fakes(latents_m, labels_m)
                real_scores, real_classes = self.critic_outputs(self.critic_call, self.augmented(real_m), labels_m)
                fake_scores, fake_classes = self.critic_outputs(self.critic_call, self.augmented(fake.detach()), labels_m)
                d_loss = self.loss.discriminator(real_scores, fake_scores)
                if real_classes is not None:  # ACGAN: D also names the class of real and fake images
                    class_loss = classification_loss(real_classes, labels_m) + classification_loss(fake_classes, labels_m)
                    d_loss = d_loss + self.auxiliary_weight * class_loss
                    done.class_loss = done.class_loss + share * class_loss.detach()
                # Each D-side term on the images as D sees them (the gradient penalty's interpolates keep the labels).
                inputs = CriticInputs(real_m, fake, partial(self.penalised_scores, self.augmented, labels=labels_m),
                                      partial(self.penalised_scores, self.ada.augment, labels=labels_m), self.augmented,
                                      partial(self.scores, self.critic_call, labels=labels_m, amp=self.fp32_autocast))
                d_loss = regularised(d_loss, self.critic_terms, update, inputs) * share  # (each term a mean over the images)
                for term in (term for term in self.critic_terms if term.due(update)):
                    reported[term] = reported.get(term, 0) + share * term.latest
                self.scaler_d.scale(d_loss).backward()
            done.d_loss = done.d_loss + d_loss.detach()
            scores.append((real_scores.detach(), fake_scores.detach(), *(() if real_classes is None else (real_classes.detach(),))))
            done.fake = fake if keep_fakes else None
        self.apply(self.optimizer_d, self.scaler_d)
        for term, value in reported.items():  # a term's statistic: the whole batch's mean
            term.latest = value
        for term in self.critic_terms:
            term.after_update(self.discriminator)
        done.real_scores, done.fake_scores, *classes = (torch.cat(column) for column in zip(*scores))
        done.real_classes = classes[0] if classes else None
        self.ada.observe(done.real_scores)
        return done

    def generator_update(self, passes: MicroBatches, critic: CriticUpdate, inputs: GeneratorInputs,
                         step: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """G's update on the last critic update's fakes (made again pass by pass when there are several),
        scored by the updated D; its regularisers join the last pass, whole. Returns G's loss and, ACGAN,
        D's class logits of the fakes."""
        self.optimizer_g.zero_grad(set_to_none=True)
        g_total, fake_classes = torch.zeros((), device=self.device), []
        for index, (share, part, last) in enumerate(passes):
            self.position = passes.describe("G's", index)
            labels = piece(critic.labels, part)
            with distributed.accumulating(self.generator_module, sync=last):
                fake = critic.fake if critic.fake is not None else self.fakes(critic.latents[part], labels)
                with speed.frozen(self.discriminator):
                    fake_scores_g, fake_classes_g = self.critic_outputs(self.critic_call_in_g_step, self.augmented(fake), labels)
                    g_loss = self.loss.generator_loss(
                        fake_scores_g, self.reals_for_generator(critic.real[part], critic.real_scores[part], labels))
                    if fake_classes_g is not None:  # ACGAN: G makes fakes that D's classifier takes for their class
                        g_loss = g_loss + self.auxiliary_weight * classification_loss(fake_classes_g, labels)
                        fake_classes.append(fake_classes_g.detach())
                g_loss = g_loss * share
                if last:  # (path length: on its own sub-batch of the step's latents, at most one micro-batch)
                    g_loss = regularised(g_loss, self.generator_terms, step - 1, inputs)
                self.scaler_g.scale(g_loss).backward()
            g_total = g_total + g_loss.detach()
        self.apply(self.optimizer_g, self.scaler_g)
        self.position = ""
        return g_total, torch.cat(fake_classes) if fake_classes else None

    def reals_for_generator(self, real: torch.Tensor, real_scores: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """D's scores of the step's real images that a relativistic G loss compares its fakes with: D's
        from its update (before it), or with `loss.rescore_reals` the updated D's of the same images,
        seen through a fresh draw of the augmentation as in D's step (R3GAN's Trainer.py). No gradient
        reaches G or D through them."""
        if not self.loss.rescore_reals:
            return real_scores.detach()
        with torch.no_grad():
            return self.scores(self.critic_call_in_g_step, self.augmented(real), labels)

    def statistics(self, d_loss: torch.Tensor, g_loss: torch.Tensor, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                   classified: Optional[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
        """What a step measures, by name with a group prefix (loss/, d/, reg/, classifier/, augment/),
        detached on the device: every display (TensorBoard, the progress line, curves.png,
        summary.json) selects from these by name. D's view of real and fake as the loss reads it:
        probabilities for the BCE family, else raw scores, and a Wasserstein critic's distance estimate.
        `classified` (ACGAN): the classifier's loss in D's last update, its logits of the real images
        there and of G's fakes in G's update, and their labels."""
        with torch.no_grad():
            view = torch.sigmoid if self.loss.report == "probability" else (lambda scores: scores)
            stats = {"loss/d": d_loss, "loss/g": g_loss, "d/real": view(real_scores).mean(), "d/fake": view(fake_scores).mean()}
            if self.loss.report == "wasserstein":
                stats["d/wasserstein"] = real_scores.mean() - fake_scores.mean()
            stats.update({term.statistic: term.latest for term in (*self.critic_terms, *self.generator_terms) if term.reports})
            if classified is not None:
                class_loss, real_classes, fake_classes, labels = classified
                stats.update({"classifier/loss": class_loss,
                              "classifier/real_accuracy": (real_classes.argmax(1) == labels).float().mean(),
                              "classifier/fake_accuracy": (fake_classes.argmax(1) == labels).float().mean()})
            if self.ada.enabled:  # ADA's p after the step, and its heuristic r_t = E[sign(D(real))]
                stats.update({"augment/p": self.ada.p, "augment/r_t": real_scores.sign().mean()})
            return {name: value.detach() for name, value in stats.items()}

    def augmented(self, images: torch.Tensor) -> torch.Tensor:
        """Images as D sees them: through the DiffAugment policy (train.augment), then ADA's pipeline."""
        return self.ada.augment(augment(images, self.policy))

    def penalised_scores(self, view: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                         labels: Optional[torch.Tensor]) -> torch.Tensor:
        """D's scores of `images` seen through `view`, as a D-side regulariser differentiates them (at
        the penalties' precision: fp32 under fp16)."""
        return self.scores(self.critic_call, view(images), labels, self.penalty_autocast)

    def images_and_styles(self, latents: torch.Tensor, labels: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """G's images and the styles (W) that made them, in the graph (path length), at the penalties' precision."""
        with self.penalty_autocast():
            if labels is None:
                return self.generator_call(latents, with_styles=True)
            return self.generator_call(latents, labels, with_styles=True)

    def ema_decay_at(self, step: int, images_per_step: int) -> float:
        """The EMA's decay at `step`: from train.ema.decay warmed up, or from the half-life in images."""
        if self.ema_half_life is None:
            return ema_decay(self.ema_decay, step - self.ema_start)
        if step <= self.ema_start:
            return 0.0
        return half_life_decay(self.ema_half_life, self.ema_rampup, (step - 1 - self.ema_start) * images_per_step, images_per_step)

    def fakes(self, latents: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """G's images (of the classes `labels`, conditional) at the run's precision, handed on in fp32."""
        with self.autocast():
            fake = self.generator_call(latents) if labels is None else self.generator_call(latents, labels)
            return fake.float()

    def critic_outputs(
        self, critic: Callable[..., Any], images: torch.Tensor, labels: Optional[torch.Tensor] = None, amp=None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """D's raw scores (B,) at the run's precision (or `amp`'s), and its auxiliary classifier's class
        logits (B, K) when it has one (else None); the losses see them in fp32."""
        with (amp or self.autocast)():
            output = critic(images) if labels is None else critic(images, labels)
            scores, class_logits = output if isinstance(output, tuple) else (output, None)
            return scores.float(), None if class_logits is None else class_logits.float()

    def scores(
        self, critic: Callable[..., Any], images: torch.Tensor, labels: Optional[torch.Tensor] = None, amp=None
    ) -> torch.Tensor:
        """D's raw scores alone (what the gradient penalty differentiates)."""
        return self.critic_outputs(critic, images, labels, amp)[0]

    @staticmethod
    def apply(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """The optimizer's step on the gradient its update accumulated (unscaled by the loss scale)."""
        scaler.step(optimizer)
        scaler.update()

    def retune(self, lr: float = 1.0, penalty: float = 1.0, ada_target: float = 0.0, steps_spent: int = 0) -> None:
        """A collapse guard's change (ganctl/guard.py), as factors of what the run would use without it, so
        that applying one twice is applying it once: both learning rates at `lr` x what train.lr_schedule
        or train.schedules.lr gives at each step; the smoothing penalties (R1, R2, WGAN-GP's) at `penalty`
        x their weight, scheduled or not; ADA's target (adaptive mode) moved by `ada_target`, to at least 0.
        `steps_spent`: steps its rollbacks abandoned, which train.schedules do not count (train.lr_schedule's
        scheduler, restored with the checkpoint, counts its own)."""
        self.lr_scale, self.penalty_scale, self.ada_target_shift = float(lr), float(penalty), float(ada_target)
        self.steps_spent = int(steps_spent)
        self.ada.target = max(0.0, self.configured_ada_target + self.ada_target_shift)
        for unit in self.loss.regularisers:
            if unit.smoothing:
                unit.factor = self.penalty_scale
        self.scale_learning_rates()  # (a scheduled lr: the next step sets it, scaled, as every step does)

    def scale_learning_rates(self) -> None:
        """Both learning rates at train.lr_schedule's value now times the guard's factor (LambdaLR's own
        formula, base x lambda(last step), so a restored scheduler and a rollback's factor give one value)."""
        for scheduler in self.schedulers:
            for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * factor(scheduler.last_epoch) * self.lr_scale

    def generate(self, latents: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images for `latents` (of the classes `labels`, conditional) through the one door (`Sampler`):
        G's EMA when there is one."""
        return self.sampler(latents, labels=labels)

    def scalars(self, means: dict[str, float]) -> dict[str, float]:
        """What to log: the statistics' means over a log interval, the learning rates now, and the
        scheduled knobs' values in the latest step."""
        return {**means, "lr/g": self.optimizer_g.param_groups[0]["lr"], "lr/d": self.optimizer_d.param_groups[0]["lr"],
                **{f"schedule/{knob}": value for knob, value in self.scheduled.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": self.generator_ema.state_dict() if self.generator_ema is not None else None,
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "scalers": [scaler.state_dict() for scaler in (self.scaler_g, self.scaler_d)],
            "augment": self.ada.state_dict(),
            "regularisers": {unit.name: unit.state_dict() for unit in self.loss.regularisers if unit.state_dict()},
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
            for unit in self.loss.regularisers:
                unit.load_state_dict(state.get("regularisers", {}).get(unit.name, {}))
            for scaler, scaler_state in zip((self.scaler_g, self.scaler_d), state.get("scalers") or []):
                if scaler.is_enabled() and scaler_state:
                    scaler.load_state_dict(scaler_state)
            self.ada.load_state_dict(state.get("augment"))
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
            raise GanctlError(
                f"The checkpoint's state does not fit the GAN its config describes ({type(error).__name__}: "
                f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else 'missing entry'}): "
                "the file is not a complete ganctl checkpoint."
            ) from None

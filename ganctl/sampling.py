"""The read side of a GAN: G (and D) built from a config node, and `Sampler`, the one door to G's images.

    sampler = Sampler.from_checkpoint(state, device, ema=True, truncation=0.7)  # G from a checkpoint alone
    images = sampler.images(64, seed=0)           # (64, C, H, W) in [-1, 1], fp32, on the CPU
    images = sampler.by_class([3, 5], num=8)      # a conditional G's: 8 of each class, class after class

Everything that makes images from G goes through a `Sampler`: the training grid and the metrics (the
`GAN` holds one on its EMA), and `ganctl sample`, `eval` and `export`, which build one from a checkpoint
without D, the optimizers or anything of the training step (losses, augmentation, precision, DDP): this
module imports none of them, so reading a checkpoint never loads them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl import latents as latent_space
from ganctl.config import is_conditional
from ganctl.errors import GanctlError
from ganctl.models.capabilities import NoisyGenerator
from ganctl.models.conditioning import Conditioning
from ganctl.registry import build

GRID_CLASSES = 16  # a conditional run's training grid: one row per class, for the first 16 classes


def build_generator(node: Any, channels: int, image_size: int, conditioning: Conditioning) -> nn.Module:
    """G from its config node, for images of the given shape, seeing the label as `conditioning` says."""
    generator = build(node, "model.generator", channels=channels, image_size=image_size, conditioning=conditioning)
    conditioning.check(generator, "generator")
    return generator


def build_discriminator(node: Any, channels: int, image_size: int, conditioning: Conditioning) -> nn.Module:
    """D from its config node, like `build_generator`."""
    discriminator = build(node, "model.discriminator", channels=channels, image_size=image_size, conditioning=conditioning)
    conditioning.check(discriminator, "discriminator")
    return discriminator


def conditioning_of(cfg: Any, classes: Optional[list[str]]) -> Conditioning:
    """The config's conditioning block (a DictConfig or a checkpoint's plain dict; absent in configs
    from before it: unconditional), made concrete for the dataset's classes."""
    node = cfg.get("conditioning") if cfg is not None else None
    settings = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return Conditioning.from_settings(settings, classes)


class Sampler:
    """The one door to G's images: latents from a seed, G in eval mode (BatchNorm uses its running
    statistics and does not update them), images in [-1, 1] in fp32. A class-conditional G (`classes`:
    its class names) makes images of the labels it is given (class indices (N,)). `truncation`: the
    truncation trick's psi (1: none), applied by G's own hook when it has one (a mapping network's lerp
    towards w_avg), else to the Gaussian latents as they are drawn (`ganctl.latents`). `threshold`:
    BigGAN's truncation instead, the threshold in standard deviations (Gaussian latents only; None: psi's)."""

    def __init__(self, generator: nn.Module, weights: str = "raw", classes: Optional[list[str]] = None,
                 truncation: float = 1.0, threshold: Optional[float] = None) -> None:
        self.generator = generator
        self.weights = weights  # "ema" or "raw": which of G's weights make the images
        self.classes = list(classes) if classes is not None else None
        self.truncation = latent_space.check_psi(truncation)
        self.threshold = None if threshold is None else latent_space.check_threshold(threshold)
        if self.threshold is not None and (self.truncation != 1 or latent_space.has_own_truncation(generator)):
            raise GanctlError(
                "--truncation-threshold truncates Gaussian latents at a threshold (BigGAN's truncation); "
                + ("give it or --truncation PSI, not both." if self.truncation != 1 else
                   f"this generator ({type(generator).__name__}) truncates in its W space: use --truncation PSI (StyleGAN's psi).")
            )

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def conditional(self) -> bool:
        return self.classes is not None

    def latents(self, num: int, seed: int) -> torch.Tensor:
        """(num, latent_dim) standard normal latents on the CPU, from their own RNG: the same seed
        gives the same latents on any device, and drawing them never moves the training RNG. With
        truncation, the Gaussian latents are truncated (after they are drawn, from the same RNG)."""
        rng = torch.Generator().manual_seed(seed)
        return self.truncate(torch.randn(num, self.latent_dim, generator=rng), rng)

    def truncate(self, latents: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Gaussian latents (N, latent_dim) truncated at self.truncation (or self.threshold), unless G
        truncates itself."""
        if self.threshold is not None:
            return latent_space.truncate_gaussian_at(latents, self.threshold, rng)
        if self.truncation == 1 or latent_space.has_own_truncation(self.generator):
            return latents
        return latent_space.truncate_gaussian(latents, self.truncation, rng)

    def forward(self, latents: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """G of one chunk, through G's own truncation hook when it has one and psi < 1."""
        if self.truncation != 1 and latent_space.has_own_truncation(self.generator):
            return self.generator.forward_truncated(latents, labels, self.truncation)
        return self.generator(latents) if labels is None else self.generator(latents, labels)

    def every_class(self, num: int) -> Optional[torch.Tensor]:
        """Labels (num,) taking every class in turn (0, 1, ..., K-1, 0, ...); None for an unconditional G."""
        return torch.arange(num) % len(self.classes) if self.conditional else None

    @contextmanager
    def evaluating(self) -> Iterator[torch.device]:
        """G in eval mode for the block (its training mode restored after it); yields G's device."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            yield next(self.generator.parameters()).device
        finally:
            self.generator.train(was_training)

    @torch.no_grad()
    def batches(self, latents: torch.Tensor, batch_size: int, labels: Optional[torch.Tensor] = None) -> Iterator[torch.Tensor]:
        """G's images (B, C, H, W) for `latents` (and `labels`, for a conditional G) in chunks of
        batch_size, on G's device."""
        if self.conditional != (labels is not None):
            raise ValueError("a class-conditional generator needs labels, an unconditional one takes none")
        with self.evaluating() as device:
            if labels is None:
                for chunk in latents.split(batch_size):
                    yield self.forward(chunk.to(device), None).float()
            else:
                for chunk, chunk_labels in zip(latents.split(batch_size), labels.split(batch_size)):
                    yield self.forward(chunk.to(device), chunk_labels.to(device)).float()

    @property
    def has_styles(self) -> bool:
        """Whether G draws from per-layer styles (W) that can be mixed and walked (`styles`, `synthesize`)."""
        return latent_space.has_styles(self.generator)

    @property
    def style_resolutions(self) -> tuple[int, ...]:
        """The resolution each of G's per-layer styles drives (4, 8, 8, 16, 16, ...)."""
        return tuple(self.generator.style_resolutions)

    @torch.no_grad()
    def styles(self, latents: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """G's per-layer styles (N, num_ws, W) for `latents` (of the classes `labels`, conditional),
        truncated at self.truncation, on the CPU: mix or interpolate them, then `synthesize`."""
        if self.conditional != (labels is not None):
            raise ValueError("a class-conditional generator needs labels, an unconditional one takes none")
        with self.evaluating() as device:
            styles = self.generator.styles(latents.to(device), None if labels is None else labels.to(device), self.truncation)
            return styles.float().cpu()

    @property
    def w_shape(self) -> Optional[tuple[int, int]]:
        """(num_ws, w_dim) of G's per-layer styles; None for a G without a mapping network."""
        return (self.generator.num_ws, self.generator.w_dim) if self.has_styles else None

    @torch.no_grad()
    def synthesize(self, styles: torch.Tensor, batch_size: int = 250, noise: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        """G's images (N, C, H, W) in [-1, 1] for per-layer styles (N, num_ws, W), on the CPU; `noise`:
        the noise maps to draw each image with (one (N, 1, r, r) per noisy layer), else G's own."""
        images = []
        with self.evaluating() as device:
            for start in range(0, styles.shape[0], batch_size):
                chunk = styles[start:start + batch_size].to(device)
                if noise is None:
                    images.append(self.generator.synthesis(chunk).float().cpu())
                    continue
                with self.generator.using_noise([maps[start:start + batch_size].to(device) for maps in noise]):
                    images.append(self.generator.synthesis(chunk).float().cpu())
        return torch.cat(images)

    def check_noise(self, noise: list[torch.Tensor]) -> None:
        """Noise maps saved with latents must fit G's noisy layers, one map each, of their sizes."""
        own = self.generator.noise_maps() if isinstance(self.generator, NoisyGenerator) else []
        if [tuple(maps.shape[-2:]) for maps in noise] != [tuple(maps.shape[-2:]) for maps in own]:
            raise GanctlError(f"The latents' {len(noise)} noise maps do not fit this generator's {len(own)} noisy layers: "
                              "they were found for another generator.")

    def render(self, saved: latent_space.SavedLatents, batch_size: int = 250) -> torch.Tensor:
        """G's images (N, C, H, W) for latents a file held: Gaussian latents (with their labels, for a
        conditional G), or W / W+ styles (each image's noise maps with them, when found by projection),
        truncated at psi in W as `styles` are."""
        if saved.space == "z":
            if self.conditional and saved.labels is None:
                raise GanctlError("These latents carry no classes and the generator is class-conditional: give --class.")
            return self(saved.values, batch_size, saved.labels if self.conditional else None)
        if saved.noise is not None:
            self.check_noise(saved.noise)
        num_ws = self.w_shape[0]
        styles = saved.values if saved.space == "w+" else saved.values[:, None].expand(-1, num_ws, -1)  # (N, num_ws, W)
        if self.truncation != 1:
            styles = self.generator.w_avg.float().cpu().lerp(styles, self.truncation)
        return self.synthesize(styles, batch_size, saved.noise)

    def __call__(self, latents: torch.Tensor, batch_size: int = 250, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """G's images (N, C, H, W) for all of `latents` (of the classes `labels`, conditional), on the CPU."""
        return torch.cat([images.cpu() for images in self.batches(latents, batch_size, labels)])

    def images(self, num: int, seed: int) -> torch.Tensor:
        """num images from the latents of `seed`; a conditional G's take every class in turn."""
        return self(self.latents(num, seed), labels=self.every_class(num))

    def by_class(self, classes: Sequence[int], num: int = 0, seed: int = 0, latents: Optional[torch.Tensor] = None) -> torch.Tensor:
        """num images of each of `classes` (indices), class after class (len(classes) * num, C, H, W):
        every class from the same num latents of `seed` (or the given `latents` (num, latent_dim)), so
        image i of each class shares latent i, and a class's images do not depend on which other
        classes are asked for."""
        latents = self.latents(num, seed) if latents is None else latents
        num = latents.shape[0]
        return torch.cat([self(latents, labels=torch.full((num,), index, dtype=torch.long)) for index in classes])

    def grid(self, num: int, seed: int) -> tuple[torch.Tensor, int]:
        """The training grid's images and its images per row: num images in rows of 8; for a conditional
        G, one row per class (the first GRID_CLASSES), the same latents down each column."""
        if not self.conditional:
            return self(self.latents(num, seed)), 8
        rows = min(len(self.classes), GRID_CLASSES)
        columns = max(1, num // rows)
        return self.by_class(range(rows), columns, seed), columns

    def class_index(self, name: str) -> int:
        """A class by its name (exactly, else ignoring case) or by its index; one clear error listing
        the classes otherwise."""
        name = str(name).strip()
        if not self.conditional:
            raise GanctlError(
                f"Class {name!r} asked for, but this generator is unconditional (trained with conditioning=none): it "
                "makes no class on request. Train a class-conditional GAN (e.g. conditioning=projection) for that."
            )
        if name in self.classes:
            return self.classes.index(name)
        folded = [i for i, known in enumerate(self.classes) if known.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        if name.isdigit() and int(name) < len(self.classes):
            return int(name)
        shown = ", ".join(known if known == str(i) else f"{known} ({i})" for i, known in enumerate(self.classes[:100]))
        more = f", and {len(self.classes) - 100} more" if len(self.classes) > 100 else ""
        raise GanctlError(f"Unknown class {name!r}: this generator's {len(self.classes)} classes are {shown}{more} "
                          "(give a name or an index).")

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], device: torch.device, ema: bool = True, truncation: float = 1.0,
                        threshold: Optional[float] = None) -> "Sampler":
        """G as a checkpoint stores it, rebuilt from its own config (and class names, for a conditional
        G): the EMA weights when present and asked for."""
        data = state["data"]
        classes = data.get("classes")
        if is_conditional(state["config"]) and classes is None:
            raise GanctlError("The checkpoint's config is class-conditional, but it stores no class names: the file "
                              "is not a complete ganctl checkpoint.")
        conditioning = conditioning_of(state["config"], classes)
        generator = build_generator(state["config"]["model"]["generator"], data["channels"], data["image_size"], conditioning)
        weights = "ema" if ema and state.get("generator_ema") is not None else "raw"
        try:
            generator.load_state_dict(state["generator_ema" if weights == "ema" else "generator"])
        except (KeyError, RuntimeError, TypeError) as error:
            raise GanctlError(
                f"The checkpoint's generator weights do not fit the generator its config describes "
                f"({str(error).strip().splitlines()[0][:200]}): the file is not a complete ganctl checkpoint."
            ) from None
        return cls(generator.to(device).eval(), weights, classes if conditioning.conditional else None, truncation, threshold)


def critic_from_checkpoint(state: dict[str, Any], device: torch.device) -> nn.Module:
    """D as a checkpoint stores it, rebuilt from its own config, in eval mode (what `ganctl eval` measures
    perceptual path length with, metrics.ppl_distance=discriminator)."""
    data = state["data"]
    conditioning = conditioning_of(state["config"], data.get("classes"))
    critic = build_discriminator(state["config"]["model"]["discriminator"], data["channels"], data["image_size"], conditioning)
    try:
        critic.load_state_dict(state["discriminator"])
    except (KeyError, RuntimeError, TypeError) as error:
        raise GanctlError(
            f"The checkpoint's discriminator weights do not fit the discriminator its config describes "
            f"({str(error).strip().splitlines()[0][:200]}): the file is not a complete ganctl checkpoint."
        ) from None
    return critic.to(device).eval().requires_grad_(False)


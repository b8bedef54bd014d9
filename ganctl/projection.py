"""Projection: the latent whose image G makes closest to a target image, found by optimisation.

After NVlabs/stylegan2-ada-pytorch `projector.py`, for every ganctl generator:

- A mapping network (StyleGAN2): optimise in W from the mean w (10,000 samples of the mapping, as the
  reference; a conditional G's mean for the class), one w for every layer or one per layer (W+, which
  the reference does not offer); Adam at 0.1 with the reference's schedule (ramped up over the first
  5%, cosine down over the last 25%), w jittered by 0.05 x w's spread, fading to nothing at 75% of
  the steps; StyleGAN2's noise maps optimised with it, one set per image, renormalised after every
  step and kept free of spatial structure by the reference's multi-scale autocorrelation penalty
  (weight 1e5).
- Gaussian latents (every other family): optimise z from the best `starts` of `pool` seeded draws
  (z's mean, 0, is no image G was trained on; several starts because a DCGAN's z has local optima the
  reference's W has fewer of), kept on the Gaussian shell (||z|| = sqrt(D), where the normal puts
  nearly all its mass) after every step, with the same schedule and jitter (0.05 x z's unit spread).

What differs from the reference: the loss is the pixels' mean squared error plus a perceptual
distance (the reference uses LPIPS-VGG alone), so a reconstruction is held to the pixels too; the
perceptual distance is LPIPS (Zhang et al. 2018, the `lpips` package, whose backbone weights the user
supplies) or, offline with nothing supplied, the run's own discriminator features (normalised per
position as LPIPS does, unweighted); several images and, for a conditional G without a given class,
every class are optimised at once (G in eval mode: each latent's image depends on it alone), and the
class whose reconstruction has the lowest loss is kept. No image is downsampled to 256 px: ganctl's
images are small.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ganctl import latents as latent_space
from ganctl.errors import GanctlError
from ganctl.projection_settings import ProjectionSettings
from ganctl.models.capabilities import FeatureDiscriminator, NoisyGenerator
from ganctl.sampling import Sampler


# ----------------------------------------------------------------------------- perceptual distances


class Distance(Protocol):
    """A perceptual distance: `prepare` the targets once, then each step (B,) distances of images to them."""

    description: str

    def prepare(self, targets: torch.Tensor, labels: Optional[torch.Tensor]) -> list[torch.Tensor]: ...

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor], prepared: list[torch.Tensor]) -> torch.Tensor: ...


def unit_channels(features: torch.Tensor) -> torch.Tensor:
    """Each position's feature vector at unit length (LPIPS's normalize_tensor), over dim 1."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


class DiscriminatorDistance:
    """The run's own D as a perceptual network: the mean over its hidden layers of the squared distance
    between the two images' unit-normalised features, averaged over positions (LPIPS without its
    learned per-channel weights). Offline, with no weights to fetch; D learned what real images of this
    dataset look like, which is what a reconstruction should match."""

    description = "the run's own discriminator features (no --perceptual-weights given)"

    def __init__(self, discriminator: nn.Module) -> None:
        if not isinstance(discriminator, FeatureDiscriminator):
            raise GanctlError(f"The run's discriminator ({type(discriminator).__name__}) does not expose its features: "
                              "give --perceptual-weights FILE for LPIPS, or --perceptual-weight 0 for pixels alone.")
        self.discriminator = discriminator.eval().requires_grad_(False)

    def features(self, images: torch.Tensor, labels: Optional[torch.Tensor]) -> list[torch.Tensor]:
        return [unit_channels(f.float()) for f in self.discriminator.feature_maps(images, labels)]

    def prepare(self, targets: torch.Tensor, labels: Optional[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.features(targets, labels)

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor], prepared: list[torch.Tensor]) -> torch.Tensor:
        layers = [(a - b).square().sum(dim=1).flatten(1).mean(dim=1) for a, b in zip(self.features(images, labels), prepared)]
        return torch.stack(layers).mean(dim=0)  # (B,)


# torchvision's ImageNet backbones that LPIPS builds on, by the first 8 hex digits of their SHA-256 (the
# digits torchvision's own file names carry and its downloader checks): vgg16-397923af.pth, ...
LPIPS_BACKBONES = {"397923af": "vgg", "7be5be79": "alex", "b8a52dc0": "squeeze"}
LPIPS_SIZE = 64  # smaller images are upsampled to this before LPIPS: its deepest layers need the room


def sha256_prefix(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


class LPIPSDistance:
    """LPIPS v0.1 (Zhang et al. 2018) from the `lpips` package: its learned linear layers ship with it;
    the ImageNet backbone (torchvision's VGG16, AlexNet or SqueezeNet 1.1 weights file) is the user's,
    recognised by its hash and loaded without any download. Grayscale images are repeated to RGB."""

    def __init__(self, weights: Path, device: torch.device) -> None:
        try:
            import lpips
        except ImportError:
            raise GanctlError("--perceptual-weights needs the lpips package: pip install 'ganctl[perceptual]'.") from None
        if not weights.is_file():
            raise GanctlError(f"--perceptual-weights {weights}: no such file.")
        prefix = sha256_prefix(weights)
        net = LPIPS_BACKBONES.get(prefix)
        if net is None:
            known = ", ".join(f"{name} ({digits})" for digits, name in LPIPS_BACKBONES.items())
            raise GanctlError(f"--perceptual-weights {weights}: its SHA-256 starts {prefix}, which is none of torchvision's "
                              f"LPIPS backbones ({known}): give vgg16-397923af.pth, alexnet-owt-7be5be79.pth or "
                              "squeezenet1_1-b8a52dc0.pth as torchvision publishes them.")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        with warnings.catch_warnings():  # lpips builds its backbone with torchvision's deprecated pretrained=False
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)  # the backbone unloaded: no download
        backbone = {name: state[f"features.{name.split('.', 1)[1]}"] for name in model.net.state_dict()}  # slice1.0.weight <- features.0.weight
        model.net.load_state_dict(backbone)
        self.model = model.to(device).eval().requires_grad_(False)
        self.lpips = lpips
        self.description = f"LPIPS ({net}, {weights.name})"

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        images = images.float().expand(-1, 3, -1, -1) if images.shape[1] == 1 else images.float()
        if images.shape[-1] < LPIPS_SIZE:
            images = F.interpolate(images, size=(LPIPS_SIZE, LPIPS_SIZE), mode="bilinear", align_corners=False)
        outputs = self.model.net.forward(self.model.scaling_layer(images))
        return [self.lpips.normalize_tensor(output) for output in outputs]

    def prepare(self, targets: torch.Tensor, labels: Optional[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.features(targets)

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor], prepared: list[torch.Tensor]) -> torch.Tensor:
        layers = [self.lpips.spatial_average(self.model.lins[k](diff.square())).flatten()
                  for k, diff in enumerate(a - b for a, b in zip(self.features(images), prepared))]
        return torch.stack(layers).sum(dim=0)  # (B,): LPIPS sums its layers


class Combined:
    """Several perceptual distances summed."""

    def __init__(self, distances: list[Distance]) -> None:
        self.distances = distances
        self.description = " + ".join(d.description for d in distances)

    def prepare(self, targets: torch.Tensor, labels: Optional[torch.Tensor]) -> list:
        return [d.prepare(targets, labels) for d in self.distances]

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor], prepared: list) -> torch.Tensor:
        return torch.stack([d(images, labels, p) for d, p in zip(self.distances, prepared)]).sum(dim=0)


class NoDistance:
    description = "none (pixels alone)"

    def prepare(self, targets: torch.Tensor, labels: Optional[torch.Tensor]) -> list:
        return []

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor], prepared: list) -> torch.Tensor:
        return images.new_zeros(images.shape[0])


# ----------------------------------------------------------------------------- the optimisation


@dataclass
class Projection:
    """Per target image: the latent found (`latents`, N rows, with its class and noise maps), the loss
    it reached, and with settings.frames the reconstructions along the way, (T, N, C, H, W) in [-1, 1]."""

    latents: latent_space.SavedLatents
    losses: torch.Tensor
    frames: Optional[torch.Tensor] = None


def schedule(step: int, settings: ProjectionSettings) -> tuple[float, float]:
    """The reference's learning rate and jitter factor at `step`: (lr, jitter as a share of the spread)."""
    t = step / settings.steps
    jitter = settings.initial_jitter * max(0.0, 1.0 - t / settings.jitter_ramp) ** 2
    ramp = min(1.0, (1.0 - t) / settings.rampdown)
    ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / settings.rampup)
    return settings.learning_rate * ramp, jitter


def noise_penalty(maps: list[torch.Tensor]) -> torch.Tensor:
    """The reference's noise regularisation, per image: the squared autocorrelation of each noise map
    with itself shifted by a pixel (both ways), at every scale down to 8x8. (B,) from (B, 1, r, r) maps."""
    total = 0
    for noise in maps:
        while True:
            total = total + (noise * noise.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (noise * noise.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


def normalised_noise(maps: list[torch.Tensor]) -> None:
    """Each image's noise map back to zero mean and unit variance, in place (the reference's, per image)."""
    with torch.no_grad():
        for noise in maps:
            noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
            noise *= noise.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def on_shell(z: torch.Tensor) -> torch.Tensor:
    """Gaussian latents (B, D) scaled to norm sqrt(D), the shell where the normal's mass lies."""
    return z * (math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-8))


class Projector:
    """Projects target images into G's latent space (see the module). `hypotheses` are the latents
    optimised together: per target, one per class tried and start."""

    def __init__(self, sampler: Sampler, distance: Distance, settings: ProjectionSettings,
                 progress: Optional[Callable[[int], None]] = None) -> None:
        self.sampler, self.distance, self.settings = sampler, distance, settings.check()
        self.generator = sampler.generator.eval().requires_grad_(False)
        self.device = next(self.generator.parameters()).device
        self.progress = progress or (lambda step: None)
        if settings.per_layer and not sampler.has_styles:
            raise GanctlError(f"--space w+ is a mapping network's per-layer W (model=stylegan2); this generator "
                              f"({type(self.generator).__name__}) takes Gaussian latents: leave out --space.")

    def images(self, latents: torch.Tensor, labels: Optional[torch.Tensor], noise: Optional[list[torch.Tensor]]) -> torch.Tensor:
        """G's images of latents (z (B, D), or styles (B, num_ws, W)) in the graph, fp32."""
        if not self.sampler.has_styles:
            return (self.generator(latents) if labels is None else self.generator(latents, labels)).float()
        if noise is None:
            return self.generator.synthesis(latents).float()
        with self.generator.using_noise(noise):
            return self.generator.synthesis(latents).float()

    def loss(self, images: torch.Tensor, targets: torch.Tensor, labels: Optional[torch.Tensor], prepared: list) -> torch.Tensor:
        """(B,): pixels' MSE + perceptual_weight x the perceptual distance, per hypothesis."""
        pixels = (images - targets).square().flatten(1).mean(dim=1)
        if self.settings.perceptual_weight == 0:
            return pixels
        return pixels + self.settings.perceptual_weight * self.distance(images, labels, prepared)

    def project(self, targets: torch.Tensor, classes: Optional[list[int]]) -> Projection:
        """Targets (N, C, H, W) in [-1, 1]; `classes`: the class indices to try for each (a conditional G:
        the best reconstruction is kept), None for an unconditional G."""
        tried = [None] if classes is None else classes
        starts = 1 if self.sampler.has_styles else self.settings.starts
        count, per_target = targets.shape[0], len(tried) * starts
        # Hypothesis h belongs to target h // per_target and tries class tried[(h // starts) % len(tried)].
        hypothesis_targets = targets.repeat_interleave(per_target, dim=0).to(self.device)
        labels = None if classes is None else torch.tensor(tried).repeat_interleave(starts).repeat(count).to(self.device)
        prepared = self.distance.prepare(hypothesis_targets, labels)
        latents, spread = self.start(hypothesis_targets, labels, prepared, tried, starts)
        noise = self.start_noise(latents.shape[0])
        frames = self.optimise(latents, noise, spread, hypothesis_targets, labels, prepared)
        with torch.no_grad():
            final = self.loss(self.images(self.styles_of(latents), labels, noise), hypothesis_targets, labels, prepared)
        best = (final.view(count, per_target).argmin(dim=1) + torch.arange(count, device=final.device) * per_target).cpu()  # (N,)
        space = "z" if not self.sampler.has_styles else ("w+" if self.settings.per_layer else "w")
        saved = latent_space.SavedLatents(latents.detach().cpu()[best], space, None if labels is None else labels.cpu()[best],
                                          None if noise is None else [maps.detach().cpu()[best] for maps in noise])
        return Projection(saved, final.cpu()[best], None if frames is None else frames[:, best])

    def optimise(self, latents: torch.Tensor, noise: Optional[list[torch.Tensor]], spread: float, targets: torch.Tensor,
                 labels: Optional[torch.Tensor], prepared: list) -> Optional[torch.Tensor]:
        """The reference's loop, on every hypothesis at once (each one's loss depends on its own latent and
        noise alone, and Adam is elementwise, so together is the same as one by one). Returns the images
        recorded along the way (T, B, C, H, W), or None without settings.frames."""
        settings = self.settings
        optimiser = torch.optim.Adam([latents, *(noise or [])], betas=(0.9, 0.999), lr=settings.learning_rate)
        rng = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        record_at = set(torch.linspace(0, settings.steps - 1, settings.frames).round().long().tolist()) if settings.frames else set()
        recorded = []
        for step in range(settings.steps):
            lr, jitter = schedule(step, settings)
            for group in optimiser.param_groups:
                group["lr"] = lr
            jittered = latents + torch.randn(latents.shape, generator=rng, device=self.device) * (spread * jitter)
            images = self.images(self.styles_of(jittered), labels, noise)
            loss = self.loss(images, targets, labels, prepared)
            if noise is not None:
                loss = loss + settings.noise_regularisation * noise_penalty(noise)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
            if not self.sampler.has_styles:
                with torch.no_grad():
                    latents.copy_(on_shell(latents))
            if noise is not None:
                normalised_noise(noise)
            if step in record_at:
                recorded.append(images.detach().cpu())
            self.progress(step + 1)
        return torch.stack(recorded) if recorded else None

    def styles_of(self, latents: torch.Tensor) -> torch.Tensor:
        """What G draws the optimised latents with: z itself, or the styles (B, num_ws, W) of w / W+."""
        if not self.sampler.has_styles or self.settings.per_layer:
            return latents
        return latents[:, None].expand(-1, self.sampler.w_shape[0], -1)

    def start(self, targets: torch.Tensor, labels: Optional[torch.Tensor], prepared: list, tried: list,
              starts: int) -> tuple[torch.Tensor, float]:
        """The latents to start from (a leaf to optimise) and their spread (the jitter's unit)."""
        if self.sampler.has_styles:
            return self.start_in_w(labels, tried, targets.shape[0])
        return self.start_in_z(targets, labels, prepared, starts), 1.0

    @torch.no_grad()
    def start_in_w(self, labels: Optional[torch.Tensor], tried: list, count: int) -> tuple[torch.Tensor, float]:
        """The mean w (each class's, conditional) of mean_samples seeded z, as the reference starts, for
        each of `count` hypotheses; the spread is w's root mean squared distance to its mean."""
        rng = torch.Generator().manual_seed(self.settings.seed)
        means, spreads = {}, []
        for index in tried:
            z = torch.randn(self.settings.mean_samples, self.sampler.latent_dim, generator=rng)
            w = []
            for chunk in z.split(1000):
                chunk_labels = None if index is None else torch.full((chunk.shape[0],), index, dtype=torch.long, device=self.device)
                w.append(self.generator.styles(chunk.to(self.device), chunk_labels)[:, 0].float())  # (B, W)
            w = torch.cat(w)
            means[index] = w.mean(dim=0)
            spreads.append((w - means[index]).square().sum(dim=1).mean().sqrt())
        rows = [means[None]] * count if labels is None else [means[int(label)] for label in labels.tolist()]
        w = torch.stack(rows)  # (count, W)
        latents = w[:, None].repeat(1, self.sampler.w_shape[0], 1) if self.settings.per_layer else w
        return latents.contiguous().requires_grad_(True), float(torch.stack(spreads).mean())

    @torch.no_grad()
    def start_in_z(self, targets: torch.Tensor, labels: Optional[torch.Tensor], prepared: list, starts: int) -> torch.Tensor:
        """For each hypothesis group (a target and class), the `starts` seeded draws of the pool whose
        images are closest to the target: different draws for each start."""
        groups = targets.shape[0] // starts
        pool = self.settings.pool
        rng = torch.Generator().manual_seed(self.settings.seed)
        candidates = on_shell(torch.randn(groups * pool, self.sampler.latent_dim, generator=rng)).to(self.device)  # (G * P, D)
        group_of = torch.arange(groups, device=self.device).repeat_interleave(pool)
        first = torch.arange(groups, device=self.device) * starts  # each group's first hypothesis
        scores = []
        for chunk in torch.arange(groups * pool, device=self.device).split(1024):
            hypothesis = first[group_of[chunk]]
            chunk_labels = None if labels is None else labels[hypothesis]
            images = self.images(candidates[chunk], chunk_labels, None)
            chunk_prepared = select_prepared(prepared, hypothesis)
            scores.append(self.loss(images, targets[hypothesis], chunk_labels, chunk_prepared))
        best = torch.cat(scores).view(groups, pool).topk(starts, dim=1, largest=False).indices  # (G, starts)
        chosen = candidates.view(groups, pool, -1).gather(1, best[..., None].expand(-1, -1, candidates.shape[1]))
        return chosen.reshape(groups * starts, -1).contiguous().requires_grad_(True)

    def start_noise(self, count: int) -> Optional[list[torch.Tensor]]:
        """Fresh noise maps for each hypothesis (the reference starts from random ones), or None for a G
        without noise inputs."""
        if not isinstance(self.generator, NoisyGenerator):
            return None
        rng = torch.Generator().manual_seed(self.settings.seed + 2)
        maps = [torch.randn(count, 1, *own.shape[-2:], generator=rng).to(self.device) for own in self.generator.noise_maps()]
        for noise in maps:
            noise.requires_grad_(True)
        return maps


def select_prepared(prepared: list, rows: torch.Tensor) -> list:
    """The prepared target features of these rows (nested lists of tensors, batch first)."""
    return [select_prepared(item, rows) if isinstance(item, list) else item[rows] for item in prepared]

"""How `ganctl.projection` finds a latent: its settings and their checks, with no torch, so that
`ganctl project` refuses a bad --steps, --starts or --perceptual-weight before torch loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ganctl.errors import GanctlError


@dataclass(frozen=True)
class ProjectionSettings:
    steps: int = 1000  # the reference's num_steps
    learning_rate: float = 0.1  # the reference's initial_learning_rate
    per_layer: bool = False  # W+: one w per style layer (mapping networks only)
    starts: int = 4  # Gaussian latents: optimised starts per image and class, the best kept
    pool: int = 64  # Gaussian latents: seeded draws per image (and class) that the starts are the best of
    perceptual_weight: float = 1.0  # of the perceptual distance against the pixels' MSE (in [-1, 1])
    noise_regularisation: float = 1e5  # the reference's regularize_noise_weight
    initial_jitter: float = 0.05  # the reference's initial_noise_factor
    jitter_ramp: float = 0.75  # the reference's noise_ramp_length
    rampdown: float = 0.25  # the reference's lr_rampdown_length
    rampup: float = 0.05  # the reference's lr_rampup_length
    mean_samples: int = 10_000  # the reference's w_avg_samples
    frames: int = 0  # record the reconstructions this many times over the steps (a video), 0: never
    seed: int = 0

    def check(self) -> "ProjectionSettings":
        if self.steps < 1:
            raise GanctlError(f"--steps must be at least 1, got {self.steps}.")
        if self.starts < 1 or self.pool < self.starts:
            raise GanctlError(f"--starts must be at least 1 (and at most the pool of {self.pool} draws), got {self.starts}.")
        if not (math.isfinite(self.perceptual_weight) and self.perceptual_weight >= 0):
            raise GanctlError(f"--perceptual-weight must be 0 or more, got {self.perceptual_weight}.")
        return self

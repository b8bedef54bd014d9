"""The images `ganctl explore` shows, each exactly what `ganctl sample` writes for the same settings
(the same `Sampler` and the same code): one seed's image, a style-mixing cell, a frame of a walk.
An image is uint8 (H, W) for one-channel data or (H, W, 3), as `ganctl sample`'s PNG holds it.

No Gradio here: the page (`ganctl.explore.app`) hands its controls' values to `Explorer`, and every
value a request brings is checked, so a bad one is a GanctlError for that request alone."""

from __future__ import annotations

import math
import threading
from typing import Any, Optional

import numpy as np
import torch

from ganctl import latents as latent_space
from ganctl.errors import GanctlError
from ganctl.pictures import grid_frame
from ganctl.sample.mixing import mixed_layers
from ganctl.sample.walks import walk_space, walked
from ganctl.sampling import Sampler

MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """A control's value as an int in [low, high]: sliders and number boxes send floats such as 3.0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and low <= number <= high):
        raise GanctlError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


class Explorer:
    """G of one checkpoint, answering one request at a time (the page's requests share G)."""

    def __init__(self, sampler: Sampler, step: int) -> None:
        self.generator, self.weights, self.classes = sampler.generator, sampler.weights, sampler.classes
        self.step = step
        self.lock = threading.Lock()

    @property
    def has_styles(self) -> bool:
        return Sampler(self.generator).has_styles

    def sampler(self, truncation: Any) -> Sampler:
        """A Sampler at this request's psi over the shared G (a psi is a request's own, never G's)."""
        try:
            psi = float(truncation)
        except (TypeError, ValueError):
            psi = math.nan
        return Sampler(self.generator, self.weights, self.classes, latent_space.check_psi(psi))

    def class_indices(self, sampler: Sampler, name: Optional[str]) -> Optional[list[int]]:
        """[the class index] of a conditional G (its first class when none is named), None unconditional."""
        if not sampler.conditional:
            if name not in (None, ""):
                sampler.class_index(str(name))  # the unconditional generator's message
            return None
        return [sampler.class_index(str(name)) if name not in (None, "") else 0]

    def seed_image(self, seed: Any, truncation: Any = 1.0, class_name: Optional[str] = None) -> np.ndarray:
        """`ganctl sample RUN --seed S --num 1 [--truncation PSI] [--class C]`'s image."""
        seed = whole_number(seed, "The seed", 0, MAX_SEED)
        with self.lock:
            sampler = self.sampler(truncation)
            indices = self.class_indices(sampler, class_name)
            latents = sampler.latents(1, seed)  # (1, latent_dim)
            images = sampler(latents) if indices is None else sampler.by_class(indices, latents=latents)
        return grid_frame(images, 1)

    def mixed_image(self, row_seed: Any, column_seed: Any, layers: str = "coarse", truncation: Any = 1.0,
                    class_name: Optional[str] = None) -> np.ndarray:
        """The cell of `ganctl sample RUN --mix-rows R --mix-cols C --mix-layers L [--truncation PSI]
        [--class C]`: row seed R's styles with the `layers` styles of column seed C."""
        seeds = [whole_number(seed, name, 0, MAX_SEED) for seed, name in ((row_seed, "The row seed"), (column_seed, "The column seed"))]
        with self.lock:
            sampler = self.sampler(truncation)
            if not sampler.has_styles:
                raise GanctlError("Style mixing needs a generator with per-layer styles (model=stylegan2).")
            indices = self.class_indices(sampler, class_name)
            chosen = mixed_layers(str(layers), sampler.style_resolutions)
            latents = torch.cat([sampler.latents(1, seed) for seed in seeds])  # (2, latent_dim): the row's, the column's
            labels = None if indices is None else torch.full((2,), indices[0], dtype=torch.long)
            styles = sampler.styles(latents, labels)  # (2, num_ws, W)
            mixed = styles[:1].clone()
            mixed[:, chosen] = styles[1:, chosen]
            # One batch of the sources and the cell, as `ganctl sample --mix` draws them: the same numbers.
            images = sampler.synthesize(torch.cat([styles, mixed]))  # (3, C, H, W)
        return grid_frame(images[2:], 1)

    def walk_image(self, first_seed: Any, second_seed: Any, frames: Any, position: Any, truncation: Any = 1.0,
                   class_name: Optional[str] = None, space: Optional[str] = None) -> np.ndarray:
        """Frame `position` (0 to `frames`) of `ganctl sample RUN --interpolate --seeds A,B --frames N
        [--space S] [--truncation PSI] [--class C]`: 0 is seed A's image, `frames` seed B's."""
        seeds = [whole_number(seed, name, 0, MAX_SEED) for seed, name in ((first_seed, "The first seed"), (second_seed, "The second seed"))]
        frames = whole_number(frames, "The number of frames", 1, 256)
        position = whole_number(position, "The position on the walk", 0, frames)
        with self.lock:
            sampler = self.sampler(truncation)
            chosen = walk_space(sampler, space or None)
            indices = self.class_indices(sampler, class_name)
            points = torch.cat([sampler.latents(1, seed) for seed in seeds])  # (2, latent_dim)
            strip = walked(sampler, points, frames, indices, chosen)  # (frames + 1, C, H, W)
        return grid_frame(strip[position:position + 1], 1)

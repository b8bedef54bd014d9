"""The images `ganctl explore` shows, each exactly what `ganctl sample` writes for the same settings
(the same `Sampler` and the same code): one seed's image, a style-mixing cell, a frame of a walk, a
latent moved along a direction (`--direction FILE:K --strength S`), and an uploaded image projected as
`ganctl project` projects it (its latent written to a file that `--latents` reads, then edited).
An image is uint8 (H, W) for one-channel data or (H, W, 3), as `ganctl sample`'s PNG holds it.

No Gradio here: the page (`ganctl.explore.app`) hands its controls' values to `Explorer`, and every
value a request brings is checked, so a bad one is a GanctlError for that request alone."""

from __future__ import annotations

import math
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ganctl import latents as latent_space
from ganctl.errors import GanctlError
from ganctl.pictures import grid_frame
from ganctl.project.command import read_targets
from ganctl.projection import Distance, Projector, ProjectionSettings
from ganctl.sample.direction import starting_latents, walked_along
from ganctl.sample.mixing import mixed_layers
from ganctl.sample.walks import walk_space, walked
from ganctl.sampling import Sampler

MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes
MAX_PROJECTION_STEPS = 1000  # `ganctl project`'s default: the page's projections are meant to be short
MAX_STRENGTH = 100.0  # the API's bound on a direction's strength (the slider's is 10)


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

    def __init__(self, sampler: Sampler, step: int, directions: Optional[list[torch.Tensor]] = None,
                 image_shape: Optional[tuple[int, int]] = None, distance: Optional[Distance] = None,
                 directions_file: Optional[str] = None) -> None:
        """`directions`: the directions to edit along (each (D,) or (num_ws, w_dim)), none when empty;
        `image_shape`: (channels, size) that uploads are decoded to, as the run's data was; `distance`:
        the projection's perceptual distance (None: no projection); `directions_file`: where the
        directions came from (None: G's SeFa directions)."""
        self.generator, self.weights, self.classes = sampler.generator, sampler.weights, sampler.classes
        self.step = step
        self.directions, self.directions_file = directions or [], directions_file
        self.image_shape, self.distance = image_shape, distance
        self.lock = threading.Lock()
        # Projected latents, one file a projection: what the page offers for download and edits from.
        self.scratch = tempfile.TemporaryDirectory(prefix="ganctl-explore-")

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

    def direction_image(self, seed: Any, index: Any, strength: Any, truncation: Any = 1.0, class_name: Optional[str] = None,
                        latents_file: Optional[str] = None) -> np.ndarray:
        """`ganctl sample RUN --direction FILE:K --strength S --seed SEED --num 1 [--truncation PSI] [--class C]`'s
        image, or with `latents_file` (a projection's) `ganctl sample RUN --latents FILE --direction FILE:K
        --strength S [--truncation PSI]`'s: the latent moved by strength x direction K, its class kept."""
        if not self.directions:
            raise GanctlError("No directions to edit along: SeFa cannot factorise this generator; give "
                              "`ganctl explore RUN --directions FILE` (a file `ganctl directions` wrote).")
        index = whole_number(index, "The direction", 0, len(self.directions) - 1)
        try:
            amount = float(strength)
        except (TypeError, ValueError):
            amount = math.nan
        if not (math.isfinite(amount) and abs(amount) <= MAX_STRENGTH):
            raise GanctlError(f"The strength must be a number from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, got {strength!r}.")
        if latents_file is None:
            seed = whole_number(seed, "The seed", 0, MAX_SEED)
        elif not Path(latents_file).is_file():
            raise GanctlError("No projected image in this page: upload one first.")
        with self.lock:
            sampler = self.sampler(truncation)
            classes = None if latents_file is not None or class_name in (None, "") else str(class_name)
            saved = starting_latents(sampler, latents_file, None if latents_file else 1, 0 if latents_file else seed, classes)
            images = sampler.render(walked_along(saved, self.directions[index], torch.tensor([amount])))  # (1, C, H, W)
        return grid_frame(images, 1)

    def projected(self, upload: Optional[str], steps: Any, class_name: Optional[str] = None) -> tuple[np.ndarray, str]:
        """An uploaded image projected as `ganctl project RUN IMAGE --steps N [--class C]` projects it (the
        run's D as its perceptual distance when D offers its features): G's reconstruction, drawn as
        `ganctl sample RUN --latents FILE` draws it, and the file its latent is written to."""
        if self.distance is None or self.image_shape is None:
            raise GanctlError("This page cannot project images.")
        steps = whole_number(steps, "The projection steps", 1, MAX_PROJECTION_STEPS)
        if upload in (None, ""):
            raise GanctlError("Choose an image file to project.")
        targets = read_targets([Path(upload)], *self.image_shape)  # (1, C, H, W) uint8; a non-image is a GanctlError
        with self.lock:
            sampler = self.sampler(1.0)
            indices = self.class_indices(sampler, class_name)
            projector = Projector(sampler, self.distance, ProjectionSettings(steps=steps))
            projection = projector.project(targets.float() / 127.5 - 1, indices)
            reconstruction = sampler.render(projection.latents)  # (1, C, H, W)
        path = latent_space.save_latents(Path(self.scratch.name) / f"projected-{uuid.uuid4().hex[:12]}.pt", projection.latents)
        return grid_frame(reconstruction, 1), str(path)

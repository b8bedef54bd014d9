"""The one thing a report draws itself: a latent walk of the run's newest intact checkpoint, made as
`ganctl sample RUN --interpolate` makes it (the same code, on the CPU) and embedded as a GIF."""

from __future__ import annotations

import io
import shlex
from typing import Any

import torch

from ganctl.sample.walks import frames_of, walk_space, walked
from ganctl.sampling import Sampler

SEEDS, FRAMES, FPS = (0, 1, 2, 0), 8, 8
MAX_CLASSES = 10  # a conditional run's walk shows its first classes side by side


def latent_walk(state: dict[str, Any], run: str) -> tuple[bytes, int, str, str]:
    """The walk through the latents of SEEDS as GIF bytes, its width in pixels, what it is, and the
    `ganctl sample` command that writes the same frames from `run`."""
    from PIL import Image

    sampler = Sampler.from_checkpoint(state, torch.device("cpu"))
    space = walk_space(sampler, None)
    indices = list(range(min(MAX_CLASSES, len(sampler.classes)))) if sampler.conditional else None
    points = torch.cat([sampler.latents(1, seed) for seed in SEEDS])  # (K, latent_dim)
    strip = walked(sampler, points, FRAMES, indices, space)
    frames = [Image.fromarray(frame) for frame in frames_of(strip, 1 if indices is None else len(indices))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / FPS), loop=0)
    classes = "" if indices is None else f" --class {','.join(map(str, indices))}"
    command = f"ganctl sample {shlex.quote(run)} --interpolate --seeds {','.join(map(str, SEEDS))} --frames {FRAMES}{classes}"
    return buffer.getvalue(), frames[0].width, f"in {space}, {FRAMES} frames from each seed to the next", command

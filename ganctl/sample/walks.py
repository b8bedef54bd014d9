"""`ganctl sample RUN --interpolate --seeds 1,2,3` and `--class-walk`: walks through G's latent space as
a GIF/MP4 and a PNG strip of their frames: between the latents of seeds (in z by slerp, or in a mapping
network's W by lerp of the styles), or, for a conditional G, between its classes at one latent."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
from torchvision.utils import save_image

from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.pictures import check_animation_path, grid_frame, write_animation
from ganctl.arguments import parse_seeds
from ganctl.sample import check_walk
from ganctl.sample.shared import chosen_classes, default_picture, load_sampler, truncation_suffix
from ganctl.sampling import Sampler


def walk_space(sampler: Sampler, space: Optional[str]) -> str:
    """The space a walk goes through: --space as given, else W where G has per-layer styles, else z."""
    if space is None:
        return "w" if sampler.has_styles else "z"
    if space not in ("z", "w"):
        raise GanctlError(f"--space is z (G's Gaussian input) or w (a mapping network's intermediate latent), got {space!r}.")
    if space == "w" and not sampler.has_styles:
        raise GanctlError(f"--space w walks the intermediate latent W of a mapping network (model=stylegan2); this "
                          f"checkpoint's generator ({type(sampler.generator).__name__}) has none. Walk in z: leave out --space.")
    return space


def walked(sampler: Sampler, points: torch.Tensor, frames: int, indices: Optional[list[int]], space: str) -> torch.Tensor:
    """The images of a walk through the latents `points` (K, latent_dim), `frames` frames a leg: in z by
    slerp, or in W by lerp of their styles (each class's own, conditional). One row of ((K - 1) * frames + 1)
    images per chosen class (one row unconditional), row after row."""
    rows = [None] if indices is None else [torch.full((points.shape[0],), index, dtype=torch.long) for index in indices]
    if space == "z":
        path = latent_space.walk(points, frames)  # (T, latent_dim)
        return torch.cat([sampler(path, labels=None if labels is None else labels[:1].expand(path.shape[0])) for labels in rows])
    images = []
    for labels in rows:
        styles = sampler.styles(points, labels)  # (K, num_ws, W): a class's label is part of its w
        path = latent_space.walk(styles.flatten(1), frames, latent_space.lerp).view(-1, *styles.shape[1:])  # (T, num_ws, W)
        images.append(sampler.synthesize(path))
    return torch.cat(images)


def frames_of(strip: torch.Tensor, rows: int) -> list:
    """One uint8 frame per step of a walk whose strip holds `rows` rows, row after row: the rows side by side."""
    per_row = strip.view(rows, -1, *strip.shape[1:])  # (rows, T, C, H, W)
    return [grid_frame(per_row[:, t], rows) for t in range(per_row.shape[1])]


def write_walk(frames: list, strip: torch.Tensor, strip_rows: int, out: Path, fps: float) -> Path:
    """The animation at `out` and every frame side by side as a PNG strip beside it (<out>.png)."""
    write_animation(frames, out, fps)
    strip_path = out.with_suffix(".png")
    try:
        write_atomically(strip_path, lambda f: save_image(strip, f, "PNG", nrow=strip.shape[0] // strip_rows, normalize=True,
                                                          value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write {strip_path}: {error}") from error
    return strip_path


def interpolate(
    path: str | Path, seeds: list[int], frames: int = 16, out: str | Path | None = None, fps: float = 8.0,
    classes: Optional[str] = None, truncation: float = 1.0, device: str = "auto", ema: bool = True,
    space: Optional[str] = None, threshold: Optional[float] = None,
) -> Path:
    """A walk through the latents of `seeds` (each seed's own latent: `ganctl sample --seed S --num 1`),
    `frames` frames from each to the next, as a GIF/MP4 and a PNG strip: in z by spherical interpolation,
    or in W (`space`; the default where G has it) in straight lines between the seeds' styles. A
    conditional G shows the chosen classes side by side in each frame (every class by default)."""
    check_walk(seeds, frames)
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --interpolate", threshold)
    chosen = walk_space(sampler, space)
    suffix = truncation_suffix(truncation, threshold) + ("" if chosen == walk_space(sampler, None) else f"_{chosen}")
    name = f"walk_step{state['step']:07d}_seeds{'-'.join(map(str, seeds))[:60]}{suffix}.gif"
    out = check_animation_path(Path(out) if out else default_picture(ckpt_path, name))
    indices = chosen_classes(sampler, classes)
    points = torch.cat([sampler.latents(1, seed) for seed in seeds])  # (K, latent_dim), truncated when asked
    strip = walked(sampler, points, frames, indices, chosen)  # (rows * ((K - 1) * frames + 1), C, H, W)
    rows = 1 if indices is None else len(indices)
    images = frames_of(strip, rows)
    strip_path = write_walk(images, strip, rows, out, fps)
    console.print(f"Wrote a walk of {len(images)} frames through seeds {', '.join(map(str, seeds))} in {chosen} "
                  f"(step {state['step']}{latent_space.describe(truncation, threshold)}) to {out}, and its strip to {strip_path}")
    return out


def class_walk(
    path: str | Path, seed: int = 0, classes: Optional[str] = None, out: str | Path | None = None, fps: float = 2.0,
    truncation: float = 1.0, device: str = "auto", ema: bool = True, frames: int = 1, space: Optional[str] = None,
    threshold: Optional[float] = None,
) -> Path:
    """A conditional G's classes in turn at one fixed latent (that of `seed`): what the label alone
    changes. One frame per class, as a GIF/MP4 and a PNG strip; with frames > 1, `frames` frames from
    each class to the next, in straight lines between the classes' styles in W (the label is a point
    of W there, where z has no line between labels)."""
    check_walk(None, frames)
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --class-walk", threshold)
    if walk_space(sampler, space) == "z" and frames > 1:
        raise GanctlError("--class-walk --frames N interpolates between classes in W, which needs a generator with a "
                          "mapping network (model=stylegan2): in z a label has no in-between. Leave out --frames for one "
                          "frame per class.")
    if not sampler.conditional:
        raise GanctlError("--class-walk needs a class-conditional checkpoint (trained with e.g. conditioning=projection); "
                          "this generator is unconditional. Walk between latents with --interpolate --seeds 1,2,3.")
    indices = chosen_classes(sampler, classes)
    if len(indices) < 2:
        raise GanctlError("--class-walk walks between at least 2 classes: name several with --class a,b,c, or leave it out for all.")
    name = (f"classwalk_step{state['step']:07d}_seed{seed}{truncation_suffix(truncation, threshold)}"
            f"{'' if frames == 1 else f'_frames{frames}'}.gif")
    out = check_animation_path(Path(out) if out else default_picture(ckpt_path, name))
    latent = sampler.latents(1, seed)  # (1, latent_dim)
    if frames == 1:
        strip = sampler.by_class(indices, latents=latent)  # (len(indices), C, H, W)
    else:
        styles = torch.cat([sampler.styles(latent, torch.tensor([index])) for index in indices])  # (K, num_ws, W)
        path = latent_space.walk(styles.flatten(1), frames, latent_space.lerp).view(-1, *styles.shape[1:])
        strip = sampler.synthesize(path)  # ((K - 1) * frames + 1, C, H, W)
    images = frames_of(strip, 1)
    strip_path = write_walk(images, strip, 1, out, fps)
    between = "" if frames == 1 else f", {frames} frames from each to the next in W"
    console.print(f"Wrote {len(indices)} classes at the latent of seed {seed}{between} to {out}, and their strip to {strip_path}")
    return out


def run(options: argparse.Namespace) -> Path:
    def given(value: Optional[float], default: float) -> float:  # (0 is given, and refused: not the default)
        return default if value is None else value

    if options.class_walk:
        return class_walk(options.checkpoint, options.seed, options.classes, options.out, given(options.fps, 2.0), options.truncation,
                          options.device, options.ema, int(given(options.frames, 1)), options.space, options.truncation_threshold)
    return interpolate(options.checkpoint, parse_seeds(options.seeds), int(given(options.frames, 16)),
                       options.out, given(options.fps, 8.0), options.classes, options.truncation, options.device, options.ema,
                       options.space, options.truncation_threshold)

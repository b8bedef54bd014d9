"""`ganctl sample RUN`: a grid of G's images and, with --images-dir, each image as a file and their
latents beside them (`--latents FILE` renders such latents again).

A class-conditional checkpoint samples by class: `--class 3`, `--class 0,5,7` or a class name
(`--class cat`); without --class, every class. Each class gets --num images from the same latents of
--seed, so its images never depend on the other classes asked for; the grid has one row per class
(the same latents down each column), and --images-dir writes DIR/<class name>/0000.png ..."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import save_image

from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.files import empty_folder, image_format, write_atomically
from ganctl.sample import check_grid
from ganctl.sample.shared import chosen_classes, folder_name, truncation_suffix
from ganctl.sampling import Sampler


GRID_PIXELS = 2**24  # the most pixels one grid picture holds (4096 x 4096; 200 MB as save_image's floats)
BATCH = 250  # images made at a time (the Sampler's own chunk): what --images-dir holds in memory besides the grid


def write_images(images: torch.Tensor, folder: Path, first: int) -> None:
    """Images (B, C, H, W) in [-1, 1] as PNG files numbered from `first`, bytes as save_image makes them:
    one channel stays one (a grayscale PNG), three are RGB."""
    pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (B, C, H, W)
    for number, image in enumerate(pixels, start=first):
        write_atomically(folder / f"{number:04d}.png", lambda f: to_pil_image(image).save(f, "PNG"))


def sample(
    path: str | Path,
    num: Optional[int] = None,
    nrow: int = 8,
    seed: int = 0,
    out: str | Path | None = None,
    images_dir: str | Path | None = None,
    device: str = "auto",
    ema: bool = True,
    classes: Optional[str] = None,
    truncation: float = 1.0,
    latents_file: str | Path | None = None,
    threshold: Optional[float] = None,
) -> Path:
    """Write a grid of samples (and each image, with images_dir, and their latents beside them as
    latents.npy). `num`: images, per class for a conditional checkpoint (default 64; nrow per class when
    several classes are asked for). Images are made and written a batch at a time; the grid holds at
    most GRID_PIXELS (with images_dir: the first images; without it, more is refused). `latents_file`:
    render these latents (N, latent_dim) instead of those of `seed`, or a file that `ganctl project` wrote
    (W / W+ latents, their classes and noise maps); `truncation`: psi (1: none); `threshold`: BigGAN's
    truncation threshold instead (Gaussian latents)."""
    check_grid(num, nrow, latents_file, out)
    images_dir = empty_folder(images_dir, "--images-dir") if images_dir else None  # a new set never mixes with an old one
    ckpt_path, state = checkpoint.find(path, use="ganctl sample {}")
    threshold = None if threshold is None else latent_space.check_threshold(threshold)
    sampler = Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema, latent_space.check_psi(truncation), threshold)
    saved = None if latents_file is None else read_file_latents(sampler, latents_file)
    if saved is not None and (saved.space != "z" or (saved.labels is not None and classes is None)):
        return render_saved(sampler, saved, state["step"], ckpt_path, latents_file, out, nrow, images_dir, classes)
    indices = chosen_classes(sampler, classes)
    if saved is not None:
        latents = sampler.truncate(saved.values, torch.Generator().manual_seed(seed))
        num = latents.shape[0]
    else:
        num = num or (64 if indices is None or len(indices) == 1 else nrow)  # per class
        latents = sampler.latents(num, seed)  # (num, latent_dim), truncated when asked
    groups = [None] if indices is None else indices  # (a conditional checkpoint's images: class after class)
    size = state["data"]["image_size"]
    shown = min(num, max(1, GRID_PIXELS // (len(groups) * size * size)))  # of each group, in the grid
    if shown < num and not images_dir:
        raise GanctlError(
            f"--num {num}{' of each class' if len(groups) > 1 else ''} at {size}x{size} makes a grid of "
            f"{num * len(groups) * size * size / 1e6:.0f}M pixels, more than ganctl draws in one picture "
            f"({GRID_PIXELS / 1e6:.0f}M): write the images one by one with --images-dir DIR (the grid then shows the "
            f"first {shown}), or ask for --num {shown} or fewer."
        )
    nrow = nrow if len(groups) == 1 else shown  # several classes: one row per class
    names = [folder_name(sampler.classes[index]) for index in indices] if indices is not None else []
    # Named by what it holds, so that asking for 1,000 samples never replaces a run's 64-sample grid.
    suffix = "" if classes is None else "_class" + "-".join(folder_name(name.strip()) for name in classes.split(","))[:64]
    suffix += truncation_suffix(truncation, threshold)
    source = f"seed{seed}" if latents_file is None else f"latents-{folder_name(Path(latents_file).stem)[:40]}"
    default = f"sample_step{state['step']:07d}_{source}_num{num}{suffix}.png"
    out = Path(out) if out else checkpoint.run_dir_of(ckpt_path) / "samples" / default
    grid = []
    try:
        for group, index in enumerate(groups):  # images stream to their files; only the grid's stay in memory
            labels = None if index is None else torch.full((num,), index, dtype=torch.long)
            folder = images_dir / names[group] if images_dir and names else images_dir
            first = 0
            for chunk in sampler.batches(latents, BATCH, labels):  # (B, C, H, W) in [-1, 1]
                chunk = chunk.cpu()
                grid.append(chunk[: max(0, shown - first)])
                if images_dir:
                    write_images(chunk, folder, first)
                first += len(chunk)
        images = torch.cat(grid)
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=nrow, normalize=True, value_range=(-1, 1)))
        if images_dir:  # image i (of each class) is G of row i: `ganctl sample RUN --latents DIR/latents.npy` re-makes them
            write_atomically(images_dir / "latents.npy", lambda f: np.save(f, latents.numpy()))
    except OSError as error:
        raise GanctlError(f"Cannot write the samples: {error}") from error
    capped = f" (the first {shown}{' of each class' if len(groups) > 1 else ''})" if shown < num else ""
    if indices is None:
        console.print(f"Wrote a grid of {len(images)} samples{capped} from step {state['step']} to {out}")
    else:
        listed = ", ".join(sampler.classes[index] for index in indices[:10]) + (" ..." if len(indices) > 10 else "")
        layout = f"{shown} of class {listed}" if len(indices) == 1 else f"{shown} of each of {len(indices)} classes ({listed}), one row per class"
        console.print(f"Wrote a grid of {len(images)} samples{capped} from step {state['step']}, {layout}, to {out}")
    if images_dir:
        console.print(f"Wrote their latents to {Path(images_dir) / 'latents.npy'} (re-make with --latents)")
    if images_dir and not names:
        console.print(f"Wrote {num} images to {images_dir}/0000.png ... {num - 1:04d}.png")
    elif images_dir:
        console.print(f"Wrote {num} images of each class to {images_dir}/<class>/0000.png ... {num - 1:04d}.png "
                      f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
    return out


def read_file_latents(sampler: Sampler, path: str | Path) -> latent_space.SavedLatents:
    return latent_space.read_saved_latents(path, sampler.latent_dim, sampler.w_shape,
                                           len(sampler.classes) if sampler.conditional else None)


def render_saved(sampler: Sampler, saved: latent_space.SavedLatents, step: int, ckpt_path: Path, latents_file: str | Path,
                 out: str | Path | None, nrow: int, images_dir: str | Path | None, classes: Optional[str]) -> Path:
    """A grid of latents a file holds with what it knows of them (`ganctl project`'s: W or W+ styles with
    their noise maps, or z with each one's class): each image as it was found."""
    if images_dir:
        raise GanctlError("--images-dir writes the latents of seeds; these latents are a file already: leave it out.")
    if classes is not None and saved.space != "z":
        raise GanctlError(f"--latents {latents_file} holds {saved.space.upper()} latents, where a conditional G's class is "
                          "part of each latent already: leave out --class.")
    images = sampler.render(saved)  # (N, C, H, W)
    name = f"sample_step{step:07d}_latents-{folder_name(Path(latents_file).stem)[:40]}_num{len(saved)}.png"
    out = Path(out) if out else checkpoint.run_dir_of(ckpt_path) / "samples" / name
    try:
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=nrow, normalize=True, value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write the samples: {error}") from error
    held = f"in {saved.space.upper()}" + ("" if saved.labels is None else ", each of its own class")
    console.print(f"Wrote a grid of {len(saved)} samples from step {step}, from the latents of {latents_file} ({held}), to {out}")
    return out


def run(options: argparse.Namespace) -> Path:
    return sample(options.checkpoint, options.num, options.nrow, options.seed, options.out, options.images_dir, options.device,
                  options.ema, options.classes, options.truncation, options.latents_file, options.truncation_threshold)

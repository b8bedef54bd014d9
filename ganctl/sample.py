"""`ganctl sample`: rebuild G from a checkpoint alone and write a grid and, optionally, image files.

A class-conditional checkpoint samples by class: `--class 3`, `--class 0,5,7` or a class name
(`--class cat`); without --class, every class. Each class gets --num images from the same latents of
--seed, so its images never depend on the other classes asked for; the grid has one row per class
(the same latents down each column), and --images-dir writes DIR/<class name>/0000.png ...

torch loads inside `sample`, after the arguments are parsed: `ganctl sample --help` stays fast."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ganctl.console import console
from ganctl.errors import GanctlError

if TYPE_CHECKING:
    from ganctl.gan import Sampler


def chosen_classes(sampler: Sampler, classes: Optional[str]) -> Optional[list[int]]:
    """The class indices `--class` names (comma-separated names or indices; every class when it is
    not given), or None for an unconditional checkpoint without --class."""
    if not sampler.conditional:
        if classes is not None:
            raise GanctlError(
                f"--class {classes}: this checkpoint's generator is unconditional (trained with conditioning=none), so "
                "it has no classes to choose from. Sample without --class, or train a class-conditional GAN "
                "(e.g. conditioning=projection) on labelled data."
            )
        return None
    if classes is None:
        return list(range(len(sampler.classes)))
    names = [name.strip() for name in classes.split(",") if name.strip()]
    if not names:
        raise GanctlError(f"--class needs a class name or index (or several, comma-separated), got {classes!r}.")
    return list(dict.fromkeys(sampler.class_index(name) for name in names))


def folder_name(name: str) -> str:
    """A class name as one safe folder name (path separators and other awkward characters become _)."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip()
    return safe if safe.strip(".") else f"_{safe}"


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
) -> Path:
    """Write a grid of samples (and each image, with images_dir). `num`: images, per class for a
    conditional checkpoint (default 64; nrow per class when several classes are asked for)."""
    if num is not None and num < 1:
        raise GanctlError(f"--num must be at least 1, got {num}.")
    if nrow < 1:
        raise GanctlError(f"--nrow must be at least 1, got {nrow}.")
    import torch
    from torchvision.transforms.v2.functional import to_pil_image
    from torchvision.utils import save_image

    from ganctl import checkpoint
    from ganctl.device import resolve_device
    from ganctl.gan import Sampler

    ckpt_path, state = checkpoint.find(path, use="ganctl sample {}")
    if out is not None and Path(out).is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {Path(out) / 'grid.png'}.")
    sampler = Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema)
    indices = chosen_classes(sampler, classes)
    if indices is None:
        num = num or 64
        images = sampler(sampler.latents(num, seed))  # (num, C, H, W) in [-1, 1], on the CPU
    else:
        num = num or (64 if len(indices) == 1 else nrow)  # per class
        images = sampler.by_class(indices, num, seed)  # (len(indices) * num, C, H, W), class after class
        nrow = nrow if len(indices) == 1 else num  # several classes: one row per class
    names = [folder_name(sampler.classes[index]) for index in indices] if indices is not None else []
    # Named by what it holds, so that asking for 1,000 samples never replaces a run's 64-sample grid.
    suffix = "" if classes is None else "_class" + "-".join(folder_name(name.strip()) for name in classes.split(","))[:64]
    default = f"sample_step{state['step']:07d}_seed{seed}_num{num}{suffix}.png"
    out = Path(out) if out else checkpoint.run_dir_of(ckpt_path) / "samples" / default
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=nrow, normalize=True, value_range=(-1, 1))
        if images_dir:
            images_dir = Path(images_dir)
            # [-1, 1] to bytes as save_image does; one channel stays one (a grayscale PNG), three are RGB.
            pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (N, C, H, W)
            for i, image in enumerate(pixels):
                folder = images_dir / names[i // num] if names else images_dir
                folder.mkdir(parents=True, exist_ok=True)
                to_pil_image(image).save(folder / f"{i % num:04d}.png")
    except OSError as error:
        raise GanctlError(f"Cannot write the samples: {error}") from error
    if indices is None:
        console.print(f"Wrote a grid of {num} samples from step {state['step']} to {out}")
    else:
        shown = ", ".join(sampler.classes[index] for index in indices[:10]) + (" ..." if len(indices) > 10 else "")
        layout = f"{num} of class {shown}" if len(indices) == 1 else f"{num} of each of {len(indices)} classes ({shown}), one row per class"
        console.print(f"Wrote a grid of {len(images)} samples from step {state['step']}, {layout}, to {out}")
    if images_dir and not names:
        console.print(f"Wrote {num} images to {images_dir}/0000.png ... {num - 1:04d}.png")
    elif images_dir:
        console.print(f"Wrote {num} images of each class to {images_dir}/<class>/0000.png ... {num - 1:04d}.png "
                      f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
    return out


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl sample", description="Write samples from a ganctl checkpoint.")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--num", type=int, help="number of samples, per class for a conditional checkpoint "
                                                "(default 64; --nrow per class when several classes are asked for)")
    parser.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8; several classes: one row each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--class", dest="classes", metavar="CLASS",
                        help="conditional checkpoints: a class name or index, or several comma-separated (default: every class)")
    parser.add_argument("--out", help="grid file (default <run>/samples/sample_step<N>_seed<S>_num<NUM>[_class<C>].png)")
    parser.add_argument("--images-dir", help="also write each sample as <dir>/0000.png, ... (conditional: <dir>/<class>/0000.png, ...)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    options = parser.parse_args(args)
    sample(options.checkpoint, options.num, options.nrow, options.seed, options.out, options.images_dir, options.device,
           options.ema, options.classes)
    return 0

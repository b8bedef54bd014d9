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
    truncation: float = 1.0,
    latents_file: str | Path | None = None,
) -> Path:
    """Write a grid of samples (and each image, with images_dir, and their latents beside them as
    latents.npy). `num`: images, per class for a conditional checkpoint (default 64; nrow per class when
    several classes are asked for). `latents_file`: render these latents (N, latent_dim) instead of
    those of `seed`; `truncation`: psi (1: none)."""
    if num is not None and num < 1:
        raise GanctlError(f"--num must be at least 1, got {num}.")
    if nrow < 1:
        raise GanctlError(f"--nrow must be at least 1, got {nrow}.")
    import numpy as np
    import torch
    from torchvision.transforms.v2.functional import to_pil_image
    from torchvision.utils import save_image

    from ganctl import checkpoint
    from ganctl import latents as latent_space
    from ganctl.device import resolve_device
    from ganctl.gan import Sampler

    if latents_file is not None and num is not None:
        raise GanctlError("--latents renders every latent in the file: leave out --num.")
    ckpt_path, state = checkpoint.find(path, use="ganctl sample {}")
    if out is not None and Path(out).is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {Path(out) / 'grid.png'}.")
    sampler = Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema, latent_space.check_psi(truncation))
    indices = chosen_classes(sampler, classes)
    if latents_file is not None:
        latents = sampler.truncate(latent_space.read_latents(latents_file, sampler.latent_dim), torch.Generator().manual_seed(seed))
        num = latents.shape[0]
    else:
        num = num or (64 if indices is None or len(indices) == 1 else nrow)  # per class
        latents = sampler.latents(num, seed)  # (num, latent_dim), truncated when asked
    if indices is None:
        images = sampler(latents)  # (num, C, H, W) in [-1, 1], on the CPU
    else:
        images = sampler.by_class(indices, latents=latents)  # (len(indices) * num, C, H, W), class after class
        nrow = nrow if len(indices) == 1 else num  # several classes: one row per class
    names = [folder_name(sampler.classes[index]) for index in indices] if indices is not None else []
    # Named by what it holds, so that asking for 1,000 samples never replaces a run's 64-sample grid.
    suffix = "" if classes is None else "_class" + "-".join(folder_name(name.strip()) for name in classes.split(","))[:64]
    suffix += "" if truncation == 1 else f"_psi{truncation:g}"
    source = f"seed{seed}" if latents_file is None else f"latents-{folder_name(Path(latents_file).stem)[:40]}"
    default = f"sample_step{state['step']:07d}_{source}_num{num}{suffix}.png"
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
            # Image i (of each class) is G of row i: `ganctl sample RUN --latents DIR/latents.npy` re-makes them.
            np.save(images_dir / "latents.npy", latents.numpy())
    except OSError as error:
        raise GanctlError(f"Cannot write the samples: {error}") from error
    if indices is None:
        console.print(f"Wrote a grid of {num} samples from step {state['step']} to {out}")
    else:
        shown = ", ".join(sampler.classes[index] for index in indices[:10]) + (" ..." if len(indices) > 10 else "")
        layout = f"{num} of class {shown}" if len(indices) == 1 else f"{num} of each of {len(indices)} classes ({shown}), one row per class"
        console.print(f"Wrote a grid of {len(images)} samples from step {state['step']}, {layout}, to {out}")
    if images_dir:
        console.print(f"Wrote their latents to {Path(images_dir) / 'latents.npy'} (re-make with --latents)")
    if images_dir and not names:
        console.print(f"Wrote {num} images to {images_dir}/0000.png ... {num - 1:04d}.png")
    elif images_dir:
        console.print(f"Wrote {num} images of each class to {images_dir}/<class>/0000.png ... {num - 1:04d}.png "
                      f"({', '.join(names[:10])}{' ...' if len(names) > 10 else ''})")
    return out


def load_sampler(path: str | Path, device: str, ema: bool, truncation: float, use: str) -> tuple[Path, dict, Sampler]:
    from ganctl import checkpoint
    from ganctl import latents as latent_space
    from ganctl.device import resolve_device
    from ganctl.gan import Sampler

    psi = latent_space.check_psi(truncation)
    ckpt_path, state = checkpoint.find(path, use=use)
    return ckpt_path, state, Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema, psi)


def frames_of(sampler: Sampler, latents, indices: Optional[list[int]]) -> list:
    """One uint8 frame per latent: G's image, or for a conditional G a row of the chosen classes."""
    from ganctl.pictures import grid_frame

    if indices is None:
        return [grid_frame(image[None], 1) for image in sampler(latents)]
    columns = sampler.by_class(indices, latents=latents)  # (len(indices) * T, C, H, W), class after class
    per_class = columns.view(len(indices), latents.shape[0], *columns.shape[1:])
    return [grid_frame(per_class[:, t], len(indices)) for t in range(latents.shape[0])]


def write_walk(frames: list, strip, strip_rows: int, out: Path, fps: float) -> Path:
    """The animation at `out` and every frame side by side as a PNG strip beside it (<out>.png)."""
    from torchvision.utils import save_image

    from ganctl.pictures import write_animation

    write_animation(frames, out, fps)
    strip_path = out.with_suffix(".png")
    try:
        save_image(strip, strip_path, nrow=strip.shape[0] // strip_rows, normalize=True, value_range=(-1, 1))
    except OSError as error:
        raise GanctlError(f"Cannot write {strip_path}: {error}") from error
    return strip_path


def default_picture(ckpt_path: Path, name: str) -> Path:
    from ganctl import checkpoint

    return checkpoint.run_dir_of(ckpt_path) / "samples" / name


def interpolate(
    path: str | Path, seeds: list[int], frames: int = 16, out: str | Path | None = None, fps: float = 8.0,
    classes: Optional[str] = None, truncation: float = 1.0, device: str = "auto", ema: bool = True,
) -> Path:
    """A walk through the latents of `seeds` (each seed's own latent: `ganctl sample --seed S --num 1`),
    `frames` frames from each to the next by spherical interpolation, as a GIF/MP4 and a PNG strip.
    A conditional G shows the chosen classes side by side in each frame (every class by default)."""
    import torch

    from ganctl import latents as latent_space
    from ganctl.pictures import check_animation_path

    if len(seeds) < 2:
        raise GanctlError(f"--interpolate walks between at least 2 seeds (--seeds 1,2,3), got {len(seeds)}.")
    if frames < 1:
        raise GanctlError(f"--frames must be at least 1, got {frames}.")
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --interpolate")
    name = f"walk_step{state['step']:07d}_seeds{'-'.join(map(str, seeds))[:60]}{'' if truncation == 1 else f'_psi{truncation:g}'}.gif"
    out = check_animation_path(Path(out) if out else default_picture(ckpt_path, name))
    indices = chosen_classes(sampler, classes)
    points = torch.cat([sampler.latents(1, seed) for seed in seeds])  # (K, latent_dim), truncated when asked
    path_latents = latent_space.walk(points, frames)  # ((K - 1) * frames + 1, latent_dim)
    images = frames_of(sampler, path_latents, indices)
    if indices is None:
        strip, rows = sampler(path_latents), 1
    else:
        strip, rows = sampler.by_class(indices, latents=path_latents), len(indices)
    strip_path = write_walk(images, strip, rows, out, fps)
    console.print(f"Wrote a walk of {len(images)} frames through seeds {', '.join(map(str, seeds))} "
                  f"(step {state['step']}{latent_space.describe(truncation)}) to {out}, and its strip to {strip_path}")
    return out


def class_walk(
    path: str | Path, seed: int = 0, classes: Optional[str] = None, out: str | Path | None = None, fps: float = 2.0,
    truncation: float = 1.0, device: str = "auto", ema: bool = True,
) -> Path:
    """A conditional G's classes in turn at one fixed latent (that of `seed`): what the label alone
    changes. One frame per class, as a GIF/MP4 and a PNG strip."""
    from ganctl.pictures import check_animation_path

    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --class-walk")
    if not sampler.conditional:
        raise GanctlError("--class-walk needs a class-conditional checkpoint (trained with e.g. conditioning=projection); "
                          "this generator is unconditional. Walk between latents with --interpolate --seeds 1,2,3.")
    indices = chosen_classes(sampler, classes)
    if len(indices) < 2:
        raise GanctlError("--class-walk walks between at least 2 classes: name several with --class a,b,c, or leave it out for all.")
    name = f"classwalk_step{state['step']:07d}_seed{seed}{'' if truncation == 1 else f'_psi{truncation:g}'}.gif"
    out = check_animation_path(Path(out) if out else default_picture(ckpt_path, name))
    strip = sampler.by_class(indices, latents=sampler.latents(1, seed))  # (len(indices), C, H, W)
    from ganctl.pictures import grid_frame

    frames = [grid_frame(image[None], 1) for image in strip]
    strip_path = write_walk(frames, strip, 1, out, fps)
    console.print(f"Wrote {len(frames)} classes at the latent of seed {seed} to {out}, and their strip to {strip_path}")
    return out


def latent_arithmetic(
    path: str | Path, terms: list[tuple[int, list[int]]], out: str | Path | None = None, classes: Optional[str] = None,
    truncation: float = 1.0, device: str = "auto", ema: bool = True,
) -> Path:
    """Latent arithmetic (DCGAN paper, section 6.3): each term (sign, seeds) is the mean latent of its
    seeds' latents; the result is their signed sum. Writes a row [term, term, ..., result] (a row per
    class for a conditional G) and the result's latent as <out>.npy (render it again with --latents)."""
    import numpy as np
    import torch
    from torchvision.utils import save_image

    from ganctl import latents as latent_space

    if not terms:
        raise GanctlError("Latent arithmetic needs --add SEEDS (and usually --subtract SEEDS).")
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --add ...")
    indices = chosen_classes(sampler, classes)
    groups = [(sign, torch.cat([sampler.latents(1, seed) for seed in seeds])) for sign, seeds in terms]
    result = latent_space.arithmetic(groups)  # (latent_dim,)
    latents = torch.stack([*(group.mean(dim=0) for _, group in groups), result])  # (terms + 1, latent_dim)
    images = sampler(latents) if indices is None else sampler.by_class(indices, latents=latents)
    expression = " ".join(f"{'+' if sign > 0 else '-'} mean({','.join(map(str, seeds))})" for sign, seeds in terms).lstrip("+ ")
    spelled = "_".join(f"{'add' if sign > 0 else 'sub'}{'-'.join(map(str, seeds))}" for sign, seeds in terms)
    name = f"arithmetic_step{state['step']:07d}_{spelled[:80]}.png"
    out = Path(out) if out else default_picture(ckpt_path, name)
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / 'arithmetic.png'}.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=latents.shape[0], normalize=True, value_range=(-1, 1))
        np.save(out.with_suffix(".npy"), result[None].numpy())
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    console.print(f"Wrote {expression} = result (the last column) to {out}; its latent to {out.with_suffix('.npy')}")
    return out


class Term(argparse.Action):
    """--add / --subtract: terms of the latent arithmetic, in the order given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from ganctl.latents import parse_seeds

        terms = list(getattr(namespace, self.dest) or [])
        terms.append((1 if option_string == "--add" else -1, parse_seeds(values, option_string)))
        setattr(namespace, self.dest, terms)


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ganctl sample", description="Write samples from a ganctl checkpoint: a grid, image files, walks, latent arithmetic.",
        epilog="examples:\n  ganctl sample RUN --truncation 0.7\n  ganctl sample RUN --interpolate --seeds 1,2,3 --frames 16\n"
               "  ganctl sample RUN --add 1,2,3 --subtract 4,5,6 --add 7,8,9\n  ganctl sample RUN --latents RUN/images/latents.npy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--num", type=int, help="number of samples, per class for a conditional checkpoint "
                                                "(default 64; --nrow per class when several classes are asked for)")
    parser.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8; several classes: one row each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--class", dest="classes", metavar="CLASS",
                        help="conditional checkpoints: a class name or index, or several comma-separated (default: every class)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                        help="the truncation trick: 1 none (default), smaller trades variety for typical samples, 0 the average")
    parser.add_argument("--latents", dest="latents_file", metavar="FILE",
                        help="render these latents: a .pt or .npy of shape (N, latent_dim), e.g. the latents.npy --images-dir writes")
    parser.add_argument("--interpolate", action="store_true", help="a walk between the latents of --seeds, as a GIF/MP4 and a PNG strip")
    parser.add_argument("--seeds", help="--interpolate: the seeds to walk through, comma-separated (e.g. 1,2,3)")
    parser.add_argument("--frames", type=int, default=16, help="--interpolate: frames from each seed to the next (default 16)")
    parser.add_argument("--fps", type=float, help="frames per second of a walk (default 8; --class-walk 2)")
    parser.add_argument("--class-walk", action="store_true",
                        help="conditional checkpoints: the classes (--class, default all) in turn at the latent of --seed")
    parser.add_argument("--add", dest="terms", action=Term, metavar="SEEDS",
                        help="latent arithmetic: add the mean latent of these seeds (repeat; with --subtract)")
    parser.add_argument("--subtract", dest="terms", action=Term, metavar="SEEDS",
                        help="latent arithmetic: subtract the mean latent of these seeds")
    parser.add_argument("--out", help="output file (default <run>/samples/...: a .png grid; a walk .gif or .mp4)")
    parser.add_argument("--images-dir", help="also write each sample as <dir>/0000.png, ... (conditional: <dir>/<class>/0000.png, ...) "
                                             "and their latents as <dir>/latents.npy")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    options = parser.parse_args(args)
    modes = [name for name, on in (("--interpolate", options.interpolate), ("--class-walk", options.class_walk),
                                   ("--add/--subtract", bool(options.terms)), ("--latents", options.latents_file is not None)) if on]
    if len(modes) > 1:
        raise GanctlError(f"{' and '.join(modes)} do different things: give one of them.")
    if options.seeds is not None and not options.interpolate:
        raise GanctlError("--seeds is for --interpolate (a walk between seeds); one grid takes --seed S.")
    if options.interpolate:
        from ganctl.latents import parse_seeds

        if options.seeds is None:
            raise GanctlError("--interpolate walks between seeds: give them with --seeds 1,2,3.")
        interpolate(options.checkpoint, parse_seeds(options.seeds), options.frames, options.out, options.fps or 8.0,
                    options.classes, options.truncation, options.device, options.ema)
    elif options.class_walk:
        class_walk(options.checkpoint, options.seed, options.classes, options.out, options.fps or 2.0, options.truncation,
                   options.device, options.ema)
    elif options.terms:
        latent_arithmetic(options.checkpoint, options.terms, options.out, options.classes, options.truncation, options.device, options.ema)
    else:
        sample(options.checkpoint, options.num, options.nrow, options.seed, options.out, options.images_dir, options.device,
               options.ema, options.classes, options.truncation, options.latents_file)
    return 0

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
from ganctl.files import empty_folder, image_format, write_atomically

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
    images_dir = empty_folder(images_dir, "--images-dir") if images_dir else None  # a new set never mixes with an old one
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
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=nrow, normalize=True, value_range=(-1, 1)))
        if images_dir:
            # [-1, 1] to bytes as save_image does; one channel stays one (a grayscale PNG), three are RGB.
            pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (N, C, H, W)
            for i, image in enumerate(pixels):
                folder = images_dir / names[i // num] if names else images_dir
                write_atomically(folder / f"{i % num:04d}.png", lambda f: to_pil_image(image).save(f, "PNG"))
            # Image i (of each class) is G of row i: `ganctl sample RUN --latents DIR/latents.npy` re-makes them.
            write_atomically(images_dir / "latents.npy", lambda f: np.save(f, latents.numpy()))
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


def walked(sampler: Sampler, points, frames: int, indices: Optional[list[int]], space: str):
    """The images of a walk through the latents `points` (K, latent_dim), `frames` frames a leg: in z by
    slerp, or in W by lerp of their styles (each class's own, conditional). One row of ((K - 1) * frames + 1)
    images per chosen class (one row unconditional), row after row."""
    import torch

    from ganctl import latents as latent_space

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


def frames_of(strip, rows: int) -> list:
    """One uint8 frame per step of a walk whose strip holds `rows` rows, row after row: the rows side by side."""
    from ganctl.pictures import grid_frame

    per_row = strip.view(rows, -1, *strip.shape[1:])  # (rows, T, C, H, W)
    return [grid_frame(per_row[:, t], rows) for t in range(per_row.shape[1])]


def write_walk(frames: list, strip, strip_rows: int, out: Path, fps: float) -> Path:
    """The animation at `out` and every frame side by side as a PNG strip beside it (<out>.png)."""
    from torchvision.utils import save_image

    from ganctl.pictures import write_animation

    write_animation(frames, out, fps)
    strip_path = out.with_suffix(".png")
    try:
        write_atomically(strip_path, lambda f: save_image(strip, f, "PNG", nrow=strip.shape[0] // strip_rows, normalize=True,
                                                          value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write {strip_path}: {error}") from error
    return strip_path


def default_picture(ckpt_path: Path, name: str) -> Path:
    from ganctl import checkpoint

    return checkpoint.run_dir_of(ckpt_path) / "samples" / name


def picture_path(out: str | Path | None, ckpt_path: Path, name: str, example: str) -> Path:
    """Where a picture goes: --out, or <run>/samples/<name>; a directory is refused before any work."""
    path = Path(out) if out else default_picture(ckpt_path, name)
    if path.is_dir():
        raise GanctlError(f"--out {path} is a directory: give a file name such as {path / example}.")
    return path


def interpolate(
    path: str | Path, seeds: list[int], frames: int = 16, out: str | Path | None = None, fps: float = 8.0,
    classes: Optional[str] = None, truncation: float = 1.0, device: str = "auto", ema: bool = True,
    space: Optional[str] = None,
) -> Path:
    """A walk through the latents of `seeds` (each seed's own latent: `ganctl sample --seed S --num 1`),
    `frames` frames from each to the next, as a GIF/MP4 and a PNG strip: in z by spherical interpolation,
    or in W (`space`; the default where G has it) in straight lines between the seeds' styles. A
    conditional G shows the chosen classes side by side in each frame (every class by default)."""
    import torch

    from ganctl import latents as latent_space
    from ganctl.pictures import check_animation_path

    if len(seeds) < 2:
        raise GanctlError(f"--interpolate walks between at least 2 seeds (--seeds 1,2,3), got {len(seeds)}.")
    if frames < 1:
        raise GanctlError(f"--frames must be at least 1, got {frames}.")
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --interpolate")
    chosen = walk_space(sampler, space)
    suffix = ("" if truncation == 1 else f"_psi{truncation:g}") + ("" if chosen == walk_space(sampler, None) else f"_{chosen}")
    name = f"walk_step{state['step']:07d}_seeds{'-'.join(map(str, seeds))[:60]}{suffix}.gif"
    out = check_animation_path(Path(out) if out else default_picture(ckpt_path, name))
    indices = chosen_classes(sampler, classes)
    points = torch.cat([sampler.latents(1, seed) for seed in seeds])  # (K, latent_dim), truncated when asked
    strip = walked(sampler, points, frames, indices, chosen)  # (rows * ((K - 1) * frames + 1), C, H, W)
    rows = 1 if indices is None else len(indices)
    images = frames_of(strip, rows)
    strip_path = write_walk(images, strip, rows, out, fps)
    console.print(f"Wrote a walk of {len(images)} frames through seeds {', '.join(map(str, seeds))} in {chosen} "
                  f"(step {state['step']}{latent_space.describe(truncation)}) to {out}, and its strip to {strip_path}")
    return out


def class_walk(
    path: str | Path, seed: int = 0, classes: Optional[str] = None, out: str | Path | None = None, fps: float = 2.0,
    truncation: float = 1.0, device: str = "auto", ema: bool = True, frames: int = 1, space: Optional[str] = None,
) -> Path:
    """A conditional G's classes in turn at one fixed latent (that of `seed`): what the label alone
    changes. One frame per class, as a GIF/MP4 and a PNG strip; with frames > 1, `frames` frames from
    each class to the next, in straight lines between the classes' styles in W (the label is a point
    of W there, where z has no line between labels)."""
    import torch

    from ganctl import latents as latent_space
    from ganctl.pictures import check_animation_path

    if frames < 1:
        raise GanctlError(f"--frames must be at least 1, got {frames}.")
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --class-walk")
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
    name = (f"classwalk_step{state['step']:07d}_seed{seed}{'' if truncation == 1 else f'_psi{truncation:g}'}"
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


# The StyleGAN paper's style groups (Karras et al. 2019, section 3.1 and Figure 3), by the resolution a style drives.
STYLE_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def mixed_layers(spec: str, resolutions: tuple[int, ...]) -> list[int]:
    """The style indices `--mix-layers` names: coarse (4x4-8x8), middle (16x16-32x32), fine (64x64 up),
    or indices A-B (inclusive) or N, of G's len(resolutions) styles."""
    spec = spec.strip().lower()
    listed = ", ".join(f"{i}: {r}x{r}" for i, r in enumerate(resolutions))
    if spec in STYLE_GROUPS:
        low, high = STYLE_GROUPS[spec]
        layers = [i for i, r in enumerate(resolutions) if low <= r <= high]
        if not layers:
            raise GanctlError(f"--mix-layers {spec}: this {resolutions[-1]}x{resolutions[-1]} generator has no styles at "
                              f"{low}x{low} or finer; give indices A-B of its styles ({listed}).")
        return layers
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", spec)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (None, None)
    if first is None or not first <= last < len(resolutions):
        raise GanctlError(f"--mix-layers is coarse, middle, fine, or style indices A-B (inclusive) or N, of this "
                          f"generator's {len(resolutions)} styles ({listed}); got {spec!r}.")
    return list(range(first, last + 1))


def style_mixing(
    path: str | Path, rows: Optional[list[int]] = None, columns: Optional[list[int]] = None, shape: Optional[tuple[int, int]] = None,
    layers: str = "coarse", seed: int = 0, out: str | Path | None = None, classes: Optional[str] = None,
    truncation: float = 1.0, device: str = "auto", ema: bool = True,
) -> Path:
    """A style-mixing grid (the StyleGAN paper's Figure 3, as stylegan2-ada-pytorch's style_mixing.py draws
    it): the column sources' images across the top, the row sources' down the left (the top-left cell
    empty), and in cell (r, c) row source r's styles with the `layers` styles (coarse by default) taken
    from column source c. The sources are the latents of the seeds `rows` and `columns`, or (`shape`
    (R, C)) R + C latents of `seed`, the rows' first. Truncation is in W; a conditional G draws every
    image as one class (`classes`)."""
    import torch
    from torchvision.utils import save_image

    from ganctl import latents as latent_space

    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --mix")
    if not sampler.has_styles:
        raise GanctlError(f"--mix mixes a generator's per-layer styles, and this checkpoint's ({type(sampler.generator).__name__}) "
                          "has none: style mixing needs a mapping network and styles per layer (model=stylegan2).")
    indices = chosen_classes(sampler, classes)
    if indices is not None and (classes is None or len(indices) != 1):
        raise GanctlError("--mix draws a whole grid as one class of this class-conditional checkpoint: name it with --class "
                          f"NAME (one of {', '.join(sampler.classes[:10])}{' ...' if len(sampler.classes) > 10 else ''}).")
    chosen = mixed_layers(layers, sampler.style_resolutions)
    if shape is not None:
        num_rows, num_columns = shape
        if num_rows < 1 or num_columns < 1:
            raise GanctlError(f"--mix ROWS COLS takes at least 1 row and 1 column, got {num_rows} {num_columns}.")
        latents = sampler.latents(num_rows + num_columns, seed)  # (R + C, latent_dim): the rows', then the columns'
        source = f"seed{seed}_{num_rows}x{num_columns}"
    else:
        latents = torch.cat([sampler.latents(1, s) for s in [*rows, *columns]])  # each seed's own latent
        num_rows, num_columns = len(rows), len(columns)
        source = f"rows{'-'.join(map(str, rows))[:40]}_cols{'-'.join(map(str, columns))[:40]}"
    labels = None if indices is None else torch.full((latents.shape[0],), indices[0], dtype=torch.long)
    styles = sampler.styles(latents, labels)  # (R + C, num_ws, W)
    row_styles, column_styles = styles[:num_rows], styles[num_rows:]
    mixed = row_styles[:, None].repeat(1, num_columns, 1, 1)  # (R, C, num_ws, W)
    mixed[:, :, chosen] = column_styles[None, :, chosen]
    images = sampler.synthesize(torch.cat([styles, mixed.flatten(0, 1)]))  # (R + C + R * C, C, H, W)
    row_images, column_images, cells = images.split([num_rows, num_columns, num_rows * num_columns])
    blank = torch.full_like(images[0], -1.0)  # the top-left corner: black, as the grid's padding
    grid = [blank, *column_images]
    for r in range(num_rows):
        grid += [row_images[r], *cells[r * num_columns:(r + 1) * num_columns]]
    suffix = ("" if classes is None else f"_class{folder_name(sampler.classes[indices[0]])[:40]}") + (
        "" if truncation == 1 else f"_psi{truncation:g}")
    name = f"mix_step{state['step']:07d}_{source}_{folder_name(layers.strip().lower())[:20]}{suffix}.png"
    out = picture_path(out, ckpt_path, name, "mix.png")
    try:
        write_atomically(out, lambda f: save_image(torch.stack(grid), f, image_format(out), nrow=num_columns + 1, normalize=True,
                                                   value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    resolutions = sampler.style_resolutions
    span = f"{resolutions[chosen[0]]}x{resolutions[chosen[0]]}-{resolutions[chosen[-1]]}x{resolutions[chosen[-1]]}"
    console.print(f"Wrote a style-mixing grid of {num_rows} x {num_columns} (step {state['step']}"
                  f"{latent_space.describe(truncation)}) to {out}: each cell is its row's styles with styles "
                  f"{chosen[0]}-{chosen[-1]} ({span}) from its column")
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
    out = picture_path(out, ckpt_path, name, "arithmetic.png")
    try:
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=latents.shape[0], normalize=True,
                                                   value_range=(-1, 1)))
        write_atomically(out.with_suffix(".npy"), lambda f: np.save(f, result[None].numpy()))
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
        prog="ganctl sample", description="Write samples from a ganctl checkpoint: a grid, image files, walks, latent arithmetic, style-mixing grids.",
        epilog="examples:\n  ganctl sample RUN --truncation 0.7\n  ganctl sample RUN --interpolate --seeds 1,2,3 --frames 16\n"
               "  ganctl sample RUN --add 1,2,3 --subtract 4,5,6 --add 7,8,9\n  ganctl sample RUN --latents RUN/images/latents.npy\n"
               "  ganctl sample RUN --mix 3 4 --mix-layers coarse",
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
    parser.add_argument("--frames", type=int, help="--interpolate: frames from each seed to the next (default 16); "
                                                   "--class-walk: frames from each class to the next, in W (default 1)")
    parser.add_argument("--space", choices=("z", "w"), help="--interpolate, --class-walk: walk in z (slerp) or in a mapping "
                                                          "network's W (lerp; the default where G has one, e.g. stylegan2)")
    parser.add_argument("--fps", type=float, help="frames per second of a walk (default 8; --class-walk 2)")
    parser.add_argument("--class-walk", action="store_true",
                        help="conditional checkpoints: the classes (--class, default all) in turn at the latent of --seed")
    parser.add_argument("--mix", nargs=2, type=int, metavar=("ROWS", "COLS"),
                        help="a style-mixing grid (stylegan2): ROWS + COLS sources from --seed; each cell its row's "
                             "styles with --mix-layers from its column")
    parser.add_argument("--mix-rows", metavar="SEEDS", help="--mix: the row sources' seeds, comma-separated (with --mix-cols)")
    parser.add_argument("--mix-cols", metavar="SEEDS", help="--mix: the column sources' seeds, comma-separated")
    parser.add_argument("--mix-layers", default="coarse", metavar="LAYERS",
                        help="--mix: the styles each cell takes from its column: coarse (4x4-8x8, default), middle "
                             "(16x16-32x32), fine (64x64 up), or style indices A-B")
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
    mixing = options.mix is not None or options.mix_rows is not None or options.mix_cols is not None
    modes = [name for name, on in (("--interpolate", options.interpolate), ("--class-walk", options.class_walk),
                                   ("--add/--subtract", bool(options.terms)), ("--latents", options.latents_file is not None),
                                   ("--mix", mixing)) if on]
    if len(modes) > 1:
        raise GanctlError(f"{' and '.join(modes)} do different things: give one of them.")
    if options.seeds is not None and not options.interpolate:
        raise GanctlError("--seeds is for --interpolate (a walk between seeds); one grid takes --seed S.")
    if options.space is not None and not (options.interpolate or options.class_walk):
        raise GanctlError("--space is for walks (--interpolate, --class-walk): the space they interpolate in.")
    if options.frames is not None and not (options.interpolate or options.class_walk):
        raise GanctlError("--frames is for walks (--interpolate, --class-walk).")
    if options.mix_layers != "coarse" and not mixing:
        raise GanctlError("--mix-layers is for style-mixing grids: give --mix ROWS COLS (or --mix-rows and --mix-cols).")
    if options.interpolate:
        from ganctl.latents import parse_seeds

        if options.seeds is None:
            raise GanctlError("--interpolate walks between seeds: give them with --seeds 1,2,3.")
        interpolate(options.checkpoint, parse_seeds(options.seeds), 16 if options.frames is None else options.frames, options.out, options.fps or 8.0,
                    options.classes, options.truncation, options.device, options.ema, options.space)
    elif options.class_walk:
        class_walk(options.checkpoint, options.seed, options.classes, options.out, options.fps or 2.0, options.truncation,
                   options.device, options.ema, 1 if options.frames is None else options.frames, options.space)
    elif mixing:
        from ganctl.latents import parse_seeds

        if options.mix is not None and (options.mix_rows or options.mix_cols):
            raise GanctlError("--mix ROWS COLS draws its sources from --seed; --mix-rows/--mix-cols name them: give one or the other.")
        if options.mix is None and (options.mix_rows is None or options.mix_cols is None):
            raise GanctlError("A style-mixing grid needs both --mix-rows SEEDS and --mix-cols SEEDS (or --mix ROWS COLS).")
        rows = parse_seeds(options.mix_rows, "--mix-rows") if options.mix is None else None
        columns = parse_seeds(options.mix_cols, "--mix-cols") if options.mix is None else None
        style_mixing(options.checkpoint, rows, columns, tuple(options.mix) if options.mix else None, options.mix_layers,
                     options.seed, options.out, options.classes, options.truncation, options.device, options.ema)
    elif options.terms:
        latent_arithmetic(options.checkpoint, options.terms, options.out, options.classes, options.truncation, options.device, options.ema)
    else:
        sample(options.checkpoint, options.num, options.nrow, options.seed, options.out, options.images_dir, options.device,
               options.ema, options.classes, options.truncation, options.latents_file)
    return 0

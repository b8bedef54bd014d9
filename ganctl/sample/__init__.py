"""`ganctl sample`: G's images from a checkpoint alone. This module owns the arguments and picks the one
mode they ask for; each mode lives in its own module, with what the modes share beside them:

    grid        a grid, each image as a file (--images-dir) and their latents; --latents FILE renders such latents
                (and those `ganctl project` finds)
    walks       --interpolate between seeds' latents (in z or W), --class-walk between a conditional G's classes
    mixing      --mix: a style-mixing grid (StyleGAN2)
    arithmetic  --add / --subtract: latent arithmetic on the mean latents of seeds
    direction   --direction FILE:K --strength A:B:N: latents walked along a direction (`ganctl directions`)
    shared      G from the checkpoint, the classes --class names, default picture paths

torch loads with the mode's module, after the arguments are parsed and checked (`checked`): `ganctl sample --help`
and every mistake that needs no torch (a missing checkpoint, a count below 1, a psi beyond 1, flags of two modes)
are answered at once."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

from ganctl import rundir
from ganctl.arguments import at_least, check_device, check_fps, check_psi, check_threshold, existing_file, parse_seeds
from ganctl.errors import GanctlError
from ganctl.pictures import check_animation_path


class Term(argparse.Action):
    """--add / --subtract: terms of the latent arithmetic, in the order given."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        terms = list(getattr(namespace, self.dest) or [])
        terms.append((1 if option_string == "--add" else -1, parse_seeds(values, option_string)))
        setattr(namespace, self.dest, terms)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl sample", description="Write samples from a ganctl checkpoint: a grid, image files, walks, latent arithmetic, style-mixing grids.",
        epilog="examples:\n  ganctl sample RUN --truncation 0.7\n  ganctl sample RUN --interpolate --seeds 1,2,3 --frames 16\n"
               "  ganctl sample RUN --add 1,2,3 --subtract 4,5,6 --add 7,8,9\n  ganctl sample RUN --latents RUN/images/latents.npy\n"
               "  ganctl sample RUN --mix 3 4 --mix-layers coarse\n  ganctl sample RUN --direction dirs.npy:0 --strength -3:3:7",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--num", type=int, help="number of samples, per class for a conditional checkpoint "
                                                "(default 64; --nrow per class when several classes are asked for)")
    parser.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8; several classes: one row each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--class", dest="classes", metavar="CLASS",
                        help="conditional checkpoints: a class name or index, or several comma-separated (default: every class)")
    parser.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                        help="the truncation trick: 1 none (default), smaller trades variety for typical samples, 0 the average; "
                             "StyleGAN's psi in W, the share of the normal's mass kept for Gaussian latents")
    parser.add_argument("--truncation-threshold", type=float, metavar="T",
                        help="Gaussian latents: BigGAN's (and StudioGAN's) truncation, redrawing every entry beyond T standard "
                             "deviations (their 0.5 is --truncation 0.38, not 0.5)")
    parser.add_argument("--latents", dest="latents_file", metavar="FILE",
                        help="render these latents: a .pt or .npy of shape (N, latent_dim), e.g. the latents.npy --images-dir writes, "
                             "or the .pt files ganctl project writes (W / W+ latents with their classes and noise)")
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
    parser.add_argument("--direction", metavar="FILE:K",
                        help="walk latents along direction K (default 0) of a file `ganctl directions` wrote: a strip each")
    parser.add_argument("--strength", metavar="A:B:N",
                        help="--direction: the strengths, START:STOP:COUNT (default -3:3:7) or comma-separated numbers")
    parser.add_argument("--out", help="output file (default <run>/samples/...: a .png grid; a walk .gif or .mp4)")
    parser.add_argument("--images-dir", help="also write each sample as <dir>/0000.png, ... (conditional: <dir>/<class>/0000.png, ...) "
                                             "and their latents as <dir>/latents.npy")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    return parser


def chosen_mode(options: argparse.Namespace) -> str:
    """The mode the options ask for: walk, mix, arithmetic or grid (--latents renders a grid too); a flag
    that belongs to another mode, or two modes at once, is refused before anything loads."""
    mixing = options.mix is not None or options.mix_rows is not None or options.mix_cols is not None
    direction = options.direction is not None
    modes = [name for name, on in (("--interpolate", options.interpolate), ("--class-walk", options.class_walk),
                                   ("--add/--subtract", bool(options.terms)), ("--direction", direction),
                                   ("--latents", options.latents_file is not None and not direction),
                                   ("--mix", mixing)) if on]
    if len(modes) > 1:
        raise GanctlError(f"{' and '.join(modes)} do different things: give one of them.")
    if options.seeds is not None and not options.interpolate:
        raise GanctlError("--seeds is for --interpolate (a walk between seeds); one grid takes --seed S.")
    if options.space is not None and not (options.interpolate or options.class_walk):
        raise GanctlError("--space is for walks (--interpolate, --class-walk): the space they interpolate in.")
    if options.frames is not None and not (options.interpolate or options.class_walk):
        raise GanctlError("--frames is for walks (--interpolate, --class-walk).")
    if options.strength is not None and not direction:
        raise GanctlError("--strength is for --direction FILE:K (how far to walk along it).")
    if options.truncation_threshold is not None and mixing:
        raise GanctlError("--truncation-threshold truncates Gaussian latents; --mix draws StyleGAN2's W: use --truncation PSI.")
    if options.mix_layers != "coarse" and not mixing:
        raise GanctlError("--mix-layers is for style-mixing grids: give --mix ROWS COLS (or --mix-rows and --mix-cols).")
    if options.interpolate or options.class_walk:
        return "walk"
    if mixing:
        return "mix"
    if direction:
        return "direction"
    return "arithmetic" if options.terms else "grid"


def check_grid(num: Optional[int], nrow: int, latents_file: Optional[str | Path], out: Optional[str | Path]) -> None:
    """A grid's counts, --latents (which sets the count) without --num, and --out a file."""
    at_least("--num", num, 1)
    at_least("--nrow", nrow, 1)
    if latents_file is not None and num is not None:
        raise GanctlError("--latents renders every latent in the file: leave out --num.")
    if out is not None and Path(out).is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {Path(out) / 'grid.png'}.")


def check_walk(seeds: Optional[list[int]], frames: Optional[int]) -> None:
    """A walk's seeds (--interpolate: 2 or more) and its frames between them."""
    if seeds is not None and len(seeds) < 2:
        raise GanctlError(f"--interpolate walks between at least 2 seeds (--seeds 1,2,3), got {len(seeds)}.")
    at_least("--frames", frames, 1)


def mixing_sources(options: argparse.Namespace) -> tuple[Optional[list[int]], Optional[list[int]]]:
    """The seeds of a style-mixing grid's rows and columns (--mix-rows, --mix-cols), or (None, None) for --mix ROWS COLS."""
    if options.mix is not None and (options.mix_rows or options.mix_cols):
        raise GanctlError("--mix ROWS COLS draws its sources from --seed; --mix-rows/--mix-cols name them: give one or the other.")
    if options.mix is None and (options.mix_rows is None or options.mix_cols is None):
        raise GanctlError("A style-mixing grid needs both --mix-rows SEEDS and --mix-cols SEEDS (or --mix ROWS COLS).")
    if options.mix is not None:
        check_mix_shape(tuple(options.mix))
        return None, None
    return parse_seeds(options.mix_rows, "--mix-rows"), parse_seeds(options.mix_cols, "--mix-cols")


def check_mix_shape(shape: Optional[tuple[int, int]]) -> None:
    if shape is not None and (shape[0] < 1 or shape[1] < 1):
        raise GanctlError(f"--mix ROWS COLS takes at least 1 row and 1 column, got {shape[0]} {shape[1]}.")


def checked(options: argparse.Namespace, mode: str) -> None:
    """Every mistake in the options that needs no torch, refused before torch loads; the modes rely on these."""
    rundir.named_checkpoint(options.checkpoint)
    check_device(options.device, "--device ")
    check_psi(options.truncation)
    if options.truncation_threshold is not None:
        check_threshold(options.truncation_threshold)
    if options.latents_file is not None:
        existing_file(options.latents_file, f"--latents {options.latents_file}")
    if options.fps is not None:
        check_fps(options.fps)
    if mode == "grid":
        check_grid(options.num, options.nrow, options.latents_file, options.out)
    elif mode == "walk":
        if options.out is not None:
            check_animation_path(Path(options.out))
        if options.interpolate and options.seeds is None:
            raise GanctlError("--interpolate walks between seeds: give them with --seeds 1,2,3.")
        check_walk(parse_seeds(options.seeds) if options.interpolate else None, options.frames)
    elif mode == "mix":
        mixing_sources(options)
    elif mode == "direction":
        direction_file(parse_direction(options.direction)[0])
        if options.strength is not None:
            check_strength(options.strength)


def parse_direction(text: str) -> tuple[Path, int]:
    """'dirs.npy:3' -> (dirs.npy, 3); 'dirs.npy' -> (dirs.npy, 0)."""
    path, _, index = text.rpartition(":")
    if not path or not index.isdigit():
        return Path(text), 0
    return Path(path), int(index)


def check_strength(text: str) -> str:
    """--strength: START:STOP:COUNT (COUNT 1 or more), numbers separated by commas, or one number; all finite."""
    try:
        if text.count(":") == 2:
            start, stop, count = text.split(":")
            numbers, enough = [float(start), float(stop)], int(count) >= 1
        else:
            numbers = [float(part) for part in text.split(",") if part.strip()]
            enough = bool(numbers)
    except ValueError:
        numbers, enough = [], False
    if not enough or not all(math.isfinite(number) for number in numbers):
        raise GanctlError(f"--strength takes START:STOP:COUNT (e.g. -3:3:7), numbers separated by commas, or one number; got {text!r}.")
    return text


def direction_file(path: Path) -> Path:
    """A file of directions --direction names, which must exist."""
    return existing_file(path, f"--direction {path}", f" (write one with `ganctl directions RUN --out {path.name}`)")


def joined_strength(args: list[str]) -> list[str]:
    """`--strength -3:3:7` as `--strength=-3:3:7`: argparse takes a value starting with '-' (that is not a
    plain number) for an option, and strengths usually start below zero."""
    joined = list(args)
    for i, argument in enumerate(joined[:-1]):
        if argument == "--strength":
            joined[i:i + 2] = [f"--strength={joined[i + 1]}"]
            break
    return joined


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(joined_strength(args))
    mode = chosen_mode(options)
    checked(options, mode)
    if mode == "walk":
        from ganctl.sample.walks import run
    elif mode == "mix":
        from ganctl.sample.mixing import run
    elif mode == "arithmetic":
        from ganctl.sample.arithmetic import run
    elif mode == "direction":
        from ganctl.sample.direction import run
    else:
        from ganctl.sample.grid import run
    run(options)
    return 0

"""`ganctl directions RUN --out dirs.npy`: semantic directions in G's latent space, to walk a latent along
(`ganctl sample RUN --direction dirs.npy:K --strength -3:3:7`).

- Closed form, unsupervised (SeFa, Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs",
  CVPR 2021; genforce/sefa `utils.factorize_weight`): G's first layer maps the latent linearly, A @ latent
  (`first_layer_weight`: a DCGAN's first transposed conv, an MLP's or ResNet's first linear layer,
  BigGAN's layers that read z's chunks, StyleGAN2's style affines); the directions that layer's output
  moves most along are the top eigenvectors of A^T A, each row of A first scaled to unit length, as
  the reference does. Taken from the reference: the row scaling, the eigen-decomposition, and for
  StyleGAN2 all modulated layers' affines plus the last toRGB's (its default, every layer). Differs:
  ganctl's families other than StyleGAN2 use their own first layer where the reference covers PGGAN
  and StyleGAN alone; directions are unit vectors in z (or W), with their eigenvalues printed.
- From labelled latents: the mean of one set's latents minus the mean of another's (`--positive FILE
  --negative FILE`: latent files, e.g. what `ganctl project` wrote for images with and without a
  feature), the "smiling vector" of the DCGAN paper made reusable: strength 1 adds the whole difference.
  For a conditional G with a mapping network, `--classes A,B` takes the mean w of class A's samples
  minus class B's.

Directions live where G is edited: in z for Gaussian-latent generators, in W for a mapping network (z
latents are mapped to W first); a difference of per-layer latents (W+) is one per layer, (1, num_ws,
w_dim). The file is a numpy array of one direction a row.

This module parses the arguments and checks what needs no torch (`checked`); torch loads with `find`,
after them: `ganctl directions --help` and a mistyped path are answered at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl import rundir
from ganctl.arguments import at_least, check_device
from ganctl.errors import GanctlError


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl directions", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Semantic directions in G's latent space: SeFa's closed form (default), or the mean difference of two sets of latents.",
        epilog="examples:\n  ganctl directions RUN --out dirs.npy --top 8\n  ganctl sample RUN --direction dirs.npy:0 --strength -3:3:7\n"
               "  ganctl directions RUN --positive smiling/latents.pt --negative neutral/latents.pt --out smile.npy\n"
               "  ganctl directions RUN --classes 3,8 --out three.npy   (a conditional stylegan2)")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--out", required=True, help="the .npy file to write, one direction a row")
    parser.add_argument("--top", type=int, default=10, help="SeFa: how many directions, strongest first (default 10)")
    parser.add_argument("--positive", metavar="FILE", help="latents with the feature (a file --latents reads): with --negative")
    parser.add_argument("--negative", metavar="FILE", help="latents without it: the direction is mean(positive) - mean(negative)")
    parser.add_argument("--classes", metavar="A,B", help="a conditional stylegan2: mean w of class A minus class B")
    parser.add_argument("--samples", type=int, default=1000, help="--classes: samples of each class (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="--classes: seed of the samples (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    return parser


def checked(options: argparse.Namespace) -> Path:
    """Every mistake in the options that needs no torch, refused before torch loads; the file to write."""
    out = Path(options.out).expanduser()
    labelled = options.positive is not None or options.negative is not None
    if labelled and (options.positive is None or options.negative is None):
        raise GanctlError("--positive and --negative go together: the direction is mean(positive) - mean(negative).")
    if labelled and options.classes:
        raise GanctlError("--positive/--negative and --classes are two ways to one direction: give one of them.")
    at_least("--top", options.top, 1)
    at_least("--samples", options.samples, 1)
    if out.suffix.lower() != ".npy":
        raise GanctlError(f"--out {out}: directions are written as a numpy .npy file.")
    rundir.named_checkpoint(options.checkpoint)
    check_device(options.device, "--device ")
    return out


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    checked(options)
    from ganctl.directions.find import directions

    directions(options)
    return 0

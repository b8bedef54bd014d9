"""`ganctl project RUN IMAGE... --out DIR`: real images into G's latent space (`ganctl.projection`), so
that they can be edited, walked and mixed like G's own samples.

Per image, in DIR: <name>.pt, the latent found (`ganctl sample RUN --latents DIR/<name>.pt` renders it
again; every image's in DIR/latents.pt); <name>.png, the target beside its reconstruction; with
--video, <name>.gif (or .mp4), the reconstruction as the optimisation went; and projection.json, the
PSNR and SSIM (torchmetrics) of each reconstruction against its target, and their means, also printed.
Images are read as the run's dataset reads image files (`ganctl.data.decode_image`): any size and
channel count, converted to the run's channels, the shorter side resized to its size, centre-cropped.

This module parses the arguments and checks what needs no torch (`checked`); torch loads with `command`,
after them: `ganctl project --help` and a mistyped path are answered at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl import rundir
from ganctl.arguments import check_device
from ganctl.errors import GanctlError
from ganctl.pictures import check_animation_path
from ganctl.projection_settings import ProjectionSettings


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl project", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find, for each image, the latent whose G output matches it (pixels + a perceptual distance), "
                    "then write the latent, the reconstruction beside the target, and PSNR/SSIM.",
        epilog="examples:\n  ganctl project RUN digit.png --out projected\n  ganctl project RUN photos/ --out projected --space w+ --video\n"
               "  ganctl project RUN digit.png --out projected --class 3\n  ganctl sample RUN --latents projected/latents.pt")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them (searched recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write the latents, pictures and scores to")
    parser.add_argument("--class", dest="classes", metavar="CLASS",
                        help="conditional checkpoints: the class of every image (name or index); default: each image's best over the classes")
    parser.add_argument("--space", choices=("w", "w+"), help="mapping networks (stylegan2): one w for every layer "
                                                             "(w, the default) or one per layer (w+: closer, less editable)")
    parser.add_argument("--steps", type=int, default=1000, help="optimisation steps (default 1000, the StyleGAN2-ADA projector's)")
    parser.add_argument("--starts", type=int, help="Gaussian latents: starts per image (and class) optimised, the best kept "
                                                   "(default 4; W starts from its mean, as the reference)")
    parser.add_argument("--perceptual-weights", metavar="FILE",
                        help="torchvision's VGG16 (vgg16-397923af.pth), AlexNet or SqueezeNet 1.1 weights, checked by hash: "
                             "the perceptual distance is LPIPS (needs ganctl[perceptual]); without: the run's own D features")
    parser.add_argument("--perceptual", choices=("lpips", "d", "both"),
                        help="which perceptual distance: lpips (needs --perceptual-weights), d (the run's discriminator), "
                             "both (default: lpips with --perceptual-weights, else d)")
    parser.add_argument("--perceptual-weight", type=float, default=1.0,
                        help="its weight against the pixels' mean squared error (default 1; 0: pixels alone)")
    parser.add_argument("--video", nargs="?", const="gif", choices=("gif", "mp4"),
                        help="also write the optimisation as <name>.gif (or .mp4: ganctl[video])")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts and the jitter (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    return parser


def projection_settings(options: argparse.Namespace) -> ProjectionSettings:
    """The settings the options ask for, checked."""
    return ProjectionSettings(steps=options.steps, starts=4 if options.starts is None else options.starts,
                              per_layer=options.space == "w+", perceptual_weight=options.perceptual_weight,
                              frames=min(options.steps, 60) if options.video else 0, seed=options.seed).check()


def checked(options: argparse.Namespace) -> Path:
    """Every mistake in the options that needs no torch, refused before any work; the folder to write to."""
    rundir.named_checkpoint(options.checkpoint)
    check_device(options.device, "--device ")
    out = Path(options.out).expanduser()
    if out.is_file():
        raise GanctlError(f"--out {out} is a file: give a folder to write the latents and pictures to.")
    if options.video == "mp4":
        check_animation_path(out / "x.mp4", "--video")
    projection_settings(options)
    for argument in options.images:
        path = Path(argument).expanduser()
        if not (path.is_dir() or path.is_file()):
            raise GanctlError(f"{path}: no such file or folder.")
    return out


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    checked(options)
    from ganctl.project.command import project

    project(options)
    return 0

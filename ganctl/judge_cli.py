"""`ganctl judge`'s command line: its arguments, parsed and checked before torch loads (an unknown
dataset, --epochs 0, an --out that is a folder are answered at once), then handed to `ganctl.judge`,
where the judge is trained."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl.arguments import at_least
from ganctl.console import console
from ganctl.errors import GanctlError
from ganctl.judge_recipe import Recipe


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl judge train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a small classifier on labelled images: a judge whose features and verdicts score generators "
                    "(ganctl eval RUN --feature judge:FILE).",
        epilog="examples:\n  ganctl judge train mnist --out judge.pt                # the bundled digits\n"
               "  ganctl judge train my_images/ --out judge.pt           # class subfolders, or dataset.json labels\n"
               "  ganctl judge train cifar10 --data-root data --out cifar_judge.pt")
    parser.add_argument("dataset", help="a conf/dataset option (mnist, cifar10, ...) or a folder of labelled images")
    parser.add_argument("--out", required=True, help="the judge file to write (e.g. judge.pt)")
    parser.add_argument("--data-root", help="a dataset option's dataset.root")
    parser.add_argument("--image-size", type=int, help="the judge's input size (default: the option's; 32 for a folder)")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3), help="a folder's channels (default 3)")
    parser.add_argument("--epochs", type=int, default=Recipe.epochs, help=f"passes over the training images (default {Recipe.epochs})")
    parser.add_argument("--seed", type=int, default=Recipe.seed, help="its random numbers (default 0)")
    return parser


def checked(options: argparse.Namespace) -> None:
    """Every mistake in the options that needs no torch: numbers, --out, and a dataset that is neither a
    folder nor a conf/dataset option."""
    at_least("--epochs", options.epochs, 1)
    at_least("--image-size", options.image_size, 8, " pixels")
    out = Path(options.out)
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / 'judge.pt'}.")
    if not Path(options.dataset).expanduser().is_dir():
        from ganctl.config import dataset_node

        dataset_node(options.dataset, options.data_root)


def train_main(args: list[str]) -> int:
    options = train_parser().parse_args(args)
    checked(options)
    from ganctl.judge import train_and_save  # torch loads here, after every check that needs none

    return train_and_save(options)


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        console.print("usage: ganctl judge train DATASET --out judge.pt [--data-root DIR] [--image-size N] [--epochs E]\n\n"
                      "Train a judge (a small classifier) on labelled images; score generators with it: "
                      "ganctl eval RUN --feature judge:judge.pt. `ganctl judge train --help` for the flags.")
        return 0 if args else 2
    if args[0] != "train":
        raise GanctlError(f"ganctl judge {args[0]}: the one subcommand is train (ganctl judge train DATASET --out judge.pt).")
    return train_main(args[1:])

"""`ganctl`: dispatch a subcommand to where it lives. No logic here, and no torch import for --help."""

from __future__ import annotations

import os
import sys

USAGE = """usage: ganctl <command> [arguments]

Train GANs from composable Hydra configs.

commands:
  train    train a GAN: ganctl train [key=value ...] [-m] [--cfg job]
           e.g. ganctl train model=dcgan loss=bce train.steps=2000
  sample   write samples from a checkpoint: ganctl sample <checkpoint or run dir> [--num N] [--class C] ...
  eval     FID/KID/IS/precision/recall of a checkpoint: ganctl eval <checkpoint or run dir> [--metrics fid,kid] [--nearest K] ...
           or of a folder of images: ganctl eval --images DIR --dataset mnist; a named protocol: --protocol fid50k_full
  compare  rank metric cards of runs or eval files, only where they are comparable: ganctl compare RUN_OR_CARDS...
  judge    train a classifier on labelled images to score generators with: ganctl judge train DATASET --out judge.pt
  summary  the table of a sweep's jobs: ganctl summary <sweep dir>  (sweeps: ganctl train -m ...)
  project  real images into the latent space: ganctl project <run> IMAGE... --out DIR [--class C] [--space w+]
  directions  semantic directions: ganctl directions <run> --out dirs.npy [--top K] (SeFa), or --positive A.pt --negative B.pt
  import   a published StyleGAN2-ADA pickle as a checkpoint, no code from it run: ganctl import network-snapshot.pkl --out model.pt
  export   the generator as ONNX, TorchScript or safetensors: ganctl export <run or checkpoint> --format onnx [--out FILE]
  plot     a run's curves as a PNG (a sweep's: one line per job): ganctl plot <run or sweep dir> [--out FILE.png]
  animate  a run's training grids as a GIF/MP4, the step on each frame: ganctl animate <run dir> [--out FILE.gif]
  report   one self-contained HTML page of a run or a sweep: ganctl report <run or sweep dir> [--out report.html]
  explore  a local web page to steer G with sliders: ganctl explore <run or checkpoint> [--port P]  (pip install 'ganctl[ui]')

`ganctl train --help` lists the config groups and options; `ganctl sample --help` its flags.

--trust MODULE (any command, repeatable): build your own components (a feature extractor, a
regulariser, a model) that a config names in MODULE, e.g. `ganctl --trust my_penalties train ...`.
Without it a config, a checkpoint or an exported file can name only ganctl's own components.
"""


def take_trusted(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv without its `--trust MODULE` / `--trust=MODULE` flags, and the modules they name."""
    rest, modules = [], []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--trust":
            module = next(arguments, None)
            if module is None or module.startswith("-"):
                raise ValueError("--trust needs a module name, e.g. --trust my_package.penalties")
            modules.append(module)
        elif argument.startswith("--trust="):
            modules.append(argument.split("=", 1)[1])
        else:
            rest.append(argument)
    return rest, modules


def main(argv: list[str] | None = None) -> int:
    try:
        argv, trusted = take_trusted(list(sys.argv[1:] if argv is None else argv))
    except ValueError as error:
        print(f"ganctl: {error}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from ganctl import __version__

        print(f"ganctl {__version__}")
        return 0
    command, args = argv[0], argv[1:]
    from ganctl.errors import GanctlError

    try:
        from ganctl.files import check_working_directory

        check_working_directory()
        if trusted:
            from ganctl import registry

            registry.trust(trusted)
        if command == "train":
            from ganctl.app import main as train_main

            return train_main(args)
        if command == "sample":
            from ganctl.sample import main as sample_main

            return sample_main(args)
        if command == "eval":
            from ganctl.eval_cli import main as eval_main

            return eval_main(args)
        if command == "compare":
            from ganctl.compare import main as compare_main

            return compare_main(args)
        if command == "judge":
            from ganctl.judge_cli import main as judge_main

            return judge_main(args)
        if command == "summary":
            from ganctl.sweep import main as summary_main

            return summary_main(args)
        if command == "project":
            from ganctl.project import main as project_main

            return project_main(args)
        if command == "directions":
            from ganctl.directions import main as directions_main

            return directions_main(args)
        if command == "import":
            from ganctl.published import main as import_main

            return import_main(args)
        if command == "export":
            from ganctl.export import main as export_main

            return export_main(args)
        if command == "plot":
            from ganctl.plots import plot_main

            return plot_main(args)
        if command == "animate":
            from ganctl.plots import animate_main

            return animate_main(args)
        if command == "report":
            from ganctl.report import main as report_main

            return report_main(args)
        if command == "explore":
            from ganctl.explore import main as explore_main

            return explore_main(args)
    except GanctlError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from ganctl.console import print_error

        print_error(error)
        return 1
    print(f"ganctl: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

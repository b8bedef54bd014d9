"""`ganctl explore RUN [--port P] [--host H] [--directions FILE]`: a local web page to steer G with sliders
(seed, truncation, class, style mixing of two seeds, a walk between two seeds, a direction and its
strength, an uploaded image projected and then edited), each image what `ganctl sample` writes for the
same settings. It needs the optional Gradio extra, `pip install 'ganctl[ui]'`.

    images  the images, from a checkpoint's `Sampler` (no Gradio)
    app     the Gradio page over them, and serving it

torch and Gradio load after the arguments are parsed and checked: `ganctl explore --help` and a mistyped
path are answered at once."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ganctl import rundir
from ganctl.arguments import check_device
from ganctl.errors import GanctlError
from ganctl.sample import direction_file

UI_EXTRA = "pip install 'ganctl[ui]'"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl explore", description="Steer a generator in a local web page: seed, truncation, class, style mixing, "
                                           f"walks, directions, projected uploads. Needs the ui extra: {UI_EXTRA}.",
        epilog="examples:\n  ganctl explore outputs/2026-11-22/12-00-00\n  ganctl explore run --port 8080 --host 0.0.0.0   # reachable from other machines"
               "\n  ganctl explore run --directions dirs.npy      # the directions `ganctl directions` wrote (default: SeFa's)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its newest intact checkpoint)")
    parser.add_argument("--port", type=int, help="the port to serve on (default: the first free one from 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--directions", metavar="FILE",
                        help="a .npy file of directions (`ganctl directions` writes one); default: G's SeFa directions, "
                             "those `ganctl directions RUN --out FILE` writes")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    return parser


def check_ui_extra() -> None:
    """One clear message, before the checkpoint is read, when Gradio is not installed."""
    if importlib.util.find_spec("gradio") is None:
        raise GanctlError(f"ganctl explore serves its page with Gradio, which is not installed: {UI_EXTRA}.")


def explorer_of(path: str, device: str = "auto", ema: bool = True, directions: str | None = None):
    """The Explorer of a checkpoint (or a run directory's newest intact one), and the page's title."""
    from ganctl import checkpoint
    from ganctl.device import resolve_device
    from ganctl.explore.images import Explorer
    from ganctl.project.command import perceptual_distance
    from ganctl.projection import NoDistance
    from ganctl.sampling import Sampler

    ckpt_path, state = checkpoint.find(path, use="ganctl explore {}")
    chosen_device = resolve_device(device, "--device ")
    sampler = Sampler.from_checkpoint(state, chosen_device, ema)
    title = f"{checkpoint.run_dir_of(ckpt_path).name}: step {state['step']}, {sampler.weights} generator ({Path(ckpt_path).name})"
    try:  # `ganctl project`'s default: the run's D; pixels alone where D does not offer its features
        distance = perceptual_distance(state, sampler, None, "d", chosen_device)
    except GanctlError:
        distance = NoDistance()
    image_shape = (state["data"]["channels"], state["data"]["image_size"])
    return Explorer(sampler, state["step"], edit_directions(sampler, directions), image_shape, distance,
                    directions), title


def edit_directions(sampler, file: str | None) -> list:
    """The directions of --directions FILE, each checked as `ganctl sample --direction FILE:K` checks it, or
    without it the SeFa directions `ganctl directions RUN` writes by default (none when G has no first layer to factorise)."""
    import numpy as np

    from ganctl.directions import argument_parser as directions_parser
    from ganctl.directions.find import sefa_directions
    from ganctl.sample.direction import read_direction

    if file is None:
        try:
            return list(sefa_directions(sampler, directions_parser().get_default("top"))[0])
        except GanctlError:
            return []
    path = Path(file).expanduser()
    read_direction(path, 0, sampler)  # a missing or foreign file, or directions of another shape: one message
    array = np.load(path, allow_pickle=False)
    return [read_direction(path, index, sampler) for index in range(1 if array.ndim == 1 else array.shape[0])]


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    if options.port is not None and not 0 < options.port < 65536:
        raise GanctlError(f"--port must be from 1 to 65535, got {options.port}.")
    rundir.named_checkpoint(options.checkpoint)  # the mistakes that need no torch, answered before it loads
    check_device(options.device, "--device ")
    if options.directions is not None:
        direction_file(Path(options.directions).expanduser())
    check_ui_extra()
    explorer, title = explorer_of(options.checkpoint, options.device, options.ema, options.directions)
    from ganctl.explore.app import serve

    serve(explorer, title, options.checkpoint, options.host, options.port)
    return 0

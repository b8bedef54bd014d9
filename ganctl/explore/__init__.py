"""`ganctl explore RUN [--port P] [--host H]`: a local web page to steer G with sliders (seed, truncation,
class, style mixing of two seeds, a walk between two seeds), each image what `ganctl sample` writes for
the same settings. It needs the optional Gradio extra, `pip install 'ganctl[ui]'`.

    images  the images, from a checkpoint's `Sampler` (no Gradio)
    app     the Gradio page over them, and serving it

torch and Gradio load after the arguments are parsed: `ganctl explore --help` stays fast."""

from __future__ import annotations

import argparse
import importlib.util

from ganctl.errors import GanctlError

UI_EXTRA = "pip install 'ganctl[ui]'"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganctl explore", description="Steer a generator in a local web page: seed, truncation, class, style mixing, "
                                           f"walks. Needs the ui extra: {UI_EXTRA}.",
        epilog="examples:\n  ganctl explore outputs/2026-11-22/12-00-00\n  ganctl explore run --port 8080 --host 0.0.0.0   # reachable from other machines",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its newest intact checkpoint)")
    parser.add_argument("--port", type=int, help="the port to serve on (default: the first free one from 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    return parser


def check_ui_extra() -> None:
    """One clear message, before the checkpoint is read, when Gradio is not installed."""
    if importlib.util.find_spec("gradio") is None:
        raise GanctlError(f"ganctl explore serves its page with Gradio, which is not installed: {UI_EXTRA}.")


def explorer_of(path: str, device: str = "auto", ema: bool = True):
    """The Explorer of a checkpoint (or a run directory's newest intact one), and the page's title."""
    from pathlib import Path

    from ganctl import checkpoint
    from ganctl.device import resolve_device
    from ganctl.explore.images import Explorer
    from ganctl.sampling import Sampler

    ckpt_path, state = checkpoint.find(path, use="ganctl explore {}")
    sampler = Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema)
    title = f"{checkpoint.run_dir_of(ckpt_path).name}: step {state['step']}, {sampler.weights} generator ({Path(ckpt_path).name})"
    return Explorer(sampler, state["step"]), title


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)
    if options.port is not None and not 0 < options.port < 65536:
        raise GanctlError(f"--port must be from 1 to 65535, got {options.port}.")
    check_ui_extra()
    explorer, title = explorer_of(options.checkpoint, options.device, options.ema)
    from ganctl.explore.app import serve

    serve(explorer, title, options.checkpoint, options.host, options.port)
    return 0

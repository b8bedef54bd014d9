"""The Hydra application behind `ganctl train`: compose the config, then hand it to the loop (or, in
a sweep, to the job runtime in `ganctl.sweep`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ganctl import config, sweep
from ganctl.console import print_error
from ganctl.errors import EXIT_CODES, GanctlError


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="train")
def hydra_train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep.run_job(cfg, hydra_cfg, run)
    try:
        result = run(cfg, hydra_cfg)
    except GanctlError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        logging.getLogger("ganctl").error("%s", error)  # into train.log too (a diverged run keeps it)
        print_error(error)
        discard_refused_run(Path(hydra_cfg.runtime.output_dir))
        sys.exit(1)
    if result.interrupted_by:
        sys.exit(EXIT_CODES.get(result.interrupted_by, 1))
    return None


def discard_refused_run(run_dir: Path) -> None:
    """A run refused before it trained leaves nothing behind: Hydra had already made its directory
    with `.hydra/` and `train.log`; remove them, and the directory if that was all it held."""
    if not run_dir.is_dir() or not set(os.listdir(run_dir)) <= {".hydra", "train.log"}:
        return  # it holds more (an earlier run, samples of this one): leave it as it is
    root = logging.getLogger()
    for handler in list(root.handlers):  # close this run's train.log (Hydra's job logging writes it)
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == run_dir.resolve():
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "train.log").unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        pass


def run(cfg: DictConfig, hydra_cfg: DictConfig):
    """One training run from the composed config, or from a checkpoint's stored one with `resume=`."""
    # torch loads here, after Hydra has parsed the command line: `--cfg job` and --help stay fast.
    from ganctl import checkpoint
    from ganctl.train import train

    choices = {group: hydra_cfg.runtime.choices[group] for group in config.GROUPS}
    run_dir = Path(hydra_cfg.runtime.output_dir)
    state = None
    if cfg.resume is not None:
        path = checkpoint.resolve(cfg.resume)
        state = checkpoint.load(path)
        cfg = config.resumed_config(state["config"], state["choices"], cfg, list(hydra_cfg.overrides.task), choices)
        choices, run_dir = state["choices"], checkpoint.run_dir_of(path)
    config.check(cfg)
    return train(cfg, run_dir, choices, resume=state)


def resume_arguments(args: list[str]) -> list[str]:
    """With `resume=<checkpoint or run dir>`, continue in that run's own directory, and leave its
    .hydra/ record of the original command as it is."""
    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    if resume in (None, "", "null") or any(a.startswith("hydra.run.dir=") for a in args):
        return args
    from ganctl import checkpoint

    run_dir = checkpoint.run_dir_of(checkpoint.resolve(resume))
    return [*args, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]


def check_arguments(args: list[str]) -> None:
    """What ganctl refuses before Hydra sees the command line: overrides of keys it does not know."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = get_args_parser().parse_args(args)
    except SystemExit:
        return  # Hydra will say what is wrong with the flags
    if parsed.help or parsed.hydra_help or parsed.info or parsed.shell_completion or parsed.config_name or parsed.config_path or parsed.config_dir:
        return
    config.check_override_keys(parsed.overrides)


def main(args: list[str]) -> int:
    """`ganctl train ARGS`: Hydra reads sys.argv, so it is swapped in for the call and restored."""
    check_arguments(args)
    saved = sys.argv
    sys.argv = ["ganctl train", *resume_arguments(args)]
    with tempfile.TemporaryDirectory(prefix="ganctl-rank") as elsewhere:
        if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 alone owns the run directory
            sys.argv += [f"hydra.run.dir={elsewhere}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
        try:
            return sweep.supervise(hydra_train)
        finally:
            sys.argv = saved

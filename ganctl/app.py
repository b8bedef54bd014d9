"""The Hydra application behind `ganctl train`: compose the config, then hand it to the loop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ganctl import config
from ganctl.errors import GanctlError


def config_dir() -> str:
    """conf/ ships inside the installed package as ganctl/conf; a source checkout has it at the top."""
    packaged = Path(__file__).parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf")


EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR2": 140}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        result = run(cfg, hydra_cfg)
    except GanctlError as error:
        if hydra_cfg.mode == RunMode.MULTIRUN or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # a sweep records the failed job and goes on
        from ganctl.logger import console

        console.print(f"[bold red]error:[/] {error}")
        sys.exit(1)
    if result.interrupted_by:
        sys.exit(EXIT_CODES.get(result.interrupted_by, 1))
    return result.summary.get("losses", {}).get("g_loss")


def run(cfg: DictConfig, hydra_cfg: DictConfig):
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


def main(args: list[str]) -> int:
    """`ganctl train ARGS`: Hydra reads sys.argv, so it is swapped in for the call and restored."""
    saved = sys.argv
    sys.argv = ["ganctl train", *resume_arguments(args)]
    try:
        hydra_train()
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        sys.argv = saved
    return 0

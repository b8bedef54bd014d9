"""The Hydra application behind `ganctl train`: compose the config, then hand it to the loop."""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganctl import config
from ganctl.errors import GanctlError

log = logging.getLogger("ganctl")


def config_dir() -> str:
    """conf/ ships inside the installed package as ganctl/conf; a source checkout has it at the top."""
    packaged = Path(__file__).parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf")


EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR2": 140}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_train(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep_job(cfg, hydra_cfg)
    try:
        result = run(cfg, hydra_cfg)
    except GanctlError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        from ganctl.logger import console

        console.print(f"[bold red]error:[/] {error}")
        discard_refused_run(Path(hydra_cfg.runtime.output_dir))
        sys.exit(1)
    if result.interrupted_by:
        sys.exit(EXIT_CODES.get(result.interrupted_by, 1))
    return job_objective(result, hydra_cfg)[0]


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


def job_objective(result, hydra_cfg: DictConfig) -> tuple[float, str]:
    from ganctl.sweep import objective

    name = OmegaConf.select(hydra_cfg, "callbacks.sweep_summary.objective", default="fid")
    return objective(result.run_dir, result.summary, name)


def sweep_job(cfg: DictConfig, hydra_cfg: DictConfig) -> float:
    """One job of `ganctl train -m`. A failure is recorded in its status.json and reported in one
    line, and the sweep goes on; the job returns NaN, which sweepers count as a failed trial.
    Inside a submitit job, SIGUSR2 / SIGTERM (preemption, time limit) requeue it: training saved
    last.pt, and the requeued job resumes from it in the same run directory."""
    from ganctl import sweep
    from ganctl.logger import console

    run_dir = Path(hydra_cfg.runtime.output_dir)
    job = f"job {hydra_cfg.job.num}"  # as Hydra numbers them, and the run dir's default name
    overrides = list(hydra_cfg.overrides.task)
    requeues = 0
    if cfg.resume is None and is_requeued(run_dir):
        cfg.resume = str(run_dir)  # a requeued cluster job continues where it was stopped
        requeues = (sweep.read_json(run_dir / sweep.STATUS_FILE) or {}).get("requeues", 0) + 1
    sweep.write_status(run_dir, "running", job=hydra_cfg.job.num, overrides=overrides, requeues=requeues)
    share_cpu_threads(hydra_cfg)
    try:
        result = run(cfg, hydra_cfg)
    except Exception as error:  # any failure: the other jobs and the summary go on
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if not isinstance(error, GanctlError):
            first_line = f"{type(error).__name__}: {first_line}"
            log.exception("Job failed")  # the traceback goes to the job's train.log
        sweep.write_status(run_dir, "failed", error=first_line)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        swept = sweep.swept_in(Path(hydra_cfg.sweep.dir)) or []
        values = " ".join(f"{key}={value}" for key, value in sweep.override_values(overrides).items() if key in swept)
        console.print(f"[bold red]error:[/] {job} ({values}) failed: {first_line}")
        return math.nan

    fields = {"step": result.step, "summary": result.summary}
    if result.interrupted_by:
        fields["signal"] = result.interrupted_by
        requeue = submitit_requeue() if result.interrupted_by in ("SIGUSR2", "SIGTERM") else None
        if requeue is None:
            sweep.write_status(run_dir, "interrupted", **fields)
            sys.exit(EXIT_CODES.get(result.interrupted_by, 1))  # the user stopped the sweep
        sweep.write_status(run_dir, "requeued", **fields)
        try:
            requeue()  # submitit saves the job for its next start, requeues it and exits
        except Exception as error:  # no requeue left (max_num_timeout): the job ends here
            sweep.write_status(run_dir, "interrupted", **fields, error=f"not requeued: {error}")
        return math.nan  # submitit's handler returns only on tasks other than rank 0
    value, source = job_objective(result, hydra_cfg)
    sweep.write_status(run_dir, "finished", **fields, objective=value, objective_source=source)
    values = sweep.override_values(overrides)
    swept = sweep.swept_in(Path(hydra_cfg.sweep.dir)) or list(values)
    losses = result.summary.get("losses") or {}
    sweep.write_hparams(
        run_dir,
        {key: sweep.hparam_value(values[key]) for key in swept if key in values},
        {"objective": value, **losses, "images_per_second": result.summary.get("images_per_second")},
        result.step,
    )
    return value


def is_requeued(run_dir: Path) -> bool:
    """A submitit job that was requeued (preempted, timed out) starts again with its run directory
    holding last.pt: ganctl marked it `requeued` before handing over, or SLURM restarted it
    (e.g. after a node failure, from the last periodic checkpoint)."""
    from ganctl import checkpoint, sweep

    if "SUBMITIT_FOLDER" not in os.environ or not checkpoint.last_path(run_dir).exists():
        return False
    status = sweep.read_json(run_dir / sweep.STATUS_FILE) or {}
    return status.get("status") == "requeued" or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def submitit_requeue() -> Callable[[], None] | None:
    """Inside a submitit job, its own handler for the preemption signal (USR2 unless
    SUBMITIT_PREEMPT_SIGNAL says otherwise), which training restored when it stopped: calling it
    checkpoints the job (hydra-submitit-launcher's `checkpoint()` resubmits the same call) and
    requeues it, then exits; it raises when the job may not be requeued again."""
    if "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return None
    number = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
    handler = signal.getsignal(number)
    if not isinstance(getattr(handler, "__self__", None), SignalHandler):
        return None
    signal.signal(number, signal.SIG_IGN)  # a late second signal must not requeue twice
    return lambda: handler(number, None)


def share_cpu_threads(hydra_cfg: DictConfig) -> None:
    """Jobs that run side by side on one machine split its CPU cores instead of each starting one
    thread per core: with the joblib launcher, cores // n_jobs each (joblib's workers already start
    with that OMP_NUM_THREADS, which torch follows); with submitit, hydra.launcher.cpus_per_task
    when it is set. An OMP_NUM_THREADS set by the user wins."""
    launcher = OmegaConf.select(hydra_cfg, "launcher._target_", default="") or ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if launcher.endswith("JoblibLauncher"):
        n_jobs = int(hydra_cfg.launcher.n_jobs)
        parallel = cores if n_jobs == -1 else (max(1, cores + 1 + n_jobs) if n_jobs < 0 else n_jobs)
        threads = max(1, cores // min(parallel, cores))
    elif "submitit_launcher" in launcher and OmegaConf.select(hydra_cfg, "launcher.cpus_per_task"):
        threads = int(hydra_cfg.launcher.cpus_per_task)
    else:
        return
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)
    log.info("%d torch threads for this job (%d cores here)", torch.get_num_threads(), cores)


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
    """`ganctl train ARGS`: Hydra reads sys.argv, so it is swapped in for the call and restored.

    A sweep exits 1 when any of its jobs failed (all of them still ran, and the summary lists
    each failure), and 130 when Ctrl-C stopped it; a sweep cut short still writes its summary."""
    from ganctl import sweep

    saved = sys.argv
    sys.argv = ["ganctl train", *resume_arguments(args)]
    sweep.current_sweep.clear()
    code = 0
    with tempfile.TemporaryDirectory(prefix="ganctl-rank") as elsewhere:
        if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 alone owns the run directory
            sys.argv += [f"hydra.run.dir={elsewhere}", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
        try:
            hydra_train()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except KeyboardInterrupt:
            code = EXIT_CODES["SIGINT"]
        finally:
            sys.argv = saved
    if "dir" in sweep.current_sweep and not sweep.current_sweep.get("summarized"):
        sweep.finish(sweep.current_sweep["dir"])  # the sweep ended early: summarise what ran
    if code == 0 and sweep.current_sweep.get("failed"):
        code = 1
    return code

"""Sweeps (`ganctl train -m`): each job's run on a launcher (status, requeue, CPU threads, objective),
and the sweep's summary table.

Every job of a sweep writes `status.json` into its run directory (running, finished, failed,
interrupted, requeued) with its overrides and final numbers. The summary is read back from those
files, so it can be rebuilt at any time: by the `SweepSummary` Hydra callback when the sweep ends,
by `supervise` when a sweep is cut short, and by `ganctl summary <sweep dir>` while it runs.
No torch import at module level: Hydra instantiates the callback for every `ganctl train`.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ganctl import rundir, search, trackers
from ganctl.console import console, print_error, word
from ganctl.errors import EXIT_CODES, GanctlError
from ganctl.files import write_text

log = logging.getLogger("ganctl")

STATUS_FILE = "status.json"
SWEEP_FILE = "sweep.json"  # the sweep's swept keys and objective, written when it starts
SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"
PROXY = "d_gap"  # the objective when no FID was measured: see objective()
PROXIES = (PROXY, "g_loss", "d_loss")  # objectives on the scale of a loss, not comparable across losses
GANCTL_OPTUNA_SWEEPER = "hydra_plugins.ganctl_sweeper.GanctlOptunaSweeper"  # hydra/sweeper=optuna: its study goes on when run again
REQUEUE_WAIT_SECONDS = 120.0  # how long a requeued cluster job waits for the one it replaces to exit

# The sweep running in this process, between the callback that sees it start and end and
# `supervise` around it: its directory, whether its summary was written, how many jobs failed.
_this_sweep: dict[str, Any] = {}


class SweepSummary(Callback):
    """Hydra callback: records what a sweep varies when it starts; writes and prints the summary
    when it ends. `objective` names what each job returns to the sweeper (see objective())."""

    def __init__(self, objective: str = "fid") -> None:
        self.objective = objective

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        problem = tasks_problem(config.hydra.launcher) or refuse_sweep(config, self.objective) or earlier_sweep_problem(config, sweep_dir)
        if problem:  # before anything is queued; one line, not Hydra's traceback (a SystemExit passes through it)
            print_error(problem)
            raise SystemExit(1)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # optuna's storage imports it: "setup plugin" lines
        if (sweep_dir / SWEEP_FILE).exists():  # the same command again (else refused above): go on with it
            console.print(f"Continuing the sweep in {sweep_dir}: its finished jobs are kept as they are, its stopped ones "
                          "resume from their last checkpoint.")
        else:
            try:
                sweep_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:  # before Hydra's launcher meets it, with a traceback
                print_error(f"Cannot create the sweep directory {sweep_dir}: {error.strerror or error}. "
                            "Sweep into a directory you can write to, with hydra.sweep.dir=<dir>.")
                raise SystemExit(1) from None
            # The command line's overrides as given (`interval(1e-4, 1e-2)`, not a job's value): what a re-run must
            # repeat, and a sweeper's search space, which `ganctl report` reads back (Optuna keeps its study in memory).
            record = {"swept": swept_keys(config.hydra), "objective": self.objective, "started": time.time(),
                      "command": list(config.hydra.overrides.task)}
            write_text(sweep_dir / SWEEP_FILE, json.dumps(record, indent=2) + "\n")
        try:
            trackers.start_sweep(config, sweep_dir, list(config.hydra.overrides.task))  # MLflow's parent run, W&B's group
        except GanctlError as error:
            print_error(error)
            raise SystemExit(1) from None
        _this_sweep.clear()
        _this_sweep["dir"] = sweep_dir
        if str(config.hydra.launcher.get("_target_", "")).endswith("JoblibLauncher"):
            leave_ctrl_c_to_the_jobs()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = finish(Path(config.hydra.sweep.dir))
        _this_sweep["failed"] = sum(row["status"] == "failed" for row in rows)
        trackers.end_sweep(Path(config.hydra.sweep.dir), failed=bool(_this_sweep["failed"]))
        _this_sweep["stopped_by"] = next((row["signal"] for row in rows if row["status"] == "interrupted" and row["signal"]), None)


def earlier_sweep_problem(config: DictConfig, sweep_dir: Path) -> str:
    """Why this sweep cannot run in `sweep_dir`, which holds an earlier one, if it cannot. The same
    command again goes on with it (its jobs are the same: the finished ones are kept, the stopped ones
    resume); another command, or a sweeper that draws its trials anew (Optuna), would take over the
    earlier jobs' directories and records, so it goes into a new directory instead."""
    record = read_json(sweep_dir / SWEEP_FILE)
    if record is None and not (sweep_dir.is_dir() and job_dirs(sweep_dir)):
        return ""
    command = list(config.hydra.overrides.task)
    if record is None or record.get("command") != command:
        earlier = " ".join(record["command"]) if record and isinstance(record.get("command"), list) else "another command"
        return (f"{sweep_dir} holds an earlier sweep ({earlier}), whose jobs' directories and records this one would take "
                f"over. Run it into a new directory with hydra.sweep.dir=<new dir>; the same command as the earlier sweep "
                f"goes on with that one (its finished jobs are kept, its stopped ones resume).")
    sweeper = str(config.hydra.sweeper.get("_target_", ""))
    if not sweeper.endswith("BasicSweeper") and sweeper != GANCTL_OPTUNA_SWEEPER and job_dirs(sweep_dir):
        return (f"{sweep_dir} holds an earlier sweep, and {sweeper.rsplit('.', 1)[-1]} draws its trials anew, so they would "
                f"take over the earlier jobs' directories and records. Run it into a new directory with hydra.sweep.dir=<new dir>.")
    return ""


def leave_ctrl_c_to_the_jobs() -> None:
    """With joblib, Ctrl-C reaches this process and the workers that run the jobs alike (one process
    group). Each job then finishes its step, saves last.pt and records that it stopped; but joblib,
    interrupted here, would kill its workers at once, in the middle of that (status.json left
    `running`, the last steps lost). So this process ignores SIGINT while the sweep runs, as do the
    workers it starts (they inherit it) except in a job: the jobs stop, and the sweep ends with them.
    A second Ctrl-C stops a job at once, as it does any run. `supervise` restores the handler."""
    _this_sweep["sigint"] = signal.signal(signal.SIGINT, signal.SIG_IGN)


def tasks_problem(launcher: DictConfig) -> str:
    """What is wrong with a submitit job's tasks and GPUs, if anything: each task (one DDP rank)
    trains on a GPU of its own, the one of its local rank among the node's (ganctl.distributed)."""
    if "submitit" not in str(launcher.get("_target_", "")):
        return ""
    tasks, gpus = launcher.get("tasks_per_node") or 1, launcher.get("gpus_per_node") or 0
    if tasks > 1 and launcher.get("gpus_per_task"):  # SLURM would show each task its own GPU only
        return (
            f"hydra.launcher.gpus_per_task={launcher.gpus_per_task} with tasks_per_node={tasks}: ganctl gives each "
            f"task the GPU of its local rank among the node's GPUs, so every task must see them all. Use "
            f"hydra.launcher.gpus_per_node={tasks} and gpus_per_task=null."
        )
    if gpus and tasks > gpus:
        return (
            f"hydra.launcher.tasks_per_node={tasks} but gpus_per_node={gpus}: each task trains on a GPU of its own. "
            f"Set hydra.launcher.gpus_per_node={tasks}, or tasks_per_node={gpus}."
        )
    return ""


def refuse_sweep(config: DictConfig, objective: str) -> str:
    """Why a sweep cannot run as asked, if it cannot: SLURM asked for on a machine without it, the
    Optuna sweeper without Optuna installed (Hydra would fail building its sampler), or a sweeper that
    ranks jobs by a loss-scale proxy across different losses."""
    if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher") and shutil.which("srun") is None:
        return ("SLURM is not available here (no `srun`): this launcher submits jobs to a SLURM cluster, so start the "
                "sweep on the cluster's login node. To test the same sweep on this machine, use "
                "hydra/launcher=submitit_local instead (hydra/launcher=local_tasks for jobs of several tasks).")
    if config.hydra.sweeper.get("_target_") == GANCTL_OPTUNA_SWEEPER and importlib.util.find_spec("optuna") is None:
        return 'hydra/sweeper=optuna needs Optuna: pip install -c constraints.txt ".[sweep]" (or "ganctl[sweep]").'
    swept = swept_keys(config.hydra)
    measured = config.train.eval_every > 0 or "train.eval_every" in swept
    proxy = objective if objective in PROXIES else (None if measured else PROXY)
    if str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper") or proxy is None or "loss" not in swept:
        return ""
    return (f"This sweeper would rank its trials by {proxy} across different losses (loss is swept), whose scores "
            f"are on different scales, so every job of one loss would seem to beat every job of another. Measure FID "
            f"(train.eval_every=N, with hydra.callbacks.sweep_summary.objective=fid) or keep one loss per sweep.")


def supervise(hydra_entry: Callable[[], Any]) -> int:
    """Run `ganctl train`'s Hydra entry point and return its exit code: a run's own, 130 on Ctrl-C,
    and for a sweep 1 when any of its jobs failed (all of them still ran, and the summary lists each
    failure). A sweep cut short still writes its summary."""
    _this_sweep.clear()
    code = 0
    try:
        hydra_entry()
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except KeyboardInterrupt:
        code = EXIT_CODES["SIGINT"]
    finally:
        if "sigint" in _this_sweep:
            signal.signal(signal.SIGINT, _this_sweep.pop("sigint"))
    if "dir" in _this_sweep and not _this_sweep.get("summarized"):
        finish(_this_sweep["dir"])  # the sweep ended early: summarise what ran
    if code == 0 and _this_sweep.get("stopped_by"):  # its jobs stopped it (joblib's workers: see leave_ctrl_c_to_the_jobs)
        code = EXIT_CODES.get(_this_sweep["stopped_by"], 1)
    elif code == 0 and _this_sweep.get("failed"):
        code = 1
    return code


def finish(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md into the sweep directory and print the table."""
    rows = read_sweep(sweep_dir)
    write_tables(sweep_dir, rows)
    print_table(sweep_dir, rows, console)
    print_study(sweep_dir, console)
    console.print(f"Summary: {sweep_dir / SUMMARY_CSV} and {SUMMARY_MD}; again any time with `ganctl summary {word(sweep_dir)}`")
    _this_sweep["summarized"] = True
    return rows


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """The keys a sweep varies: command-line sweep overrides (a,b / range / choice / interval)
    and the sweeper's `params` (how the Optuna sweeper is usually given its search space)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = [
        override.get_key_element()
        for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
        if override.is_sweep_override()
    ]
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    keys += [key for key in params if key not in keys]
    return [key.lstrip("+~") for key in keys if not key.startswith("hydra.")]


def job_number(hydra_cfg: DictConfig) -> int:
    """A job's number: Hydra's, or in an Optuna search the number of the trial it trains (unique
    across the workers and re-runs of one study, and the name of its run directory)."""
    trial = OmegaConf.select(hydra_cfg, "sweeper.trial", default=None)
    return int(trial) if trial is not None else hydra_cfg.job.num


def swept_in(sweep_dir: Path) -> Optional[list[str]]:
    """The swept keys recorded in the sweep directory when the sweep started (None: no record)."""
    record = read_json(Path(sweep_dir) / SWEEP_FILE)
    return record["swept"] if record else None


# ---------------------------------------------------------------- one job


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Replace the job's status.json atomically (a reader never sees half a file)."""
    path = Path(run_dir) / STATUS_FILE
    previous = read_json(path) or {}
    record = {**previous, **fields, "status": status, "updated": time.time()}
    if status == "running":
        record.update(pid=os.getpid(), host=socket.gethostname())
        for stale in ("error", "signal", "objective", "objective_source", "summary"):
            record.pop(stale, None)
    text = json.dumps(record, indent=2, default=str) + "\n"
    write_text(path, text)


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def latest_metric(run_dir: Path, name: str) -> Optional[dict[str, Any]]:
    """The newest {"metric": name, "value": ..., "step": ...} line of run_dir/metrics.jsonl."""
    latest = None
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(record, dict) and record.get("metric") == name and isinstance(record.get("value"), (int, float)):
            if latest is None or record.get("step", 0) >= latest.get("step", 0):
                latest = record
    return latest


def objective(run_dir: Path, summary: dict[str, Any], name: str) -> tuple[float, str]:
    """What the job returns to the sweeper, always to be minimised, and where it came from.

    `name` is a metric of metrics.jsonl (`fid`, the default, or `kid`): its newest value. When the
    run logged none, or `name` is `d_gap`, the proxy: |mean D(real) - mean D(fake)| over the last
    logging window, i.e. how well D still tells real from fake. It is weak (a D that learned nothing
    also scores 0) and not comparable across losses or discriminators, whose scores have different
    scales. `g_loss` and `d_loss` name the final losses, which are weaker still.
    """
    if name != PROXY:
        record = latest_metric(run_dir, name)
        if record is not None:
            return float(record["value"]), f"{name}@{record.get('step', '?')}"
    if name in ("g_loss", "d_loss"):
        value = (summary.get("losses") or {}).get(name)
        return (float(value) if value is not None else math.nan), name
    real, fake = summary.get("d_real"), summary.get("d_fake")
    if real is None or fake is None:
        return math.nan, PROXY
    return abs(real - fake), PROXY


def run_job(cfg: DictConfig, hydra_cfg: DictConfig, run: Callable[[DictConfig, DictConfig], Any]) -> Optional[float]:
    """One job of a sweep, which owns its run directory first (`rundir.hold`): a second process there
    is refused before it touches the job's status.json, and the sweep goes on. A requeued job waits a
    while for the one it replaces to exit. A job without a value returns None (see train_job)."""
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        with rundir.hold(run_dir, wait=REQUEUE_WAIT_SECONDS if is_requeued(run_dir) else 0.0):
            earlier = read_json(run_dir / STATUS_FILE) or {}
            if earlier.get("status") == "finished":
                return finished_earlier(hydra_cfg, earlier)
            return train_job(cfg, hydra_cfg, run)
    except rundir.RunLocked as error:
        print_error(f"job {job_number(hydra_cfg)}: {error}")
        return None


def finished_earlier(hydra_cfg: DictConfig, record: dict[str, Any]) -> Optional[float]:
    """A job that an earlier run of this sweep finished (the same command into the same directory):
    its record stays as it is, and its objective goes to the sweeper again."""
    value = record.get("objective")
    value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    console.print(f"job {job_number(hydra_cfg)}: finished in an earlier run of this sweep (objective {number(value)}); kept as it is")
    return value


def train_job(cfg: DictConfig, hydra_cfg: DictConfig, run: Callable[[DictConfig, DictConfig], Any]) -> Optional[float]:
    """One job of `ganctl train -m`: `run(cfg, hydra_cfg)` trains it (app.run). A failure is recorded
    in its status.json and reported in one line, and the sweep goes on; the job returns None (no
    value), which the Optuna sweeper tells Optuna as a failed trial, as it does a job whose objective
    is not a finite number. Inside a submitit job, SIGUSR2 / SIGTERM (preemption, time
    limit) requeue it: training saved last.pt, and the requeued job resumes from it in the same run
    directory. A submitit job of several tasks trains one DDP run: the tasks join their process
    group first and follow rank 0, which alone decides whether the job resumes, writes status.json
    and requeues the job; the others return None (the launcher reports rank 0's result)."""
    from ganctl import distributed

    run_dir = Path(hydra_cfg.runtime.output_dir)
    job = f"job {job_number(hydra_cfg)}"  # as Hydra numbers them (an Optuna trial's number), and the run dir's default name
    overrides = list(hydra_cfg.overrides.task)
    task = distributed.launch()
    requeues, resume_from = 0, None
    if task.main and _this_sweep.get("stopped_by"):  # a joblib worker after Ctrl-C: the sweep is over
        write_status(run_dir, "interrupted", job=job_number(hydra_cfg), overrides=overrides,
                     error=f"not started: the sweep was stopped by {_this_sweep['stopped_by']}")
        return None
    if task.main and cfg.resume is None and is_requeued(run_dir):
        resume_from = str(run_dir)  # a requeued cluster job continues where it was stopped
        requeues = (read_json(run_dir / STATUS_FILE) or {}).get("requeues", 0) + 1
    elif task.main and cfg.resume is None and rundir.last_path(run_dir).exists():
        resume_from = str(run_dir)  # stopped in an earlier run of this sweep: it goes on from there
    if task.main:
        write_status(run_dir, "running", job=job_number(hydra_cfg), overrides=overrides, requeues=requeues)
    share_cpu_threads(hydra_cfg)
    try:
        if task.world_size > 1:
            resume_from = distributed.broadcast(resume_from, distributed.join(cfg.train))
        if resume_from is not None:
            cfg.resume = resume_from
        result = run(cfg, hydra_cfg)
    except Exception as error:  # any failure: the other jobs and the summary go on
        distributed.teardown(failed=True)  # (when it failed before training: its tasks stop waiting)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if isinstance(error, GanctlError):
            log.error("Job failed: %s", error)
        else:
            first_line = f"{type(error).__name__}: {first_line}"
            log.exception("Job failed")  # the traceback goes to the job's train.log
            if task.world_size > 1:  # it may have come from another task, which logs there
                logs = str(OmegaConf.select(hydra_cfg, "launcher.submitit_folder", default="")).replace("%j", str(hydra_cfg.job.id))
                first_line += f" (the logs of the job's {task.world_size} tasks: {logs})"
        if not task.main:  # rank 0 reports the job: its own error, or that this task went away
            print_error(f"{job}, task {task.rank} of {task.world_size}, failed: {first_line}")
            return None
        write_status(run_dir, "failed", error=first_line)
        search.tell(hydra_cfg, "failed")
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        swept = swept_in(Path(hydra_cfg.sweep.dir)) or []
        values = " ".join(f"{key}={value}" for key, value in override_values(overrides).items() if key in swept)
        print_error(f"{job} ({values}) failed: {first_line}")
        return None
    if not task.main:
        return None

    fields = {"step": result.step, "summary": result.summary}
    if result.interrupted_by == search.PRUNED:  # stopped early, with a complete last.pt: `resume=` continues it
        write_status(run_dir, "pruned", **fields)
        search.tell(hydra_cfg, "pruned")
        return None
    if result.interrupted_by:
        fields["signal"] = result.interrupted_by
        requeue = submitit_requeue() if result.interrupted_by in ("SIGUSR2", "SIGTERM") else None
        if requeue is None:
            write_status(run_dir, "interrupted", **fields)
            if "JoblibLauncher" in str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")):
                _this_sweep["stopped_by"] = result.interrupted_by  # an exception would make joblib kill the other jobs mid-stop
                return None
            raise SystemExit(EXIT_CODES.get(result.interrupted_by, 1))  # the user stopped the sweep
        write_status(run_dir, "requeued", **fields)
        try:
            requeue()  # submitit saves the job for its next start, requeues it and exits
        except Exception as error:  # no requeue left (max_num_timeout): the job ends here
            write_status(run_dir, "interrupted", **fields, error=f"not requeued: {error}")
        return None  # submitit's handler returns only on tasks other than rank 0
    name = OmegaConf.select(hydra_cfg, "callbacks.sweep_summary.objective", default="fid")
    value, source = objective(result.run_dir, result.summary, name)
    write_status(run_dir, "finished", **fields, objective=value, objective_source=source)
    search.tell(hydra_cfg, "finished", value)
    values = override_values(overrides)
    swept = swept_in(Path(hydra_cfg.sweep.dir)) or list(values)
    losses = result.summary.get("losses") or {}
    write_hparams(
        run_dir,
        {key: hparam_value(values[key]) for key in swept if key in values},
        {"objective": value, **losses, "images_per_second": result.summary.get("images_per_second")},
        result.step,
    )
    return value if math.isfinite(value) else None


def is_requeued(run_dir: Path) -> bool:
    """A submitit job that was requeued (preempted, timed out) starts again with its run directory
    holding last.pt: ganctl marked it `requeued` before handing over, or SLURM restarted it
    (e.g. after a node failure, from the last periodic checkpoint)."""
    from ganctl import checkpoint

    if "SUBMITIT_FOLDER" not in os.environ or not checkpoint.last_path(run_dir).exists():
        return False
    status = read_json(run_dir / STATUS_FILE) or {}
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


def hparam_value(text: str) -> Any:
    """An override's value as TensorBoard's HParams wants it: a number when it is one."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text


def override_values(overrides: list[str]) -> dict[str, str]:
    """['loss=hinge', '+a.b=1'] -> {'loss': 'hinge', 'a.b': '1'}"""
    pairs = (override.split("=", 1) for override in overrides if "=" in override)
    return {key.lstrip("+~"): value for key, value in pairs}


def write_hparams(run_dir: Path, hparams: dict[str, Any], metrics: dict[str, Optional[float]], step: int) -> None:
    """The job's swept values and final metrics for TensorBoard's HParams view, as one more event
    file in run_dir/tb beside its scalars (so `tensorboard --logdir <sweep dir>` compares the jobs)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    metrics = {f"hparams/{name}": value for name, value in metrics.items() if value is not None and not math.isnan(value)}
    with SummaryWriter(log_dir=str(Path(run_dir) / "tb")) as writer:
        for summary in hparams_summaries(hparams, metrics):  # experiment, session start, session end
            writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            writer.add_scalar(name, value, step)


# ---------------------------------------------------------------- the sweep


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Run directories under a sweep directory: those with Hydra's .hydra/overrides.yaml."""
    found = [path.parent.parent for path in sweep_dir.rglob(".hydra/overrides.yaml")]
    return sorted(path for path in found if path != sweep_dir and ".submitit" not in path.parts)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_job(run_dir: Path) -> dict[str, Any]:
    """One row of the summary from a run directory's status.json and summary.json."""
    status = read_json(run_dir / STATUS_FILE) or {}
    summary = status.get("summary") or read_json(run_dir / "summary.json") or {}
    state = status.get("status")
    if state is None:  # a job from before status.json, or one that never reached ganctl's code
        state = "finished" if (run_dir / "summary.json").exists() else "unknown"
    if state == "running" and status.get("host") == socket.gethostname() and not process_alive(status.get("pid", -1)):
        state = "interrupted"  # killed without a chance to say so (SIGKILL, out of memory, power)
    overrides = status.get("overrides")
    if overrides is None:
        overrides = list(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    losses = summary.get("losses") or {}
    return {
        "job": status.get("job", run_dir.name),
        "values": override_values(overrides),
        "status": state,
        "detail": detail(status),
        "objective": status.get("objective"),
        "objective_source": status.get("objective_source", ""),
        "d_loss": losses.get("d_loss"),
        "g_loss": losses.get("g_loss"),
        "images_per_second": summary.get("images_per_second"),
        "wall_seconds": summary.get("wall_seconds"),
        "steps": summary.get("steps", status.get("step")),
        "run_dir": str(run_dir),
        "loss": summary.get("loss"),  # the loss option, which sets the scale of the proxy objectives
        "signal": status.get("signal"),
        "parent": parent_of(summary),
    }


def parent_of(summary: dict[str, Any]) -> str:
    """A fine-tuned job's nearest parent from its summary's lineage (`ganctl.finetune`), with how many
    more generations lie behind it; "" for a job trained from scratch."""
    parents = (summary.get("lineage") or {}).get("parents") or []
    if not parents:
        return ""
    nearest = parents[0]
    more = f" (+{len(parents) - 1} before it)" if len(parents) > 1 else ""
    return f"{nearest.get('path')} step {nearest.get('step')}{more}"


def detail(status: dict[str, Any]) -> str:
    """What the status alone does not say: the error, the signal, how often it was requeued."""
    parts = [status["error"]] if status.get("error") else []
    if status.get("signal") and status.get("status") in ("interrupted", "requeued"):
        parts.append(f"{status['signal']} after step {status.get('step')}")
    if status.get("status") == "pruned":
        parts.append(f"after step {status.get('step')}; last.pt kept")
    if status.get("requeues"):
        parts.append(f"requeued {status['requeues']}x")
    return "; ".join(parts)


def read_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise GanctlError(f"Sweep directory not found: {sweep_dir}. Pass the hydra.sweep.dir of a `ganctl train -m` run.")
    if (sweep_dir / ".hydra" / "overrides.yaml").exists() and not (sweep_dir / SWEEP_FILE).exists():
        raise GanctlError(
            f"{sweep_dir} is the directory of a single run, not of a sweep. `ganctl summary` reads the "
            f"directory a `ganctl train -m` run writes its jobs into (hydra.sweep.dir, by default multirun/<date>/<time>)."
        )
    swept = swept_in(sweep_dir)
    if swept is None and not (sweep_dir / "multirun.yaml").exists():
        raise GanctlError(
            f"{sweep_dir} is not a ganctl sweep directory (it has no {SWEEP_FILE} or multirun.yaml). Pass the "
            f"directory a `ganctl train -m` run writes its jobs into (hydra.sweep.dir, by default multirun/<date>/<time>)."
        )
    rows = [read_job(run_dir) for run_dir in job_dirs(sweep_dir)]
    swept = varying_keys(rows) if swept is None else swept
    for row in rows:
        row["values"] = {key: row["values"].get(key, "") for key in swept}
    return sorted(rows, key=lambda row: (int(row["job"]) if str(row["job"]).isdigit() else math.inf, row["run_dir"]))


def varying_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Without sweep.json (a sweep from an older ganctl): the overrides whose values differ."""
    keys = list(dict.fromkeys(key for row in rows for key in row["values"]))
    return [key for key in keys if len({row["values"].get(key) for row in rows}) > 1]


COLUMNS = ["job", "status", "objective", "objective_source", "d_loss", "g_loss", "images_per_second", "wall_seconds", "steps", "run_dir"]


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with the swept values as columns, status and its detail in one cell."""
    status = f"{row['status']}: {row['detail']}" if row["detail"] else row["status"]
    return {**{key: value for key, value in row["values"].items()}, **{key: row[key] for key in COLUMNS}, "status": status}


def number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def plain(value: Any, decimals: int = 0) -> str:
    """A rate or a duration as people write it: 2780, not 2.78e+03."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return ""
    return f"{value:.{decimals}f}"


PLAIN_COLUMNS = {"images_per_second": 0, "wall_seconds": 1}


def write_tables(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    """summary.csv (every number at full precision) and summary.md (rounded, for reading)."""
    flat_rows = [flat(row) for row in rows]
    header = list(flat_rows[0]) if flat_rows else COLUMNS
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=header)
    writer.writeheader()
    writer.writerows({key: ("" if value is None else value) for key, value in row.items()} for row in flat_rows)
    write_text(sweep_dir / SUMMARY_CSV, table.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in flat_rows:
        cells = ((plain(row[key], PLAIN_COLUMNS[key]) if key in PLAIN_COLUMNS else number(row[key])).replace("|", "\\|")
                 for key in header)
        lines.append("| " + " | ".join(cells) + " |")
    write_text(sweep_dir / SUMMARY_MD, f"# Sweep {sweep_dir}\n\n" + "\n".join(lines) + "\n")


def print_table(sweep_dir: Path, rows: list[dict[str, Any]], console: Console) -> None:
    swept = list(rows[0]["values"]) if rows else []
    if not console.is_terminal:
        console.width = 160  # a log file or pipe: no terminal to fit, keep one line per job
    table = Table(title=f"sweep {sweep_dir}", title_justify="left")
    fine_tuned = any(row.get("parent") for row in rows)  # a column for the parents only when a job has one
    for name in ["job", *swept, "status", "objective", "d_loss", "g_loss", "img/s", "wall s", "run dir",
                 *(["fine-tuned from"] if fine_tuned else [])]:
        wraps = name in ("status", "run dir", "fine-tuned from")
        table.add_column(name, overflow="fold", no_wrap=not wraps, min_width=12 if name == "status" else None)
    colour = {"finished": "green", "pruned": "magenta", "failed": "red", "interrupted": "yellow", "requeued": "yellow", "running": "cyan"}
    for row in rows:
        # Errors and swept values are plain text (a gloo error names "[.../pair.cc:561]"), not markup.
        status = f"[{colour.get(row['status'], 'white')}]{row['status']}[/]" + (f": {escape(row['detail'])}" if row["detail"] else "")
        run_dir = Path(row["run_dir"])
        table.add_row(
            str(row["job"]), *(escape(row["values"][key]) for key in swept), status, number(row["objective"]),
            number(row["d_loss"]), number(row["g_loss"]), plain(row["images_per_second"]),
            plain(row["wall_seconds"], 1), str(run_dir.relative_to(sweep_dir) if run_dir.is_relative_to(sweep_dir) else run_dir),
            *([escape(row.get("parent") or "")] if fine_tuned else []),
        )
    console.print(table)
    counts = {state: sum(row["status"] == state for row in rows) for state in colour}
    sources = sorted({row["objective_source"].split("@")[0] for row in rows if row["objective_source"]})
    losses = sorted({row["loss"] for row in rows if row.get("loss") and row["objective_source"].split("@")[0] in PROXIES})
    ranking = "(lower is better)"
    if len(losses) > 1:  # a proxy on the scale of each job's loss: no ranking across them
        ranking = (f"(not comparable across this sweep's losses, {', '.join(losses)}, whose scores are on different "
                   f"scales: compare those jobs by FID, train.eval_every=N)")
    console.print(
        (", ".join(f"{count} {state}" for state, count in counts.items() if count) or "no jobs yet")
        + (f"; objective: {', '.join(sources)} {ranking}" if sources else "")
        + f"; run dirs under {sweep_dir}"
    )


USAGE = """usage: ganctl summary <sweep dir>

Print the table of a sweep's jobs (`ganctl train -m ...`): swept values, status, objective, final
losses, images/s, wall time and run directory. Works while the sweep runs and after it was cut off.
"""


def main(args: list[str]) -> int:
    """`ganctl summary <sweep dir>`"""
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args and args[0] in ("-h", "--help") else 2
    sweep_dir = Path(args[0]).expanduser()
    print_table(sweep_dir, read_sweep(sweep_dir), Console())
    print_study(sweep_dir, Console())
    return 0


def print_study(sweep_dir: Path, console: Console) -> None:
    """An Optuna search's study as its storage holds it: the trials by state and the best one so far
    (the same study `optuna-dashboard <storage>` opens)."""
    record = search.study_record(sweep_dir)
    if record is None:
        return
    try:
        from optuna.trial import TrialState

        study = search.load_study(record)
        trials = study.get_trials(deepcopy=False)
    except Exception as error:  # the database is gone, optuna is not installed here
        console.print(f"Optuna study {record['study_name']!r} in {record['storage']}: not readable ({type(error).__name__}: {str(error)[:200]})")
        return
    states = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    counts = ", ".join(f"{n} {state.name.lower()}" for state in states if (n := sum(t.state == state for t in trials)))
    done = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = ""
    if done:
        top = study.best_trial
        best = f"; best {top.value:.6g} (trial {top.number}: {', '.join(f'{k}={v}' for k, v in top.params.items())})"
    console.print(f"Optuna study {record['study_name']!r} in {record['storage']}: {counts or 'no trials'}{best}", markup=False)

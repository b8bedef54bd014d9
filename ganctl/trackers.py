"""Where a run's numbers and pictures go besides the terminal: the `logger` config group
(conf/logger/), any of TensorBoard (the default), MLflow, Weights & Biases and a CSV file, several at
once (`logger=[tensorboard,mlflow]`). Every tracker gets the same calls from `ganctl.logger.RunLogger`:

    start(run, earlier) -> ids   open the run (or reopen the run of `earlier`, a resumed run's ids)
    log(values, step)            statistics by name (`loss/d`, `d/real`, ...) and metric cards (`metrics/fid`)
    image(tag, grid, step)       the fixed-latent grid, (C, H, W) floats in [0, 1]
    artifact(path, folder)       a file to keep with the run: curves.png, the final checkpoint
    end(status)                  finished | failed | killed

Each run directory records its trackers' run ids in `trackers.json`, so a resumed run reopens the
same MLflow run and the same W&B run id, and a run started from another run's checkpoint (a branch, a
fine-tune) names that run's ids as its source. A sweep's jobs find the sweep's MLflow parent run and
W&B group in `<sweep dir>/trackers.json`, written once by the first process of the sweep.

A tracker that cannot start is refused before training with one line (`GanctlError`). Once training
runs, each tracker works on a thread of its own (`Guarded`): a slow server never holds up a step, and
one that fails (server gone, disk full) warns once and is dropped while training and the other
trackers go on. No mlflow or wandb import here at module level: only the trackers chosen load them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Protocol

from ganctl.console import warn, word
from ganctl.errors import GanctlError
from ganctl.files import open_in_place, write_text

log = logging.getLogger("ganctl")

RECORD_FILE = "trackers.json"  # in a run directory: each tracker's run ids; in a sweep directory: the parent / group
STATUSES = ("finished", "failed", "killed")
END_TIMEOUT_SECONDS = 120.0  # how long the end of a run waits for a tracker to send what it still holds


@dataclass
class RunInfo:
    """What a tracker needs to know about the run it records."""

    run_dir: Path
    config: dict[str, Any]  # the resolved config, plain containers
    choices: dict[str, str]  # the chosen option of each config group (model=dcgan_r1, ...)
    start_step: int
    source: Optional[dict[str, Any]] = None  # a branch / fine-tune: {"run_dir", "checkpoint", "step", and its trackers' ids}
    sweep: Optional[dict[str, Any]] = None  # a sweep's job: {"dir", "job", and the sweep's trackers.json}
    name: str = ""  # how the run is called in a tracker's list of runs

    def tags(self) -> dict[str, str]:
        """What every tracker attaches to the run: the chosen options, and where it came from."""
        tags = {f"ganctl.{group}": str(option) for group, option in self.choices.items()}
        tags["ganctl.run_dir"] = str(self.run_dir)
        if self.source:
            tags["ganctl.source_run_dir"] = str(self.source["run_dir"])
            tags["ganctl.source_checkpoint"] = str(self.source["checkpoint"])
            tags["ganctl.source_step"] = str(self.source["step"])
        if self.sweep:
            tags["ganctl.sweep_dir"] = str(self.sweep["dir"])
            tags["ganctl.job"] = str(self.sweep["job"])
        return tags


class Tracker(Protocol):
    name: str

    def start(self, run: RunInfo, earlier: Optional[dict[str, Any]]) -> dict[str, Any]: ...

    def log(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, grid: Any, step: int) -> None: ...

    def artifact(self, path: Path, folder: str) -> None: ...

    def end(self, status: str) -> None: ...


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 4}} -> {"train.steps": 4}; lists as their text."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return flat


def finite(values: dict[str, float]) -> dict[str, float]:
    """The values a tracker can store (MLflow and W&B refuse NaN or infinite metrics in places)."""
    return {name: float(value) for name, value in values.items() if isinstance(value, (int, float)) and math.isfinite(value)}


# ---------------------------------------------------------------- the trackers


class TensorBoard:
    """TensorBoard event files in <run dir>/tb, which curves.png, `ganctl plot` and `ganctl report` read."""

    name = "tensorboard"

    def start(self, run: RunInfo, earlier: Optional[dict[str, Any]]) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops what was logged after its checkpoint's step, as TensorBoard draws it
        self.writer = SummaryWriter(log_dir=str(run.run_dir / "tb"), purge_step=run.start_step + 1)
        self.where = f"Follow it with: tensorboard --logdir {word(run.run_dir)}"
        return {}

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def image(self, tag: str, grid: Any, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def artifact(self, path: Path, folder: str) -> None:  # the files are in the run directory already
        pass

    def end(self, status: str) -> None:
        self.writer.close()


class CSV:
    """One file per run, <run dir>/metrics.csv, one row per value: step, name, value. Rows for steps
    after a resumed run's checkpoint (logged before it was stopped) are dropped when it resumes."""

    name = "csv"
    HEADER = "step,name,value\n"

    def __init__(self, file: str = "metrics.csv") -> None:
        if not file or Path(file).name != file:
            raise GanctlError(f"logger.csv.file names a file in the run directory (e.g. metrics.csv), got {file!r}.")
        self.file = file

    def start(self, run: RunInfo, earlier: Optional[dict[str, Any]]) -> dict[str, Any]:
        self.path = run.run_dir / self.file
        kept = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines()[1:]:
                step = line.split(",", 1)[0]
                if step.isdigit() and int(step) <= run.start_step:
                    kept.append(line + "\n")
        write_text(self.path, self.HEADER + "".join(kept))
        self.handle = open(self.path, "a", encoding="utf-8")
        self.where = f"CSV: {self.path}"
        return {"file": str(self.path)}

    def log(self, values: dict[str, float], step: int) -> None:
        self.handle.write("".join(f"{step},{name},{value!r}\n" for name, value in values.items()))
        self.handle.flush()

    def image(self, tag: str, grid: Any, step: int) -> None:  # the grids are in samples/ already
        pass

    def artifact(self, path: Path, folder: str) -> None:
        pass

    def end(self, status: str) -> None:
        self.handle.close()


class MLflow:
    """An MLflow run: the resolved config as params (flattened: `train.steps`), the chosen options as
    tags, every statistic and metric card as metrics at their steps, the grids as images, curves.png
    and the final checkpoint as artifacts, the run's status. Without a tracking URI, a SQLite
    database `mlflow.db` and an artifact folder `mlartifacts/` in the run's parent directory (a
    sweep's directory, for its jobs), which `mlflow ui --backend-store-uri sqlite:///<that>/mlflow.db`
    shows with no server."""

    name = "mlflow"
    STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
    BATCH = 100  # MLflow takes at most 100 params (1,000 metrics) per call

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = "ganctl", run_name: Optional[str] = None,
                 log_checkpoints: bool = True, http_retries: int = 2, http_timeout_s: int = 15) -> None:
        if not experiment:
            raise GanctlError("logger.mlflow.experiment must name an experiment, e.g. ganctl.")
        if http_retries < 0 or http_timeout_s < 1:
            raise GanctlError("logger.mlflow.http_retries must be 0 or more and http_timeout_s at least 1.")
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.log_checkpoints, self.http_retries, self.http_timeout_s = log_checkpoints, http_retries, http_timeout_s

    def client(self, base: Path) -> tuple[Any, str, Optional[str]]:
        """A client of the tracking URI (the default: SQLite in `base`), the URI, and the artifact folder."""
        # A tracking server that is down: fail in seconds, not after MLflow's default minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_s))
        logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl SQLiteImpl" lines when a database is made
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        uri, artifacts = self.tracking_uri, None
        if uri is None:
            base.mkdir(parents=True, exist_ok=True)
            uri, artifacts = f"sqlite:///{base.resolve() / 'mlflow.db'}", (base.resolve() / "mlartifacts").as_uri()
        return MlflowClient(tracking_uri=uri), uri, artifacts

    def experiment_id(self, client: Any, artifacts: Optional[str]) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment, artifact_location=artifacts)
        except Exception:  # another job of the sweep made it first
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def start(self, run: RunInfo, earlier: Optional[dict[str, Any]]) -> dict[str, Any]:
        from mlflow.entities import Param, RunTag

        base = run.run_dir.parent if not run.sweep else Path(run.sweep["dir"])
        parent = (run.sweep or {}).get("mlflow") or {}
        self.client, uri, artifacts = self.client_for(parent.get("tracking_uri"), base)
        if earlier and earlier.get("tracking_uri") == uri:  # a resumed run: the same MLflow run goes on
            self.run_id = earlier["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            logged = set(self.client.get_run(self.run_id).data.params)
        else:
            tags = run.tags()
            if parent.get("run_id"):
                tags["mlflow.parentRunId"] = parent["run_id"]
            source = ((run.source or {}).get("trackers") or {}).get("mlflow") or {}
            if source.get("run_id"):
                tags["ganctl.source_mlflow_run_id"] = source["run_id"]
            created = self.client.create_run(self.experiment_id(self.client, artifacts), run_name=self.run_name or run.name, tags=tags)
            self.run_id, logged = created.info.run_id, set()
        # MLflow keeps a param's first value: a resumed run adds what is new (a changed schedule shows in its tags)
        params = [Param(key, str(value)[:6000]) for key, value in flatten(run.config).items() if key not in logged]
        for first in range(0, len(params), self.BATCH):
            self.client.log_batch(self.run_id, params=params[first:first + self.BATCH])
        if logged:
            self.client.log_batch(self.run_id, tags=[RunTag("ganctl.resumed_at_step", str(run.start_step)),
                                                     RunTag("ganctl.train.steps", str(run.config["train"]["steps"]))])
        self.where = f"MLflow: mlflow ui --backend-store-uri {word(uri)}  (experiment {self.experiment}, run {self.run_id})"
        return {"tracking_uri": uri, "run_id": self.run_id, "experiment": self.experiment}

    def client_for(self, uri: Optional[str], base: Path) -> tuple[Any, str, Optional[str]]:
        """The sweep's tracking URI for its jobs (the parent run lives there), else this logger's own."""
        if uri is None or uri == self.tracking_uri:
            return self.client(base)
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri), uri, None

    def log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value in finite(values).items()]
        for first in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[first:first + 1000])

    def image(self, tag: str, grid: Any, step: int) -> None:
        self.client.log_image(self.run_id, image_array(grid), key=tag, step=step)

    def artifact(self, path: Path, folder: str) -> None:
        if folder == "checkpoints" and not self.log_checkpoints:
            return
        self.client.log_artifact(self.run_id, str(path), folder)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, self.STATUS[status])


class WandB:
    """A Weights & Biases run with the same content as MLflow's. Offline unless this machine is logged
    in (`wandb login`, or WANDB_API_KEY): its files go into <run dir>/wandb, for `wandb sync` later.
    Charts use the training step as their x axis (`step`), so a resumed run that logs a step again
    (after its checkpoint) is drawn where it belongs instead of being dropped by W&B's own counter."""

    name = "wandb"
    EXIT_CODES = {"finished": 0, "failed": 1, "killed": 130}
    MODES = ("auto", "online", "offline", "disabled")

    def __init__(self, project: str = "ganctl", entity: Optional[str] = None, mode: str = "auto",
                 log_checkpoints: bool = False, init_timeout_s: int = 90) -> None:
        if mode not in self.MODES:
            raise GanctlError(f"logger.wandb.mode must be one of {', '.join(self.MODES)}, got {mode!r}.")
        if not project:
            raise GanctlError("logger.wandb.project must name a project, e.g. ganctl.")
        self.project, self.entity, self.mode, self.log_checkpoints = project, entity, mode, log_checkpoints
        self.init_timeout_s = init_timeout_s

    def chosen_mode(self) -> str:
        """`auto`: W&B's own WANDB_MODE when set, online when this machine has credentials, else offline."""
        if self.mode != "auto":
            return self.mode
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        return "online" if logged_in() else "offline"

    def start(self, run: RunInfo, earlier: Optional[dict[str, Any]]) -> dict[str, Any]:
        import wandb

        run_id = (earlier or {}).get("id") or uuid.uuid4().hex[:12]
        group = ((run.sweep or {}).get("wandb") or {}).get("group")
        mode = self.chosen_mode()
        config = {**run.config, "ganctl": {"choices": run.choices, **({"source": run.source} if run.source else {})}}
        self.run = wandb.init(
            project=self.project, entity=self.entity, dir=str(run.run_dir), id=run_id, resume="allow", mode=mode,
            name=run.name or None, group=group, job_type="trial" if run.sweep else "train", config=config,
            tags=[f"{group}={option}" for group, option in run.choices.items()], allow_val_change=True,
            settings=wandb.Settings(init_timeout=self.init_timeout_s, silent=True, console="off"),
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        self.where = (f"W&B (offline): wandb sync {word(run.run_dir / 'wandb')}  (run {run_id})" if mode == "offline"
                      else f"W&B: {self.run.url}" if mode == "online" else "")
        return {"id": run_id, "project": self.project, "mode": mode}

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log({**finite(values), "step": step})

    def image(self, tag: str, grid: Any, step: int) -> None:
        import wandb

        self.run.log({tag: wandb.Image(image_array(grid)), "step": step})

    def artifact(self, path: Path, folder: str) -> None:
        if folder == "checkpoints" and not self.log_checkpoints:
            return
        import wandb

        kind = "model" if folder == "checkpoints" else "plots"
        artifact = wandb.Artifact(f"{self.run.id}-{Path(path).stem}", type=kind)
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def end(self, status: str) -> None:
        self.run.summary["ganctl_status"] = status
        self.run.finish(exit_code=self.EXIT_CODES[status])


def logged_in() -> bool:
    """Whether W&B has credentials on this machine: WANDB_API_KEY, or `wandb login`'s netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def image_array(grid: Any) -> Any:
    """A (C, H, W) float grid in [0, 1] as the (H, W, C) uint8 array MLflow and W&B take."""
    array = (grid.detach().float().clamp(0, 1) * 255).round().byte().cpu()  # (C, H, W)
    array = array.permute(1, 2, 0).numpy()  # (H, W, C)
    return array[..., 0] if array.shape[-1] == 1 else array


# ---------------------------------------------------------------- failure isolation


class Guarded:
    """A tracker behind a queue and a thread of its own (or called in place, `threaded=False`). The
    first error it raises is one warning, and from then on the tracker is left out: training never
    waits on it and never stops because of it."""

    def __init__(self, tracker: Tracker, threaded: bool = True) -> None:
        self.tracker, self.name = tracker, tracker.name
        self.broken = False
        self.where = getattr(tracker, "where", "")
        self.calls: Optional[queue.Queue] = queue.Queue() if threaded else None
        if self.calls is not None:
            self.thread = threading.Thread(target=self.work, name=f"ganctl-{self.name}", daemon=True)
            self.thread.start()

    def call(self, method: str, *args: Any) -> None:
        if self.broken:
            return
        if self.calls is not None:
            self.calls.put((method, args))
        else:
            self.run(method, args)

    def run(self, method: str, args: tuple) -> None:
        if self.broken:
            return
        try:
            getattr(self.tracker, method)(*args)
        except Exception as error:  # any failure of the tracker: training goes on without it
            self.broken = True
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            warn(f"The {self.name} logger failed ({type(error).__name__}: {reason}); training goes on without it, "
                 "with the other loggers. What it recorded until now is kept.")

    def work(self) -> None:
        assert self.calls is not None
        while True:
            item = self.calls.get()
            if item is None:
                return
            self.run(*item)

    def end(self, status: str, timeout: float = END_TIMEOUT_SECONDS) -> None:
        """Send what is queued and end the tracker's run, waiting at most `timeout` seconds for it."""
        self.call("end", status)
        if self.calls is None:
            return
        self.calls.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.broken = True
            warn(f"The {self.name} logger did not finish sending within {timeout:.0f} s; the run's own files are complete.")


# ---------------------------------------------------------------- opening the trackers of a run


def read_record(directory: Path) -> dict[str, Any]:
    try:
        record = json.loads((Path(directory) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def source_of(run_dir: Path, start_step: int) -> Optional[dict[str, Any]]:
    """The run this one started from when it is a branch or fine-tune (`resume=` of another run's
    checkpoint, Hydra's record of the command in .hydra/config.yaml): its directory, checkpoint, step
    and trackers' ids."""
    from omegaconf import OmegaConf

    try:
        resume = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml").get("resume")
    except Exception:  # no Hydra record (a run started from Python)
        return None
    if resume in (None, "", "null"):
        return None
    path = Path(str(resume)).expanduser().resolve()
    source_dir = path.parent.parent if path.is_file() and path.parent.name == "checkpoints" else path
    if source_dir == Path(run_dir).resolve():
        return None  # it resumes its own run
    return {"run_dir": str(source_dir), "checkpoint": str(path), "step": start_step, "trackers": read_record(source_dir)}


def sweep_of() -> Optional[dict[str, Any]]:
    """A sweep's job: the sweep directory, the job's number and the sweep's trackers.json (None outside a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(hydra_cfg.sweep.dir)
    from omegaconf import OmegaConf

    job = OmegaConf.select(hydra_cfg, "sweeper.trial", default=None)
    job = hydra_cfg.job.num if job is None else job
    return {"dir": str(sweep_dir.resolve()), "job": job, **read_record(sweep_dir)}


def build_trackers(logger_cfg: Any) -> list[Tracker]:
    """The trackers the config's `logger` block names, built from their settings (ganctl.registry)."""
    from ganctl import registry

    return [registry.build(node, f"logger.{name}") for name, node in (logger_cfg or {}).items() if node is not None]


def open_trackers(cfg: Any, run_dir: Path, choices: dict[str, str], start_step: int) -> list[Guarded]:
    """Start every tracker of the config for this run (reopening those of a resumed run), record their
    ids in trackers.json, and hand them back guarded. A tracker that cannot start is one GanctlError,
    after the others that did are closed again."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(run_dir)
    sweep = sweep_of()
    name = f"{Path(sweep['dir']).name}/{run_dir.name}" if sweep else f"{run_dir.parent.name}/{run_dir.name}"
    run = RunInfo(run_dir, config, dict(choices), start_step, source_of(run_dir, start_step), sweep, name)
    earlier = read_record(run_dir) if start_step > 0 else {}
    started: list[Guarded] = []
    record: dict[str, Any] = {}
    # The trackers that reach outside first: one that cannot start refuses the run before any file of it is written.
    for tracker in sorted(build_trackers(cfg.get("logger")), key=lambda tracker: tracker.name in ("tensorboard", "csv")):
        try:
            record[tracker.name] = tracker.start(run, earlier.get(tracker.name))
        except GanctlError:
            close_all(started, "failed")
            raise
        except Exception as error:  # unreachable, misconfigured: before training, in one line
            close_all(started, "failed")
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:400]
            raise GanctlError(f"The {tracker.name} logger cannot start ({type(error).__name__}: {reason}). Fix "
                              f"logger.{tracker.name} (docs/trackers.md), or leave it out: logger=tensorboard.") from None
        started.append(Guarded(tracker, threaded=tracker.name != "tensorboard"))
    if any(record.values()):
        write_text(run_dir / RECORD_FILE, json.dumps({**earlier, **record}, indent=2) + "\n")
    return started


def close_all(trackers: list[Guarded], status: str) -> None:
    for tracker in trackers:
        tracker.end(status)


# ---------------------------------------------------------------- a sweep's parent run and group


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One process of a sweep at a time (several workers may start one sweep together)."""
    import fcntl

    sweep_dir.mkdir(parents=True, exist_ok=True)
    descriptor = open_in_place(sweep_dir / ".trackers.lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def start_sweep(cfg: Any, sweep_dir: Path, command: list[str]) -> None:
    """A sweep's MLflow parent run and W&B group, made once for every worker of the sweep and recorded
    in <sweep dir>/trackers.json, where its jobs find them. A tracker that cannot start: one line."""
    logger_cfg = cfg.get("logger") or {}
    if "mlflow" not in logger_cfg and "wandb" not in logger_cfg:
        return
    with sweep_lock(sweep_dir):
        record = read_record(sweep_dir)
        if "wandb" in logger_cfg and "wandb" not in record:
            record["wandb"] = {"group": f"{sweep_dir.name}-{uuid.uuid4().hex[:8]}"}
        if "mlflow" in logger_cfg and "mlflow" not in record:
            mlflow = next(tracker for tracker in build_trackers({"mlflow": logger_cfg["mlflow"]}))
            try:
                client, uri, artifacts = mlflow.client(sweep_dir)
                parent = client.create_run(mlflow.experiment_id(client, artifacts), run_name=f"sweep {sweep_dir.name}",
                                           tags={"ganctl.sweep_dir": str(sweep_dir.resolve()), "ganctl.command": " ".join(command)})
            except Exception as error:
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:400]
                raise GanctlError(f"The mlflow logger cannot start the sweep's parent run ({type(error).__name__}: {reason}). "
                                  "Fix logger.mlflow (docs/trackers.md), or leave it out: logger=tensorboard.") from None
            record["mlflow"] = {"tracking_uri": uri, "run_id": parent.info.run_id, "host": socket.gethostname()}
        write_text(sweep_dir / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def end_sweep(sweep_dir: Path, failed: bool) -> None:
    """The parent run's status and the summary table as its artifact, when a sweep ends (never fails the sweep)."""
    parent = read_record(sweep_dir).get("mlflow")
    if not parent:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=parent["tracking_uri"])
        for name in ("summary.csv", "summary.md"):
            if (sweep_dir / name).is_file():
                client.log_artifact(parent["run_id"], str(sweep_dir / name))
        client.set_terminated(parent["run_id"], "FAILED" if failed else "FINISHED")
    except Exception as error:
        warn(f"The mlflow logger could not close the sweep's parent run: {type(error).__name__}: {str(error)[:200]}")


"""ganctl's Optuna sweeper (`hydra/sweeper=optuna`, conf/hydra/sweeper/optuna.yaml), on current Optuna.

hydra-optuna-sweeper pins optuna<3 (2021), so pip cannot install it beside today's Optuna; this
sweeper takes the same config keys and search-space syntax, and adds what a GAN search needs:

- the study lives in a storage (SQLite in the sweep directory by default, any SQLAlchemy URL, or an
  Optuna journal file), and running the same command again continues it: `n_trials` counts the
  study's trials, not this process's;
- several workers (joblib's jobs, SLURM array jobs, or the same command started on several machines)
  share the study: each asks it for its next trials under a lock of the sweep directory, and each
  trial trains in `<sweep dir>/<trial number>`, so no trial is asked twice or lost;
- trials report to the study as they train and stop when its pruner says so (ganctl.search); a
  trial whose job died (killed, machine lost) is marked failed and, with `retry_died`, tried again
  from its last checkpoint.

Hydra takes sweepers from the hydra_plugins package only. No optuna import at module level: Hydra
imports every plugin for every `ganctl train`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("ganctl")


def without_the_old_plugin_configs() -> None:
    """hydra-optuna-sweeper, when still installed in an environment, registers configs by the names
    of ganctl's (hydra/sweeper/optuna and its samplers), which Hydra would take as their schema and
    refuse ("the automatically matched schema contains a defaults list"): they are dropped."""
    from hydra.core.config_store import ConfigStore

    sweeper = ConfigStore.instance().repo.get("hydra", {}).get("sweeper", {})
    for group in (sweeper, sweeper.get("sampler", {})):
        for name, node in list(group.items()):
            if getattr(node, "provider", None) == "optuna_sweeper":
                del group[name]


class GanctlOptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: str = "minimize", storage: Optional[str] = None, study_name: str = "ganctl",
                 n_trials: int = 20, n_jobs: int = 1, params: Optional[dict[str, str]] = None, pruner: Any = None,
                 retry_died: int = 1, trial: Optional[int] = None, **unused: Any) -> None:
        from ganctl.errors import GanctlError

        if direction not in ("minimize", "maximize"):
            raise GanctlError(f"hydra.sweeper.direction must be minimize or maximize, got {direction!r}.")
        if n_trials < 1 or n_jobs < 1 or retry_died < 0:
            raise GanctlError("hydra.sweeper.n_trials and n_jobs must be at least 1, and retry_died 0 or more.")
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.direction, self.storage, self.study_name = direction, storage, study_name
        self.n_trials, self.n_jobs, self.retry_died = n_trials, n_jobs, retry_died
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from ganctl import search
        from ganctl.console import console, print_error
        from ganctl.errors import GanctlError

        assert self.config is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            space, fixed = search.parse_space([*arguments, *(f"{key}={value}" for key, value in self.params.items())])
            study, url = self.open_study(sweep_dir, space)
        except GanctlError as error:
            print_error(error)
            raise SystemExit(1) from None
        console.print(f"Optuna study {self.study_name!r} in {url}: {self.count(study)} of {self.n_trials} trials there already")
        self.settle_dead(study, sweep_dir)
        while True:
            trials = self.next_trials(study, space, sweep_dir)
            if not trials:
                break
            overrides = [self.job_overrides(trial, fixed, sweep_dir) for trial in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            if self.settle_launched(study, trials, sweep_dir):  # its jobs were stopped (Ctrl-C): no more trials
                return None
        return self.results(study, sweep_dir)

    # ------------------------------------------------------------ the study

    def open_study(self, sweep_dir: Path, space: dict[str, Any]) -> tuple[Any, str]:
        import optuna

        from ganctl import search

        url = search.storage_url(self.storage, sweep_dir)
        # Hydra built the sampler as a partial (ganctl.registry checked what it names) and the pruner.
        grid = {"search_space": search.grid_of(space)} if getattr(self.sampler_cfg, "func", None) is optuna.samplers.GridSampler else {}
        with search.sweep_lock(sweep_dir):  # workers started together create the study once
            study = optuna.create_study(study_name=self.study_name, storage=search.open_storage(url), sampler=self.sampler_cfg(**grid),
                                        pruner=self.pruner_cfg, direction=self.direction, load_if_exists=True)
            search.write_study_record(sweep_dir, url, self.study_name)
            earlier = len(study.get_trials(deepcopy=False))
        seed = self.sampler_cfg.keywords.get("seed")
        if earlier and seed is not None:  # a seeded sampler of a continued study: not the first trials' draws again
            study.sampler = self.sampler_cfg(**grid, seed=seed + earlier)
        return study, url

    @staticmethod
    def retried(trials: list[Any]) -> set[int]:
        return {trial.user_attrs["retry_of"] for trial in trials if "retry_of" in trial.user_attrs}

    def count(self, study: Any) -> int:
        """The study's trials against n_trials: all of them, but a failed one that a retry replaces."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        retried = self.retried(trials)
        return sum(1 for trial in trials if not (trial.state == TrialState.FAIL and trial.number in retried))

    def next_trials(self, study: Any, space: dict[str, Any], sweep_dir: Path) -> list[Any]:
        """Up to n_jobs trials for this worker: retries waiting in the study first, then new ones
        while the study holds fewer than n_trials (counted under the sweep's lock, so that
        workers asking at once never overshoot)."""
        from optuna.trial import TrialState

        from ganctl import search

        with search.sweep_lock(sweep_dir):
            waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            room = min(self.n_jobs, self.n_trials - self.count(study) + waiting)
            trials = [study.ask(space) for _ in range(max(0, room))]
            for trial in trials:
                trial.set_user_attr("worker", search.worker())
                trial.set_user_attr("run_dir", str((sweep_dir / str(trial.number)).resolve()))
        return trials

    def job_overrides(self, trial: Any, fixed: dict[str, str], sweep_dir: Path) -> list[str]:
        """A trial's job: the fixed overrides, its parameters, its own run directory (its number), and
        for a retry, the checkpoint of the trial it retries to start from."""
        from ganctl import rundir, search

        overrides = [f"{key}={value}" for key, value in fixed.items()]
        overrides += [f"{key}={search.override_value(value)}" for key, value in trial.params.items()]
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is not None and rundir.last_path(sweep_dir / str(retry_of)).exists():
            overrides.append(f"resume={(sweep_dir / str(retry_of)).resolve()}")
        return [*overrides, f"hydra.sweep.subdir={trial.number}", f"hydra.sweeper.trial={trial.number}"]

    # ------------------------------------------------------------ trials whose job ended without telling

    def settle_dead(self, study: Any, sweep_dir: Path) -> None:
        """The study's running trials whose job is gone: told as their status.json says when it ended
        (finished, pruned, failed), else failed, and retried from their last checkpoint up to
        `retry_died` times. Trials of live workers (their run directory's lock is held, or they run
        on another machine) are left alone."""
        from optuna.trial import TrialState

        from ganctl import search

        with search.sweep_lock(sweep_dir):
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                verdict = job_verdict(trial, sweep_dir / str(trial.number))
                if verdict is None:
                    continue
                outcome, value = verdict
                state = {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(outcome, TrialState.FAIL)
                study.tell(trial.number, values=[value] if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True)
                if state == TrialState.FAIL and outcome == "died":
                    self.retry(study, trial)

    def retry(self, study: Any, trial: Any) -> None:
        from ganctl.console import console

        retries = int(trial.user_attrs.get("retries", 0))
        if retries >= self.retry_died:
            console.print(f"Trial {trial.number}'s job died; marked failed (retry_died={self.retry_died}: not retried)")
            return
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number, "retries": retries + 1})
        console.print(f"Trial {trial.number}'s job died; marked failed and queued again with the same parameters, "
                      "from its last checkpoint")

    def settle_launched(self, study: Any, trials: list[Any], sweep_dir: Path) -> bool:
        """After a batch: a trial its job left running although the job returned is told what its
        status.json says; whether the batch was stopped by a signal (the sweep stops too)."""
        from optuna.trial import TrialState

        stopped = False
        for trial in trials:
            frozen = study.get_trials(deepcopy=False)[trial.number]
            if frozen.state != TrialState.RUNNING:
                continue
            status = read_status(sweep_dir / str(trial.number))
            if status.get("status") in ("interrupted", "requeued", "running"):
                stopped = stopped or status.get("status") == "interrupted"
                continue  # a later run of the sweep settles it
            verdict = job_verdict(frozen, sweep_dir / str(trial.number), own=True) or ("failed", None)
            state = {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(verdict[0], TrialState.FAIL)
            study.tell(trial.number, values=[verdict[1]] if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True)
        return stopped

    # ------------------------------------------------------------ the end

    def results(self, study: Any, sweep_dir: Path) -> Any:
        from optuna.trial import TrialState

        from ganctl.console import console, print_error

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
                  for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
        console.print("Optuna study: " + ", ".join(f"{count} {name}" for name, count in counts.items() if count))
        if not done:
            print_error("Every trial of the Optuna sweep failed or was pruned, so it has no best value (no "
                        "optimization_results.yaml); the summary below says why each trial failed.")
            raise SystemExit(1)
        best = study.best_trial
        results = {"name": "optuna", "best_params": dict(best.params), "best_value": best.value, "best_trial": best.number,
                   "trials": counts}
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        console.print(f"Best: trial {best.number}, {best.value:.6g} with {best.params}")
        return results


def read_status(run_dir: Path) -> dict[str, Any]:
    from ganctl import sweep

    return sweep.read_json(run_dir / sweep.STATUS_FILE) or {}


def job_verdict(trial: Any, run_dir: Path, own: bool = False) -> Optional[tuple[str, Optional[float]]]:
    """How a running trial's job ended, when it did: ("finished", objective), ("pruned", None),
    ("failed", None) as its status.json says, or ("died", None); None while it may still run (its
    run directory is locked, it is requeued, or its worker lives elsewhere)."""
    import math
    import socket

    from ganctl import sweep

    status = read_status(run_dir)
    state = status.get("status")
    if state == "finished":
        value = status.get("objective")
        return ("finished", float(value)) if isinstance(value, (int, float)) and math.isfinite(value) else ("failed", None)
    if state in ("pruned", "failed"):
        return state, None
    if own or state == "requeued":
        return None
    if state in ("interrupted", "running"):  # (its job took the lock before it wrote this)
        return None if rundir_locked(run_dir) else ("died", None)
    asked_by = trial.user_attrs.get("worker") or {}
    if asked_by.get("host") == socket.gethostname() and not sweep.process_alive(int(asked_by.get("pid", -1))):
        return "died", None  # asked for, never started, and its worker is gone
    return None


def rundir_locked(run_dir: Path) -> bool:
    """Whether a process holds the run directory's train.lock (it trains there now)."""
    import fcntl

    from ganctl import rundir

    path = run_dir / rundir.LOCK_FILE
    if not path.is_file():
        return False
    descriptor = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)

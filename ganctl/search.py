"""Optuna searches (`hydra/sweeper=optuna`): the study's storage, the search space read from the
command line's overrides, and each trial's side of the search -- the intermediate values it reports
as it trains, the pruner's verdict, and its outcome told to the study.

The sweeper (hydra_plugins/ganctl_sweeper) asks the study for trials and launches one job per trial,
in `<sweep dir>/<trial number>`; the job trains, reports, and tells the study how it ended
(complete with its objective, pruned, failed). A job that is stopped (Ctrl-C, a cluster's requeue)
leaves its trial running; a later run of the sweep finds a trial whose job died, marks it failed and
tries its parameters again from its last checkpoint (`retry_died`).

No optuna import at module level: ganctl.train imports this module for every run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import socket
from pathlib import Path
from typing import Any, Iterator, Optional

from ganctl.console import warn
from ganctl.errors import GanctlError
from ganctl.files import open_in_place, write_text

log = logging.getLogger("ganctl")

STUDY_FILE = "study.json"  # in the sweep directory: where the study is (storage, name), for `ganctl summary` and report
DEFAULT_DATABASE = "optuna.db"
JOURNAL = "journal:"  # storage=journal:<file>: Optuna's journal file, for a shared file system without a database server
PRUNED = "the pruner"  # how a pruned trial's run says it stopped: "Stopped by the pruner after step N"
PROXIES = {"d_gap", "g_loss", "d_loss"}  # objectives read from the logged statistics (ganctl.sweep.objective)


# ---------------------------------------------------------------- the study


def storage_url(storage: Optional[str], sweep_dir: Path) -> str:
    """The study's storage as written in the config, made explicit: null is SQLite in the sweep
    directory; a journal file's relative path is taken from the sweep directory too."""
    if storage in (None, "", "null"):
        return f"sqlite:///{Path(sweep_dir).resolve() / DEFAULT_DATABASE}"
    if storage.startswith(JOURNAL):
        path = Path(storage[len(JOURNAL):]).expanduser()
        return JOURNAL + str(path if path.is_absolute() else Path(sweep_dir).resolve() / path)
    return storage


@functools.lru_cache(maxsize=4)
def open_storage(url: str) -> Any:
    """Optuna's storage for a URL: a journal file, or any SQLAlchemy database (SQLite, PostgreSQL, MySQL).
    One per URL and process: the sweeper and the jobs it runs in its own process share it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if url.startswith(JOURNAL):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len(JOURNAL):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            # Workers of one sweep write the same file: wait for each other instead of failing after 5 s.
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # a bad URL, a server that does not answer, a missing driver
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise GanctlError(f"Cannot open the Optuna storage {url}: {type(error).__name__}: {reason}. Set "
                          "hydra.sweeper.storage to a database URL (sqlite:///study.db, postgresql://...) or "
                          "journal:<file> (docs/sweeps.md).") from None


def study_record(sweep_dir: Path) -> Optional[dict[str, Any]]:
    """{"storage": url, "study_name": name} of the sweep in `sweep_dir`, if it ran an Optuna study."""
    try:
        record = json.loads((Path(sweep_dir) / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("storage") and record.get("study_name") else None


def load_study(record: dict[str, Any], pruner: Any = None, storage: Any = None) -> Any:
    import optuna

    storage = storage or open_storage(record["storage"])
    try:
        return optuna.load_study(study_name=record["study_name"], storage=storage, pruner=pruner)
    except KeyError:
        raise GanctlError(f"The study {record['study_name']!r} is not in {record['storage']}.") from None


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One worker of a sweep at a time counts the study's trials and asks for new ones, so that
    workers started together never ask for more than n_trials (flock: one machine, or a shared file
    system that supports it, as NFSv4 does)."""
    import fcntl

    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    descriptor = open_in_place(Path(sweep_dir) / ".study.lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------- the search space


def parse_space(overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The command line's overrides as Optuna distributions (the swept keys) and fixed values:
    `choice(a, b)` categorical, `range(1, 8)` whole numbers 1..7, `interval(lo, hi)` uniform and
    `tag(log, interval(lo, hi))` log-uniform (whole numbers when both ends are)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed[key] = override.get_value_element_as_str()
            continue
        value = override.value()
        if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
            space[key] = CategoricalDistribution(choices)
        elif isinstance(value, RangeSweep):
            values = list(override.sweep_iterator(transformer=Transformer.encode))
            whole = all(isinstance(v, int) for v in (value.start, value.stop, value.step))
            space[key] = (IntDistribution(int(values[0]), int(values[-1]), step=int(value.step)) if whole and values
                          else CategoricalDistribution(values))
        elif isinstance(value, IntervalSweep):
            log_scale = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                space[key] = IntDistribution(value.start, value.end, log=log_scale)
            else:
                space[key] = FloatDistribution(float(value.start), float(value.end), log=log_scale)
        else:
            raise GanctlError(f"The Optuna sweeper cannot search {key}={override.get_value_element_as_str()}: use "
                              "choice(a, b), range(lo, hi) or interval(lo, hi), optionally tag(log, interval(lo, hi)).")
    return space, fixed


def grid_of(space: dict[str, Any]) -> dict[str, list[Any]]:
    """The values a grid search tries for each key: every choice, every whole number of a range."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid = {}
    for key, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            grid[key] = list(distribution.choices)
        elif isinstance(distribution, IntDistribution) and not distribution.log:
            grid[key] = list(range(distribution.low, distribution.high + 1, distribution.step))
        else:
            raise GanctlError(f"The grid sampler tries a list of values, but {key} is an interval: sweep it with "
                              f"choice(...) or range(...), or use another sampler (hydra/sweeper/sampler=tpe).")
    return grid


def override_value(value: Any) -> str:
    """A trial's parameter as an override's value (repr keeps a float's every digit)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------- a trial's job


def trial_of(hydra_cfg: Any) -> Optional[dict[str, Any]]:
    """The trial a sweep's job trains ({"number", "storage", "study_name", "objective"}), or None
    outside an Optuna search."""
    from omegaconf import OmegaConf

    if hydra_cfg is None:
        return None
    number = OmegaConf.select(hydra_cfg, "sweeper.trial", default=None)
    if number is None:
        return None
    sweep_dir = Path(hydra_cfg.sweep.dir)
    return {"number": int(number), "storage": storage_url(OmegaConf.select(hydra_cfg, "sweeper.storage"), sweep_dir),
            "study_name": hydra_cfg.sweeper.study_name,
            "objective": OmegaConf.select(hydra_cfg, "callbacks.sweep_summary.objective", default="fid"),
            "pruner": OmegaConf.select(hydra_cfg, "sweeper.pruner")}


def current_trial() -> Optional[dict[str, Any]]:
    from hydra.core.hydra_config import HydraConfig

    return trial_of(HydraConfig.get()) if HydraConfig.initialized() else None


def build_pruner(node: Any) -> Any:
    """The pruner hydra.sweeper.pruner names (ganctl.registry checked it): NopPruner when none."""
    import optuna

    from ganctl import registry

    settings = registry.plain(node) if node is not None else None
    if not settings:
        return optuna.pruners.NopPruner()
    registry.check_config(settings, "hydra.sweeper.pruner", {"": registry.PRUNERS}, prefix="hydra.sweeper.pruner")
    target = registry.resolve(settings["_target_"])
    try:
        return target(**{key: value for key, value in settings.items() if key != "_target_"})
    except (TypeError, ValueError) as error:
        raise GanctlError(f"Cannot build hydra.sweeper.pruner from its config: {error}") from None


class Reporter:
    """A trial's side of pruning: each evaluation of the sweep's objective (a metric card with
    train.eval_every, or the logged statistic of a proxy objective) is reported to the study at its
    step, and the study's pruner says whether the trial stops. A study that cannot be reached warns
    once and the trial trains on to its end without pruning."""

    def __init__(self, trial: Any, objective: str, measured: bool) -> None:
        self.trial, self.objective, self.measured = trial, objective, measured
        self.working = True

    def value(self, statistics: Optional[dict[str, float]], cards: Optional[list[dict[str, Any]]]) -> Optional[float]:
        """The objective as it stands now, from what just arrived (None: it does not measure it)."""
        if self.measured:  # a metric of the evaluations
            found = [card["value"] for card in cards or () if card.get("metric") == self.objective]
            return float(found[0]) if found else None
        if statistics is None:
            return None
        if self.objective == "g_loss" or self.objective == "d_loss":
            value = statistics.get("loss/g" if self.objective == "g_loss" else "loss/d")
            return None if value is None else float(value)
        real, fake = statistics.get("d/real"), statistics.get("d/fake")
        return None if real is None or fake is None else abs(real - fake)

    def prunes(self, step: int, statistics: Optional[dict[str, float]] = None,
               cards: Optional[list[dict[str, Any]]] = None) -> bool:
        value = self.value(statistics, cards)
        if value is None or not self.working:
            return False
        try:
            self.trial.report(value if math.isfinite(value) else math.inf, step)
            pruned = self.trial.should_prune()
        except Exception as error:  # the database went away: train on, unpruned
            self.working = False
            warn(f"Cannot report to the Optuna study ({type(error).__name__}: {str(error)[:200]}); this trial trains to its end.")
            return False
        if pruned:
            log.info("The pruner stops this trial at step %d (%s %.4g)", step, self.objective, value)
        return pruned


def pruning(cfg: Any) -> Optional[Reporter]:
    """The Reporter of this run when it is a trial of an Optuna search, else None."""
    trial = current_trial()
    if trial is None:
        return None
    import optuna

    storage = open_storage(trial["storage"])
    study = load_study(trial, pruner=build_pruner(trial["pruner"]), storage=storage)
    study_id = storage.get_study_id_from_name(trial["study_name"])
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial["number"])
    measured = trial["objective"] not in PROXIES and cfg.train.eval_every > 0
    objective = trial["objective"] if measured or trial["objective"] in PROXIES else "d_gap"  # as ganctl.sweep.objective falls back
    return Reporter(optuna.trial.Trial(study, trial_id), objective, measured)


def tell(hydra_cfg: Any, outcome: str, value: Optional[float] = None) -> None:
    """The job's outcome to its trial: `finished` with its objective (failed when it has none),
    `pruned`, or `failed`. A job that was stopped leaves its trial running (a later run of the sweep
    retries it). Never raises: the job's own record (status.json) stays the reference."""
    trial = trial_of(hydra_cfg)
    if trial is None:
        return
    from optuna.trial import TrialState

    state = {"finished": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}[outcome]
    if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
        state = TrialState.FAIL
    try:
        study = load_study(trial)
        frozen = study.get_trials(deepcopy=False)[trial["number"]]
        if frozen.state.is_finished():
            return
        study.tell(trial["number"], values=[value] if state == TrialState.COMPLETE else None, state=state,
                   skip_if_finished=True)
    except Exception as error:
        warn(f"Cannot tell the Optuna study how trial {trial['number']} ended ({type(error).__name__}: {str(error)[:200]}); "
             "the next run of the sweep reads it from the trial's status.json.")


def worker() -> dict[str, Any]:
    """Who asked for a trial: this host and process (a trial whose worker died is retried)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def write_study_record(sweep_dir: Path, url: str, study_name: str) -> None:
    path = Path(sweep_dir) / STUDY_FILE
    if study_record(sweep_dir) != {"storage": url, "study_name": study_name}:
        write_text(path, json.dumps({"storage": url, "study_name": study_name}, indent=2) + "\n")

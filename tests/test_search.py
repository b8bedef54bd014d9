"""Optuna searches on a real database (hydra/sweeper=optuna, ganctl's sweeper on current Optuna): a
killed sweep run again continues its study and retries the dead trial from its checkpoint; two
workers share one SQLite or journal study without losing or repeating a trial (and one MLflow parent
run, one W&B group); a pruned trial is pruned, not failed, and its checkpoint resumes. Real
subprocesses, tiny configs, CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganctl import checkpoint, search
from helpers import TINY, TINY_DCGAN, run_cli, train_in_process

SEARCH = [*TINY, *TINY_DCGAN, "train.sample_every=0", "hydra/sweeper=optuna", "optimizer.g.lr=tag(log, interval(1e-4, 1e-2))"]
ENV = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}  # tiny networks: more threads only contend


def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, **ENV, **(env or {})}
    full.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "ganctl", *args], cwd=cwd, env=full, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def study_of(sweep_dir: Path):
    record = search.study_record(sweep_dir)
    assert record is not None, "the sweep recorded no study"
    return search.load_study(record)


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_a_killed_sweep_run_again_continues_its_study_and_retries_the_dead_trial_from_its_checkpoint(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *SEARCH, "train.steps=40", "train.log_every=1", "train.ckpt_every=2", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={sweep_dir}"]
    process = start(args, tmp_path)
    deadline = time.monotonic() + 240
    while not checkpoint.last_path(sweep_dir / "1").exists():  # trial 0 finished, trial 1 has a checkpoint
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole sweep dies at once: no handler runs
    process.wait()
    first = study_of(sweep_dir).get_trials()
    assert [trial.state for trial in first] == [TrialState.COMPLETE, TrialState.RUNNING]
    stopped_at = checkpoint.load(checkpoint.last_path(sweep_dir / "1"))["step"]
    kept = (sweep_dir / "0" / "status.json").read_bytes()

    again = run_cli(*args, cwd=tmp_path, env=ENV)
    output = again.stdout + again.stderr
    assert again.returncode == 0 and "Traceback" not in output, output
    assert "Trial 1's job died; marked failed and queued again" in output
    trials = study_of(sweep_dir).get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].value == first[0].value and (sweep_dir / "0" / "status.json").read_bytes() == kept
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    retry_log = (sweep_dir / "2" / "train.log").read_text()
    assert f"steps {stopped_at} -> 40" in retry_log  # resumed from the dead trial's checkpoint, not from scratch
    assert status(sweep_dir / "2")["objective"] == trials[2].value
    assert "Optuna study 'ganctl'" in output and "2 complete, 1 fail" in output


@pytest.mark.parametrize("storage,loggers", [
    ("sqlite", []),
    ("journal", ["logger=[tensorboard,mlflow,wandb]"]),
])
def test_two_workers_share_one_study_and_no_trial_is_lost_or_run_twice(tmp_path: Path, storage: str, loggers: list[str]) -> None:
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "sweep"
    chosen = ["hydra.sweeper.storage=journal:study.journal"] if storage == "journal" else []
    args = ["train", "-m", *SEARCH, "train.steps=20", "hydra.sweeper.n_trials=4", *chosen, *loggers, f"hydra.sweep.dir={sweep_dir}"]
    wandb = {"WANDB_MODE": "offline", "WANDB_CONFIG_DIR": str(tmp_path / "wandb"), "WANDB_CACHE_DIR": str(tmp_path / "wandb"),
             "WANDB_DATA_DIR": str(tmp_path / "wandb")}
    workers = [start(args, tmp_path, wandb) for _ in range(2)]  # the same command twice, as on two machines
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(output[-3000:] for output in outputs)
    assert search.study_record(sweep_dir)["storage"].startswith("journal:" if storage == "journal" else "sqlite:///")

    trials = study_of(sweep_dir).get_trials()
    assert [trial.number for trial in trials] == [0, 1, 2, 3] and all(trial.state == TrialState.COMPLETE for trial in trials)
    assert sorted(path.name for path in sweep_dir.iterdir() if path.is_dir() and path.name.isdigit()) == ["0", "1", "2", "3"]
    for trial in trials:
        record = status(sweep_dir / str(trial.number))
        assert (record["status"], record["job"], record["objective"]) == ("finished", trial.number, trial.value)
        lr = next(value for key, value in (o.split("=", 1) for o in record["overrides"]) if key == "optimizer.g.lr")
        assert float(lr) == trial.params["optimizer.g.lr"]  # the trial's own parameters trained in its own directory
        log = (sweep_dir / str(trial.number) / "train.log").read_text()
        assert log.count("] Training ") == 1 and "Resuming" not in log  # trained once, by one worker
    if not loggers:
        return
    from mlflow.tracking import MlflowClient

    parent = json.loads((sweep_dir / "trackers.json").read_text())
    client = MlflowClient(tracking_uri=parent["mlflow"]["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("ganctl").experiment_id])
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent["mlflow"]["run_id"]]
    assert len(runs) == 5 and len(children) == 4  # one parent for both workers, a child per trial
    assert sorted(run.data.tags["ganctl.job"] for run in children) == ["0", "1", "2", "3"]
    groups = set()
    for trial in trials:
        (run_file,) = (sweep_dir / str(trial.number) / "wandb").glob("offline-run-*/run-*.wandb")
        from test_trackers import wandb_run

        groups.add(wandb_run(run_file)["group"])
    assert groups == {parent["wandb"]["group"]}  # the sweep is one W&B group


def test_a_pruned_trial_is_pruned_not_failed_and_its_checkpoint_resumes(tmp_path: Path) -> None:
    """A threshold no trial can meet (D's real/fake gap above 0): the trial reports its gap at each log
    interval, is stopped at the first report after the warm-up, and keeps a complete last.pt."""
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *SEARCH, "train.steps=8", "train.ckpt_every=0", "hydra.sweeper.n_trials=1",
                     "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.upper=0", "hydra.sweeper.pruner.n_warmup_steps=3",
                     f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output  # no trial completed: no best value
    assert "Stopped by the pruner after step 5" in output and "1 pruned" in output
    (trial,) = study_of(sweep_dir).get_trials()
    assert trial.state == TrialState.PRUNED and sorted(trial.intermediate_values) == [2, 4, 5]
    record = status(sweep_dir / "0")
    assert (record["status"], record["step"]) == ("pruned", 5)
    summary = json.loads((sweep_dir / "0" / "status.json").read_text())["summary"]
    assert trial.intermediate_values[5] == pytest.approx(abs(summary["d_real"] - summary["d_fake"]))
    assert checkpoint.load(checkpoint.last_path(sweep_dir / "0"))["step"] == 5
    assert "pruned: after step 5" in (sweep_dir / "summary.csv").read_text()
    resumed = train_in_process(f"resume={sweep_dir / '0'}", "train.steps=10")  # a larger budget, from where it stopped
    assert resumed.step == 10 and checkpoint.load(checkpoint.last_path(sweep_dir / "0"))["step"] == 10

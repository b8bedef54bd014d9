"""The logger group: TensorBoard, CSV, MLflow (real, on SQLite) and W&B (real, offline) record a run and
its resume as one tracker run; a tracker that fails mid-run is dropped with one warning while the
others go on; one that cannot start is one message before training. Tiny runs in this process."""

from __future__ import annotations

import io
import json
import sqlite3
import struct
from pathlib import Path

import pytest
from rich.console import Console

from ganctl import trackers
from ganctl.errors import GanctlError
from ganctl.logger import RunLogger
from helpers import TINY, TINY_DCGAN, compose_config, train_in_process

ALL = "logger=[tensorboard,csv,mlflow,wandb]"


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B as on a machine with no credentials and no network: offline, its settings in tmp_path."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # logger.wandb.mode=auto must choose offline by itself
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def wandb_records(run_file: Path) -> list:
    """The records of a W&B run file (run-<id>.wandb): its LevelDB-style log of protobuf records, as
    `wandb sync` reads it (blocks of 32 KiB; each chunk: CRC32, length, type; 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0 and length == 0:
            break
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(run_file: Path) -> dict:
    """A W&B run file's id, group, config keys, logged (step, loss/d) pairs and exit code."""
    found = {"id": None, "group": None, "config": {}, "history": [], "exit_code": None}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found["id"], found["group"] = record.run.run_id, record.run.run_group
            found["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            if "loss/d" in row:
                found["history"].append((row["step"], row["loss/d"]))
        elif kind == "exit":
            found["exit_code"] = record.exit.exit_code
    return found


def csv_rows(path: Path, name: str) -> list[tuple[int, float]]:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return [(int(step), float(value)) for step, key, value in rows if key == name]


def test_every_logger_records_the_run_and_a_resume_continues_the_same_tracker_run(tmp_path: Path, offline_wandb) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    train_in_process(*TINY, *TINY_DCGAN, ALL, f"hydra.run.dir={run_dir}")
    ids = json.loads((run_dir / "trackers.json").read_text())
    assert ids["wandb"]["mode"] == "offline"  # no credentials here: W&B's files stay beside the run
    train_in_process(f"resume={run_dir}", "train.steps=6", "train.curves=true")  # the stored logger list goes on
    assert json.loads((run_dir / "trackers.json").read_text()) == ids

    csv = csv_rows(run_dir / "metrics.csv", "loss/d")
    assert [step for step, _ in csv] == [2, 4, 6]

    # MLflow, by default a SQLite database in the run's parent directory: one run, continued.
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert ids["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    (run,) = client.search_runs([client.get_experiment_by_name("ganctl").experiment_id])
    assert run.info.run_id == ids["mlflow"]["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.batch_size"] == "8" and run.data.params["model.generator.base_filters"] == "8"
    assert run.data.tags["ganctl.model"] == "dcgan_r1" and run.data.tags["ganctl.loss"] == "rpgan_r1r2"
    assert run.data.tags["ganctl.resumed_at_step"] == "4" and run.data.tags["ganctl.train.steps"] == "6"
    history = sorted((metric.step, metric.value) for metric in client.get_metric_history(run.info.run_id, "loss/d"))
    assert [step for step, _ in history] == [2, 4, 6]
    assert [value for _, value in history] == pytest.approx([value for _, value in csv])  # the same numbers reach every tracker
    artifacts = {item.path for folder in ("checkpoints", "plots", "images") for item in client.list_artifacts(run.info.run_id, folder)}
    assert {"checkpoints/last.pt", "plots/curves.png"} <= artifacts and any(path.startswith("images/") for path in artifacts)

    # W&B offline: one run file per session of the run, under the same id, its steps on the step axis.
    first, second = (wandb_run(path) for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")))
    assert first["id"] == second["id"] == ids["wandb"]["id"]
    assert [step for step, _ in first["history"]] == [2, 4] and [step for step, _ in second["history"]] == [6]
    assert [value for _, value in first["history"] + second["history"]] == pytest.approx([value for _, value in csv])
    assert first["config"]["train"]["steps"] == 4 and second["config"]["train"]["steps"] == 6
    assert first["exit_code"] == second["exit_code"] == 0


def test_a_tracker_that_fails_mid_run_warns_once_and_the_others_go_on(tmp_path: Path, capsys) -> None:
    """MLflow's database loses its tables between two log intervals (as a server or disk going away):
    the failure is one warning, the calls go on returning at once, the CSV logger keeps every value."""
    from mlflow.tracking import MlflowClient

    cfg, choices = compose_config(*TINY, *TINY_DCGAN, "logger=[csv,mlflow]")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    logger = RunLogger(run_dir, 6, 0, 8, output=Console(file=io.StringIO()), trackers=trackers.open_trackers(cfg, run_dir, choices, 0))
    logger.log({"loss/d": 1.0}, 2)
    database = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    wait_for(lambda: [m.step for m in client.get_metric_history(run_id, "loss/d")] == [2])
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE latest_metrics")
        connection.execute("DROP TABLE metrics")
    logger.log({"loss/d": 0.5}, 4)
    logger.scalars({"metrics/fid": 12.5}, 4)
    logger.log({"loss/d": 0.25}, 6)
    logger.close()
    logger.end("finished")
    assert csv_rows(run_dir / "metrics.csv", "loss/d") == [(2, 1.0), (4, 0.5), (6, 0.25)]
    assert csv_rows(run_dir / "metrics.csv", "metrics/fid") == [(4, 12.5)]
    warnings = capsys.readouterr().err
    assert warnings.count("The mlflow logger failed") == 1 and "training goes on without it" in warnings, warnings


def wait_for(condition, timeout: float = 60.0) -> None:
    """Until a tracker's thread has sent what it was given (it works beside the caller)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the tracker did not send it"
        time.sleep(0.05)


def test_a_tracker_that_cannot_start_is_one_message_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # (the logger's own default is 2)
    run_dir = tmp_path / "run"
    with pytest.raises(GanctlError, match=r"The mlflow logger cannot start \(.*\)\. Fix logger.mlflow") as refused:
        train_in_process(*TINY, *TINY_DCGAN, "logger=[tensorboard,mlflow]", "logger.mlflow.tracking_uri=http://127.0.0.1:9",
                         "logger.mlflow.http_timeout_s=5", f"hydra.run.dir={run_dir}")
    assert "\n" not in str(refused.value)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "tb").exists()  # nothing trained, nothing logged


@pytest.mark.parametrize("override,message", [
    ("logger.wandb.mode=sometimes", "logger.wandb.mode must be one of auto, online, offline, disabled"),
    ("logger.csv.file=../elsewhere.csv", "logger.csv.file names a file in the run directory"),
])
def test_a_misconfigured_tracker_is_refused_by_its_own_settings(tmp_path: Path, override: str, message: str) -> None:
    cfg, choices = compose_config(*TINY, "logger=[csv,wandb]", override)
    with pytest.raises(GanctlError, match=message):
        trackers.open_trackers(cfg, tmp_path, choices, 0)
    assert not (tmp_path / "metrics.csv").exists()

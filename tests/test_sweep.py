"""Sweeps: `ganctl train -m` with Hydra's launchers and sweepers, the summary, TensorBoard HParams,
and submitit's requeue-and-resume protocol. Real subprocesses with tiny configs on the CPU."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, sweep
from helpers import TINY, TINY_DCGAN, run_cli

TINY_ARGS = [*TINY, *TINY_DCGAN]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 2 x 2 sweep on the default (sequential) launcher in which the two jobs with lr=-1 fail."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "loss=bce,hinge", "optimizer.g.lr=2e-4,-1",
                     f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    return sweep_dir, result


def test_a_failing_job_lands_in_the_summary_and_the_sweep_goes_on(failed_sweep) -> None:
    sweep_dir, result = failed_sweep
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # all jobs ran, and the exit code says some failed
    assert "Traceback" not in output, output
    assert output.count("error:") == 2, output
    assert "job 1 (loss=bce optimizer.g.lr=-1) failed: optimizer.g.lr must be a positive number" in output

    rows = read_csv(sweep_dir / "summary.csv")
    assert [(row["job"], row["loss"], row["optimizer.g.lr"]) for row in rows] == [
        ("0", "bce", "0.0002"), ("1", "bce", "-1"), ("2", "hinge", "0.0002"), ("3", "hinge", "-1")]
    for row in rows:
        if row["optimizer.g.lr"] == "-1":
            assert row["status"] == "failed: optimizer.g.lr must be a positive number, got -1.", row
            assert row["objective"] == ""
            continue
        assert row["status"] == "finished", row
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert float(row["g_loss"]) == pytest.approx(summary["losses"]["g_loss"])
        assert float(row["images_per_second"]) == pytest.approx(summary["images_per_second"])
        assert float(row["objective"]) == pytest.approx(abs(summary["d_real"] - summary["d_fake"]))
        assert row["objective_source"] == "d_gap"
        assert row["steps"] == "4"
    markdown = (sweep_dir / "summary.md").read_text()
    assert "| loss | optimizer.g.lr | job | status |" in markdown and markdown.count("| failed: ") == 2


def test_each_job_has_a_full_run_directory_and_hparams(failed_sweep) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep_dir, _ = failed_sweep
    run_dir = sweep_dir / "2"
    for name in ("checkpoints/last.pt", "summary.json", "train.log", ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 4
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["loss"].string_value == "hinge"
    assert hparams["optimizer.g.lr"].number_value == pytest.approx(2e-4)
    objective = events.Scalars("hparams/objective")[-1]
    assert objective.step == 4
    status = json.loads((run_dir / "status.json").read_text())
    assert objective.value == pytest.approx(status["objective"])


def test_summary_command_prints_the_table_again(failed_sweep) -> None:
    sweep_dir, _ = failed_sweep
    result = run_cli("summary", str(sweep_dir))
    assert result.returncode == 0, result.stderr
    assert "2 finished, 2 failed" in result.stdout
    assert "optimizer.g.lr must be a positive number" in result.stdout
    # d_gap of bce and of hinge jobs: not ranked against each other
    assert "objective: d_gap (not comparable across this sweep's losses, bce, hinge" in " ".join(result.stdout.split())


def test_the_table_prints_rates_and_times_as_plain_numbers(tmp_path: Path) -> None:
    from rich.console import Console

    row = {"job": 0, "values": {"loss": "bce"}, "status": "finished", "detail": "", "objective": 0.25,
           "objective_source": "d_gap", "d_loss": 1.2, "g_loss": 0.7, "images_per_second": 2781.6,
           "wall_seconds": 1234.56, "steps": 6500, "run_dir": str(tmp_path / "0"), "loss": "bce"}
    console = Console(record=True, width=200)
    sweep.print_table(tmp_path, [row], console)
    text = console.export_text()
    assert "2782" in text and "1234.6" in text and "e+0" not in text
    assert "objective: d_gap (lower is better)" in text  # one loss: the proxy ranks
    sweep.write_tables(tmp_path, [row])
    assert "| 2782 | 1234.6 |" in (tmp_path / "summary.md").read_text()


def test_summary_of_a_cut_off_sweep(failed_sweep, tmp_path: Path) -> None:
    """A job whose process died without a word (SIGKILL, out of memory) reads as interrupted."""
    sweep_dir = tmp_path / "cut"
    shutil.copytree(failed_sweep[0], sweep_dir)
    status_path = sweep_dir / "2" / "status.json"
    status = json.loads(status_path.read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    status.update(status="running", pid=dead.pid)
    status_path.write_text(json.dumps(status))
    shutil.rmtree(sweep_dir / "3")  # never started
    rows = sweep.read_sweep(sweep_dir)
    assert [row["status"] for row in rows] == ["finished", "failed", "interrupted"]


@pytest.mark.parametrize("make", ["nothing", "single run"])
def test_summary_of_a_folder_that_is_not_a_sweep(tmp_path: Path, make: str) -> None:
    if make == "single run":
        (tmp_path / ".hydra").mkdir()
        (tmp_path / ".hydra" / "overrides.yaml").write_text("[]\n")
    result = run_cli("summary", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert ("single run" if make == "single run" else "not a ganctl sweep directory") in output


def test_objective_is_the_latest_fid_else_the_proxy(tmp_path: Path) -> None:
    summary = {"d_real": 0.9, "d_fake": 0.4, "losses": {"g_loss": 1.5, "d_loss": 0.7}}
    assert sweep.objective(tmp_path, summary, "fid") == (pytest.approx(0.5), "d_gap")
    lines = [{"metric": "fid", "value": 80.0, "step": 100}, {"metric": "kid", "value": 0.1, "step": 200},
             {"metric": "fid", "value": 42.5, "step": 200}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"metric": "fi')
    assert sweep.objective(tmp_path, summary, "fid") == (42.5, "fid@200")
    assert sweep.objective(tmp_path, summary, "kid") == (0.1, "kid@200")
    assert sweep.objective(tmp_path, summary, "d_gap") == (pytest.approx(0.5), "d_gap")
    assert sweep.objective(tmp_path, summary, "g_loss") == (1.5, "g_loss")
    assert math.isnan(sweep.objective(tmp_path, {}, "d_gap")[0])


def test_joblib_runs_jobs_side_by_side_sharing_the_cores(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "loss=bce,hinge", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                     env={"OMP_NUM_THREADS": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(row["loss"], row["status"]) for row in rows] == [("bce", "finished"), ("hinge", "finished")]
    pids = {json.loads((sweep_dir / job / "status.json").read_text())["pid"] for job in ("0", "1")}
    assert len(pids) == 2  # two worker processes
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // min(2, cores))
    assert f"{threads} torch threads for this job ({cores} cores here)" in (sweep_dir / "0" / "train.log").read_text()


def test_optuna_searches_a_space_in_memory(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=0",
                     "optimizer.g.lr=tag(log, interval(1e-4, 1e-2))", "loss.critic_steps=choice(1, 2)",
                     f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "setup plugin alembic" not in result.stdout + result.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 3 and all(row["status"] == "finished" for row in rows)
    assert all(1e-4 <= float(row["optimizer.g.lr"]) <= 1e-2 and row["loss.critic_steps"] in ("1", "2") for row in rows)
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert f"best_value: {min(float(row['objective']) for row in rows)}" in best


def test_optuna_trials_that_fail_are_failed_trials_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """Every trial fails (as FID does offline): each is told to Optuna as failed, all of them run, and
    the sweep ends with the summary and exit code 1, not the plugin's traceback."""
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.n_jobs=1", "optimizer.g.lr=interval(-2, -1)", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "Got 'None'" not in output, output
    assert "Every trial of the Optuna sweep failed" in output
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 2 and all(row["status"].startswith("failed: optimizer.g.lr must be a positive number") for row in rows)


@pytest.mark.parametrize("args,message", [
    (["hydra/launcher=slurm_gpu", "loss=bce,hinge"], "SLURM is not available here"),
    (["hydra/sweeper=optuna", "loss=choice(bce, hinge)"], "would rank its trials by d_gap across different losses"),
])
def test_sweeps_that_cannot_run_as_asked_are_refused_before_any_job(tmp_path: Path, args: list[str], message: str) -> None:
    if "slurm" in args[0] and shutil.which("srun"):
        pytest.skip("this machine has SLURM")
    result = run_cli("train", "-m", *TINY_ARGS, *args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert message in output and output.count("error:") == 1, output
    assert not (tmp_path / "sweep").exists()


def test_submitit_requeues_a_preempted_job_which_resumes_without_losing_steps(tmp_path: Path) -> None:
    """SIGUSR2 (SLURM's preemption / time-limit signal) to job 0: it saves last.pt, submitit
    requeues it, and it resumes in the same run directory. Job 1 runs the same training straight
    through (train.log_every does not change what is trained), so the weights must match."""
    sweep_dir = tmp_path / "sweep"
    steps = 100
    args = [*TINY_ARGS, f"train.steps={steps}", "train.sample_every=0", "train.ckpt_every=0", "train.log_every=1,2",
            "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "ganctl", "train", "-m", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, deadline = sweep_dir / "0" / "train.log", time.time() + 300
    while not (log.exists() and "step 1 " in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(json.loads((sweep_dir / "0" / "status.json").read_text())["pid"], signal.SIGUSR2)
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output

    text = log.read_text()
    stopped = int(text.split("Stopped by SIGUSR2 after step ")[1].split(";")[0])
    assert 0 < stopped < steps, text
    assert f"steps {stopped} -> {steps}" in text  # the requeued job resumed from that step
    status = json.loads((sweep_dir / "0" / "status.json").read_text())
    assert (status["status"], status["requeues"]) == ("finished", 1)
    resumed = checkpoint.load(sweep_dir / "0" / "checkpoints" / "last.pt")
    straight = checkpoint.load(sweep_dir / "1" / "checkpoints" / "last.pt")
    assert resumed["step"] == straight["step"] == steps
    for name, tensor in straight["generator"].items():
        torch.testing.assert_close(resumed["generator"][name], tensor, rtol=0, atol=0)
    assert "requeued 1x" in (sweep_dir / "summary.csv").read_text()


def tasks_of_job(rank0_pid: int) -> list[int]:
    """The task processes of the submitit_local job whose rank 0 is `rank0_pid`: its controller's children."""
    controller = Path(f"/proc/{rank0_pid}/stat").read_text().rsplit(")", 1)[1].split()[1]  # the parent's pid
    children = (Path(f"/proc/{controller}/task") / controller / "children").read_text().split()
    return [int(pid) for pid in children]


def test_a_job_of_two_tasks_trains_one_ddp_run_and_a_requeue_loses_no_step(tmp_path: Path) -> None:
    """hydra.launcher.tasks_per_node=2 (ganctl's local_tasks: submitit_local with ganctl's launcher): the
    two tasks are one DDP run in one run directory. SIGUSR2 to both tasks, as SLURM signals a job: both
    stop at the same step, rank 0 saves last.pt and requeues the job, which resumes from that step."""
    sweep_dir, steps = tmp_path / "sweep", 40
    args = [*TINY_ARGS, f"train.steps={steps}", "train.sample_every=0", "train.ckpt_every=0", "train.log_every=1",
            "hydra/launcher=local_tasks", "hydra.launcher.tasks_per_node=2", f"hydra.sweep.dir={sweep_dir}"]
    process = subprocess.Popen([sys.executable, "-m", "ganctl", "train", "-m", *args], cwd=tmp_path, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log, deadline = sweep_dir / "0" / "train.log", time.time() + 180
    while not (log.exists() and "step 1 " in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    tasks = tasks_of_job(json.loads((sweep_dir / "0" / "status.json").read_text())["pid"])
    assert len(tasks) == 2
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output

    assert sweep.job_dirs(sweep_dir) == [sweep_dir / "0"]  # one run directory, and rank 1 wrote nothing of its own
    text = log.read_text()
    assert text.count("Training ") == text.count("Resuming ") == text.count("Stopped by") == 1, text  # rank 0 alone logs
    stopped = int(text.split("Stopped by SIGUSR2 after step ")[1].split(";")[0])
    assert 0 < stopped < steps, text
    assert f"steps {stopped} -> {steps}" in text  # the requeued job went on from the step it stopped at
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True} and summary["steps"] == steps
    status = json.loads((sweep_dir / "0" / "status.json").read_text())
    assert (status["status"], status["requeues"]) == ("finished", 1)
    assert checkpoint.load(sweep_dir / "0" / "checkpoints" / "last.pt")["step"] == steps
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 1 and rows[0]["status"] == "finished: requeued 1x"  # one row per job, not per task


def test_a_job_with_more_tasks_than_gpus_is_refused_before_it_is_queued(tmp_path: Path) -> None:
    result = run_cli("train", "-m", "hydra/launcher=local_tasks", "hydra.launcher.tasks_per_node=2",
                     "hydra.launcher.gpus_per_node=1", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "tasks_per_node=2 but gpus_per_node=1" in result.stderr
    assert not (tmp_path / "sweep").exists()  # nothing was started


def test_the_table_prints_errors_as_text_not_markup(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    row = {"job": 0, "values": {"train.augment": "[translation]"}, "status": "failed", "objective": None,
           "detail": "RuntimeError: [/gloo/transport/tcp/pair.cc:561] Connection closed by peer", "objective_source": "",
           "d_loss": None, "g_loss": None, "images_per_second": None, "wall_seconds": None, "run_dir": str(tmp_path / "0")}
    out = io.StringIO()
    sweep.print_table(tmp_path, [row], Console(file=out, width=300))
    assert "[/gloo/transport/tcp/pair.cc:561]" in out.getvalue() and "[translation]" in out.getvalue()


def wait_for_steps(run_dirs: list[Path], process: subprocess.Popen, timeout: float = 120) -> None:
    """Until every job has logged a training step (its graceful-stop handlers are in place)."""
    deadline = time.time() + timeout
    while not all((run_dir / "train.log").exists() and "] step " in (run_dir / "train.log").read_text() for run_dir in run_dirs):
        assert process.poll() is None and time.time() < deadline, "the jobs did not start training"
        time.sleep(0.05)


def test_ctrl_c_stops_a_joblib_sweep_gracefully(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while two joblib workers
    train: each finishes its step and saves it (joblib used to kill the workers in the middle of
    that: status.json stayed `running`, the last steps were lost), and the third job never starts."""
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ganctl", "train", "-m", *TINY_ARGS, "train.steps=200", "train.batch_size=128", "train.log_every=1",
         "train.ckpt_every=1000", "train.sample_every=0", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.seed=1,2,3",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_steps([sweep_dir / "0", sweep_dir / "1"], process)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output[-3000:]
    for job in ("0", "1"):
        status = json.loads((sweep_dir / job / "status.json").read_text())
        assert (status["status"], status.get("signal")) == ("interrupted", "SIGINT"), status
        assert checkpoint.load(sweep_dir / job / "checkpoints" / "last.pt")["step"] == status["step"] > 0
    assert not (sweep_dir / "2" / "checkpoints").exists()
    assert "not started: the sweep was stopped by SIGINT" in json.loads((sweep_dir / "2" / "status.json").read_text())["error"]


def test_the_same_sweep_command_again_continues_the_sweep_and_keeps_finished_jobs(tmp_path: Path) -> None:
    """A sweep stopped by Ctrl-C, then run again with the same command into the same directory: the
    stopped job resumes and the unstarted one runs (it used to rewrite every job as failed, erase the
    objectives and exit 1). Once more: every finished job is kept, its record not rewritten. Another
    command into that directory is refused before any job."""
    sweep_dir = tmp_path / "sweep"
    args = ["train", "-m", *TINY_ARGS, "train.steps=100", "train.log_every=1", "train.ckpt_every=1000", "train.sample_every=0",
            "train.seed=1,2", f"hydra.sweep.dir={sweep_dir}"]
    one_thread = {"OMP_NUM_THREADS": "1"}  # tiny networks: more threads only contend for the cores
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **one_thread}
    env.pop("HYDRA_FULL_ERROR", None)
    process = subprocess.Popen([sys.executable, "-m", "ganctl", *args], cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_steps([sweep_dir / "0"], process)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) == 130
    assert json.loads((sweep_dir / "0" / "status.json").read_text())["status"] == "interrupted"
    continued = run_cli(*args, cwd=tmp_path, env=one_thread)
    assert continued.returncode == 0, continued.stdout + continued.stderr
    assert [(row["status"], row["steps"]) for row in read_csv(sweep_dir / "summary.csv")] == [("finished", "100")] * 2
    assert "Resuming" in (sweep_dir / "0" / "train.log").read_text()
    records = {job: (sweep_dir / job / "status.json").read_bytes() for job in ("0", "1")}
    again = run_cli(*args, cwd=tmp_path, env=one_thread)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "job 1: finished in an earlier run of this sweep" in again.stderr
    assert {job: (sweep_dir / job / "status.json").read_bytes() for job in ("0", "1")} == records
    from omegaconf import OmegaConf  # (refused through the CLI as the sweeps above that cannot run as asked)

    other = OmegaConf.create({"hydra": {"overrides": {"task": [*args[2:-2], "train.seed=1,3"]},
                                        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}}})
    assert f"{sweep_dir} holds an earlier sweep" in sweep.earlier_sweep_problem(other, sweep_dir)


def test_a_sweep_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a folder")  # as a read-only or missing mount
    result = run_cli("train", "-m", *TINY_ARGS, "loss=bce,hinge", "hydra.sweep.dir=blocked/sweep", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "Cannot create the sweep directory blocked/sweep" in output and output.count("error:") == 1, output

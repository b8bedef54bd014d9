"""One owner per run directory: real processes into one run directory (a run and its resume, two
fresh runs), SIGKILL of the holder, a requeued job that waits for the one it replaces."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from torch.testing import assert_close

from ganctl import app, checkpoint, cli, rundir, sweep
from ganctl.sample.grid import sample
from helpers import TINY, TINY_DCGAN, compose_config, run_cli, train_in_process

RUN = [*TINY, *TINY_DCGAN, "train.steps=10", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=3"]
TRAINED = ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d")


def start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "ganctl", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not checkpoint.last_path(run_dir).exists():
        assert process.poll() is None and time.time() < deadline, "no checkpoint came"
        time.sleep(0.05)


def contents(run_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final checkpoint of the same run with nothing else around."""
    run_dir = tmp_path_factory.mktemp("alone") / "run"
    train_in_process(*RUN, f"hydra.run.dir={run_dir}")
    return checkpoint.load(checkpoint.last_path(run_dir))


def assert_same_training(run_dir: Path, alone: dict) -> None:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    assert state["step"] == alone["step"] == 10
    for key in TRAINED:
        assert_close(state[key], alone[key], rtol=0, atol=0, msg=key)


def test_a_second_process_is_refused_and_changes_nothing(tmp_path: Path, alone: dict) -> None:
    run_dir = tmp_path / "run"
    first = start(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for_checkpoint(run_dir, first)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run (holding its lock), so nothing below races it
    try:
        before = contents(run_dir)
        seconds = [start(f"resume={run_dir}", cwd=tmp_path), start(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)]
        for second in seconds:  # a run's resume, and a fresh run into the same directory
            output = second.communicate(timeout=120)[0]
            assert second.returncode == 1, output
            assert f"{run_dir} is in use: process {first.pid} on {socket.gethostname()}" in output, output
            assert "Traceback" not in output, output
        assert contents(run_dir) == before  # not a byte: no .hydra/ rewritten, no line in train.log
        sample(run_dir, num=4, out=tmp_path / "grid.png", device="cpu")  # reading a run in progress needs no lock
    finally:
        first.send_signal(signal.SIGCONT)
    output = first.communicate(timeout=240)[0]
    assert first.returncode == 0, output
    assert_same_training(run_dir, alone)
    assert not (run_dir / rundir.LOCK_FILE).exists()  # released at the end
    finished = contents(run_dir)
    assert cli.main(["train", *RUN, f"hydra.run.dir={run_dir}"]) == 1  # a new run over the finished one
    assert contents(run_dir) == finished  # refused before Hydra could rewrite its .hydra/


def test_after_sigkill_of_the_holder_resume_takes_over_at_once(tmp_path: Path, alone: dict) -> None:
    run_dir = tmp_path / "run"
    first = start(*RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for_checkpoint(run_dir, first)
    first.kill()
    first.communicate(timeout=60)
    assert json.loads((run_dir / rundir.LOCK_FILE).read_text())["pid"] == first.pid  # its file stays; its lock died
    resumed = run_cli("train", f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "in use" not in resumed.stderr and "Waiting" not in resumed.stderr
    assert_same_training(run_dir, alone)


def test_a_held_directory_is_refused_everywhere_and_a_requeued_job_waits(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    code = "import sys; from ganctl import rundir; lock = rundir.hold(sys.argv[1]); lock.__enter__(); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline() == "held\n"
    try:
        named = f"process {holder.pid} on {socket.gethostname()}"
        with pytest.raises(rundir.RunLocked, match=named):
            with rundir.hold(run_dir):
                pass
        cfg, choices = compose_config(*RUN)
        hydra_cfg = OmegaConf.create({"runtime": {"output_dir": str(run_dir), "choices": choices}, "overrides": {"task": RUN},
                                      "job": {"num": 3}})
        with pytest.raises(rundir.RunLocked, match=named):  # a run whose directory Hydra named by the clock
            app.run(cfg, hydra_cfg)
        assert sweep.run_job(cfg, hydra_cfg, app.run) is None  # a sweep's job: refused (no value), the sweep goes on
        assert f"job 3: {run_dir} is in use" in capsys.readouterr().err.replace("\n", "")
        assert sorted(path.name for path in run_dir.iterdir()) == [rundir.LOCK_FILE]  # no status.json written
    finally:
        holder.stdin.close()  # the holder exits now; a requeued job starting meanwhile waits for it
    with rundir.hold(run_dir, wait=60):
        assert json.loads((run_dir / rundir.LOCK_FILE).read_text())["pid"] == os.getpid()
    holder.wait(timeout=60)
    assert not (run_dir / rundir.LOCK_FILE).exists()

"""Fault injection: real signals and SIGKILL sent to a training subprocess at random moments
(during steps, checkpoint writes and sampling: every step writes both), then resume. Whatever
happens, the newest complete checkpoint loads, and resuming ends with exactly the weights of a run
that was never interrupted (CPU, fp32)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.testing import assert_close

from ganctl import checkpoint
from helpers import TINY, TINY_DCGAN

STEPS = 40
RUN = [*TINY, *TINY_DCGAN, f"train.steps={STEPS}", "train.log_every=1", "train.sample_every=1", "train.ckpt_every=1"]
EXIT_ON_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR2: 140}


def start(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "ganctl", "train", *args], cwd=run_dir.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def train_args(run_dir: Path) -> list[str]:
    """A new run, or the continuation of the one in run_dir."""
    if checkpoint.last_path(run_dir).exists():
        return [f"resume={run_dir}"]
    return [*RUN, f"hydra.run.dir={run_dir}"]


def wait_until(condition, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Until `condition()` holds, while the process runs: a state to wait for, never a fixed sleep."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.05)
    return False


def wait_for_a_step(run_dir: Path, process: subprocess.Popen) -> bool:
    """Until this process has logged a training step (its signal handlers are in place) and the
    run has a checkpoint (so that a kill at any moment after it has one to leave intact)."""
    log = run_dir / "train.log"
    before = len(re.findall(r"\] step \d+ ", log.read_text())) if log.exists() else 0
    stepped = lambda: log.exists() and len(re.findall(r"\] step \d+ ", log.read_text())) > before  # noqa: E731
    return wait_until(lambda: stepped() and checkpoint.last_path(run_dir).exists(), process)


def final_state(run_dir: Path) -> dict:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    assert state["step"] == STEPS
    return state


def assert_same_training(a: dict, b: dict) -> None:
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d"):
        assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    process = start(run_dir, *train_args(run_dir))
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-2000:]
    return final_state(run_dir)


def test_random_signals_lose_nothing(tmp_path: Path, straight: dict) -> None:
    rng = random.Random(8)
    run_dir = tmp_path / "run"
    for _ in range(3):  # three stops at random moments, by random signals
        process = start(run_dir, *train_args(run_dir))
        assert wait_for_a_step(run_dir, process)
        time.sleep(rng.uniform(0.0, 0.6))
        sent = rng.choice(list(EXIT_ON_SIGNAL))
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode in (0, EXIT_ON_SIGNAL[sent]), stderr[-2000:]
        assert "Traceback" not in stderr
        checkpoint.load(checkpoint.last_path(run_dir))  # the newest checkpoint is complete
        if process.returncode == 0:
            break
    process = start(run_dir, *train_args(run_dir))  # then to the end, uninterrupted
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-2000:]
    assert_same_training(final_state(run_dir), straight)


def test_sigkill_at_a_random_moment_leaves_a_complete_checkpoint(tmp_path: Path, straight: dict) -> None:
    rng = random.Random(3)
    run_dir = tmp_path / "run"
    for _ in range(2):
        process = start(run_dir, *train_args(run_dir))
        assert wait_for_a_step(run_dir, process)
        time.sleep(rng.uniform(0.0, 0.6))
        process.kill()  # SIGKILL: no handler runs, a write may be cut anywhere
        process.communicate(timeout=60)
        checkpoint.load(checkpoint.last_path(run_dir))  # still the previous complete one
    process = start(run_dir, *train_args(run_dir))
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-2000:]
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # stray temporary files were removed
    assert_same_training(final_state(run_dir), straight)


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = start(run_dir, *RUN, "train.steps=1000000", f"hydra.run.dir={run_dir}")
    assert wait_for_a_step(run_dir, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    started = time.time()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and time.time() - started < 20
    assert "Traceback" not in stderr
    path = checkpoint.last_path(run_dir)
    if path.exists():
        checkpoint.load(path)  # the last complete checkpoint, as it was

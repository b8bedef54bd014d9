"""Multi-process training through torchrun (DDP on gloo, 2 CPU processes): one run directory,
identical weights on every rank, checkpoints that resume across world sizes, a clean stop; two
torchrun "nodes" on this machine; where each process stands and what it may be asked.
(Jobs of several submitit tasks: tests/test_sweep.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, distributed
from ganctl.errors import GanctlError
from helpers import TINY_STYLEGAN2, run_cli

QUICK = ["train.batch_size=8", "train.log_every=2", "train.num_samples=16", "train.device=cpu", "train.curves=false"]
SMALL = ["model.generator.base_filters=8", "model.discriminator.base_filters=8", "model.generator.latent_dim=16", *QUICK]


def torchrun(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganctl", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


BIGGAN = ["model=biggan", "model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=12",
          "model.generator.shared_dim=8", *QUICK]


@pytest.mark.parametrize("setup", [
    # WGAN-GP: the gradient penalty's double backward goes through DDP too.
    ["model=wgangp", *SMALL],
    # BigGAN's ResNets, spectral norm in G and D, conditioned (class-conditional BatchNorm fed by the
    # shared embedding and z's chunks, a projection head in D, the labels held fixed), and R1's double
    # backward every other critic update.
    [*BIGGAN, "conditioning=projection", "loss=hinge", "loss.r1_gamma=1", "loss.r1_every=2"],
], ids=["wgangp", "biggan-projection-r1"])
def test_two_ranks_train_one_run_with_identical_weights(tmp_path: Path, setup: list[str]) -> None:
    result = torchrun("train", "loss.critic_steps=2", "train.steps=4", *setup, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # rank 1 wrote no directory of its own
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True}
    assert summary["steps"] == 4
    assert result.stderr.count("ganctl run") == 1  # one summary table: rank 0 reports
    # images/s counts both ranks' images, in the progress line as in the summary: 2 x 8 per step
    last = re.findall(r"step 4  ([\d.]+) steps/s  (\d+) img/s", (tmp_path / "run" / "train.log").read_text())[-1]
    assert float(last[1]) == pytest.approx(16 * float(last[0]), rel=0.01, abs=8)
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4


def test_two_ranks_keep_the_same_ada_p(tmp_path: Path) -> None:
    """Each rank augments its own images, but r_t is summed over both, so p moves the same on each."""
    result = torchrun("train", "train.steps=3", *SMALL, "train.ada.mode=adaptive", "train.ada.interval=1",
                      "train.ada.kimg=0.05", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True, "augment_p_agrees": True}
    p = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["augment"]["p"].item()
    assert p > 0 and round(p / 0.32, 4) == round(p / 0.32)  # moved in steps of both ranks' 16 images / 50


def test_two_ranks_train_stylegan2_with_one_path_length_mean(tmp_path: Path) -> None:
    """Lazy R1 and path length every 2 steps (both due at steps 1 and 3), style mixing: the path-length
    pass is a second forward of the DDP-wrapped G in the step, and the running mean follows both ranks' lengths."""
    result = torchrun("train", *TINY_STYLEGAN2, "train.steps=4", "train.batch_size=8", "train.log_every=2", "train.num_samples=16",
                      "train.device=cpu", "train.curves=false", "loss.r1_every=2", "loss.path_length_every=2",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True, "path_length_state_agrees": True}
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["regularisers"]["path_length"]["mean"] > 0


def test_two_ranks_accumulate_micro_batches(tmp_path: Path) -> None:
    """train.batch_gpu=4 of 8: each rank's passes before the last skip DDP's all-reduce (no_sync), the last one
    averages what both accumulated (G's with the path-length pass joined to it); the ranks stay identical."""
    result = torchrun("train", *TINY_STYLEGAN2, "train.steps=2", "train.batch_size=8", "train.batch_gpu=4", "train.log_every=1",
                      "train.num_samples=16", "train.device=cpu", "train.curves=false", "loss.r1_every=2",
                      "loss.path_length_every=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True, "path_length_state_agrees": True}
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["config"]["train"]["batch_gpu"] == 4


def test_a_single_process_checkpoint_resumes_on_two_ranks(tmp_path: Path) -> None:
    """(Two ranks' checkpoint resumed in one process: test_two_torchrun_nodes_train_one_run_that_resumes_in_one_process.)"""
    single = tmp_path / "single"
    assert run_cli("train", "train.steps=3", *SMALL, f"hydra.run.dir={single}", cwd=tmp_path).returncode == 0
    result = torchrun("train", f"resume={single}", "train.steps=5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((single / "summary.json").read_text())["ranks"]["weights_agree"] is True
    state = checkpoint.load(single / "checkpoints" / "last.pt")
    assert state["step"] == 5 and all(torch.isfinite(t).all() for t in state["generator"].values())


def test_sigterm_stops_every_rank_with_one_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganctl",
               "train", "train.steps=1000000", *SMALL, "train.log_every=10", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    log = run_dir / "train.log"
    while time.time() < deadline and not (log.exists() and " step 20 " in log.read_text()):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert output.count("Stopped by SIGTERM") == 1, output[-3000:]
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert state["step"] >= 20
    resumed = run_cli("train", f"resume={run_dir}", f"train.steps={state['step'] + 2}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_each_rank_draws_its_own_batches_from_the_shared_seed() -> None:
    from ganctl.distributed import Group, reseed

    def draws(rank: int) -> torch.Tensor:
        torch.manual_seed(0)  # every rank starts from the run's seed (identical initial weights)
        reseed(Group(rank=rank, world_size=2))
        return torch.randint(4000, (8,))  # the indices of its first real batch

    assert torch.equal(draws(0), draws(0))  # repeatable
    assert not torch.equal(draws(0), draws(1))  # but different on each rank
    torch.manual_seed(0)
    expected = torch.randint(4000, (8,))
    torch.manual_seed(0)
    reseed(Group())  # a single process keeps its stream: exact resume is untouched
    assert torch.equal(torch.randint(4000, (8,)), expected)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_torchrun_nodes_train_one_run_that_resumes_in_one_process(tmp_path: Path) -> None:
    """Two torchrun invocations as two nodes of one process each, meeting at a c10d rendezvous on
    127.0.0.1 as the nodes of a cluster meet at the first one's address. (c10d gives the nodes their
    ranks in the order they join; --node_rank counts only with --rdzv_backend=static.)"""
    run_dir, endpoint = tmp_path / "run", f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
               f"--rdzv_endpoint={endpoint}", "--rdzv_id=ganctl-test", "-m", "ganctl",
               "train", "train.steps=3", *SMALL, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(output[-3000:] for output in outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the other node wrote no directory
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ranks"] == {"world_size": 2, "weights_agree": True} and summary["steps"] == 3
    assert sum(output.count("ganctl run") for output in outputs) == 1  # one summary table: rank 0's

    resumed = run_cli("train", f"resume={run_dir}", "train.steps=5", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 5
    assert "ranks" not in json.loads((run_dir / "summary.json").read_text())  # now a single process


def test_a_submitit_task_knows_its_place_from_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task 3 of a job of 2 nodes x 2 tasks (submitit_local's variables; SLURM's are read the same way)."""
    job = {"SUBMITIT_FOLDER": "/tmp/x", "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "7",
           "SUBMITIT_LOCAL_NTASKS": "4", "SUBMITIT_LOCAL_JOB_NUM_NODES": "2", "SUBMITIT_LOCAL_NODEID": "1",
           "SUBMITIT_LOCAL_GLOBALID": "3", "SUBMITIT_LOCAL_LOCALID": "1"}
    for name, value in job.items():
        monkeypatch.setenv(name, value)
    assert distributed.launch() == distributed.Launch("submitit", rank=3, world_size=4, local_rank=1, local_world_size=2)
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")  # a job of one task is a single process
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_NUM_NODES", "1")
    assert distributed.launch() == distributed.Launch()


def test_a_global_batch_is_shared_out_and_must_divide() -> None:
    four = distributed.Group(rank=0, world_size=4)
    assert distributed.per_process_batch(64, None, four) == 64  # no global batch: train.batch_size each
    assert distributed.per_process_batch(64, 256, four) == 64
    assert distributed.per_process_batch(64, 100, distributed.Group()) == 100
    with pytest.raises(GanctlError, match=r"global_batch_size=100 does not divide among 3 processes.*e\.g\. 99 or 102"):
        distributed.per_process_batch(64, 100, distributed.Group(rank=0, world_size=3))


def test_nccl_is_refused_on_cpus() -> None:
    assert distributed.choose_backend("auto", torch.device("cpu")) == "gloo"
    assert distributed.choose_backend("gloo", torch.device("cpu")) == "gloo"
    with pytest.raises(GanctlError, match="train.ddp_backend=nccl runs on CUDA GPUs only.*train.device=cpu"):
        distributed.choose_backend("nccl", torch.device("cpu"))

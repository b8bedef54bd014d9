"""torch's thread count: chosen from the CPUs the process may use (affinity, cgroup quota, SLURM, the
launcher's processes), never more than torch's own; train.threads and OMP_NUM_THREADS win. The OS is
mocked at its boundary: os.sched_getaffinity, cgroup files written into tmp_path, the environment."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from ganctl import config, threads
from ganctl.errors import GanctlError
from helpers import TINY, TINY_DCGAN, compose_config, run, run_cli


def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpus: int, own_cgroup: str = "0::/\n",
            files: dict[str, str] | None = None) -> dict[str, Path]:
    """A machine of `cpus` CPUs in the affinity mask, this process in `own_cgroup` (/proc/self/cgroup's
    text), and the cgroup files `files` (paths under the cgroup root -> their text)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self_cgroup").write_text(own_cgroup)
    return {"root": root, "self_cgroup": tmp_path / "self_cgroup"}


def choose(where: dict[str, Path], environ: dict[str, str] | None = None, configured: int | None = None,
           torch_default: int = 64) -> tuple[int, str]:
    choice = threads.choose(configured, torch_default, environ or {}, **where)
    return choice.count, choice.reason


def test_the_affinity_mask_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert choose(machine(monkeypatch, tmp_path, 6)) == (6, "affinity 6 CPUs")


def test_never_more_than_torch_would_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 16)
    assert choose(where, torch_default=8) == (8, "torch's default 8")  # e.g. torch counts physical cores
    assert choose(where, torch_default=16) == (16, "affinity 16 CPUs")  # a tie: the OS's limit is the reason


def test_a_cgroup_v2_quota_smaller_than_the_mask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 8, "0::/docker/abc\n", {"docker/abc/cpu.max": "150000 100000\n"})
    assert choose(where) == (2, "cgroup quota 1.5 CPUs")  # rounded up
    where = machine(monkeypatch, tmp_path / "one", 8, files={"cpu.max": "100000 100000\n"})  # a container's own root
    assert choose(where) == (1, "cgroup quota 1 CPU")


def test_a_parent_cgroups_quota_limits_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 8, "0::/a/b\n", {"a/cpu.max": "300000 100000", "a/b/cpu.max": "max 100000"})
    assert choose(where) == (3, "cgroup quota 3 CPUs")


def test_cgroup_v2_max_is_no_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 4, "0::/user.slice\n", {"user.slice/cpu.max": "max 100000\n", "cpu.max": "max 100000\n"})
    assert choose(where) == (4, "affinity 4 CPUs")


def test_a_cgroup_v1_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = "12:memory:/job\n4:cpu,cpuacct:/job\n"
    where = machine(monkeypatch, tmp_path, 8, own, {"cpu/job/cpu.cfs_quota_us": "200000\n", "cpu/job/cpu.cfs_period_us": "100000\n"})
    assert choose(where) == (2, "cgroup quota 2 CPUs")
    unlimited = {"cpu/job/cpu.cfs_quota_us": "-1\n", "cpu/job/cpu.cfs_period_us": "100000\n"}
    assert choose(machine(monkeypatch, tmp_path / "none", 8, own, unlimited)) == (8, "affinity 8 CPUs")


def test_slurms_cpus_per_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 32)
    assert choose(where, {"SLURM_CPUS_PER_TASK": "4"}) == (4, "SLURM_CPUS_PER_TASK=4")
    # per task already: not shared out again among the node's tasks
    assert choose(where, {"SLURM_CPUS_PER_TASK": "4", "LOCAL_WORLD_SIZE": "4"}) == (4, "SLURM_CPUS_PER_TASK=4")


def test_local_processes_share_the_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 8, files={"cpu.max": "400000 100000"})
    assert choose(where, {"LOCAL_WORLD_SIZE": "2"}) == (2, "cgroup quota 4 CPUs / LOCAL_WORLD_SIZE=2")
    assert choose(where, {"LOCAL_WORLD_SIZE": "8"}) == (1, "cgroup quota 4 CPUs / LOCAL_WORLD_SIZE=8")  # at least 1


def test_omp_num_threads_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 2, files={"cpu.max": "100000 100000"})
    assert choose(where, {"OMP_NUM_THREADS": "3", "SLURM_CPUS_PER_TASK": "1"}) == (3, "OMP_NUM_THREADS=3")
    assert choose(where, {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"}) == (1, "OMP_NUM_THREADS=1")  # torchrun's
    assert choose(where, {"OMP_NUM_THREADS": ""}) == (1, "cgroup quota 1 CPU")  # empty, as unset


def test_train_threads_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = machine(monkeypatch, tmp_path, 2, files={"cpu.max": "100000 100000"})
    assert choose(where, {"OMP_NUM_THREADS": "1"}, configured=4, torch_default=2) == (4, "train.threads")


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "abc", "true"])
def test_a_bad_train_threads_is_refused(value: str) -> None:
    cfg, _ = compose_config(*TINY, f"train.threads={value}")
    with pytest.raises(GanctlError, match=r"^train.threads must be a whole number of torch threads, at least 1 "):
        config.check(cfg)


@pytest.mark.parametrize("value", ["1", "16", "null"])
def test_a_whole_number_or_null_is_a_train_threads(value: str) -> None:
    config.check(compose_config(*TINY, f"train.threads={value}")[0])


def test_a_bad_train_threads_is_one_message_on_the_command_line(tmp_path: Path) -> None:
    result = run_cli("train", *TINY, "train.threads=1.5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "train.threads must be a whole number of torch threads, at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_records_its_threads_and_why(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_cli("train", *TINY, *TINY_DCGAN, "train.steps=2", "train.threads=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["torch_threads"], summary["torch_threads_reason"]) == (1, "train.threads")
    assert "steps 0 -> 2, 1 torch thread (train.threads)" in (run_dir / "train.log").read_text()


def test_a_run_in_a_longer_process_leaves_torchs_count_as_it_was(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import torch

    before = torch.get_num_threads()
    with caplog.at_level(logging.INFO, logger="ganctl"):
        run(tmp_path, *TINY, *TINY_DCGAN, "train.steps=2", "train.threads=3")
    assert "steps 0 -> 2, 3 torch threads (train.threads)" in caplog.text
    assert json.loads((tmp_path / "summary.json").read_text())["torch_threads"] == 3
    assert torch.get_num_threads() == before

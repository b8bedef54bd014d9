"""torch's thread count: chosen from the CPUs the process may use (affinity, cgroup quota, SLURM, the
launcher's processes), never more than torch's own; train.threads and OMP_NUM_THREADS win. The OS is
mocked at its boundary: os.sched_getaffinity, cgroup files written into tmp_path, the environment."""

from __future__ import annotations

import json
import logging
import os
import time
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


# ----------------------------------------------------------------------------- Backoff: fewer threads while others compute


def fake_proc(tmp_path: Path, cpu_ticks: dict[str, list[int]], own: tuple[int, int], children: dict[str, tuple[int, int]]) -> Path:
    """A /proc with /proc/stat's CPU lines (name -> user nice system idle iowait irq softirq steal), this
    process's stat line (a name with spaces and parentheses, as a command may have) and its children's."""
    proc = tmp_path / "proc"
    (proc / "self" / "task" / "7").mkdir(parents=True)
    (proc / "stat").write_text("".join(f"{name} {' '.join(map(str, ticks))} 0 0\n" for name, ticks in cpu_ticks.items())
                               + "intr 12345 0 0\nctxt 999\n")

    def stat_line(pid: str, user: int, system: int) -> str:
        return f"{pid} (python (a b)) R 1 1 1 0 -1 4194304 100 0 0 0 {user} {system} 0 0 20 0 3 0 100 0 0\n"

    (proc / "self" / "stat").write_text(stat_line("7", *own))
    (proc / "self" / "task" / "7" / "children").write_text(" ".join([*children, "99"]))  # 99: a worker that has just exited
    for pid, (user, system) in children.items():
        (proc / pid).mkdir()
        (proc / pid / "stat").write_text(stat_line(pid, user, system))
    return proc


def test_cpu_times_come_from_the_runs_cpus_and_its_own_processes(tmp_path: Path) -> None:
    cpu_lines = {"cpu": [90, 9, 90, 900, 9, 9, 9, 9], "cpu0": [10, 1, 20, 500, 7, 2, 3, 4], "cpu1": [30, 0, 5, 100, 1, 0, 1, 0],
                 "cpu2": [50, 8, 65, 300, 1, 7, 5, 5]}
    proc = fake_proc(tmp_path, cpu_lines, own=(40, 5), children={"8": (6, 1), "9": (2, 0)})
    times = threads.read_cpu_times(frozenset({0, 2}), proc)
    busy_of = lambda ticks: sum(ticks) - ticks[3] - ticks[4]  # noqa: E731  (all but idle and iowait)
    tick = os.sysconf("SC_CLK_TCK")
    assert times == threads.CpuTimes((busy_of(cpu_lines["cpu0"]) + busy_of(cpu_lines["cpu2"])) / tick, (40 + 5 + 6 + 1 + 2) / tick)
    assert threads.read_cpu_times(frozenset({0}), tmp_path / "no-proc") is None  # (macOS: no /proc, no backing off)


@pytest.mark.parametrize("ceiling,others,count", [
    (2, 0.0, 2), (2, 0.3, 2),  # alone, or a light neighbour: the chosen count
    (2, 0.66, 1), (2, 1.0, 1),  # one busy process (two-thirds of a CPU against two threads, all of one against one)
    (2, 3.0, 1),  # three of them: never fewer than one thread
    (8, 3.0, 5), (8, 2.6, 5),  # the nearest whole number of the CPUs left
])
def test_the_fair_count_leaves_others_the_cpus_they_use(ceiling: int, others: float, count: int) -> None:
    assert threads.fair_count(ceiling, others) == count


class Machine:
    """A clock and /proc's CPU times the test moves on: other processes busy on `others` CPUs, this run on `own`."""

    def __init__(self) -> None:
        self.now, self.busy, self.own, self.counts = 100.0, 0.0, 0.0, []

    def advance(self, seconds: float, others: float, own: float) -> None:
        self.now += seconds
        self.busy += (others + own) * seconds
        self.own += own * seconds

    def backoff(self, choice: threads.ThreadChoice) -> threads.Backoff:
        return threads.Backoff(choice, window=1.0, read=lambda: threads.CpuTimes(self.busy, self.own),
                               set_threads=self.counts.append, clock=lambda: self.now)


def test_backoff_takes_fewer_threads_while_others_compute_and_more_when_they_stop() -> None:
    machine = Machine()
    backoff = machine.backoff(threads.ThreadChoice(2, "affinity 2 CPUs", ceiling=True))
    machine.advance(0.5, others=1.0, own=1.3)
    assert backoff.tick(1) is None  # (within the window: /proc is not read)
    machine.advance(0.6, others=0.7, own=1.3)
    assert backoff.tick(2) is None and machine.counts == []  # one reading alone changes nothing
    machine.advance(1.0, others=0.7, own=1.3)
    assert backoff.tick(3) == ("Step 3: 1 torch thread instead of 2, as other processes keep 0.7 of this run's 2 CPUs busy "
                               "(train.threads=N fixes the count)")
    assert machine.counts == [1]
    for step in (4, 5):
        machine.advance(1.0, others=1.0, own=1.0)
        assert backoff.tick(step) is None  # one thread beside one busy process: stays
    machine.advance(1.0, others=0.0, own=1.0)
    assert backoff.tick(6) is None
    machine.advance(1.0, others=0.1, own=1.9)
    assert "2 torch threads instead of 1" in backoff.tick(7)
    assert machine.counts == [1, 2]
    assert backoff.changes == [{"step": 3, "threads": 1, "others": 0.7}, {"step": 7, "threads": 2, "others": 0.1}]


@pytest.mark.parametrize("choice", [threads.ThreadChoice(2, "train.threads"), threads.ThreadChoice(2, "OMP_NUM_THREADS=2"),
                                    threads.ThreadChoice(1, "affinity 1 CPU", ceiling=True)])
def test_backoff_never_changes_a_count_the_user_set_or_one_thread(choice: threads.ThreadChoice) -> None:
    machine = Machine()
    backoff = machine.backoff(choice)
    for step in range(1, 6):
        machine.advance(1.0, others=2.0, own=1.0)
        assert backoff.tick(step) is None
    assert machine.counts == [] and backoff.changes == []


def test_a_run_beside_busy_processes_trains_with_fewer_threads_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The OS boundary mocked: /proc's CPU times say other processes keep one of two CPUs busy."""
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # (the suite fixes the count: conftest.py)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "cgroup_quota", lambda *args: None)

    def busy_neighbour(cpus: frozenset[int]) -> threads.CpuTimes:
        now = time.monotonic()  # every second: one second of this run's CPU time and one of another process's
        return threads.CpuTimes(busy=2.0 * now, own=1.0 * now)

    monkeypatch.setattr(threads, "read_cpu_times", busy_neighbour)
    monkeypatch.setattr(threads, "WINDOW_SECONDS", 0.0)  # (a reading after every step)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with caplog.at_level(logging.INFO, logger="ganctl"):
            run(tmp_path, *TINY, *TINY_DCGAN, "train.steps=4")
        assert torch.get_num_threads() == 2  # as the run found it
    finally:
        torch.set_num_threads(before)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["torch_threads"] == 1 and summary["torch_threads_changes"][0]["threads"] == 1
    assert "1 torch thread instead of 2, as other processes keep 1.0 of this run's 2 CPUs busy" in caplog.text  # (train.log's)

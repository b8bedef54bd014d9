"""How many intra-op threads torch runs with: the CPUs this process may really use.

torch's default is one thread per core it sees. It does not look at a container's CPU quota
(Docker `--cpus`, Kubernetes limits), SLURM's allocation or processes sharing the machine, and when
one of its threads waits for a core every parallel region waits for it. ganctl takes the smallest
of what limits the process:

- the affinity mask (`taskset`, cpusets): `os.sched_getaffinity(0)`;
- the cgroup CPU quota, v2 (`cpu.max`: "max 100000" or "200000 100000") or v1
  (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, -1 = none), of the process's own cgroup and its
  parents, rounded up (a quota of 1.5 CPUs: 2 threads);
- SLURM's `SLURM_CPUS_PER_TASK` (per task: SLURM shares a node's CPUs out among its tasks itself);
- elsewhere the launcher's local processes share the machine: the affinity and the quota are divided
  by `LOCAL_WORLD_SIZE` when set (torchrun with several processes also sets OMP_NUM_THREADS=1
  itself, which then wins as below);

and never more than torch's own count. What the user says always wins: `train.threads`, then
`OMP_NUM_THREADS`. No torch import here but in `applied`: the policy is a pure function.

While a run trains, other processes may take the CPUs it chose threads for. Two threads on two cores
train the default model at about a quarter of their idle speed beside one busy process and a tenth
beside three (every parallel op waits for the thread that lost its core), where one thread keeps most
of its own (docs/benchmarks.md). So on a CPU device a count chosen here, not set by the user, is a
ceiling: `Backoff` reads every second how much CPU time other processes took on this run's CPUs
(/proc/stat's busy time less this process's and its children's, the DataLoader workers) and trains
with the CPUs they leave, rounded to the nearest whole CPU, at least one; two readings in a row decide
a change, up or down. train.log records each change and summary.json the list. Results are
bit-for-bit the same only at the same count: `train.threads=N` (or OMP_NUM_THREADS) fixes it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
WINDOW_SECONDS = 1.0  # how often Backoff reads /proc
SELF_CGROUP = PROC / "self" / "cgroup"


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    reason: str  # what decided it, e.g. "affinity 2 CPUs", "cgroup quota 1.5 CPUs", "train.threads"
    ceiling: bool = False  # chosen from the OS's limits, not by the user: Backoff may train with fewer

    def describe(self) -> str:
        """'2 torch threads (affinity 2 CPUs)', as train.log says it."""
        return f"{self.count} torch thread{'s' if self.count != 1 else ''} ({self.reason})"


def positive_int(text: Optional[str]) -> Optional[int]:
    """An environment variable's whole number of at least 1 (OMP_NUM_THREADS may list one per
    nesting level, "4,2": the first is torch's), or None when unset, empty or not such a number."""
    try:
        value = int((text or "").split(",")[0].strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def decide(
    configured: Optional[int], environ: Mapping[str, str], affinity_cpus: int, quota_cpus: Optional[float],
    torch_default: int,
) -> ThreadChoice:
    """The thread count and why, from its inputs alone: `configured` is train.threads (None:
    automatic), `affinity_cpus` the CPUs in the affinity mask, `quota_cpus` the cgroup quota in CPUs
    (None: none), `torch_default` the count torch runs with when ganctl sets none."""
    if configured is not None:
        return ThreadChoice(configured, "train.threads")
    omp = positive_int(environ.get("OMP_NUM_THREADS"))
    if omp is not None:
        return ThreadChoice(omp, f"OMP_NUM_THREADS={omp}")
    slurm = positive_int(environ.get("SLURM_CPUS_PER_TASK"))
    local_processes = positive_int(environ.get("LOCAL_WORLD_SIZE")) or 1
    shared = f" / LOCAL_WORLD_SIZE={local_processes}" if local_processes > 1 and slurm is None else ""
    limits = [(affinity_cpus, f"affinity {affinity_cpus} CPU{'s' if affinity_cpus != 1 else ''}")]
    if quota_cpus is not None:
        limits.append((math.ceil(quota_cpus), f"cgroup quota {quota_cpus:g} CPU{'s' if quota_cpus != 1 else ''}"))
    if shared:  # the machine's CPUs shared out among the launcher's local processes
        limits = [(cpus // local_processes, reason + shared) for cpus, reason in limits]
    if slurm is not None:  # per task already: SLURM shares out a node's CPUs itself
        limits.append((slurm, f"SLURM_CPUS_PER_TASK={slurm}"))
    count, reason = min(limits, key=lambda limit: limit[0])  # the first of equals: the OS's own limits first
    if count > torch_default:
        count, reason = torch_default, f"torch's default {torch_default}"
    return ThreadChoice(max(1, count), reason, ceiling=True)


def affinity_mask() -> frozenset[int]:
    """The CPUs this process may run on (all of them where the OS has no affinity call, as on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def cpus_in_affinity_mask() -> int:
    return len(affinity_mask())


def own_cgroups(self_cgroup: Path) -> dict[str, str]:
    """This process's cgroup path per hierarchy from /proc/self/cgroup: "v2" for the unified one
    ("0::/a/b"), "v1" for the v1 hierarchy holding the cpu controller ("4:cpu,cpuacct:/a/b")."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["v1"] = path
    return paths


def with_parents(base: Path, path: str) -> list[Path]:
    """base/a/b, base/a and base for path "/a/b": a quota anywhere above a cgroup limits it too. A path
    that is not under base (the host's name for a container's cgroup) leaves base alone."""
    parts = [part for part in path.split("/") if part]
    return [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def read_quota(directory: Path) -> Optional[float]:
    """The CPUs a cgroup directory's quota allows (None: none set, or no such files)."""
    try:
        fields = (directory / "cpu.max").read_text().split()  # v2
        return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())  # v1
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> Optional[float]:
    """The smallest CPU quota over this process's cgroup and its parents, v2 (files in `root`'s
    tree) or v1 (in `root`/cpu's, or cpu,cpuacct's), in CPUs; None when no quota is set."""
    paths = own_cgroups(self_cgroup)
    directories = with_parents(root, paths.get("v2", "/"))
    for controller in ("cpu", "cpu,cpuacct"):
        directories += with_parents(root / controller, paths.get("v1", "/"))
    quotas = [quota for quota in map(read_quota, directories) if quota is not None]
    return min(quotas, default=None)


def choose(
    configured: Optional[int], torch_default: int, environ: Optional[Mapping[str, str]] = None,
    root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP,
) -> ThreadChoice:
    """`decide` with its inputs read from this process: the affinity mask, the cgroup files under
    `root` for the cgroup `self_cgroup` names, and the environment."""
    return decide(configured, os.environ if environ is None else environ, cpus_in_affinity_mask(), cgroup_quota(root, self_cgroup),
                  torch_default)


@contextlib.contextmanager
def applied(configured: Optional[int]) -> Iterator[ThreadChoice]:
    """torch runs with the chosen count inside the block and as before after it (a run in a longer
    process, as the tests and sweeps train, leaves the count as it found it). The count torch has
    on entry is its default: its own, or what a sweep's job or a script set before the run."""
    import torch

    before = torch.get_num_threads()
    choice = choose(configured, before)
    if choice.count != before:  # (torch's own state untouched where nothing changes)
        torch.set_num_threads(choice.count)
    try:
        yield choice
    finally:
        if torch.get_num_threads() != before:  # (Backoff may have changed it too)
            torch.set_num_threads(before)


# ----------------------------------------------------------------------------- backing off while others compute


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds so far: `busy`, of every process on the CPUs a run may use; `own`, of the run's process
    and its children."""

    busy: float
    own: float


def process_seconds(stat: str) -> float:
    """A /proc/<pid>/stat line's user + system time, in clock ticks (the name in parentheses may hold spaces)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return float(fields[11]) + float(fields[12])  # utime and stime: the line's 14th and 15th fields


def read_cpu_times(cpus: frozenset[int], proc: Path = PROC) -> Optional[CpuTimes]:
    """The CPU times now, from /proc (None where there is no such file, as on macOS): the busy ticks of
    `cpus` in /proc/stat (all but idle and iowait; steal too: a virtual CPU the host runs elsewhere
    stalls the threads on it as a busy neighbour does) and this process's ticks with its children's."""
    try:
        busy = 0.0
        for line in (proc / "stat").read_text().splitlines():
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                user, nice, system, idle, iowait, irq, softirq, steal = (float(tick) for tick in ticks[:8])
                busy += user + nice + system + irq + softirq + steal
        own = process_seconds((proc / "self" / "stat").read_text())
        for children in (proc / "self" / "task").glob("*/children"):
            for pid in children.read_text().split():
                with contextlib.suppress(OSError, ValueError, IndexError):  # (a worker that has just exited)
                    own += process_seconds((proc / pid / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return CpuTimes(busy / tick, own / tick)


def others_using(before: CpuTimes, after: CpuTimes, seconds: float) -> float:
    """CPUs that other processes kept busy between two readings `seconds` apart."""
    return max(0.0, (after.busy - before.busy) - (after.own - before.own)) / seconds


def fair_count(ceiling: int, others: float) -> int:
    """Threads for the CPUs other processes leave: the nearest whole number, from 1 to `ceiling`."""
    return min(ceiling, max(1, math.floor(ceiling - others + 0.5)))


class Backoff:
    """Trains with fewer torch threads while other processes keep this run's CPUs busy, and with the
    chosen count again once they stop (see the module's docstring). `tick(step)` after every step
    costs a clock read; once a `window` of seconds (WINDOW_SECONDS) it reads /proc. Does nothing for a
    count the user set, for one thread, or where /proc is not there."""

    def __init__(self, choice: ThreadChoice, window: Optional[float] = None,
                 read: Optional[Callable[[], Optional[CpuTimes]]] = None, set_threads: Optional[Callable[[int], None]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if read is None:
            cpus = affinity_mask()
            read = lambda: read_cpu_times(cpus)  # noqa: E731
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self.ceiling = self.count = choice.count
        self.read, self.set_threads, self.clock = read, set_threads, clock
        self.window = WINDOW_SECONDS if window is None else window
        self.changes: list[dict[str, float]] = []  # {"step", "threads", "others"} for each change
        self.previous = self.count  # what the last reading asked for
        reading = self.read() if choice.ceiling and choice.count > 1 else None
        self.last = (self.clock(), reading) if reading else None  # (when, CPU times) of the last reading; None: off

    def tick(self, step: int) -> Optional[str]:
        """After `step`: a change of thread count when two readings in a row ask for it, and what it says."""
        if self.last is None:
            return None
        now = self.clock()
        if now - self.last[0] < self.window:
            return None
        times = self.read()
        if times is None:
            self.last = None
            return None
        others = others_using(self.last[1], times, now - self.last[0])
        self.last = (now, times)
        target, asked_before = fair_count(self.ceiling, others), self.previous
        self.previous = target
        if target == self.count or target != asked_before:  # (one reading alone changes nothing)
            return None
        self.set_threads(target)
        self.changes.append({"step": step, "threads": target, "others": round(others, 2)})
        message = (f"Step {step}: {target} torch thread{'s' if target != 1 else ''} instead of {self.count}, as other processes "
                   f"keep {others:.1f} of this run's {self.ceiling} CPUs busy (train.threads=N fixes the count)")
        self.count = target
        return message

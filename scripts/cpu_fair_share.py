"""The default run's speed on a CPU alone and beside busy processes: ganctl's threads against torch's default.

    python scripts/cpu_fair_share.py --out fair                       # 300 steps, loads 0, 1 and 3, two repeats
    python scripts/cpu_fair_share.py --out fair --docs docs/benchmarks.md   # and its table into the docs

Each job trains the default recipe (`ganctl train`, no evaluation, samples or curves) in its own process
and reads images/s from its summary.json, while 0, 1 or 3 CPU-bound processes (Python busy loops) run
beside it. Three ways to thread it, one after the other at each load, so that they share whatever else
the machine does:

- `ganctl`: no thread setting: ganctl's count, lowered while other processes keep the CPUs busy
  (ganctl/threads.py, `Backoff`);
- `torch default`: `train.threads` set to torch's own count (one per CPU), fixed, as torch runs
  without ganctl's policy;
- `1 thread`: `train.threads=1`.

The table gives each job's images/s and its share of ganctl's images/s alone; beside k busy processes
a process's fair share of the machine is 1 / (1 + k). Not a test: the figures depend on the machine and
on what else it runs. `--table results.json` prints (and with --docs writes) the table of earlier results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUIET = ["train.sample_every=0", "train.eval_every=0", "train.ckpt_every=0", "train.curves=false"]
BEGIN, END = "<!-- cpu_fair_share:begin -->", "<!-- cpu_fair_share:end -->"


def cpu_model() -> str:
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        return found.group(1).strip() if found else platform.processor()
    except OSError:
        return platform.processor()


def train_once(run_dir: Path, steps: int, threads: list[str]) -> dict:
    """One default run of `steps` steps in its own process; its summary."""
    command = [sys.executable, "-m", "ganctl", "train", f"train.steps={steps}", *QUIET, *threads, f"hydra.run.dir={run_dir}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((run_dir / "summary.json").read_text())


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(out: Path, steps: int, loads: list[int], repeats: int, cpus: int) -> list[dict]:
    ways = {"ganctl": [], "torch default": [f"train.threads={cpus}"], "1 thread": ["train.threads=1"]}
    rows = []
    for repeat in range(repeats):
        for load in loads:
            beside = busy_processes(load)
            time.sleep(1.0)  # (the busy loops running before the run starts)
            try:
                for way, threads in ways.items():
                    summary = train_once(out / f"{way.replace(' ', '_')}-{load}-{repeat}", steps, threads)
                    row = {"way": way, "busy": load, "repeat": repeat, "images_per_second": summary["images_per_second"],
                           "threads_at_end": summary["torch_threads"], "changes": summary.get("torch_threads_changes", [])}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                for process in beside:
                    process.kill()
                    process.wait()
    return rows


def table(rows: list[dict], cpus: int, steps: int, cpu: str) -> str:
    def speeds(way: str, load: int) -> list[float]:
        return [row["images_per_second"] for row in rows if row["way"] == way and row["busy"] == load]

    alone = statistics.mean(speeds("ganctl", 0))
    loads = sorted({row["busy"] for row in rows})
    lines = [f"Default recipe, {steps} steps per job, {cpu}, {cpus} CPUs; images/s of each repeat, and the mean's share "
             f"of ganctl's alone ({alone:,.0f} images/s).", "",
             "| busy processes beside it | fair share | ganctl | torch default (fixed) | 1 thread |", "|---|---|---|---|---|"]
    for load in loads:
        cells = []
        for way in ("ganctl", "torch default", "1 thread"):
            values = speeds(way, load)
            cells.append(f"{' / '.join(f'{value:,.0f}' for value in values)} ({statistics.mean(values) / alone:.0%})")
        lines.append(f"| {load} | {1 / (1 + load):.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_docs(docs: Path, text: str) -> None:
    """The table between the markers in `docs` (added at its end the first time)."""
    current = docs.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in current and END in current:
        current = current[: current.index(BEGIN)] + block + current[current.index(END) + len(END) :]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    docs.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="a folder for the runs and results.json")
    parser.add_argument("--table", type=Path, help="no runs: the table of this results.json")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--loads", default="0,1,3", help="busy processes beside the run, comma-separated (0 first)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--docs", type=Path, help="write the table into this markdown file, between its markers")
    args = parser.parse_args()
    if args.table:
        results = json.loads(args.table.read_text())
        return show(table(results["rows"], results["cpus"], results["steps"], results["cpu"]), args.docs)
    if args.out is None:
        parser.error("--out is needed to measure (or --table to show earlier results)")
    import torch

    cpus = torch.get_num_threads()
    loads = [int(load) for load in args.loads.split(",")]
    if loads[0] != 0:
        parser.error("--loads must start with 0: every share is of the speed alone")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = measure(args.out, args.steps, loads, args.repeats, cpus)
    (args.out / "results.json").write_text(json.dumps({"cpu": cpu_model(), "cpus": cpus, "steps": args.steps, "rows": rows}, indent=1))
    return show(table(rows, cpus, args.steps, cpu_model()), args.docs)


def show(text: str, docs: Path | None) -> int:
    print(text)
    if docs:
        write_docs(docs, text)
    return 0


if __name__ == "__main__":
    os.environ.pop("OMP_NUM_THREADS", None)  # (each way sets its own count)
    sys.exit(main())

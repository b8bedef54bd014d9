"""What pruning saves (docs/sweeps.md): the same 20-trial Optuna search over the learning rate (G's and
D's, tied) and R1's gamma on the bundled digits, without pruning and with the median pruner, each
into a sweep directory of its own under OUT. Prints a markdown table: wall-clock, training steps
run in all, trials complete / pruned, and the best FID (of the PooledPixels features: offline, no
Inception weights; lower is better).

    python scripts/sweep_pruning.py OUT [--together]

--together runs both searches at once (one torch thread each), so that a shared machine's load
weighs on both alike; otherwise one after the other (two threads each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SEARCH = [
    "hydra/sweeper=optuna", "hydra.sweeper.n_trials=20", "hydra.sweeper.sampler.seed=0",
    "optimizer.g.lr=tag(log, interval(3e-4, 1e-2))", "optimizer.d.lr=${optimizer.g.lr}",
    "loss.regularisers.r1.gamma=tag(log, interval(0.01, 1.0))",
    "train.steps=800", "train.eval_every=200", "train.ckpt_every=200", "train.log_every=100", "train.sample_every=0",
    "train.curves=false", "metrics.names=[fid]", "metrics.num_fake=1000", "metrics.num_real=1000",
    "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}",
]
PRUNERS = {
    "without pruning": ["hydra/sweeper/pruner=none"],
    "median pruner": ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=5",
                      "hydra.sweeper.pruner.n_warmup_steps=200"],
}


def command(sweep_dir: Path, pruner: list[str]) -> list[str]:
    return [sys.executable, "-m", "ganctl", "train", "-m", *SEARCH, *pruner, f"hydra.sweep.dir={sweep_dir}"]


def figures(sweep_dir: Path, wall: float) -> dict:
    """What the study and the jobs' records say: trials by state, steps trained, the best FID."""
    import optuna
    from optuna.trial import TrialState

    record = json.loads((sweep_dir / "study.json").read_text())
    study = optuna.load_study(study_name=record["study_name"], storage=record["storage"])
    trials = study.get_trials(deepcopy=False)
    steps = 0
    for trial in trials:
        status = sweep_dir / str(trial.number) / "status.json"
        steps += json.loads(status.read_text()).get("step", 0) if status.is_file() else 0
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    return {"wall_seconds": wall, "steps": steps, "complete": len(complete),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "best_fid": best.value if best else None, "best_params": best.params if best else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--together", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1" if args.together else os.environ.get("OMP_NUM_THREADS", "2")}
    runs = {name: args.out / name.replace(" ", "_") for name in PRUNERS}
    started, processes, walls = time.perf_counter(), {}, {}
    for name, sweep_dir in runs.items():
        log = open(args.out / f"{sweep_dir.name}.log", "w")
        processes[name] = subprocess.Popen(command(sweep_dir, PRUNERS[name]), env=env, stdout=log, stderr=subprocess.STDOUT)
        if not args.together:
            processes[name].wait()
            walls[name] = time.perf_counter() - started
            started = time.perf_counter()
    while len(walls) < len(processes):  # together: each search's own finishing time
        for name, process in processes.items():
            if name not in walls and process.poll() is not None:
                walls[name] = time.perf_counter() - started
        time.sleep(1)
    results = {name: figures(sweep_dir, walls[name]) for name, sweep_dir in runs.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| search | wall | steps trained | trials complete / pruned / failed | best FID (pooled pixels) | its lr, R1 gamma |")
    print("|---|---:|---:|---:|---:|---|")
    for name, result in results.items():
        params = result["best_params"] or {}
        print(f"| {name} | {result['wall_seconds'] / 60:.1f} min | {result['steps']:,} | {result['complete']} / {result['pruned']} / {result['failed']} | "
              f"{result['best_fid']:.4g} | {params.get('optimizer.g.lr', float('nan')):.2e}, "
              f"{params.get('loss.regularisers.r1.gamma', float('nan')):.3g} |")


if __name__ == "__main__":
    main()

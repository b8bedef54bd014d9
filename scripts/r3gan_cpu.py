"""R3GAN and finite-difference R1/R2 on this CPU against the default run (docs/benchmarks.md, issue 30).

Variants on the bundled digits, each trained with three seeds and scored by the shipped digit judge
(`ganctl eval RUN`: FD on the judge's features, class balance):

- `default`: the default run, 8,500 steps;
- `default, R1/R2 by finite differences`: the same with `sigma=0.01` on both penalties, 8,500 steps;
- `narrow R3GAN (width W)`: `model=r3gan` at width W, given the default's compute budget.

Equal budgets are CPU seconds, not wall-clock: each variant's cost per step is measured as the
process CPU time of one-thread runs of two lengths (the difference, so start-up cancels), which a
busy neighbour changes far less than wall-clock. The R3GAN runs get 8,500 x (default's cost per
step / R3GAN's) steps. Prints the costs and a markdown table; results.json holds every figure.

    python scripts/r3gan_cpu.py OUT [--width 32] [--seeds 0 1 2] [--steps 8500] [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

R3GAN = ["model=r3gan"]
SIGMA = ["loss.regularisers.r1.sigma=0.01", "loss.regularisers.r2.sigma=0.01"]


def train(run: Path, overrides: list[str], steps: int, seed: int) -> float:
    """Train one run with one thread; its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "ganctl", "train", *overrides, f"train.steps={steps}", f"train.seed={seed}",
                    "train.sample_every=0", "train.curves=false", f"train.ckpt_every={steps}", f"hydra.run.dir={run}"],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cost_per_step(out: Path, overrides: list[str], short: int) -> float:
    """CPU seconds per step: (a run of 3 x short steps - a run of short steps) / (2 x short)."""
    seconds = [train(out / f"{length}", overrides, length, 0) for length in (short, 3 * short)]
    return (seconds[1] - seconds[0]) / (2 * short)


def score(run: Path) -> dict[str, float]:
    out = run / "judge.json"
    subprocess.run([sys.executable, "-m", "ganctl", "eval", str(run), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    cards = {card["metric"]: card for card in json.loads(out.read_text())}
    return {"fd": cards["fid"]["value"], "class_balance": cards["class_balance"]["value"],
            "present": cards["class_balance"]["options"]["present"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8500, help="the default's steps: the budget")
    parser.add_argument("--parallel", type=int, default=2, help="runs trained at once (after the costs, which are measured alone)")
    args = parser.parse_args()
    narrow = [*R3GAN, f"model.generator.width={args.width}", f"model.discriminator.width={args.width}"]

    costs_file = args.out / "costs.json"
    if costs_file.exists():
        costs = json.loads(costs_file.read_text())
    else:
        costs = {"default": cost_per_step(args.out / "cost_default", [], 400),
                 "sigma": cost_per_step(args.out / "cost_sigma", SIGMA, 400),
                 "r3gan": cost_per_step(args.out / "cost_r3gan", narrow, 10)}
        args.out.mkdir(parents=True, exist_ok=True)
        costs_file.write_text(json.dumps(costs, indent=2) + "\n")
    r3gan_steps = max(1, round(args.steps * costs["default"] / costs["r3gan"]))
    variants = {"default": ([], args.steps), "default, R1/R2 by finite differences (sigma 0.01)": (SIGMA, args.steps),
                f"narrow R3GAN (width {args.width}), the default's CPU budget": (narrow, r3gan_steps)}

    runs = {(name, seed): (args.out / f"variant{index}_seed{seed}", overrides, steps)
            for index, (name, (overrides, steps)) in enumerate(variants.items()) for seed in args.seeds}
    with ThreadPoolExecutor(args.parallel) as pool:  # one thread each: a run's figures do not depend on its neighbour
        list(pool.map(lambda key: train(*runs[key][:2], runs[key][2], key[1]) if not (runs[key][0] / "checkpoints" / "last.pt").exists()
                      else None, runs))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for (name, seed), (run, _, steps) in runs.items():
        results[name].append({"seed": seed, "steps": steps, **score(run)})
    (args.out / "results.json").write_text(json.dumps({"costs": costs, "results": results}, indent=2) + "\n")

    print(f"CPU seconds per step (one thread): default {costs['default'] * 1e3:.1f} ms, finite differences "
          f"{costs['sigma'] * 1e3:.1f} ms, narrow R3GAN {costs['r3gan'] * 1e3:.1f} ms\n")
    print("| variant | steps | judge FD by seed | mean | class balance (mean) |")
    print("|---|---:|---|---:|---:|")
    for name, rows in results.items():
        fds = [row["fd"] for row in rows]
        print(f"| {name} | {rows[0]['steps']:,} | {', '.join(f'{fd:.1f}' for fd in fds)} | {statistics.mean(fds):.1f} | "
              f"{statistics.mean(row['class_balance'] for row in rows):.3f} |")


if __name__ == "__main__":
    main()

"""What ADA (train.ada) costs a training step, and its augmentation pipeline alone.

    python scripts/ada_cost.py                          # the default run (dcgan_r1, 28x28 digits, batch 64)
    python scripts/ada_cost.py --steps 30 --rounds 5 model=dcgan dataset.image_size=32
    python scripts/ada_cost.py --device cuda train.precision=bf16

Builds the GAN of the composed config (overrides as for `ganctl train`) twice, with
train.ada.mode=none and with train.ada.mode=fixed at p = 0.5 (every transform is computed for every
image whatever p is, so the cost does not depend on p; the adaptive mode adds one small reduction
per step), and times `GAN.step` over --steps steps after a warm-up, the two taking turns for
--rounds rounds so that a shared machine's drifting speed touches them alike. Also times the
pipeline alone (all seven transforms, forward and backward) on one batch of the data's shape.
Reports medians. Not a test: the figures depend on the machine and its load (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ganctl import data as datasets  # noqa: E402
from ganctl.ada import pipeline  # noqa: E402
from ganctl.device import resolve_device  # noqa: E402
from ganctl.gan import GAN  # noqa: E402
from ganctl.train import seed_everything  # noqa: E402
from helpers import compose_config  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(gan: GAN, batches, steps: int, device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        gan.step(batches, step)
    synchronize(device)
    return (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, as a run's)")
    parser.add_argument("override", nargs="*", help="ganctl overrides, e.g. model=dcgan train.batch_size=128")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gans, batches = {}, {}
    for mode in ("none", "fixed"):
        cfg, _ = compose_config(*args.override, f"train.device={args.device}", f"train.ada.mode={mode}", "train.ada.p=0.5")
        seed_everything(cfg.train.seed)
        data = datasets.build(cfg.dataset, device)
        gans[mode] = GAN.from_config(cfg, data.channels, data.image_size, device)
        batches[mode] = datasets.endless(data, cfg.train.batch_size)
        seconds_per_step(gans[mode], batches[mode], 3, device)  # warm-up
    times = {mode: [] for mode in gans}
    for _ in range(args.rounds):
        for mode in gans:
            times[mode].append(seconds_per_step(gans[mode], batches[mode], args.steps, device))
    real, _ = next(batches["none"])
    images = real.float().requires_grad_(True)
    pipeline_times = []
    for _ in range(10 * args.rounds):
        synchronize(device)
        started = time.perf_counter()
        pipeline(images, 0.5).sum().backward()
        synchronize(device)
        pipeline_times.append(time.perf_counter() - started)
    none, fixed = statistics.median(times["none"]), statistics.median(times["fixed"])
    print(f"config: {' '.join(args.override) or '(defaults)'}; batch {images.shape[0]} of {tuple(images.shape[1:])}; "
          f"{device}, {torch.get_num_threads()} threads")
    print(f"step without ADA: {none * 1e3:.1f} ms   with ADA: {fixed * 1e3:.1f} ms   "
          f"({fixed / none:.2f}x the time, +{(fixed - none) * 1e3:.1f} ms)")
    print(f"pipeline alone (7 transforms, forward + backward, one batch): {statistics.median(pipeline_times) * 1e3:.2f} ms "
          f"(D sees 3 batches a step with critic_steps=1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

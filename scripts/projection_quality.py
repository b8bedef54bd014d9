#!/usr/bin/env python
"""projection_quality: how well `ganctl project` inverts a run's generator (docs/benchmarks.md).

    python scripts/projection_quality.py RUN --out DIR [--num 16] [--steps 1000] [-- extra ganctl project flags]

Two checks, each through the real commands (`ganctl sample`, `ganctl project`):

1. G's own samples: `ganctl sample RUN --num N --seed 1 --images-dir DIR/own`, then projected back; a
   latent that G maps to the same image exists, so the mean PSNR says how close the optimisation gets
   (the target is at least 30 dB on the default run).
2. Held-out real digits (the bundled MNIST test split, which training never sees: its first N, written
   as PNGs to DIR/real), projected; each reconstruction's PSNR is set beside the PSNR of the digit's
   nearest training image (the smallest pixel distance among the 4,000 bundled training digits, which
   is also the highest PSNR any lookup in the training set can reach). A reconstruction closer than
   that shows G makes digits it was never shown, not copies of the ones it was.

Prints a markdown table and writes DIR/quality.json. Only for runs on the bundled digits at 28x28.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganctl.data import bundled_mnist


def ganctl(*args: str) -> None:
    command = [sys.executable, "-m", "ganctl", *args]
    print("$ ganctl " + " ".join(args), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(f"`ganctl {' '.join(args)}` failed with exit code {result.returncode}")


def nearest_psnr(targets: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For uint8 targets (N, 1, H, W), the PSNR (dB) of their nearest training image (smallest MSE) and its index."""
    a = targets.flatten(1).double() / 255
    b = train.flatten(1).double() / 255
    mse = (a.square().sum(1, keepdim=True) - 2 * a @ b.t() + b.square().sum(1)[None]) / a.shape[1]  # (N, M)
    best, index = mse.clamp_min(0).min(dim=1)
    return 10 * torch.log10(1 / best), index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory trained on the bundled digits (e.g. the default run)")
    parser.add_argument("--out", required=True, help="a folder for the images, projections and quality.json")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("extra", nargs="*", help="more `ganctl project` flags, after --")
    options = parser.parse_args()
    out = Path(options.out)
    own, real = out / "own", out / "real"
    real.mkdir(parents=True, exist_ok=True)

    ganctl("sample", options.run, "--num", str(options.num), "--seed", "1", "--images-dir", str(own), "--out", str(out / "own.png"))
    test_images, test_labels = bundled_mnist("test")
    for i, image in enumerate(test_images[: options.num]):
        Image.fromarray(image[0].numpy()).save(real / f"{i:04d}.png")

    timings = {}
    for name, folder in (("own", own), ("real", real)):
        start = time.perf_counter()
        ganctl("project", options.run, str(folder), "--out", str(out / f"{name}_projected"), "--steps", str(options.steps),
               *options.extra)
        timings[name] = time.perf_counter() - start

    reports = {name: json.loads((out / f"{name}_projected" / "projection.json").read_text()) for name in ("own", "real")}
    train_images, _ = bundled_mnist("train")
    nearest, index = nearest_psnr(test_images[: options.num], train_images)
    projected = torch.tensor([float(row["psnr"]) for row in reports["real"]["images"]])  # ("inf": pixel-exact)
    beats = int((projected > nearest).sum())

    print(f"\n| held-out digit | label | projection PSNR (dB) | nearest training image PSNR (dB) |\n|---|---|---|---|")
    for i in range(options.num):
        print(f"| {i:04d} | {int(test_labels[i])} | {projected[i]:.2f} | {nearest[i]:.2f} (train #{int(index[i])}) |")
    summary = {
        "checkpoint_step": reports["own"]["checkpoint_step"], "steps": options.steps, "perceptual": reports["own"]["perceptual"],
        "own_mean_psnr": reports["own"]["mean_psnr"], "own_min_psnr": min(float(row["psnr"]) for row in reports["own"]["images"]),
        "own_mean_ssim": reports["own"]["mean_ssim"],
        "real_mean_psnr": round(float(projected.mean()), 3), "real_mean_ssim": reports["real"]["mean_ssim"],
        "nearest_train_mean_psnr": round(float(nearest.mean()), 3), "real_beats_nearest": f"{beats}/{options.num}",
        "seconds": {name: round(value, 1) for name, value in timings.items()},
    }
    print(f"\nG's own {options.num} samples: mean PSNR {float(summary['own_mean_psnr']):.2f} dB (lowest {summary['own_min_psnr']:.2f}), "
          f"SSIM {summary['own_mean_ssim']:.4f}")
    print(f"{options.num} held-out digits: mean PSNR {summary['real_mean_psnr']:.2f} dB against {summary['nearest_train_mean_psnr']:.2f} dB "
          f"for their nearest training images; the projection is closer for {beats} of {options.num}")
    (out / "quality.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

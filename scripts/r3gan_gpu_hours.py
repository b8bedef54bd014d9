"""What the R3GAN recipes ask of a GPU, estimated from counted FLOPs (docs/benchmarks.md, issue 30).

No GPU has been available to this project, so these are estimates, not measurements. For each recipe
(`experiment=cifar10_r3gan`, `ffhq64_r3gan`, `ffhq256_r3gan`, `imagenet32_r3gan`) it builds ganctl's
GAN at full size and counts the floating-point operations of one real `GAN.step` (D's update with
R1 and R2 on every step, G's with the re-scored reals) with torch's FlopCounterMode, on the CPU at a
batch of 2; divided by the batch, that is the work per training image. Times the recipe's images
(train.steps x train.batch_size) it is the run's work; at an assumed share of one H100's dense bf16
peak (989 TFLOP/s) it is GPU-hours. Prints a markdown table.

    python scripts/r3gan_gpu_hours.py [--utilisation 0.15 0.35] [--batch 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch.utils.flop_counter import FlopCounterMode

from ganctl import config
from ganctl.gan import GAN

RECIPES = {"cifar10_r3gan": (3, 32, 10), "ffhq64_r3gan": (3, 64, 0), "ffhq256_r3gan": (3, 256, 0), "imagenet32_r3gan": (3, 32, 1000)}
H100_BF16_DENSE = 989e12  # FLOP/s, NVIDIA's H100 SXM datasheet (dense, without sparsity)


def step_flops(recipe: str, channels: int, size: int, classes: int, batch: int) -> tuple[float, int]:
    """FLOPs of one GAN.step of the recipe's GAN at `batch` images, and the recipe's total images."""
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={recipe}", "train.precision=fp32", "train.device=cpu",
                                                      "train.channels_last=false"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    images = cfg.train.steps * cfg.train.batch_size
    gan = GAN.from_config(cfg, channels, size, torch.device("cpu"), classes=[str(c) for c in range(classes)] if classes else None)
    real = torch.rand(batch, channels, size, size) * 2 - 1
    labels = torch.randint(classes, (batch,)) if classes else None
    torch.manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        gan.step(iter([(real, labels)] * cfg.loss.critic_steps), 1)
    return counter.get_total_flops(), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utilisation", type=float, nargs=2, default=[0.15, 0.35], help="the assumed share of peak: low, high")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    low, high = args.utilisation
    print(f"| recipe | images | training FLOPs per image | run's FLOPs | H100-hours at {high:.0%} of peak | at {low:.0%} |")
    print("|---|---:|---:|---:|---:|---:|")
    for recipe, (channels, size, classes) in RECIPES.items():
        started = time.perf_counter()
        flops, images = step_flops(recipe, channels, size, classes, args.batch)
        per_image = flops / args.batch
        total = per_image * images
        hours = [total / (H100_BF16_DENSE * share) / 3600 for share in (high, low)]
        print(f"| `{recipe}` | {images / 1e6:.0f}M | {per_image / 1e9:.1f} GFLOP | {total:.2e} | {hours[0]:,.0f} | {hours[1]:,.0f} |"
              f"  <!-- counted in {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()

"""What one generator step of a recipe costs in floating-point operations, counted, not timed, and the
GPU time of the whole recipe that follows from an assumed sustained throughput.

    python scripts/recipe_cost.py                                   # the CIFAR-10 ResNet and BigGAN recipes
    python scripts/recipe_cost.py --experiments cifar10_sngan --tflops 20 40 --json cost.json

Each recipe's GAN is built from the composed config (`ganctl.gan.GAN.from_config`, exactly the
networks, loss, penalty and critic steps a run trains) for CIFAR-10's shape, and one real
`GAN.step` runs under torch's FLOP formulas (those of FlopCounterMode) on random stand-in batches of `--count-batch` images
(the convolutions' and matmuls' forward and backward FLOPs, the gradient penalty's double backward
included; elementwise work is not counted). FLOPs are linear in the batch: the count is scaled to
the recipe's `train.batch_size`, then multiplied by `train.steps`. Dividing by a sustained
throughput (`--tflops`, what a GPU delivers on these small convolutions, well under its peak) gives
an estimate of the training time -- an estimate, not a measurement; the data loading, metrics and
checkpoints of a real run are not in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import compose_config  # noqa: E402  (the real config, as `ganctl train` composes it)

from ganctl.gan import GAN  # noqa: E402

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
RECIPES = ["cifar10_sngan", "cifar10_cgan_pd", "cifar10_wgangp_resnet", "cifar10_biggan"]


class FlopCount(TorchDispatchMode):
    """torch's FLOP formulas (those of FlopCounterMode) summed over every op dispatched; without
    FlopCounterMode's module tracking, whose hooks fail inside the gradient penalty's autograd.grad."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def step_flops(experiment: str, count_batch: int) -> tuple[int, dict]:
    """FLOPs of one GAN.step at `count_batch` images per batch, and the recipe's schedule."""
    cfg, _ = compose_config(f"experiment={experiment}", "train.device=cpu", "train.channels_last=false")
    torch.manual_seed(0)
    gan = GAN.from_config(cfg, 3, 32, torch.device("cpu"), classes=CIFAR10_CLASSES)
    conditional = cfg.conditioning.generator != "none"

    def batches():
        while True:
            images = torch.rand(count_batch, 3, 32, 32) * 2 - 1
            yield images, (torch.randint(10, (count_batch,)) if conditional else None)

    with FlopCount() as counter:
        gan.step(batches(), 1)
    schedule = {"batch_size": cfg.train.batch_size, "steps": cfg.train.steps, "critic_steps": cfg.loss.critic_steps,
                "generator_parameters": sum(p.numel() for p in gan.generator.parameters()),
                "critic_parameters": sum(p.numel() for p in gan.discriminator.parameters())}
    return counter.total, schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=RECIPES)
    parser.add_argument("--count-batch", type=int, default=2, help="images per batch in the counted step")
    parser.add_argument("--tflops", type=float, nargs="+", default=[20.0, 40.0],
                        help="sustained TFLOP/s to turn the count into hours")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for experiment in args.experiments:
        flops, schedule = step_flops(experiment, args.count_batch)
        per_step = flops * schedule["batch_size"] / args.count_batch
        total = per_step * schedule["steps"]
        hours = {f"{tflops:g}": total / (tflops * 1e12) / 3600 for tflops in args.tflops}
        rows.append({"experiment": experiment, **schedule, "tflop_per_step": per_step / 1e12,
                     "pflop_total": total / 1e15, "hours_at_tflops": hours})
        print(f"{experiment}: G {schedule['generator_parameters']:,} / D {schedule['critic_parameters']:,} parameters, "
              f"{per_step / 1e12:.2f} TFLOP per generator step (batch {schedule['batch_size']}, "
              f"{schedule['critic_steps']} critic steps), {total / 1e15:.0f} PFLOP for {schedule['steps']:,} steps: "
              + ", ".join(f"{h:.1f} h at {t} TFLOP/s" for t, h in hours.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

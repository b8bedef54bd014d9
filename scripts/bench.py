"""Training throughput of ganctl's loop against a plain reference loop of the same architecture.

    python scripts/bench.py                                  # DCGAN 64x64x1, batch 64: fp32 and bf16 vs reference
    python scripts/bench.py --precision fp32 --json bench.json
    python scripts/bench.py --device cuda --precision bf16 --batch-size 256
    python scripts/bench.py --penalty-cost --model wgangp --no-reference   # WGAN-GP cycle vs the same without penalty
    python scripts/bench.py --model dcgan_small --image-size 28 --no-reference --precision fp32 \
        --conditioning none projection acgan concat          # what class conditioning costs a step
    python scripts/bench.py --model dcgan_r1 --optimizer adam_fast --image-size 28 --no-reference --precision bf16 \
        --variant 'R1/R2 by finite differences=loss.regularisers.r1.sigma=0.01 loss.regularisers.r2.sigma=0.01'

ganctl is measured through its real training entry point (`ganctl.train.train` on the composed
config, so everything a run does per step is included), reading the images/s it logs for each
interval of `--interval` steps; the first interval (warm-up, cuDNN autotuning, allocator growth) is
dropped, for each `--precision`. The loops take turns for `--rounds` rounds, so that a shared
machine's drifting speed touches them alike; each loop's figure is the median of all its intervals,
and "vs reference" the median of the rounds' ratios. The reference is the common way to write the
same training: pytorch/examples' DCGAN loop -- a DataLoader over MNIST with per-image PIL transforms
(Resize, ToTensor, Normalize), fp32, a sigmoid discriminator with BCELoss, `.item()` on every
step -- timed over the same intervals. `--penalty-cost` times ganctl's WGAN-GP generator cycle (5
critic steps with the gradient penalty + 1 generator step) against the same cycle without the
penalty. `--conditioning` runs ganctl once per conditioning option (on the bundled digits' labels)
and reports each one's time per step against the unconditional run of the same round. `--variant
'NAME=OVERRIDES'` (repeatable) runs ganctl once more per variant with those overrides on top (a group
choice such as `model=r3gan` replaces the base run's) and reports its time per image against the base
run of the same round. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn



REFERENCE = "reference (fp32)"


def ganctl_images_per_second(args: argparse.Namespace, run_dir: Path, extra: Sequence[str] = ()) -> list[float]:
    """images/s of each logged interval of a real ganctl run (the first, warm-up, dropped)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganctl import config
    from ganctl.config import config_dir
    from ganctl.overrides import expand_shorthands
    from ganctl.train import train

    groups = {extra_override.split("=", 1)[0] for extra_override in extra if "." not in extra_override.split("=", 1)[0]}
    overrides = [
        *([f"model={args.model}"] if "model" not in groups else []),
        *([f"loss={args.loss}"] if args.loss else []), *([f"optimizer={args.optimizer}"] if args.optimizer else []),
        f"dataset.image_size={args.image_size}", f"train.batch_size={args.batch_size}",
        f"train.device={args.device}", f"train.steps={args.interval * (args.repeats + 1)}",
        f"train.log_every={args.interval}", "train.sample_every=0", "train.ckpt_every=0",
        *args.override, *extra,
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=expand_shorthands(overrides), return_hydra_config=True)
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    config.check(cfg)
    train(cfg, run_dir, choices)
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    return [event.value for event in events.Scalars("speed/images_per_second")][1:]


# --------------------------------------------------------------------------- the reference loop
# pytorch/examples dcgan/main.py, as people copy it: nz=100, ngf=ndf=64, nc=1, 64x64.


class ReferenceGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class ReferenceDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).view(-1)


def reference_dataset(image_size: int, data_root: Path | None):
    """torchvision's MNIST with the usual per-image transforms, from data_root; the bundled digits
    without one (decoded to PIL per image all the same)."""
    import torchvision.transforms as transforms
    from torchvision.datasets import MNIST

    transform = transforms.Compose([transforms.Resize(image_size), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    if data_root is not None:
        return MNIST(root=str(data_root), download=False, transform=transform)
    from PIL import Image

    from ganctl.data import bundled_mnist

    images = bundled_mnist("train")[0][:, 0].numpy()

    class Bundled(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, index: int):
            return transform(Image.fromarray(images[index], mode="L")), 0

    return Bundled()


def reference_images_per_second(args: argparse.Namespace) -> list[float]:
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    loader = torch.utils.data.DataLoader(
        reference_dataset(args.image_size, args.data_root), batch_size=args.batch_size, shuffle=True,
        num_workers=args.workers, drop_last=True,
    )
    netG, netD = ReferenceGenerator().to(device), ReferenceDiscriminator().to(device)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rates, step, started = [], 0, time.perf_counter()
    while len(rates) < args.repeats + 1:
        for data, _ in loader:
            real = data.to(device)
            batch = real.size(0)
            label = torch.full((batch,), 1.0, device=device)
            netD.zero_grad()
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            noise = torch.randn(batch, 100, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()
            _ = (errD.item(), errG.item(), D_G_z1, D_G_z2)  # what the example prints every step
            step += 1
            if step % args.interval == 0:
                now = time.perf_counter()
                rates.append(args.interval * batch / (now - started))
                started = now
                if len(rates) == args.repeats + 1:
                    break
    return rates[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--loss", help="default: the model's (bce; wgangp for --model wgangp)")
    parser.add_argument("--optimizer", help="default: adam, as the reference (the preset's for --model wgan|wgangp)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], help="ganctl's train.precision, one run each")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interval", type=int, default=10, help="steps per timed interval")
    parser.add_argument("--repeats", type=int, default=3, help="timed intervals per run, after the warm-up one")
    parser.add_argument("--rounds", type=int, default=3, help="turns each loop takes, alternating")
    parser.add_argument("--workers", type=int, default=2, help="the reference DataLoader's workers (the example's default)")
    parser.add_argument("--data-root", type=Path, help="the reference loop's MNIST files (torchvision's layout); default: the bundled digits")
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument("--penalty-cost", action="store_true",
                        help="also time each precision with loss.gradient_penalty=0 (a WGAN-GP model) and report the ratio")
    parser.add_argument("--conditioning", nargs="+", default=["none"],
                        help="ganctl's conditioning options, one run each, timed against none (e.g. none projection acgan)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="another ganctl run with these space-separated overrides on top, timed against the base run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("override", nargs="*", help="extra ganctl overrides, e.g. train.ema.decay=0")
    args = parser.parse_args()
    if args.reference and args.model != "dcgan":
        parser.error("the reference loop is the DCGAN of pytorch/examples: use --model dcgan, or --no-reference")
    if args.optimizer is None and args.model not in ("wgan", "wgangp"):
        args.optimizer = "adam"

    from ganctl.console import console

    console.quiet = True  # ganctl's own progress and summary would interleave with the table
    loops: dict[str, Callable[[Path], list[float]]] = {}
    for precision in args.precision:
        loops[f"ganctl {precision}"] = partial(ganctl_images_per_second, args, extra=[f"train.precision={precision}"])
        for conditioning in (option for option in args.conditioning if option != "none"):
            loops[f"ganctl {precision}, conditioning={conditioning}"] = partial(
                ganctl_images_per_second, args, extra=[f"train.precision={precision}", f"conditioning={conditioning}"]
            )
        for variant in args.variant:
            label, _, variant_overrides = variant.partition("=")
            loops[f"ganctl {precision}: {label}"] = partial(
                ganctl_images_per_second, args, extra=[f"train.precision={precision}", *variant_overrides.split()])
        if args.penalty_cost:
            loops[f"ganctl {precision}, no penalty"] = partial(
                ganctl_images_per_second, args, extra=[f"train.precision={precision}", "loss.gradient_penalty=0"]
            )
    if args.reference:
        loops[REFERENCE] = lambda run_dir: reference_images_per_second(args)
    rounds: list[dict[str, float]] = []
    results: dict[str, list[float]] = {name: [] for name in loops}
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(args.rounds):
            rounds.append({})
            for name, loop in loops.items():
                rates = loop(Path(tmp) / re.sub(r"[^\w.-]+", "_", f"{turn}-{name}"))
                results[name] += rates
                rounds[-1][name] = statistics.median(rates)
                print(f"round {turn + 1}/{args.rounds}: {name}: {rounds[-1][name]:,.1f} images/s", file=sys.stderr)
    medians = {name: statistics.median(rates) for name, rates in results.items()}

    def paired(name: str, other: str) -> float:
        """The median over rounds of name's speed over other's, each round timed back to back."""
        return statistics.median(turn[name] / turn[other] for turn in rounds)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.model}, {args.image_size}x{args.image_size}, batch {args.batch_size}, {args.device}")
    for column in ("loop", "images/s (median)", "intervals", "vs reference", "penalty cost", "conditioning cost", "vs base"):
        table.add_column(column)
    for name, rates in results.items():
        versus = f"{paired(name, REFERENCE):.2f}x" if args.reference else ""
        plain = f"{name}, no penalty"
        cost = f"{paired(plain, name):.2f}x the time" if plain in results else ""
        unconditional = name.split(", conditioning=")[0]
        conditioning_cost = f"{paired(unconditional, name):.2f}x the time" if ", conditioning=" in name else ""
        base = name.split(": ")[0]
        variant_cost = f"{paired(base, name):.2f}x the time" if ": " in name else ""
        table.add_row(name, f"{medians[name]:,.0f}", ", ".join(f"{r:,.0f}" for r in rates), versus, cost, conditioning_cost,
                      variant_cost)
    Console().print(table)
    if args.json:
        record = {
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "images_per_second": medians,
            "vs_reference": {name: paired(name, REFERENCE) for name in results} if args.reference else None,
            "rounds": rounds,
            "intervals": results,
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": torch.get_num_threads(),
                        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
            "date": time.strftime("%Y-%m-%d"),
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

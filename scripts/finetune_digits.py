"""Fine-tuning against training from scratch on the bundled digits (docs/benchmarks.md, issue 29).

A default run (`model=dcgan_r1`) trains on the bundled digits 0-4; a new run then starts from it
(`init_from=`) on a few hundred digits 5-9, beside the same run from scratch, at equal steps. Every
checkpoint of both is scored by the shipped digit judge: FD on its features against the 5-9 training
images, and the share of samples it reads as a 5-9 digit. Prints a markdown table.

    python scripts/finetune_digits.py OUT [--source-steps 3000] [--target 300] [--steps 2000] [--every 250]

The digits are written as PNG folders (class subfolders) under OUT and trained as `dataset=folder`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

from ganctl import data

JUDGE = Path(data.__file__).parent / "assets" / "digits_judge.pt"


def write_digits(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    for index, (image, label) in enumerate(zip(images, labels.tolist())):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        save_image(image.float() / 255, folder / str(label) / f"{index:05d}.png")


def train(run: Path, root: Path, steps: int, every: int, extra: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "ganctl", "train", "dataset=folder", f"dataset.root={root}",
                    "dataset.channels=1", "dataset.image_size=28", "dataset.cache=false", f"train.steps={steps}",
                    f"train.ckpt_every={every}", "train.sample_every=0", f"hydra.run.dir={run}", *extra], check=True)


def score(checkpoint: Path, num: int) -> dict[str, float]:
    out = checkpoint.with_suffix(".judge.json")
    subprocess.run([sys.executable, "-m", "ganctl", "eval", str(checkpoint), "--feature", f"judge:{JUDGE}",
                    "--metrics", "fid,class_balance", "--num", str(num), "--out", str(out)], check=True,
                    stdout=subprocess.DEVNULL)
    cards = {card["metric"]: card for card in json.loads(out.read_text())}
    shares = cards["class_balance"]["options"]["shares"]
    return {"fd": cards["fid"]["value"], "share_5_9": sum(shares[5:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source-steps", type=int, default=3000)
    parser.add_argument("--target", type=int, default=300, help="digits 5-9 to fine-tune on")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--num", type=int, default=2000, help="samples scored per checkpoint")
    args = parser.parse_args()

    digits = data.mnist(root=None, download=False, image_size=28)
    low = digits.labels < 5
    source_root, target_root = args.out / "digits_0-4", args.out / "digits_5-9"
    if not source_root.exists():
        write_digits(source_root, digits.images[low], digits.labels[low])
        write_digits(target_root, digits.images[~low][: args.target], digits.labels[~low][: args.target])

    source = args.out / "source_0-4"
    if not (source / "checkpoints" / "last.pt").exists():
        train(source, source_root, args.source_steps, args.source_steps, [])
    runs = {"from scratch": args.out / "scratch_5-9", "fine-tuned": args.out / "finetuned_5-9"}
    for name, run in runs.items():
        if not (run / "checkpoints" / "last.pt").exists():
            train(run, target_root, args.steps, args.every, [f"init_from={source}"] if name == "fine-tuned" else [])

    steps = range(args.every, args.steps + 1, args.every)
    results = {name: {step: score(run / "checkpoints" / f"step_{step:07d}.pt", args.num) for step in steps}
               for name, run in runs.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"| step | {' | '.join(f'{name}: FD, share 5-9' for name in runs)} |")
    print(f"|---:|{'---:|' * len(runs)}")
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{results[name][step]['fd']:.1f}, {results[name][step]['share_5_9']:.0%}"
                                        for name in runs) + " |")


if __name__ == "__main__":
    main()

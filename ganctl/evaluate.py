"""`ganctl eval`: FID / KID / IS of a checkpoint's generator, and a nearest-training-image check.

The generator and the real data both come from the checkpoint alone: G (its EMA by default) is
rebuilt as `ganctl sample` does, the dataset from the stored config's dataset node. The metric cards
are written next to the checkpoint as <name>.metrics.json. A class-conditional checkpoint is also
scored class by class: intra-class FID and KID (the mean over classes) beside the overall ones,
with a card per class.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from torchvision.utils import make_grid, save_image

from ganctl import checkpoint, metrics
from ganctl import data as datasets
from ganctl.config import MetricsSettings, check_metric_names, default_config
from ganctl.console import console
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.gan import Sampler


def metric_settings(stored: dict[str, Any], **overrides: Any) -> MetricsSettings:
    """The checkpoint's metrics block (today's defaults for checkpoints written before it existed),
    with the command line's values on top. The stored weights path is not used: it names a file on
    the machine that trained, so eval finds the weights itself (--inception-weights, the env var, cache)."""
    merged = OmegaConf.merge(default_config().metrics, stored.get("metrics") or {})
    merged.inception_weights = None
    for key, value in overrides.items():
        if value is not None:
            merged[key] = value
    return MetricsSettings.from_node(merged)


@torch.no_grad()
def nearest_training_images(images: torch.Tensor, real: Any, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """For each uint8 image (K, C, H, W), its nearest real image by mean absolute pixel difference
    (pixels in [0, 1]): (distances (K,), the nearest images (K, C, H, W) uint8)."""
    queries = images.float().div(255).flatten(1)  # (K, P)
    best = torch.full((images.shape[0],), math.inf)
    neighbours = torch.zeros_like(images)
    for batch in real.batches(batch_size):
        batch = batch.cpu()
        distances = torch.cdist(queries, batch.float().div(255).flatten(1), p=1) / queries.shape[1]  # (K, B)
        closest, index = distances.min(dim=1)
        closer = closest < best
        best[closer] = closest[closer]
        neighbours[closer] = batch[index[closer]]
    return best, neighbours


def pairs_grid(samples: torch.Tensor, neighbours: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Rows of up to per_row samples, each followed by a row of their nearest training images."""
    per_row = min(per_row, samples.shape[0])
    tiles = []
    for start in range(0, samples.shape[0], per_row):
        for block in (samples[start : start + per_row], neighbours[start : start + per_row]):
            blank = torch.full((per_row - block.shape[0], *block.shape[1:]), 255, dtype=block.dtype)  # white, like the padding
            tiles.append(torch.cat([block, blank]))
    return make_grid(torch.cat(tiles), nrow=per_row, padding=2, pad_value=255)


def nearest_check(state: dict[str, Any], sampler: Sampler, num: int, seed: int, device: torch.device, out: Path) -> dict[str, Any]:
    """The memorisation check: num samples, their nearest training images side by side in a grid at
    `out`, and a card with the mean distance (and the same for held-out real images, for scale)."""
    dataset = OmegaConf.create(state["config"]["dataset"])
    train = datasets.build(dataset, device, split="train")
    samples = metrics.to_uint8(sampler.images(num, seed))  # (K, C, H, W); a conditional G's take every class in turn
    distances, neighbours = nearest_training_images(samples, train)
    baseline = None
    try:  # held-out real digits against the training set: what "not memorised" looks like
        test = datasets.build(dataset, device, split="test")
        held_out = next(iter(test.batches(num))).cpu()
        baseline = nearest_training_images(held_out, train)[0].mean().item()
    except (GanctlError, StopIteration):
        pass  # a dataset without a test split: no baseline
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(pairs_grid(samples, neighbours).float().div(255), out)
    return {
        "metric": "nearest_l1",
        "value": distances.mean().item(),
        "std": distances.std().item() if num > 1 else None,
        "baseline_test_to_train": baseline,
        "step": state["step"],
        "num_real": len(train),
        "num_fake": num,
        "split": "train",
        "dataset": train.fingerprint,
        "image_size": int(train.image_size),
        "channels": int(train.channels),
        "backbone": "pixels: mean |difference| in [0, 1]",
        "weights_sha256": None,
        "resize": "none",
        "options": {"seed": seed},
        "grid": str(out),
    }


def evaluate(
    path: str | Path,
    names: Optional[list[str]] = None,
    num: Optional[int] = None,
    split: Optional[str] = None,
    seed: Optional[int] = None,
    device: str = "auto",
    ema: bool = True,
    inception_weights: Optional[str] = None,
    nearest: int = 0,
    out: Optional[str | Path] = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Score a checkpoint; returns the cards and the file they were written to."""
    if num is not None and num < 2:
        raise GanctlError(f"--num must be at least 2 (FID and KID need two images), got {num}.")
    if nearest < 0:
        raise GanctlError(f"--nearest must be 0 (off) or more, got {nearest}.")
    if split is not None and split not in ("train", "test"):
        raise GanctlError(f"--split must be train or test, got {split!r}.")
    if names is not None:
        names = [] if names == ["none"] else check_metric_names(names)
    if names == [] and not nearest:
        raise GanctlError("Nothing to do: --metrics none without --nearest K.")
    ckpt_path, state = checkpoint.find(path, use="ganctl eval {}")
    ckpt_path = ckpt_path.resolve()
    stored = state["config"]
    settings = metric_settings(stored, names=names, num_fake=num, split=split, seed=seed, inception_weights=inception_weights)
    card_path = Path(out) if out else ckpt_path.with_name(f"{ckpt_path.stem}.metrics.json")
    if card_path.is_dir():
        raise GanctlError(f"--out {card_path} is a directory: give a file name such as {card_path / 'metrics.json'}.")
    torch_device = resolve_device(device, "--device ")
    sampler = Sampler.from_checkpoint(state, torch_device, ema)

    cards: list[dict[str, Any]] = []
    if settings.names:
        real = datasets.build(OmegaConf.create(stored["dataset"]), torch_device, settings.split, labels=sampler.conditional)
        by_class = f", and class by class ({len(sampler.classes)} classes)" if sampler.conditional else ""
        console.print(f"Scoring {', '.join(settings.names)} of {settings.num_fake} samples from step {state['step']} "
                      f"against {settings.num_real or len(real)} real {settings.split} images{by_class} ...")
        cards += metrics.Evaluator(settings, real, torch_device, classes=sampler.classes)(sampler, state["step"])
    if nearest:
        grid = checkpoint.run_dir_of(ckpt_path) / "samples" / f"nearest_step{state['step']:07d}.png"
        cards.append(nearest_check(state, sampler, nearest, settings.seed, torch_device, grid))
    for card in cards:
        card.update(checkpoint=str(ckpt_path), generator=sampler.weights)
    try:
        card_path.parent.mkdir(parents=True, exist_ok=True)
        card_path.write_text(json.dumps(cards, indent=2) + "\n")
    except OSError as error:
        raise GanctlError(f"Cannot write the metric cards to {card_path}: {error}") from error
    print_cards(cards, card_path)
    return cards, card_path


def print_cards(cards: list[dict[str, Any]], card_path: Path) -> None:
    from rich.table import Table

    table = Table(title=f"ganctl eval: step {cards[0]['step']}, {cards[0]['generator']} generator")
    for column in ("metric", "value", "± std", "real", "fake", "split", "backbone"):
        numeric = column in ("value", "± std", "real", "fake")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    for card in cards:
        std = "" if card["std"] is None else f"{card['std']:.4f}"
        table.add_row(card["metric"], f"{card['value']:.4f}", std, str(card["num_real"]), str(card["num_fake"]),
                      card["split"], card["backbone"])
    console.print(table)
    for card in cards:
        if card["metric"] == "nearest_l1":
            baseline = card["baseline_test_to_train"]
            scale = f"; held-out real images score {baseline:.4f}" if baseline is not None else ""
            console.print(f"Nearest training images: mean distance {card['value']:.4f}{scale} "
                          f"(much lower than that suggests memorisation). Grid: {card['grid']}")
    console.print(f"Metric cards written to {card_path}")


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl eval", description="Score a ganctl checkpoint: FID, KID, IS, nearest training images.")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--metrics", help="comma-separated: fid,kid,is, or none (default: the run's metrics.names)")
    parser.add_argument("--num", type=int, help="generated images to score (default: the run's metrics.num_fake)")
    parser.add_argument("--split", help="real images to compare with: train | test (default: the run's metrics.split)")
    parser.add_argument("--seed", type=int, help="seed of the latents (default: the run's metrics.seed)")
    parser.add_argument("--nearest", type=int, default=0, metavar="K",
                        help="also find the nearest training image of K samples: a grid and the mean distance")
    parser.add_argument("--inception-weights", help=f"a local {metrics.INCEPTION_FILE} (else ${metrics.WEIGHTS_ENV}, then torch's cache)")
    parser.add_argument("--out", help="file for the metric cards (default <checkpoint>.metrics.json next to it)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="score the raw generator, not its EMA")
    options = parser.parse_args(args)
    names = [name.strip() for name in options.metrics.split(",") if name.strip()] if options.metrics is not None else None
    evaluate(options.checkpoint, names, options.num, options.split, options.seed, options.device, options.ema,
             options.inception_weights, options.nearest, options.out)
    return 0

"""`ganctl eval`: FID / KID / IS / precision, recall, density, coverage of a checkpoint's generator
(or of a folder of images from any tool: --images DIR), the same against truncation psi
(--truncation-sweep), and a nearest-training-image check.

The generator and the real data both come from the checkpoint alone: G (its EMA by default) is
rebuilt as `ganctl sample` does, the dataset from the stored config's dataset node. The metric cards
are written next to the checkpoint as <name>.metrics.json. A class-conditional checkpoint is also
scored class by class: intra-class FID and KID (the mean over classes) beside the overall ones,
with a card per class.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from omegaconf import OmegaConf
from rich.markup import escape
from torchvision.utils import make_grid, save_image

from ganctl import checkpoint, finetune, metrics, protocols
from ganctl import data as datasets
from ganctl import latents as latent_space
from ganctl.arguments import checked_folder, checked_psis, checked_scoring
from ganctl.config import MetricsSettings, auto_feature, dataset_node, todays_defaults
from ganctl.console import console
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.files import write_atomically, write_text
from ganctl.guard import branch_of
from ganctl.registry import FEATURE_NAMES
from ganctl.sampling import Sampler, critic_from_checkpoint


def metric_settings(stored: dict[str, Any], protocol: Optional[str] = None, **overrides: Any) -> MetricsSettings:
    """The checkpoint's metrics block (without a run: today's defaults), then the named protocol's
    settings, then the command line's values on top; `feature: auto` made concrete for the stored
    dataset. The stored weights paths are not used: they name files on the machine that trained, so
    eval finds the weights itself (--inception-weights, --feature-weights, the env vars, the cache)."""
    merged = OmegaConf.merge(todays_defaults().metrics, stored.get("metrics") or {})
    merged.inception_weights = merged.feature_weights = None
    if protocol is not None:
        protocols.get(protocol)
        merged.protocol = protocol
        for key, value in protocols.preset(merged).items():
            merged[key] = value
    for key, value in overrides.items():
        if value is not None:
            merged[key] = value
    merged.feature = auto_feature(merged.feature, stored.get("dataset"))
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
    grid = pairs_grid(samples, neighbours).float().div(255)
    try:
        write_atomically(out, lambda f: save_image(grid, f, "PNG"))
    except OSError as error:
        raise GanctlError(f"Cannot write the nearest-neighbour grid {out}: {error.strerror or error}.") from error
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
    truncation: float = 1.0,
    measure: Optional[dict[str, Any]] = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Score a checkpoint; returns the cards and the file they were written to. With `nearest` and
    the run's own metric names (not asked for by name), metrics that need Inception weights this
    machine does not have are skipped, and said so, rather than stopping the memorisation check."""
    asked_by_name = names is not None
    names = checked_scoring(names, num, split, nearest)
    truncation = latent_space.check_psi(truncation)
    ckpt_path, state = checkpoint.find(path, use="ganctl eval {}")
    ckpt_path = checkpoint.absolute(ckpt_path)  # a link to checkpoints/ stays in the run's name
    stored = state["config"]
    settings = metric_settings(stored, names=names, num_fake=num, split=split, seed=seed, inception_weights=inception_weights,
                               **(measure or {}))
    card_path = Path(out) if out else ckpt_path.with_name(f"{ckpt_path.stem}.metrics.json")
    if card_path.is_dir():
        raise GanctlError(f"--out {card_path} is a directory: give a file name such as {card_path / 'metrics.json'}.")
    torch_device = resolve_device(device, "--device ")
    sampler = Sampler.from_checkpoint(state, torch_device, ema, truncation)

    cards: list[dict[str, Any]] = []
    if settings.names and nearest and not asked_by_name:
        reason = weights_missing(settings)
        if reason:
            console.print(f"[yellow]Skipped {', '.join(settings.names)}[/]: {escape(reason)}")
            settings = replace(settings, names=[])
    if settings.names:
        real = datasets.build(OmegaConf.create(stored["dataset"]), torch_device, settings.split, labels=sampler.conditional)
        by_class = f", and class by class ({len(sampler.classes)} classes)" if sampler.conditional else ""
        console.print(f"Scoring {', '.join(settings.names)} of {settings.num_fake} samples from step {state['step']} "
                      f"against {settings.num_real or len(real)} real {settings.split} images{by_class} ...")
        critic = (critic_from_checkpoint(state, torch_device) if settings.ppl_distance == "discriminator"
                  and any(name in metrics.PPL_NAMES for name in settings.names) else None)
        cards += metrics.Evaluator(settings, real, torch_device, classes=sampler.classes)(sampler, state["step"], critic)
    if nearest:
        grid = checkpoint.run_dir_of(ckpt_path) / "samples" / f"nearest_step{state['step']:07d}.png"
        cards.append(nearest_check(state, sampler, nearest, settings.seed, torch_device, grid))
    lineage = {"lineage": finetune.on_card(state["lineage"])} if state.get("lineage") else {}
    for card in cards:
        card.update(checkpoint=str(ckpt_path), generator=sampler.weights, **lineage)
        if state.get("guard"):  # a guarded run's checkpoint: the branch its weights came from
            card["branch"] = branch_of(state["guard"])
        if truncation != 1:
            card["options"]["truncation"] = truncation
    write_cards(cards, card_path)
    print_cards(cards, card_path, finetune.describe(state["lineage"]) if state.get("lineage") else None)
    return cards, card_path


def weights_missing(settings: MetricsSettings) -> Optional[str]:
    """Why the weights the metrics' backbone needs cannot be had on this machine (with where to put
    them), or None: found, or a backbone that needs none (a judge, a ganctl extractor)."""
    from ganctl import features

    try:
        if settings.feature == "inception":
            metrics.inception_weights(settings.inception_weights)
        elif isinstance(settings.feature, str) and settings.feature in FEATURE_NAMES and settings.feature != "auto":
            features.find_weights(features.weights_of(settings.feature), settings.feature_weights)
    except GanctlError as error:
        return str(error)
    return None


def image_files(folder: Path, limit: Optional[int]) -> list[Path]:
    """Every image file under folder (searched recursively, sorted; other files such as latents.npy
    ignored), the first `limit` of them; fewer than two is one clear error."""
    files = datasets.find_images(folder)[:limit]
    if len(files) < 2:
        raise GanctlError(f"--images {folder}: found {len(files)} image file{'' if len(files) == 1 else 's'} "
                          f"({', '.join(datasets.IMAGE_SUFFIXES)}); scoring needs at least 2.")
    return files


def folder_batches(files: list[Path], channels: int, image_size: int, batch_size: int, resized: list[int]) -> Iterator[torch.Tensor]:
    """The image files as uint8 batches (B, channels, image_size, image_size), converted and resized as
    dataset=folder does, decoded a batch at a time (a folder of any size is scored in bounded memory);
    counts into resized[0] those that had another size. A file that cannot be decoded is one clear error."""
    from PIL import Image

    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            try:
                with Image.open(path) as image:
                    resized[0] += image.size != (image_size, image_size)
                batch.append(datasets.decode_image(path, channels, image_size))
            except Exception as error:  # Pillow fails in many ways on foreign or truncated bytes
                raise GanctlError(f"--images: {path} cannot be read as an image ({type(error).__name__}). "
                                  "Remove it or replace it with a readable file.") from None
        yield torch.stack(batch)


def evaluate_folder(
    folder: str | Path,
    run: Optional[str | Path] = None,
    dataset: Optional[str] = None,
    data_root: Optional[str] = None,
    names: Optional[list[str]] = None,
    num: Optional[int] = None,
    split: Optional[str] = None,
    device: str = "auto",
    inception_weights: Optional[str] = None,
    out: Optional[str | Path] = None,
    measure: Optional[dict[str, Any]] = None,
) -> tuple[list[dict[str, Any]], Path]:
    """Score a folder of images (from ganctl or any other tool) against a dataset split, with the same
    cards as a checkpoint's: the dataset (and metric settings) of `run`, or `dataset` (a conf/dataset
    option, with data_root) and today's metric defaults. Images of another size are resized (and the
    cards say how many); cards go to <folder>.metrics.json beside the folder by default."""
    folder = checked_folder(folder, run, dataset)
    names = checked_scoring(names, num, split)
    if run is not None:
        _, state = checkpoint.find(run, use="ganctl eval {} --images DIR")
        stored, node = state["config"], OmegaConf.create(state["config"]["dataset"])
    else:
        node = dataset_node(dataset, data_root)
        stored = {"dataset": OmegaConf.to_container(node, resolve=True)}
    settings = metric_settings(stored, names=names, split=split, inception_weights=inception_weights, **(measure or {}))
    if any(name in metrics.PPL_NAMES for name in settings.names):
        raise GanctlError("--images scores the files as they are: perceptual path length (ppl_zend, ppl_wend) walks a "
                          "generator's latent space, so it needs a checkpoint.")
    torch_device = resolve_device(device, "--device ")
    real = datasets.build(node, torch_device, settings.split)
    files = image_files(folder, num)
    settings = replace(settings, num_fake=len(files))
    card_path = Path(out) if out else folder.with_name(f"{folder.name}.metrics.json")
    if card_path.is_dir():
        raise GanctlError(f"--out {card_path} is a directory: give a file name such as {card_path / 'metrics.json'}.")
    console.print(f"Scoring {', '.join(settings.names)} of {len(files)} images in {folder} against "
                  f"{settings.num_real or len(real)} real {settings.split} images ...")
    evaluator = metrics.Evaluator(settings, real, torch_device)
    resized = [0]
    cards = evaluator.score(folder_batches(files, real.channels, real.image_size, settings.batch_size, resized), step=0)
    for card in cards:
        card.update(step=None, images=str(folder.resolve()), generator=f"images in {folder.name}")
        card["options"]["resized"] = resized[0]
    write_cards(cards, card_path)
    print_cards(cards, card_path)
    return cards, card_path


def truncation_sweep(
    path: str | Path,
    psis: list[float],
    names: Optional[list[str]] = None,
    num: Optional[int] = None,
    split: Optional[str] = None,
    seed: Optional[int] = None,
    device: str = "auto",
    ema: bool = True,
    inception_weights: Optional[str] = None,
    out: Optional[str | Path] = None,
    measure: Optional[dict[str, Any]] = None,
) -> Path:
    """The metrics at each truncation psi, from one set of real features: a table (<out>.csv, default
    <checkpoint>.truncation.csv), the cards (.json) and a plot of each metric against psi (.png)."""
    import csv
    import io

    from ganctl.pictures import pyplot

    psis = checked_psis(psis)
    names = checked_scoring(names, num, split)
    ckpt_path, state = checkpoint.find(path, use="ganctl eval {} --truncation-sweep")
    ckpt_path = checkpoint.absolute(ckpt_path)  # a link to checkpoints/ stays in the run's name
    settings = metric_settings(state["config"], names=names, num_fake=num, split=split, seed=seed, inception_weights=inception_weights,
                               **(measure or {}))
    table_path = Path(out) if out else ckpt_path.with_name(f"{ckpt_path.stem}.truncation.csv")
    if table_path.suffix.lower() != ".csv" or table_path.is_dir():
        raise GanctlError(f"--out {table_path}: the truncation table is written as a .csv file (its plot beside it as .png).")
    torch_device = resolve_device(device, "--device ")
    sampler = Sampler.from_checkpoint(state, torch_device, ema)
    real = datasets.build(OmegaConf.create(state["config"]["dataset"]), torch_device, settings.split, labels=sampler.conditional)
    evaluator = metrics.Evaluator(settings, real, torch_device, classes=sampler.classes)
    rows, cards = [], []
    for psi in psis:
        sampler.truncation = psi
        scored = evaluator(sampler, state["step"])
        for card in scored:
            card["options"]["truncation"] = psi
            card.update(checkpoint=str(ckpt_path), generator=sampler.weights)
        cards += scored
        rows.append({"psi": psi, **{card["metric"]: card["value"] for card in scored if "/" not in card["metric"]}})
        console.print("  psi " + f"{psi:g}: " + "  ".join(f"{key} {value:.4f}" for key, value in rows[-1].items() if key != "psi"))
    columns = list(rows[0])
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    try:
        write_text(table_path, table.getvalue())
        write_cards(cards, table_path.with_suffix(".json"))
    except OSError as error:
        raise GanctlError(f"Cannot write {table_path}: {error}") from error
    plt = pyplot()
    metric_columns = columns[1:]
    figure, axes = plt.subplots(1, len(metric_columns), figsize=(4 * len(metric_columns), 3.2), dpi=100, squeeze=False)
    for axis, name in zip(axes.flat, metric_columns):
        axis.plot([row["psi"] for row in rows], [row[name] for row in rows], marker="o")
        axis.set_xlabel("truncation psi")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    figure.suptitle(f"step {state['step']}: metrics against truncation", fontsize=10)
    figure.tight_layout()
    from ganctl.plots import save_figure

    plot_path = save_figure(figure, table_path.with_suffix(".png"))
    from rich.table import Table

    table = Table(title=f"ganctl eval: step {state['step']} against truncation psi")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{row[column]:g}" if column == "psi" else f"{row[column]:.4f}" for column in columns))
    console.print(table)
    console.print(f"Table written to {table_path}, its plot to {plot_path}, the cards to {table_path.with_suffix('.json')}")
    return table_path


def write_cards(cards: list[dict[str, Any]], card_path: Path) -> None:
    try:
        write_text(card_path, json.dumps(cards, indent=2) + "\n")
    except OSError as error:
        raise GanctlError(f"Cannot write the metric cards to {card_path}: {error}") from error


def print_cards(cards: list[dict[str, Any]], card_path: Path, lineage: Optional[str] = None) -> None:
    from rich.table import Table

    what = f"step {cards[0]['step']}, {cards[0]['generator']} generator" if cards[0]["step"] is not None else cards[0]["generator"]
    table = Table(title=f"ganctl eval: {what}")
    for column in ("metric", "value", "± std", "real", "fake", "split", "backbone"):
        numeric = column in ("value", "± std", "real", "fake")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric)
    for card in cards:
        std = "" if card["std"] is None else f"{card['std']:.4f}"
        table.add_row(card["metric"], f"{card['value']:.4f}", std, str(card["num_real"]), str(card["num_fake"]),
                      card["split"], card["backbone"])
    console.print(table)
    named = {(card.get("protocol"), json.dumps(card.get("protocol_changes"))) for card in cards if "protocol" in card}
    for protocol, changes in sorted(named, key=str):
        changed = json.loads(changes)
        differs = "; ".join(f"{key} {theirs} -> {ours}" for key, (theirs, ours) in changed.items()) if changed else ""
        console.print(f"Protocol: {protocol}" + (f" (from its protocol with {escape(differs)})" if differs else ""))
    if lineage:
        console.print(f"{escape(lineage)} (every card carries it)")
    for card in cards:
        if card["metric"] == "nearest_l1":
            baseline = card["baseline_test_to_train"]
            scale = f"; held-out real images score {baseline:.4f}" if baseline is not None else ""
            console.print(f"Nearest training images: mean distance {card['value']:.4f}{scale} "
                          f"(much lower than that suggests memorisation). Grid: {card['grid']}")
    console.print(f"Metric cards written to {card_path}")

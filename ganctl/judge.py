"""A judge for your own data: a small classifier trained on your labelled images, whose features and
predictions score a generator where ImageNet's Inception means little (digits, sketches, medical or
satellite images).

    ganctl judge train mnist --out judge.pt           # a conf/dataset option (mnist: the bundled digits)
    ganctl judge train path/to/folder --out judge.pt  # class subfolders, or stylegan2-ada's dataset.json
    ganctl eval RUN --feature judge:judge.pt          # FD, KID, ... on its features, and its verdicts

A judge file is plain weights with a card: `torch.save` of a dict of containers and tensors (read
with weights_only), holding the network's settings (never a class path), its class names, its
state dict and its card: the data's fingerprint, the held-out images and its accuracy on them.
`judge:digits` names the judge ganctl ships for the bundled digits (ganctl/assets/digits_judge.pt,
trained by `ganctl judge train mnist` with the defaults of `judge_recipe.Recipe`).

As a backbone (metrics.feature=judge:FILE) it maps uint8 images (B, C, H, W) to (its 128-d
penultimate features, its class logits): the features feed FD, KID, precision/recall, density and
coverage; the logits give a conditional generator's `judge_accuracy` (the share of each class's
samples the judge gives that class) and an unconditional one's `class_balance` (how evenly the
samples spread over the classes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from rich.markup import escape

from ganctl.console import console, word
from ganctl.errors import GanctlError
from ganctl.judge_recipe import Recipe

FORMAT, VERSION = "ganctl-judge", 1
BUNDLED = "digits"  # judge:digits
BUNDLED_FILE = "assets/digits_judge.pt"
PREFIX = "judge:"
PRESENT_SHARE = 0.02  # a class is "present" among the samples with at least 2% of them


class JudgeNet(nn.Module):
    """Three stages of two 3x3 convolutions (BatchNorm, ReLU), the first two halving the size, then
    global average pooling and a `feature_dim` layer (the features), then the class logits."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 16, feature_dim: int = 128) -> None:
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        layers: list[nn.Module] = []
        widths = [channels, width, width * 2, width * 4]
        for stage in range(3):
            for conv in range(2):
                layers += [nn.Conv2d(widths[stage] if conv == 0 else widths[stage + 1], widths[stage + 1], 3, padding=1, bias=False),
                           nn.BatchNorm2d(widths[stage + 1]), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2) if stage < 2 else nn.AdaptiveAvgPool2d(1))
        self.conv = nn.Sequential(*layers, nn.Flatten())  # (B, 4 * width)
        self.features = nn.Sequential(nn.Linear(widths[-1], feature_dim), nn.ReLU(inplace=True))  # (B, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def prepared(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, 1 or 3, H, W) at any size -- or G's own floats in [-1, 1], unrounded (path
        lengths step by far less than a grey level) -- as floats in [-1, 1] at the judge's channels and size."""
        from ganctl.data import resize

        if images.dtype != torch.uint8:
            if images.shape[1] != self.channels:
                images = images.repeat(1, 3, 1, 1) if self.channels == 3 else (images * LUMA.to(images.device)).sum(1, keepdim=True)
            return resize(images.float(), self.image_size)
        if images.shape[1] != self.channels:
            images = images.repeat(1, 3, 1, 1) if self.channels == 3 else gray(images)
        images = resize(images, self.image_size)
        return images.float() / 127.5 - 1.0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, C, H, W) (or floats in [-1, 1]) -> (features (B, feature_dim), class logits (B, K))."""
        features = self.features(self.conv(self.prepared(images)))
        return features, self.head(features)


LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601, as PIL converts RGB to L


def gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> uint8 grayscale (B, 1, H, W)."""
    return (images.float() * LUMA.to(images.device)).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Judge:
    """A judge read from its file: the network (eval mode), its class names and its card."""

    net: JudgeNet
    classes: list[str]
    card: dict[str, Any]
    path: str

    @property
    def name(self) -> str:
        accuracy = self.card.get("accuracy")
        shown = f", held-out accuracy {accuracy:.1%}" if isinstance(accuracy, float) else ""
        return f"judge {Path(self.path).name} ({len(self.classes)} classes{shown}) features {self.net.features[0].out_features}-d"


# --------------------------------------------------------------------------- files


def bundled_path() -> Path:
    return Path(str(resources.files("ganctl").joinpath(BUNDLED_FILE)))


def path_of(feature: str) -> Path:
    """`judge:digits` -> the bundled judge; `judge:PATH` -> PATH."""
    where = feature.removeprefix(PREFIX)
    if not where:
        raise GanctlError("metrics.feature=judge:FILE names a judge file, e.g. judge:judge.pt (or judge:digits, the bundled one).")
    return bundled_path() if where == BUNDLED else Path(where).expanduser()


def save(path: Path, net: JudgeNet, classes: list[str], card: dict[str, Any]) -> None:
    from ganctl.files import write_atomically

    state = {"format": FORMAT, "version": VERSION, "classes": list(classes), "card": card,
             "architecture": {"channels": net.channels, "image_size": net.image_size, "num_classes": net.num_classes,
                              "width": net.conv[0].out_channels, "feature_dim": net.features[0].out_features},
             "state_dict": {key: value.detach().cpu().clone() for key, value in net.state_dict().items()}}
    try:
        write_atomically(path, lambda f: torch.save(state, f))
    except OSError as error:
        raise GanctlError(f"Cannot write the judge to {path}: {error.strerror or error}.") from None


def load(feature_or_path: str | Path, device: torch.device = torch.device("cpu")) -> Judge:
    """A judge file (or `judge:...`), read with weights_only: one clear message for anything else."""
    path = path_of(feature_or_path) if isinstance(feature_or_path, str) and feature_or_path.startswith(PREFIX) else Path(feature_or_path)
    if not path.is_file():
        raise GanctlError(f"metrics.feature=judge:{path}: no judge file there. Train one with "
                          f"`ganctl judge train DATASET --out {path}` (judge:digits is the bundled digits' judge).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused, truncated, not a torch file
        raise GanctlError(f"{path} cannot be read as a ganctl judge ({type(error).__name__}): train one with "
                          "`ganctl judge train DATASET --out FILE`.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanctlError(f"{path} is not a ganctl judge file (no '{FORMAT}' format mark): train one with "
                          "`ganctl judge train DATASET --out FILE`.")
    if state.get("version", 0) > VERSION:
        raise GanctlError(f"{path} was written by a newer ganctl (judge format {state['version']}); upgrade ganctl to read it.")
    try:
        architecture = {key: int(state["architecture"][key]) for key in ("channels", "image_size", "num_classes", "width", "feature_dim")}
        net = JudgeNet(**architecture)
        net.load_state_dict(state["state_dict"])
        classes = [str(name) for name in state["classes"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise GanctlError(f"{path} is a damaged ganctl judge file ({type(error).__name__}); train it again.") from None
    if len(classes) != net.num_classes:
        raise GanctlError(f"{path} is a damaged ganctl judge file ({len(classes)} class names for {net.num_classes} outputs).")
    return Judge(net.to(device).eval().requires_grad_(False), classes, dict(state.get("card") or {}), str(path))


# --------------------------------------------------------------------------- what it says about samples


def class_balance(predicted: torch.Tensor, num_classes: int) -> tuple[float, dict[str, Any]]:
    """How evenly samples spread over the classes the judge sees in them: the effective number of
    classes (the exponential of the predictions' entropy) over the number of classes -- 1 when every
    class has the same share, 1/K when all samples are of one class -- and the shares themselves."""
    shares = torch.bincount(predicted, minlength=num_classes).double() / max(len(predicted), 1)
    entropy = -(shares[shares > 0] * shares[shares > 0].log()).sum().item()
    effective = math.exp(entropy)
    return effective / num_classes, {"effective_classes": effective, "present": int((shares >= PRESENT_SHARE).sum()),
                                     "shares": [round(share, 4) for share in shares.tolist()]}


def accuracy_by_class(predicted: torch.Tensor, requested: torch.Tensor, num_classes: int) -> tuple[float, list[Optional[float]]]:
    """The share of samples the judge gives the class they were asked for: overall, and per class (None: none asked)."""
    overall = (predicted == requested).double().mean().item()
    per_class = [(predicted[requested == index] == index).double().mean().item() if (requested == index).any() else None
                 for index in range(num_classes)]
    return overall, per_class


# --------------------------------------------------------------------------- training


@dataclass
class Labelled:
    """Labelled images to train or test a judge on: uint8 (N, C, H, W), labels (N,), class names, a fingerprint."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    fingerprint: str
    description: str


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    import hashlib

    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def from_source(source: Any, description: str) -> Labelled:
    """A ganctl dataset source with labels as one labelled tensor set."""
    images, labels = [], []
    for batch, batch_labels in source.labelled_batches(1000):
        images.append(batch.cpu())
        labels.append(batch_labels.cpu())
    images_all, labels_all = torch.cat(images), torch.cat(labels)
    return Labelled(images_all, labels_all, list(source.classes), fingerprint(images_all, labels_all), description)


def json_labelled(folder: Path, channels: int, image_size: int) -> Labelled:
    """A folder with stylegan2-ada's dataset.json (`{"labels": [["00000/img00000000.png", 6], ...]}`):
    its listed images and their integer labels; the classes are the labels' values in order."""
    from ganctl.data import decode_image

    try:
        listed = json.loads((folder / "dataset.json").read_text())["labels"]
        pairs = [(str(name), int(label)) for name, label in listed]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GanctlError(f"{folder / 'dataset.json'} is not stylegan2-ada's label file ({type(error).__name__}): it must hold "
                          '{"labels": [["relative/path.png", 0], ...]}.') from None
    if not pairs:
        raise GanctlError(f"{folder / 'dataset.json'} lists no labelled images.")
    values = sorted({label for _, label in pairs})
    index = {value: position for position, value in enumerate(values)}
    images = []
    for name, _ in pairs:
        try:
            images.append(decode_image(folder / name, channels, image_size))
        except Exception as error:  # a missing or unreadable file listed in the labels
            raise GanctlError(f"{folder / 'dataset.json'} lists {name}, which cannot be read as an image ({type(error).__name__}).") from None
    images_all = torch.stack(images)
    labels = torch.tensor([index[label] for _, label in pairs])
    return Labelled(images_all, labels, [str(value) for value in values], fingerprint(images_all, labels), f"{folder} (dataset.json)")


def held_out_split(data: Labelled, share: float) -> tuple[Labelled, Labelled]:
    """Every k-th image held out (k = 1 / share), the rest trained on: the same split every time."""
    every = max(2, round(1 / share))
    held = torch.zeros(len(data.labels), dtype=torch.bool)
    held[::every] = True
    def part(mask: torch.Tensor, what: str) -> Labelled:
        return Labelled(data.images[mask], data.labels[mask], data.classes, data.fingerprint, what)

    return part(~held, data.description), part(held, f"every {every}th image of {data.description}")


def augmented(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Floats (B, C, H, W) in [-1, 1] shifted by up to 2 pixels and rotated by up to 10 degrees, with
    their own random numbers: a judge that tolerates the small misalignments generated images have."""
    batch = images.shape[0]
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(10)
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (2.0 / (images.shape[-1] / 2))
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images + 1, grid, align_corners=False, padding_mode="zeros") - 1  # background -1


@torch.no_grad()
def accuracy(net: JudgeNet, data: Labelled, batch_size: int = 500) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(data.labels), batch_size):
        _, logits = net(data.images[start:start + batch_size])
        correct += (logits.argmax(1) == data.labels[start:start + batch_size]).sum().item()
    return correct / len(data.labels)


def train_judge(train: Labelled, test: Labelled, recipe: Recipe = Recipe()) -> tuple[JudgeNet, float]:
    """A judge trained on `train` (Adam, cosine schedule, small shifts and turns), on the CPU with its
    own seed (the same data and recipe give the same weights), and its accuracy on `test`."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    channels, image_size = train.images.shape[1], train.images.shape[2]
    net = JudgeNet(channels, image_size, len(train.classes), recipe.width, recipe.feature_dim)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * math.ceil(len(train.labels) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps, pct_start=0.15)
    for epoch in range(recipe.epochs):
        net.train()
        order = torch.randperm(len(train.labels), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            pick = order[start:start + recipe.batch_size]
            images = augmented(net.prepared(train.images[pick]), generator)
            logits = net.head(net.features(net.conv(images)))
            loss = nn.functional.cross_entropy(logits, train.labels[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        console.print(f"  epoch {epoch + 1}/{recipe.epochs}: loss {loss.item():.4f}")
    return net.eval(), accuracy(net, test)


def dataset_splits(dataset: str, data_root: Optional[str], image_size: Optional[int], channels: int, share: float) -> tuple[Labelled, Labelled, str]:
    """The images to train and to test a judge on: a folder (dataset.json labels or class subfolders)
    or a conf/dataset option (its test split when it has one, else every k-th image held out)."""
    from omegaconf import OmegaConf

    from ganctl import data

    folder = Path(dataset).expanduser()
    if folder.is_dir():
        size = image_size or 32
        if (folder / "dataset.json").is_file():
            train, test = held_out_split(json_labelled(folder, channels, size), share)
            return train, test, test.description
        node = OmegaConf.create({"_target_": "ganctl.data.folder", "root": str(folder), "image_size": size, "channels": channels,
                                 "max_items": None, "strict": False, "cache": None, "in_memory": True})
        source = data.build(node, torch.device("cpu"), "train", labels=True)
        train, test = held_out_split(from_source(source, str(folder)), share)
        return train, test, test.description
    from ganctl.config import dataset_node

    node = dataset_node(dataset, data_root)
    if image_size is not None:
        node.image_size = image_size
    train = from_source(data.build(node, torch.device("cpu"), "train", labels=True), f"dataset={dataset}")
    try:
        test = from_source(data.build(node, torch.device("cpu"), "test", labels=True), f"dataset={dataset}, test split")
        if test.classes != train.classes:
            raise GanctlError(f"dataset={dataset}: its test split has other classes than its training split.")
        return train, test, f"the {len(test.labels)} images of its test split"
    except GanctlError as error:
        if "no test split" not in str(error):
            raise
    train, test = held_out_split(train, share)
    return train, test, test.description


def train_and_save(options: argparse.Namespace) -> int:
    """`ganctl judge train`, its options checked (`ganctl.judge_cli`): train, test and write a judge."""
    out = Path(options.out)
    recipe = Recipe(epochs=options.epochs, seed=options.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, test, held_out = dataset_splits(options.dataset, options.data_root, options.image_size, options.channels, recipe.held_out_share)
    if len(train.classes) < 2:
        raise GanctlError(f"{options.dataset} has {len(train.classes)} class: a judge tells classes apart, it needs at least 2.")
    console.print(f"Training a judge on {len(train.labels)} images of {train.description} ({len(train.classes)} classes, "
                  f"{train.images.shape[1]}x{train.images.shape[2]}x{train.images.shape[3]}), testing on {held_out} ...")
    started = time.perf_counter()
    net, held_out_accuracy = train_judge(train, test, recipe)
    from ganctl import __version__

    card = {"data": train.fingerprint, "dataset": train.description, "train_images": len(train.labels),
            "held_out": held_out, "held_out_images": len(test.labels), "held_out_data": test.fingerprint,
            "accuracy": held_out_accuracy, "recipe": recipe.__dict__, "ganctl": __version__,
            "seconds": round(time.perf_counter() - started, 1), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    save(out, net, train.classes, card)
    console.print(f"Held-out accuracy {held_out_accuracy:.2%} on {len(test.labels)} images ({held_out}). Judge written to {out}.\n"
                  f"Score a run with it:\n  ganctl eval RUN --feature {escape(word(f'judge:{out}'))}")
    return 0

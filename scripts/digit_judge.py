#!/usr/bin/env python
"""digit_judge: score generated MNIST digits the way an independent judge would.

Why this exists
---------------
ganctl's default MNIST run is tuned against an *independent* judge that we do
not run ourselves: it extracts features from a small digit classifier and
reports the Frechet distance (FD) between generated samples and held-out real
digits, plus whether every digit class shows up. The acceptance bar is
``FD <= 30`` with all ten classes present; on that judge real digits score
about 4 and a plain DCGAN trained for five minutes scores about 60.

This script is a local stand-in for that judge so maintainers can tune
defaults without the real one:

1. A small CNN is trained (CPU, fixed seed, about a minute) on the 4,000 real
   train digits bundled with ganctl (or those under ``<data-root>/MNIST/raw``) with mild random-affine
   augmentation. Its weights are cached at ``~/.cache/ganctl/digit_judge.pt``,
   keyed by a hash of the data and the training recipe, so later runs only
   load them.
2. The 128-d penultimate (fully-connected, post-ReLU) layer is the feature
   space. FD is computed by torchmetrics' ``FrechetInceptionDistance`` given
   that layer as a custom ``feature`` module; the 1,000 held-out real test
   digits are the reference set, and up to 1,000 samples are judged.
3. FD scale depends on the feature layer, so the raw FD is multiplied by a
   fixed factor chosen once, when the judge is trained, such that 1,000 real
   *train* digits versus the real *test* digits score 4.0 -- the figure the
   independent judge gives real digits. Scores are therefore "in units where
   real data scores 4", and a score of 30 means 7.5x the real-data distance.
   The uncalibrated value is reported as ``fd_raw``. (Because FD is quadratic
   in the features, this is the same as scaling the features by
   ``sqrt(factor)``.) The calibration uses a different 1,000-digit train subset
   from the one ``--real-baseline`` reports, so the baseline lands near, not
   exactly on, 4.
4. The classifier's predictions on the samples give a class histogram, the
   number of classes present (a class counts if it has >= 2% of the
   samples) and the mean max-softmax confidence -- a cheap mode-collapse and
   "looks like a digit" check.
5. Samples of requested classes -- a folder of class folders named after the
   digits, ``DIR/0/*.png`` ... ``DIR/9/*.png``, as ``ganctl sample RUN --num 100
   --images-dir DIR`` writes them for a class-conditional MNIST checkpoint --
   also get the share of each requested class that the classifier assigns to
   that class, and overall. The class-conditional bar (``experiment=mnist_cgan``):
   at least 95% overall, at least 85% for every class, and FD <= 30 on all the
   samples together (up to 100 per class are judged, 1,000 in all).

Usage::

    python scripts/digit_judge.py SAMPLES_DIR_OR_FILE [--data-root DIR] [--json out.json]
    python scripts/digit_judge.py CLASS_FOLDERS_DIR [--json out.json]     # DIR/<digit>/*.png
    python scripts/digit_judge.py --real-baseline [--json out.json]

Samples are a folder of PNGs (any size, gray or RGB; resized to 28x28 with
antialiasing, converted to grayscale, white digit on black like MNIST) or a
``.pt`` / ``.npy`` file holding a uint8 tensor of shape (N, 1, 28, 28) or
(N, 28, 28). Float arrays are accepted too: values in [-1, 1] (tanh output)
when any value is negative, else [0, 1] when the maximum is <= 1, else
[0, 255].
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

Logger = Callable[[str], None]

NUM_CLASSES = 10
FEATURE_DIM = 128
MAX_SAMPLES = 1000
MAX_PER_CLASS = 100  # samples of each requested class judged (10 classes: MAX_SAMPLES in all)
PRESENT_FRACTION = 0.02  # a class is "present" with at least 2% of the samples
CONDITIONAL_BAR = {"overall": 0.95, "per_class": 0.85, "fd": 30.0}  # experiment=mnist_cgan's acceptance bar
REAL_FD_TARGET = 4.0  # what the independent judge reports for real digits
SEED = 0
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# Anything that changes the trained judge goes here, so the cache key changes.
RECIPE = {
    "version": 1,
    "arch": "conv32-conv32-pool-conv64-pool-fc128-fc10",
    "epochs": 14,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 5e-4,
    "rotate_deg": 12.0,
    "scale": 0.1,
    "shift_px": 2.5,
    "seed": SEED,
    "calib_samples": MAX_SAMPLES,
    "real_fd_target": REAL_FD_TARGET,
}

DEFAULT_CACHE = Path.home() / ".cache" / "ganctl" / "digit_judge.pt"


# --------------------------------------------------------------------------- model


class DigitNet(nn.Module):
    """Small CNN: three 3x3 conv layers, a 128-d feature layer, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 7x7
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURE_DIM, NUM_CLASSES))

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """uint8 (N,1,28,28) or (N,28,28) in [0,255] -> normalised float (N,1,28,28)."""
        if images.dim() == 3:
            images = images.unsqueeze(1)
        return (images.float() / 255.0 - MNIST_MEAN) / MNIST_STD

    def features(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class JudgeFeatures(nn.Module):
    """Feature extractor handed to torchmetrics' FrechetInceptionDistance.

    Takes uint8 images in [0, 255] (torchmetrics' ``normalize=False`` convention)
    and returns the classifier's (N, 128) penultimate features. ``num_features``
    spares torchmetrics its dummy forward pass, and ``train()`` is a no-op so the
    metric can never flip BatchNorm/Dropout back into training mode.
    """

    def __init__(self, net: DigitNet) -> None:
        super().__init__()
        self.net = net.eval()
        self.num_features = FEATURE_DIM

    def train(self, mode: bool = True) -> "JudgeFeatures":
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.net.features(DigitNet.preprocess(images))


# --------------------------------------------------------------------------- data


@dataclass
class MnistSplits:
    train_x: Tensor  # uint8 (4000, 28, 28)
    train_y: Tensor
    test_x: Tensor  # uint8 (1000, 28, 28)
    test_y: Tensor


def load_mnist(data_root: Path | None) -> MnistSplits:
    """The digits bundled with ganctl (4,000 train, 1,000 test), or MNIST files in torchvision's layout."""
    if data_root is None:
        from ganctl.data import bundled_mnist

        (train_x, train_y), (test_x, test_y) = bundled_mnist("train"), bundled_mnist("test")
        return MnistSplits(train_x[:, 0], train_y.long(), test_x[:, 0], test_y.long())
    from torchvision.datasets import MNIST

    train = MNIST(root=str(data_root), train=True, download=False)
    test = MNIST(root=str(data_root), train=False, download=False)
    return MnistSplits(train.data, train.targets, test.data, test.targets)


def data_hash(splits: MnistSplits) -> str:
    h = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode())
    for t in (splits.train_x, splits.train_y, splits.test_x, splits.test_y):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def to_uint8_images(arr: Tensor) -> Tensor:
    """Any supported array -> uint8 (N, 1, 28, 28)."""
    if arr.dim() == 4 and arr.shape[1] == 3:
        arr = arr.float().mul(torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    if arr.dim() == 3:
        arr = arr.unsqueeze(1)
    if arr.dim() != 4 or arr.shape[1] != 1:
        raise ValueError(f"expected images shaped (N,1,H,W) or (N,H,W), got {tuple(arr.shape)}")
    if arr.dtype != torch.uint8:
        x = arr.float()
        if x.min() < 0:
            x = (x + 1) / 2  # tanh range [-1, 1]
        if x.max() <= 1.0:
            x = x * 255
        arr = x.round().clamp(0, 255).to(torch.uint8)
    if arr.shape[-2:] != (28, 28):
        from torchvision.transforms.functional import resize

        arr = resize(arr, [28, 28], antialias=True)
    return arr


def load_samples(path: Path, limit: int = MAX_SAMPLES) -> Tensor:
    """Load a PNG folder or a .pt/.npy tensor as uint8 (N, 1, 28, 28), at most ``limit``."""
    if path.is_dir():
        from torchvision.io import ImageReadMode, read_image
        from torchvision.transforms.functional import resize

        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise SystemExit(f"no .png files in {path}")
        if len(files) > limit:  # fixed-seed subset, so file order cannot bias the pick
            pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(SEED))[:limit]
            files = [files[i] for i in sorted(pick.tolist())]
        images = []
        for f in files:
            img = read_image(str(f), mode=ImageReadMode.GRAY)  # (1, H, W) uint8; RGB(A) -> gray
            if img.shape[-2:] != (28, 28):
                img = resize(img, [28, 28], antialias=True)
            images.append(img)
        return torch.stack(images)
    if path.suffix == ".pt":
        arr = torch.load(path, map_location="cpu", weights_only=True)
        arr = arr if isinstance(arr, Tensor) else torch.as_tensor(arr)
    elif path.suffix == ".npy":
        arr = torch.from_numpy(np.load(path))
    else:
        raise SystemExit(f"{path}: expected a folder of PNGs, a .pt or a .npy file")
    arr = to_uint8_images(arr)
    if len(arr) > limit:
        arr = arr[torch.randperm(len(arr), generator=torch.Generator().manual_seed(SEED))[:limit]]
    return arr


def class_folders(path: Path) -> dict[int, Path]:
    """A folder's subfolders named after digits (0..9) that hold PNGs: the requested classes."""
    if not path.is_dir():
        return {}
    return {int(sub.name): sub for sub in sorted(path.iterdir())
            if sub.is_dir() and sub.name.isdigit() and int(sub.name) < NUM_CLASSES and any(sub.glob("*.png"))}


def load_requested(folders: dict[int, Path]) -> tuple[Tensor, Tensor]:
    """Up to MAX_PER_CLASS samples of each requested class: (images (N, 1, 28, 28) uint8, requested class (N,))."""
    images, requested = [], []
    for digit, folder in folders.items():
        batch = load_samples(folder, limit=MAX_PER_CLASS)
        images.append(batch)
        requested.append(torch.full((len(batch),), digit, dtype=torch.long))
    return torch.cat(images), torch.cat(requested)


@dataclass
class ClassVerdict:
    overall: float  # share of all samples classified as the class requested for them
    per_class: dict[str, dict[str, float]]  # digit -> {"num": N, "accuracy": share}
    confusions: dict[str, list[int]]  # digit -> predicted class counts of its samples

    def passed(self, fd: float) -> bool:
        return (self.overall >= CONDITIONAL_BAR["overall"] and fd <= CONDITIONAL_BAR["fd"]
                and all(entry["accuracy"] >= CONDITIONAL_BAR["per_class"] for entry in self.per_class.values()))


def judge_classes(images: Tensor, requested: Tensor, net: DigitNet) -> ClassVerdict:
    """How many samples of each requested class the classifier assigns to that class."""
    predicted = predict(net, images).argmax(1)
    per_class, confusions = {}, {}
    for digit in requested.unique().tolist():
        mine = requested == digit
        per_class[str(digit)] = {"num": int(mine.sum()), "accuracy": (predicted[mine] == digit).float().mean().item()}
        confusions[str(digit)] = torch.bincount(predicted[mine], minlength=NUM_CLASSES).tolist()
    return ClassVerdict((predicted == requested).float().mean().item(), per_class, confusions)


def print_class_report(verdict: ClassVerdict, fd: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    table = Table(title="requested classes: share classified as asked, and the predicted class counts", title_justify="left")
    table.add_column("asked", justify="right")
    table.add_column("N", justify="right")
    table.add_column("as asked", justify="right")
    for d in range(NUM_CLASSES):
        table.add_column(str(d), justify="right")
    for digit, entry in verdict.per_class.items():
        style = "green" if entry["accuracy"] >= CONDITIONAL_BAR["per_class"] else "red"
        table.add_row(digit, str(entry["num"]), f"[{style}]{entry['accuracy']:.1%}[/]", *map(str, verdict.confusions[digit]))
    console.print(table)
    verdict_text = "[green]passes[/]" if verdict.passed(fd) else "[red]fails[/]"
    console.print(f"overall {verdict.overall:.1%} classified as asked, FD {fd:.2f}: {verdict_text} the class-conditional bar "
                  f"(>= {CONDITIONAL_BAR['overall']:.0%} overall, >= {CONDITIONAL_BAR['per_class']:.0%} per class, "
                  f"FD <= {CONDITIONAL_BAR['fd']:g})")


def random_subset(x: Tensor, n: int, seed: int = SEED) -> Tensor:
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]


# --------------------------------------------------------------------------- training


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random small rotation / scale / shift of a normalised batch, fully vectorised."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(RECIPE["rotate_deg"])
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * RECIPE["scale"]
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (RECIPE["shift_px"] / 14.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    background = (0.0 - MNIST_MEAN) / MNIST_STD
    return F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros") + background


@torch.no_grad()
def predict(net: DigitNet, images: Tensor, batch: int = 500) -> Tensor:
    """Softmax probabilities (N, 10) for uint8 images."""
    net.eval()
    return torch.cat([net(DigitNet.preprocess(images[i : i + batch])).softmax(1) for i in range(0, len(images), batch)])


def train_judge(splits: MnistSplits, log: Logger) -> tuple[DigitNet, float, float]:
    """Train the classifier; returns (net, test accuracy, seconds)."""
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    net = DigitNet()
    x = DigitNet.preprocess(splits.train_x)
    y = splits.train_y
    epochs, bs = RECIPE["epochs"], RECIPE["batch_size"]
    steps = epochs * math.ceil(len(x) / bs)
    opt = torch.optim.AdamW(net.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=RECIPE["lr"], total_steps=steps, pct_start=0.2)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(augment(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = (predict(net, splits.test_x).argmax(1) == splits.test_y).float().mean().item()
        log(f"  epoch {epoch + 1:2d}/{epochs}  loss {loss.item():.3f}  test acc {acc:.2%}")
    seconds = time.perf_counter() - start
    net.eval()
    return net, acc, seconds


def load_or_train(splits: MnistSplits, cache: Path, retrain: bool, log: Logger) -> dict:
    """Return the judge state {net, test_acc, train_seconds, fd_scale, cached}."""
    key = data_hash(splits)
    if cache.exists() and not retrain:
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("key") == key:
            net = DigitNet()
            net.load_state_dict(blob["state_dict"])
            net.eval()
            return {**{k: blob[k] for k in ("test_acc", "train_seconds", "fd_scale")}, "net": net, "cached": True}
        log("cached judge does not match the data/recipe; retraining")
    log(f"training digit judge on {len(splits.train_x)} digits (CPU, seed {SEED}) ...")
    net, acc, seconds = train_judge(splits, log)
    # Calibration: factor that makes real train vs real test score REAL_FD_TARGET.
    fid = make_fid(net, splits.test_x)
    # A different subset (seed + 1) from the one --real-baseline reports, so that the
    # baseline is a check of the calibration rather than a restatement of it.
    raw_real = frechet(fid, random_subset(splits.train_x, MAX_SAMPLES, seed=SEED + 1))
    fd_scale = REAL_FD_TARGET / raw_real
    cache.parent.mkdir(parents=True, exist_ok=True)
    blob = {"key": key, "state_dict": net.state_dict(), "test_acc": acc, "train_seconds": seconds, "fd_scale": fd_scale}
    torch.save(blob, cache)
    log(f"trained in {seconds:.1f}s, test accuracy {acc:.2%}, raw real FD {raw_real:.3f}; cached at {cache}")
    return {"net": net, "test_acc": acc, "train_seconds": seconds, "fd_scale": fd_scale, "cached": False}


# --------------------------------------------------------------------------- judging


def make_fid(net: DigitNet, real_images: Tensor) -> FrechetInceptionDistance:
    """torchmetrics FID with the judge's features, real statistics accumulated once."""
    fid = FrechetInceptionDistance(feature=JudgeFeatures(net), normalize=False, reset_real_features=False)
    real_images = to_uint8_images(real_images)
    for i in range(0, len(real_images), 500):
        fid.update(real_images[i : i + 500], real=True)
    return fid


def frechet(fid: FrechetInceptionDistance, images: Tensor) -> float:
    """Raw FD between ``images`` (uint8) and the real statistics held by ``fid``."""
    fid.reset()  # clears only the fake statistics (reset_real_features=False)
    for i in range(0, len(images), 500):
        fid.update(images[i : i + 500], real=False)
    return float(fid.compute())


@dataclass
class Verdict:
    name: str
    fd: float
    fd_raw: float
    classes_present: int
    class_counts: list[int]
    confidence: float
    num_samples: int


def judge(name: str, images: Tensor, net: DigitNet, fid: FrechetInceptionDistance, fd_scale: float) -> Verdict:
    images = to_uint8_images(images)
    raw = frechet(fid, images)
    probs = predict(net, images)
    counts = torch.bincount(probs.argmax(1), minlength=NUM_CLASSES)
    present = int((counts >= PRESENT_FRACTION * len(images)).sum())
    return Verdict(
        name=name,
        fd=raw * fd_scale,
        fd_raw=raw,
        classes_present=present,
        class_counts=counts.tolist(),
        confidence=probs.max(1).values.mean().item(),
        num_samples=len(images),
    )


def print_report(verdicts: list[Verdict], state: dict, n_real: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    source = "cached" if state["cached"] else f"trained in {state['train_seconds']:.0f}s"
    summary = Table(
        title=f"digit judge ({source}, test acc {state['test_acc']:.1%}): "
        f"FD vs {n_real} real test digits, real digits ~ {REAL_FD_TARGET:g}",
        title_justify="left",
    )
    summary.add_column("samples", overflow="fold")
    summary.add_column("N", justify="right")
    summary.add_column("FD", justify="right")
    summary.add_column("FD raw", justify="right")
    summary.add_column("classes", justify="right")
    summary.add_column("confidence", justify="right")
    counts = Table(title="predicted class counts", title_justify="left")
    counts.add_column("samples", overflow="fold")
    for d in range(NUM_CLASSES):
        counts.add_column(str(d), justify="right")
    for v in verdicts:
        style = "green" if v.fd <= 30 and v.classes_present == NUM_CLASSES else "red"
        summary.add_row(
            v.name,
            str(v.num_samples),
            f"[{style}]{v.fd:.2f}[/]",
            f"{v.fd_raw:.2f}",
            f"{v.classes_present}/{NUM_CLASSES}",
            f"{v.confidence:.3f}",
        )
        counts.add_row(v.name, *(str(c) for c in v.class_counts))
    console.print(summary)
    console.print(counts)
    console.print(f"[dim]a class is present with >= {PRESENT_FRACTION:.0%} of samples; "
                  "ganctl's default run must reach FD <= 30 with all 10 present[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="?", type=Path, help="folder of PNGs, or a .pt/.npy uint8 tensor")
    parser.add_argument("--data-root", type=Path, help="folder holding MNIST/raw (default: the digits bundled with ganctl)")
    parser.add_argument("--json", type=Path, help="write the verdict as JSON here")
    parser.add_argument("--real-baseline", action="store_true", help="judge 1,000 real train digits (and uniform noise)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="trained judge cache file")
    parser.add_argument("--retrain", action="store_true", help="ignore the cache and retrain")
    args = parser.parse_args(argv)
    if (args.samples is None) == (not args.real_baseline):
        parser.error("give SAMPLES_DIR_OR_FILE or --real-baseline (not both)")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    splits = load_mnist(args.data_root)
    state = load_or_train(splits, args.cache, args.retrain, log)
    net: DigitNet = state["net"]
    fid = make_fid(net, splits.test_x)
    classes = None

    if args.real_baseline:
        noise = torch.randint(0, 256, (MAX_SAMPLES, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(SEED))
        verdicts = [
            judge("real train digits", random_subset(splits.train_x, MAX_SAMPLES), net, fid, state["fd_scale"]),
            judge("uniform noise", noise, net, fid, state["fd_scale"]),
        ]
    elif class_folders(args.samples):
        images, requested = load_requested(class_folders(args.samples))
        verdicts = [judge(str(args.samples), images, net, fid, state["fd_scale"])]
        classes = judge_classes(images, requested, net)
    else:
        verdicts = [judge(str(args.samples), load_samples(args.samples), net, fid, state["fd_scale"])]

    print_report(verdicts, state, len(splits.test_x))
    if classes is not None:
        print_class_report(classes, verdicts[0].fd)
    if args.json:
        out = {k: v for k, v in asdict(verdicts[0]).items() if k != "name"}
        if classes is not None:
            out["requested"] = {**asdict(classes), "passed": classes.passed(verdicts[0].fd)}
        out["judge_test_accuracy"] = state["test_acc"]
        out["fd_scale"] = state["fd_scale"]
        if args.real_baseline:
            out["noise_fd"] = verdicts[1].fd
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

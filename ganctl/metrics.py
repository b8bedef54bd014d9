"""Image-quality metrics (FID, KID, Inception Score) on torchmetrics, and the card that says how each
number was made.

The numbers come from the ecosystem's code: torch-fidelity's Inception-v3 (the TensorFlow FID network,
ported) extracts the features, torchmetrics' FrechetInceptionDistance, KernelInceptionDistance and
InceptionScore do the statistics. Features are extracted once per image and handed to the three
metrics through a pass-through module, so any feature extractor can stand in for Inception:

    feature extractor: uint8 images (B, C, H, W) at the dataset's size -> features (B, D)

The Inception backbone repeats grayscale to 3 channels and resizes to 299x299 itself. The features
of the real images are computed once per (dataset fingerprint, split, count, backbone, weights) and
cached on disk. In the training loop:

    evaluator = metrics.Evaluator(cfg.metrics, real_source, device)  # real features: cache or compute
    cards = evaluator(gan.sampler, step)                             # one card per metric
    metrics.append_jsonl(run_dir, cards)                             # <run>/metrics.jsonl
    logger.log(metrics.scalars(cards), step)                         # {"metrics/fid": ..., ...}
    if metrics.is_better("fid", value, best): ...                    # keep checkpoints/best.pt

Sampling for metrics draws its latents from its own torch.Generator and forks the global RNG around
the metrics' own random subsets (KID, IS), so evaluating never changes what training draws next.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl import data
from ganctl.config import MetricsSettings, check_metric_names
from ganctl.registry import build
from ganctl.console import console, warn
from ganctl.errors import GanctlError
from ganctl.files import append_text, write_atomically

HIGHER_IS_BETTER = {"fid": False, "kid": False, "is": True, "intra_fid": False, "intra_kid": False,
                    "precision": True, "recall": True, "density": True, "coverage": True}
# Fidelity and diversity apart, from k nearest neighbours in feature space: precision and recall
# (Kynkäänniemi et al. 2019, k=3, torch-fidelity's code) and density and coverage (Naeem et al. 2020, k=5).
PR_NEIGHBOURS, DC_NEIGHBOURS = 3, 5
KNN_METRICS = ("precision", "recall", "density", "coverage")
WEIGHTS_ENV = "GANCTL_INCEPTION_WEIGHTS"
CACHE_FORMAT, CACHE_VERSION = "ganctl-real-features", 1
# torch-fidelity's Inception-v3 weights (the TF 2015-12-05 graph, converted); torchmetrics uses the same
# file. The name's suffix is the start of its SHA-256, as torch.hub checks on download.
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS = 100, 1000, 10


# --------------------------------------------------------------------------- where files live


def hub_weights_path() -> Path:
    """Where torch.hub (and so torch-fidelity and torchmetrics) keeps the Inception weights:
    $TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def missing_weights_message(reason: str) -> str:
    return (
        f"FID, KID, IS, precision, recall, density and coverage need the Inception-v3 weights file {INCEPTION_FILE}, and {reason}. "
        f"On a machine with internet, download it from {INCEPTION_URL} and put it in "
        f"{hub_weights_path().parent}/ (torch's hub cache, found automatically), or anywhere and point at it "
        f"with the environment variable {WEIGHTS_ENV}=/path/to/{INCEPTION_FILE}, the config key "
        f"metrics.inception_weights=/path/to/{INCEPTION_FILE} (ganctl train) or --inception-weights (ganctl eval)."
    )


def inception_weights(configured: Optional[str] = None) -> Path:
    """The local Inception weights file: `configured` (metrics.inception_weights or --inception-weights),
    else $GANCTL_INCEPTION_WEIGHTS, else torch's hub cache, downloading it there once when online.
    A GanctlError naming the file, its URL and where to put it when none of these works."""
    for where, value in (("metrics.inception_weights", configured), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV))):
        if value:
            path = Path(value).expanduser()
            if path.is_file():
                return path
            raise GanctlError(missing_weights_message(f"{where} points at {path}, which is not a file"))
    cached = hub_weights_path()
    if cached.is_file():
        return cached
    console.print(f"Downloading the Inception-v3 weights once, into {cached} ...")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX, progress=False)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as error:  # offline, refused, bad hash
        reason = f"it is not in {cached.parent} and downloading it failed ({type(error).__name__}: {error})"
        raise GanctlError(missing_weights_message(reason)) from None
    return cached


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(module: nn.Module) -> str:
    """A digest of a module's weights (names, shapes and values), for extractors without a file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- feature extractors


class InceptionFeatures(nn.Module):
    """torch-fidelity's Inception-v3: uint8 images (B, 1 or 3, H, W) -> (pool features (B, 2048),
    class logits (B, 1008)) in one pass. Grayscale is repeated to RGB; torch-fidelity resizes to
    299x299 with TensorFlow 1.x's bilinear interpolation, as the original FID code does."""

    resize = "bilinear, TensorFlow 1.x compatible, to 299x299 (torch-fidelity)"

    def __init__(self, weights: Path) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        # torch-fidelity reads the file with weights_only=False: read it safely first, so that a
        # file that could run code when unpickled is refused before it gets there.
        try:
            torch.load(weights, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise GanctlError(
                f"Refusing to load {weights}: it holds objects that could run code when unpickled. "
                + missing_weights_message("this file is not it")
            ) from None
        except Exception as error:  # torch.load fails in many ways on a truncated or foreign file
            raise GanctlError(
                missing_weights_message(f"{weights} cannot be read ({type(error).__name__}: truncated or not a PyTorch file)")
            ) from None
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(weights))
        except RuntimeError as error:  # load_state_dict: other keys or shapes
            raise GanctlError(
                missing_weights_message(f"{weights} holds other weights ({str(error).splitlines()[0]})")
            ) from None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)  # grayscale -> RGB, (B, 3, H, W)
        features, logits = self.net(images)
        return features, logits


class PooledPixels(nn.Module):
    """A tiny feature extractor without weights: each image average-pooled to size x size pixels,
    scaled to [0, 1], (B, C * size * size). For tests and quick offline checks; its numbers are not
    comparable with Inception FIDs. Config: metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.size = size
        self.resize = f"adaptive average pooling to {size}x{size}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(images.float() / 255.0, self.size)  # (B, C, size, size)
        return pooled.flatten(1)


class Passthrough(nn.Module):
    """Hands precomputed features to a torchmetrics metric as if it had extracted them."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@dataclass
class Backbone:
    """A feature extractor and what the card says about it."""

    module: nn.Module
    name: str
    weights_sha256: str
    resize: str
    has_logits: bool  # forward returns (features, logits): Inception, whose logits IS needs

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        out = self.module(images)
        features, logits = out if self.has_logits else (out, None)
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise GanctlError(
                f"The feature extractor {self.name} returned {tuple(features.shape)} for {images.shape[0]} images; "
                "it must map uint8 images (B, C, H, W) to features (B, D)."
            )
        return features.float().cpu(), None if logits is None else logits.float().cpu()


def build_backbone(feature: Any, device: torch.device, inception_weights_path: Optional[str] = None) -> Backbone:
    """'inception', a config node with _target_ (a ganctl component), or any nn.Module."""
    if isinstance(feature, str) and feature == "inception":
        weights = inception_weights(inception_weights_path)
        sha256 = file_sha256(weights)
        if not sha256.startswith(INCEPTION_SHA256_PREFIX):
            warn(f"{weights} is not torch-fidelity's {INCEPTION_FILE} (SHA-256 {sha256[:12]}...): "
                 "its scores are not comparable with published ones.")
        module = InceptionFeatures(weights)
        name = "inception-v3 pool3 2048-d (torch-fidelity)"
        return Backbone(module.to(device).eval(), name, sha256, module.resize, has_logits=True)
    if isinstance(feature, nn.Module):
        module, name = feature, f"{type(feature).__module__}.{type(feature).__qualname__}"
    elif isinstance(feature, (dict, DictConfig)) and "_target_" in feature:
        node = OmegaConf.to_container(feature, resolve=True) if isinstance(feature, DictConfig) else dict(feature)
        module = build(node, "metrics.feature")
        if not isinstance(module, nn.Module):
            raise GanctlError(f"metrics.feature must build a torch.nn.Module, got {type(module).__name__}.")
        arguments = ",".join(f"{key}={value}" for key, value in node.items() if key != "_target_")
        name = f"{node['_target_']}({arguments})"
    else:
        raise GanctlError(
            f"metrics.feature must be 'inception' or a config node with _target_ naming a ganctl feature "
            f"extractor (e.g. {{_target_: ganctl.metrics.PooledPixels, size: 8}}), got {feature!r}."
        )
    module = module.to(device).eval().requires_grad_(False)
    return Backbone(module, name, state_sha256(module), str(getattr(module, "resize", "none")), has_logits=False)


# --------------------------------------------------------------------------- real statistics, cached


@torch.no_grad()
def extract(backbone: Backbone, batches: Iterable[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Features (N, D) and logits (N, K) or None of uint8 image batches, on the CPU."""
    features, logits = [], []
    for images in batches:
        batch_features, batch_logits = backbone(images.to(device))
        features.append(batch_features)
        logits.append(batch_logits)
    return torch.cat(features), None if logits[0] is None else torch.cat(logits)


def first(batches: Iterable[torch.Tensor], num: int) -> Iterator[torch.Tensor]:
    """The first num images of a stream of batches."""
    for images in batches:
        if num <= 0:
            return
        yield images[:num]
        num -= images.shape[0]


def real_features(
    real: Any, split: str, num_real: Optional[int], batch_size: int, backbone: Backbone, device: torch.device,
    with_labels: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Path, bool]:
    """The backbone's features (N, D) of the first num_real real images (all when None), from the disk
    cache when it has them: (features, their labels (N,) when asked for (else None), cache file,
    whether it was a cache hit). The key covers the data (its fingerprint changes with the images and
    their size), the split, the count and the backbone with its weights, so any change computes them
    afresh; a cache file without the labels asked for (written for an unconditional GAN) is too."""
    count = len(real) if num_real is None else min(num_real, len(real))
    meta = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "dataset": real.fingerprint,
        "split": split,
        "channels": int(real.channels),
        "image_size": int(real.image_size),
        "num_real": count,
        "backbone": backbone.name,
        "weights_sha256": backbone.weights_sha256,
        "resize": backbone.resize,
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    path = data.cache_dir(None) / "real_features" / f"{key[:32]}.pt"
    lacks_labels = False
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(stored, dict) and stored.get("meta") == meta and isinstance(stored.get("features"), torch.Tensor):
                features, labels = stored["features"], stored.get("labels")
                if not with_labels:
                    return features, None, path, True
                if isinstance(labels, torch.Tensor) and labels.shape == (features.shape[0],):
                    return features, labels, path, True
                lacks_labels = True
        except Exception:  # unreadable in any way: computed afresh below
            pass
        if not lacks_labels:
            warn(f"ignoring the unreadable or foreign cache file {path}; recomputing it.")
    console.print(f"Computing {backbone.name} features of {count} real {split} images (once; cached in {path.parent})")
    if with_labels:
        batch_labels: list[torch.Tensor] = []

        def images_of(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[torch.Tensor]:
            for images, labels in pairs:
                batch_labels.append(labels.cpu())
                yield images

        features, _ = extract(backbone, first(images_of(real.labelled_batches(batch_size)), count), device)
        labels = torch.cat(batch_labels)[:count]
        entry = {"meta": meta, "features": features, "labels": labels}
    else:
        features, _ = extract(backbone, first(real.batches(batch_size), count), device)
        labels, entry = None, {"meta": meta, "features": features}
    try:
        write_atomically(path, lambda f: torch.save(entry, f))
    except OSError as error:  # a read-only cache costs time, not the result
        warn(f"cannot cache the real features in {path}: {error}")
    return features, labels, path, False


# --------------------------------------------------------------------------- the metrics


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """G's images in [-1, 1] -> uint8, rounded exactly as torchvision's save_image writes PNGs."""
    return images.add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def proportional_labels(real_labels: torch.Tensor, num_classes: int, num: int) -> torch.Tensor:
    """num labels, sorted by class, with each class's share of the real labels (largest remainder: the
    counts sum to num exactly, and the same real labels always give the same fake ones)."""
    counts = torch.bincount(real_labels, minlength=num_classes).double()
    exact = counts / counts.sum() * num
    chosen = exact.floor().long()
    leftover = int(num - chosen.sum())
    chosen[torch.argsort(exact - chosen, descending=True, stable=True)[:leftover]] += 1
    return torch.repeat_interleave(torch.arange(num_classes), chosen)


def kth_neighbour_distances(features: torch.Tensor, k: int, batch_size: int = 2000) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point in the same set (N,)."""
    return torch.cat([torch.cdist(chunk, features).kthvalue(k + 1, dim=1).values for chunk in features.split(batch_size)])


def precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fake (M, D) against real (N, D)
    features, with torch-fidelity's implementation: precision, the share of fakes inside the k-NN
    ball of some real point (fidelity); recall, the share of reals inside some fake's ball (diversity)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    return calculate_precision_recall_part(fake.double(), real.double(), neighborhood=k, batch_size=2000)


def density_coverage(fake: torch.Tensor, real: torch.Tensor, k: int = DC_NEIGHBOURS, batch_size: int = 2000) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), as the authors' `prdc` package computes them, on the
    real points' k-NN balls only (robust to outlying fakes): density, how many real balls hold each
    fake, over k (about 1 when the two match; above 1 when fakes crowd dense regions); coverage, the
    share of real points whose ball holds at least one fake."""
    real, fake = real.double(), fake.double()
    radii = kth_neighbour_distances(real, k, batch_size)  # (N,)
    inside_count = torch.zeros(fake.shape[0], dtype=torch.float64)
    nearest_fake = torch.full((real.shape[0],), float("inf"), dtype=torch.float64)
    for start in range(0, real.shape[0], batch_size):
        distances = torch.cdist(real[start : start + batch_size], fake)  # (B, M)
        inside_count += (distances < radii[start : start + batch_size, None]).sum(dim=0)
        nearest_fake[start : start + batch_size] = distances.min(dim=1).values
    density = inside_count.sum().item() / (k * fake.shape[0])
    coverage = (nearest_fake < radii).double().mean().item()
    return density, coverage


class Evaluator:
    """FID / KID / IS of a generator against one real dataset split.

    `Evaluator(settings, real, device, feature_extractor=None, classes=None)`: settings is the config's
    `metrics` block (a DictConfig, dict or MetricsSettings); real is a ganctl.data source (`.batches`,
    `.fingerprint`, `.channels`, `.image_size`); feature_extractor, any nn.Module mapping uint8 images
    (B, C, H, W) to (B, D) features, replaces settings.feature. Building it loads (or computes and
    caches) the real features, so it is built once per run. `evaluator(sampler, step)` scores the
    images of a `sampling.Sampler` (the one door to G's images) and returns one card per metric.

    For a class-conditional generator (`classes`: its class names, which the real data must have too)
    the fakes are made in the real images' class proportions, and FID and KID are also computed class
    by class -- each class's fakes against that class's real images, from the same features split by
    label -- with a card per class (`fid/<class>`) and their mean, the intra-class FID (`intra_fid`;
    `intra_kid` likewise) beside the overall one.
    """

    def __init__(self, settings: Any, real: Any, device: torch.device, feature_extractor: Optional[nn.Module] = None,
                 classes: Optional[list[str]] = None) -> None:
        self.settings = MetricsSettings.from_node(settings)
        self.names = check_metric_names(self.settings.names)
        self.device, self.real = torch.device(device), real
        self.classes = list(classes) if classes is not None else None
        if self.classes is not None and getattr(real, "classes", None) != self.classes:
            raise GanctlError(
                f"The generator was trained on the classes {', '.join(self.classes)}, but the real images it is "
                f"compared with have {', '.join(getattr(real, 'classes', None) or ['no labels'])}: the dataset "
                "changed since training. Point the dataset at the data it was trained on."
            )
        self.backbone = build_backbone(feature_extractor if feature_extractor is not None else self.settings.feature, self.device, self.settings.inception_weights)
        if "is" in self.names and not (self.backbone.has_logits and real.channels == 3):
            raise GanctlError(
                "The Inception Score needs the Inception backbone and 3-channel images (it scores ImageNet classes); "
                f"this run has {real.channels}-channel images and the {self.backbone.name} backbone. Use fid and kid."
            )
        features, self.real_labels, self.cache_path, self.cache_hit = real_features(
            real, self.settings.split, self.settings.num_real, self.settings.batch_size, self.backbone, self.device,
            with_labels=self.classes is not None,
        )
        self.num_real = features.shape[0]
        if self.num_real < 2:
            raise GanctlError(f"FID and KID need at least 2 real images; the {self.settings.split} split has {self.num_real}.")
        self.metrics = self._build_metrics(features)
        self.real_features = features if any(name in KNN_METRICS for name in self.names) else None
        if self.classes is not None:
            self.real_by_class = [features[self.real_labels == index] for index in range(len(self.classes))]
            self.fake_labels = proportional_labels(self.real_labels, len(self.classes), self.settings.num_fake)
            self.class_metrics = self._build_metrics(features, per_class=True)

    def _build_metrics(self, real: torch.Tensor, per_class: bool = False) -> dict[str, Any]:
        """torchmetrics' metrics of self.names, holding the real features; `per_class`: FID and KID
        only, fed each class's real features anew (reset clears real and fake features alike)."""
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore
        from torchmetrics.image.kid import KernelInceptionDistance

        dim = real.shape[1]
        metrics: dict[str, Any] = {}
        with warnings.catch_warnings():  # KID and IS warn that they keep every feature: that is the point
            warnings.simplefilter("ignore", UserWarning)
            if "fid" in self.names:
                metrics["fid"] = FrechetInceptionDistance(feature=Passthrough(dim), reset_real_features=per_class)
            if "kid" in self.names:
                metrics["kid"] = KernelInceptionDistance(
                    feature=Passthrough(dim), subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, reset_real_features=per_class
                )
            if "is" in self.names and not per_class:
                metrics["is"] = InceptionScore(feature=Passthrough(1008), splits=IS_SPLITS)
        for name in ("fid", "kid"):
            if name in metrics and not per_class:
                for chunk in real.split(1000):
                    metrics[name].update(chunk, real=True)
        return metrics

    def fake_batches(self, sampler: Any) -> Iterator[torch.Tensor]:
        """settings.num_fake uint8 images from the sampler's G (in eval mode). The latents are those of
        `ganctl sample --seed <metrics.seed>`, drawn from their own torch.Generator on the CPU; a
        conditional G's labels are those of `self.fake_labels`."""
        if sampler.conditional != (self.classes is not None):
            raise GanctlError("A class-conditional generator is scored against labelled real images, an "
                              "unconditional one without labels: build the Evaluator with the generator's classes.")
        latents = sampler.latents(self.settings.num_fake, self.settings.seed)
        labels = self.fake_labels if self.classes is not None else None
        for images in sampler.batches(latents, self.settings.batch_size, labels):
            yield to_uint8(images)  # (B, C, H, W)

    def __call__(self, sampler: Any, step: int) -> list[dict[str, Any]]:
        """The configured metrics of the sampler's images at `step`, as cards (and, conditional, the
        intra-class ones)."""
        return self.score(self.fake_batches(sampler), step, self.fake_labels if self.classes is not None else None)

    @torch.no_grad()
    def score(self, batches: Iterable[torch.Tensor], step: int, labels: Optional[torch.Tensor] = None) -> list[dict[str, Any]]:
        """The configured metrics of any uint8 image batches (B, C, H, W) against the real images; with
        the images' `labels` (a conditional Evaluator's), the intra-class FID and KID too."""
        features, logits = extract(self.backbone, batches, self.device)
        num_fake = features.shape[0]
        if num_fake < 2:
            raise GanctlError(f"FID, KID and IS need at least 2 generated images, got {num_fake}.")
        cards = []
        neighbours = self.nearest_neighbour_metrics(features)
        # KID and IS draw random subsets from the global RNG: fork it, so training draws the same
        # numbers as without evaluation, and seed it, so the same features give the same score.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            for name in self.names:
                if name in KNN_METRICS:
                    cards.append(self.card(name, neighbours[name], None, num_fake, step))
                    continue
                metric = self.metrics[name]
                metric.reset()  # fake features only: the real ones stay (reset_real_features=False)
                if name == "is":
                    metric.update(logits)
                else:
                    for chunk in features.split(1000):
                        metric.update(chunk, real=False)
                if name == "kid":  # torchmetrics needs subsets no larger than either set
                    metric.subset_size = min(KID_SUBSET_SIZE, self.num_real, num_fake)
                result = metric.compute()
                value, std = (result, None) if name == "fid" else result
                cards.append(self.card(name, float(value), None if std is None else float(std), num_fake, step))
                metric.reset()
            if labels is not None and self.classes is not None:
                for name in self.class_metrics:
                    cards += self.intra_class(name, features, labels, step)
        return cards

    def nearest_neighbour_metrics(self, features: torch.Tensor) -> dict[str, float]:
        """Precision, recall, density and coverage (those asked for) of fake features against the real
        ones: one pass of k-NN distances for each pair."""
        values: dict[str, float] = {}
        if self.real_features is None:
            return values
        k_needed = max(PR_NEIGHBOURS, DC_NEIGHBOURS) + 1
        if min(features.shape[0], self.num_real) < k_needed:
            raise GanctlError(f"Precision, recall, density and coverage compare k-nearest-neighbour balls: they need at "
                              f"least {k_needed} real and {k_needed} generated images, got {self.num_real} and {features.shape[0]}.")
        if {"precision", "recall"} & set(self.names):
            values["precision"], values["recall"] = precision_recall(features, self.real_features)
        if {"density", "coverage"} & set(self.names):
            values["density"], values["coverage"] = density_coverage(features, self.real_features)
        return values

    def intra_class(self, name: str, features: torch.Tensor, labels: torch.Tensor, step: int) -> list[dict[str, Any]]:
        """`name` (fid or kid) of each class's fakes against its real images, a card each, then their
        mean (intra_<name>). A class with fewer than 2 real or fake images is left out (and said so)."""
        metric, cards = self.class_metrics[name], []
        for index, class_name in enumerate(self.classes):
            real, fake = self.real_by_class[index], features[labels == index]
            if min(len(real), len(fake)) < 2:
                continue
            metric.reset()  # real and fake features both (reset_real_features=True)
            metric.update(real, real=True)
            metric.update(fake, real=False)
            if name == "kid":
                metric.subset_size = min(KID_SUBSET_SIZE, len(real), len(fake))
            result = metric.compute()
            value, std = (result, None) if name == "fid" else result
            card = self.card(name, float(value), None if std is None else float(std), len(fake), step)
            card.update(metric=f"{name}/{class_name}", num_real=len(real), **{"class": class_name, "class_index": index})
            if name == "kid":
                card["options"]["subset_size"] = metric.subset_size
            cards.append(card)
        metric.reset()
        if not cards:
            return []
        values = torch.tensor([card["value"] for card in cards], dtype=torch.float64)
        mean = self.card(name, values.mean().item(), values.std().item() if len(cards) > 1 else None,
                         sum(card["num_fake"] for card in cards), step)
        left_out = [class_name for class_name in self.classes if class_name not in {card["class"] for card in cards}]
        mean["options"].update(classes=len(cards), left_out=left_out, std="across classes")
        if name == "kid":
            mean["options"]["subset_size"] = "per class: at most the class's image counts"
        mean.update(metric=f"intra_{name}", num_real=sum(card["num_real"] for card in cards))
        return [mean, *cards]

    def card(self, name: str, value: float, std: Optional[float], num_fake: int, step: int) -> dict[str, Any]:
        """How a number was made: enough to reproduce it, or to see why two numbers differ."""
        options: dict[str, Any] = {"seed": self.settings.seed}
        if name == "kid":
            options.update(subsets=KID_SUBSETS, subset_size=self.metrics["kid"].subset_size, degree=3)
        if name == "is":
            options.update(splits=IS_SPLITS)
        if name in KNN_METRICS:
            options.update(k=PR_NEIGHBOURS if name in ("precision", "recall") else DC_NEIGHBOURS,
                           method="Kynkäänniemi et al. 2019 (torch-fidelity)" if name in ("precision", "recall")
                           else "Naeem et al. 2020 (real k-NN balls)")
        from importlib.metadata import version

        return {
            "metric": name,
            "value": value,
            "std": std,
            "step": step,
            "num_real": self.num_real,
            "num_fake": num_fake,
            "split": self.settings.split,
            "dataset": self.real.fingerprint,
            "image_size": int(self.real.image_size),
            "channels": int(self.real.channels),
            "backbone": self.backbone.name,
            "weights_sha256": self.backbone.weights_sha256,
            "resize": self.backbone.resize,
            "options": options,
            "library": (f"torch-fidelity {version('torch-fidelity')}" if name in ("precision", "recall") else
                        "ganctl (k-NN on the same features)" if name in KNN_METRICS else f"torchmetrics {version('torchmetrics')}"),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def scalars(cards: Iterable[dict[str, Any]]) -> dict[str, float]:
    """{"metrics/fid": 12.3, ...} for RunLogger.log / TensorBoard."""
    return {f"metrics/{card['metric']}": card["value"] for card in cards}


def is_better(name: str, new: float, old: Optional[float]) -> bool:
    """Whether `new` beats `old` (None: nothing yet) for metric `name` (FID, KID lower; IS higher)."""
    if old is None:
        return True
    return new > old if HIGHER_IS_BETTER[name] else new < old


def append_jsonl(run_dir: str | os.PathLike, cards: Iterable[dict[str, Any]]) -> Path:
    """Append each card as one JSON line to <run_dir>/metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    append_text(path, "".join(json.dumps(card) + "\n" for card in cards))  # never through a link
    return path

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

from ganctl import data, judge, protocols
from ganctl import features as extractors
from ganctl.config import JUDGE_METRICS, MetricsSettings, check_metric_names, judge_metrics
from ganctl import registry
from ganctl.registry import build
from ganctl.console import console, warn
from ganctl.errors import GanctlError
from ganctl.files import append_text, write_atomically

HIGHER_IS_BETTER = {"fid": False, "kid": False, "is": True, "intra_fid": False, "intra_kid": False,
                    "precision": True, "recall": True, "density": True, "coverage": True,
                    "class_balance": True, "judge_accuracy": True, "ppl_zend": False, "ppl_wend": False}
# Fidelity and diversity apart, from k nearest neighbours in feature space: precision and recall
# (Kynkäänniemi et al. 2019, k=3, torch-fidelity's code) and density and coverage (Naeem et al. 2020, k=5).
PR_NEIGHBOURS, DC_NEIGHBOURS = 3, 5
KNN_METRICS = ("precision", "recall", "density", "coverage")
PPL_NAMES = ("ppl_zend", "ppl_wend")
WEIGHTS_ENV = "GANCTL_INCEPTION_WEIGHTS"
CACHE_FORMAT, CACHE_VERSION = "ganctl-real-features", 1
# torch-fidelity's Inception-v3 weights (the TF 2015-12-05 graph, converted); torchmetrics uses the same
# file. The name's suffix is the start of its SHA-256, as torch.hub checks on download.
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS = 100, 1000, 10


# --------------------------------------------------------------------------- where files live

INCEPTION_WEIGHTS = extractors.WeightsFile(
    "Inception-v3", INCEPTION_FILE, INCEPTION_URL, INCEPTION_SHA256_PREFIX, WEIGHTS_ENV, "metrics.inception_weights",
    "--inception-weights", "FID, KID, IS, precision, recall, density and coverage on Inception features",
)


def hub_weights_path() -> Path:
    """Where torch.hub (and so torch-fidelity and torchmetrics) keeps the Inception weights:
    $TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints."""
    return extractors.hub_path(INCEPTION_WEIGHTS)


def missing_weights_message(reason: str) -> str:
    return extractors.missing_message(INCEPTION_WEIGHTS, reason)


def inception_weights(configured: Optional[str] = None) -> Path:
    """The local Inception weights file: `configured` (metrics.inception_weights or --inception-weights),
    else $GANCTL_INCEPTION_WEIGHTS, else torch's hub cache, downloading it there once when online.
    A GanctlError naming the file, its URL and where to put it when none of these works."""
    return extractors.find_weights(INCEPTION_WEIGHTS, configured)


file_sha256 = extractors.file_sha256


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
    299x299 with TensorFlow 1.x's bilinear interpolation, as the original FID code does (`resizer`
    tf1), or clean-fid's PIL bicubic resizes first (`clean`), rounded to the uint8 torch-fidelity takes."""

    TF1 = "bilinear, TensorFlow 1.x compatible, to 299x299 (torch-fidelity)"  # (the cards' words before resizers)

    def __init__(self, weights: Path, resizer: str = "tf1") -> None:
        super().__init__()
        self.resizer = extractors.check_resizer(resizer)
        self.resize = self.TF1 if resizer == "tf1" else extractors.describe_resize(resizer, 299, ", rounded to uint8 for torch-fidelity")
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
        if self.resizer == "clean":  # then torch-fidelity's TF1 resize from 299 to 299 is the identity
            images = extractors.resize_clean(images, 299).round().to(torch.uint8)  # (B, 3, 299, 299)
        pooled, logits = self.net(images)
        return pooled, logits


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
    has_logits: bool  # forward returns (features, logits): Inception's (IS needs them) or a judge's
    kind: str = "custom"  # inception | pretrained | judge | custom
    classes: Optional[list[str]] = None  # a judge's class names: what its logits mean

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        out = self.module(images)
        features, logits = out if self.has_logits else (out, None)
        if features.ndim != 2 or features.shape[0] != images.shape[0]:
            raise GanctlError(
                f"The feature extractor {self.name} returned {tuple(features.shape)} for {images.shape[0]} images; "
                "it must map uint8 images (B, C, H, W) to features (B, D)."
            )
        return features.float().cpu(), None if logits is None else logits.float().cpu()


def build_backbone(feature: Any, device: torch.device, inception_weights_path: Optional[str] = None, resize: str = "tf1",
                   feature_weights: Optional[str] = None) -> Backbone:
    """'inception' (or 'auto', taken as it), a pretrained backbone by name (dinov2, clip), a judge
    (judge:FILE), a config node with _target_ (a ganctl component), or any nn.Module."""
    if feature in ("inception", "auto"):
        weights = inception_weights(inception_weights_path)
        sha256 = extractors.checked_sha256(INCEPTION_WEIGHTS, weights)
        module = InceptionFeatures(weights, resize)
        name = "inception-v3 pool3 2048-d (torch-fidelity)"
        return Backbone(module.to(device).eval(), name, sha256, module.resize, has_logits=True, kind="inception")
    if isinstance(feature, str) and feature in registry.FEATURE_NAMES:
        module, name, sha256 = extractors.build_pretrained(feature, extractors.check_resizer(resize), device, feature_weights)
        return Backbone(module, name, sha256, module.resize, has_logits=False, kind="pretrained")
    if isinstance(feature, str) and feature.startswith(registry.JUDGE_PREFIX):
        found = judge.load(feature, device)
        resized = (f"bilinear, antialiased, to {found.net.image_size}x{found.net.image_size} "
                   "(none when the images have the judge's size)")
        return Backbone(found.net, found.name, extractors.file_sha256(Path(found.path)), resized, has_logits=True,
                        kind="judge", classes=found.classes)
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
            f"metrics.feature must be one of {', '.join(registry.FEATURE_NAMES)}, judge:FILE, or a config node with _target_ "
            f"naming a ganctl feature extractor (e.g. {{_target_: ganctl.metrics.PooledPixels, size: 8}}), got {feature!r}."
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
        self.protocol, self.protocol_changes = protocols.label(self.settings.__dict__)
        self.device, self.real = torch.device(device), real
        self.classes = list(classes) if classes is not None else None
        if self.classes is not None and getattr(real, "classes", None) != self.classes:
            raise GanctlError(
                f"The generator was trained on the classes {', '.join(self.classes)}, but the real images it is "
                f"compared with have {', '.join(getattr(real, 'classes', None) or ['no labels'])}: the dataset "
                "changed since training. Point the dataset at the data it was trained on."
            )
        feature = feature_extractor if feature_extractor is not None else self.settings.feature
        self.backbone = build_backbone(feature, self.device, self.settings.inception_weights, self.settings.resize,
                                       self.settings.feature_weights)
        self.names = self.with_verdicts(self.names, feature)
        if "is" in self.names and not (self.backbone.kind == "inception" and real.channels == 3):
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

    def with_verdicts(self, names: list[str], feature: Any) -> list[str]:
        """The names with a judge's verdict added (judge_accuracy for a conditional generator, class_balance
        for an unconditional one); a verdict asked for without a judge, or one the judge cannot give, refused."""
        if self.backbone.kind != "judge":
            asked = [name for name in names if name in JUDGE_METRICS]
            if asked:
                raise GanctlError(f"{asked[0]} is a judge's verdict: it needs metrics.feature=judge:FILE (or --feature "
                                  "judge:FILE; judge:digits for MNIST digits), not the " + self.backbone.name + " backbone.")
            return names
        if self.classes is not None:
            unknown = [name for name in self.classes if name not in self.backbone.classes]
            if unknown:
                raise GanctlError(f"The judge knows the classes {', '.join(self.backbone.classes)}; the generator makes "
                                  f"{', '.join(unknown)} too, which it cannot judge. Use a judge trained on the generator's classes.")
        elif "judge_accuracy" in names:
            raise GanctlError("judge_accuracy needs a class-conditional generator (the classes it was asked for); an "
                              "unconditional one's verdict is class_balance.")
        verdict = "judge_accuracy" if self.classes is not None else "class_balance"
        return names if verdict in names else [*names, verdict]

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

    def __call__(self, sampler: Any, step: int, critic: Optional[nn.Module] = None) -> list[dict[str, Any]]:
        """The configured metrics of the sampler's images at `step`, as cards (and, conditional, the
        intra-class ones); perceptual path lengths from the sampler itself, measured with `critic`'s
        features when metrics.ppl_distance=discriminator (the run's D)."""
        labels = self.fake_labels if self.classes is not None else None
        cards = self.score(self.fake_batches(sampler), step, labels)
        for name in (name for name in self.names if name in PPL_NAMES):
            cards.append(self.path_length(name, sampler, step, labels, critic))
        return cards

    def path_length(self, name: str, sampler: Any, step: int, labels: Optional[torch.Tensor],
                    critic: Optional[nn.Module]) -> dict[str, Any]:
        """ppl_zend or ppl_wend of the sampler's G over metrics.num_fake pairs of latents (ganctl/ppl.py)."""
        from ganctl import ppl

        how = self.settings.ppl_distance
        if how == "lpips":
            distance, backbone = ppl.lpips_distance(self.device), "lpips vgg16 (torch-fidelity)"
        elif how == "judge":
            if self.backbone.kind != "judge":
                raise GanctlError("metrics.ppl_distance=judge measures with the judge of metrics.feature=judge:FILE; this run "
                                  f"scores with the {self.backbone.name} backbone. Set the feature to a judge, or ppl_distance=lpips.")
            distance, backbone = ppl.judge_distance(self.backbone.module), f"squared distance of {self.backbone.name}"
        elif critic is not None:
            distance, backbone = ppl.discriminator_distance(critic), "squared distance of D's features (its last weighted layer's input)"
        else:
            raise GanctlError("metrics.ppl_distance=discriminator measures with the run's own discriminator, which this "
                              "evaluation does not have: score a checkpoint (ganctl eval RUN), or use judge or lpips.")
        with torch.random.fork_rng(devices=[]):
            values = ppl.distances(sampler, "w" if name == "ppl_wend" else "z", self.settings.num_fake, self.settings.seed,
                                   distance, labels, self.settings.batch_size)
        card = self.card(name, ppl.filtered_mean(values), None, self.settings.num_fake, step)
        card["options"].update(epsilon=ppl.EPSILON, space="w" if name == "ppl_wend" else "z", sampling="end",
                               percentiles=list(ppl.PERCENTILES), distance=how)
        card.update(backbone=backbone, num_real=None, weights_sha256=None if how != "judge" else card["weights_sha256"],
                    resize="none", library="ganctl (stylegan2-ada's perceptual path length)")
        return card

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
                if name in JUDGE_METRICS:
                    cards += self.verdict(name, logits, labels, step)
                    continue
                if name in PPL_NAMES:
                    continue  # scored from the generator itself (`__call__`)
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

    def verdict(self, name: str, logits: torch.Tensor, labels: Optional[torch.Tensor], step: int) -> list[dict[str, Any]]:
        """A judge's verdict on the images from its class logits (N, K): class_balance, one card; or
        judge_accuracy (the images' `labels`: the generator's classes asked for), overall and a card per class."""
        predicted = logits.argmax(1)
        judge_classes = self.backbone.classes
        if name == "class_balance":
            value, options = judge.class_balance(predicted, len(judge_classes))
            card = self.card(name, value, None, len(predicted), step)
            card["options"].update(options, classes=judge_classes, present_share=judge.PRESENT_SHARE)
            return [card]
        if labels is None or self.classes is None:
            raise GanctlError("judge_accuracy scores a conditional generator's samples by the classes they were asked for; "
                              "these images have no such classes (a folder of images, or an unconditional generator).")
        requested = torch.tensor([judge_classes.index(self.classes[index]) for index in labels.tolist()])
        overall, per_class = judge.accuracy_by_class(predicted, requested, len(judge_classes))
        cards = [self.card(name, overall, None, len(predicted), step)]
        for index, class_name in enumerate(self.classes):
            share = per_class[judge_classes.index(class_name)]
            if share is None:
                continue
            card = self.card(name, share, None, int((labels == index).sum()), step)
            card.update(metric=f"{name}/{class_name}", **{"class": class_name, "class_index": index})
            cards.append(card)
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

        library = (f"torch-fidelity {version('torch-fidelity')}" if name in ("precision", "recall") else
                   "ganctl (k-NN on the same features)" if name in KNN_METRICS else
                   "ganctl (the judge's predictions)" if name in JUDGE_METRICS else f"torchmetrics {version('torchmetrics')}")
        return {
            "metric": name,
            "value": value,
            "std": std,
            "step": step,
            "protocol": self.protocol,
            **({"protocol_changes": self.protocol_changes} if self.protocol_changes else {}),
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
            "library": library,
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

"""Metrics: torchmetrics' numbers through a pluggable extractor, the real-feature cache, the cards,
the Inception weights handling -- all offline, with a tiny extractor and never a download."""

from __future__ import annotations

import json
import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from torch import nn

from ganctl import config, metrics
from ganctl.data import bundled_mnist
from ganctl.errors import GanctlError
from ganctl.sampling import Sampler
from helpers import compose_config

POOLED = {"_target_": "ganctl.metrics.PooledPixels", "size": 8}
CARD_FIELDS = {"metric", "value", "std", "step", "num_real", "num_fake", "split", "dataset", "backbone",
               "weights_sha256", "resize", "options", "image_size", "channels"}


class Images:
    """The data interface the evaluator reads: channels, image_size, len, batches, fingerprint."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.channels, self.image_size = images.shape[1], images.shape[2]
        self.fingerprint = hashlib.sha256(images.numpy().tobytes() + str(tuple(images.shape)).encode()).hexdigest()

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int):
        yield from self.images.split(batch_size)


class Counting(nn.Module):
    """PooledPixels that counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.seen = metrics.PooledPixels(8), 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        return self.inner(images)


class TinyGenerator(nn.Module):
    """latent (B, 4) -> images (B, 1, 28, 28) in [-1, 1], with BatchNorm to catch train-mode evaluation."""

    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 28 * 28), nn.BatchNorm1d(28 * 28), nn.Tanh())

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents).view(-1, 1, 28, 28)


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    """Caches under tmp_path, never $HOME; any download attempt fails and is recorded."""
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(metrics.WEIGHTS_ENV, raising=False)
    attempts: list = []

    def no_download(url: str, dst: str, *args, **kwargs) -> None:
        attempts.append((url, dst, kwargs.get("hash_prefix")))
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("tried to reach the network"))
    return attempts


@pytest.fixture(scope="module")
def digits() -> Images:
    return Images(bundled_mnist("train")[0][:300])


def settings(**overrides) -> dict:
    values = dict(names=["fid", "kid"], num_fake=100, num_real=None, batch_size=128, feature=POOLED,
                  inception_weights=None, split="train", seed=0)
    return {**values, **overrides}


def values(cards: list[dict]) -> dict[str, float]:
    return {card["metric"]: card["value"] for card in cards}


def test_a_set_against_itself_scores_zero_and_noise_scores_high(digits: Images) -> None:
    evaluator = metrics.Evaluator(settings(), digits, torch.device("cpu"))
    same = values(evaluator.score(digits.batches(100), step=0))
    noise = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    other = values(evaluator.score([noise], step=0))
    assert abs(same["fid"]) < 1e-4 and abs(same["kid"]) < 1e-3
    assert other["fid"] > 1.0 and other["kid"] > 0.1


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")
def test_the_numbers_are_torchmetrics_own(digits: Images) -> None:
    """Features extracted once and passed through give what torchmetrics computes from the images."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    fake = bundled_mnist("test")[0][:100]
    ours = values(metrics.Evaluator(settings(), digits, torch.device("cpu")).score([fake], step=0))
    fid = FrechetInceptionDistance(feature=metrics.PooledPixels(8), input_img_size=(1, 28, 28))
    kid = KernelInceptionDistance(feature=metrics.PooledPixels(8), subsets=metrics.KID_SUBSETS, subset_size=100)
    for metric in (fid, kid):
        metric.update(digits.images, real=True)
        metric.update(fake, real=False)
    torch.manual_seed(0)  # metrics.seed: KID's subsets
    torch.testing.assert_close(ours["kid"], kid.compute()[0].item())
    torch.testing.assert_close(ours["fid"], fid.compute().item(), rtol=1e-4, atol=1e-6)
    assert ours["fid"] > 0.01  # held-out digits are close, not identical


def test_real_features_are_cached_once_and_reused(digits: Images, tmp_path: Path) -> None:
    first = Counting()
    evaluator = metrics.Evaluator(settings(), digits, torch.device("cpu"), feature_extractor=first)
    assert not evaluator.cache_hit and first.seen == len(digits)
    assert evaluator.cache_path.parent == tmp_path / "cache" / "real_features"
    stored = torch.load(evaluator.cache_path, weights_only=True)
    assert stored["features"].shape == (300, 64) and stored["meta"]["dataset"] == digits.fingerprint
    assert not list(evaluator.cache_path.parent.glob(".*.tmp"))  # written atomically, nothing left over

    again = Counting()
    reused = metrics.Evaluator(settings(), digits, torch.device("cpu"), feature_extractor=again)
    assert reused.cache_hit and again.seen == 0 and reused.cache_path == evaluator.cache_path
    assert values(reused.score(digits.batches(100), 0)) == values(evaluator.score(digits.batches(100), 0))

    changed = digits.images.clone()
    changed[0, 0, 14, 14] ^= 1  # one pixel of one image
    third = Counting()
    fresh = metrics.Evaluator(settings(), Images(changed), torch.device("cpu"), feature_extractor=third)
    assert not fresh.cache_hit and third.seen == 300 and fresh.cache_path != evaluator.cache_path
    fewer = metrics.Evaluator(settings(num_real=100), digits, torch.device("cpu"))
    assert not fewer.cache_hit and fewer.num_real == 100
    assert len(list(evaluator.cache_path.parent.glob("*.pt"))) == 3


def test_an_unreadable_cache_file_is_recomputed(digits: Images) -> None:
    path = metrics.Evaluator(settings(), digits, torch.device("cpu")).cache_path
    path.write_bytes(b"not a torch file")
    evaluator = metrics.Evaluator(settings(), digits, torch.device("cpu"))
    assert not evaluator.cache_hit
    assert torch.load(path, weights_only=True)["features"].shape == (300, 64)


def test_cards_say_how_each_number_was_made(digits: Images, tmp_path: Path) -> None:
    evaluator = metrics.Evaluator(settings(names=["kid", "fid"], split="test", num_real=200), digits, torch.device("cpu"))
    cards = evaluator(Sampler(TinyGenerator()), step=7)
    assert [card["metric"] for card in cards] == ["kid", "fid"]
    for card in cards:
        assert CARD_FIELDS <= card.keys()
        assert (card["step"], card["num_real"], card["num_fake"], card["split"]) == (7, 200, 100, "test")
        assert card["backbone"] == "ganctl.metrics.PooledPixels(size=8)"
        assert re.fullmatch(r"[0-9a-f]{64}", card["weights_sha256"]) and card["dataset"] == digits.fingerprint
        assert card["resize"] == "adaptive average pooling to 8x8" and card["options"]["seed"] == 0
    assert cards[0]["std"] > 0 and cards[0]["options"]["subset_size"] == 100 and cards[1]["std"] is None

    path = metrics.append_jsonl(tmp_path / "run", cards)
    metrics.append_jsonl(tmp_path / "run", cards[:1])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path == tmp_path / "run" / "metrics.jsonl" and lines == [*cards, cards[0]]
    assert metrics.scalars(cards) == {"metrics/kid": cards[0]["value"], "metrics/fid": cards[1]["value"]}


def test_evaluating_leaves_training_untouched_and_repeats_exactly(digits: Images) -> None:
    evaluator = metrics.Evaluator(settings(), digits, torch.device("cpu"))
    generator = TinyGenerator().train()
    running_mean = generator.net[1].running_mean.clone()
    torch.manual_seed(1)
    expected = torch.rand(5)
    torch.manual_seed(1)
    first = evaluator(Sampler(generator), step=1)
    assert torch.equal(torch.rand(5), expected)  # the training RNG did not move
    assert generator.training and torch.equal(generator.net[1].running_mean, running_mean)
    assert values(evaluator(Sampler(generator), step=1)) == values(first)
    other_seed = metrics.Evaluator(settings(seed=1), digits, torch.device("cpu"))
    assert values(other_seed(Sampler(generator), step=1))["fid"] != values(first)["fid"]


def test_is_better() -> None:
    assert metrics.is_better("fid", 10.0, None) and metrics.is_better("fid", 9.0, 10.0)
    assert not metrics.is_better("kid", 0.2, 0.1) and not metrics.is_better("fid", 10.0, 10.0)
    assert metrics.is_better("is", 3.0, 2.0) and not metrics.is_better("is", 2.0, 3.0)


def test_inception_score_needs_inception_and_colour(digits: Images) -> None:
    with pytest.raises(GanctlError, match="Inception Score needs the Inception backbone and 3-channel"):
        metrics.Evaluator(settings(names=["fid", "is"]), digits, torch.device("cpu"))


def test_missing_weights_name_the_file_the_url_and_where_to_put_it(digits: Images, offline: list, tmp_path: Path) -> None:
    with pytest.raises(GanctlError) as error:
        metrics.Evaluator(settings(feature="inception"), digits, torch.device("cpu"))
    message = str(error.value)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    for part in (metrics.INCEPTION_FILE, metrics.INCEPTION_URL, str(hub), metrics.WEIGHTS_ENV, "metrics.inception_weights", "URLError"):
        assert part in message
    assert offline == [(metrics.INCEPTION_URL, str(hub / metrics.INCEPTION_FILE), metrics.INCEPTION_SHA256_PREFIX)]
    assert not any(hub.iterdir())  # no partial file left behind


@pytest.mark.parametrize("where", ["config", "env"])
def test_a_weights_path_that_is_not_there(where: str, digits: Images, offline: list, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / metrics.INCEPTION_FILE
    if where == "env":
        monkeypatch.setenv(metrics.WEIGHTS_ENV, str(missing))
    with pytest.raises(GanctlError, match=f"points at {re.escape(str(missing))}, which is not a file") as error:
        metrics.Evaluator(settings(feature="inception", inception_weights=str(missing) if where == "config" else None), digits, torch.device("cpu"))
    assert metrics.INCEPTION_URL in str(error.value) and offline == []


class Payload:
    def __reduce__(self):
        return (print, ("this ran while unpickling",))


def test_weights_that_could_run_code_are_refused(tmp_path: Path, offline: list) -> None:
    path = tmp_path / metrics.INCEPTION_FILE
    torch.save({"Conv2d_1a_3x3.conv.weight": Payload()}, path)
    with pytest.raises(GanctlError, match="Refusing to load"):
        metrics.build_backbone("inception", torch.device("cpu"), str(path))
    path.write_bytes(b"truncated")
    with pytest.raises(GanctlError, match="cannot be read"):
        metrics.build_backbone("inception", torch.device("cpu"), str(path))
    assert offline == []


def test_a_custom_target_outside_ganctl_is_refused(digits: Images) -> None:
    with pytest.raises(GanctlError, match="metrics.feature._target_ names os.system.*never code"):
        metrics.Evaluator(settings(feature={"_target_": "os.system", "command": "true"}), digits, torch.device("cpu"))


def stand_in_inception_weights(path: Path) -> None:
    """torch-fidelity's Inception-v3 with random weights, saved like the real file: the whole
    Inception path runs offline (the numbers mean nothing, the plumbing is what is tested)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with mock.patch.object(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None), \
            mock.patch.object(inception, "load_state_dict_from_url", lambda *args, **kwargs: {}):
        net = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)


def test_the_inception_path_offline_with_stand_in_weights(tmp_path: Path, offline: list) -> None:
    """Weights found in torch's hub cache; grayscale repeated to RGB; IS on colour; card with the file's SHA-256."""
    weights = tmp_path / "torch" / "hub" / "checkpoints" / metrics.INCEPTION_FILE
    stand_in_inception_weights(weights)
    backbone = metrics.build_backbone("inception", torch.device("cpu"))
    gray = torch.randint(0, 256, (1, 1, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features, logits = backbone(gray)
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    torch.testing.assert_close(backbone(gray.repeat(1, 3, 1, 1))[0], features)

    colour = Images(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)))
    evaluator = metrics.Evaluator(settings(names=["kid", "is"], feature="inception"), colour, torch.device("cpu"))
    cards = evaluator.score([colour.images.flip(-1)], step=3)
    assert [card["metric"] for card in cards] == ["kid", "is"] and all(torch.isfinite(torch.tensor(c["value"])) for c in cards)
    assert cards[0]["weights_sha256"] == metrics.file_sha256(weights) and "299x299" in cards[0]["resize"]
    assert cards[0]["backbone"].startswith("inception-v3") and offline == []


def test_config_checks() -> None:
    cfg, _ = compose_config()
    config.check(cfg)
    assert cfg.train.eval_every == 0 and cfg.metrics.feature == "auto" and cfg.metrics.best in cfg.metrics.names
    # auto: the bundled digits' judge for MNIST, Inception for anything else
    assert config.auto_feature(cfg.metrics.feature, cfg.dataset) == "judge:digits"
    assert config.auto_feature("auto", compose_config("dataset=cifar10")[0].dataset) == "inception"
    for override, message in [
        ("metrics.names=[fid,fdi]", "Unknown metric 'fdi'"),
        ("metrics.best=is", "metrics.best=is must be one of metrics.names"),
        ("metrics.num_fake=1", "metrics.num_fake must be at least 2"),
        ("metrics.split=val", "metrics.split must be train or test"),
        ("metrics.feature=resnet", "metrics.feature must be one of auto, inception, dinov2"),
        ("metrics.resize=bicubic", "metrics.resize must be tf1"),
        ("metrics.protocol=fid10k", "Unknown protocol 'fid10k'"),
        ("metrics.names=[fid,judge_accuracy]", "judge_accuracy is the share of each class's samples"),
        ("metrics.ppl_distance=vgg", "metrics.ppl_distance must be one of lpips, discriminator, judge"),
        ("train.eval_every=-5", "train.eval_every must be 0"),
    ]:
        cfg, _ = compose_config(override)
        with pytest.raises(GanctlError, match=re.escape(message)):
            config.check(cfg)
    cfg, _ = compose_config("metrics.feature=inception", "metrics.names=[fid,class_balance]")
    with pytest.raises(GanctlError, match="class_balance is a judge's verdict"):
        config.check(cfg)
    cfg, _ = compose_config("metrics.feature={_target_:ganctl.metrics.PooledPixels,size:4}")
    config.check(cfg)


# ----------------------------------------------------------------------------- precision, recall, density, coverage


def test_precision_recall_density_coverage_on_known_sets(digits: Images) -> None:
    points = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert metrics.precision_recall(points, points) == (1.0, 1.0)
    density, coverage = metrics.density_coverage(points, points)
    assert density == pytest.approx(1.0) and coverage == 1.0  # each ball holds itself and k-1 neighbours: exactly k per ball
    far = points + 100
    assert metrics.precision_recall(far, points) == (0.0, 0.0) and metrics.density_coverage(far, points) == (0.0, 0.0)
    # fakes on one half of the reals: faithful (precision 1) but half the variety (recall, coverage about 0.5)
    line = torch.linspace(0, 1, 400)[:, None]
    precision, recall = metrics.precision_recall(line[:200], line)
    assert precision == 1.0 and 0.45 < recall < 0.55
    assert 0.45 < metrics.density_coverage(line[:200], line)[1] < 0.55
    # through the evaluator: the same feature pass as FID, a card each, the real set against itself
    names = ["fid", "precision", "recall", "density", "coverage"]
    cards = metrics.Evaluator(settings(names=names), digits, torch.device("cpu")).score(digits.batches(100), step=0)
    assert [card["metric"] for card in cards] == names
    assert values(cards)["precision"] == values(cards)["recall"] == values(cards)["coverage"] == 1.0
    assert cards[1]["options"]["k"] == 3 and cards[3]["options"]["k"] == 5 and cards[1]["library"].startswith("torch-fidelity")
    with pytest.raises(GanctlError, match="at least 6 real and 6 generated"):
        metrics.Evaluator(settings(names=["precision"]), digits, torch.device("cpu")).score([digits.images[:4]], step=0)

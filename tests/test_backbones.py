"""The pretrained backbones beyond Inception (DINOv2, CLIP) and the two resizers, offline: the real
architectures with random weights saved to files, so every path runs and nothing is downloaded."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import features, metrics
from ganctl.data import bundled_mnist
from ganctl.errors import GanctlError

REAL_DOWNLOAD = torch.hub.download_url_to_file  # (before the fixture below replaces it)


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    """Caches under tmp_path; a download attempt fails and is recorded."""
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("GANCTL_DINOV2_WEIGHTS", "GANCTL_CLIP_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    attempts: list = []

    def no_download(url: str, dst: str, *args, **kwargs) -> None:
        attempts.append(url)
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return attempts


class Images:
    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.channels, self.image_size = images, images.shape[1], images.shape[2]
        self.fingerprint = hashlib.sha256(images.numpy().tobytes()).hexdigest()

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int):
        yield from self.images.split(batch_size)


def settings(**overrides) -> dict:
    return {"names": ["fid", "kid"], "num_fake": 3, "num_real": None, "batch_size": 8, "inception_weights": None,
            "split": "train", "seed": 0, **overrides}


def test_the_resizers() -> None:
    images = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(features.resize_tf1(images.float(), 20), images.float())  # TF1 bilinear at the same size
    clean = features.resize_clean(images, 45)
    for channel in range(3):  # clean-fid: PIL's bicubic on each channel in float ('F' mode), clipped
        plane = Image.fromarray(images[1, channel].numpy().astype(np.float32), mode="F").resize((45, 45), Image.BICUBIC)
        np.testing.assert_array_equal(clean[1, channel].numpy(), np.asarray(plane).clip(0, 255))
    assert clean.min() >= 0 and clean.max() <= 255
    assert (clean - features.resize_tf1(images.float(), 45)).abs().max() > 1  # two different resizers
    gray = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.all(features.resized(gray, 30, "clean") == 77) and features.resized(gray, 30, "tf1").shape == (1, 3, 30, 30)


def test_published_parameter_counts() -> None:
    """DINOv2's README gives 21M, 86M, 300M and 1,100M (the files, with their 37x37 position embedding);
    CLIP ViT-B/32's image tower is 87.85M (open_clip's model table). Built on the meta device: no memory."""
    import timm

    for size, (architecture, _, published) in features.DINOV2_SIZES.items():
        with torch.device("meta"):
            net = timm.create_model(architecture, pretrained=False, num_classes=0)
        count = sum(p.numel() for p in net.parameters()) / 1e6
        assert abs(count - published) / published < 0.06, (size, count)
    with torch.device("meta"):
        clip = features.clip_network()
    assert round(sum(p.numel() for p in clip.parameters()) / 1e6, 2) == features.CLIP_PARAMETERS


def test_dinov2_from_metas_file(tmp_path: Path, offline: list) -> None:
    """ViT-S/14 with random weights in the layout of Meta's dinov2_vits14_pretrain.pth (a 37x37 grid and the
    mask token): loaded strictly, its position embedding resampled to 224's 16x16, FD and KID on its features
    (every metric takes any backbone's features: tests/test_metrics.py runs them on pooled pixels)."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    state = {**net.state_dict(), "mask_token": torch.zeros(1, 384)}
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)

    digits = Images(bundled_mnist("train")[0][:3])
    evaluator = metrics.Evaluator(settings(feature="dinov2-vits14", feature_weights=str(path), resize="clean"), digits, torch.device("cpu"))
    loaded = evaluator.backbone.module.net.state_dict()
    assert loaded["pos_embed"].shape == (1, 1 + 16 * 16, 384)
    torch.testing.assert_close(loaded["pos_embed"], features.dinov2_position_embedding(state["pos_embed"], 16))
    assert all(torch.equal(loaded[key], value) for key, value in state.items() if key not in ("pos_embed", "mask_token"))
    cards = evaluator.score([bundled_mnist("test")[0][:3]], step=0)
    assert [card["metric"] for card in cards] == settings()["names"]
    for card in cards:
        assert card["backbone"] == "dinov2 ViT-S/14 class token 384-d (timm)" and card["resize"].startswith("clean: PIL bicubic")
        assert card["weights_sha256"] == features.file_sha256(path) and np.isfinite(card["value"])
    assert evaluator.cache_path.is_file() and offline == []

    del state["norm.weight"]
    torch.save(state, path)
    with pytest.raises(GanctlError, match="holds other weights .*norm.weight"):  # every weight, exactly
        features.build_pretrained("dinov2-vits14", "tf1", torch.device("cpu"), str(path))


def test_clip_from_a_safetensors_file(tmp_path: Path, offline: list) -> None:
    """CLIP ViT-B/32's image tower with random weights saved as open_clip publishes OpenAI's (safetensors,
    visual.* among the text tower's keys): 512-d embeddings; a TorchScript archive (code) is refused."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {key: value.half() for key, value in features.clip_network().state_dict().items()}
    state["text_projection"] = torch.zeros(512, 512, dtype=torch.float16)  # a text tower key: left alone
    path = tmp_path / "open_clip_model.safetensors"
    save_file(state, str(path))
    module, name, sha256 = features.build_pretrained("clip", "tf1", torch.device("cpu"), str(path))
    out = module(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert out.shape == (2, 512) and torch.isfinite(out).all() and name.startswith("clip ViT-B/32")
    assert sha256 == features.file_sha256(path) and module.resize.startswith("tf1: bilinear, TensorFlow 1.x")

    scripted = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    with pytest.raises(GanctlError, match="Refusing to load .*TorchScript archive, whose code could run"):
        features.build_pretrained("clip", "tf1", torch.device("cpu"), str(scripted))
    assert offline == []


def test_missing_weights_name_the_file_and_where_to_put_it(tmp_path: Path, offline: list, monkeypatch: pytest.MonkeyPatch) -> None:
    digits = Images(bundled_mnist("train")[0][:3])
    with pytest.raises(GanctlError) as error:
        metrics.Evaluator(settings(feature="dinov2"), digits, torch.device("cpu"))
    message = str(error.value)
    for part in ("dinov2_vitl14_pretrain.pth", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
                 str(tmp_path / "torch" / "hub" / "checkpoints"), "GANCTL_DINOV2_WEIGHTS", "metrics.feature_weights", "URLError"):
        assert part in message
    assert offline == ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"]
    monkeypatch.setenv("GANCTL_CLIP_WEIGHTS", str(tmp_path / "nowhere.safetensors"))
    with pytest.raises(GanctlError, match="GANCTL_CLIP_WEIGHTS points at .*which is not a file"):
        features.find_weights(features.CLIP_WEIGHTS)


def test_a_clip_file_with_another_hash_is_refused_when_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pinned SHA-256 is checked on download (torch.hub's check, through ganctl's message): a file
    served from a file:// address stands in for a tampered download."""
    import dataclasses

    served = tmp_path / "served.safetensors"
    served.write_bytes(b"not the published weights")
    monkeypatch.setattr(torch.hub, "download_url_to_file", REAL_DOWNLOAD)
    spec = dataclasses.replace(features.CLIP_WEIGHTS, url=served.as_uri())
    with pytest.raises(GanctlError) as refused:
        features.find_weights(spec)
    message = str(refused.value)
    assert "invalid hash value" in message and features.CLIP_WEIGHTS.sha256 in message and "\n" not in message
    assert "starts with e6d1bd77" in message and not features.hub_path(spec).exists()

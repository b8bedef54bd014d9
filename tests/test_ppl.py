"""Perceptual path length: stylegan2-ada's filter and the great circle by hand, a generator that ignores
its latent measuring zero, ppl_zend and ppl_wend of tiny runs with D's and the judge's features
offline, and LPIPS's weights asked for by name when they are missing."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganctl import ppl
from ganctl.errors import GanctlError
from ganctl.evaluate import evaluate
from ganctl.sampling import Sampler
from helpers import TINY, TINY_STYLEGAN2, run


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(url: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)


def test_the_filter_and_the_great_circle() -> None:
    values = torch.arange(1, 201, dtype=torch.float64)  # 1 .. 200: the 1st and 99th percentiles are 2 and 199
    assert ppl.filtered_mean(values) == pytest.approx(np.mean(np.arange(2, 200)))
    a, b = torch.randn(5, 16, generator=torch.Generator().manual_seed(0)).chunk(2)[0], torch.randn(3, 16)
    a, b = a[:3], b * (a.norm(dim=1, keepdim=True) / b.norm(dim=1, keepdim=True))  # the same norms
    torch.testing.assert_close(ppl.great_circle(a, b, 0.0), a)
    torch.testing.assert_close(ppl.great_circle(a, b, 1.0), b, rtol=1e-5, atol=1e-5)
    middle = ppl.great_circle(a, b, 0.5)
    torch.testing.assert_close(middle.norm(dim=1), a.norm(dim=1))  # on the sphere, not the chord


class Constant(nn.Module):
    """A generator that ignores its latent."""

    latent_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Parameter(torch.rand(1, 1, 8, 8) * 2 - 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.image.expand(latents.shape[0], -1, -1, -1)


def test_a_generator_that_ignores_its_latent_has_zero_path_length() -> None:
    squared = lambda first, second, labels: (first - second).flatten(1).square().sum(1)  # noqa: E731
    assert ppl.distances(Sampler(Constant()), "z", 10, 0, squared, None).abs().max() == 0
    linear = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8)))
    linear.latent_dim = 4
    assert ppl.distances(Sampler(linear), "z", 10, 0, squared, None).min() > 0
    with pytest.raises(GanctlError, match="no W space"):
        ppl.distances(Sampler(linear), "w", 10, 0, squared, None)


def test_ppl_of_tiny_runs_offline(tmp_path: Path, tiny_run: Path) -> None:
    """ppl_zend of the default run with the bundled judge's features; ppl_wend and ppl_zend of a tiny
    StyleGAN2 with its own D's; the same twice is the same number."""
    cards, _ = evaluate(tiny_run, ["ppl_zend"], num=20, split="test", device="cpu", out=tmp_path / "a.json", measure={"ppl_distance": "judge"})
    assert [card["metric"] for card in cards] == ["class_balance", "ppl_zend"]  # the judge's verdict comes with it
    card = cards[1]
    assert card["value"] > 0 and np.isfinite(card["value"]) and card["options"]["distance"] == "judge"
    assert card["options"]["epsilon"] == 1e-4 and card["options"]["space"] == "z" and card["backbone"].startswith("squared distance of judge")
    again, _ = evaluate(tiny_run, ["ppl_zend"], num=20, split="test", device="cpu", out=tmp_path / "b.json", measure={"ppl_distance": "judge"})
    assert again[1]["value"] == card["value"]

    style_run = tmp_path / "stylegan2"
    run(style_run, *TINY, *TINY_STYLEGAN2, "train.steps=2", "train.sample_every=0")
    cards, _ = evaluate(style_run, ["ppl_wend", "ppl_zend"], num=12, split="test", device="cpu", out=tmp_path / "c.json",
                        measure={"ppl_distance": "discriminator"})
    cards = [card for card in cards if card["metric"].startswith("ppl")]
    assert [card["metric"] for card in cards] == ["ppl_wend", "ppl_zend"]
    assert all(np.isfinite(card["value"]) and card["value"] > 0 and card["options"]["distance"] == "discriminator" for card in cards)
    assert cards[0]["options"]["space"] == "w"
    with pytest.raises(GanctlError, match="ppl_wend steps through W, and this generator has no W space"):
        evaluate(tiny_run, ["ppl_wend"], num=12, split="test", device="cpu", out=tmp_path / "d.json", measure={"ppl_distance": "judge"})


def test_lpips_weights_are_named_when_missing(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(GanctlError) as error:
        evaluate(tiny_run, ["ppl_zend"], num=12, split="test", device="cpu", out=tmp_path / "e.json", measure={"ppl_distance": "lpips"})
    for part in ("vgg16-397923af.pth", "weights-vgg16-lpips.pth", str(tmp_path / "torch" / "hub" / "checkpoints"), "ppl_distance=discriminator"):
        assert part in str(error.value)

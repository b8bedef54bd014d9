"""Checkpoints written by an earlier ganctl (tests/fixtures/main-db52662: its README says how they
were made) load, sample, evaluate, and resume into the same trained numbers as that ganctl's own
continuation (their flat regulariser keys and top-level path-length mean upgraded on the way)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint
from ganctl.evaluate import metric_settings, nearest_check
from ganctl.sampling import Sampler

from helpers import train_in_process

FIXTURES = Path(__file__).parent / "fixtures" / "main-db52662"
TRAINED = ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d")


def tensors(value, prefix=""):
    """Every tensor of a nested state, by its path."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from tensors(item, f"{prefix}/{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from tensors(item, f"{prefix}/{index}")


@pytest.mark.parametrize("run", ["default", "stylegan2"])
def test_an_earlier_ganctls_checkpoint_samples_and_resumes_into_its_own_continuation(run: str, tmp_path: Path) -> None:
    source = tmp_path / "step_2.pt"
    shutil.copy(FIXTURES / run / "step_2.pt", source)
    continued = checkpoint.load(FIXTURES / run / "step_4.pt")
    sampler = Sampler.from_checkpoint(continued, torch.device("cpu"))
    images = sampler.images(4, seed=0)
    assert images.shape[0] == 4 and torch.isfinite(images).all()
    card = nearest_check(continued, sampler, 4, 0, torch.device("cpu"), tmp_path / "nearest.png")  # (eval's pixel check)
    assert card["step"] == 4 and card["value"] > 0 and (tmp_path / "nearest.png").exists()
    assert metric_settings(continued["config"]).names == ["fid", "kid"]  # eval's settings: the stored block, completed

    train_in_process(f"resume={source}", f"hydra.run.dir={tmp_path / 'resumed'}")
    resumed = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert resumed["step"] == continued["step"] == 4
    # Another CPU may round fp32 differently in its last bits; a lost or misread piece of state
    # (an optimizer moment, ADA's p, path length's mean) moves the numbers by far more.
    for key in (*TRAINED, "augment", "regularisers"):
        expected = dict(tensors(continued.get(key)))
        got = dict(tensors(resumed.get(key)))
        assert expected.keys() == got.keys(), key
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-6, msg=f"{key}{name}")

"""The latent space through the Sampler: truncation, walks, saved latents, latent arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.errors import GanctlError
from ganctl.sample.arithmetic import latent_arithmetic
from ganctl.sample.grid import sample
from ganctl.sample.walks import class_walk, interpolate
from ganctl.sampling import Sampler


@pytest.fixture(scope="module")
def run_dir(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def conditional_dir(tiny_conditional_run: Path) -> Path:
    return tiny_conditional_run


def sampler_of(run_dir: Path, psi: float = 1.0) -> Sampler:
    return Sampler.from_checkpoint(checkpoint.load(checkpoint.last_path(run_dir)), torch.device("cpu"), truncation=psi)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def test_gaussian_truncation_resamples_only_the_tails_inside_the_threshold() -> None:
    z = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    assert latent_space.truncate_gaussian(z, 1.0, torch.Generator()) is z
    assert torch.equal(latent_space.truncate_gaussian(z, 0.0, torch.Generator()), torch.zeros_like(z))
    t = latent_space.truncation_threshold(0.68)
    assert t == pytest.approx(0.994, abs=1e-3)  # 68% of the normal's mass within about 1 sigma
    out = latent_space.truncate_gaussian(z, 0.68, torch.Generator().manual_seed(1))
    inside = z.abs() <= t
    assert torch.equal(out[inside], z[inside]) and out.abs().max() <= t
    assert not torch.equal(out[~inside], z[~inside])  # the tails were redrawn, not clamped
    assert (out[~inside].abs() == t).float().mean() < 0.01
    assert torch.equal(out, latent_space.truncate_gaussian(z, 0.68, torch.Generator().manual_seed(1)))


def test_truncation_psi_one_is_none_zero_is_the_average_and_psi_is_reproducible(run_dir: Path, tmp_path: Path) -> None:
    plain = sample(run_dir, num=8, seed=3, out=tmp_path / "plain.png", device="cpu").read_bytes()
    assert sample(run_dir, num=8, seed=3, out=tmp_path / "one.png", device="cpu", truncation=1.0).read_bytes() == plain
    half = [sample(run_dir, num=8, seed=3, out=tmp_path / f"half{i}.png", device="cpu", truncation=0.5).read_bytes() for i in (1, 2)]
    assert half[0] == half[1] != plain
    collapsed = sampler_of(run_dir, 0.0).images(6, seed=3)
    average = sampler_of(run_dir)(torch.zeros(6, 16))  # a batch of the same size: bf16 kernels may depend on it
    assert torch.equal(collapsed, average)  # every sample is G of the mean latent
    assert not torch.equal(sampler_of(run_dir).images(6, 3), collapsed)
    with pytest.raises(GanctlError, match="--truncation must be a number from 0"):
        sample(run_dir, num=4, truncation=1.5, device="cpu")


def test_a_mapping_generator_truncates_through_its_own_hook(run_dir: Path) -> None:
    """StyleGAN2-style G: the Sampler hands psi to forward_truncated and leaves z alone."""
    sampler = sampler_of(run_dir, 0.5)
    calls = []

    def forward_truncated(z, labels, psi):
        calls.append((z.clone(), psi))
        return sampler.generator(z)

    sampler.generator.forward_truncated = forward_truncated
    sampler.images(4, seed=9)
    assert len(calls) == 1 and calls[0][1] == 0.5
    assert torch.equal(calls[0][0], torch.randn(4, 16, generator=torch.Generator().manual_seed(9)))  # z untruncated


def test_a_walk_is_a_gif_of_the_right_frames_whose_ends_are_the_seeds_own_samples(run_dir: Path, tmp_path: Path) -> None:
    out = interpolate(run_dir, [1, 2, 3], frames=4, out=tmp_path / "walk.gif", device="cpu")
    gif = Image.open(out)
    frames = [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(gif)]
    assert len(frames) == 2 * 4 + 1 and gif.size == (28, 28)
    for index, seed in ((0, 1), (4, 2), (8, 3)):
        own = sample(run_dir, num=1, seed=seed, out=tmp_path / f"seed{seed}.png", device="cpu")
        assert np.array_equal(frames[index], pixels(own))
    strip = Image.open(tmp_path / "walk.png")
    assert strip.size == (9 * 30 + 2, 30 + 2)
    # spherical: the middle of a walk keeps the norm of its ends, a straight line would shrink it
    a, b = (sampler_of(run_dir).latents(1, seed)[0] for seed in (1, 2))
    middle = latent_space.walk(torch.stack([a, b]), 2)[1]
    assert middle.norm() > ((a + b) / 2).norm() and math.isclose(middle.norm(), (a.norm() + b.norm()) / 2, rel_tol=0.1)


def test_a_walk_as_mp4_or_a_clear_message_without_the_video_extra(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import imageio.v2 as imageio

    out = interpolate(run_dir, [1, 2], frames=3, out=tmp_path / "walk.mp4", device="cpu")
    reader = imageio.get_reader(out)
    assert reader.count_frames() == 4 and reader.get_data(0).shape == (28, 28, 3)
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    with pytest.raises(GanctlError, match=r"ganctl\[video\]"):
        interpolate(run_dir, [1, 2], frames=3, out=tmp_path / "again.mp4", device="cpu")


def test_latents_beside_images_render_the_same_images_and_bad_files_are_refused(run_dir: Path, tmp_path: Path) -> None:
    grid = sample(run_dir, num=6, seed=5, out=tmp_path / "a.png", images_dir=tmp_path / "images", device="cpu", truncation=0.7)
    latents = np.load(tmp_path / "images" / "latents.npy")
    assert latents.shape == (6, 16)
    again = sample(run_dir, out=tmp_path / "b.png", device="cpu", latents_file=tmp_path / "images" / "latents.npy")
    assert again.read_bytes() == grid.read_bytes()
    torch.save(torch.from_numpy(latents), tmp_path / "latents.pt")
    assert sample(run_dir, out=tmp_path / "c.png", device="cpu", latents_file=tmp_path / "latents.pt").read_bytes() == grid.read_bytes()
    bad = {"noise.npy": bytes(range(256)) * 3, "noise.pt": b"PK\x03\x04" + bytes(200), "wrong.npy": None, "nan.npy": None,
           "objects.npy": None, "text.txt": b"1 2 3"}
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    np.save(tmp_path / "nan.npy", np.full((2, 16), np.nan, np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(GanctlError, match="--latents"):
            sample(run_dir, out=tmp_path / "x.png", device="cpu", latents_file=tmp_path / name)


def test_latent_arithmetic_renders_the_signed_sum_of_mean_latents(run_dir: Path, tmp_path: Path) -> None:
    out = latent_arithmetic(run_dir, [(1, [1, 2]), (-1, [3]), (1, [4])], out=tmp_path / "sum.png", device="cpu")
    z = {seed: sampler_of(run_dir).latents(1, seed)[0] for seed in (1, 2, 3, 4)}
    expected = (z[1] + z[2]) / 2 - z[3] + z[4]
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "sum.npy"))[0], expected)
    assert Image.open(out).size == (4 * 30 + 2, 30 + 2)  # three terms, then the result
    result = sample(run_dir, out=tmp_path / "re.png", device="cpu", latents_file=tmp_path / "sum.npy")
    assert np.array_equal(pixels(result), pixels(out)[2:30, 3 * 30 + 2 : 4 * 30])


def test_conditional_walks_show_every_class_and_walk_between_classes(conditional_dir: Path, run_dir: Path, tmp_path: Path) -> None:
    out = interpolate(conditional_dir, [1, 2], frames=2, out=tmp_path / "walk.gif", classes="0,3,7", device="cpu")
    gif = Image.open(out)
    assert gif.n_frames == 3 and gif.size == (3 * 30 + 2, 30 + 2)  # the three classes side by side
    walk = class_walk(conditional_dir, seed=4, out=tmp_path / "classes.gif", device="cpu")
    assert Image.open(walk).n_frames <= 10 and Image.open(tmp_path / "classes.png").size == (10 * 30 + 2, 30 + 2)
    own = sample(conditional_dir, num=1, seed=4, classes="7", out=tmp_path / "seven.png", device="cpu")
    assert np.array_equal(pixels(tmp_path / "classes.png")[2:30, 7 * 30 + 2 : 8 * 30], pixels(own))
    with pytest.raises(GanctlError, match="needs a class-conditional checkpoint"):
        class_walk(run_dir, seed=0, out=tmp_path / "none.gif", device="cpu")


def test_sample_flags_that_do_not_go_together(run_dir: Path) -> None:
    from ganctl.sample import main

    for args, message in ((["--interpolate"], "give them with --seeds"), (["--seeds", "1,2"], "--seeds is for --interpolate"),
                          (["--interpolate", "--seeds", "1,x"], "whole-number seeds"), (["--interpolate", "--seeds", "1"], "at least 2 seeds"),
                          (["--interpolate", "--seeds", "1,2", "--add", "3"], "do different things"),
                          (["--interpolate", "--seeds", "1,2", "--out", "walk.avi"], "written as .gif or .mp4"),
                          (["--interpolate", "--seeds", "1,2", "--fps", "0"], "--fps must be more than 0")):
        with pytest.raises(GanctlError, match=message):
            main([str(run_dir), "--device", "cpu", *args])

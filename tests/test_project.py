"""Real images into the latent space and back (`ganctl project`), semantic directions (`ganctl directions`,
`ganctl sample --direction`) and BigGAN's truncation threshold, on tiny networks."""

from __future__ import annotations

import json
import math
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import train_tiny
from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.directions.find import directions, sefa
from ganctl.errors import GanctlError
from ganctl.models import (BigGANGenerator, ConvGenerator, DCGANGenerator, MLPGenerator, R3GANDiscriminator, R3GANGenerator,
                           ResNetGenerator)
from ganctl.models.capabilities import FeatureDiscriminator, FirstLayerGenerator
from ganctl.project import argument_parser as project_arguments
from ganctl.project.command import perceptual_distance, project, scores
from ganctl.projection import LPIPS_BACKBONES, Projector, ProjectionSettings, sha256_prefix
from ganctl.sample import main as sample_main
from ganctl.sample.direction import direction_strips
from ganctl.sample.grid import sample
from ganctl.sampling import Sampler
from helpers import TINY, TINY_STYLEGAN2, run


def sampler_of(run_dir: Path) -> Sampler:
    return Sampler.from_checkpoint(checkpoint.load(checkpoint.last_path(run_dir)), torch.device("cpu"))


def write_pngs(images: torch.Tensor, folder: Path) -> list[Path]:
    """G's images (N, C, H, W) in [-1, 1] as 8-bit PNG files (grayscale or RGB)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor().byte()
    paths = []
    for i, image in enumerate(pixels):
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    return paths


def projected(run_dir: Path, *args: str) -> tuple[Path, dict]:
    options = project_arguments().parse_args([str(run_dir), *args, "--device", "cpu"])
    out = project(options)
    return out, json.loads((out / "projection.json").read_text())


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def concat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DCGAN that joins the label's embedding to z: the class changes its images at once."""
    return train_tiny(tmp_path_factory.mktemp("concat"), "conditioning=concat", "train.steps=2")


@pytest.fixture(scope="module")
def stylegan2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny class-conditional StyleGAN2 (the label is part of its w)."""
    directory = tmp_path_factory.mktemp("sg2")
    run(directory, *TINY, *TINY_STYLEGAN2, "train.steps=2", "conditioning=concat", "conditioning.discriminator=projection")
    return directory


def test_projection_recovers_gs_own_samples_and_its_latents_render_them_again(tiny_run: Path, tmp_path: Path) -> None:
    sampler = sampler_of(tiny_run)
    write_pngs(sampler.images(2, seed=5), tmp_path / "own")
    out, report = projected(tiny_run, str(tmp_path / "own"), "--out", str(tmp_path / "p"), "--steps", "150", "--starts", "2")
    assert report["space"] == "z" and report["perceptual"].startswith("the run's own discriminator")
    assert [row["name"] for row in report["images"]] == ["0", "1"]
    assert min(row["psnr"] for row in report["images"]) > 28, report
    assert report["mean_psnr"] == pytest.approx(np.mean([row["psnr"] for row in report["images"]]), abs=1e-2)
    saved = latent_space.read_saved_latents(out / "latents.pt", sampler.latent_dim)
    assert saved.values.shape == (2, sampler.latent_dim)
    assert torch.allclose(saved.values.norm(dim=1), torch.full((2,), math.sqrt(sampler.latent_dim)), atol=1e-3)  # on the shell
    # The reconstruction beside the target is what `ganctl sample --latents` renders from the file.
    again = sample(tiny_run, latents_file=out / "1.pt", out=tmp_path / "again.png", device="cpu")
    assert np.array_equal(png(again), png(out / "1.png")[2:30, 32:60])  # target | reconstruction, 2 px apart


def test_a_conditional_projection_finds_the_class_or_keeps_the_given_one(concat_run: Path, tmp_path: Path) -> None:
    state = checkpoint.load(checkpoint.last_path(concat_run))
    sampler = Sampler.from_checkpoint(state, torch.device("cpu"))
    z = sampler.latents(2, seed=3)
    targets = torch.cat([sampler(z[:1], labels=torch.tensor([7])), sampler(z[1:], labels=torch.tensor([2]))])
    # G's own images as floats: an untrained G's classes differ by less than 8-bit files can hold.
    distance = perceptual_distance(state, sampler, None, None, torch.device("cpu"))
    found = Projector(sampler, distance, ProjectionSettings(steps=60, starts=1)).project(targets, list(range(10)))
    assert found.latents.labels.tolist() == [7, 2]  # the best reconstruction over the 10 classes
    write_pngs(targets, tmp_path / "digits")
    out, fixed = projected(concat_run, str(tmp_path / "digits" / "0.png"), "--out", str(tmp_path / "q"), "--class", "4",
                           "--steps", "20", "--starts", "1")
    assert fixed["images"][0]["class"] == "4"
    assert latent_space.read_saved_latents(out / "latents.pt", 16, num_classes=10).labels.tolist() == [4]


def test_a_stylegan2_projection_in_w_plus_keeps_its_noise_and_renders_again(stylegan2_run: Path, tmp_path: Path) -> None:
    sampler = sampler_of(stylegan2_run)
    target = sampler.by_class([1], latents=sampler.latents(1, seed=9))
    write_pngs(target, tmp_path / "img")
    out, report = projected(stylegan2_run, str(tmp_path / "img"), "--out", str(tmp_path / "p"), "--space", "w+",
                            "--class", "1", "--steps", "80", "--video")
    assert report["space"] == "w+" and report["images"][0]["psnr"] > 20, report
    saved = latent_space.read_saved_latents(out / "0.pt", 16, sampler.w_shape, 10)
    num_ws, w_dim = sampler.w_shape
    assert saved.values.shape == (1, num_ws, w_dim) and not torch.equal(saved.values[0, 0], saved.values[0, -1])  # per layer
    assert [tuple(m.shape) for m in saved.noise] == [(1, 1, *own.shape) for own in sampler.generator.noise_maps()]
    again = sample(stylegan2_run, latents_file=out / "0.pt", out=tmp_path / "again.png", device="cpu")
    assert np.array_equal(png(again), png(out / "0.png")[2:34, 36:68])  # rendered with its own noise maps
    assert Image.open(out / "0.gif").n_frames > 10


def test_images_of_any_size_and_mode_are_read_as_the_runs_data_and_bad_ones_get_one_message(tiny_run: Path, tmp_path: Path) -> None:
    Image.new("RGBA", (57, 40), (200, 10, 10, 128)).save(tmp_path / "odd.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    (tmp_path / "empty").mkdir()
    for images, expected in (([tmp_path / "broken.png", tmp_path / "odd.png"], "Cannot read 1 of 2 images"),
                             ([tmp_path / "empty"], "holds no image files"), ([tmp_path / "nowhere.png"], "no such file")):
        with pytest.raises(GanctlError, match=expected):
            projected(tiny_run, *map(str, images), "--out", str(tmp_path / "p"), "--steps", "1")
    _, report = projected(tiny_run, str(tmp_path / "odd.png"), "--out", str(tmp_path / "p"), "--steps", "2", "--starts", "1")
    assert len(report["images"]) == 1  # a 57x40 RGBA picture, read as a 28x28 grayscale digit


def test_psnr_and_ssim_are_torchmetrics_on_the_8_bit_pictures() -> None:
    targets = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    exact = targets.float() / 127.5 - 1
    psnr, ssim = scores(exact, targets)
    assert torch.isinf(psnr).all() and torch.allclose(ssim, torch.ones(2))
    noisy = (exact + 0.1 * torch.randn(exact.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    psnr, _ = scores(noisy, targets)
    quantised = ((noisy + 1) / 2 * 255 + 0.5).floor() / 255
    mse = (quantised - targets.float() / 255).square().flatten(1).mean(dim=1)
    torch.testing.assert_close(psnr, 10 * torch.log10(1 / mse))


def test_perceptual_weights_are_checked_by_hash_and_lpips_loads_them_offline(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("lpips")
    from torchvision.models import squeezenet1_1

    weights = tmp_path / "squeezenet.pth"
    torch.save(squeezenet1_1().state_dict(), weights)  # random weights: not torchvision's published file
    write_pngs(sampler_of(tiny_run).images(1, seed=1), tmp_path / "img")
    with pytest.raises(GanctlError, match="none of torchvision's LPIPS backbones"):
        projected(tiny_run, str(tmp_path / "img"), "--out", str(tmp_path / "p"), "--perceptual-weights", str(weights))
    with pytest.raises(GanctlError, match="needs --perceptual-weights"):
        projected(tiny_run, str(tmp_path / "img"), "--out", str(tmp_path / "p"), "--perceptual", "lpips")
    monkeypatch.setitem(LPIPS_BACKBONES, sha256_prefix(weights), "squeeze")  # as if it were the published file
    _, report = projected(tiny_run, str(tmp_path / "img"), "--out", str(tmp_path / "p"), "--perceptual-weights", str(weights),
                          "--perceptual", "both", "--steps", "3", "--starts", "1")
    assert report["perceptual"].startswith("LPIPS (squeeze, squeezenet.pth) + the run's own discriminator")


# ----------------------------------------------------------------------------- directions


def test_sefa_directions_are_the_top_eigenvectors_of_the_row_normalised_weight() -> None:
    weight = torch.randn(40, 6, generator=torch.Generator().manual_seed(0)) * torch.rand(40, 1)
    found, values = sefa(weight, 4)
    rows = weight / weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(found @ (rows.t() @ rows), values[:, None] * found, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(found @ found.t(), torch.eye(4), atol=1e-5, rtol=0)
    assert values.tolist() == sorted(values.tolist(), reverse=True)
    everything = torch.linalg.eigvalsh(rows.t() @ rows)
    torch.testing.assert_close(values, everything.flip(0)[:4], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["mlp", "dcgan", "conv", "resnet", "biggan", "r3gan"])
def test_each_familys_first_layer_weight_is_the_map_its_first_layer_applies_to_z(family: str) -> None:
    """Moving z by d moves the first layer's output by A d (the first layer found by a hook on G)."""
    torch.manual_seed(0)
    generator = {
        "mlp": lambda: MLPGenerator(8, [32], 1, 8),
        "dcgan": lambda: DCGANGenerator(8, 4, 1, 16),
        "conv": lambda: ConvGenerator(8, 4, 4, [4], [3, 3], [1, 1], [2, 2], 1, 16),
        "resnet": lambda: ResNetGenerator(8, 1, 16, width=4),
        "biggan": lambda: BigGANGenerator(8, 1, 32, width=2, shared_dim=None),
        "r3gan": lambda: R3GANGenerator(1, 28, 8, widths=[4, 4, 4], cardinalities=[2, 2, 2], blocks=[1, 1, 1]),
    }[family]().eval()
    first = {"mlp": lambda g: g.net[0], "dcgan": lambda g: g.net[0], "conv": lambda g: g.net[0],
             "resnet": lambda g: g.input[-1], "biggan": lambda g: g.linear,
             "r3gan": lambda g: g.stages[0][0].linear}[family](generator)
    outputs = []
    first.register_forward_hook(lambda module, inputs, output: outputs.append(output.flatten(1).clone()))  # before in-place ReLUs
    z, d = torch.randn(1, generator.latent_dim), torch.randn(1, generator.latent_dim)
    with torch.no_grad():
        generator(z), generator(z + d)
    weight = generator.first_layer_weight()
    torch.testing.assert_close(outputs[1] - outputs[0], (d @ weight.t())[:, : outputs[0].shape[1]], atol=1e-5, rtol=1e-4)


def test_r3gans_discriminator_features_are_each_images_own_and_end_where_its_basis_reads() -> None:
    torch.manual_seed(0)
    discriminator = R3GANDiscriminator(1, 28, widths=[4, 4, 4], cardinalities=[2, 2, 2], blocks=[1, 1, 1]).eval()
    assert isinstance(discriminator, FeatureDiscriminator) and isinstance(R3GANGenerator(1, 28, 8, widths=[4, 4, 4],
                                                                                         cardinalities=[2, 2, 2], blocks=[1, 1, 1]),
                                                                          FirstLayerGenerator)
    images = torch.randn(3, 1, 28, 28)
    inputs = []
    discriminator.stages[-1][-1].register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    with torch.no_grad():
        together, alone = discriminator.feature_maps(images), discriminator.feature_maps(images[1:2])
        discriminator(images)
    assert [tuple(f.shape[1:]) for f in together] == [(4, 14, 14), (4, 7, 7), (4, 7, 7)]  # downsampled by each stage but the last
    for batch, single in zip(together, alone):
        torch.testing.assert_close(batch[1:2], single)
    torch.testing.assert_close(together[-1], inputs[0])


def test_directions_walk_latents_and_strength_0_is_the_latent_itself(tiny_run: Path, tmp_path: Path) -> None:
    found = directions(Namespace(checkpoint=str(tiny_run), out=str(tmp_path / "dirs.npy"), top=3, positive=None, negative=None,
                                 classes=None, samples=10, seed=0, device="cpu", ema=True))
    array = np.load(found)
    assert array.shape == (3, 16) and np.allclose(np.linalg.norm(array, axis=1), 1, atol=1e-5)
    strip = tmp_path / "strip.png"
    assert sample_main([str(tiny_run), "--direction", f"{found}:1", "--strength", "-2:2:5", "--num", "2", "--seed", "4",
                        "--out", str(strip), "--device", "cpu"]) == 0  # (-2:2:5 starts with a minus, as strengths do)
    plain = sample(tiny_run, num=2, nrow=1, seed=4, out=tmp_path / "plain.png", device="cpu")
    cell = 28 + 2  # a 28 px image and the grid's 2 px padding
    middle = png(strip)[:, 2 * cell:3 * cell + 2].astype(int)  # the strength-0 column, rows of both latents
    assert np.abs(middle - png(plain)).max() <= 1 and png(strip).shape[1] == 5 * cell + 2
    assert not np.array_equal(png(strip)[:, :cell], png(strip)[:, 4 * cell:5 * cell])  # the direction changes the digit


def test_a_labelled_direction_is_the_mean_difference_and_scales(tiny_run: Path, concat_run: Path, tmp_path: Path) -> None:
    sampler = sampler_of(tiny_run)
    positive, negative = sampler.latents(5, seed=1), sampler.latents(3, seed=2)
    np.save(tmp_path / "a.npy", positive.numpy())
    torch.save(negative, tmp_path / "b.pt")
    found = directions(Namespace(checkpoint=str(tiny_run), out=str(tmp_path / "smile.npy"), top=10, positive=str(tmp_path / "a.npy"),
                                 negative=str(tmp_path / "b.pt"), classes=None, samples=10, seed=0, device="cpu", ema=True))
    torch.testing.assert_close(torch.from_numpy(np.load(found)), (positive.mean(0) - negative.mean(0))[None])
    with pytest.raises(GanctlError, match="reads the class beside z"):
        directions(Namespace(checkpoint=str(concat_run), out=str(tmp_path / "c.npy"), top=1, positive=None, negative=None,
                             classes="1,2", samples=4, seed=0, device="cpu", ema=True))


def test_a_conditional_stylegan2s_class_direction_and_strips_keep_the_class(stylegan2_run: Path, tmp_path: Path) -> None:
    sampler = sampler_of(stylegan2_run)
    found = directions(Namespace(checkpoint=str(stylegan2_run), out=str(tmp_path / "c.npy"), top=1, positive=None, negative=None,
                                 classes="3,8", samples=50, seed=0, device="cpu", ema=True))
    z = sampler.latents(50, 0)
    w = [sampler.styles(z, torch.full((50,), k))[:, 0].mean(0) for k in (3, 8)]
    torch.testing.assert_close(torch.from_numpy(np.load(found))[0], w[0] - w[1])
    sefa_dirs = directions(Namespace(checkpoint=str(stylegan2_run), out=str(tmp_path / "s.npy"), top=2, positive=None, negative=None,
                                     classes=None, samples=1, seed=0, device="cpu", ema=True))
    assert np.load(sefa_dirs).shape == (2, sampler.w_shape[1])
    strip = direction_strips(stylegan2_run, f"{found}:0", "0,1", num=1, seed=2, classes="8", out=tmp_path / "strip.png", device="cpu")
    # Strength 1 of (mean w of 3 - mean w of 8) from a w of class 8: the image of that w moved, drawn as one class throughout.
    moved = sampler.synthesize((sampler.styles(sampler.latents(1, 2), torch.tensor([8])) + (w[0] - w[1])))
    expected = ((moved[0, 0].clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).byte().numpy()
    assert np.abs(png(strip)[2:34, 36:68][..., 0].astype(int) - expected.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- truncation threshold


def test_the_truncation_threshold_is_bigGANs_and_the_same_draw_as_its_psi() -> None:
    z = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    cut = latent_space.truncate_gaussian_at(z, 0.5, torch.Generator().manual_seed(1))
    inside = z.abs() <= 0.5
    assert torch.equal(cut[inside], z[inside]) and cut.abs().max() <= 0.5
    assert not torch.equal(cut[~inside], z[~inside])
    psi = latent_space.threshold_mass(0.5)
    assert psi == pytest.approx(0.3829, abs=1e-4)  # BigGAN's 0.5 is ganctl's psi 0.38
    torch.testing.assert_close(cut, latent_space.truncate_gaussian(z, psi, torch.Generator().manual_seed(1)))
    assert latent_space.truncate_gaussian_at(z, math.inf, torch.Generator()) is z
    assert torch.equal(latent_space.truncate_gaussian_at(z, 0, torch.Generator()), torch.zeros_like(z))


def test_sample_takes_a_threshold_for_gaussian_latents_only(tiny_run: Path, stylegan2_run: Path, tmp_path: Path) -> None:
    at = sample(tiny_run, num=4, seed=1, device="cpu", threshold=0.5)
    assert at.name.endswith("_t0.5.png")
    sampler = Sampler.from_checkpoint(checkpoint.load(checkpoint.last_path(tiny_run)), torch.device("cpu"), threshold=0.5)
    rng = torch.Generator().manual_seed(1)
    expected = latent_space.truncate_gaussian_at(torch.randn(4, 16, generator=rng), 0.5, rng)  # drawn as Sampler.latents draws
    assert torch.equal(sampler.latents(4, 1), expected) and expected.abs().max() <= 0.5
    with pytest.raises(GanctlError, match="not both"):
        sample(tiny_run, num=4, device="cpu", truncation=0.7, threshold=0.5)
    with pytest.raises(GanctlError, match="truncates in its W space"):
        sample(stylegan2_run, num=4, device="cpu", threshold=0.5)

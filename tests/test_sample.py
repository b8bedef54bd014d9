"""`ganctl sample` rebuilds G from the checkpoint alone and is deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganctl.errors import GanctlError
from ganctl.sample import grid as grid_module
from ganctl.sample.grid import sample
from helpers import TINY, TINY_DCGAN, run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run")
    run(directory, *TINY, *TINY_DCGAN)
    return directory


def test_grid_and_images_from_a_run_directory(run_dir: Path, tmp_path: Path) -> None:
    out = sample(run_dir, num=10, nrow=5, seed=3, out=tmp_path / "grid.png", images_dir=tmp_path / "images", device="cpu")
    assert out == tmp_path / "grid.png"
    assert Image.open(out).size == (5 * 30 + 2, 2 * 30 + 2)  # make_grid: 28 px + 2 px padding per cell
    files = sorted((tmp_path / "images").glob("*.png"))
    assert [f.name for f in files] == [f"{i:04d}.png" for i in range(10)]
    assert sorted(f.name for f in (tmp_path / "images").iterdir() if f.suffix != ".png") == ["latents.npy"]
    assert all(Image.open(f).size == (28, 28) and Image.open(f).mode == "L" for f in files)  # one channel: grayscale
    grid = np.asarray(Image.open(out).convert("L"))
    assert np.array_equal(grid[2:30, 2:30], np.asarray(Image.open(files[0])))  # the same pixels as in the grid


def test_many_images_stream_to_their_files_and_the_grid_shows_the_first(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    unchunked = sample(run_dir, num=10, out=tmp_path / "all.png", images_dir=tmp_path / "all", device="cpu")
    monkeypatch.setattr(grid_module, "GRID_PIXELS", 4 * 28 * 28)  # a grid of four digits at most
    monkeypatch.setattr(grid_module, "BATCH", 3)  # made three at a time
    with pytest.raises(GanctlError, match=r"--num 10 at 28x28 makes a grid of .* --images-dir DIR \(the grid then shows the first 4\)"):
        sample(run_dir, num=10, out=tmp_path / "refused.png", device="cpu")
    out = sample(run_dir, num=10, nrow=2, out=tmp_path / "grid.png", images_dir=tmp_path / "images", device="cpu")
    assert Image.open(out).size == (2 * 30 + 2, 2 * 30 + 2)  # the first four, two to a row
    streamed, whole = (sorted((tmp_path / name).glob("*.png")) for name in ("images", "all"))
    assert len(streamed) == 10 and [f.read_bytes() for f in streamed] == [f.read_bytes() for f in whole]
    assert Image.open(unchunked).size == (8 * 30 + 2, 2 * 30 + 2)  # uncapped: all ten
    assert not (tmp_path / "refused.png").exists()


def test_same_checkpoint_and_seed_give_identical_bytes(run_dir: Path, tmp_path: Path) -> None:
    checkpoint = run_dir / "checkpoints" / "step_0000002.pt"
    a = sample(checkpoint, num=16, seed=7, out=tmp_path / "a.png", device="cpu").read_bytes()
    b = sample(checkpoint, num=16, seed=7, out=tmp_path / "b.png", device="cpu").read_bytes()
    c = sample(checkpoint, num=16, seed=8, out=tmp_path / "c.png", device="cpu").read_bytes()
    assert a == b != c


def test_ema_and_raw_generators_differ(run_dir: Path, tmp_path: Path) -> None:
    ema = sample(run_dir, num=16, out=tmp_path / "ema.png", device="cpu").read_bytes()
    raw = sample(run_dir, num=16, out=tmp_path / "raw.png", device="cpu", ema=False).read_bytes()
    assert ema != raw


def test_default_output_goes_into_the_run_named_by_what_it_holds(run_dir: Path) -> None:
    out = sample(run_dir, num=4, seed=1, device="cpu")
    assert out.parent == run_dir / "samples" and out.exists()
    many = sample(run_dir, num=20, seed=1, device="cpu")  # e.g. --num 1000 --images-dir: its own grid file
    assert many != out and out.exists() and Image.open(out).size == (4 * 30 + 2, 30 + 2)
    assert out.name == "sample_step0000004_seed1_num4.png"


@pytest.mark.parametrize("kwargs,message", [({"num": 0}, "--num must be at least 1"), ({"nrow": 0}, "--nrow")])
def test_bad_sample_arguments(run_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(GanctlError, match=message):
        sample(run_dir, device="cpu", **kwargs)


def test_output_that_is_a_directory(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GanctlError, match="is a directory"):
        sample(run_dir, out=tmp_path, device="cpu")


def test_output_that_cannot_be_written(run_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(GanctlError, match="Cannot write the samples"):
        sample(run_dir, out=blocker / "grid.png", device="cpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_device_that_is_not_here_is_named_as_the_flag_gave_it(run_dir: Path) -> None:
    with pytest.raises(GanctlError, match=r"--device cuda, but no such CUDA GPU is visible here. Use --device auto or --device cpu"):
        sample(run_dir, device="cuda")


def test_a_reused_images_dir_is_refused_and_keeps_its_files(run_dir: Path, tmp_path: Path) -> None:
    """A second set into the folder of a first (fewer images, other latents) would leave the first
    set's 0004.png ... and could pair a latents.npy with images it did not make."""
    images = tmp_path / "images"
    sample(run_dir, num=6, seed=1, out=tmp_path / "a.png", images_dir=images, device="cpu")
    before = {path.name: path.read_bytes() for path in images.iterdir()}
    with pytest.raises(GanctlError, match="--images-dir .* already holds files: give a new or empty folder"):
        sample(run_dir, num=3, seed=2, out=tmp_path / "b.png", images_dir=images, device="cpu")
    assert {path.name: path.read_bytes() for path in images.iterdir()} == before
    assert not (tmp_path / "b.png").exists()  # refused before anything was written

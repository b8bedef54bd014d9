"""`ganctl sample` in a mapping network's W (StyleGAN2): style-mixing grids (--mix) and walks in W
(--space), each checked against G run by hand on the styles it should draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import checkpoint
from ganctl.cli import main as cli
from ganctl.errors import GanctlError
from ganctl.sample.mixing import style_mixing
from ganctl.sample.walks import class_walk, interpolate
from ganctl.sampling import Sampler
from helpers import TINY, TINY_STYLEGAN2, run

CELL = 32 + 2  # a 32x32 image and the grid's 2-pixel padding


@pytest.fixture(scope="module")
def stylegan2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-conditional tiny StyleGAN2 after 2 steps (w_avg has moved: truncation in W pulls somewhere)."""
    directory = tmp_path_factory.mktemp("stylegan2_run")
    run(directory, *TINY_STYLEGAN2, *TINY, "train.steps=2", "train.sample_every=0", "train.ckpt_every=0",
        "conditioning=concat", "conditioning.discriminator=projection")
    return directory


def generator_of(run_dir: Path) -> torch.nn.Module:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    return Sampler.from_checkpoint(state, torch.device("cpu")).generator  # the EMA, in eval mode


def as_pixels(images: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] as save_image writes them: (N, H, W, 3) bytes."""
    return ((images + 1) / 2 * 255 + 0.5).clamp(0, 255).byte().repeat(1, 3 // images.shape[1], 1, 1).permute(0, 2, 3, 1).numpy()


def cell(grid: np.ndarray, row: int, column: int) -> np.ndarray:
    return grid[2 + row * CELL:row * CELL + CELL, 2 + column * CELL:column * CELL + CELL]


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.abs(a.astype(int) - b.astype(int)).max() <= 1  # a byte's rounding apart at most


def test_a_mixing_grid_takes_each_cells_coarse_styles_from_its_column(stylegan2_run: Path, tmp_path: Path) -> None:
    out = style_mixing(stylegan2_run, shape=(2, 3), seed=5, out=tmp_path / "mix.png", classes="3", truncation=0.7, device="cpu")
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape == (3 * CELL + 2, 4 * CELL + 2, 3)  # (R + 1) x (C + 1) cells
    assert cell(grid, 0, 0).max() == 0  # the empty corner
    generator = generator_of(stylegan2_run)
    assert generator.style_resolutions[:4] == (4, 8, 8, 16)  # coarse: styles 0-2
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(5))  # the rows' 2 latents, then the columns' 3
    with torch.no_grad():
        ws = generator.w_avg.lerp(generator.mapping(z, torch.full((5,), 3)), 0.7)  # (5, num_ws, W), truncated in W
        mixed = ws[1].clone()
        mixed[:3] = ws[4, :3]  # row 1's styles with column 2's coarse ones
        expected, row_own, column_own = as_pixels(generator.synthesis(torch.stack([mixed, ws[1], ws[4]])))
    assert close(cell(grid, 2, 3), expected)
    assert close(cell(grid, 2, 0), row_own) and close(cell(grid, 0, 3), column_own)
    assert not close(expected, row_own) and not close(expected, column_own)  # a mix of both, neither alone


def test_mixing_refuses_what_it_cannot_draw(stylegan2_run: Path, tiny_run: Path, tmp_path: Path, capsys) -> None:
    assert cli(["sample", str(tiny_run), "--mix", "2", "2", "--device", "cpu"]) == 1  # a DCGAN: no styles to mix
    assert "--mix mixes a generator's per-layer styles, and this checkpoint's (DCGANGenerator) has none" in capsys.readouterr().err
    for kwargs, message in (({"classes": None}, "name it with --class"), ({"layers": "fine"}, "no styles at 64x64"),
                            ({"layers": "3-99"}, "style indices A-B")):
        with pytest.raises(GanctlError, match=message):
            style_mixing(stylegan2_run, shape=(1, 1), out=tmp_path / "x.png", device="cpu", **{"classes": "1", **kwargs})


def test_walks_go_in_straight_lines_through_w(stylegan2_run: Path, tiny_run: Path, tmp_path: Path) -> None:
    interpolate(stylegan2_run, [1, 2], frames=2, out=tmp_path / "walk.gif", classes="3", device="cpu")  # W by default
    strip = np.asarray(Image.open(tmp_path / "walk.png").convert("RGB"))
    assert strip.shape == (CELL + 2, 3 * CELL + 2, 3)
    generator = generator_of(stylegan2_run)
    z = torch.cat([torch.randn(1, 16, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)])
    with torch.no_grad():
        ws = generator.mapping(z, torch.full((2,), 3))
        middle = as_pixels(generator.synthesis(ws.mean(dim=0, keepdim=True)))[0]
    assert close(cell(strip, 0, 1), middle)
    interpolate(stylegan2_run, [1, 2], frames=2, out=tmp_path / "z.gif", classes="3", device="cpu", space="z")
    assert not close(cell(np.asarray(Image.open(tmp_path / "z.png").convert("RGB")), 0, 1), middle)  # slerp in z differs
    class_walk(stylegan2_run, seed=1, classes="0,3", out=tmp_path / "classes.gif", frames=2, device="cpu")
    with torch.no_grad():
        ws = generator.mapping(z[:1].repeat(2, 1), torch.tensor([0, 3]))
        between = as_pixels(generator.synthesis(ws.mean(dim=0, keepdim=True)))[0]
    assert close(cell(np.asarray(Image.open(tmp_path / "classes.png").convert("RGB")), 0, 1), between)
    with pytest.raises(GanctlError, match="--space w walks the intermediate latent W of a mapping network"):
        interpolate(tiny_run, [1, 2], frames=2, out=tmp_path / "dcgan.gif", device="cpu", space="w")

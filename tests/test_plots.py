"""Pictures of a run: curves.png at the end of a run and `ganctl plot` (a run, a sweep), `ganctl animate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from ganctl import config, plots
from ganctl.errors import GanctlError
from ganctl.train import train
from helpers import TINY, TINY_DCGAN, compose_config, run_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run")
    cfg, choices = compose_config(*TINY, *TINY_DCGAN, "train.curves=true", "loss=wgangp", "model.discriminator.norm=layer",
                                  "loss.critic_steps=1", "train.steps=6", "train.lr_schedule=linear")
    config.check(cfg)
    train(cfg, directory, choices)
    return directory


def test_a_run_ends_with_curves_of_its_losses_penalty_and_learning_rates(run_dir: Path) -> None:
    assert Image.open(run_dir / "curves.png").size == (1200, 700)
    series = plots.read_scalars(run_dir)
    assert series["loss/d"][0] == series["lr/g"][0] == [2, 4, 6]
    lr = series["lr/g"][1]
    assert lr[0] > lr[1] > lr[2] and lr[2] == pytest.approx(0, abs=1e-9)  # the linear schedule, down to 0 at the end
    figure = plots.curves_figure(series, "t")
    titles = {axis.get_title(): [line.get_label() for line in axis.get_lines()] for axis in figure.axes if axis.get_visible()}
    assert titles["losses"] == ["loss/d", "loss/g"]
    assert titles["D's view of real and fake"] == ["d/fake", "d/real", "d/wasserstein"]
    assert titles["regularisers"] == ["reg/gradient_penalty"]
    assert titles["learning rates"] == ["lr/d", "lr/g"]


def test_plot_redraws_a_run_and_refuses_what_it_cannot_draw(run_dir: Path, tmp_path: Path) -> None:
    out = plots.plot(run_dir, tmp_path / "again.png")
    assert Image.open(out).size == (1200, 700)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanctlError, match="no TensorBoard logs"):
        plots.plot(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for events in (broken / "tb").iterdir():
        events.write_bytes(bytes(range(256)) * 10)
    result = run_cli("plot", str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No scalars in the TensorBoard events" in result.stderr and "damaged" in result.stderr


def test_plot_of_a_sweep_has_one_line_per_job_labelled_by_its_values(run_dir: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"swept": ["optimizer.g.lr"], "objective": "fid"}))
    for job, lr in enumerate(("0.0002", "0.0001")):
        shutil.copytree(run_dir, sweep_dir / str(job))
        (sweep_dir / str(job) / ".hydra").mkdir(exist_ok=True)
        (sweep_dir / str(job) / ".hydra" / "overrides.yaml").write_text(f"- optimizer.g.lr={lr}\n")
    (sweep_dir / "2" / ".hydra").mkdir(parents=True)  # a job that failed before logging
    (sweep_dir / "2" / ".hydra" / "overrides.yaml").write_text("- optimizer.g.lr=-1\n")
    figure, jobs = plots.sweep_figure(sweep_dir)
    assert jobs == 2
    for axis in (axis for axis in figure.axes if axis.get_visible()):
        assert [line.get_label() for line in axis.get_lines()] == ["optimizer.g.lr=0.0002", "optimizer.g.lr=0.0001"]
    assert Image.open(plots.plot(sweep_dir)).size == (1200, 700)
    for job in ("0", "1"):
        shutil.rmtree(sweep_dir / job)
    with pytest.raises(GanctlError, match="no job of this sweep has logged anything yet"):
        plots.plot(sweep_dir)


def test_animate_writes_one_captioned_frame_per_grid(run_dir: Path, tmp_path: Path) -> None:
    out = plots.animate(run_dir, tmp_path / "progress.gif")
    gif = Image.open(out)
    frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    grid = Image.open(run_dir / "samples" / "step_0000006.png")
    assert len(frames) == 3 and gif.size == (grid.width, grid.height + 14)  # steps 2, 4, 6 under a caption band
    assert not np.array_equal(frames[0][:14], frames[2][:14])  # "step 2" and "step 6" differ
    (run_dir / "samples" / "step_0000008.png").write_bytes(b"\x89PNG half-written")  # a grid being written now
    try:
        assert Image.open(plots.animate(run_dir, tmp_path / "again.gif")).n_frames == 3
    finally:
        (run_dir / "samples" / "step_0000008.png").unlink()
    empty = tmp_path / "fresh"
    (empty / "samples").mkdir(parents=True)
    with pytest.raises(GanctlError, match="No training grids yet"):
        plots.animate(empty)

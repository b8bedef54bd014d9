"""What ganctl writes stays in its place and destroys no one's file (ganctl/files.py): a link named
like a file ganctl writes is replaced, never written through; a link to a directory (checkpoints/
on scratch storage) is written into, and its run is still the one it lies in. The links are made as
a user (or someone sharing the disk) would make them, in real run directories."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ganctl import checkpoint, rundir
from ganctl.evaluate import evaluate
from ganctl.export import export
from ganctl.sample.grid import sample
from helpers import TINY, TINY_DCGAN, run_cli, train_in_process

RUN = [*TINY, *TINY_DCGAN, "train.steps=2", "train.ckpt_every=2", "train.log_every=1"]


def precious(tmp_path: Path, name: str) -> Path:
    """A file of the user's, outside every run, that a link will point at."""
    path = tmp_path / "home" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"the user's {name}\n")
    return path


def link(at: Path, target: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target)


def test_a_train_lock_that_is_a_link_leaves_its_target_alone(tmp_path: Path) -> None:
    target = precious(tmp_path, "notes.txt")
    run_dir = tmp_path / "run"
    link(run_dir / rundir.LOCK_FILE, target)
    with rundir.hold(run_dir):
        assert not (run_dir / rundir.LOCK_FILE).is_symlink()  # ganctl's own lock file took the link's place
    assert target.read_text() == "the user's notes.txt\n"


def test_links_in_a_run_directory_are_replaced_never_written_through(tmp_path: Path) -> None:
    """Hydra's .hydra/config.yaml and train.log, training's grid and summary.json, eval's cards and
    nearest grid, sample's grid: each name is a link to a user's file before `ganctl train`, `eval`
    and `sample` write it. Every user file is as it was; each name now holds ganctl's output."""
    run_dir = tmp_path / "run"
    names = {
        ".hydra/config.yaml": "config.yaml", "train.log": "train.log", "samples/step_0000002.png": "grid.png",
        "summary.json": "summary.json", "checkpoints/last.metrics.json": "metrics.json",
        "samples/nearest_step0000002.png": "nearest.png", "samples/mine.png": "mine.png",
    }
    targets = {name: precious(tmp_path, user) for name, user in names.items()}
    for name in (".hydra/config.yaml", "train.log", "samples/step_0000002.png", "summary.json"):
        link(run_dir / name, targets[name])
    trained = run_cli("train", *RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    for name in ("checkpoints/last.metrics.json", "samples/nearest_step0000002.png", "samples/mine.png"):
        link(run_dir / name, targets[name])
    evaluate(run_dir, names=["none"], nearest=2, device="cpu")
    sample(run_dir, num=2, out=run_dir / "samples" / "mine.png", device="cpu")
    for name, target in targets.items():
        assert target.read_text() == f"the user's {names[name]}\n", name
        assert (run_dir / name).is_file() and not (run_dir / name).is_symlink(), name
    assert (run_dir / "samples" / "mine.png").read_bytes().startswith(b"\x89PNG")


def test_a_checkpoints_folder_linked_to_scratch_belongs_to_its_run(tmp_path: Path) -> None:
    """checkpoints/ as a link to a directory elsewhere: resume continues the run, and sample and
    export write into the run directory, not beside the scratch folder."""
    run_dir, scratch = tmp_path / "run", tmp_path / "scratch"
    train_in_process(*RUN, f"hydra.run.dir={run_dir}")
    scratch.mkdir()
    shutil.move(run_dir / "checkpoints", scratch / "checkpoints")
    (run_dir / "checkpoints").symlink_to(scratch / "checkpoints", target_is_directory=True)
    assert train_in_process(f"resume={run_dir}", "train.steps=4").step == 4
    assert train_in_process(f"resume={run_dir / 'checkpoints' / 'last.pt'}", "train.steps=6").step == 6
    assert checkpoint.load(scratch / "checkpoints" / "step_0000006.pt")["step"] == 6
    grid = sample(run_dir, num=2, device="cpu")
    exported = export(run_dir, "torchscript")
    assert grid.parent == run_dir / "samples" and exported.parent == run_dir / "export"
    assert sorted(os.listdir(scratch)) == ["checkpoints"]

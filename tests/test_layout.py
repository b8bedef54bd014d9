"""How the package is put together: no import circles, and sample / eval / export / project / directions
stay clear of the run loop and the training step; a checkpoint written by an earlier ganctl (commit 18eea1d) still samples,
evaluates and resumes exactly."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ganctl
from ganctl import checkpoint
from helpers import TINY, TINY_DCGAN, run_cli, train_in_process

PACKAGE = Path(ganctl.__file__).parent
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-18eea1d.pt"


def sources(module: str) -> list[Path]:
    """A module's file, or every file of a subpackage (ganctl.models counts as one module)."""
    path = PACKAGE / module
    return sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def imports_of(module: str, top_level_only: bool = False) -> set[str]:
    """The ganctl modules `module` imports, anywhere in it (functions too) or at its top level only."""
    found = set()
    for source in sources(module):
        tree = ast.parse(source.read_text())
        found |= imported(tree.body if top_level_only else list(ast.walk(tree)))
    return found - {module}


def imported(nodes: list[ast.AST]) -> set[str]:
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("ganctl.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ganctl":
            if node.module == "ganctl":  # from ganctl import a, b
                found |= {alias.name for alias in node.names if sources(alias.name)[0].exists()}
            else:
                found.add(node.module.split(".")[1])
    return found


MODULES = sorted(
    [path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"]
    + [path.parent.name for path in PACKAGE.glob("*/__init__.py")]
)


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {module: imports_of(module) for module in MODULES}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    circles = [module for module in MODULES if reaches(module, module, {module})]
    assert circles == []


def test_sample_and_eval_do_not_import_the_training_loop() -> None:
    def closure(module: str) -> set[str]:
        found, todo = set(), [module]
        while todo:
            for nxt in imports_of(todo.pop(), top_level_only=True) - found:
                found.add(nxt)
                todo.append(nxt)
        return found

    for command in ("sample", "evaluate", "project", "directions", "projection"):  # (logger would bring TensorBoard)
        assert closure(command) & {"train", "app", "logger"} == set(), command


# What trains a step: reading a checkpoint back (sample, eval, export) needs none of it.
STEP_MODULES = {f"ganctl.{name}" for name in ("gan", "losses", "ada", "augment", "speed", "distributed", "train")}


def test_sample_eval_export_project_and_directions_run_without_the_training_steps_modules(tmp_path: Path) -> None:
    """Each command run for real in a fresh process (so lazy imports count too): once it has done its
    work, none of the step's modules is loaded."""
    run_dir = tmp_path / "run"
    train_in_process(*TINY, *TINY_DCGAN, "train.steps=2", "train.sample_every=0", "train.ckpt_every=0",
                     "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.num_real=100",
                     f"hydra.run.dir={run_dir}")  # scored by pooled pixels: no Inception weights to fetch
    grid, cards, exported = tmp_path / "grid.png", tmp_path / "cards.json", tmp_path / "generator.ts.pt"
    projected, found = tmp_path / "projected", tmp_path / "dirs.npy"
    commands = [
        (["sample", str(run_dir), "--num", "4", "--out", str(grid), "--device", "cpu"], grid),
        (["project", str(run_dir), str(grid), "--out", str(projected), "--steps", "2", "--starts", "1", "--device", "cpu"],
         projected / "latents.pt"),
        (["directions", str(run_dir), "--out", str(found), "--top", "2", "--device", "cpu"], found),
        (["eval", str(run_dir), "--metrics", "fid", "--num", "20", "--out", str(cards), "--device", "cpu"], cards),
        (["export", str(run_dir), "--format", "torchscript", "--out", str(exported)], exported),
    ]
    env = {**os.environ, "GANCTL_CACHE_DIR": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch")}
    for args, written in commands:
        code = ("import json, sys\nfrom ganctl.cli import main\nstatus = main(%r)\n"
                "print(json.dumps(sorted(sys.modules)))\nsys.exit(status)" % args)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0 and written.exists(), result.stdout + result.stderr
        loaded = set(json.loads(result.stdout.splitlines()[-1]))
        assert "ganctl.sampling" in loaded and loaded & STEP_MODULES == set(), (args[0], sorted(loaded & STEP_MODULES))


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "old"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURE, checkpoint.last_path(run_dir))
    return run_dir


def test_a_checkpoint_from_18eea1d_samples_and_evaluates(old_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    grids = [run_cli("sample", str(old_run), "--num", "6", "--seed", "2", "--out", str(tmp_path / f"{i}.png"), "--device", "cpu")
             for i in range(2)]
    assert all(result.returncode == 0 for result in grids), grids[0].stderr
    assert (tmp_path / "0.png").read_bytes() == (tmp_path / "1.png").read_bytes()
    result = run_cli("eval", str(old_run), "--metrics", "none", "--nearest", "4", "--device", "cpu",
                     env={"GANCTL_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0 and "nearest_l1" in result.stdout + result.stderr, result.stderr


def test_a_checkpoint_from_18eea1d_resumes_exactly(tmp_path: Path) -> None:
    """3 -> 5 steps in one go, and 3 -> 4 -> 5 in two, from the old checkpoint: the same weights."""
    runs = {}
    for name, targets in (("once", [5]), ("twice", [4, 5])):
        run_dir = tmp_path / name
        (run_dir / "checkpoints").mkdir(parents=True)
        shutil.copy(FIXTURE, checkpoint.last_path(run_dir))
        for steps in targets:
            result = run_cli("train", f"resume={run_dir}", f"train.steps={steps}")
            assert result.returncode == 0, result.stderr
        runs[name] = checkpoint.load(checkpoint.last_path(run_dir))
    assert runs["once"]["step"] == runs["twice"]["step"] == 5
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d", "schedulers"):
        torch.testing.assert_close(runs["once"][key], runs["twice"][key], rtol=0, atol=0, msg=key)
    old = torch.load(FIXTURE, weights_only=True)
    assert not torch.equal(old["generator"]["net.0.weight"], runs["once"]["generator"]["net.0.weight"])  # it trained

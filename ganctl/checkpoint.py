"""Checkpoints: plain dicts of tensors and containers, written atomically, read with weights_only.

A checkpoint holds everything needed to continue a run or to sample from it with nothing but the
file: the GAN's state (networks, optimizers, schedulers, loss scales: `gan.GAN.state_dict()`), the
step, the RNG states, the resolved config as plain containers, and the data's shape (`data`:
channels, image size, and a class-conditional run's class names, `classes`). Nothing in it can run code when
loaded. This module owns the file's layout: `training_state` writes it, `load` checks it for every
reader (train resume=, sample, eval).
"""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ganctl.errors import GanctlError
from ganctl.files import write_atomically

FORMAT = "ganctl-checkpoint"
VERSION = 1
# What a run stores beside the GAN's own state dict entries (which sit at the top level too).
RUN_KEYS = ("format", "version", "step", "wall_seconds", "config", "choices", "metrics", "best", "rng", "data")


def training_state(
    gan_state: dict[str, Any], *, step: int, wall_seconds: float, config: dict, choices: dict,
    metrics: list, best: Optional[dict], data: dict[str, Any], device: torch.device,
) -> dict[str, Any]:
    """A checkpoint: the GAN's state dict, the RNG states and what the run needs to go on from `step`
    (the resolved config, the chosen options, the data's shape, the latest metric cards)."""
    return {
        "format": FORMAT, "version": VERSION, "step": step, "wall_seconds": wall_seconds,
        "config": config, "choices": choices, "metrics": metrics, "best": best,
        **gan_state, "rng": rng_states(device), "data": data,
    }


def gan_state(state: dict[str, Any]) -> dict[str, Any]:
    """The GAN's entries of a checkpoint (what `GAN.load_state_dict` takes)."""
    return {key: value for key, value in state.items() if key not in RUN_KEYS}


def step_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def last_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.pt"


def best_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "best.pt"


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory meaning its checkpoints/last.pt."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = last_path(path)
        if not candidate.is_file():
            raise GanctlError(
                f"No checkpoint in {path}: expected {candidate}. Pass a run directory written by "
                "`ganctl train` or the path of a .pt checkpoint."
            )
        return candidate
    if not path.is_file():
        raise GanctlError(f"Checkpoint not found: {path}. Pass a .pt file or a ganctl run directory.")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/<name>.pt)."""
    return checkpoint.resolve().parent.parent


def save(state: dict[str, Any], *paths: Path) -> None:
    """Serialise once, then write each path atomically (temporary file, fsync, rename): a crash at
    any moment leaves either the previous complete file or the new complete one."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    for path in paths:
        try:
            write_atomically(path, lambda f: f.write(data), durable=True)
        except OSError as error:  # disk full, read-only or vanished directory, quota...
            kept = "".join(f"The previous {p.name} is intact. " for p in paths if p.exists())
            raise GanctlError(
                f"Could not write the checkpoint {path}: {error.strerror or error}. {kept}Training stopped "
                "rather than go on without checkpoints: free some space (or fix the directory's permissions), "
                f"then continue with `ganctl train resume={run_dir_of(path)}`."
            ) from error


def clean_temporary(run_dir: Path) -> list[Path]:
    """Remove the temporary files of checkpoint writes that a killed process left behind."""
    stray = sorted((Path(run_dir) / "checkpoints").glob(".*.pt*.tmp"))
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


def prune(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` step checkpoints (last.pt and best.pt are never touched).
    Called after a new checkpoint is complete, so a checkpoint never goes before its successor."""
    steps = sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))
    old = steps[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
    return old


def load(path: Path) -> dict[str, Any]:
    """Read a ganctl checkpoint with weights_only=True; a clear GanctlError for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise GanctlError(
            f"Refusing to load {path}: it is not a plain ganctl checkpoint (it contains objects that "
            f"could run code when unpickled, which ganctl never loads). Details: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise GanctlError(
            f"Cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint "
            f"({type(error).__name__}). Use another checkpoint, e.g. an earlier checkpoints/step_<N>.pt."
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanctlError(f"{path} is a PyTorch file but not a ganctl checkpoint (no '{FORMAT}' marker).")
    check_layout(path, state)
    return state


def check_layout(path: Path, state: dict[str, Any]) -> None:
    """The run-level entries every reader relies on, with their types (the GAN checks its own)."""
    stored = state.get("config")
    if not isinstance(stored, dict) or not isinstance(stored.get("dataset"), dict) or not isinstance(stored.get("model"), dict):
        raise GanctlError(f"{path} has no stored config with a dataset and a model: it was not written by `ganctl train`.")
    data = state.get("data")
    problems = [
        name for name, ok in (
            ("step", isinstance(state.get("step"), int) and state["step"] >= 0),
            ("choices", isinstance(state.get("choices"), dict)),
            ("data", isinstance(data, dict) and all(isinstance(data.get(k), int) for k in ("channels", "image_size"))
             and valid_classes(data.get("classes", []))),
            ("config.conditioning", isinstance(stored.get("conditioning", {}), dict)),
            ("rng", isinstance(state.get("rng"), dict)),
        ) if not ok
    ]
    if problems:
        raise GanctlError(f"{path} is not a complete ganctl checkpoint: {', '.join(problems)} missing or malformed.")


def valid_classes(classes: Any) -> bool:
    """A conditional run's class names (data.classes): distinct strings."""
    return isinstance(classes, list) and all(isinstance(name, str) for name in classes) and len(set(classes)) == len(classes)


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every RNG the run draws from, in forms that weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])

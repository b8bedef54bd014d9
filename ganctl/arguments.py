"""Checks of the values a user types that need no torch: each command runs them on its arguments
before torch loads, so that a mistake is answered in a fraction of a second, and the torch-side code
that also takes these values from Python calls the same checks (one definition each)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

from ganctl.errors import GanctlError


def at_least(option: str, value: Optional[int], least: int, why: str = "") -> None:
    """`option`'s value is `least` or more (None: not given, nothing to check)."""
    if value is not None and value < least:
        raise GanctlError(f"{option} must be at least {least}{why}, got {value}.")


DEVICE_NAME = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")


def check_device(name: str, flag: str = "train.device=") -> str:
    """A device's name (--device, train.device): auto, cpu, cuda, cuda:N or mps; whether it exists here
    is `device.resolve_device`'s question. `flag`: how the user gave it, for the message."""
    if not (isinstance(name, str) and DEVICE_NAME.fullmatch(name)):
        raise GanctlError(f"{flag}{name} is not a device: use auto, cpu, cuda, cuda:N or mps.")
    return name


def check_fps(fps: float) -> float:
    """Frames per second of an animation (--fps)."""
    if not fps > 0:
        raise GanctlError(f"--fps must be more than 0, got {fps}.")
    return fps


def check_psi(psi: float) -> float:
    if not (isinstance(psi, (int, float)) and math.isfinite(psi) and 0 <= psi <= 1):
        raise GanctlError(f"--truncation must be a number from 0 (every sample the average) to 1 (no truncation), got {psi!r}.")
    return float(psi)


def check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and not math.isnan(threshold) and threshold >= 0):
        raise GanctlError(f"--truncation-threshold is a number of standard deviations, 0 or more (BigGAN's truncation: "
                          f"0 every sample the mode, inf none), got {threshold!r}.")
    return float(threshold)


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'1,2,3' -> [1, 2, 3]; one clear error otherwise."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanctlError(f"{option} takes comma-separated whole-number seeds such as 1,2,3, got {text!r}.") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise GanctlError(f"{option} takes comma-separated seeds of 0 or more such as 1,2,3, got {text!r}.")
    return seeds


def existing_file(path: str | Path, where: str, hint: str = "") -> Path:
    """The file `where` names (e.g. "--latents x.npy"), which must exist; `hint`: how to make one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GanctlError(f"{where}: no such file{hint}.")
    return path


# ------------------------------------------------------------------ ganctl eval's

SPLITS = ("train", "test")


def checked_scoring(names: Optional[list[str]], num: Optional[int], split: Optional[str],
                    nearest: Optional[int] = None) -> Optional[list[str]]:
    """The metric names asked for (None: the run's own), checked with --num, --split and --nearest (None: a
    command without it). --metrics none, only with --nearest K, is no metric: []."""
    at_least("--num", num, 2, " (FID and KID need two images)")
    if nearest is not None and nearest < 0:
        raise GanctlError(f"--nearest must be 0 (off) or more, got {nearest}.")
    if split is not None and split not in SPLITS:
        raise GanctlError(f"--split must be train or test, got {split!r}.")
    if names is None:
        return None
    from ganctl.config import check_metric_names  # (Hydra's config machinery: only where metric names are given)

    if nearest is not None and names == ["none"]:
        if not nearest:
            raise GanctlError("Nothing to do: --metrics none without --nearest K.")
        return []
    return check_metric_names(names)


def checked_folder(folder: str | Path, run: Optional[str | Path], dataset: Optional[str]) -> Path:
    """--images DIR, and the one thing it is scored against: a run's dataset or --dataset NAME."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanctlError(f"--images {folder} is not a directory of image files.")
    if (run is None) == (dataset is None):
        raise GanctlError("--images DIR is scored against a dataset: name it with --dataset NAME (e.g. mnist, "
                          "with --data-root for your own copy) or give a run, whose dataset and metric settings are used.")
    return folder


def checked_psis(psis: list[float]) -> list[float]:
    """--truncation-sweep's psi values, each from 0 to 1."""
    if not psis:
        raise GanctlError("--truncation-sweep takes comma-separated psi values, e.g. 1,0.9,0.8,0.7,0.5.")
    return [check_psi(psi) for psi in psis]

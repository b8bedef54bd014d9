"""Checks of the values a user types that need no torch: each command runs them on its arguments
before torch loads, so that a mistake is answered in a fraction of a second, and the torch-side code
that also takes these values from Python calls the same checks (one definition each)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from ganctl.errors import GanctlError


def at_least(option: str, value: Optional[int], least: int, why: str = "") -> None:
    """`option`'s value is `least` or more (None: not given, nothing to check)."""
    if value is not None and value < least:
        raise GanctlError(f"{option} must be at least {least}{why}, got {value}.")


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

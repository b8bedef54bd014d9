"""What every `ganctl sample` mode shares: G from the checkpoint (a `Sampler`), the classes --class
names, and where a picture goes when --out does not say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.sampling import Sampler


def chosen_classes(sampler: Sampler, classes: Optional[str]) -> Optional[list[int]]:
    """The class indices `--class` names (comma-separated names or indices; every class when it is
    not given), or None for an unconditional checkpoint without --class."""
    if not sampler.conditional:
        if classes is not None:
            raise GanctlError(
                f"--class {classes}: this checkpoint's generator is unconditional (trained with conditioning=none), so "
                "it has no classes to choose from. Sample without --class, or train a class-conditional GAN "
                "(e.g. conditioning=projection) on labelled data."
            )
        return None
    if classes is None:
        return list(range(len(sampler.classes)))
    names = [name.strip() for name in classes.split(",") if name.strip()]
    if not names:
        raise GanctlError(f"--class needs a class name or index (or several, comma-separated), got {classes!r}.")
    return list(dict.fromkeys(sampler.class_index(name) for name in names))


def folder_name(name: str) -> str:
    """A class name as one safe folder name (path separators and other awkward characters become _)."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip()
    return safe if safe.strip(".") else f"_{safe}"


def load_sampler(path: str | Path, device: str, ema: bool, truncation: float, use: str,
                 threshold: Optional[float] = None) -> tuple[Path, dict, Sampler]:
    psi = latent_space.check_psi(truncation)
    threshold = None if threshold is None else latent_space.check_threshold(threshold)
    ckpt_path, state = checkpoint.find(path, use=use)
    return ckpt_path, state, Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema, psi, threshold)


def truncation_suffix(psi: float, threshold: Optional[float]) -> str:
    """A default file name's note of the truncation: _psi0.7, _t0.5 (a threshold), or nothing."""
    if threshold is not None:
        return f"_t{threshold:g}"
    return "" if psi == 1 else f"_psi{psi:g}"


def default_picture(ckpt_path: Path, name: str) -> Path:
    return checkpoint.run_dir_of(ckpt_path) / "samples" / name


def picture_path(out: str | Path | None, ckpt_path: Path, name: str, example: str) -> Path:
    """Where a picture goes: --out, or <run>/samples/<name>; a directory is refused before any work."""
    path = Path(out) if out else default_picture(ckpt_path, name)
    if path.is_dir():
        raise GanctlError(f"--out {path} is a directory: give a file name such as {path / example}.")
    return path

"""Which device a command runs on: `auto`, or one the user named, checked to exist here."""

from __future__ import annotations

import torch

from ganctl.arguments import check_device
from ganctl.errors import GanctlError


def resolve_device(name: str, flag: str = "train.device=") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; an explicit device must exist. `flag` is how
    the user gave it (`train.device=`, or `--device ` for sample and eval), for the messages."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    given = f"{flag}{check_device(name, flag)}"
    device = torch.device(name)
    fix = f"Use {flag}auto or {flag}cpu."
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise GanctlError(f"{given}, but no such CUDA GPU is visible here. {fix}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GanctlError(f"{given}, but Apple's MPS backend is not available here. {fix}")
    return device

"""How `ganctl judge train` trains a judge (`ganctl.judge`), with no torch: `ganctl.judge_cli` shows and
checks its defaults before torch loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """How `ganctl judge train` trains a judge; stored in its card."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    width: int = 16
    feature_dim: int = 128
    seed: int = 0
    held_out_share: float = 0.1  # of the images, when the dataset has no test split

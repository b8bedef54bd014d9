"""Schedules: a training knob's value as a function of the real images seen, one mechanism for all.

R3GAN trains with every knob on a cosine (brownvc/R3GAN, training/training_loop.py,
`cosine_decay_with_warmup`): the learning rate, Adam's beta2, the penalties' gamma, the EMA's
half-life and the augmentation probability. Here any of them can follow one, set under
`train.schedules.<knob>` (values in conf/train.yaml's comments; e.g. experiment=cifar10_r3gan):

    train:
      schedules:
        lr: {base: 2.0e-4, final: 5.0e-5, images: 2.0e7}   # both networks' learning rate
        r1: {base: 0.05, final: 0.005, images: 2.0e7}      # loss.regularisers.r1's gamma (any unit's weight)

The knobs: `lr` (G's and D's), `beta2` (Adam's, both; beta1 kept), `ema_half_life_kimg` (G's EMA, a
half-life in thousands of images, replacing train.ema.decay), `ada_p` (ADA's p, with
train.ada.mode=fixed), and the name of any regulariser in loss.regularisers (its gamma, or its weight).

A value depends only on the images seen before the step, (step - 1) x the images a step draws, so a
resumed run follows its schedules exactly without storing anything. The GAN's step sets each knob at
the start of the step (the reference sets them from `cur_nimg` before its phases), and the run logs
them as `schedule/<knob>` (TensorBoard, curves.png).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import MISSING

from ganctl.errors import GanctlError

# The knobs every run has, and what each value must be (a regulariser's weight: 0 or more). A warm-up may
# start a learning rate at 0.
KNOBS: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda value: value > 0, "a learning rate above 0"),
    "beta2": (lambda value: 0 <= value < 1, "Adam's beta2, in [0, 1)"),
    "ema_half_life_kimg": (lambda value: value >= 0, "a half-life of 0 (G's EMA a copy of G) or more thousands of images"),
    "ada_p": (lambda value: 0 <= value <= 1, "a probability in [0, 1]"),
}
REGULARISER = (lambda value: value >= 0, "a weight of 0 or more")


@dataclass
class Schedule:
    """A cosine from `base` to `final` over `images` real images (then `final`), after an optional linear
    warm-up from `warmup_value` to `base` over the first `warmup_images` (the cosine runs from there to
    `images`): the reference's cosine_decay_with_warmup without its hold (never used by its presets)."""

    base: float = MISSING
    final: float = MISSING
    images: float = MISSING  # real images seen when the value reaches `final` (the reference's total_nimg)
    warmup_images: float = 0.0  # 0: no warm-up
    warmup_value: float = 0.0  # the value at 0 images, with a warm-up

    def __call__(self, images_seen: float) -> float:
        if images_seen >= self.images:
            return float(self.final)
        if images_seen < self.warmup_images:
            return self.warmup_value + (self.base - self.warmup_value) * images_seen / self.warmup_images
        progress = (images_seen - self.warmup_images) / (self.images - self.warmup_images)
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base + (1.0 - decay) * (self.final - self.base)

    @classmethod
    def from_node(cls, node: Any) -> "Schedule":
        """From a config node or dict (train.schedules.<knob>)."""
        return cls(**{key: float(node[key]) for key in cls.__dataclass_fields__ if key in node})

    @staticmethod
    def check(node: Any, knob: str, regularisers: list[str]) -> None:
        """One schedule's values: a known knob, a length, a warm-up inside it, every value the knob takes in range."""
        where = f"train.schedules.{knob}"
        fields = list(Schedule.__dataclass_fields__)
        if not isinstance(node, Mapping):
            raise GanctlError(f"{where} must be a schedule, {{base: ..., final: ..., images: ...}} (also warmup_images, "
                              f"warmup_value); got {node!r}.")
        for key, value in node.items():
            if key not in fields:
                match = difflib.get_close_matches(str(key), fields, n=1)
                raise GanctlError(f"Unknown key {where}.{key}: " + (f"did you mean {where}.{match[0]}?" if match else
                                  f"a schedule takes {', '.join(fields)}."))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GanctlError(f"{where}.{key} must be a number, got {value!r}.")
        missing = [key for key in ("base", "final", "images") if key not in node]
        if missing:
            raise GanctlError(f"{where} needs {', '.join(missing)}: a schedule is {{base: ..., final: ..., images: ...}}.")
        node = Schedule.from_node(node)
        if knob not in KNOBS and knob not in regularisers:
            units = f", and this loss's regularisers by their names in loss.regularisers: {', '.join(regularisers)}" if regularisers else ""
            raise GanctlError(f"{where}: no such knob; schedules are for {', '.join(KNOBS)}{units}.")
        if not node.images > 0:
            raise GanctlError(f"{where}.images must be positive (the real images seen when it reaches its final value), "
                              f"got {node.images}.")
        if not 0 <= node.warmup_images < node.images:
            raise GanctlError(f"{where}.warmup_images must be 0 or more and below its images ({node.images}), "
                              f"got {node.warmup_images}.")
        fits, meaning = KNOBS.get(knob, REGULARISER)
        values = {"base": node.base, "final": node.final, **({"warmup_value": node.warmup_value} if node.warmup_images else {})}
        for key, value in values.items():
            if not (fits(value) or (key == "warmup_value" and value == 0)):
                raise GanctlError(f"{where}.{key} must be {meaning}, got {value}.")

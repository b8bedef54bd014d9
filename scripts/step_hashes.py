"""Hashes of what 12 training steps leave behind, for a set of runs that touch every part of the step.

    python scripts/step_hashes.py                 # one line per run: its name and a hash per component
    python scripts/step_hashes.py --json out.json

A refactor of the training step must not change a trained number: run this before and after, on the
same machine, and compare. Each run trains 12 steps in this process through `ganctl.train.train`
(fp32, NCHW, one thread, seed 0, no evaluation, no curves), then hashes the checkpoint's networks,
G's EMA and both optimizers' states (tensors in key order, as bytes), and the rest of the GAN's
state (ADA, path length's running mean) as one more hash. Not a test: a different torch or CPU may
give different bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

TINY = ["train.steps=12", "train.batch_size=8", "train.seed=0", "train.device=cpu", "train.precision=fp32",
        "train.channels_last=false", "train.log_every=4", "train.sample_every=0", "train.ckpt_every=0",
        "train.num_samples=4", "train.curves=false"]
SMALL_DCGAN = ["model.generator.base_filters=8", "model.discriminator.base_filters=8", "model.generator.latent_dim=16"]
SMALL_STYLEGAN2 = [
    "model=stylegan2", "dataset.image_size=32", "model.generator.latent_dim=16", "model.generator.w_dim=16",
    "model.generator.mapping_layers=2", "model.generator.channel_base=256", "model.generator.channel_max=16",
    "model.discriminator.channel_base=256", "model.discriminator.channel_max=16", "model.discriminator.mapping_layers=2",
]
SMALL_BIGGAN = ["model=biggan", "model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=16",
                "model.generator.shared_dim=8", "dataset.image_size=32"]

RUNS: dict[str, list[str]] = {
    "default (R1, R2 every 4)": [*SMALL_DCGAN, "loss.r1_every=4", "loss.r2_every=4"],
    "wgangp": ["model=wgangp", "model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "wgan": ["model=wgan", "model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "mlp + DiffAugment translation": ["model=mlp", "train.augment=[translation]"],
    "bce_r1 + ADA fixed p 0.5": [*SMALL_DCGAN, "loss=bce_r1", "loss.r1_every=4", "train.ada.mode=fixed", "train.ada.p=0.5"],
    "stylegan2 (R1, path length)": [*SMALL_STYLEGAN2, "loss.r1_every=4", "loss.path_length_every=4"],
    "dcgan_small + acgan": ["model=dcgan_small", *SMALL_DCGAN, "conditioning=acgan"],
    "biggan + projection": [*SMALL_BIGGAN, "conditioning=projection"],
}


def digest(value: Any) -> str:
    """A hash of the tensors and numbers in a nested state (dict keys in sorted order)."""
    hasher = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            hasher.update(item.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(item, dict):
            for key in sorted(item, key=str):
                hasher.update(str(key).encode())
                feed(item[key])
        elif isinstance(item, (list, tuple)):
            for element in item:
                feed(element)
        else:
            hasher.update(repr(item).encode())

    feed(value)
    return hasher.hexdigest()[:16]


def trained_state(overrides: list[str]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from ganctl import checkpoint, config
    from ganctl.train import train

    try:  # the shorthands of the flat regulariser keys (loss.r1_every=...), as the command line expands them
        from ganctl.overrides import expand_shorthands
    except ImportError:  # a ganctl from before the regulariser units reads them directly
        def expand_shorthands(arguments: list[str]) -> list[str]:
            return arguments
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=expand_shorthands([*TINY, *overrides]), return_hydra_config=True)
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    config.check(cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, Path(run_dir), choices)
        return checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")


def hashes(state: dict[str, Any]) -> dict[str, str]:
    optimizer_states = {name: state[name]["state"] for name in ("optimizer_g", "optimizer_d")}
    regularisers = state.get("regularisers") or {}  # (before the units: the path lengths' mean alone, at the top)
    path_length_mean = state.get("path_length_mean", (regularisers.get("path_length") or {}).get("mean", torch.zeros(())))
    rest = {"augment": state.get("augment"), "path_length_mean": path_length_mean}
    return {
        "G": digest(state["generator"]), "D": digest(state["discriminator"]), "G_ema": digest(state["generator_ema"]),
        "optimizers": digest(optimizer_states), "rest": digest(rest),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the hashes to this file")
    parser.add_argument("--only", nargs="*", help="run only the runs whose names start with these")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and a ganctl that chooses its own count keeps it, whatever the shell says
    from ganctl.console import console

    console.quiet = True  # the runs' own progress and tables
    results = {}
    for name, overrides in RUNS.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        results[name] = hashes(trained_state(overrides))
        print(f"{name:32s} " + " ".join(f"{key}={value}" for key, value in results[name].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

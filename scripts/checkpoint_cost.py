"""What the checkpoint checksum costs, against what writing and reading the checkpoint cost anyway.

    python scripts/checkpoint_cost.py                   # the default run's checkpoint, ~20 MB and ~90 MB ones
    python scripts/checkpoint_cost.py --repeats 20 --dir /scratch/tmp

For each checkpoint (a real one: a 1-step run of the config, so the optimizers hold their state), the
median over --repeats of: serialising it (`torch.save` to memory); hashing those bytes with XXH3-128
(what `checkpoint.save` adds) and, for comparison, with SHA-256; writing them as `checkpoint.save`
does (temporary file, fsync, rename); all of `checkpoint.save`; and on the reading side `torch.load`
alone against `checkpoint.load` (read, verify the checksum, unpickle, check the layout). The figures
depend on the disk under --dir and the machine's load; docs/benchmarks.md records them. Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import xxhash

CHECKPOINTS = {
    "default run (dcgan_r1, 28x28 digits)": [],
    "~20 MB (model=dcgan, 76 base filters, 28x28)": ["model=dcgan", "model.generator.base_filters=76",
                                                     "model.discriminator.base_filters=76"],
    "DCGAN 64x64 (model=dcgan dataset.image_size=64)": ["model=dcgan", "dataset.image_size=64"],
}


def real_state(overrides: list[str], run_dir: Path) -> dict:
    """The checkpoint a 1-step run of ganctl's config (with `overrides`) writes, loaded back."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from ganctl import checkpoint, config
    from ganctl.train import train

    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "train.steps=1", "train.sample_every=0",
                                                     "train.device=cpu"], return_hydra_config=True)
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    train(cfg, run_dir, choices)
    return checkpoint.load(checkpoint.last_path(run_dir))


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def verify(checkpoint, path: Path) -> bool:
    with open(path, "rb") as file:
        return checkpoint.verify_checksum(path, file)


def measure(state: dict, folder: Path, repeats: int) -> dict[str, float]:
    from ganctl import checkpoint
    from ganctl.files import write_atomically

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = folder / "checkpoints" / "last.pt"
    checkpoint.save(state, path)

    def write() -> None:
        write_atomically(folder / "plain.pt", lambda f: f.write(data), durable=True)

    return {
        "megabytes": len(data) / 1e6,
        "serialise": median_seconds(lambda: torch.save(state, io.BytesIO()), repeats),
        "xxh3": median_seconds(lambda: xxhash.xxh3_128(data).digest(), repeats),
        "sha256": median_seconds(lambda: hashlib.sha256(data).digest(), repeats),
        "write": median_seconds(write, repeats),
        "save": median_seconds(lambda: checkpoint.save(state, path), repeats),
        "torch.load": median_seconds(lambda: torch.load(path, map_location="cpu", weights_only=True), repeats),
        "verify": median_seconds(lambda: verify(checkpoint, path), repeats),
        "checkpoint.load": median_seconds(lambda: checkpoint.load(path), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for name, overrides in CHECKPOINTS.items():
            state = real_state(overrides, Path(folder) / "run" / str(len(rows)))
            rows.append((name, measure(state, Path(folder) / "measure" / str(len(rows)), args.repeats)))
    print(f"torch {torch.__version__}, median of {args.repeats}, milliseconds")
    print("| checkpoint | MB | torch.save to memory | XXH3-128 | (SHA-256) | write + fsync + rename | checkpoint.save | "
          "XXH3 / save | (SHA-256 / save) | torch.load | checkpoint.load | of which read + verify |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in rows:
        ms = {key: value * 1000 for key, value in m.items() if key != "megabytes"}
        with_sha = m["save"] - m["xxh3"] + m["sha256"]  # the same save with SHA-256 instead
        print(f"| {name} | {m['megabytes']:.1f} | {ms['serialise']:.1f} | {ms['xxh3']:.1f} | {ms['sha256']:.1f} | "
              f"{ms['write']:.1f} | {ms['save']:.1f} | {m['xxh3'] / m['save']:.0%} | {m['sha256'] / with_sha:.0%} | "
              f"{ms['torch.load']:.1f} | {ms['checkpoint.load']:.1f} | {ms['verify']:.1f} |")


if __name__ == "__main__":
    main()

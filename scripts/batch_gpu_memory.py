"""Peak memory and images/s of one training step in micro-batches (train.batch_gpu), by micro-batch size.

    python scripts/batch_gpu_memory.py                          # model=dcgan 64x64x1, batch 256, K = 256, 64, 16
    python scripts/batch_gpu_memory.py --micro-batches 256 32 --steps 5 --device cuda

Each K runs in a fresh subprocess: it builds the GAN as a run does (`GAN.from_config` on the composed
config, the bundled digits at --image-size), takes the memory it holds then as its baseline, trains one
warm-up step and --steps timed steps, and reports the peak above the baseline and the timed steps'
images/s. On a CPU the peak is the process's peak resident set (`resource.getrusage(RUSAGE_SELF).ru_maxrss`)
minus its resident set after the build (/proc/self/statm): what the steps added, the allocator's
cached pages included. On CUDA it is torch.cuda.max_memory_allocated() minus memory_allocated() after
the build (tensors only, the caching allocator's slack left out). Prints a markdown table. Not a test:
timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def resident_bytes() -> int:
    """This process's resident set now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def measure(args: argparse.Namespace, batch_gpu: int) -> dict:
    """One K in this process: peak memory above the built GAN's, and images/s of the timed steps."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from ganctl import config
    from ganctl import data as datasets
    from ganctl.config import config_dir
    from ganctl.gan import GAN
    from ganctl.train import seed_everything

    overrides = [f"model={args.model}", f"dataset.image_size={args.image_size}", f"train.batch_size={args.batch_size}",
                 f"train.batch_gpu={batch_gpu}", f"train.device={args.device}", f"train.precision={args.precision}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        del cfg["hydra"]
    config.check(cfg)
    device = torch.device(args.device)
    seed_everything(0)
    images = datasets.build(cfg.dataset, device)
    gan = GAN.from_config(cfg, images.channels, images.image_size, device)
    batches = datasets.endless(images, args.batch_size)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = resident_bytes()
    gan.step(batches, 1)  # warm-up: the optimizers' state, the allocator's first growth
    started = time.perf_counter()
    for step in range(2, args.steps + 2):
        statistics = gan.step(batches, step)
    float(statistics["loss/d"])  # (waits for the device)
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # (Linux: KiB)
    return {"batch_gpu": batch_gpu, "peak_bytes": peak - baseline, "images_per_second": args.steps * args.batch_size / seconds,
            "threads": torch.get_num_threads(), "memory": "torch.cuda.max_memory_allocated" if cuda else "ru_maxrss - RSS after build"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[256, 64, 16])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per K, after one warm-up step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # (the subprocess's K)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args, args.one)))
        return
    rows = []
    for batch_gpu in args.micro_batches:
        command = [sys.executable, __file__, "--one", str(batch_gpu), *sys.argv[1:]]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            sys.exit(f"K={batch_gpu} failed:\n{result.stderr[-3000:]}")
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"model={args.model}, {args.image_size}x{args.image_size}, train.batch_size={args.batch_size}, "
          f"{args.precision} on {args.device}, {args.steps} timed steps per K ({rows[0]['threads']} torch threads); "
          f"peak memory: {rows[0]['memory']}\n")
    print("| train.batch_gpu | micro-batches per update | peak memory above the built GAN | images/s |")
    print("|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_gpu']} | {args.batch_size // row['batch_gpu']} | {row['peak_bytes'] / 2**20:,.0f} MiB "
              f"| {row['images_per_second']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

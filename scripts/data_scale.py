"""Data at scale: can a folder of JPEGs feed training, held in memory or streamed?

    python scripts/data_scale.py /tmp/data_scale                       # 20,000 JPEGs at 128 and 256 px
    python scripts/data_scale.py /tmp/data_scale --count 2000 --sizes 128
    python scripts/data_scale.py /tmp/data_scale --compare /work/main  # peak memory of another checkout too

For each size it writes `--count` synthetic JPEGs into DIR/<size>px (structured pictures: a gradient,
a few filled shapes and grain, PIL quality 90; kept for the next run, never part of the repository), then
measures, on this machine:

- in memory: ganctl's `data.build` of `dataset=folder` in a fresh process, with an empty cache (decode
  and write the cache) and again (a cache hit): seconds, images/s, and the process's peak resident
  memory (Linux's VmHWM: after the imports, and its growth over them; DataLoader workers are processes
  of their own, not counted). `--compare PATH` runs the same on another ganctl checkout (e.g. main);
- streamed: ganctl's real streaming source (`dataset.in_memory=false`, `StreamingImages.sample`,
  with the DataLoader workers ganctl uses, `data.loader_workers`): images/s decoded, after a warm-up;
- the step: images/s `GAN.step` consumes for `--model` (default `dcgan`, its default widths) at that
  size, batch `--batch-size`, fed from memory (the step alone), and fed by the streaming source (the
  two sharing the CPU, as in a streamed run), with torch's threads as ganctl's training sets them;
- on a GPU (when CUDA is available): torchvision.io.decode_jpeg(device="cuda") images/s on batches of
  the same files, and the step on the GPU; here without one, those rows say "no GPU".

Prints a markdown table (and writes it with the raw figures to --json). Not a test: timings depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
import torch
from ganctl import config, data
from ganctl.config import config_dir
from ganctl.overrides import expand_shorthands

def peak():  # the process's peak resident memory since the last reset (Linux's VmHWM)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

root, size = sys.argv[1], int(sys.argv[2])
with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
    cfg = compose(config_name="train", overrides=expand_shorthands(
        ["dataset=folder", f"dataset.root={root}", f"dataset.image_size={size}"]))
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak starts again from what the process holds now: after the imports
before = peak()
start = time.perf_counter()
source = data.build(cfg.dataset, torch.device("cpu"))
seconds = time.perf_counter() - start
print("PROBE " + json.dumps({"seconds": seconds, "images": len(source), "in_memory": hasattr(source, "images"),
                             "baseline": before, "peak": peak()}))
"""


# ----------------------------------------------------------------------------- the synthetic folder


def picture(index: int, size: int) -> Image.Image:
    """A structured picture: a two-colour gradient at a random angle, 3 to 6 filled shapes, and grain."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * x + np.sin(angle) * y + 1.5) / 3  # (size, size) in [0, 1]
    low, high = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    pixels = (low + (high - low) * t[..., None]).astype(np.uint8)  # (size, size, 3)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        x1, y1 = (int(v) for v in np.array([x0, y0]) + rng.integers(size // 8, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    grain = rng.normal(0, 6, (size, size, 1))  # a photograph's grain: JPEGs of about a photograph's size
    return Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))


def write_one(job: tuple[Path, int, int]) -> None:
    path, index, size = job
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp")
        picture(index, size).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)


def synthetic_folder(directory: Path, count: int, size: int) -> float:
    """DIR/<size>px/img<N>.jpg, `count` of them (those already there kept); the seconds it took."""
    folder = directory / f"{size}px"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(write_one, [(folder / f"img{i:06d}.jpg", i, size) for i in range(count)], chunksize=256)
    extra = sorted(folder.glob("img*.jpg"))[count:]  # from an earlier, larger --count
    for path in extra:
        path.unlink()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- in memory: a fresh process


def probe(code: Path, folder: Path, size: int, cache: Path) -> dict[str, Any]:
    """ganctl (the checkout at `code`) building the folder in a process of its own, with this cache folder."""
    env = {**os.environ, "PYTHONPATH": str(code), "GANCTL_CACHE_DIR": str(cache), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder), str(size)], capture_output=True, text=True, env=env,
                          cwd=code)  # (-c puts the working directory first on sys.path: it must be the checkout measured)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    if done.returncode or not lines:
        raise SystemExit(f"the probe failed ({code}):\n{done.stderr[-3000:]}")
    said = [line for line in done.stderr.splitlines() if line.startswith(("Holding", "Streaming", "Caching", "warning"))]
    return {**json.loads(lines[-1][6:]), "said": said}


def in_memory(code: Path, folder: Path, size: int, directory: Path, tag: str) -> dict[str, Any]:
    import shutil

    cache = directory / f"cache-{tag}-{size}"
    shutil.rmtree(cache, ignore_errors=True)
    miss = probe(code, folder, size, cache)
    written = sum(path.stat().st_size for path in cache.glob("*.npz")) or None
    hit = probe(code, folder, size, cache)
    shutil.rmtree(cache, ignore_errors=True)
    return {"miss": miss, "hit": hit, "cache_bytes": written}


# ----------------------------------------------------------------------------- streaming and the step


def folder_config(folder: Path, size: int, args: argparse.Namespace, device: str, *more: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from ganctl import config
    from ganctl.config import config_dir
    from ganctl.overrides import expand_shorthands

    overrides = [f"model={args.model}", "dataset=folder", f"dataset.root={folder}", f"dataset.image_size={size}",
                 f"train.batch_size={args.batch_size}", f"train.device={device}", *args.override, *more]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=expand_shorthands(overrides), return_hydra_config=True)
    with open_dict(cfg):
        del cfg["hydra"]
    config.check(cfg)
    return cfg


def streamed_rate(source, batch_size: int, batches: int) -> float:
    """Images/s ganctl's streaming source gives, after two warm-up batches (the workers' start)."""
    for _ in range(2):
        source.sample(batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        source.sample(batch_size)
    return batches * batch_size / (time.perf_counter() - start)


def step_rate(gan, source, batch_size: int, steps: int, device) -> float:
    """Images/s GAN.step consumes drawing its batches from `source`, after one warm-up step."""
    import torch

    from ganctl import data

    batches = data.endless(source, batch_size)
    gan.step(batches, 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(2, steps + 2):
        gan.step(batches, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def training_rates(folder: Path, size: int, args: argparse.Namespace, device_name: str) -> dict[str, Any]:
    """The streaming source alone, the step fed from memory, and the step fed by the streaming source."""
    import torch

    from ganctl import data, speed, threads
    from ganctl.gan import GAN
    from ganctl.train import seed_everything

    device = torch.device(device_name)
    cfg = folder_config(folder, size, args, device_name, "dataset.in_memory=false")
    with threads.applied(None) as choice:
        seed_everything(0)
        stream = data.build(cfg.dataset, device)
        workers = data.loader_workers(len(stream))
        stream_rate = streamed_rate(stream, args.batch_size, args.stream_batches)
        gan = GAN.from_config(cfg, stream.channels, stream.image_size, device)
        resident = data.InMemoryImages(torch.randint(0, 256, (4 * args.batch_size, 3, size, size), dtype=torch.uint8), device)
        memory_fed = step_rate(gan, resident, args.batch_size, args.steps, device)
        stream_fed = step_rate(gan, stream, args.batch_size, args.steps, device)
    return {"streamed": stream_rate, "workers": workers, "step_from_memory": memory_fed, "step_from_stream": stream_fed,
            "threads": choice.describe(), "precision": speed.resolve_precision(cfg.train.precision, device)}


def gpu_decode_rate(folder: Path, batch_size: int, batches: int) -> Optional[float]:
    """torchvision.io.decode_jpeg on CUDA, in batches of the files' bytes (read beforehand): images/s; None without a GPU."""
    import torch
    from torchvision.io import decode_jpeg, read_file

    if not torch.cuda.is_available():
        return None
    files = sorted(folder.glob("img*.jpg"))[: batch_size * (batches + 2)]
    encoded = [read_file(str(path)) for path in files]
    groups = [encoded[i : i + batch_size] for i in range(0, len(encoded), batch_size)]
    for group in groups[:2]:
        decode_jpeg(group, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for group in groups[2:]:
        decode_jpeg(group, device="cuda")
    torch.cuda.synchronize()
    return sum(len(group) for group in groups[2:]) / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- the report


def mib(nbytes: Optional[float]) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:,.0f} MiB"


def table(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> str:
    sizes = sorted(results)
    rows = [f"| | {' | '.join(f'{size} px' for size in sizes)} |", f"|---|{'---|' * len(sizes)}"]

    def row(label: str, cell) -> None:
        rows.append(f"| {label} | {' | '.join(cell(results[size]) for size in sizes)} |")

    row("images (decoded bytes)", lambda r: f"{r['count']:,} ({mib(r['count'] * 3 * r['size'] ** 2)})")
    row("JPEG files on disk", lambda r: mib(r["disk_bytes"]))
    for tag in [""] + [f"{Path(path).name}: " for path in args.compare]:
        key = tag or "this branch: "
        row(f"{key}in memory, decode + cache write: s (images/s)",
            lambda r, t=key: f"{r['memory'][t]['miss']['seconds']:.1f} ({r['count'] / r['memory'][t]['miss']['seconds']:,.0f})")
        row(f"{key}peak RSS, decode (over the imports)",
            lambda r, t=key: f"{mib(r['memory'][t]['miss']['peak'])} (+{mib(r['memory'][t]['miss']['peak'] - r['memory'][t]['miss']['baseline'])})")
        row(f"{key}cache hit: s", lambda r, t=key: f"{r['memory'][t]['hit']['seconds']:.1f}")
        row(f"{key}peak RSS, cache hit (over the imports)",
            lambda r, t=key: f"{mib(r['memory'][t]['hit']['peak'])} (+{mib(r['memory'][t]['hit']['peak'] - r['memory'][t]['hit']['baseline'])})")
        row(f"{key}cache file", lambda r, t=key: mib(r["memory"][t]["cache_bytes"]))
    row("streamed (ganctl's source): images/s", lambda r: f"{r['cpu']['streamed']:,.0f} ({r['cpu']['workers']} workers)")
    row(f"step, {args.model} batch {args.batch_size}, fed from memory: images/s", lambda r: f"{r['cpu']['step_from_memory']:,.1f}")
    row("step fed by the stream: images/s", lambda r: f"{r['cpu']['step_from_stream']:,.1f}")
    row("GPU: decode_jpeg(device='cuda'): images/s",
        lambda r: "no GPU" if r["gpu_decode"] is None else f"{r['gpu_decode']:,.0f}")
    row("GPU: streamed / step from memory / step fed by the stream: images/s",
        lambda r: "no GPU" if r["gpu"] is None else
        f"{r['gpu']['streamed']:,.0f} / {r['gpu']['step_from_memory']:,.1f} / {r['gpu']['step_from_stream']:,.1f}")
    return "\n".join(rows)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="where the synthetic JPEGs are written (and kept): not the repository")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--model", default="dcgan", help="a conf/model option that builds at these sizes (default: dcgan)")
    parser.add_argument("--override", nargs="*", default=[], help="more config overrides for the step, e.g. model.generator.width=64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps, after one warm-up step")
    parser.add_argument("--stream-batches", type=int, default=40, help="timed streamed batches, after two warm-up batches")
    parser.add_argument("--compare", nargs="*", default=[], help="other ganctl checkouts whose in-memory path is measured too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.count < args.batch_size * 4:
        raise SystemExit(f"--count must be at least 4 batches ({args.batch_size * 4}) for the streaming figures")
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("the peak-memory figures need Linux's /proc/self/clear_refs")
    import torch

    results: dict[int, dict[str, Any]] = {}
    for size in args.sizes:
        folder = args.directory / f"{size}px"
        generated = synthetic_folder(args.directory, args.count, size)
        print(f"{size} px: {args.count:,} JPEGs in {folder} ({generated:.0f} s to write those that were missing)", flush=True)
        result: dict[str, Any] = {"size": size, "count": args.count, "generate_s": generated,
                                  "disk_bytes": sum(path.stat().st_size for path in folder.glob("img*.jpg"))}
        result["memory"] = {
            f"{Path(code).name}: " if code != ROOT else "this branch: ": in_memory(Path(code), folder, size, args.directory,
                                                                                 Path(code).name)
            for code in [ROOT, *map(Path, args.compare)]}
        for tag, figures in result["memory"].items():
            print(f"  {tag}" + "; ".join(figures["miss"]["said"] + figures["hit"]["said"][:1]), flush=True)
        result["cpu"] = training_rates(folder, size, args, "cpu")
        print(f"  cpu: {result['cpu']}", flush=True)
        result["gpu_decode"] = gpu_decode_rate(folder, args.batch_size, args.stream_batches)
        result["gpu"] = training_rates(folder, size, args, "cuda") if torch.cuda.is_available() else None
        results[size] = result
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    heading = (f"{cpu_name()}, {os.cpu_count()} CPUs; {gpu}; torch {torch.__version__}; "
               f"{args.count:,} JPEGs per size; threads {results[args.sizes[0]]['cpu']['threads']}, "
               f"precision {results[args.sizes[0]]['cpu']['precision']}")
    report = f"{heading}\n\n{table(results, args)}"
    print(report)
    if args.json:
        args.json.write_text(json.dumps({"heading": heading, "results": results, "table": report}, indent=1, default=str))


if __name__ == "__main__":
    main()

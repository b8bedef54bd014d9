"""The first run on a GPU, in one script: every CUDA path ganctl has, timed and checked, in about 8 minutes
on one H100, written to one JSON file and the markdown table for docs/benchmarks.md.

    python scripts/gpu_check.py --out gpu_check                # on the GPU machine
    python scripts/gpu_check.py --device cpu --quick --out gc  # what the test suite runs (a few steps)

Each check runs on its own and records its figures or its error; a failing check never stops the
others (the JSON says which failed and why, and the exit code is 1 when any did):

- **families**: each model family a few steps at each precision (bf16 and fp16 on a GPU), eager and
  compiled (train.compile=true), with the step time and the peak device memory;
- **resume**: N steps straight against N/2 + resume on the device, bit for bit;
- **ddp**: two processes on the one device through torchrun (NCCL on a GPU, gloo on a CPU), their
  weights identical at the end;
- **throughput**: `scripts/bench.py`'s DCGAN 64x64 against pytorch/examples' loop, side by side (the
  target on a GPU: at least 5x the reference; the goal: 50,000 images/s in bf16 at batch 256);
- **gradient_penalty**: the WGAN-GP generator cycle with the penalty against without it;
- **default**: the default run's (R1 and R2, RpGAN) images/s;
- **read_side**: `ganctl sample` and `ganctl eval` (pixels as features: no Inception download) on the device.

--quick shrinks every check to tiny shapes and few steps (the suite's CPU run: it cannot rot).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {  # each model family at a size that trains in a few seconds a step on a GPU (narrowed with --quick)
    "mlp": ["model=mlp"],
    "conv": ["model=conv"],
    "dcgan": ["model=dcgan", "dataset.image_size=64"],
    "dcgan_r1": ["model=dcgan_r1"],
    "sngan": ["model=sngan", "dataset.image_size=32"],
    "biggan": ["model=biggan", "dataset.image_size=32", "conditioning=projection"],
    "stylegan2": ["model=stylegan2", "dataset.image_size=32"],
    "wgangp": ["model=wgangp"],
}
NARROW = {  # --quick: the suite's tiny networks
    "mlp": ["model.generator.hidden=[32]", "model.discriminator.hidden=[32]"],
    "conv": ["model.generator.filters=[16,8,8]", "model.discriminator.filters=[8,8,16,16]"],
    "dcgan": ["model.generator.base_filters=8", "model.discriminator.base_filters=8", "dataset.image_size=32"],
    "dcgan_r1": ["model.generator.base_filters=8", "model.discriminator.base_filters=8"],
    "sngan": ["model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16"],
    "biggan": ["model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=12",
               "model.generator.shared_dim=8"],
    "stylegan2": ["model.generator.latent_dim=16", "model.generator.w_dim=16", "model.generator.mapping_layers=1",
                  "model.generator.channel_base=128", "model.generator.channel_max=8", "model.discriminator.channel_base=128",
                  "model.discriminator.channel_max=8"],
    "wgangp": ["model.generator.base_filters=8", "model.discriminator.base_filters=8", "loss.critic_steps=2"],
}


def compose(*overrides: str):
    """The config and choices `ganctl train <overrides>` runs with (shorthands expanded), checked."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from omegaconf import open_dict

    from ganctl import config
    from ganctl.overrides import expand_shorthands

    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = hydra_compose(config_name="train", overrides=expand_shorthands(list(overrides)), return_hydra_config=True)
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    config.check(cfg)
    return cfg, choices


def train(run_dir: Path, *overrides: str, resume: dict | None = None):
    from ganctl import config
    from ganctl.train import train as train_run

    cfg, choices = compose(*overrides)
    if resume is not None:
        from ganctl.overrides import expand_shorthands

        cfg = config.resumed_config(resume["config"], resume["choices"], cfg, expand_shorthands(list(overrides)), choices)
        choices = resume["choices"]
    return train_run(cfg, run_dir, choices, resume=resume)


def quiet_run(device: str, steps: int) -> list[str]:
    """A run of `steps` steps on `device` that writes only its checkpoint and summary."""
    return [f"train.device={device}", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=0",
            "train.num_samples=4", "train.curves=false", f"train.steps={steps}"]


def peak_memory(device: torch.device) -> float | None:
    """Peak device memory since the last reset, in MiB (a GPU's; None on a CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def precisions(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    from ganctl.speed import cpu_has_native_bf16

    return ["bf16"] if cpu_has_native_bf16() else ["fp32"]  # (fp16 on a CPU is emulated: not worth the minutes)


# --------------------------------------------------------------------------- the checks


def families(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    device = torch.device(args.device)
    steps = 2 if args.quick else 20
    batch = 8 if args.quick else 64
    names = ["mlp", "dcgan_r1"] if args.quick else list(FAMILIES)
    results = {}
    for name in names:
        for precision in precisions(device):
            for compiled in ([False] if args.quick else [False, True]):
                key = f"{name} {precision}{' compiled' if compiled else ''}"
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                started = time.perf_counter()
                result = train(work / key.replace(" ", "_"), *FAMILIES[name], *(NARROW[name] if args.quick else []),
                               *quiet_run(args.device, steps), f"train.batch_size={batch}", f"train.precision={precision}",
                               f"train.compile={str(compiled).lower()}")
                losses = result.summary["losses"]
                results[key] = {"seconds": round(time.perf_counter() - started, 2),
                                "images_per_second": round(result.summary["images_per_second"], 1),
                                "finite": all(value is not None and abs(value) < float("inf") for value in losses.values()),
                                "peak_memory_mib": peak_memory(device)}
    failed = [key for key, value in results.items() if not value["finite"]]
    if failed:
        raise RuntimeError(f"non-finite losses: {', '.join(failed)}")
    return results


def resume(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from ganctl import checkpoint

    steps = 4  # R1 and R2 due on both sides of the break
    base = [*FAMILIES["dcgan_r1"], *NARROW["dcgan_r1"], "train.batch_size=8", "loss.r1_every=2", "loss.r2_every=2",
            f"train.precision={precisions(torch.device(args.device))[0]}"]
    train(work / "straight", *base, *quiet_run(args.device, steps))
    train(work / "halves", *base, *quiet_run(args.device, steps // 2))
    state = checkpoint.load(work / "halves" / "checkpoints" / "last.pt")
    train(work / "halves", *base, *quiet_run(args.device, steps), resume=state)
    straight, resumed = (checkpoint.load(work / name / "checkpoints" / "last.pt") for name in ("straight", "halves"))
    keys = ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d")
    torch.testing.assert_close({k: straight[k] for k in keys}, {k: resumed[k] for k in keys}, rtol=0, atol=0)
    return {"steps": steps, "bit_for_bit": True}


def ddp(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    backend = "nccl" if args.device.startswith("cuda") else "gloo"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ganctl", "train",
               *FAMILIES["wgangp"], *NARROW["wgangp"], *quiet_run(args.device, 4), "train.batch_size=8",
               f"train.ddp_backend={backend}", f"hydra.run.dir={work / 'ddp'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=work)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    ranks = json.loads((work / "ddp" / "summary.json").read_text())["ranks"]
    if not ranks.get("weights_agree"):
        raise RuntimeError(f"the ranks' weights differ: {ranks}")
    return {"backend": backend, **ranks}


def bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("ganctl_bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bench = bench_module()
    batch = 8 if args.quick else 256
    options = argparse.Namespace(model="dcgan", loss=None, optimizer="adam", device=args.device, image_size=32 if args.quick else 64,
                                 batch_size=batch, interval=1 if args.quick else 10, repeats=1 if args.quick else 3,
                                 workers=2, data_root=None, override=[])
    results = {}
    for precision in precisions(torch.device(args.device)):
        rates = bench.ganctl_images_per_second(options, work / f"bench_{precision}", extra=[f"train.precision={precision}"])
        results[f"ganctl {precision}"] = round(sum(rates) / len(rates), 1)
    if not args.quick:  # (the reference loop is 64x64 only)
        rates = bench.reference_images_per_second(options)
        results["reference fp32"] = round(sum(rates) / len(rates), 1)
        results["best vs reference"] = round(max(v for k, v in results.items() if k.startswith("ganctl")) / results["reference fp32"], 2)
    results["batch"] = batch
    return results


def gradient_penalty(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    steps = 2 if args.quick else 10
    common = [*FAMILIES["wgangp"], *(NARROW["wgangp"] if args.quick else []), *quiet_run(args.device, steps),
              f"train.batch_size={8 if args.quick else 64}", f"train.precision={precisions(torch.device(args.device))[0]}"]
    with_penalty = train(work / "gp", *common).summary["images_per_second"]
    without = train(work / "no_gp", *common, "loss.gradient_penalty=0").summary["images_per_second"]
    return {"with_penalty": round(with_penalty, 1), "without": round(without, 1), "cost": round(without / with_penalty, 2)}


def default(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    steps = 4 if args.quick else 400
    result = train(work / "default", *(NARROW["dcgan_r1"] if args.quick else []), *quiet_run(args.device, steps),
                   *(["train.batch_size=8"] if args.quick else []))
    return {"steps": steps, "images_per_second": round(result.summary["images_per_second"], 1), "device": result.summary["device"]}


def read_side(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from ganctl.cli import main as ganctl

    run_dir = work / "read_side"
    train(run_dir, *FAMILIES["dcgan_r1"], *NARROW["dcgan_r1"], *quiet_run(args.device, 2), "train.batch_size=8",
          "+metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.num_real=200")
    started = time.perf_counter()
    if ganctl(["sample", str(run_dir), "--num", "64", "--device", args.device, "--out", str(work / "grid.png")]):
        raise RuntimeError("ganctl sample failed")
    sampled = time.perf_counter() - started
    started = time.perf_counter()
    if ganctl(["eval", str(run_dir), "--metrics", "fid", "--num", "200", "--device", args.device]):
        raise RuntimeError("ganctl eval failed")
    return {"sample_seconds": round(sampled, 2), "eval_seconds": round(time.perf_counter() - started, 2)}


CHECKS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "families": families, "resume": resume, "ddp": ddp, "throughput": throughput,
    "gradient_penalty": gradient_penalty, "default": default, "read_side": read_side,
}


def markdown(record: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md: one row per check, its figures or its error."""
    lines = [f"{record['device_name']}, torch {record['versions']['torch']}, {record['date']}"
             f"{' (--quick)' if record['quick'] else ''}:", "", "| check | result | seconds |", "|---|---|---:|"]
    for name, result in record["checks"].items():
        shown = result["error"] if "error" in result else "; ".join(
            f"{key} {value}" if not isinstance(value, dict) else f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items())
            for key, value in result["figures"].items())
        lines.append(f"| {name} | {'FAILED: ' if 'error' in result else ''}{shown} | {result['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the GPU check) | cpu (the suite's)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few steps: minutes on a CPU")
    parser.add_argument("--only", nargs="*", choices=list(CHECKS), help="run these checks only")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder for gpu_check.json and gpu_check.md")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on the GPU machine, or pass --device cpu --quick", file=sys.stderr)
        return 2
    from ganctl.console import console

    console.quiet = True  # the runs' own progress and tables
    record: dict[str, Any] = {
        "device": args.device, "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M"),
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda},
        "checks": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check") as tmp:
        for name in args.only or CHECKS:
            work = Path(tmp) / name
            work.mkdir()
            started = time.perf_counter()
            try:
                result: dict[str, Any] = {"figures": CHECKS[name](args, work)}
            except Exception as error:  # a check that fails is recorded, and the others still run
                result = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}",
                          "traceback": traceback.format_exc()[-3000:]}
            result["seconds"] = round(time.perf_counter() - started, 1)
            record["checks"][name] = result
            print(f"{name}: {'FAILED ' + result['error'] if 'error' in result else 'ok'} ({result['seconds']} s)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(record))
    print(markdown(record))
    return 1 if any("error" in result for result in record["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

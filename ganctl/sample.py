"""`ganctl sample`: rebuild G from a checkpoint alone and write a grid and, optionally, image files.
torch loads inside `sample`, after the arguments are parsed: `ganctl sample --help` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ganctl.console import console
from ganctl.errors import GanctlError


def sample(
    path: str | Path,
    num: int = 64,
    nrow: int = 8,
    seed: int = 0,
    out: str | Path | None = None,
    images_dir: str | Path | None = None,
    device: str = "auto",
    ema: bool = True,
) -> Path:
    if num < 1:
        raise GanctlError(f"--num must be at least 1, got {num}.")
    if nrow < 1:
        raise GanctlError(f"--nrow must be at least 1, got {nrow}.")
    import torch
    from torchvision.transforms.v2.functional import to_pil_image
    from torchvision.utils import save_image

    from ganctl import checkpoint
    from ganctl.device import resolve_device
    from ganctl.gan import Sampler

    ckpt_path, state = checkpoint.find(path, use="ganctl sample {}")
    # Named by what it holds, so that asking for 1,000 samples never replaces a run's 64-sample grid.
    default = f"sample_step{state['step']:07d}_seed{seed}_num{num}.png"
    out = Path(out) if out else checkpoint.run_dir_of(ckpt_path) / "samples" / default
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / 'grid.png'}.")
    sampler = Sampler.from_checkpoint(state, resolve_device(device, "--device "), ema)
    images = sampler(sampler.latents(num, seed))  # (num, C, H, W) in [-1, 1], on the CPU
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images, out, nrow=nrow, normalize=True, value_range=(-1, 1))
        if images_dir:
            images_dir = Path(images_dir)
            images_dir.mkdir(parents=True, exist_ok=True)
            # [-1, 1] to bytes as save_image does; one channel stays one (a grayscale PNG), three are RGB.
            pixels = ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (num, C, H, W)
            for i, image in enumerate(pixels):
                to_pil_image(image).save(images_dir / f"{i:04d}.png")
    except OSError as error:
        raise GanctlError(f"Cannot write the samples: {error}") from error
    console.print(f"Wrote a grid of {num} samples from step {state['step']} to {out}")
    if images_dir:
        console.print(f"Wrote {num} images to {images_dir}/0000.png ... {num - 1:04d}.png")
    return out


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl sample", description="Write samples from a ganctl checkpoint.")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its checkpoints/last.pt)")
    parser.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    parser.add_argument("--out", help="grid file (default <run>/samples/sample_step<N>_seed<S>_num<NUM>.png)")
    parser.add_argument("--images-dir", help="also write each sample as <dir>/0000.png, 0001.png, ...")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw generator, not its EMA")
    options = parser.parse_args(args)
    sample(options.checkpoint, options.num, options.nrow, options.seed, options.out, options.images_dir, options.device, options.ema)
    return 0

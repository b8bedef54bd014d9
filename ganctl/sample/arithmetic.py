"""`ganctl sample RUN --add 1,2,3 --subtract 4,5,6 --add 7,8,9`: latent arithmetic (DCGAN paper, section
6.3) on the mean latents of seeds, the result's latent written beside its picture for --latents."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision.utils import save_image

from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.errors import GanctlError
from ganctl.files import image_format, write_atomically
from ganctl.sample.shared import chosen_classes, load_sampler, picture_path


def latent_arithmetic(
    path: str | Path, terms: list[tuple[int, list[int]]], out: str | Path | None = None, classes: Optional[str] = None,
    truncation: float = 1.0, device: str = "auto", ema: bool = True, threshold: Optional[float] = None,
) -> Path:
    """Latent arithmetic (DCGAN paper, section 6.3): each term (sign, seeds) is the mean latent of its
    seeds' latents; the result is their signed sum. Writes a row [term, term, ..., result] (a row per
    class for a conditional G) and the result's latent as <out>.npy (render it again with --latents)."""
    if not terms:
        raise GanctlError("Latent arithmetic needs --add SEEDS (and usually --subtract SEEDS).")
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --add ...", threshold)
    indices = chosen_classes(sampler, classes)
    groups = [(sign, torch.cat([sampler.latents(1, seed) for seed in seeds])) for sign, seeds in terms]
    result = latent_space.arithmetic(groups)  # (latent_dim,)
    latents = torch.stack([*(group.mean(dim=0) for _, group in groups), result])  # (terms + 1, latent_dim)
    images = sampler(latents) if indices is None else sampler.by_class(indices, latents=latents)
    expression = " ".join(f"{'+' if sign > 0 else '-'} mean({','.join(map(str, seeds))})" for sign, seeds in terms).lstrip("+ ")
    spelled = "_".join(f"{'add' if sign > 0 else 'sub'}{'-'.join(map(str, seeds))}" for sign, seeds in terms)
    name = f"arithmetic_step{state['step']:07d}_{spelled[:80]}.png"
    out = picture_path(out, ckpt_path, name, "arithmetic.png")
    try:
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=latents.shape[0], normalize=True,
                                                   value_range=(-1, 1)))
        write_atomically(out.with_suffix(".npy"), lambda f: np.save(f, result[None].numpy()))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    console.print(f"Wrote {expression} = result (the last column) to {out}; its latent to {out.with_suffix('.npy')}")
    return out


def run(options: argparse.Namespace) -> Path:
    return latent_arithmetic(options.checkpoint, options.terms, options.out, options.classes, options.truncation, options.device,
                             options.ema, options.truncation_threshold)

"""The directions `ganctl directions` finds (see the package): SeFa's closed form from G's first layer,
and mean differences of latents, in the space G is edited in."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.device import resolve_device
from ganctl.directions import checked
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.models.capabilities import FirstLayerGenerator
from ganctl.sampling import Sampler


def sefa(weight: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` directions (top, D) of the linear map `weight` (F, D) that its outputs move most along,
    and their eigenvalues (top,), largest first: SeFa's eigenvectors of A^T A with A's rows at unit length.
    Each direction's sign is chosen so that its largest entry is positive (eigenvectors have none)."""
    rows = weight.detach().double()
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(rows.t() @ rows)  # ascending
    order = values.argsort(descending=True)[:top]
    directions = vectors[:, order].t()  # (top, D)
    signs = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)).sign()
    return (directions * signs).float(), values[order].float()


def sefa_directions(sampler: Sampler, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa's `top` directions of the sampler's G (top, D) in z or W, and their eigenvalues (top,)."""
    if not isinstance(sampler.generator, FirstLayerGenerator):
        raise GanctlError(f"This generator ({type(sampler.generator).__name__}) does not expose its first layer's weight: "
                          "SeFa cannot factorise it. Use --positive/--negative latents instead.")
    return sefa(sampler.generator.first_layer_weight(), top)


def mean_difference(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """mean(positive) - mean(negative) over the first dimension, as one direction (1, ...)."""
    return (positive.double().mean(dim=0) - negative.double().mean(dim=0)).float()[None]


def edit_space(sampler: Sampler, saved: latent_space.SavedLatents) -> torch.Tensor:
    """Latents where directions live: z as they are, or a mapping network's W (z mapped, with the
    file's labels for a conditional G); W+ stays per layer."""
    if saved.space != "z" or not sampler.has_styles:
        return saved.values
    if sampler.conditional and saved.labels is None:
        raise GanctlError("These z latents carry no classes, and this conditional G maps each class to its own W: "
                          "use latents that `ganctl project` wrote (they carry their classes).")
    return sampler.styles(saved.values, saved.labels if sampler.conditional else None)[:, 0]  # (N, W)


def latent_set(sampler: Sampler, path: str, option: str) -> torch.Tensor:
    saved = latent_space.read_saved_latents(path, sampler.latent_dim, sampler.w_shape,
                                            len(sampler.classes) if sampler.conditional else None)
    return edit_space(sampler, saved)


def labelled_direction(sampler: Sampler, positive: str, negative: str) -> torch.Tensor:
    """The mean difference of two latent files, in G's edit space (W+ when either is per layer)."""
    a, b = latent_set(sampler, positive, "--positive"), latent_set(sampler, negative, "--negative")
    if a.ndim != b.ndim:  # one W, one W+: compare per layer
        a, b = (x if x.ndim == 3 else x[:, None].expand(-1, sampler.w_shape[0], -1) for x in (a, b))
    return mean_difference(a, b)


def class_direction(sampler: Sampler, names: str, samples: int, seed: int) -> tuple[torch.Tensor, str]:
    """Mean w of class A's samples minus class B's (a conditional G with a mapping network)."""
    if not sampler.conditional:
        raise GanctlError("--classes takes the difference between two classes of a class-conditional generator; this one is unconditional.")
    if not sampler.has_styles:
        raise GanctlError(
            f"--classes needs a mapping network that takes the class into W (a conditional stylegan2): this generator "
            f"({type(sampler.generator).__name__}) reads the class beside z, so no direction in z changes it. Project "
            "images of each class with `ganctl project` and give --positive/--negative their latents instead.")
    parts = [part.strip() for part in names.split(",") if part.strip()]
    if len(parts) != 2:
        raise GanctlError(f"--classes takes two classes, A,B (the direction from B towards A), got {names!r}.")
    z = sampler.latents(samples, seed)
    means = [sampler.styles(z, torch.full((samples,), sampler.class_index(part), dtype=torch.long))[:, 0].mean(dim=0) for part in parts]
    return (means[0] - means[1])[None], f"mean w of class {parts[0]} - mean w of class {parts[1]} ({samples} samples each)"


def save_directions(out: Path, directions: torch.Tensor) -> None:
    """Write the directions to `out`, a .npy file (`checked` made sure)."""
    try:
        write_atomically(out, lambda f: np.save(f, directions.numpy()))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error


def directions(options: argparse.Namespace) -> Path:
    out = checked(options)
    labelled = options.positive is not None
    ckpt_path, state = checkpoint.find(options.checkpoint, use="ganctl directions {} ...")
    sampler = Sampler.from_checkpoint(state, resolve_device(options.device, "--device "), options.ema)
    space = "W" if sampler.has_styles else "z"
    run = options.checkpoint
    if labelled:
        found = labelled_direction(sampler, options.positive, options.negative)
        what = f"mean of {options.positive} - mean of {options.negative}"
    elif options.classes:
        found, what = class_direction(sampler, options.classes, options.samples, options.seed)
    else:
        found, values = sefa_directions(sampler, options.top)
        shown = ", ".join(f"{float(value):.3g}" for value in values[:10])
        console.print(f"SeFa directions of step {state['step']}'s generator in {space}: eigenvalues {shown}{' ...' if len(values) > 10 else ''}")
        what = f"the top {found.shape[0]} SeFa directions (unit vectors)"
    save_directions(out, found)
    console.print(f"Wrote {what} in {space}{'+' if found.ndim == 3 else ''} to {out}, shape {tuple(found.shape)}"
                  + ("" if found.shape[0] > 1 else f", length {float(found.flatten().norm()):.3g}"))
    console.print(f"Walk a latent along one: `ganctl sample {run} --direction {out}:0 --strength -3:3:7`")
    return out

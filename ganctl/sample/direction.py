"""`ganctl sample RUN --direction dirs.npy:K --strength -3:3:7 [--latents FILE]`: each latent walked
along a direction (`ganctl directions` writes them: SeFa's, or a mean difference of labelled latents),
one strip a latent, a column per strength: latent + strength x direction. The latents are those of
--seed (--num of them, default 4) or a file's (what `ganctl project` wrote, or --images-dir's); a
conditional G keeps each strip's class: the file's, --class's, or the classes in turn."""

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
from ganctl.sample import check_strength, direction_file, parse_direction
from ganctl.sample.shared import chosen_classes, folder_name, load_sampler, picture_path, truncation_suffix
from ganctl.sampling import Sampler


def parse_strengths(text: str) -> torch.Tensor:
    """'-3:3:7' -> 7 evenly spaced strengths from -3 to 3; '-2,0,2.5' -> those; '1.5' -> one."""
    check_strength(text)
    if text.count(":") == 2:
        start, stop, count = text.split(":")
        return torch.linspace(float(start), float(stop), int(count))
    return torch.tensor([float(part) for part in text.split(",") if part.strip()])


def read_direction(path: Path, index: int, sampler: Sampler) -> torch.Tensor:
    """Direction `index` of the file: (D,) in z or W, or (num_ws, w_dim) per layer."""
    direction_file(path)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # np.load fails in many ways on foreign bytes
        raise GanctlError(f"--direction {path} cannot be read as a numpy .npy file ({type(error).__name__}).") from None
    if array.ndim == 1:
        array = array[None]
    if not np.issubdtype(array.dtype, np.number) or array.ndim not in (2, 3):
        raise GanctlError(f"--direction {path} holds {array.dtype} of shape {array.shape}; directions are numbers, one a row.")
    if not 0 <= index < array.shape[0]:
        raise GanctlError(f"--direction {path}:{index}: the file holds {array.shape[0]} directions (0 to {array.shape[0] - 1}).")
    direction = torch.from_numpy(np.ascontiguousarray(array[index], dtype=np.float32))
    expected = [(sampler.w_shape[1],), sampler.w_shape] if sampler.has_styles else [(sampler.latent_dim,)]
    if tuple(direction.shape) not in [tuple(shape) for shape in expected]:
        where = "W, (w_dim,) or per layer (num_ws, w_dim)" if sampler.has_styles else "z"
        raise GanctlError(f"--direction {path}: its directions have shape {tuple(direction.shape)}; this generator is edited in "
                          f"{where}: {' or '.join(str(tuple(shape)) for shape in expected)}.")
    if not torch.isfinite(direction).all():
        raise GanctlError(f"--direction {path} holds NaN or infinite values.")
    return direction


def starting_latents(sampler: Sampler, latents_file: Optional[str], num: Optional[int], seed: int,
                     classes: Optional[str]) -> latent_space.SavedLatents:
    """The latents to walk, in the space the directions live in (W for a mapping network), each with its class."""
    if latents_file is not None:
        if num is not None:
            raise GanctlError("--latents walks every latent in the file: leave out --num.")
        saved = latent_space.read_saved_latents(latents_file, sampler.latent_dim, sampler.w_shape,
                                                len(sampler.classes) if sampler.conditional else None)
        saved = latent_space.SavedLatents(sampler.truncate(saved.values, torch.Generator().manual_seed(seed)), saved.space,
                                          saved.labels, saved.noise) if saved.space == "z" else saved
    else:
        saved = latent_space.SavedLatents(sampler.latents(num or 4, seed))
    if sampler.conditional:
        indices = chosen_classes(sampler, classes)
        if classes is not None and saved.space != "z":
            raise GanctlError("These latents are in W, where each one's class is part of it already: leave out --class.")
        if len(indices) > 1 and classes is not None:
            raise GanctlError("--direction keeps one class a strip: give one class with --class, or none (each latent's "
                              "own class, or the classes in turn).")
        if classes is not None or saved.labels is None:
            labels = torch.full((len(saved),), indices[0]) if classes is not None else sampler.every_class(len(saved))
            saved = latent_space.SavedLatents(saved.values, saved.space, labels, saved.noise)
    elif classes is not None:
        chosen_classes(sampler, classes)  # refuses --class for an unconditional G
    if sampler.has_styles and saved.space == "z":  # directions of a mapping network live in W
        styles = sampler.styles(saved.values, saved.labels)[:, 0]  # (N, W), untruncated: psi applies when drawn
        saved = latent_space.SavedLatents(styles, "w", saved.labels)
    return saved


def walked_along(saved: latent_space.SavedLatents, direction: torch.Tensor, strengths: torch.Tensor) -> latent_space.SavedLatents:
    """Every latent at every strength, latent after latent: (N * S, ...), each with its class and noise."""
    values = saved.values
    space = saved.space
    if direction.ndim == 2 and space == "w":  # a per-layer direction makes per-layer latents
        values, space = values[:, None].expand(-1, direction.shape[0], -1), "w+"
    steps = strengths.view(1, -1, *[1] * (values.ndim - 1))  # (1, S, 1) or (1, S, 1, 1)
    edited = (values[:, None] + steps * direction).flatten(0, 1)  # (N * S, ...)
    repeat = strengths.numel()
    labels = None if saved.labels is None else saved.labels.repeat_interleave(repeat)
    noise = None if saved.noise is None else [maps.repeat_interleave(repeat, dim=0) for maps in saved.noise]
    return latent_space.SavedLatents(edited, space, labels, noise)


def direction_strips(
    path: str | Path, direction: str, strengths: str = "-3:3:7", latents_file: Optional[str] = None, num: Optional[int] = None,
    seed: int = 0, out: str | Path | None = None, classes: Optional[str] = None, truncation: float = 1.0,
    device: str = "auto", ema: bool = True, threshold: Optional[float] = None,
) -> Path:
    """A strip a latent, a column a strength: latent + strength x direction, as one PNG."""
    file, index = parse_direction(direction)
    values = parse_strengths(strengths)
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --direction ...", threshold)
    vector = read_direction(file, index, sampler)
    saved = starting_latents(sampler, latents_file, num, seed, classes)
    images = sampler.render(walked_along(saved, vector, values))  # (N * S, C, H, W)
    source = f"seed{seed}" if latents_file is None else f"latents-{folder_name(Path(latents_file).stem)[:40]}"
    name = (f"direction_step{state['step']:07d}_{folder_name(file.stem)[:40]}-{index}_{source}"
            f"{truncation_suffix(truncation, threshold)}.png")
    out = picture_path(out, ckpt_path, name, "direction.png")
    try:
        write_atomically(out, lambda f: save_image(images, f, image_format(out), nrow=values.numel(), normalize=True,
                                                   value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    shown = ", ".join(f"{float(v):g}" for v in values)
    kept = "" if saved.labels is None else ", each strip keeping its class"
    console.print(f"Wrote {len(saved)} latents along direction {index} of {file} at strengths {shown} "
                  f"(step {state['step']}{latent_space.describe(truncation, threshold)}{kept}), a strip each, to {out}")
    return out


def run(options: argparse.Namespace) -> Path:
    return direction_strips(options.checkpoint, options.direction, options.strength or "-3:3:7", options.latents_file,
                            options.num, options.seed, options.out, options.classes, options.truncation, options.device,
                            options.ema, options.truncation_threshold)

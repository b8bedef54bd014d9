"""`ganctl sample RUN --mix ROWS COLS` (or --mix-rows/--mix-cols): a style-mixing grid of a generator
with per-layer styles (StyleGAN2), each cell its row's styles with --mix-layers taken from its column."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

import torch
from torchvision.utils import save_image

from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.errors import GanctlError
from ganctl.files import image_format, write_atomically
from ganctl.sample import check_mix_shape, mixing_sources
from ganctl.sample.shared import chosen_classes, folder_name, load_sampler, picture_path


# The StyleGAN paper's style groups (Karras et al. 2019, section 3.1 and Figure 3), by the resolution a style drives.
STYLE_GROUPS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


def mixed_layers(spec: str, resolutions: tuple[int, ...]) -> list[int]:
    """The style indices `--mix-layers` names: coarse (4x4-8x8), middle (16x16-32x32), fine (64x64 up),
    or indices A-B (inclusive) or N, of G's len(resolutions) styles."""
    spec = spec.strip().lower()
    listed = ", ".join(f"{i}: {r}x{r}" for i, r in enumerate(resolutions))
    if spec in STYLE_GROUPS:
        low, high = STYLE_GROUPS[spec]
        layers = [i for i, r in enumerate(resolutions) if low <= r <= high]
        if not layers:
            raise GanctlError(f"--mix-layers {spec}: this {resolutions[-1]}x{resolutions[-1]} generator has no styles at "
                              f"{low}x{low} or finer; give indices A-B of its styles ({listed}).")
        return layers
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", spec)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (None, None)
    if first is None or not first <= last < len(resolutions):
        raise GanctlError(f"--mix-layers is coarse, middle, fine, or style indices A-B (inclusive) or N, of this "
                          f"generator's {len(resolutions)} styles ({listed}); got {spec!r}.")
    return list(range(first, last + 1))


def style_mixing(
    path: str | Path, rows: Optional[list[int]] = None, columns: Optional[list[int]] = None, shape: Optional[tuple[int, int]] = None,
    layers: str = "coarse", seed: int = 0, out: str | Path | None = None, classes: Optional[str] = None,
    truncation: float = 1.0, device: str = "auto", ema: bool = True,
) -> Path:
    """A style-mixing grid (the StyleGAN paper's Figure 3, as stylegan2-ada-pytorch's style_mixing.py draws
    it): the column sources' images across the top, the row sources' down the left (the top-left cell
    empty), and in cell (r, c) row source r's styles with the `layers` styles (coarse by default) taken
    from column source c. The sources are the latents of the seeds `rows` and `columns`, or (`shape`
    (R, C)) R + C latents of `seed`, the rows' first. Truncation is in W; a conditional G draws every
    image as one class (`classes`)."""
    ckpt_path, state, sampler = load_sampler(path, device, ema, truncation, "ganctl sample {} --mix")
    if not sampler.has_styles:
        raise GanctlError(f"--mix mixes a generator's per-layer styles, and this checkpoint's ({type(sampler.generator).__name__}) "
                          "has none: style mixing needs a mapping network and styles per layer (model=stylegan2).")
    indices = chosen_classes(sampler, classes)
    if indices is not None and (classes is None or len(indices) != 1):
        raise GanctlError("--mix draws a whole grid as one class of this class-conditional checkpoint: name it with --class "
                          f"NAME (one of {', '.join(sampler.classes[:10])}{' ...' if len(sampler.classes) > 10 else ''}).")
    chosen = mixed_layers(layers, sampler.style_resolutions)
    if shape is not None:
        check_mix_shape(shape)
        num_rows, num_columns = shape
        latents = sampler.latents(num_rows + num_columns, seed)  # (R + C, latent_dim): the rows', then the columns'
        source = f"seed{seed}_{num_rows}x{num_columns}"
    else:
        latents = torch.cat([sampler.latents(1, s) for s in [*rows, *columns]])  # each seed's own latent
        num_rows, num_columns = len(rows), len(columns)
        source = f"rows{'-'.join(map(str, rows))[:40]}_cols{'-'.join(map(str, columns))[:40]}"
    labels = None if indices is None else torch.full((latents.shape[0],), indices[0], dtype=torch.long)
    styles = sampler.styles(latents, labels)  # (R + C, num_ws, W)
    row_styles, column_styles = styles[:num_rows], styles[num_rows:]
    mixed = row_styles[:, None].repeat(1, num_columns, 1, 1)  # (R, C, num_ws, W)
    mixed[:, :, chosen] = column_styles[None, :, chosen]
    images = sampler.synthesize(torch.cat([styles, mixed.flatten(0, 1)]))  # (R + C + R * C, C, H, W)
    row_images, column_images, cells = images.split([num_rows, num_columns, num_rows * num_columns])
    blank = torch.full_like(images[0], -1.0)  # the top-left corner: black, as the grid's padding
    grid = [blank, *column_images]
    for r in range(num_rows):
        grid += [row_images[r], *cells[r * num_columns:(r + 1) * num_columns]]
    suffix = ("" if classes is None else f"_class{folder_name(sampler.classes[indices[0]])[:40]}") + (
        "" if truncation == 1 else f"_psi{truncation:g}")
    name = f"mix_step{state['step']:07d}_{source}_{folder_name(layers.strip().lower())[:20]}{suffix}.png"
    out = picture_path(out, ckpt_path, name, "mix.png")
    try:
        write_atomically(out, lambda f: save_image(torch.stack(grid), f, image_format(out), nrow=num_columns + 1, normalize=True,
                                                   value_range=(-1, 1)))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    resolutions = sampler.style_resolutions
    span = f"{resolutions[chosen[0]]}x{resolutions[chosen[0]]}-{resolutions[chosen[-1]]}x{resolutions[chosen[-1]]}"
    console.print(f"Wrote a style-mixing grid of {num_rows} x {num_columns} (step {state['step']}"
                  f"{latent_space.describe(truncation)}) to {out}: each cell is its row's styles with styles "
                  f"{chosen[0]}-{chosen[-1]} ({span}) from its column")
    return out


def run(options: argparse.Namespace) -> Path:
    rows, columns = mixing_sources(options)
    return style_mixing(options.checkpoint, rows, columns, tuple(options.mix) if options.mix else None, options.mix_layers,
                        options.seed, options.out, options.classes, options.truncation, options.device, options.ema)

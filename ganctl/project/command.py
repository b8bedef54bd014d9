"""What `ganctl project` does once its arguments are parsed: read the images as the run's data was read,
project them (`ganctl.projection`), and write each latent, its reconstruction beside its target, the
optimisation as a video (--video) and the PSNR/SSIM scores."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import torch
from rich.table import Table
from torchvision.utils import save_image
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ganctl import checkpoint
from ganctl import latents as latent_space
from ganctl.console import console
from ganctl.data import decode_image, find_images
from ganctl.device import resolve_device
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.pictures import captioned, grid_frame, write_animation
from ganctl.project import checked, projection_settings
from ganctl.projection import Combined, DiscriminatorDistance, LPIPSDistance, NoDistance, Projection, Projector
from ganctl.sample.shared import chosen_classes, folder_name
from ganctl.sampling import Sampler, critic_from_checkpoint


def image_files(arguments: list[str]) -> list[Path]:
    """The image files the arguments name (folders searched recursively; `checked` refused missing
    paths); one message for a folder without images."""
    files = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise GanctlError(f"{path} holds no image files (.png, .jpg, ...): give image files or a folder of them.")
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def read_targets(files: list[Path], channels: int, image_size: int) -> torch.Tensor:
    """The images as uint8 (N, channels, size, size), decoded as the run's dataset decodes image files;
    every file that cannot be read named in one message."""
    images, unreadable = [], []
    for path in files:
        try:
            images.append(decode_image(path, channels, image_size))
        except (OSError, ValueError, SyntaxError) as error:  # Pillow's UnidentifiedImageError is an OSError
            unreadable.append(f"{path} ({type(error).__name__})")
    if unreadable:
        raise GanctlError(f"Cannot read {len(unreadable)} of {len(files)} images as pictures: {', '.join(unreadable[:5])}"
                          f"{' ...' if len(unreadable) > 5 else ''}.")
    return torch.stack(images)


def output_names(files: list[Path]) -> list[str]:
    """A file name stem per image, made unique where two images share one (a.png, a.jpg -> a, a-2)."""
    names, seen = [], {}
    for path in files:
        stem = folder_name(path.stem)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


def perceptual_distance(state: dict, sampler: Sampler, weights: Optional[str], which: Optional[str], device: torch.device):
    """The perceptual distance asked for: LPIPS on the user's backbone weights, the run's D, or both."""
    which = which or ("lpips" if weights else "d")
    if which in ("lpips", "both") and not weights:
        raise GanctlError(f"--perceptual {which} needs --perceptual-weights FILE (torchvision's vgg16-397923af.pth): "
                          "ganctl downloads nothing. Without it, --perceptual d uses the run's own discriminator.")
    distances = []
    if which in ("lpips", "both"):
        distances.append(LPIPSDistance(Path(weights).expanduser(), device))
    if which in ("d", "both"):
        distances.append(DiscriminatorDistance(critic_from_checkpoint(state, device)))
    return distances[0] if len(distances) == 1 else Combined(distances)


def scores(reconstructions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR (dB) and SSIM of each reconstruction (N, C, H, W) in [-1, 1] against its uint8 target, both
    as 8-bit pictures (what the PNGs hold) in [0, 1]: (N,) each."""
    predicted = ((reconstructions.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor().clamp(0, 255) / 255
    target = targets.float() / 255
    psnr = peak_signal_noise_ratio(predicted, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    size = min(targets.shape[-2:])
    kernel = min(11, size if size % 2 else size - 1)  # SSIM's Gaussian window fits inside small images
    ssim = structural_similarity_index_measure(predicted, target, data_range=1.0, reduction="none", kernel_size=kernel)
    return psnr, ssim


def write_outputs(out: Path, names: list[str], targets: torch.Tensor, reconstructions: torch.Tensor, projection: Projection,
                  video: Optional[str]) -> None:
    """Per image its latent, the target beside its reconstruction and (video) the optimisation; all latents together."""
    target_images = targets.float() / 127.5 - 1  # (N, C, H, W) in [-1, 1]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            latent_space.save_latents(out / f"{name}.pt", projection.latents.pick([i]))
            pair = torch.stack([target_images[i], reconstructions[i]])  # (2, C, H, W): the target, then G's image
            write_atomically(out / f"{name}.png", lambda f: save_image(pair, f, "PNG", nrow=2, padding=2, normalize=True,
                                                                         value_range=(-1, 1)))
            if video and projection.frames is not None:
                frames = [captioned(grid_frame(torch.stack([target_images[i], frame[i]]), 2), f"{t + 1}/{len(projection.frames)}")
                          for t, frame in enumerate(projection.frames)]
                write_animation(frames, out / f"{name}.{video}", fps=10)
        latent_space.save_latents(out / "latents.pt", projection.latents)
    except OSError as error:
        raise GanctlError(f"Cannot write to {out}: {error}") from error


def rounded(value: torch.Tensor, digits: int) -> float | str:
    """A score for JSON: rounded, or "inf" (a pixel-exact reconstruction's PSNR), which JSON has no number for."""
    return round(float(value), digits) if math.isfinite(float(value)) else "inf"


def report(out: Path, names: list[str], files: list[Path], psnr: torch.Tensor, ssim: torch.Tensor, projection: Projection,
           sampler: Sampler, distance: str, step: int) -> None:
    labels = projection.latents.labels
    rows = [{"image": str(path), "name": name, "latent": f"{name}.pt", "psnr": rounded(p, 3), "ssim": rounded(s, 4),
             **({"class": sampler.classes[int(labels[i])]} if labels is not None else {})}
            for i, (path, name, p, s) in enumerate(zip(files, names, psnr, ssim))]
    summary = {"checkpoint_step": step, "space": projection.latents.space, "perceptual": distance,
               "mean_psnr": rounded(psnr.mean(), 3), "mean_ssim": rounded(ssim.mean(), 4), "images": rows}
    write_atomically(out / "projection.json", lambda file: file.write(json.dumps(summary, indent=2).encode()))
    table = Table(title=f"ganctl project: step {step}, in {projection.latents.space.upper()}")
    for column in ["image", *(["class"] if labels is not None else []), "PSNR (dB)", "SSIM"]:
        table.add_column(column, justify="left" if column in ("image", "class") else "right")
    for row in rows:
        table.add_row(row["name"], *([row["class"]] if labels is not None else []), f"{float(row['psnr']):.2f}", f"{row['ssim']:.4f}")
    table.add_row("mean", *([""] if labels is not None else []), f"{float(summary['mean_psnr']):.2f}", f"{summary['mean_ssim']:.4f}")
    console.print(table)


def project(options: argparse.Namespace) -> Path:
    out = checked(options)
    files = image_files(options.images)
    ckpt_path, state = checkpoint.find(options.checkpoint, use="ganctl project {} ...")
    device = resolve_device(options.device, "--device ")
    sampler = Sampler.from_checkpoint(state, device, options.ema)
    classes = chosen_classes(sampler, options.classes)
    check_options(options, sampler)
    targets = read_targets(files, state["data"]["channels"], state["data"]["image_size"])  # (N, C, H, W) uint8
    distance = NoDistance() if options.perceptual_weight == 0 else perceptual_distance(
        state, sampler, options.perceptual_weights, options.perceptual, device)
    settings = projection_settings(options)
    tried = "" if classes is None or len(classes) == 1 else f", trying each of {len(classes)} classes"
    console.print(f"Projecting {len(files)} image{'s' if len(files) > 1 else ''} into step {state['step']}'s generator "
                  f"({'W+' if settings.per_layer else 'W' if sampler.has_styles else 'z'}, {settings.steps} steps{tried}); "
                  f"perceptual distance: {distance.description}")
    with console.status("projecting") as status:
        projector = Projector(sampler, distance, settings,
                              progress=lambda step: status.update(f"projecting: step {step}/{settings.steps}") if step % 50 == 0 else None)
        projection = projector.project(targets.float() / 127.5 - 1, classes)
    reconstructions = sampler.render(projection.latents)  # as `ganctl sample --latents` renders them
    psnr, ssim = scores(reconstructions, targets)
    names = output_names(files)
    write_outputs(out, names, targets, reconstructions, projection, options.video)
    report(out, names, files, psnr, ssim, projection, sampler, distance.description, state["step"])
    if projection.latents.labels is not None and (options.classes is None or len(classes) > 1):
        chosen = ", ".join(f"{name}: {sampler.classes[int(label)]}" for name, label in zip(names[:10], projection.latents.labels))
        console.print(f"Classes chosen by the best reconstruction: {chosen}{' ...' if len(names) > 10 else ''}")
    console.print(f"Wrote {len(files)} latents, reconstructions and projection.json to {out}; render them again with "
                  f"`ganctl sample {options.checkpoint} --latents {out / 'latents.pt'}`")
    if not math.isfinite(float(psnr.mean())):  # identical images: PSNR is infinite, which is fine, but say so
        console.print("(an infinite PSNR means a pixel-exact reconstruction)")
    return out


def check_options(options: argparse.Namespace, sampler: Sampler) -> None:
    """The flags that belong to the other kind of latent space, refused before any work."""
    if options.starts is not None and sampler.has_styles:
        raise GanctlError("--starts is for Gaussian latents: a mapping network's W starts from its mean w, as StyleGAN2-ADA's "
                          "projector does. Leave it out.")
    if options.space is not None and not sampler.has_styles:
        raise GanctlError(f"--space {options.space} is a mapping network's W (model=stylegan2); this checkpoint's generator "
                          f"({type(sampler.generator).__name__}) takes Gaussian latents z: leave out --space.")

"""G's latent space: the truncation trick, walks between latents, latents a user saved, latent arithmetic.

Truncation (`psi` in [0, 1]; 1 is no truncation, 0 collapses every sample to the average):

- Gaussian latents (every ganctl generator without a mapping network): each entry whose magnitude
  is beyond the threshold t is resampled from the standard normal truncated to [-t, t] (BigGAN's
  truncation trick, Brock et al. 2019). t is chosen so that psi is the share of the normal's mass
  inside it, t = sqrt(2) erfinv(psi): psi=1 gives t=inf (nothing changes), psi=0.68 t=1, psi=0.95
  t=1.96, psi=0 t=0 (every latent is 0, the mode). The resampled entries come from the same seeded
  generator as the latents, so the same seed and psi always give the same latents.
- A generator with a learned mapping (StyleGAN2) provides its own: `forward_truncated(z, labels, psi)`,
  which lerps its intermediate latent towards the tracked average, w_avg + psi (w - w_avg). The
  Sampler calls it instead of resampling z when the generator has it (see `has_own_truncation`).

Walks: spherical interpolation (slerp) between Gaussian latents keeps each frame's norm where the
normal puts it, where a straight line would pass through the low-norm middle nobody trained on. A
generator with per-layer styles (`has_styles`: StyleGAN2's W) is walked in W by default, in straight
lines (lerp), as the StyleGAN papers measure perceptual path length in W.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganctl.errors import GanctlError
from ganctl.models.capabilities import StyleGenerator, TruncatingGenerator


def check_psi(psi: float) -> float:
    if not (isinstance(psi, (int, float)) and math.isfinite(psi) and 0 <= psi <= 1):
        raise GanctlError(f"--truncation must be a number from 0 (every sample the average) to 1 (no truncation), got {psi!r}.")
    return float(psi)


def truncation_threshold(psi: float) -> float:
    """The threshold t (in standard deviations) inside which the standard normal has mass psi."""
    return math.inf if psi >= 1 else math.sqrt(2) * torch.erfinv(torch.tensor(psi, dtype=torch.float64)).item()


def truncate_gaussian(latents: torch.Tensor, psi: float, generator: torch.Generator) -> torch.Tensor:
    """Standard normal `latents` (N, D) with every entry beyond t = truncation_threshold(psi) resampled
    from the normal truncated to [-t, t], by inverting its CDF: u uniform in (0, 1) maps to
    sqrt(2) erfinv(psi (2u - 1)), since Phi(t) - Phi(-t) = psi. Uniforms are drawn for every entry
    (used where needed), so the result does not depend on which entries are beyond t."""
    psi = check_psi(psi)
    if psi == 1:
        return latents
    if psi == 0:
        return torch.zeros_like(latents)
    uniforms = torch.rand(latents.shape, generator=generator, dtype=torch.float64)
    resampled = (math.sqrt(2) * torch.erfinv(psi * (2 * uniforms - 1))).to(latents.dtype)  # (N, D) in [-t, t]
    beyond = latents.abs() > truncation_threshold(psi)
    return torch.where(beyond, resampled, latents)


def has_own_truncation(generator: torch.nn.Module) -> bool:
    """Whether G truncates itself (a mapping network's lerp towards w_avg) rather than its Gaussian z."""
    return isinstance(generator, TruncatingGenerator)


def has_styles(generator: torch.nn.Module) -> bool:
    """Whether G draws from per-layer styles it exposes (a mapping network's W), which can be mixed
    (`ganctl sample --mix`) and interpolated (`--space w`)."""
    return isinstance(generator, StyleGenerator)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation from a (D,) to b (D,) at fractions t (T,): (T, D), the ends exactly a and b.
    A walk in W is a straight line, as the StyleGAN papers' perceptual path length in W measures it."""
    path = torch.lerp(a[None], b[None], t.to(a.dtype)[:, None])
    path[0], path[-1] = a, b
    return path


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a (D,) to b (D,) at fractions t (T,): (T, D). The ends are a and b
    exactly; nearly parallel latents fall back to a straight line."""
    t = t.to(torch.float64)[:, None]  # (T, 1)
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    cosine = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cosine.clamp(-1, 1))
    if omega.abs() < 1e-6:
        path = (1 - t) * a64 + t * b64
    else:
        path = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega)
    path = path.to(a.dtype)
    path[0], path[-1] = a, b  # exactly the seeds' own latents, not a rounding of them
    return path


def walk(points: torch.Tensor, frames: int, between=slerp) -> torch.Tensor:
    """A walk through points (K, D), K >= 2: `frames` frames from each point to the next (the next's
    first frame is the point itself), ending on the last point: ((K - 1) * frames + 1, D); spherical
    (Gaussian z) or `between=lerp` (W)."""
    t = torch.arange(frames + 1, dtype=torch.float64) / frames
    legs = [between(points[i], points[i + 1], t)[:-1] for i in range(points.shape[0] - 1)]
    return torch.cat([*legs, points[-1:]])


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'1,2,3' -> [1, 2, 3]; one clear error otherwise."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GanctlError(f"{option} takes comma-separated whole-number seeds such as 1,2,3, got {text!r}.") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise GanctlError(f"{option} takes comma-separated seeds of 0 or more such as 1,2,3, got {text!r}.")
    return seeds


def read_latents(path: str | Path, latent_dim: int) -> torch.Tensor:
    """Latents a user saved: a .pt (a tensor, read with weights_only=True) or .npy (no pickles) of
    shape (N, latent_dim) or (latent_dim,), finite numbers; float32 (N, latent_dim). Anything else,
    whatever its bytes, is one clear GanctlError."""
    path = Path(path)
    where = f"--latents {path}"
    if not path.is_file():
        raise GanctlError(f"{where}: no such file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            import numpy as np

            array = np.load(path, allow_pickle=False)
            if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
                raise GanctlError(f"{where} holds {array.dtype} values; latents are numbers.")
            latents = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        elif suffix == ".pt":
            latents = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(latents, dict) and isinstance(latents.get("latents"), torch.Tensor):
                latents = latents["latents"]
            if not isinstance(latents, torch.Tensor) or latents.dtype.is_complex or latents.dtype == torch.bool:
                raise GanctlError(f"{where} holds a {type(latents).__name__}, not a tensor of latents.")
            latents = latents.to(torch.float32)
        else:
            raise GanctlError(f"{where}: latents are read from .pt (torch.save of a tensor) or .npy (numpy.save) files.")
    except GanctlError:
        raise
    except Exception as error:  # torch.load / np.load fail in many ways on foreign or truncated bytes
        raise GanctlError(f"{where} cannot be read as a {suffix} file of latents ({type(error).__name__}): "
                          "save them with torch.save(tensor, FILE) or numpy.save(FILE, array).") from None
    if latents.ndim == 1:
        latents = latents[None]
    if latents.ndim != 2 or latents.shape[1] != latent_dim or latents.shape[0] < 1:
        raise GanctlError(f"{where} has shape {tuple(latents.shape)}; this generator takes (N, {latent_dim}).")
    if not torch.isfinite(latents).all():
        raise GanctlError(f"{where} holds NaN or infinite values.")
    return latents


def arithmetic(terms: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Latent arithmetic in the spirit of the DCGAN paper (Radford et al. 2016, section 6.3): the
    signed sum of the mean latent of each group, sum(sign * mean(group)), for terms (sign +1 / -1,
    group (K, D)). Averaging a few samples per concept, as the paper does, steadies the result."""
    return torch.stack([sign * group.mean(dim=0) for sign, group in terms]).sum(dim=0)


def describe(psi: Optional[float]) -> str:
    return "" if psi is None or psi == 1 else f", truncation psi={psi:g}"

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

BigGAN's and StudioGAN's "truncation" is the threshold t itself, not psi: their 0.5 resamples every
entry beyond half a standard deviation, which is ganctl's psi = erf(0.5 / sqrt(2)) = 0.38, not its 0.5
(t = 0.67). `truncate_gaussian_at(latents, t, rng)` takes t as they define it (`ganctl sample
--truncation-threshold T`); for Gaussian latents psi and t are one setting, psi = erf(t / sqrt(2)).

Walks: spherical interpolation (slerp) between Gaussian latents keeps each frame's norm where the
normal puts it, where a straight line would pass through the low-norm middle nobody trained on. A
generator with per-layer styles (`has_styles`: StyleGAN2's W) is walked in W by default, in straight
lines (lerp), as the StyleGAN papers measure perceptual path length in W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ganctl.arguments import check_psi, check_threshold, existing_file
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.models.capabilities import StyleGenerator, TruncatingGenerator


def threshold_mass(threshold: float) -> float:
    """psi for a threshold t: the standard normal's mass inside [-t, t], erf(t / sqrt(2))."""
    return 1.0 if math.isinf(threshold) else math.erf(threshold / math.sqrt(2))


def truncation_threshold(psi: float) -> float:
    """The threshold t (in standard deviations) inside which the standard normal has mass psi."""
    return math.inf if psi >= 1 else math.sqrt(2) * torch.erfinv(torch.tensor(psi, dtype=torch.float64)).item()


def truncate_gaussian(latents: torch.Tensor, psi: float, generator: torch.Generator) -> torch.Tensor:
    """Standard normal `latents` (N, D) with every entry beyond t = truncation_threshold(psi) resampled
    from the normal truncated to [-t, t], by inverting its CDF: u uniform in (0, 1) maps to
    sqrt(2) erfinv(psi (2u - 1)), since Phi(t) - Phi(-t) = psi. Uniforms are drawn for every entry
    (used where needed), so the result does not depend on which entries are beyond t."""
    psi = check_psi(psi)
    return resampled_beyond(latents, psi, truncation_threshold(psi), generator)


def truncate_gaussian_at(latents: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """BigGAN's truncation trick with its own parameter, the threshold t in standard deviations (Brock
    et al. 2019; BigGAN-PyTorch's and StudioGAN's `truncation`): every entry of `latents` beyond t is
    redrawn from the normal truncated to [-t, t]. The same draw as `truncate_gaussian` at psi = erf(t /
    sqrt(2)), with the comparison made against t itself."""
    threshold = check_threshold(threshold)
    return resampled_beyond(latents, threshold_mass(threshold), threshold, generator)


def resampled_beyond(latents: torch.Tensor, mass: float, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """`latents` with each entry beyond `threshold` redrawn inside it; `mass` is the normal's mass there."""
    if mass == 1 or math.isinf(threshold):
        return latents
    if mass == 0 or threshold == 0:
        return torch.zeros_like(latents)
    uniforms = torch.rand(latents.shape, generator=generator, dtype=torch.float64)
    resampled = (math.sqrt(2) * torch.erfinv(mass * (2 * uniforms - 1))).to(latents.dtype)  # (N, D) in [-t, t]
    beyond = latents.abs() > threshold
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


SPACES = ("z", "w", "w+")


@dataclass(frozen=True)
class SavedLatents:
    """Latents as a file holds them. `values`: (N, latent_dim) Gaussian latents in "z", (N, w_dim) a
    mapping network's intermediate latents in "w", or (N, num_ws, w_dim) one per style layer in "w+"
    (what `ganctl project` finds for StyleGAN2); `labels` (N,): the classes they were found for (a
    conditional G); `noise`: StyleGAN2's noise maps found with them, one (N, 1, r, r) per noisy layer."""

    values: torch.Tensor
    space: str = "z"
    labels: Optional[torch.Tensor] = None
    noise: Optional[list[torch.Tensor]] = None

    def __len__(self) -> int:
        return self.values.shape[0]

    def pick(self, rows: slice | torch.Tensor | list[int]) -> "SavedLatents":
        """These rows only, with their labels and noise."""
        return SavedLatents(self.values[rows], self.space, None if self.labels is None else self.labels[rows],
                            None if self.noise is None else [maps[rows] for maps in self.noise])


def save_latents(path: str | Path, latents: SavedLatents) -> Path:
    """A .pt file that `ganctl sample --latents` (and `read_saved_latents`) reads back: plain tensors,
    strings and lists, loadable with weights_only=True, written atomically."""
    path = Path(path)
    record = {"latents": latents.values.detach().cpu().float(), "space": latents.space,
              "labels": None if latents.labels is None else latents.labels.cpu().long(),
              "noise": None if latents.noise is None else [maps.detach().cpu().float() for maps in latents.noise]}
    try:
        write_atomically(path, lambda file: torch.save(record, file))
    except OSError as error:
        raise GanctlError(f"Cannot write {path}: {error}") from error
    return path


def read_latents(path: str | Path, latent_dim: int) -> torch.Tensor:
    """Latents a user saved: a .pt (a tensor, read with weights_only=True) or .npy (no pickles) of
    shape (N, latent_dim) or (latent_dim,), finite numbers; float32 (N, latent_dim). Anything else,
    whatever its bytes, is one clear GanctlError."""
    saved = read_saved_latents(path, latent_dim)
    if saved.space != "z":
        raise GanctlError(f"--latents {path} holds latents in {saved.space.upper()} (a mapping network's); this "
                          f"generator takes Gaussian latents (N, {latent_dim}).")
    return saved.values


def read_saved_latents(path: str | Path, latent_dim: int, w_shape: Optional[tuple[int, int]] = None,
                       num_classes: Optional[int] = None) -> SavedLatents:
    """Latents from a file: a tensor or array (N, latent_dim) (or (latent_dim,)) of Gaussian latents, an
    array (N, num_ws, w_dim) of per-layer styles, or what `save_latents` wrote (a dict naming its space,
    with the labels and noise maps found with them). `w_shape`: (num_ws, w_dim) of a G with a mapping
    network, None for one without; `num_classes`: a conditional G's. Anything that does not fit the
    generator, whatever its bytes, is one clear GanctlError."""
    path = Path(path)
    where = f"--latents {path}"
    values, record = file_contents(path, where)
    space = record.get("space") or ("w+" if values.ndim == 3 else "z")
    if space not in SPACES:
        raise GanctlError(f"{where} names the space {space!r}; latents are in z, w or w+.")
    if values.ndim == 1 or (space == "w+" and values.ndim == 2):
        values = values[None]
    if space != "z" and w_shape is None:
        raise GanctlError(f"{where} holds latents in {space.upper()}, a mapping network's (model=stylegan2); this "
                          f"generator has none: it takes Gaussian latents (N, {latent_dim}).")
    expected = {"z": (latent_dim,), "w": (w_shape or (0, 0))[1:], "w+": tuple(w_shape or ())}[space]
    if tuple(values.shape[1:]) != expected or values.shape[0] < 1:
        shown = ", ".join(map(str, ("N", *expected)))
        raise GanctlError(f"{where} has shape {tuple(values.shape)}; this generator takes ({shown}) in {space}.")
    if not torch.isfinite(values).all():
        raise GanctlError(f"{where} holds NaN or infinite values.")
    labels = checked_labels(record.get("labels"), values.shape[0], num_classes, where)
    noise = record.get("noise")
    if noise is not None and not (isinstance(noise, list) and all(isinstance(maps, torch.Tensor) and maps.ndim == 4
                                                                  and maps.shape[0] == values.shape[0] for maps in noise)):
        raise GanctlError(f"{where}: its noise maps are not a list of (N, 1, r, r) tensors, one per noisy layer.")
    return SavedLatents(values, space, labels, None if noise is None else [maps.float() for maps in noise])


def file_contents(path: Path, where: str) -> tuple[torch.Tensor, dict]:
    """The float32 tensor of latents a .npy or .pt file holds, and the rest of its record (a dict that
    `save_latents` wrote: space, labels, noise; empty for a bare tensor or array)."""
    existing_file(path, where)
    suffix = path.suffix.lower()
    record: dict = {}
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
                record, latents = latents, latents["latents"]
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
    if latents.ndim not in (1, 2, 3):
        raise GanctlError(f"{where} has shape {tuple(latents.shape)}; latents are (N, D), or (N, num_ws, w_dim) per style layer.")
    return latents, record


def checked_labels(labels: object, count: int, num_classes: Optional[int], where: str) -> Optional[torch.Tensor]:
    """A latent file's class labels (count,) as int64, or None when it has none; refused when they do not
    fit: a count of their own, classes the generator does not have, or labels for an unconditional one."""
    if labels is None:
        return None
    if not (isinstance(labels, torch.Tensor) and labels.shape == (count,) and not labels.dtype.is_floating_point):
        raise GanctlError(f"{where}: its labels are not {count} class indices, one per latent.")
    if num_classes is None:
        raise GanctlError(f"{where} holds class labels, but this generator is unconditional.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise GanctlError(f"{where}: its labels go up to {int(labels.max())}; this generator has {num_classes} classes.")
    return labels.long()


def arithmetic(terms: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Latent arithmetic in the spirit of the DCGAN paper (Radford et al. 2016, section 6.3): the
    signed sum of the mean latent of each group, sum(sign * mean(group)), for terms (sign +1 / -1,
    group (K, D)). Averaging a few samples per concept, as the paper does, steadies the result."""
    return torch.stack([sign * group.mean(dim=0) for sign, group in terms]).sum(dim=0)


def describe(psi: Optional[float], threshold: Optional[float] = None) -> str:
    if threshold is not None:
        return f", truncation threshold {threshold:g}"
    return "" if psi is None or psi == 1 else f", truncation psi={psi:g}"

"""Perceptual path length (Karras et al. 2019; stylegan2-ada-pytorch's metrics/perceptual_path_length.py):
how much the images change, perceptually, for a small step through the latent space, at the path's
end points (`ppl_zend`: steps in z, for every generator; `ppl_wend`: steps in W, for one with styles).

For each of N pairs of latents (z0, z1): the images at t = 0 and t = epsilon along the path from z0
towards z1 (W: the straight line between their styles; z: the great circle), their perceptual
distance d, and d / epsilon^2; the mean of those between the 1st and 99th percentiles (stylegan2-ada's
epsilon 1e-4 and filter). The perceptual distance (`metrics.ppl_distance`):

- `lpips`: LPIPS on VGG16 (Zhang et al. 2018), torch-fidelity's port, as stylegan2-ada measures it
  (its VGG16 and linear weights files in torch's hub cache);
- `discriminator`: the squared distance of the run's own D's features (the input of its last
  weighted layer): offline, but each run's numbers are its own D's;
- `judge`: the squared distance of a judge's features (metrics.feature's judge, or the digits' one).

What differs from stylegan2-ada: its z path is a great circle on the unit sphere because its mapping
normalises z anyway; ganctl's keeps the latents' norms (`latents.slerp`'s formula, for generators
without a mapping). No face crop (`ppl2_wend` has none either); images larger than 256 pixels are
averaged down to 256 as there. The images of both ends come from G in eval mode: StyleGAN2's noise
is then its fixed noise, as stylegan2-ada's noise_mode='const'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ganctl.errors import GanctlError

EPSILON = 1e-4
PERCENTILES = (1, 99)
MAX_SIZE = 256
# The files torch-fidelity's LPIPS reads from torch's hub cache (downloading them there when online).
LPIPS_FILES = {"vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
               "weights-vgg16-lpips.pth": "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-vgg16-lpips.pth"}

# images (B, C, H, W) in [-1, 1] at both ends, and their classes (B,) or None -> distances (B,)
Distance = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def great_circle(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Points at fraction t of the way from each a (N, D) towards each b (N, D) along the great circle
    (scaled between the two norms), in float64 so that t = 1e-4 is not lost to rounding."""
    a64, b64 = a.double(), b.double()
    cosine = (a64 * b64).sum(1, keepdim=True) / (a64.norm(dim=1, keepdim=True) * b64.norm(dim=1, keepdim=True)).clamp_min(1e-12)
    omega = torch.arccos(cosine.clamp(-1, 1))  # (N, 1)
    straight = (1 - t) * a64 + t * b64
    curved = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / torch.sin(omega).clamp_min(1e-12)
    return torch.where(omega.abs() < 1e-6, straight, curved).to(a.dtype)


def downsampled(images: torch.Tensor) -> torch.Tensor:
    """Images larger than 256 pixels averaged down to 256, as stylegan2-ada does before LPIPS."""
    factor = images.shape[-1] // MAX_SIZE
    if factor <= 1:
        return images
    batch, channels, height, width = images.shape
    return images.reshape(batch, channels, height // factor, factor, width // factor, factor).mean((3, 5))


@torch.no_grad()
def distances(sampler: Any, space: str, num: int, seed: int, distance: Distance, labels: Optional[torch.Tensor],
              batch_size: int = 100) -> torch.Tensor:
    """d(image(t=0), image(t=epsilon)) / epsilon^2 for `num` pairs of latents from `seed` (N,)."""
    if space == "w" and not sampler.has_styles:
        raise GanctlError("ppl_wend steps through W, and this generator has no W space (no mapping network): use ppl_zend.")
    z0, z1 = sampler.latents(2 * num, seed).chunk(2)  # (N, latent_dim) each
    values = []
    for start in range(0, num, batch_size):
        chosen = None if labels is None else labels[start:start + batch_size]
        a, b = z0[start:start + batch_size], z1[start:start + batch_size]
        if space == "w":
            w0, w1 = sampler.styles(a, chosen), sampler.styles(b, chosen)  # (B, num_ws, w_dim)
            ends = [sampler.synthesize(w0), sampler.synthesize(torch.lerp(w0, w1, EPSILON))]
        else:
            ends = [sampler(a, labels=chosen), sampler(great_circle(a, b, EPSILON), labels=chosen)]
        values.append(distance(*(downsampled(images) for images in ends), chosen).double().cpu() / EPSILON ** 2)
    return torch.cat(values)


def filtered_mean(values: torch.Tensor) -> float:
    """The mean of the values between the 1st and 99th percentiles, as stylegan2-ada takes it."""
    array = values.numpy()
    low = np.percentile(array, PERCENTILES[0], method="lower")
    high = np.percentile(array, PERCENTILES[1], method="higher")
    return float(array[(array >= low) & (array <= high)].mean())


# --------------------------------------------------------------------------- the distances


def judge_distance(net: nn.Module) -> Distance:
    """The squared distance of a judge's features of G's images, as floats (a step of epsilon changes
    them by far less than a grey level: rounded to uint8, most pairs would be the same image)."""
    device = next(net.parameters()).device

    def distance(first: torch.Tensor, second: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        features = [net(images.float().to(device))[0].float().cpu() for images in (first, second)]
        return (features[0] - features[1]).square().sum(1)

    return distance


def weighted(module: nn.Module) -> bool:
    """Whether a module computes with weights of its own (a spectrally normalised one's through its parametrization)."""
    from torch.nn.utils import parametrize

    if isinstance(module, parametrize.ParametrizationList):
        return False  # computes a weight from a weight, not a layer of images
    return parametrize.is_parametrized(module) or any(True for _ in module.parameters(recurse=False))


def last_layer_input(critic: nn.Module) -> Callable[..., torch.Tensor]:
    """D's features: the input of the last layer with weights (a linear or conv layer, whatever the family
    calls it) that D runs on the images, caught by hooks while D scores them; the same rule for every critic."""
    layers = [module for module in critic.modules() if weighted(module)]

    def features(images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        seen: list[torch.Tensor] = []

        def catch(module: nn.Module, inputs: tuple) -> None:
            if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].is_floating_point() and inputs[0].shape[0] == images.shape[0]:
                seen.append(inputs[0])  # (labels go to embeddings as integers: not D's view of the images)

        hooks = [layer.register_forward_pre_hook(catch) for layer in layers]
        try:
            critic(images) if labels is None else critic(images, labels)
        finally:
            for hook in hooks:
                hook.remove()
        return seen[-1].flatten(1).float()

    return features


def discriminator_distance(critic: nn.Module) -> Distance:
    """The squared distance of D's features of G's images (D in eval mode, on its device; a conditional
    D sees their classes). D is put back in its mode after each batch."""
    features = last_layer_input(critic)
    device = next(critic.parameters()).device

    def distance(first: torch.Tensor, second: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        was_training = critic.training
        critic.eval()
        try:
            labels = None if labels is None else labels.to(device)
            return (features(first.to(device), labels) - features(second.to(device), labels)).square().sum(1).cpu()
        finally:
            critic.train(was_training)

    return distance


def lpips_distance(device: torch.device) -> Distance:
    """LPIPS (VGG16) as torch-fidelity computes it, on images scaled to [0, 255] (grayscale repeated).
    torch-fidelity reads its two weights files from torch's hub cache (downloading them when online)."""
    import urllib.error

    from torch_fidelity.sample_similarity_lpips import SampleSimilarityLPIPS

    try:
        lpips = SampleSimilarityLPIPS("lpips-vgg16", sample_similarity_resize=None, sample_similarity_dtype=None).to(device).eval()
    except (OSError, RuntimeError, ValueError, urllib.error.URLError) as error:
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        files = "; ".join(f"{name} from {url}" for name, url in LPIPS_FILES.items())
        raise GanctlError(f"ppl with metrics.ppl_distance=lpips needs two weights files in torch's hub cache {folder}/, and "
                          f"they are not there and could not be downloaded ({type(error).__name__}). On a machine with internet, "
                          f"download {files}, and put both in {folder}/. Offline without them, measure with "
                          "metrics.ppl_distance=discriminator or judge (--ppl-distance).") from None

    def distance(first: torch.Tensor, second: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        scaled = [((images + 1) * 127.5).to(device) for images in (first, second)]
        if scaled[0].shape[1] == 1:
            scaled = [images.repeat(1, 3, 1, 1) for images in scaled]
        return lpips(*scaled).flatten().cpu()

    return distance

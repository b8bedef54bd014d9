"""What a generator offers beyond `forward(latents, labels)`, declared as protocols and checked with
`isinstance` (the protocols are runtime-checkable: a network has the capability when it has these
members), so that sampling, the regularisers and the CLI ask one question the same way.

    isinstance(generator, StyleGenerator)      # a W space: styles, synthesis, path length, --mix, --space w
    isinstance(generator, TruncatingGenerator)  # its own truncation trick (towards w_avg), not z's
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class StyleGenerator(Protocol):
    """A generator that draws its images from per-layer styles (a mapping network's W, StyleGAN2's):
    they can be mixed and interpolated, and its path length from W to images regularised.
    `forward(z, labels, with_styles=True)` returns (images, styles) with the styles in the graph."""

    style_resolutions: tuple[int, ...]  # the resolution each per-layer style drives (4, 8, 8, 16, ...)

    def styles(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 1.0) -> torch.Tensor:
        """Per-layer styles (N, num_ws, w_dim) for latents z (truncated at psi)."""
        ...

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] from per-layer styles (N, num_ws, w_dim)."""
        ...


@runtime_checkable
class TruncatingGenerator(Protocol):
    """A generator with its own truncation trick (a mapping network's lerp towards the mean w),
    used instead of truncating the Gaussian latents."""

    def forward_truncated(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None, psi: float = 0.7) -> torch.Tensor:
        ...

"""Datasets as uint8 image tensors, and batches drawn from them by index on the training device.

A dataset option in conf/dataset/ names a loader function here that returns every image as one
uint8 tensor (N, C, H, W) at the configured image size. Training keeps that tensor on the device
and draws each batch by random index -- no DataLoader, no per-sample Python work in the loop.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Iterator
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ganctl.errors import GanctlError


def build(node, device: torch.device, split: str = "train") -> "InMemoryImages":
    """The images named by the config's dataset node (its `split`, if it has splits), ready to draw
    batches from on the device."""
    from ganctl.config import build as instantiate

    return InMemoryImages(instantiate(node, "dataset", split=split), device)


class InMemoryImages:
    """A whole dataset as one uint8 tensor (N, C, H, W) on the device; `sample` draws a batch."""

    def __init__(self, images: torch.Tensor, device: torch.device, fingerprint: str | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        self.images = images.to(device)
        self.channels, self.image_size = images.shape[1], images.shape[2]
        self._fingerprint = fingerprint

    @property
    def fingerprint(self) -> str:
        """A hex digest that changes whenever the images do (a cache key for statistics of them)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(str(tuple(self.images.shape)).encode())
            digest.update(self.images.cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, batch_size: int) -> torch.Tensor:
        """A batch of images drawn uniformly with replacement, scaled to [-1, 1] like tanh."""
        index = torch.randint(len(self), (batch_size,), device=self.images.device)
        return self.images[index].float().div_(127.5).sub_(1.0)  # (B, C, H, W)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every image once, in order, as uint8 batches (B, C, H, W) on the device."""
        for start in range(0, len(self), batch_size):
            yield self.images[start : start + batch_size]


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize square uint8 images (N, C, h, w) to image_size, antialiased; a no-op at the same size."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    return TF.resize(images, [image_size, image_size], antialias=True)


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise GanctlError(f"Unknown split '{split}': use train or test.")


def bundled_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits that ship inside ganctl: (images (N, 1, 28, 28) uint8, labels (N,)).

    4,000 training digits and 1,000 test digits, 10% of each class; see the README for credit.
    """
    check_split(split)
    with resources.files("ganctl").joinpath("assets/mnist5k.npz").open("rb") as f:
        arrays = np.load(f)
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def mnist(root: str | None, download: bool, image_size: int, split: str = "train") -> torch.Tensor:
    """MNIST digits through torchvision's reader, or the bundled subset when root is None."""
    check_split(split)
    if root is None:
        if download:
            raise GanctlError(
                "dataset.download=true needs a place to download to: add dataset.root=<folder>, "
                "e.g. dataset.root=data."
            )
        return resize(bundled_mnist(split)[0], image_size)
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(root=root, train=split == "train", download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found. You can use download=True ..."
        raise GanctlError(
            f"MNIST files not found: looked in {Path(root, 'MNIST', 'raw').resolve()} for torchvision's "
            "IDX files (train-images-idx3-ubyte, ...). Point dataset.root at the folder that contains "
            "MNIST/raw, or add dataset.download=true to fetch them (needs internet). "
            "Leave dataset.root unset to use the digits bundled with ganctl."
        ) from error
    except OSError as error:  # download failed: offline, or a host that refuses
        raise GanctlError(f"Could not download MNIST into {Path(root).resolve()}: {error}") from error
    return resize(dataset.data.unsqueeze(1), image_size)  # (N, 1, H, W) uint8

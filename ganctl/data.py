"""Datasets as uint8 image tensors, and batches drawn from them by index on the training device.

A dataset option in conf/dataset/ names a loader function here. It returns the images of one split at
the configured size and channels, in one of three forms that `build` turns into a source:

- a uint8 tensor (N, C, H, W): the whole dataset, kept on the device; each batch is drawn by random
  index there, with no DataLoader and no per-sample Python work in the training loop;
- `Decoded`: the same, with the images' class labels and names where the dataset has them, and a
  fingerprint when one was cheaper to compute than hashing the pixels;
- `Undecoded`: a folder's (or archive's) image files, which `build` decodes into memory or streams as
  `ImageFiles` through a torch DataLoader with workers: one rule, `holding`, decides from host and
  device memory, and where the decoded tensor lives.

Every source offers `channels`, `image_size`, `len()`, `sample(batch_size)` (floats in [-1, 1], like
G's tanh), `batches(batch_size)` (every image once, in order, as uint8) and `fingerprint`; and for
class-conditional GANs `classes` (the class names, a label's index into them; None without labels,
`unlabelled` then says why), `sample_labelled(batch_size)` and `labelled_batches(batch_size)`, which
give each image's label beside it. Labels are class indices (B,), int64, on the device.

Decoding a folder of images is slow, so its result is cached as an .npz file in the cache directory
(`dataset.cache`, else $GANCTL_CACHE_DIR, $XDG_CACHE_HOME/ganctl or ~/.cache/ganctl), keyed by the
files' paths, sizes, modification and status-change times and the decoding settings; the next run loads
it in a moment, once it has checked that the file was written for these files and holds their shape,
reading it piece by piece into the tensor the images are kept in. Before decoding, the run says where
the cache goes and how large it is; a disk without room for it (and 1 GiB to spare) gets none.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from itertools import chain, count as numbers
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Union

import numpy as np
import torch
from PIL import Image
from rich.markup import escape
from torchvision.transforms.v2 import functional as TF

from ganctl.registry import build as instantiate, plain
from ganctl.config import MIN_IMAGE_SIZE, SPLITS
from ganctl.console import console, warn
from ganctl.errors import GanctlError
from ganctl.files import remove_stale, write_atomically

log = logging.getLogger("ganctl")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CACHE_FORMAT = 1  # bump when decoding changes what a cache file would hold
QUICKDRAW_PIXELS = 28 * 28


@dataclass
class Decoded:
    """A dataset function's in-memory result: the images, with their class labels when it has them."""

    images: torch.Tensor  # (N, C, H, W) uint8
    fingerprint: Optional[str] = None  # None: a hash of the pixels, computed when needed
    labels: Optional[torch.Tensor] = None  # (N,) class indices into `classes`
    classes: Optional[list[str]] = None  # the class names
    unlabelled: str = ""  # without labels: why the dataset has none (for the message that refuses conditioning)
    where: Optional[torch.device] = None  # the device `holding` decoded them onto; None: host memory, placed by `placement`


def build(
    node, device: torch.device, split: str = "train", labels: bool = False
) -> Union["InMemoryImages", "StreamingImages"]:
    """The images named by the config's dataset node (its `split`, if it has splits), ready to draw
    batches from on the device. With `labels` (a class-conditional GAN's data), a dataset without
    class labels, or with a single class, is refused with the reason. `mirror: true` (any dataset)
    makes training draw each image and its x-flip alike (StyleGAN2-ADA's --mirror); `batches`, which
    real statistics are computed from, still give each image once, unflipped."""
    settings = plain(node)
    mirror = settings.pop("mirror", False)
    if not isinstance(mirror, bool):
        raise GanctlError(f"dataset.mirror must be true or false, got {mirror!r}.")
    result = instantiate(settings, "dataset", split=split)
    if isinstance(result, Undecoded):  # a folder or archive: held in memory or streamed, by the device's memory too
        result = decoded_or_streamed(result, device)
    if isinstance(result, ImageFiles):
        source: Union[InMemoryImages, StreamingImages] = StreamingImages(result, device, mirror)
    elif isinstance(result, Decoded):
        source = InMemoryImages(result.images, device, result.fingerprint, result.labels, result.classes, result.unlabelled,
                                mirror, result.where)
    else:
        source = InMemoryImages(result, device, mirror=mirror)
    if labels:
        require_labels(source)
    return source


def require_labels(source: Union["InMemoryImages", "StreamingImages"]) -> None:
    """Refuse to condition on data without class labels (one clear message: why, and what to do)."""
    if source.classes is None:
        raise GanctlError(
            f"A class-conditional GAN needs class labels, but {source.unlabelled or 'this dataset has none'}. "
            "Use labelled data (mnist, fashion_mnist, cifar10, a folder with one subfolder per class, a folder of "
            "Quick, Draw! files), or train without labels (conditioning=none)."
        )
    if len(source.classes) < 2:
        raise GanctlError(
            f"A class-conditional GAN needs at least two classes, but this dataset has one ({source.classes[0]!r}): "
            "train without labels (conditioning=none), or add a subfolder (a .npy file) per class."
        )
    labels = getattr(source, "labels", None)
    if labels is not None and len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < len(source.classes)):
        raise GanctlError(
            f"The dataset's label file holds labels from {int(labels.min())} to {int(labels.max())}, but the dataset has "
            f"{len(source.classes)} classes (0 to {len(source.classes) - 1}): the file is damaged or not this dataset's."
        )


# ----------------------------------------------------------------------------- where the images are held
# One rule decides, for a folder (or archive) of images, whether they are decoded into memory or streamed
# from the files, and where the decoded tensor lives (`holding`); the README's Datasets section states it.

IN_MEMORY_LIMIT = 4 * 2**30  # bytes; `in_memory: auto` streams a larger dataset (`true` holds one where memory allows)
GPU_SHARE = 4  # on the training GPU when the images take at most 1/4 of its free memory: the networks need the rest
RAM_SHARE = 4  # `auto`: in host memory when they take at most 1/4 of its RAM ...
AVAILABLE_SHARE = 2  # ... and (`auto` or `true`) at most 1/2 of the memory available now: the run needs the rest


@dataclass(frozen=True)
class Holding:
    """What `holding` decided: the device the decoded images are kept on (None: streamed from the
    files), why, and whether that is said as a warning (it overrides `in_memory: true`, or a GPU had
    no room for them)."""

    where: Optional[torch.device]
    reason: str
    warning: bool = False

    def message(self, count: int, nbytes: int, root: Union[Path, str]) -> str:
        """The one line that names the choice and why."""
        if self.where is None:
            return f"Streaming {count:,} images from {root}: {self.reason}"
        return f"Holding {count:,} images ({amount(nbytes)}) in memory on {self.where}: {self.reason}"


def amount(nbytes: float) -> str:
    """Bytes for people: KiB below a MiB, MiB below a GiB, else GiB."""
    if nbytes < 2**20:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def holding(nbytes: int, ram: Optional[int], available: Optional[int], device_free: Optional[int],
            device: torch.device = torch.device("cpu"), in_memory: Union[str, bool] = "auto") -> Holding:
    """Where `nbytes` of decoded uint8 images are kept for training on `device`; a pure function of the
    host's RAM, the host memory `available` now and the training GPU's free memory (`device_free`;
    None on a CPU). A None for a host figure means unknown, and that limit is not applied.

    - `in_memory: false` streams.
    - `auto` streams anything over IN_MEMORY_LIMIT (4 GiB).
    - On a GPU: on the GPU when they take at most a quarter of its free memory (decoding and the
      cache fill the GPU's tensor batch by batch, so host memory holds a batch, not the dataset).
    - Otherwise in host memory (each batch copied to a GPU as it is drawn), when they take at most half
      of the memory available now and, with `auto`, at most a quarter of the RAM.
    - Otherwise streamed: `true` then says so as a warning."""
    if in_memory is False:
        return Holding(None, "dataset.in_memory=false")
    if in_memory not in (True, "auto"):
        raise GanctlError(f"dataset.in_memory must be auto, true or false, got {in_memory!r}.")
    auto = in_memory == "auto"
    if auto and nbytes > IN_MEMORY_LIMIT:
        return Holding(None, f"they would take {amount(nbytes)}, more than the {amount(IN_MEMORY_LIMIT)} that "
                             "dataset.in_memory=auto holds (dataset.in_memory=true holds more where memory allows)")
    if device_free is not None and nbytes <= device_free // GPU_SHARE:
        return Holding(device, f"at most a quarter of the {amount(device_free)} free on {device} (the networks need the rest)")
    on_gpu = "" if device_free is None else f"more than a quarter of the {amount(device_free)} free on {device} (the networks need the rest), "
    limits = [(ram // RAM_SHARE, f"a quarter of the {amount(ram)} of RAM")] if auto and ram is not None else []
    if available is not None:
        limits.append((available // AVAILABLE_SHARE, f"half of the {amount(available)} of host memory available now"))
    over = [what for limit, what in limits if nbytes > limit]
    if not over:
        if device_free is not None:
            return Holding(torch.device("cpu"), f"they would take {on_gpu}so they stay in host memory, and each batch "
                                                "is copied to the GPU as it is drawn", warning=True)
        within = [amount(IN_MEMORY_LIMIT)] * auto + [what for _, what in limits]
        host = device if device.type != "cuda" else torch.device("cpu")  # (Apple's MPS shares host memory)
        return Holding(host, f"they take at most {', '.join(within[:-1]) + ' and ' if len(within) > 1 else ''}"
                             f"{within[-1] if within else 'what this machine says it has'}")
    if in_memory is True:
        return Holding(None, f"dataset.in_memory=true, but the decoded images take {amount(nbytes)}, {on_gpu}more than "
                             f"{' and '.join(over)}: streaming them from the files instead (a smaller dataset.max_items "
                             "or dataset.image_size fits in memory)", warning=True)
    return Holding(None, f"they would take {amount(nbytes)}, {on_gpu}more than {' and '.join(over)}")


def device_free_memory(device: torch.device) -> Optional[int]:
    """The training GPU's free memory in bytes; None on a CPU (host memory is the rule's other input)."""
    from ganctl.fits import free_memory

    return free_memory(device) if device.type == "cuda" else None


def host_ram() -> Optional[int]:
    """Bytes of RAM this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def available_memory() -> Optional[int]:
    """Bytes of host memory a new allocation can have now without swapping (Linux's MemAvailable, else
    the free pages), or None where the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def placement(nbytes: int, device: torch.device) -> torch.device:
    """Where a dataset already decoded into host memory (torchvision's, Quick, Draw!) is kept: the
    rule's GPU step (`holding`); without room there it stays in host memory, said once."""
    decided = holding(nbytes, None, None, device_free_memory(device), device, True)
    if decided.warning:
        warn(f"Holding the dataset's {amount(nbytes)} of images in memory on {decided.where}: {decided.reason}")
    return decided.where or torch.device("cpu")


def say(message: str, warning: bool = False) -> None:
    """A choice made about the data: to the run's log and the terminal, as a warning when it overrides the user."""
    if warning:
        warn(message)
    else:
        log.info(message)
        console.print(escape(message))


class InMemoryImages:
    """A whole dataset as one uint8 tensor (N, C, H, W) on the device, or in host memory when the GPU
    has no room for it (`holding`, `placement`), and its labels (N,) when it has them; `sample` draws a
    batch. `where`: the device the rule already put the images on (None: decide here)."""

    def __init__(
        self, images: torch.Tensor, device: torch.device, fingerprint: str | None = None,
        labels: Optional[torch.Tensor] = None, classes: Optional[list[str]] = None, unlabelled: str = "",
        mirror: bool = False, where: Optional[torch.device] = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        self.device = device
        self.images = images.to(where if where is not None else placement(images.nbytes, device))
        self.channels, self.image_size = images.shape[1], images.shape[2]
        self._fingerprint = fingerprint
        if labels is not None and (classes is None or labels.shape != (images.shape[0],)):
            raise ValueError(f"expected one label per image and the class names, got labels {tuple(labels.shape)}")
        self.labels = None if labels is None else labels.to(device=device, dtype=torch.long)  # (N,)
        self.classes = None if labels is None else list(classes)
        self.unlabelled = unlabelled or "the dataset has no class labels"
        self.mirror = mirror

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
        return self.sample_labelled(batch_size, labels=False)[0]

    def sample_labelled(self, batch_size: int, labels: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """`sample`'s batch and the images' labels (B,), drawn by the same index (no other random draw).
        Mirrored, the index runs over twice the images: the second half are the x-flips."""
        index = torch.randint(len(self) * (2 if self.mirror else 1), (batch_size,), device=self.device)
        flipped = None
        if self.mirror:
            flipped, index = index >= len(self), index % len(self)
        images = self.images[index.to(self.images.device)].to(self.device).float().div_(127.5).sub_(1.0)  # (B, C, H, W)
        if flipped is not None:
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images, (self.labels[index] if labels else None)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every image once, in order, as uint8 batches (B, C, H, W) on the device."""
        for start in range(0, len(self), batch_size):
            yield self.images[start : start + batch_size].to(self.device)

    def labelled_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`batches` with each batch's labels (B,) beside it."""
        require_labels(self)
        for start in range(0, len(self), batch_size):
            yield self.images[start : start + batch_size].to(self.device), self.labels[start : start + batch_size]


def endless(
    source: Union["InMemoryImages", "StreamingImages"], batch_size: int, labels: bool = False
) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """(images, labels) batches without end, what the training loop draws from: images as
    `source.sample(batch_size)` gives them, and their labels (B,) when asked (else None)."""
    while True:
        yield source.sample_labelled(batch_size) if labels else (source.sample(batch_size), None)


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize square uint8 images (N, C, h, w) to image_size, antialiased; a no-op at the same size."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    return TF.resize(images, [image_size, image_size], antialias=True)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise GanctlError(f"Unknown split '{split}': use train or test.")


def check_no_test_split(split: str, what: str) -> None:
    """Datasets without an official split have no held-out images: say so rather than invent one."""
    check_split(split)
    if split == "test":
        raise GanctlError(
            f"{what} has no test split: all its images are training images. Compare with the training "
            "images instead (metrics.split=train), or keep held-out images in a folder of their own."
        )


# ----------------------------------------------------------------------------- torchvision's datasets


def bundled_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits that ship inside ganctl: (images (N, 1, 28, 28) uint8, labels (N,)).

    4,000 training digits and 1,000 test digits, 10% of each class; see the README for credit.
    """
    check_split(split)
    with resources.files("ganctl").joinpath("assets/mnist5k.npz").open("rb") as f:
        arrays = np.load(f)
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def torchvision_dataset(name: str, root: str, download: bool, expected: str, hint: str = "", **kwargs: Any):
    """torchvision.datasets.<name>(root, download, **kwargs), with its failures as GanctlErrors;
    `expected` names the files torchvision looks for under root. A download that fails (offline)
    says where to put the files by hand, and leaves none of the folders it made."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, name)
    made = missing_folders(download_folder(dataset_class, Path(root))) if download else []
    try:
        return dataset_class(root=root, download=download, **kwargs)
    except (RuntimeError, OSError) as error:  # RuntimeError: "Dataset not found or corrupted", or a failed download
        for folder in made:  # deepest first; only those this download created, and only while empty
            try:
                folder.rmdir()
            except OSError:
                break
        if download:
            reason = [line for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
            raise GanctlError(
                f"Could not download {name} into {Path(root).resolve()} ({reason[-1].strip()}). Without internet here, "
                f"{by_hand(dataset_class, Path(root).resolve())}{hint}"
            ) from error
        damaged = changed_files(dataset_class, Path(root)) if isinstance(error, RuntimeError) else []
        if damaged:
            raise GanctlError(
                f"{name}'s {damaged[0]} is there but differs from the original file (its MD5 checksum does not match "
                f"torchvision's{f'; so do {len(damaged) - 1} more' if len(damaged) > 1 else ''}): it is damaged, or another "
                f"version. Copy the original again, or train on images of your own with dataset=folder dataset.root=<folder>.{hint}"
            ) from error
        if isinstance(error, RuntimeError):
            raise GanctlError(
                f"{name} files not found or incomplete: expected {Path(root).resolve()}/{expected}, as torchvision "
                f"lays them out. Point dataset.root at the folder that holds {expected.split('/')[0]}/, or add "
                f"dataset.download=true to fetch them (needs internet).{hint}"
            ) from error
        raise GanctlError(f"Cannot read {name} under {Path(root).resolve()}: {error}") from error


def changed_files(dataset_class: type, root: Path) -> list[str]:
    """The files of a dataset that torchvision checks by MD5 (CIFAR-10's batches) which are present but
    differ from the originals, as paths under root."""
    from torchvision.datasets.utils import check_integrity

    listed = [*getattr(dataset_class, "train_list", []), *getattr(dataset_class, "test_list", [])]
    folder = root / getattr(dataset_class, "base_folder", "")
    return [f"{folder.name}/{file}" for file, md5 in listed
            if (folder / file).is_file() and not check_integrity(str(folder / file), md5)]


def download_folder(dataset_class: type, root: Path) -> Path:
    """Where torchvision downloads a dataset's files: <root>/<Class>/raw for the MNIST family, root for CIFAR."""
    return root / dataset_class.__name__ / "raw" if hasattr(dataset_class, "mirrors") else root


def by_hand(dataset_class: type, root: Path) -> str:
    """How to put a torchvision dataset's files in place without internet, from torchvision's own list."""
    folder = download_folder(dataset_class, root)
    if hasattr(dataset_class, "mirrors"):  # MNIST, FashionMNIST: gzipped IDX files from a mirror
        files, source, them = ", ".join(file for file, _ in dataset_class.resources), dataset_class.mirrors[0], "them"
    else:  # CIFAR-10: one archive
        files, source, them = dataset_class.filename, dataset_class.url, "it"
    return (f"download {files} from {source} on a machine with internet and put {them} in {folder}/; then the same "
            f"command checks and unpacks {them} offline.")


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    folder = folder.resolve()
    return [path for path in (folder, *folder.parents) if not path.exists()]


DIGITS = [str(digit) for digit in range(10)]  # MNIST's class names: `--class 3` is the digit 3


def mnist(root: str | None, download: bool, image_size: int, split: str = "train") -> Decoded:
    """MNIST digits through torchvision's reader, or the bundled subset when root is None; labelled
    with their digits (classes "0" to "9")."""
    check_split(split)
    if root is None:
        if download:
            raise GanctlError(
                "dataset.download=true needs a place to download to: add dataset.root=<folder>, "
                "e.g. dataset.root=data."
            )
        images, labels = bundled_mnist(split)
        return Decoded(resize(images, image_size), labels=labels, classes=DIGITS)
    dataset = torchvision_dataset(
        "MNIST", os.path.expanduser(root), download, "MNIST/raw/train-images-idx3-ubyte and the other IDX files",
        " Or leave dataset.root unset to train on the 5,000 MNIST digits bundled with ganctl.", train=split == "train",
    )
    return Decoded(resize(dataset.data.unsqueeze(1), image_size), labels=dataset.targets, classes=DIGITS)  # (N, 1, H, W) uint8


def fashion_mnist(root: str | None, download: bool, image_size: int, split: str = "train") -> Decoded:
    """Fashion-MNIST (Zalando's 28x28 grayscale clothing) through torchvision's reader, labelled with
    torchvision's class names (T-shirt/top, Trouser, ...)."""
    check_split(split)
    root = require_root(root, "fashion_mnist", "the folder that holds FashionMNIST/raw/ (or where to download it)")
    expected = "FashionMNIST/raw/train-images-idx3-ubyte and the other IDX files"
    dataset = torchvision_dataset("FashionMNIST", root, download, expected, train=split == "train")
    return Decoded(resize(dataset.data.unsqueeze(1), image_size), labels=dataset.targets, classes=list(dataset.classes))


def cifar10(root: str | None, download: bool, image_size: int, split: str = "train") -> Decoded:
    """CIFAR-10 through torchvision's reader, which checks each file's MD5 before unpickling it;
    labelled with the class names of its batches.meta (airplane, automobile, bird, cat, ...)."""
    check_split(split)
    root = require_root(root, "cifar10", "the folder that holds cifar-10-batches-py/ (or where to download it)")
    expected = "cifar-10-batches-py/ with data_batch_1 to data_batch_5, test_batch and batches.meta (their checksums are checked)"
    dataset = torchvision_dataset("CIFAR10", root, download, expected, train=split == "train")
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return Decoded(resize(images, image_size), labels=torch.as_tensor(dataset.targets), classes=list(dataset.classes))


def require_root(root: str | None, option: str, what: str) -> str:
    if root is None:
        raise GanctlError(
            f"dataset={option} needs dataset.root: {what}. Add dataset.root=<path> to the command, "
            f"e.g. `ganctl train dataset={option} dataset.root=data/{option}`."
        )
    return os.path.expanduser(str(root))  # (a quoted ~/data reaches here as written)


# ----------------------------------------------------------------------------- folders of image files


def decode_image(path: Union[str, Path], channels: int, image_size: int) -> torch.Tensor:
    """One image file as uint8 (channels, image_size, image_size): transparency composited onto
    white, converted to grayscale or RGB, its shorter side resized to image_size, then center-cropped."""
    with Image.open(path) as image:
        image.draft("RGB" if channels == 3 else "L", (image_size, image_size))  # JPEG: decode at a reduced scale
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        elif image.mode.startswith("I;16"):  # 16-bit grayscale PNG: keep the high byte
            image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
        pixels = TF.pil_to_tensor(image.convert("L" if channels == 1 else "RGB"))  # (C, h, w) uint8
    if min(pixels.shape[-2:]) != image_size:
        pixels = TF.resize(pixels, image_size, antialias=True)  # shorter side -> image_size
    return TF.center_crop(pixels, [image_size, image_size])


@dataclass(frozen=True)
class FileLabels:
    """Each file's class (an index into `classes`), or why the files have none."""

    labels: Optional[list[int]] = None
    classes: Optional[list[str]] = None
    unlabelled: str = ""

    def subset(self, picks: list[int]) -> "FileLabels":
        return self if self.labels is None else FileLabels([self.labels[i] for i in picks], self.classes)


def class_subfolders(files: list[Path], root: Path) -> FileLabels:
    """Labels from class subfolders, as torchvision's ImageFolder reads them: a file's class is the
    top-level subfolder of root it lies in (however deep), and the classes are those subfolders' names
    in sorted order (label 0 is the first). A flat folder, or images directly in root beside class
    subfolders, has no labels."""
    parts = [Path(os.path.relpath(path, root)).parts for path in files]
    classes = sorted({part[0] for part in parts if len(part) > 1})
    loose = [part[0] for part in parts if len(part) == 1]
    if not classes:
        return FileLabels(unlabelled=f"the images in {root} are not in class subfolders (a flat folder has no labels; "
                                     "dataset=folder takes one subfolder per class, as torchvision's ImageFolder does)")
    if loose:
        listed = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        return FileLabels(unlabelled=f"{len(loose)} image file{'s lie' if len(loose) > 1 else ' lies'} directly in {root}, "
                                     f"outside its class subfolders ({listed}): move them into a class's subfolder, or remove them")
    index = {name: i for i, name in enumerate(classes)}
    return FileLabels([index[part[0]] for part in parts], classes)


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded one at a time; an unreadable file gives None (see `collate`).

    Used to decode a folder into memory with DataLoader workers, and to stream folders too large for it.
    """

    def __init__(self, files: list[Path], root: Path, channels: int, image_size: int, fingerprint: str, strict: bool,
                 labels: FileLabels = FileLabels()) -> None:
        self.files, self.root = files, root
        self.channels, self.image_size = channels, image_size
        self.fingerprint, self.strict = fingerprint, strict
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Optional[torch.Tensor], int, str]:
        path = self.files[index]
        label = -1 if self.labels.labels is None else self.labels.labels[index]  # -1: no labels
        try:
            return decode_image(path, self.channels, self.image_size), label, str(path)
        except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError):  # PIL on bad files
            return None, label, str(path)


def collate(items: list[tuple[Optional[torch.Tensor], int, str]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the decoded images of a batch and their labels; return the paths of the unreadable ones beside them."""
    images = [image for image, _, _ in items if image is not None]
    labels = torch.tensor([label for image, label, _ in items if image is not None], dtype=torch.long)
    bad = [path for image, _, path in items if image is None]
    return (torch.stack(images) if images else torch.empty(0, dtype=torch.uint8)), labels, bad


def loader_workers(count: int) -> int:
    """DataLoader workers: none for a few hundred images (starting workers costs more than it saves)."""
    return 0 if count < 512 else min(8, os.cpu_count() or 1)


def report_unreadable(bad: list[str], root: Path, strict: bool, total: int) -> None:
    if not bad:
        return
    names = [os.path.relpath(path, root) for path in bad]
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if strict:
        raise GanctlError(
            f"{len(bad)} of {total} image files under {root} could not be read: {listed}. Remove or replace "
            "them, or set dataset.strict=false to skip unreadable files with a warning."
        )
    warn(f"skipped {len(bad)} unreadable image file{'s' if len(bad) > 1 else ''} of {total} under {root}: {listed}")


def find_images(root: Path) -> list[Path]:
    """Every image file under root, searched recursively, in sorted order (see `find_files`)."""
    return find_files(root, IMAGE_SUFFIXES)


def find_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Every file under root with one of `suffixes` (any case), in sorted order; hidden files and macOS
    resource forks (__MACOSX/, ._name.jpg) left out. Links to folders are followed, and each folder is
    searched once however many links lead to it: a link back up the tree (a loop) adds no image twice
    and cannot make the search go on forever."""
    found, searched = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        try:
            identity = os.stat(folder)
        except OSError:  # vanished, or a link into a loop the OS gave up on
            identity = None
        if identity is None or (identity.st_dev, identity.st_ino) in searched:
            subfolders[:] = []
            continue
        searched.add((identity.st_dev, identity.st_ino))
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
        found += [Path(folder, n) for n in names if n.lower().endswith(suffixes) and not n.startswith(".")]
    return sorted(found)


def spread(count: int, max_items: Optional[int]) -> list[int]:
    """Up to max_items indices spread evenly over range(count), so every class subfolder is represented."""
    if max_items is None or max_items >= count:
        return list(range(count))
    if max_items < 1:
        raise GanctlError(f"dataset.max_items must be at least 1 (or null for all), got {max_items}.")
    return np.linspace(0, count - 1, max_items).round().astype(int).tolist()


def check_image_settings(channels: int, image_size: int) -> None:
    if channels not in (1, 3):
        raise GanctlError(f"dataset.channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise GanctlError(f"dataset.image_size must be a whole number of pixels, at least {MIN_IMAGE_SIZE}; got {image_size!r}.")


def files_key(files: list[Path], root: Path, settings: dict[str, Any]) -> tuple[str, str]:
    """(prefix, key): the prefix names the dataset and decoding settings, the key adds every file's
    path, size, modification time and status-change time, so it changes when a file is added, removed
    or rewritten: a write changes the status-change time even when it keeps the size and the
    modification time (which a program can set back; the status-change time it cannot)."""
    prefix = hashlib.sha256(json.dumps({"root": str(root.resolve()), **settings}, sort_keys=True).encode()).hexdigest()[:16]
    digest = hashlib.sha256(prefix.encode())
    for path in files:
        try:
            stat = path.stat()
            facts = f"{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
        except FileNotFoundError:  # listed (e.g. in CelebA's partition file) but absent: reported when decoded
            facts = "missing"
        digest.update(os.fsencode(os.path.relpath(path, root)) + f"\0{facts}\n".encode())  # a name need not be UTF-8
    return prefix, f"{prefix}-{digest.hexdigest()[:32]}"


def image_folder(
    name: str,
    root: Path,
    files: list[Path],
    split: str,
    channels: int,
    image_size: int,
    max_items: Optional[int],
    strict: bool,
    cache: Union[str, bool, None],
    in_memory: Union[str, bool],
    labels: FileLabels = FileLabels(),
) -> Union[Decoded, ImageFiles]:
    """The images in `files` (all under `root`, with their `labels`), decoded into memory (cached) or streamed."""
    check_image_settings(channels, image_size)
    picks = spread(len(files), max_items)
    files, labels = [files[i] for i in picks], labels.subset(picks)
    settings = {"dataset": name, "split": split, "channels": channels, "image_size": image_size,
                "max_items": max_items, "format": CACHE_FORMAT}
    prefix, key = files_key(files, root, settings)
    return Undecoded(ImageFiles(files, root, channels, image_size, key, strict, labels), name, prefix, cache, in_memory)


@dataclass
class Undecoded:
    """A folder's (or archive's) image files and the settings that say how to hold them: `build`
    decides with the training device's memory whether to decode them into memory or stream them."""

    source: ImageFiles
    name: str  # the dataset option, for the progress bar
    prefix: str  # the cache key's part that names the dataset and settings: older keys with it are dropped
    cache: Union[str, bool, None]
    in_memory: Union[str, bool]


def decoded_or_streamed(files: Undecoded, device: torch.device) -> Union[Decoded, ImageFiles]:
    """The images decoded into memory where `holding` puts them (from the cache when it holds them,
    under the key `source.fingerprint`), or the files themselves to stream; the choice said in one line."""
    source = files.source
    root, labels, strict = source.root, source.labels, source.strict
    nbytes = len(source) * source.channels * source.image_size**2
    decided = holding(nbytes, host_ram(), available_memory(), device_free_memory(device), device, files.in_memory)
    say(decided.message(len(source), nbytes, root), decided.warning)
    if decided.where is None:
        return source
    directory = cache_dir(files.cache)
    if directory:
        for stray in remove_stale(directory, ".*.npz.*.tmp"):  # a cache write that was killed (they are large)
            log.info("Removed %s, left by an interrupted cache write", stray)
    cached = load_cache(directory, source, decided.where) if directory else None
    if cached is not None and labels.labels is not None and cached[1] is None:
        cached = None  # cached by a ganctl that kept no labels: decoded again (its images let go first)
    if cached is not None:
        images, decoded_labels, bad = cached
    else:
        path = directory / f"{source.fingerprint}.npz" if directory else None
        writing = path is not None and cache_room(path, cache_size(len(source), nbytes), announce=True)
        images, decoded_labels, bad = decode_all(source, f"{files.name}: {root}", decided.where)
        if writing:
            save_cache(directory, files.prefix, source.fingerprint, images, decoded_labels, bad)
    report_unreadable(bad, root, strict, len(source))
    if len(images) == 0:
        raise GanctlError(f"None of the {len(source)} image files under {root} could be read; they are not images PIL can open.")
    if labels.labels is None:
        return Decoded(images, source.fingerprint, unlabelled=labels.unlabelled, where=decided.where)
    return Decoded(images, source.fingerprint, decoded_labels, labels.classes, where=decided.where)


def decode_all(source: ImageFiles, description: str, where: torch.device = torch.device("cpu"),
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every file once (DataLoader workers for large folders) with a progress bar into one
    tensor on `where` (batch by batch: on a GPU, host memory holds a batch, not the dataset): the
    images, their labels (-1 without), and the unreadable files."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    workers = loader_workers(len(source))
    loader = torch.utils.data.DataLoader(source, batch_size=64, num_workers=workers, collate_fn=collate)
    images = torch.empty(len(source), source.channels, source.image_size, source.image_size, dtype=torch.uint8, device=where)
    labels = torch.empty(len(source), dtype=torch.long)
    count, bad = 0, []
    columns = (TextColumn("[bold]decoding"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(), TextColumn(description))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("decode", total=len(source))
        for batch, batch_labels, unreadable in loader:
            if len(batch):
                images[count : count + len(batch)] = batch
                labels[count : count + len(batch)] = batch_labels
                count += len(batch)
            bad += unreadable
            progress.advance(task, len(batch) + len(unreadable))
    log.info("Decoded %d images (%d unreadable) with %d workers: %s", count, len(bad), workers, description)
    return images[:count], labels[:count], bad


def folder(
    root: Optional[str],
    image_size: int,
    channels: int,
    max_items: Optional[int],
    strict: bool,
    cache: Union[str, bool, None],
    in_memory: Union[str, bool],
    split: str = "train",
) -> Union[Decoded, ImageFiles]:
    """Every PNG, JPEG, WEBP and BMP image under root (class subfolders or none). With one subfolder
    per class the images are labelled by it (`class_subfolders`)."""
    check_no_test_split(split, "dataset=folder")
    check_image_settings(channels, image_size)
    path = existing_root(require_root(root, "folder", "a folder of images (subfolders are searched too)"))
    if not path.is_dir():
        raise GanctlError(f"dataset.root={root} is a file; dataset=folder needs a folder of images. Point it at the folder that holds them.")
    files = find_images(path)
    if not files:
        raise GanctlError(
            f"No images found under {path}: dataset=folder looks for {', '.join(IMAGE_SUFFIXES)} files in it "
            "and its subfolders. Point dataset.root at the folder that holds your images."
        )
    if (path / LABELS_FILE).is_file():
        names = [Path(os.path.relpath(file, path)).as_posix() for file in files]
        labels = labels_file(read_labels_file(path / LABELS_FILE), names, str(path / LABELS_FILE))
    else:
        labels = class_subfolders(files, path)
    return image_folder("folder", path, files, split, channels, image_size, max_items, strict, cache, in_memory, labels)


# ----------------------------------------------------------------------------- ZIP archives and dataset.json

LABELS_FILE = "dataset.json"  # StyleGAN2-ADA's dataset_tool.py: {"labels": [["00000/img00000000.png", 6], ...]} or null
LABELS_FILE_LIMIT = 256 * 2**20  # bytes of dataset.json read at most
MEMBER_LIMIT = 256 * 2**20  # bytes one image in a ZIP may unpack to
BOMB_RATIO = 200  # an image that unpacks to over 200x its packed size (and over 1 MiB) is a ZIP bomb, not a picture


def read_labels_file(path: Path) -> bytes:
    if path.stat().st_size > LABELS_FILE_LIMIT:
        raise GanctlError(f"{path} is {path.stat().st_size / 2**20:.0f} MiB; a dataset.json of labels is far smaller. Is it the right file?")
    return path.read_bytes()


def labels_file(text: bytes, names: list[str], where: str) -> FileLabels:
    """The class labels of `names` (paths with /, relative to the dataset's root) from a dataset.json
    as StyleGAN2-ADA's and R3GAN's dataset_tool.py write it: {"labels": [[name, class index], ...]},
    or {"labels": null} for none. The classes are "0" to the largest index."""
    form = 'a dataset.json holds {"labels": [["00000/img00000000.png", 6], ...]} (class indices from 0), or {"labels": null}'
    try:
        listed = json.loads(text)
    except (ValueError, RecursionError) as error:  # (UnicodeDecodeError is a ValueError; RecursionError: nested too deep)
        raise GanctlError(f"{where} is not valid JSON ({type(error).__name__}: {str(error)[:200]}): {form}.") from None
    if not isinstance(listed, dict) or "labels" not in listed:
        raise GanctlError(f"{where} has no \"labels\" entry: {form}.")
    if listed["labels"] is None:
        return FileLabels(unlabelled=f"{where} says the images have none (\"labels\": null)")
    pairs = listed["labels"]
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in pairs):
        raise GanctlError(f"{where}'s \"labels\" is not a list of [file name, class index] pairs: {form}.")
    bad = next((pair for pair in pairs if not isinstance(pair[1], int) or isinstance(pair[1], bool) or pair[1] < 0), None)
    if bad is not None:
        raise GanctlError(f"{where} labels {bad[0]} with {bad[1]!r}; ganctl conditions on classes, so each label is a class "
                          "index (0, 1, 2, ...), not a vector or a number with a fraction.")
    label_of: dict[str, int] = {}
    for name, label in pairs:
        if label_of.setdefault(name, label) != label:
            raise GanctlError(f"{where} gives {name} two labels ({label_of[name]} and {label}).")
    unlabelled = [name for name in names if name not in label_of]
    if unlabelled:
        raise GanctlError(f"{where} has no label for {len(unlabelled)} of the {len(names)} images (the first: {unlabelled[0]}): "
                          "it was written for other files. Write it again for these images, or remove it.")
    present = set(names)
    strays = [name for name in label_of if name not in present]
    if strays:
        raise GanctlError(f"{where} labels {len(strays)} file{'s' if len(strays) > 1 else ''} that {'are' if len(strays) > 1 else 'is'} "
                          f"not among the images (the first: {strays[0]}): it was written for other files.")
    labels = [label_of[name] for name in names]
    return FileLabels(labels, [str(index) for index in range(max(labels) + 1)] if labels else None)


class ZipImages(ImageFiles):
    """Image files inside a ZIP archive, decoded one at a time without unpacking the archive; each
    process (DataLoader worker) opens the archive once for itself."""

    def __init__(self, members: list[str], archive: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__([archive / member for member in members], archive, *args, **kwargs)
        self.members = members
        self.opened: Optional[tuple[int, zipfile.ZipFile]] = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "opened": None}  # (a worker opens its own)

    def read(self, member: str) -> bytes:
        if self.opened is None or self.opened[0] != os.getpid():
            self.opened = (os.getpid(), zipfile.ZipFile(self.root))
        return self.opened[1].read(member)

    def __getitem__(self, index: int) -> tuple[Optional[torch.Tensor], int, str]:
        label = -1 if self.labels.labels is None else self.labels.labels[index]
        try:
            image = decode_image(io.BytesIO(self.read(self.members[index])), self.channels, self.image_size)
        except (OSError, ValueError, SyntaxError, struct.error, EOFError, zlib.error, zipfile.BadZipFile,
                NotImplementedError, Image.DecompressionBombError):  # a damaged member, or not an image
            return None, label, str(self.files[index])
        return image, label, str(self.files[index])


def zipped(
    root: Optional[str],
    image_size: Optional[int],
    channels: Optional[int],
    max_items: Optional[int],
    strict: bool,
    cache: Union[str, bool, None],
    in_memory: Union[str, bool],
    split: str = "train",
) -> Union[Decoded, ImageFiles]:
    """The images in a ZIP archive (PNG, JPEG, WEBP, BMP, in any folders inside it), as StyleGAN2-ADA's
    and R3GAN's dataset_tool.py write them, read without unpacking; labelled by the archive's
    dataset.json when it has one. image_size and channels null: the first image's."""
    check_no_test_split(split, "dataset=zip")
    path = existing_root(require_root(root, "zip", "a .zip archive of images (e.g. one written by StyleGAN2-ADA's dataset_tool.py)"))
    if path.is_dir():
        raise GanctlError(f"dataset.root={root} is a folder; dataset=zip reads a .zip archive. For a folder of images use dataset=folder.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise GanctlError(f"{path} is not a readable ZIP archive ({error}): it is damaged or not a ZIP file.") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        images = sorted((info for info in infos if info.filename.lower().endswith(IMAGE_SUFFIXES)
                         and not any(part.startswith(".") or part == "__MACOSX" for part in info.filename.split("/"))),
                        key=lambda info: info.filename)
        if not images:
            raise GanctlError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)} files): is it the dataset's archive?")
        for info in images:
            check_member(info, path)
        names = [info.filename for info in images]
        labels_info = next((info for info in infos if info.filename == LABELS_FILE), None)
        if labels_info is None:
            labels = FileLabels(unlabelled=f"{path} has no {LABELS_FILE} of labels")
        elif labels_info.file_size > LABELS_FILE_LIMIT:
            raise GanctlError(f"{path}'s {LABELS_FILE} unpacks to {labels_info.file_size / 2**20:.0f} MiB; a file of labels is far smaller.")
        else:
            labels = labels_file(read_member(archive, labels_info, path), names, f"{path}'s {LABELS_FILE}")
        first = read_member(archive, images[0], path)
    channels, image_size = native_settings(first, channels, image_size, f"{path}'s {names[0]}")
    check_image_settings(channels, image_size)
    picks = spread(len(names), max_items)
    names, labels = [names[i] for i in picks], labels.subset(picks)
    stat = path.stat()
    prefix = hashlib.sha256(json.dumps({"root": str(path.resolve()), "dataset": "zip", "channels": channels, "image_size": image_size,
                                        "max_items": max_items, "format": CACHE_FORMAT}, sort_keys=True).encode()).hexdigest()[:16]
    digest = hashlib.sha256(f"{prefix}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}".encode())
    for name in names:
        digest.update(name.encode() + b"\0")
    source = ZipImages(names, path, channels, image_size, f"{prefix}-{digest.hexdigest()[:32]}", strict, labels)
    return Undecoded(source, "zip", prefix, cache, in_memory)


def check_member(info: zipfile.ZipInfo, path: Path) -> None:
    """Refuse an image entry that would unpack to far more than an image is (a ZIP bomb)."""
    if info.file_size > MEMBER_LIMIT or (info.file_size > 2**20 and info.file_size > BOMB_RATIO * max(info.compress_size, 1)):
        raise GanctlError(
            f"{path}'s {info.filename} would unpack from {info.compress_size:,} to {info.file_size:,} bytes, which no image "
            "needs: the archive looks like a ZIP bomb, so ganctl reads nothing from it."
        )


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise GanctlError(f"{path}'s {info.filename} cannot be read ({error}): the archive is damaged.") from None


def native_settings(first: bytes, channels: Optional[int], image_size: Optional[int], where: str) -> tuple[int, int]:
    """channels and image_size, each taken from the first image when null: its shorter side; 1 channel
    for a grayscale image, else 3."""
    if channels is not None and image_size is not None:
        return channels, image_size
    try:
        with Image.open(io.BytesIO(first)) as image:
            mode, size = image.mode, min(image.size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise GanctlError(f"{where} is not an image PIL can open ({error}), so the archive's image size is unknown: "
                          "set dataset.image_size and dataset.channels.") from None
    native_channels = 1 if mode in ("1", "L", "LA", "I", "I;16", "F") else 3
    return (native_channels if channels is None else channels), (size if image_size is None else image_size)


def existing_root(root: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise GanctlError(
            f"dataset.root={root} does not exist (resolved to {path.resolve()}). Check the path; a relative "
            "path is taken from the directory you run ganctl in."
        )
    return path


def celeba(
    root: Optional[str],
    image_size: int,
    max_items: Optional[int],
    strict: bool,
    cache: Union[str, bool, None],
    in_memory: Union[str, bool],
    split: str = "train",
) -> Union[Decoded, ImageFiles]:
    """CelebA's aligned faces: torchvision's layout (root/celeba/img_align_celeba/ and the annotation
    files; its official train/test partition) when it is there, otherwise a plain folder of the images
    (every image is a training image). Center-cropped to a square and resized to image_size."""
    check_split(split)
    path = existing_root(require_root(root, "celeba", "the folder that holds celeba/ (torchvision's layout) or the img_align_celeba/ images"))
    if path.name == "celeba" and (path / "list_eval_partition.txt").exists():
        path = path.parent  # pointed at celeba/ itself: torchvision wants the folder above it
    if (path / "celeba" / "list_eval_partition.txt").exists():
        dataset = torchvision_dataset(
            "CelebA", str(path), False,
            "celeba/img_align_celeba/ and the annotation files list_eval_partition.txt, list_attr_celeba.txt, "
            "identity_CelebA.txt, list_bbox_celeba.txt and list_landmarks_align_celeba.txt (their checksums are checked)",
            " To use the images without the annotations, point dataset.root at the img_align_celeba folder itself.",
            split=split, target_type=[],
        )
        images = path / "celeba" / "img_align_celeba"
        files = [images / name for name in dataset.filename]
        return image_folder("celeba", path / "celeba", files, split, 3, image_size, max_items, strict, cache, in_memory, CELEBA_LABELS)
    check_no_test_split(split, f"dataset=celeba as a plain folder of images ({path}, without torchvision's list_eval_partition.txt)")
    files = find_images(path)
    if not files:
        raise GanctlError(
            f"No CelebA images found under {path}. dataset=celeba expects either torchvision's layout "
            f"({path}/celeba/img_align_celeba/ with list_eval_partition.txt and the other annotation files) or "
            "a folder of the aligned face images (img_align_celeba/000001.jpg, ...). Point dataset.root at one of them."
        )
    return image_folder("celeba", path, files, split, 3, image_size, max_items, strict, cache, in_memory, CELEBA_LABELS)


CELEBA_LABELS = FileLabels(unlabelled="CelebA's faces come with attributes, not classes (for classes of your own, "
                                      "sort the images into one subfolder per class and use dataset=folder)")


# ----------------------------------------------------------------------------- Quick, Draw!


def quickdraw(root: Optional[str], image_size: int, max_items: Optional[int], split: str = "train") -> Decoded:
    """Quick, Draw! 28x28 bitmaps: one `.npy` file (N, 784) uint8 or a folder of them; max_items is
    shared evenly between the files (the first ones of each). A folder's files are its classes, each
    named after its file (full_numpy_bitmap_camel.npy: camel), in sorted order."""
    check_no_test_split(split, "dataset=quickdraw")
    path = existing_root(require_root(root, "quickdraw", "a Quick, Draw! .npy bitmap file (e.g. full_numpy_bitmap_camel.npy) or a folder of them"))
    files = find_files(path, (".npy",)) if path.is_dir() else [path]
    if not files:
        raise GanctlError(
            f"No .npy files found under {path}. dataset=quickdraw expects Quick, Draw! numpy bitmaps "
            "(full_numpy_bitmap_<category>.npy, N x 784 uint8). Point dataset.root at one or at their folder."
        )
    check_image_settings(1, image_size)
    arrays = [quickdraw_array(file) for file in files]
    if max_items is not None and max_items < 1:
        raise GanctlError(f"dataset.max_items must be at least 1 (or null for all), got {max_items}.")
    per_file = None if max_items is None else -(-max_items // len(files))  # ceil
    parts = [array[:per_file] for array in arrays]
    count = sum(len(part) for part in parts) if max_items is None else min(sum(len(part) for part in parts), max_items)
    if count * image_size**2 > IN_MEMORY_LIMIT:
        raise GanctlError(
            f"{count:,} Quick, Draw! drawings at {image_size}x{image_size} would take more than 4 GiB in memory. "
            "Set dataset.max_items (e.g. dataset.max_items=200000) to use fewer."
        )
    bitmaps = np.concatenate(parts)[:count]  # reads only these rows from the memory-mapped files
    images = torch.from_numpy(bitmaps).view(-1, 1, 28, 28)
    settings = {"dataset": "quickdraw", "image_size": image_size, "max_items": max_items}
    _, key = files_key(files, path if path.is_dir() else path.parent, settings)
    if not path.is_dir():
        return Decoded(resize(images, image_size), key, unlabelled=(
            f"one Quick, Draw! file is one class ({quickdraw_class(path)}); point dataset.root at a folder of "
            ".npy files, one per class"))
    labels = torch.cat([torch.full((len(part),), i, dtype=torch.long) for i, part in enumerate(parts)])[:count]
    return Decoded(resize(images, image_size), key, labels, quickdraw_classes(files, path))


def quickdraw_class(file: Path) -> str:
    """A Quick, Draw! file's category: full_numpy_bitmap_camel.npy -> camel."""
    return file.stem.removeprefix("full_numpy_bitmap_")


def quickdraw_classes(files: list[Path], root: Path) -> list[str]:
    """Each file's class name; where two files in different subfolders share a name, their paths under root."""
    names = [quickdraw_class(file) for file in files]
    return [name if names.count(name) == 1 else file.relative_to(root).with_suffix("").as_posix()
            for name, file in zip(names, files)]


def quickdraw_array(file: Path) -> np.ndarray:
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise GanctlError(f"{file} is not a readable .npy file ({error}). Quick, Draw! bitmaps are .npy files of N x 784 uint8.") from error
    if array.dtype != np.uint8 or array.ndim != 2 or array.shape[1] != QUICKDRAW_PIXELS or len(array) == 0:
        raise GanctlError(
            f"{file} holds a {array.dtype} array of shape {array.shape}; a Quick, Draw! bitmap file is "
            "N x 784 uint8 (each row a 28x28 drawing), like full_numpy_bitmap_camel.npy from "
            "https://console.cloud.google.com/storage/browser/quickdraw_dataset/full/numpy_bitmap."
        )
    return array


# ----------------------------------------------------------------------------- the decoded-image cache


def cache_dir(setting: Union[str, bool, None]) -> Optional[Path]:
    """dataset.cache: false turns caching off, a path is the directory, null means the default:
    $GANCTL_CACHE_DIR, else $XDG_CACHE_HOME/ganctl, else ~/.cache/ganctl."""
    if setting is False:
        return None
    if setting not in (None, True, ""):
        return Path(str(setting)).expanduser()
    if os.environ.get("GANCTL_CACHE_DIR"):
        return Path(os.environ["GANCTL_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() / "ganctl" if xdg else Path.home() / ".cache" / "ganctl"


CACHE_CHUNK = 2**20  # bytes of pixels read or written at a time: the cache never needs a second copy of the images
CACHE_DISK_MARGIN = 2**30  # bytes that must stay free on the cache's disk after writing it, or it is not written
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def load_cache(directory: Path, source: "ImageFiles", where: torch.device = torch.device("cpu"),
               ) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor], list[str]]]:
    """The cached (images, labels, unreadable paths) of `source` (its fingerprint is the cache key), or
    None. What the file holds is checked before it is used: the key it was written for, one image of
    the source's shape per readable file, labels in range. Anything else (a damaged file, another
    dataset's, an .npz that is not ganctl's) is ignored, and rewritten after decoding. labels is None
    in a file written before ganctl kept them. The pixels are read piece by piece straight into the
    tensor they are kept in, on `where`: the images are never held twice, in host memory or on a GPU."""
    path = directory / f"{source.fingerprint}.npz"
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as arrays:
            names = set(arrays.namelist())
            if "key.npy" not in names or str(small_array(arrays, "key.npy")) != source.fingerprint:
                raise ValueError("it was not written for these files")
            bad = small_array(arrays, "unreadable.npy").tolist()
            labels = torch.from_numpy(small_array(arrays, "labels.npy").astype(np.int64)) if "labels.npy" in names else None
            with arrays.open("images.npy") as member:
                shape = cached_shape(member, len(source) - len(bad), source)
                images = torch.empty(shape, dtype=torch.uint8, device=where)
                read_pixels(member, images)
        check_cached(images, labels, bad, source)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:  # (RuntimeError: an encrypted member)
        warn(f"ignoring the cache file {path} ({error}); decoding again")
        return None
    log.info("Loaded %d decoded images from the cache %s", len(images), path)
    return images, labels, bad


def small_array(arrays: zipfile.ZipFile, name: str) -> np.ndarray:
    with arrays.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def cached_shape(member: IO[bytes], count: int, source: "ImageFiles") -> tuple[int, ...]:
    """The image array's shape from its .npy header, refused (ValueError) unless it is uint8 in C
    order and of the shape decoding `source` gives: nothing is allocated for a file that is not."""
    version = np.lib.format.read_magic(member)
    if version not in NPY_HEADERS:
        raise ValueError(f"its images are in .npy format {version}, not 1.0 or 2.0")
    shape, fortran_order, dtype = NPY_HEADERS[version](member)
    expected = (count, source.channels, source.image_size, source.image_size)
    if dtype != np.uint8 or fortran_order or tuple(shape) != expected:
        raise ValueError(f"it holds {dtype} images of shape {tuple(shape)}, not uint8 {expected}")
    return expected


def read_pixels(member: IO[bytes], images: torch.Tensor) -> None:
    """Fill `images` (uint8, on any device) from the file, CACHE_CHUNK bytes at a time."""
    flat = images.view(-1)
    host = flat.numpy() if images.device.type == "cpu" else None  # (numpy's assignment: the fastest copy here)
    for start in range(0, flat.numel(), CACHE_CHUNK):
        size = min(CACHE_CHUNK, flat.numel() - start)
        chunk = member.read(size)
        if len(chunk) != size:
            raise ValueError("it ends before its last image (a write that did not finish)")
        pixels = np.frombuffer(chunk, dtype=np.uint8)
        if host is not None:
            host[start : start + size] = pixels
        else:  # to the GPU, from a writable copy of the piece
            flat[start : start + size].copy_(torch.from_numpy(pixels.copy()))


def check_cached(images: torch.Tensor, labels: Optional[torch.Tensor], bad: list[str], source: "ImageFiles") -> None:
    """Raise ValueError unless the cached arrays are what decoding `source` gives: one uint8 image of
    its channels and size per readable file, and a label per image from its classes (-1: none)."""
    shape = (len(source) - len(bad), source.channels, source.image_size, source.image_size)
    if images.dtype != torch.uint8 or tuple(images.shape) != shape:
        raise ValueError(f"it holds {images.dtype} images of shape {tuple(images.shape)}, not uint8 {shape}")
    if not set(bad) <= {str(path) for path in source.files}:
        raise ValueError("it lists unreadable files that are not in the folder")
    if labels is None:
        return
    low, high = (-1, -1) if source.labels.classes is None else (0, len(source.labels.classes) - 1)  # -1: no label
    if labels.shape != (len(images),) or (len(labels) and not (low <= int(labels.min()) and int(labels.max()) <= high)):
        raise ValueError(f"its labels are not one per image, from {low} to {high}")


def save_cache(directory: Path, prefix: str, key: str, images: torch.Tensor, labels: torch.Tensor, bad: list[str]) -> None:
    """Write the .npz atomically (temporary file, then rename), the images piece by piece from wherever
    they are kept, once the disk is known to have room for it (`cache_room`); drop older versions of
    the same dataset. Whatever stops the write leaves no file of it behind."""
    path = directory / f"{key}.npz"
    small = {"labels": labels.cpu().numpy(), "key": np.array(key), "unreadable": np.array(bad, dtype=str)}
    if not cache_room(path, images.nbytes + sum(array.nbytes for array in small.values()) + 4096):
        return

    def write(f: IO[bytes]) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as arrays:  # np.savez's layout: np.load reads it
            with arrays.open("images.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                          "shape": tuple(images.shape)}
                np.lib.format.write_array_header_1_0(member, header)
                rows = max(1, CACHE_CHUNK // max(images[0].numel(), 1)) if len(images) else 1
                for start in range(0, len(images), rows):
                    member.write(images[start : start + rows].cpu().contiguous().numpy().tobytes())
            for name, array in small.items():
                with arrays.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    try:
        write_atomically(path, write)
        for old in directory.glob(f"{prefix}-*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as error:  # a read-only or full disk costs a re-decode next time, not the run
        warn(f"could not write the dataset cache {path} ({error}); set dataset.cache=<folder> or dataset.cache=false")


def cache_size(count: int, nbytes: int) -> int:
    """About the bytes of a cache file of `count` images taking `nbytes`: the pixels, an int64 label each, headers."""
    return nbytes + 8 * count + 4096


def cache_room(path: Path, size: int, announce: bool = False) -> bool:
    """Whether the disk that holds `path` has room for a cache file of `size` bytes with CACHE_DISK_MARGIN
    to spare. Without, a warning names the size and the free space (the run goes on, uncached);
    `announce` also says where the cache goes and how large it is when it fits."""
    free = disk_free(path.parent)
    if free is not None and size + CACHE_DISK_MARGIN > free:
        warn(f"not caching the decoded images: the cache file {path} would take {amount(size)}, and its disk has "
             f"{amount(free)} free (ganctl leaves {amount(CACHE_DISK_MARGIN)} free). Training goes on; the next run decodes "
             "again. Free some space, or point dataset.cache at a larger disk (dataset.cache=false: no cache).")
        return False
    if announce:
        say(f"Caching the decoded images in {path} ({amount(size)}"
            + (f"; {amount(free)} free there)" if free is not None else ")"))
    return True


def disk_free(folder: Path) -> Optional[int]:
    """Bytes free on the disk that holds `folder` (or its nearest existing parent), or None where unknown."""
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    try:
        return None if existing is None else shutil.disk_usage(existing).free
    except OSError:
        return None


# ----------------------------------------------------------------------------- streaming


class StreamingImages:
    """A folder too large for memory, decoded on the fly by DataLoader workers (same interface as
    InMemoryImages). Batches come from shuffled passes over the files, seeded once from torch's global
    RNG: a run is repeatable from its seed, but a resumed run does not continue the exact stream.
    Each file's label (its class subfolder) travels with it through the workers. Mirrored, every other
    pass gives the images x-flipped, so each image and its flip are seen equally often."""

    def __init__(self, files: ImageFiles, device: torch.device, mirror: bool = False) -> None:
        self.files, self.device, self.mirror = files, device, mirror
        self.channels, self.image_size, self.fingerprint = files.channels, files.image_size, files.fingerprint
        self.classes, self.unlabelled = files.labels.classes, files.labels.unlabelled
        self.unreadable: set[str] = set()
        self.stream: Optional[Iterator[tuple[torch.Tensor, torch.Tensor]]] = None
        self.stream_batch_size = 0
        self.pending = torch.empty(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        self.pending_labels = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.files)

    def loader(self, batch_size: int, shuffle: bool, generator: Optional[torch.Generator] = None):
        return torch.utils.data.DataLoader(
            self.files, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate,
            num_workers=loader_workers(len(self.files)), pin_memory=self.device.type == "cuda",
            persistent_workers=shuffle and loader_workers(len(self.files)) > 0, prefetch_factor=None,
        )

    def checked(self, batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The decoded images of each batch and their labels; unreadable files are reported (or raise, when strict)."""
        for images, labels, bad in batches:
            new = [path for path in bad if path not in self.unreadable]
            if new:
                self.unreadable.update(new)
                if len(self.unreadable) == len(self.files):
                    raise GanctlError(f"None of the {len(self.files)} image files under {self.files.root} could be read; they are not images PIL can open.")
                report_unreadable(sorted(self.unreadable), self.files.root, self.files.strict, len(self.files))
            if len(images):
                yield images, labels

    def sample(self, batch_size: int) -> torch.Tensor:
        """The next batch of a shuffled pass over the files, scaled to [-1, 1] like tanh."""
        return self.sample_labelled(batch_size, labels=False)[0]

    def sample_labelled(self, batch_size: int, labels: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """`sample`'s batch and the images' labels (B,)."""
        if labels:
            require_labels(self)
        if self.stream is None or batch_size != self.stream_batch_size:
            seed = int(torch.randint(2**62, (1,)).item())  # from the global RNG: repeatable per run seed
            generator = torch.Generator().manual_seed(seed)
            loader = self.loader(batch_size, True, generator)
            passes = (flipped(loader, self.mirror and number % 2 == 1) for number in numbers())  # each pass reshuffles
            self.stream, self.stream_batch_size = self.checked(chain.from_iterable(passes)), batch_size
        while len(self.pending) < batch_size:  # unreadable files leave a batch short: top it up
            images, batch_labels = next(self.stream)
            self.pending, self.pending_labels = torch.cat([self.pending, images]), torch.cat([self.pending_labels, batch_labels])
        batch, self.pending = self.pending[:batch_size], self.pending[batch_size:]
        batch_labels, self.pending_labels = self.pending_labels[:batch_size], self.pending_labels[batch_size:]
        images = batch.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)  # (B, C, H, W)
        return images, (batch_labels.to(self.device) if labels else None)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Every readable image once, in order, as uint8 batches (B, C, H, W) on the device."""
        for images, _ in self.checked(self.loader(batch_size, False)):
            yield images.to(self.device)

    def labelled_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`batches` with each batch's labels (B,) beside it."""
        require_labels(self)
        for images, labels in self.checked(self.loader(batch_size, False)):
            yield images.to(self.device), labels.to(self.device)


def flipped(batches, flip: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """A loader's (images, labels, unreadable) batches, the images x-flipped when `flip`."""
    for images, labels, bad in batches:
        yield (images.flip(-1) if flip and len(images) else images), labels, bad

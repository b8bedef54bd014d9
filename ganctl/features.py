"""The metrics' feature extractors beyond Inception: DINOv2 and CLIP, the two resizers every
pretrained backbone can be fed through, and the one weights policy they share with Inception.

    module = features.build_pretrained("dinov2", "clean", device, configured=None)  # nn.Module
    features = module(images)  # uint8 (B, C, H, W) at the dataset's size -> (B, D)

Each extractor repeats grayscale to RGB, resizes to its network's input size with the chosen
resizer, normalises as its network was trained, and returns the network's image embedding:

- `dinov2` (Oquab et al. 2023; the FD-DINOv2 of Stein et al. 2023 and their dgm-eval): DINOv2's ViT
  built by timm (`vit_large_patch14_dinov2` by default; `dinov2-vits14`, `-vitb14`, `-vitl14`,
  `-vitg14` as dgm-eval names them), 224x224 input, ImageNet mean and std, and its feature the final
  norm's class token, which DINOv2's own forward returns. The weights are Meta's published backbone
  files (the ones torch.hub's facebookresearch/dinov2 and so dgm-eval download); the position
  embedding is resampled from their 37x37 grid to 16x16 as DINOv2's `interpolate_pos_encoding` does
  at every forward (bicubic, no antialiasing, the 0.1 offset), once, at load.
- `clip`: OpenAI CLIP ViT-B/32's image tower as torch-fidelity 0.4 ports OpenAI's code
  (`CLIPVisual`), 224x224 input, CLIP's mean and std, its 512-d projected embedding, weights rounded
  to fp16 as OpenAI ships them. torch-fidelity reads OpenAI's TorchScript file with torch.jit.load,
  which can run code; ganctl reads the same weights as a plain state dict (safetensors or a torch
  file read with weights_only), the file open_clip publishes them in.

Resizers (`metrics.resize`):

- `tf1`: TensorFlow 1.x's bilinear interpolation (torch-fidelity's bit-exact port), what the original
  FID code, stylegan2-ada's metrics and torch-fidelity do;
- `clean`: PIL's bicubic on each channel in float, clipped to [0, 255], as clean-fid (Parmar et al.
  2022) and dgm-eval's `--clean_resize` do. Inception takes uint8 in torch-fidelity, so there the
  result is rounded to uint8 first (clean-fid feeds the floats); DINOv2 and CLIP take the floats.

Weights (`find_weights`): a file named in the config (or on eval's command line), else the file in
an environment variable, else torch's hub cache, else downloaded there once when online, checked
against its published SHA-256 where ganctl knows it; offline without the file, one message that names
the file and where to put it. Files are read with torch.load(weights_only=True) or safetensors.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ganctl.console import console, warn
from ganctl.errors import GanctlError

RESIZERS = ("tf1", "clean")
RESIZER_TITLES = {"tf1": "bilinear, TensorFlow 1.x compatible", "clean": "PIL bicubic in float (clean-fid)"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
DINOV2_INPUT, CLIP_INPUT = 224, 224
DINOV2_GRID_OFFSET = 0.1  # DINOv2's interpolate_offset ("a historical kludge" against rounding)


@dataclass(frozen=True)
class WeightsFile:
    """Where a backbone's published weights come from and how ganctl finds them."""

    title: str  # "DINOv2 ViT-L/14"
    file: str  # the published file's name, as it lies in torch's hub cache
    url: str
    sha256: Optional[str]  # the published file's SHA-256 (a prefix), or None where ganctl has none to check
    env: str  # the environment variable that may point at it
    setting: str  # the config key that may point at it
    flag: str  # ganctl eval's flag that may point at it
    uses: str  # what needs it, for the message


DINOV2_SIZES = {  # dgm-eval's names -> (timm's architecture, title, the published parameter count, in millions)
    "vits14": ("vit_small_patch14_dinov2", "ViT-S/14", 21),
    "vitb14": ("vit_base_patch14_dinov2", "ViT-B/14", 86),
    "vitl14": ("vit_large_patch14_dinov2", "ViT-L/14", 300),
    "vitg14": ("vit_giant_patch14_dinov2", "ViT-g/14", 1100),
}
DINOV2_DEFAULT = "vitl14"


def dinov2_weights(size: str) -> WeightsFile:
    title = DINOV2_SIZES[size][1]
    return WeightsFile(
        f"DINOv2 {title}", f"dinov2_{size}_pretrain.pth", f"https://dl.fbaipublicfiles.com/dinov2/dinov2_{size}/dinov2_{size}_pretrain.pth",
        None, "GANCTL_DINOV2_WEIGHTS", "metrics.feature_weights", "--feature-weights", "metrics.feature=dinov2",
    )


# The file at a fixed revision of the Hugging Face repository, so that its SHA-256 (the LFS object id Hugging
# Face lists for it: 605,143,284 bytes) stays the file's. DINOv2's files have no published SHA-256 that
# ganctl could find (docs/metrics.md, "Their hashes").
CLIP_REVISION = "a6f597a30f7b82c51704746581f9a4e41421e878"
CLIP_WEIGHTS = WeightsFile(
    "CLIP ViT-B/32 (OpenAI)", "open_clip_model.safetensors",
    f"https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/{CLIP_REVISION}/open_clip_model.safetensors",
    "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
    "GANCTL_CLIP_WEIGHTS", "metrics.feature_weights", "--feature-weights", "metrics.feature=clip",
)
CLIP_VISUAL = {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768, "vision_patch_size": 32}
CLIP_PARAMETERS = 87.85  # millions: the image tower of ViT-B/32 (open_clip's model table)


# --------------------------------------------------------------------------- where weights files come from


def hub_path(spec: WeightsFile) -> Path:
    """torch.hub's cache for the file: $TORCH_HOME/hub/checkpoints, by default ~/.cache/torch/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.file


def missing_message(spec: WeightsFile, reason: str) -> str:
    checked = f" (its SHA-256 starts with {spec.sha256[:8]})" if spec.sha256 else ""
    return (
        f"{spec.uses} needs the {spec.title} weights file {spec.file}{checked}, and {reason}. On a machine with internet, "
        f"download it from {spec.url} and put it in {hub_path(spec).parent}/ (torch's hub cache, found automatically), "
        f"or anywhere and point at it with the environment variable {spec.env}=/path/to/{spec.file}, the config key "
        f"{spec.setting}=/path/to/{spec.file} (ganctl train) or {spec.flag} (ganctl eval)."
    )


def find_weights(spec: WeightsFile, configured: Optional[str] = None) -> Path:
    """The local weights file: `configured` (the config key or eval's flag), else the environment
    variable, else torch's hub cache, downloading it there once when online (checked against the
    published SHA-256 where ganctl has it). A GanctlError naming the file and where to put it when
    none of these works."""
    for where, value in ((spec.setting, configured), (spec.env, os.environ.get(spec.env))):
        if value:
            path = Path(value).expanduser()
            if path.is_file():
                return path
            raise GanctlError(missing_message(spec, f"{where} points at {path}, which is not a file"))
    cached = hub_path(spec)
    if cached.is_file():
        return cached
    console.print(f"Downloading the {spec.title} weights once, into {cached} ...")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(spec.url, str(cached), hash_prefix=spec.sha256, progress=False)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as error:  # offline, refused, bad hash
        reason = f"it is not in {cached.parent} and downloading it failed ({type(error).__name__}: {error})"
        raise GanctlError(missing_message(spec, reason)) from None
    return cached


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checked_sha256(spec: WeightsFile, path: Path) -> str:
    """The file's SHA-256, with a warning when ganctl knows the published one and this is not it."""
    sha256 = file_sha256(path)
    if spec.sha256 and not sha256.startswith(spec.sha256):
        warn(f"{path} is not the published {spec.file} (SHA-256 {sha256[:12]}...): its scores are not comparable with published ones.")
    return sha256


def read_state_dict(spec: WeightsFile, path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors by name: safetensors, or a torch file read with weights_only (a file
    whose objects could run code when unpickled is refused before anything of it is used)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise GanctlError(missing_message(spec, f"{path} cannot be read as safetensors ({type(error).__name__})")) from None
    if is_torchscript(path):
        raise GanctlError(f"Refusing to load {path}: it is a TorchScript archive, whose code could run when loaded (OpenAI's "
                          "own CLIP files are). " + missing_message(spec, "this file is not it"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GanctlError(f"Refusing to load {path}: it holds objects that could run code when unpickled (a TorchScript "
                          "archive or a pickled model). " + missing_message(spec, "this file is not it")) from None
    except Exception as error:  # torch.load fails in many ways on a truncated or foreign file
        raise GanctlError(missing_message(spec, f"{path} cannot be read ({type(error).__name__}: truncated or not a PyTorch file)")) from None
    for key in ("model", "state_dict"):  # a training checkpoint keeps the weights one level down
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise GanctlError(missing_message(spec, f"{path} holds no state dict of tensors"))
    return state


def is_torchscript(path: Path) -> bool:
    """Whether a file is a TorchScript archive: a zip holding code/ beside its tensors."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def load_into(module: nn.Module, state: dict[str, torch.Tensor], spec: WeightsFile, path: Path) -> None:
    """Every weight of the architecture from the file, and nothing else (keys and shapes exactly)."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise GanctlError(missing_message(spec, f"{path} holds other weights ({detail[:200]})")) from None


# --------------------------------------------------------------------------- resizers


def resize_tf1(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (B, 3, H, W) in [0, 255] -> (B, 3, size, size) by TensorFlow 1.x's bilinear
    interpolation (torch-fidelity's port; the identity at the same size)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(images, size=(size, size), align_corners=False)


def resize_clean(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (B, 3, H, W) with values in [0, 255] -> float (B, 3, size, size) by PIL's bicubic on each
    channel in float mode, clipped to [0, 255]: clean-fid's resize (on the CPU, image by image)."""
    from PIL import Image

    pixels = images.detach().float().cpu().numpy()  # (B, 3, H, W)
    out = np.empty((*pixels.shape[:2], size, size), dtype=np.float32)
    for index, image in enumerate(pixels):
        for channel, plane in enumerate(image):
            resized = Image.fromarray(plane, mode="F").resize((size, size), resample=Image.BICUBIC)
            out[index, channel] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out).to(images.device)


def resized(images: torch.Tensor, size: int, resizer: str) -> torch.Tensor:
    """uint8 images (B, 1 or 3, H, W) as float RGB (B, 3, size, size) in [0, 255], through `resizer`."""
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)  # grayscale -> RGB
    if resizer == "clean":
        return resize_clean(images, size)
    return resize_tf1(images.float(), size)


def describe_resize(resizer: str, size: int, note: str = "") -> str:
    """What a card's `resize` says: the resizer by name, what it is, the size."""
    return f"{resizer}: {RESIZER_TITLES[resizer]}, to {size}x{size}{note}"


def check_resizer(resizer: Any) -> str:
    if resizer not in RESIZERS:
        raise GanctlError(f"metrics.resize must be one of {', '.join(RESIZERS)} (tf1: TensorFlow 1.x bilinear, as the "
                          f"original FID; clean: clean-fid's PIL bicubic), got {resizer!r}.")
    return resizer


# --------------------------------------------------------------------------- DINOv2


def dinov2_position_embedding(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """DINOv2's position embedding (1, 1 + M*M, D) for a grid x grid patch input, as its
    `interpolate_pos_encoding` computes it at every forward (bicubic with a scale factor of
    (grid + 0.1) / M, no antialiasing); unchanged when the grids agree."""
    patches = pos_embed.shape[1] - 1
    side = int(round(patches ** 0.5))
    if side == grid:
        return pos_embed
    class_token, patch_grid = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    scale = (grid + DINOV2_GRID_OFFSET) / side
    patch_grid = nn.functional.interpolate(
        patch_grid.reshape(1, side, side, -1).permute(0, 3, 1, 2), scale_factor=(scale, scale), mode="bicubic", antialias=False,
    )  # (1, D, grid, grid)
    return torch.cat([class_token, patch_grid.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1).to(pos_embed.dtype)


def dinov2_state(state: dict[str, torch.Tensor], grid: int) -> dict[str, torch.Tensor]:
    """Meta's DINOv2 backbone file in timm's names: the mask token (for masked training) dropped,
    ViT-g's SwiGLU halves renamed (w12 -> fc1, w3 -> fc2), the position embedding for `grid`."""
    converted = {}
    for key, value in state.items():
        if key == "mask_token":
            continue
        key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        converted[key] = dinov2_position_embedding(value, grid) if key == "pos_embed" else value
    return converted


def dinov2_network(size: str) -> nn.Module:
    """DINOv2's ViT of `size` with random weights, at 224x224, returning its normed class token."""
    try:
        import timm
    except ImportError:
        raise GanctlError("metrics.feature=dinov2 builds DINOv2's network with timm: pip install 'ganctl[features]' "
                          "(or pip install timm).") from None
    return timm.create_model(DINOV2_SIZES[size][0], pretrained=False, img_size=DINOV2_INPUT, num_classes=0)


class DINOv2Features(nn.Module):
    """uint8 images (B, C, H, W) -> DINOv2's class token (B, 384 | 768 | 1024 | 1536)."""

    def __init__(self, size: str, weights: Path, resizer: str, spec: WeightsFile) -> None:
        super().__init__()
        self.net = dinov2_network(size)
        load_into(self.net, dinov2_state(read_state_dict(spec, weights), DINOV2_INPUT // 14), spec, weights)
        self.resizer = resizer
        self.resize = describe_resize(resizer, DINOV2_INPUT)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (resized(images, DINOV2_INPUT, self.resizer) - self.mean) / self.std  # (B, 3, 224, 224)
        return self.net(x)


# --------------------------------------------------------------------------- CLIP


def clip_network() -> nn.Module:
    """CLIP ViT-B/32's image tower (torch-fidelity's port of OpenAI's code) with random weights."""
    from torch_fidelity.feature_extractor_clip import CLIPVisual

    return CLIPVisual(**CLIP_VISUAL)


class CLIPFeatures(nn.Module):
    """uint8 images (B, C, H, W) -> CLIP ViT-B/32's image embedding (B, 512)."""

    def __init__(self, weights: Path, resizer: str, spec: WeightsFile = CLIP_WEIGHTS) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_clip import convert_weights

        self.net = clip_network()
        visual = {key: value for key, value in read_state_dict(spec, weights).items() if key.startswith("visual.")}
        load_into(self.net, visual, spec, weights)
        convert_weights(self.net)  # OpenAI's fp16 weights, as torch-fidelity holds them ...
        self.net.float()  # ... computed in fp32
        self.resizer = resizer
        self.resize = describe_resize(resizer, CLIP_INPUT)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (resized(images, CLIP_INPUT, self.resizer) - self.mean) / self.std  # (B, 3, 224, 224)
        return self.net.visual(x)


# --------------------------------------------------------------------------- by name

def dinov2_size(name: str) -> Optional[str]:
    """`dinov2` -> vitl14, `dinov2-vits14` -> vits14; None for other names."""
    if name == "dinov2":
        return DINOV2_DEFAULT
    return name.removeprefix("dinov2-") if name.startswith("dinov2-") and name.removeprefix("dinov2-") in DINOV2_SIZES else None


def weights_of(name: str) -> WeightsFile:
    size = dinov2_size(name)
    return dinov2_weights(size) if size is not None else CLIP_WEIGHTS


def build_pretrained(name: str, resizer: str, device: torch.device, configured: Optional[str] = None) -> tuple[nn.Module, str, str]:
    """`dinov2[-size]` or `clip`: the extractor on `device` in eval mode, its card name and its weights' SHA-256."""
    spec = weights_of(name)
    path = find_weights(spec, configured)
    sha256 = checked_sha256(spec, path)
    size = dinov2_size(name)
    if size is not None:
        module: nn.Module = DINOv2Features(size, path, resizer, spec)
        title = f"dinov2 {DINOV2_SIZES[size][1]} class token {module.net.num_features}-d (timm)"
    else:
        module = CLIPFeatures(path, resizer, spec)
        title = "clip ViT-B/32 image embedding 512-d (torch-fidelity)"
    return module.to(device).eval().requires_grad_(False), title, sha256

"""Writing pictures: animations as GIF (Pillow) or MP4 (imageio with its bundled ffmpeg, the optional
`ganctl[video]` extra), a caption on a frame, and matplotlib without a display.

Frames are uint8 arrays (H, W) or (H, W, 3), all of one size."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ganctl.arguments import check_fps
from ganctl.errors import GanctlError
from ganctl.files import write_atomically, write_by_name

ANIMATION_SUFFIXES = (".gif", ".mp4")
VIDEO_EXTRA = "pip install 'ganctl[video]'  (imageio and imageio-ffmpeg, a bundled ffmpeg)"


def check_animation_path(path: Path, option: str = "--out") -> Path:
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise GanctlError(f"{option} {path}: an animation is written as .gif or .mp4, not {path.suffix or 'a file without a suffix'}.")
    if path.is_dir():
        raise GanctlError(f"{option} {path} is a directory: give a file name such as {path / 'walk.gif'}.")
    if path.suffix.lower() == ".mp4":
        video_writer()  # fail before any work when the extra is missing
    return path


def video_writer() -> Any:
    """imageio's ffmpeg writer factory; a GanctlError naming the extra when it is not installed."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (imageio finds its ffmpeg binary through it)
    except ImportError:
        raise GanctlError(f"Writing MP4 needs imageio and imageio-ffmpeg, which are not installed: {VIDEO_EXTRA}. "
                          "Or write a GIF (--out FILE.gif), which needs nothing more.") from None
    return imageio.get_writer


def write_animation(frames: Sequence[np.ndarray], path: Path, fps: float = 8.0) -> Path:
    """Frames (H, W) or (H, W, 3) uint8 as a looping GIF or an MP4 at `path` (by its suffix)."""
    from PIL import Image

    if not frames:
        raise GanctlError("No frames to write.")
    check_fps(fps)
    path = check_animation_path(Path(path))
    try:
        if path.suffix.lower() == ".gif":
            images = [Image.fromarray(frame) for frame in frames]
            # Pillow merges identical neighbouring frames into one longer frame; the timing stays the same.
            write_atomically(path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                                              duration=round(1000 / fps), loop=0))
        else:
            get_writer = video_writer()
            write_by_name(path, lambda name: write_video(get_writer, name, frames, fps))
    except OSError as error:
        raise GanctlError(f"Cannot write {path}: {error}") from error
    return path


def write_video(get_writer: Any, path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    with get_writer(path, fps=fps, codec="libx264", quality=8, pixelformat="yuv420p", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(even_rgb(frame))


def even_rgb(frame: np.ndarray) -> np.ndarray:
    """A frame as RGB with even height and width (yuv420p needs them), padded with its edge."""
    rgb = np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def grid_frame(images: Any, nrow: int) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] as one uint8 grid frame (H', W') or (H', W', 3), as save_image draws it."""
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))  # (3, H', W') in [0, 1]
    array = grid.mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return array[..., 0] if images.shape[1] == 1 else array


def captioned(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame (grayscale (H, W) or RGB (H, W, 3)) with a band above it holding `text` in white
    (Pillow's built-in font: no font files needed); it stays grayscale when it was."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
    font = ImageFont.load_default()
    band = 14
    canvas = Image.new(image.mode, (image.width, image.height + band), 0)
    canvas.paste(image, (0, band))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=255 if image.mode == "L" else (255, 255, 255), font=font)
    return np.asarray(canvas)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed); a clear error when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GanctlError("Plots need matplotlib, which is not installed: pip install matplotlib "
                          "(it is a dependency of ganctl; reinstall with pip install ganctl).") from None
    return plt

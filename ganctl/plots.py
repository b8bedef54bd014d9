"""Pictures of a run: its curves (`curves.png`, `ganctl plot RUN`), a sweep's curves one line per job
(`ganctl plot SWEEP`), and the fixed-latent grids as an animation (`ganctl animate RUN`).

The curves are read back from the run's own TensorBoard events (<run>/tb), which the run flushes as it
goes: every command here works on a run still in progress, offline, and needs nothing but the run
directory. matplotlib draws on its Agg backend (no display)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable, Optional

from ganctl.console import console, warn
from ganctl.errors import GanctlError
from ganctl.files import write_atomically

CURVES_FILE = "curves.png"
FIGURE_INCHES, DPI = (12.0, 7.0), 100  # curves.png is 1200 x 700 pixels whatever it holds

Series = dict[str, tuple[list[int], list[float]]]  # tag -> (steps, values)

# The panels of curves.png, in order: a title and which TensorBoard tags it draws. Empty ones are left out.
SCHEDULES = "schedules (each over its largest value)"  # train.schedules' knobs, drawn on one scale
BEFORE_UNITS = ("gradient_penalty", "r1_penalty", "r2_penalty", "path_length")  # the regularisers' tags in older runs
PANELS: list[tuple[str, Callable[[str], bool]]] = [
    ("losses", lambda tag: tag.startswith("loss/")),
    ("D's view of real and fake", lambda tag: tag.startswith("d/") or tag == "wasserstein"),
    ("regularisers", lambda tag: tag.startswith("reg/") or tag in BEFORE_UNITS),
    ("auxiliary classifier", lambda tag: tag.startswith("classifier/")),
    ("augmentation (ADA)", lambda tag: tag.startswith("augment/")),
    ("learning rates", lambda tag: tag.startswith("lr/")),
    (SCHEDULES, lambda tag: tag.startswith("schedule/")),
    ("image-quality metrics", lambda tag: tag.startswith("metrics/") and tag.count("/") == 1),
    ("collapse guard's branch", lambda tag: tag == "guard/branch"),  # train.guard: set at each rollback or stop
]


def read_scalars(run_dir: Path) -> Series:
    """Every scalar the run logged to TensorBoard, by tag: (steps, values) in step order. A resumed
    run's events are one history (the writer purges steps a resume redoes)."""
    tb = Path(run_dir) / "tb"
    if not tb.is_dir():
        raise GanctlError(f"{run_dir} has no TensorBoard logs (tb/) to draw curves from: pass a ganctl run directory "
                          "(one `ganctl train` wrote). A checkpoint alone holds no history of losses.")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        events = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
        events.Reload()
        series: Series = {}
        for tag in events.Tags().get("scalars", []):
            by_step = {event.step: event.value for event in events.Scalars(tag)}  # a purged-then-redone step: the last
            steps = sorted(by_step)
            series[tag] = (steps, [by_step[step] for step in steps])
    except Exception as error:  # corrupt or foreign event files fail deep inside tensorboard, in many ways
        raise GanctlError(f"Cannot read the TensorBoard events in {tb} ({type(error).__name__}: "
                          f"{str(error).strip()[:200]}): they are damaged or not TensorBoard's.") from None
    if not series:
        files = [path for path in tb.rglob("events.out.tfevents.*") if path.stat().st_size > 0]
        raise GanctlError(f"No scalars in the TensorBoard events of {tb}: " + (
            "the run has not reached its first train.log_every step yet." if not files else
            f"the run has not reached its first train.log_every step yet, or its {len(files)} event file"
            f"{' is' if len(files) == 1 else 's are'} damaged (TensorBoard skips records it cannot read)."))
    return series


def curves_figure(series: Series, title: str) -> Any:
    """A matplotlib figure with one panel per kind of curve that has data."""
    from ganctl.pictures import pyplot

    panels = [(name, sorted(tag for tag in series if wanted(tag))) for name, wanted in PANELS]
    panels = [(name, tags) for name, tags in panels if tags]
    if not panels:
        raise GanctlError("No losses logged yet: the run has not reached its first train.log_every step.")
    plt = pyplot()
    columns = 2 if len(panels) <= 4 else 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=FIGURE_INCHES, dpi=DPI, squeeze=False)
    for axis, (name, tags) in zip(axes.flat, panels):
        for tag in tags:
            steps, values = series[tag]
            label = tag
            if name == SCHEDULES:  # knobs of every scale (lr 1e-4, a half-life of 1e3 kimg) on one axis
                largest = max(abs(value) for value in values) or 1.0
                values, label = [value / largest for value in values], f"{tag} (/ {largest:.3g})"
            axis.plot(steps, values, label=label, marker="." if len(steps) < 20 else None)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def save_figure(figure: Any, out: Path) -> Path:
    from ganctl.pictures import pyplot

    try:
        write_atomically(out, lambda f: figure.savefig(f, dpi=DPI, format=out.suffix[1:].lower() or None))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    finally:
        pyplot().close(figure)
    return out


def plot_run(run_dir: str | Path, out: Optional[str | Path] = None) -> Path:
    """curves.png of a run (or `out`), from its TensorBoard events."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / CURVES_FILE
    check_png(out)
    series = read_scalars(run_dir)
    return save_figure(curves_figure(series, f"{run_dir.name}: step {max((s[0][-1] for s in series.values()), default=0)}"), out)


def write_curves(run_dir: Path) -> Optional[Path]:
    """The end of a run: curves.png, or a warning (a picture never fails a run)."""
    try:
        return plot_run(run_dir)
    except GanctlError as error:
        warn(f"no {CURVES_FILE}: {error}")
        return None


def sweep_figure(sweep_dir: Path) -> tuple[Any, int]:
    """A sweep's jobs overlaid, one line per job in each panel, labelled by their swept values:
    (the figure, the number of jobs drawn)."""
    from ganctl import sweep
    from ganctl.pictures import pyplot

    rows = sweep.read_sweep(sweep_dir)
    jobs = []
    for row in rows:
        try:
            series = read_scalars(Path(row["run_dir"]))
        except GanctlError:
            continue  # a job that failed before logging anything
        label = ", ".join(f"{key}={value}" for key, value in row["values"].items()) or f"job {row['job']}"
        jobs.append((label, series))
    if not jobs:
        raise GanctlError(f"{sweep_dir}: no job of this sweep has logged anything yet (it has {len(rows)} job"
                          f"{'' if len(rows) == 1 else 's'}); plot it again once its jobs pass train.log_every.")
    tags = [tag for tag in ("loss/d", "loss/g", "wasserstein", "d/real", "d/fake") if any(tag in series for _, series in jobs)]
    metric_tags = sorted({tag for _, series in jobs for tag in series if tag.startswith("metrics/") and tag.count("/") == 1})
    tags = (tags[:3] + metric_tags)[:6]
    plt = pyplot()
    columns = min(3, len(tags))
    figure, axes = plt.subplots(-(-len(tags) // columns), columns, figsize=FIGURE_INCHES, dpi=DPI, squeeze=False)
    for axis, tag in zip(axes.flat, tags):
        for label, series in jobs:
            if tag in series:
                axis.plot(*series[tag], label=label)
        axis.set_title(tag, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(tags):]:
        axis.set_visible(False)
    figure.suptitle(f"sweep {sweep_dir.name}: {len(jobs)} jobs", fontsize=11)
    figure.tight_layout()
    return figure, len(jobs)


def plot(path: str | Path, out: Optional[str | Path] = None) -> Path:
    """`ganctl plot`: a run's curves.png, or a sweep's curves.png (one line per job)."""
    from ganctl import sweep

    path = Path(path)
    if not path.is_dir():
        raise GanctlError(f"{path} is not a directory: pass a run directory or a sweep directory (hydra.sweep.dir).")
    if (path / "tb").is_dir() or not ((path / sweep.SWEEP_FILE).exists() or (path / "multirun.yaml").exists()):
        written = plot_run(path, out)
        console.print(f"Wrote the curves of {path} to {written}")
        return written
    out = Path(out) if out else path / CURVES_FILE
    check_png(out)
    figure, jobs = sweep_figure(path)
    written = save_figure(figure, out)
    console.print(f"Wrote the curves of {jobs} jobs of the sweep {path} to {written}")
    return written


def check_png(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise GanctlError(f"--out {out}: curves are written as a .png file.")
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / CURVES_FILE}.")


# ---------------------------------------------------------------- the training grids as an animation

GRID_NAME = re.compile(r"step_(\d+)\.png")


def animate(run_dir: str | Path, out: Optional[str | Path] = None, fps: float = 4.0) -> Path:
    """The run's fixed-latent grids (samples/step_*.png) in step order as a GIF or MP4, with the step
    written above each frame. A grid that cannot be read (one being written right now) is skipped."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ganctl.pictures import captioned, check_animation_path, write_animation

    run_dir = Path(run_dir)
    samples = run_dir / "samples"
    grids = sorted((int(match.group(1)), path) for path in samples.glob("step_*.png") if (match := GRID_NAME.fullmatch(path.name)))
    if not grids:
        raise GanctlError(f"No training grids yet in {samples}: the run writes samples/step_<N>.png every "
                          "train.sample_every steps (and at its end). Animate it once it has some.")
    out = check_animation_path(Path(out) if out else samples / "progress.gif")
    frames, size = [], None
    for step, path in grids:
        try:
            with Image.open(path) as image:
                image.load()
                frame = np.asarray(image.convert("RGB"))
            if (frame == frame[..., :1]).all():  # a grid of grayscale images (saved as RGB): a smaller GIF
                frame = np.ascontiguousarray(frame[..., 0])
        except (OSError, UnidentifiedImageError, ValueError) as error:
            warn(f"skipping {path}: it cannot be read as an image ({type(error).__name__}).")
            continue
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            warn(f"skipping {path}: its size {frame.shape[1]}x{frame.shape[0]} is not the first grid's {size[1]}x{size[0]}.")
            continue
        frames.append(captioned(frame, f"step {step}"))
    if not frames:
        raise GanctlError(f"None of the {len(grids)} grids in {samples} can be read as an image.")
    write_animation(frames, out, fps)
    console.print(f"Wrote {len(frames)} grids (steps {grids[0][0]} to {grids[-1][0]}) as an animation to {out}")
    return out


def plot_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl plot", description="Draw a run's curves (or a sweep's, one line per job) as a PNG.")
    parser.add_argument("path", help="a run directory, or a sweep directory (hydra.sweep.dir of ganctl train -m)")
    parser.add_argument("--out", help="the PNG (default <dir>/curves.png)")
    options = parser.parse_args(args)
    plot(options.path, options.out)
    return 0


def animate_main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl animate", description="A run's fixed-latent training grids as a GIF or MP4.")
    parser.add_argument("run", help="a run directory")
    parser.add_argument("--out", help="a .gif or .mp4 (default <run>/samples/progress.gif); MP4 needs ganctl[video]")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    options = parser.parse_args(args)
    animate(options.run, options.out, options.fps)
    return 0

"""What a run reports: a rich progress bar, TensorBoard scalars and images, and summary.json."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from ganctl.console import console

log = logging.getLogger("ganctl")


# How the progress bar and train.log show the watched scalars.
SHORT_NAMES = {"loss/d": "d", "loss/g": "g", "d/real": "D(x)", "d/fake": "D(G(z))", "wasserstein": "W", "gradient_penalty": "gp"}


class RunLogger:
    """`log(metrics, step)` to the progress bar and TensorBoard, `image(grid, step)`, `close()`."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, batch_size: int) -> None:
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"), purge_step=start_step + 1)
        self.batch_size = batch_size
        self.progress = Progress(
            TextColumn("[bold]step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, speed="", losses="")
        self.progress.start()
        self.last_time, self.last_step = time.perf_counter(), start_step
        self.images_per_second = 0.0

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = time.perf_counter()
        steps_per_second = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        self.images_per_second = steps_per_second * self.batch_size
        for name, value in {**metrics, "speed/images_per_second": self.images_per_second}.items():
            self.writer.add_scalar(name, value, step)
        losses = "  ".join(f"{SHORT_NAMES[name]} {value:.3f}" for name, value in metrics.items() if name in SHORT_NAMES)
        speed = f"{steps_per_second:.1f} steps/s  {self.images_per_second:.0f} img/s"
        self.progress.update(self.task, completed=step, speed=speed, losses=losses)
        log.info("step %d  %s  %s", step, speed, losses)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Scalars measured now and then (image-quality metrics): TensorBoard and train.log."""
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        text = "  ".join(f"{name.split('/')[-1]} {value:.4g}" for name, value in values.items())
        self.progress.console.print(f"step {step}  {text}")
        log.info("step %d  %s", step, text)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, grid, step)

    def close(self) -> None:
        self.progress.stop()
        self.writer.close()


class NullLogger:
    """RunLogger's interface, doing nothing: for the ranks of a multi-process run other than rank 0."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None: ...

    def close(self) -> None: ...


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title="ganctl run", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    conditional = summary.get("conditioning") not in (None, "none")
    for group in ("model", "loss", "optimizer", "dataset", *(["conditioning"] if conditional else [])):
        table.add_row(group, str(summary[group]))
    table.add_row("steps", str(summary["steps"]))
    table.add_row("wall time", f"{summary['wall_seconds']:.1f} s")
    table.add_row("images/s", f"{summary['images_per_second']:.0f}")
    for name, value in summary["losses"].items():
        table.add_row(name, f"{value:.4f}")
    for name in ("wasserstein", "gradient_penalty", "classifier/fake_accuracy"):
        if summary.get(name) is not None:
            table.add_row(name, f"{summary[name]:.4f}")
    table.add_row("run directory", str(run_dir))
    console.print(table)
    if conditional:  # one row per class, or the class asked for
        console.print(f"Sample from it:\n  ganctl sample {run_dir} --out {Path(run_dir) / 'samples' / 'grid.png'}"
                      f"\n  ganctl sample {run_dir} --class <name or index> --num 64")
        return
    console.print(f"Sample from it:\n  ganctl sample {run_dir} --num 64 --out {Path(run_dir) / 'samples' / 'grid.png'}")

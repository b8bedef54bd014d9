"""What a run reports: a progress bar fitted to the terminal (plain lines when the output is not
one), the trackers of the `logger` config group (TensorBoard by default: ganctl.trackers), and
summary.json."""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ganctl import trackers as tracking
from ganctl.console import console, word
from ganctl.files import write_text

log = logging.getLogger("ganctl")


# The statistics the progress line and train.log show (TensorBoard gets every one): by group prefix,
# so a new regulariser shows with no edit here; the familiar ones under short labels.
WATCHED = ("loss/", "d/", "reg/", "augment/p")
SHORT_NAMES = {"loss/d": "d", "loss/g": "g", "d/real": "D(x)", "d/fake": "D(G(z))", "d/wasserstein": "W",
               "reg/gradient_penalty": "gp", "reg/path_length": "pl", "augment/p": "p"}


def watched(metrics: dict[str, float]) -> str:
    """The progress line's part for the statistics: `d 0.693  g 0.693  D(x) 0.501 ...`."""
    return "  ".join(f"{SHORT_NAMES.get(name, name.rpartition('/')[2])} {value:.3f}"
                     for name, value in metrics.items() if name.startswith(WATCHED))


class FittedProgress(Progress):
    """rich's progress display, fitted to the console's width each time it draws: `step N/total`
    and the time left always show; as the width shrinks, the losses are cut short and then left
    out, then the speed, then the bar (which otherwise takes what is left, up to 40 columns)."""

    MIN_BAR, MAX_BAR, MIN_LOSSES = 10, 40, 12

    def __init__(self, console: Console, **kwargs: Any) -> None:
        self.label, self.counter, self.left = TextColumn("[bold]step"), MofNCompleteColumn(), TimeRemainingColumn()
        self.bar = BarColumn()
        super().__init__(self.label, self.counter, self.bar, self.left, console=console, transient=False, **kwargs)

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        table = Table.grid(padding=(0, 1))
        for task in tasks:
            if task.visible:
                cells = self.fitted(task, self.console.width)
                for _ in range(len(cells) - len(table.columns)):
                    table.add_column(no_wrap=True)
                table.add_row(*cells)
        return table

    def fitted(self, task: Task, width: int) -> list[RenderableType]:
        label, counter, left = self.label(task), self.counter(task), self.left(task)
        speed, losses = Text(task.fields.get("speed", "")), Text(task.fields.get("losses", ""))
        room = width - label.cell_len - counter.cell_len - left.cell_len - 2  # (a space between cells)
        bar = self.MIN_BAR if room >= self.MIN_BAR + 1 else 0
        room -= bar + 1 if bar else 0
        show_speed = speed.cell_len > 0 and room >= speed.cell_len + 1
        room -= speed.cell_len + 1 if show_speed else 0
        show_losses = losses.cell_len > 0 and room >= self.MIN_LOSSES + 1
        if show_losses:
            losses.truncate(room - 1, overflow="ellipsis")
            room -= losses.cell_len + 1
        cells: list[RenderableType] = [label, counter]
        if bar:
            self.bar.bar_width = bar + min(room, self.MAX_BAR - self.MIN_BAR)
            cells.append(self.bar(task))
        return [*cells, *([speed] if show_speed else []), left, *([losses] if show_losses else [])]


def time_left(seconds: float) -> str:
    """H:MM:SS, as rich's progress bar shows it."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class RunLogger:
    """`log(metrics, step)` to the progress display and every tracker, `scalars`, `image`, `close()`
    when training stops and `end(status, artifacts)` when the run's record is complete.

    On a terminal the progress is a live bar; anywhere else (`ganctl train > log 2>&1`, a SLURM
    job, a pipe) it is one plain line per log interval, so a log file shows where the run is.
    images/s counts every image a step trains on: `images_per_step` is batch size x ranks.
    `trackers` are the started trackers (ganctl.trackers.open_trackers); by default TensorBoard alone."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, images_per_step: int,
                 output: Optional[Console] = None, trackers: Optional[list[tracking.Guarded]] = None) -> None:
        self.console = output or console
        if trackers is None:
            board = tracking.TensorBoard()
            board.start(tracking.RunInfo(Path(run_dir), {}, {}, start_step), None)
            trackers = [tracking.Guarded(board, threaded=False)]
        self.trackers = trackers
        self.images_per_step, self.total_steps, self.start_step = images_per_step, total_steps, start_step
        where = "".join(f"\n{tracker.where}" for tracker in trackers if tracker.where)
        self.console.print(f"Run directory: {run_dir}{where}", markup=False)
        self.progress: Optional[FittedProgress] = None
        if self.console.is_interactive or self.console.is_jupyter:
            self.progress = FittedProgress(self.console)
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, speed="", losses="")
            self.progress.start()
        self.started = self.last_time = time.perf_counter()
        self.last_step = start_step
        self.images_per_second = 0.0

    def send(self, method: str, *args: Any) -> None:
        for tracker in self.trackers:
            tracker.call(method, *args)

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = time.perf_counter()
        steps_per_second = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        self.images_per_second = steps_per_second * self.images_per_step
        self.send("log", {**metrics, "speed/images_per_second": self.images_per_second}, step)
        losses = watched(metrics)
        speed = f"{steps_per_second:.1f} steps/s  {self.images_per_second:.0f} img/s"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, speed=speed, losses=losses)
        else:
            per_step = (now - self.started) / max(step - self.start_step, 1)
            left = time_left(per_step * (self.total_steps - step))
            self.console.print(f"step {step}/{self.total_steps}  {speed}  {left} left  {losses}", markup=False, highlight=False)
        log.info("step %d  %s  %s", step, speed, losses)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Scalars measured now and then (image-quality metrics): the trackers and train.log."""
        self.send("log", dict(values), step)
        text = "  ".join(f"{name.split('/')[-1]} {value:.4g}" for name, value in values.items())
        self.console.print(f"step {step}  {text}")
        log.info("step %d  %s", step, text)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.send("image", tag, grid.detach().cpu(), step)  # (a copy: a tracker's thread may send it later)

    def close(self) -> None:
        """Training stopped: the progress display ends and TensorBoard's files are complete (curves.png
        is drawn from them); the other trackers stay open for `end`."""
        if self.progress is not None:
            self.progress.stop()
        for tracker in self.trackers:
            if tracker.name == "tensorboard":
                tracker.end("finished")

    def end(self, status: str, artifacts: tuple[tuple[Path, str], ...] = ()) -> None:
        """The run's record is complete: each tracker gets its files (path, folder) and its status
        (finished | failed | killed), and sends what it still holds."""
        for path, folder in artifacts:
            if Path(path).is_file():
                self.send("artifact", Path(path), folder)
        for tracker in self.trackers:
            if tracker.name != "tensorboard":
                tracker.end(status)
        self.trackers = []


class NullLogger:
    """RunLogger's interface, doing nothing: for the ranks of a multi-process run other than rank 0."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None: ...

    def close(self) -> None: ...

    def end(self, status: str, artifacts: tuple[tuple[Path, str], ...] = ()) -> None: ...


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")


SUMMARY_TABLE = ("reg/", "d/wasserstein", "classifier/fake_accuracy", "augment/p")  # besides the losses


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
        if value is not None:  # (none where the run trained no step: a guard that stopped it as it resumed)
            table.add_row(name, f"{value:.4f}")
    for name, value in summary.get("statistics", {}).items():  # the regularisers, D's distance estimate, ADA, ACGAN
        if name.startswith(SUMMARY_TABLE):
            table.add_row(name, f"{value:.4f}")
    table.add_row("run directory", str(run_dir))
    console.print(table)
    if conditional:  # one row per class, or the class asked for
        console.print(f"Sample from it:\n  ganctl sample {word(run_dir)} --out {word(Path(run_dir) / 'samples' / 'grid.png')}"
                      f"\n  ganctl sample {word(run_dir)} --class <name or index> --num 64", markup=False)
        return
    console.print(f"Sample from it:\n  ganctl sample {word(run_dir)} --num 64 --out {word(Path(run_dir) / 'samples' / 'grid.png')}",
                  markup=False)

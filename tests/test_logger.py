"""What a run shows while it trains: a progress bar that keeps the step and the time left at any
width from 60 columns, and plain lines where the output is not a terminal (log files, cluster jobs)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from ganctl.logger import FittedProgress, RunLogger

BCE = "d 1.234  g 0.567  D(x) 0.512  D(G(z)) 0.432"
WGAN_GP = "d -1.234  g 0.567  D(x) 0.512  D(G(z)) -0.432  W 1.746  gp 0.052"


@pytest.mark.parametrize("losses", [BCE, WGAN_GP])
@pytest.mark.parametrize("width", [60, 72, 80, 100, 130, 200])
def test_the_bar_keeps_the_step_and_the_time_left_at_any_width(width: int, losses: str) -> None:
    clock = [0.0]
    terminal = Console(width=width, file=io.StringIO(), force_terminal=True, color_system="truecolor", record=True)
    progress = FittedProgress(terminal, get_time=lambda: clock[0])
    task = progress.add_task("train", total=1_000_000, completed=0, speed="", losses="")
    for step in (1000, 2000):  # 1,000 steps a second: 998,000 left take 0:16:38
        clock[0] += 1.0
        progress.update(task, completed=step, speed="1000.0 steps/s  64000 img/s", losses=losses)
    terminal.print(progress.make_tasks_table(progress.tasks))
    lines = terminal.export_text().rstrip("\n").split("\n")
    assert len(lines) == 1 and len(lines[0]) <= width, lines
    assert re.search(r"step +2000/1000000 ", lines[0]) and "0:16:38" in lines[0], lines[0]
    if width >= 100:
        assert "━" in lines[0] and "64000 img/s" in lines[0]  # then the bar and the speed
    if width >= 200:
        assert losses in lines[0]  # and, with room, every loss


def test_without_a_terminal_each_log_interval_is_one_plain_line(tmp_path: Path) -> None:
    output = Console(file=io.StringIO(), width=80, soft_wrap=True)  # a log file, a pipe, a SLURM job
    logger = RunLogger(tmp_path, total_steps=4, start_step=0, images_per_step=16, output=output)
    logger.log({"loss/d": 1.25, "loss/g": 0.5}, 2)
    logger.log({"loss/d": 1.0, "loss/g": 0.75}, 4)
    logger.close()
    lines = output.file.getvalue().splitlines()
    assert lines[:2] == [f"Run directory: {tmp_path}", f"Follow it with: tensorboard --logdir {tmp_path}"]
    first = re.fullmatch(r"step 2/4  ([\d.]+) steps/s  (\d+) img/s  \d+:\d\d:\d\d left  d 1.250  g 0.500", lines[2])
    assert first, lines[2]
    assert float(first[2]) == pytest.approx(16 * float(first[1]), rel=0.01, abs=8)  # images per step: 16
    assert lines[3].startswith("step 4/4 ") and " 0:00:00 left " in lines[3] and len(lines) == 4
    assert "━" not in output.file.getvalue()

"""The terminal: one rich console on stderr, warnings and the one way errors are shown. No torch here:
`ganctl summary` and the sweep callback use it too."""

from __future__ import annotations

import logging
import shlex

from rich.console import Console
from rich.markup import escape

log = logging.getLogger("ganctl")
console = Console(stderr=True, soft_wrap=True)  # soft wrap: commands stay copyable


def word(value: object) -> str:
    """A path or value as one shell word, quoted when it needs to be: the commands ganctl prints for
    copying stay one command when a path holds spaces."""
    return shlex.quote(str(value))


def warn(message: str) -> None:
    """One warning line to the run's log file (when there is one) and, in yellow, to the terminal."""
    if log.hasHandlers():  # none in `ganctl sample`: Python's last-resort handler would print it twice
        log.warning(message)
    console.print(f"[yellow]warning:[/] {escape(message)}")


def print_error(message: object) -> None:
    """A mistake the user can fix, as one red line (never a traceback)."""
    console.print(f"[bold red]error:[/] {escape(str(message))}")

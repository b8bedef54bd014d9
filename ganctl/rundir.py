"""A run directory: where its checkpoints lie, and its one owner.

`ganctl train` holds an exclusive lock on `<run dir>/train.lock` (`fcntl.flock`) for as long as it
trains there, so a second `ganctl train` or `ganctl train resume=` into the same directory is refused
at once, with the pid and host of the process that holds it. The OS drops the lock when that process
dies, however it dies (SIGKILL, out of memory): a killed run never leaves a stale lock, and the next
`resume=` takes over at once. Under torchrun, rank 0 holds it. `sample` and `eval` never take it:
checkpoints are replaced atomically, so reading a run in progress is safe.

No torch here: `ganctl train` takes the lock before Hydra writes anything into the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Iterator, Optional

from ganctl.errors import GanctlError
from ganctl.files import open_in_place

try:
    import fcntl
except ImportError:  # Windows: no flock; ganctl trains there without the lock
    fcntl = None

LOCK_FILE = "train.lock"
STEP_FILE = re.compile(r"step_(\d+)\.pt")


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_path(run_dir: Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f"step_{step:07d}.pt"


def last_path(run_dir: Path) -> Path:
    return checkpoints_dir(run_dir) / "last.pt"


def best_path(run_dir: Path) -> Path:
    return checkpoints_dir(run_dir) / "best.pt"


def step_of(path: Path) -> Optional[int]:
    """The step in a step_<N>.pt file's name (None for any other name)."""
    match = STEP_FILE.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def step_files(run_dir: Path) -> list[Path]:
    """The run's step_<N>.pt checkpoint files, oldest first (by N, which may outgrow its 7 digits);
    a folder of such a name is none."""
    found = [path for path in checkpoints_dir(run_dir).glob("step_*.pt") if step_of(path) is not None and path.is_file()]
    return sorted(found, key=step_of)


def has_checkpoints(run_dir: Path) -> bool:
    return last_path(run_dir).exists() or best_path(run_dir).exists() or bool(step_files(run_dir))


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/<name>.pt), even when its
    checkpoints/ is a link to another disk: the run is the directory the link lies in."""
    return absolute(checkpoint).parent.parent


def absolute(path: str | os.PathLike) -> Path:
    """`path` made absolute, keeping the links to directories along it as they are named (a run's
    checkpoints/ linked to scratch storage stays <run>/checkpoints); a link at its end (a link to a
    checkpoint file) is followed to the file it names, so its run is that file's."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    for _ in range(40):  # as many links in a row as the OS follows
        if not path.is_symlink():
            break
        path = Path(os.path.abspath(path.parent / os.readlink(path)))
    return path


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory meaning its checkpoints/last.pt."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = last_path(path)
        if not candidate.is_file():
            raise no_checkpoint(path)
        return candidate
    if not path.is_file():
        raise GanctlError(f"Checkpoint not found: {path}. Pass a .pt file or a ganctl run directory.")
    return path


def named_checkpoint(path: str | os.PathLike) -> Path:
    """What a command's checkpoint argument names, checked before anything loads (a mistyped path is
    answered without torch): a checkpoint file, or a run directory holding some checkpoint (which one,
    `checkpoint.find` decides)."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not has_checkpoints(path):
            raise no_checkpoint(path)
        return path
    return resolve(path)


def resume_dir(resume: str | os.PathLike) -> Path:
    """The run directory `resume=<path>` continues in: a run directory itself (holding some
    checkpoint: which one, `checkpoint.find` decides), or the run a checkpoint file belongs to."""
    path = named_checkpoint(resume)
    return path.resolve() if path.is_dir() else run_dir_of(path)


def refuse_new_run_over(run_dir: Path) -> None:
    """A new run never starts in a directory that holds another run's checkpoints."""
    if has_checkpoints(run_dir):
        raise GanctlError(
            f"{run_dir} already holds a run (checkpoints/). Continue it with "
            f"`ganctl train {shlex.quote(f'resume={run_dir}')}`, or choose a new directory with hydra.run.dir=<dir>."
        )


def no_checkpoint(path: Path) -> GanctlError:
    return GanctlError(
        f"No checkpoint in {path}: expected {last_path(path)} or checkpoints/step_<N>.pt. Pass a run directory "
        "written by `ganctl train` or the path of a .pt checkpoint."
    )


# ---------------------------------------------------------------- the owner


class RunLocked(GanctlError):
    """Another process trains in this run directory."""


_held: dict[Path, int] = {}  # run directory -> the descriptor of its lock file, in this process


def _close_in_child() -> None:
    # A forked child (a DataLoader worker) shares the lock until it closes its copy of the
    # descriptor: closing it there lets the lock die with the process that trains.
    for descriptor in _held.values():
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


@contextlib.contextmanager
def hold(run_dir: Path, wait: float = 0.0) -> Iterator[None]:
    """Own `run_dir` for the duration of the block: create it if needed and lock its train.lock,
    or raise RunLocked naming the holder (after up to `wait` seconds for it to let go: a requeued
    cluster job may start while the old one still exits). Nested holds of one directory in one
    process, and every rank but 0 under torchrun, pass through."""
    key = Path(run_dir).resolve()
    if key in _held or int(os.environ.get("RANK", "0") or 0) > 0 or fcntl is None:
        yield
        return
    created = not key.exists()
    descriptor = _acquire(key, wait)
    if descriptor is None:  # the file system cannot lock: train on, unguarded
        yield
        return
    _held[key] = descriptor
    try:
        yield
    finally:
        _held.pop(key, None)
        _release(key, descriptor, created)


def _acquire(run_dir: Path, wait: float) -> Optional[int]:
    path = run_dir / LOCK_FILE
    deadline = time.monotonic() + wait
    announced = False
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            descriptor = open_in_place(path, os.O_RDWR)  # a link named train.lock is replaced, its target untouched
        except OSError as error:
            raise GanctlError(f"Cannot create the lock file {path}: {error.strerror or error}.") from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            if not path.exists():
                continue  # the holder let go as we tried: try again
            holder = read_holder(path)
            if time.monotonic() >= deadline:
                raise RunLocked(refusal(run_dir, holder)) from None
            if not announced:
                from ganctl.console import console

                console.print(f"Waiting for {describe(holder)} to release {run_dir} ...")
                announced = True
            time.sleep(0.2)  # the holder is exiting; poll until the OS drops its lock
            continue
        except OSError as error:  # ENOLCK, EOPNOTSUPP: e.g. a network file system mounted without locks
            os.close(descriptor)
            from ganctl.console import warn

            warn(f"Cannot lock {path} ({error.strerror or error}): nothing stops a second process from training in {run_dir}.")
            return None
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the holder removed the file as we opened it: lock the new one
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}) + "\n"
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, record.encode(), 0)
    return descriptor


def _release(run_dir: Path, descriptor: int, created: bool) -> None:
    """Remove the lock file, then unlock (a process that opened the old file notices, and locks
    a new one); a directory that this lock created and that stayed empty goes too."""
    path = run_dir / LOCK_FILE
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(descriptor), os.stat(path)):
            path.unlink()
    os.close(descriptor)
    if created:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when empty (a refused run)


def read_holder(path: Path) -> dict:
    """What the holder wrote into the lock file: pid, host, since (empty until it has written it)."""
    for _ in range(20):  # a holder writes its record right after it locks
        try:
            record = json.loads(Path(path).read_text())
            if isinstance(record, dict):
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


def describe(holder: dict) -> str:
    if "pid" not in holder:
        return "another process"
    try:
        since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(float(holder["since"])))
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        since = ""
    return f"process {holder['pid']} on {holder.get('host', 'an unknown host')}{since}"


def refusal(run_dir: Path, holder: dict) -> str:
    pid = holder.get("pid")
    stop = f" (Ctrl-C in its terminal, or `kill -INT {pid}` on {holder.get('host')})" if pid else ""
    gone = ""
    if pid and holder.get("host") == socket.gethostname() and not _alive(pid):
        gone = f" Process {pid} has exited, but a process it started still holds the lock; it ends on its own shortly."
    return (
        f"{run_dir} is in use: {describe(holder)} is training in it (it holds {run_dir / LOCK_FILE}). "
        f"A run directory has one training process at a time: wait for that one to end or stop it{stop}, "
        f"or train into another directory with hydra.run.dir=<new dir>.{gone}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True
    return True

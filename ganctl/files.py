"""Every file ganctl writes, written by one rule:

- **Links to directories are followed.** A run directory, its `checkpoints/` or `samples/` may be a
  link you made (to scratch storage, say): files are written inside it, as into any directory.
- **A file is never written through a link.** Each file is written to a temporary file that this
  process creates beside it (exclusively: never an existing file, never through a link), then renamed
  over the file's name. A link of that name is replaced by the new file; what it pointed to is not
  touched. The lock file and metrics.jsonl, which are opened in place, are opened without following
  a link in the same way.
- **Every replacement is atomic.** A crash at any moment leaves either the old complete file or the new
  one, and at worst a hidden temporary file `.<name>.<pid>.tmp`, which `remove_stale` clears.

No torch here: `ganctl summary`, the sweep callback and the run lock use it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows: no flock; stale temporary files are then left for the user
    fcntl = None

STALE_SECONDS = 60.0  # a temporary file this old and unlocked belongs to a writer that died


def write_atomically(
    path: Path, write: Callable[[IO[bytes]], None], durable: bool = False, check: Optional[Callable[[Path], None]] = None,
) -> None:
    """Call `write` on a new temporary file beside `path`, then rename it over `path` (atomic on POSIX).

    `durable` also fsyncs the data before the rename, so that a power loss cannot leave an empty
    file under the new name. `check`, when given, reads the complete temporary file by its name
    before the rename: if it raises, `path` keeps its previous content (or stays absent). On any
    failure the temporary file is removed and the error raised; `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_new(tmp) as f:
        try:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            if check is not None:
                check(tmp)
            os.replace(tmp, path)  # replaces a link named `path` itself, never its target
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    write_atomically(path, lambda f: f.write(data), durable)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_by_name(path: Path, write: Callable[[Path], None]) -> None:
    """For a writer that takes a file name rather than a file (ffmpeg): it writes `path`'s name inside
    a private temporary directory made beside `path` (no one else can put a link there); that file is
    then renamed over `path`, and the directory removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        write(private / path.name)
        os.replace(private / path.name, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


@contextlib.contextmanager
def open_new(tmp: Path) -> Iterator[IO[bytes]]:
    """A new file at `tmp`, made by this call and locked (`remove_stale` leaves a live writer's file
    alone). Whatever is there already -- the file of a killed process that had this pid, or a link --
    is removed first, never written through."""
    for attempt in range(2):
        try:
            descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
            break
        except FileExistsError:
            if attempt:
                raise
            tmp.unlink()
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks: the age check still protects it
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with os.fdopen(descriptor, "wb") as f:
        yield f


def open_in_place(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open(path, flags | O_CREAT) for a file used in place (a lock, a log appended to), never
    through a link: a link by that name is removed and a file of ganctl's own made instead."""
    flags |= os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(path, flags, mode)
    except OSError:
        if not os.path.islink(path):
            raise
    os.unlink(path)  # the link only; its target stays as it was
    return os.open(path, flags | os.O_EXCL, mode)


def append_text(path: Path, text: str) -> None:
    """Append to a file (created when absent), never through a link."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    descriptor = open_in_place(Path(path), os.O_WRONLY | os.O_APPEND)
    with os.fdopen(descriptor, "ab") as f:
        f.write(text.encode())


def remove_stale(directory: Path, pattern: str) -> list[Path]:
    """Remove the temporary files (and directories) matching `pattern` in `directory` that no live
    writer holds: unlocked, and untouched for STALE_SECONDS (a writer killed mid-write). Another
    process writing the same file right now keeps its own."""
    removed = []
    for path in sorted(Path(directory).glob(pattern)):
        with contextlib.suppress(OSError):
            if time.time() - path.lstat().st_mtime < STALE_SECONDS or held(path):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def held(path: Path) -> bool:
    """Whether a live process holds the lock `open_new` takes on its temporary file."""
    if fcntl is None or path.is_symlink() or path.is_dir():
        return False
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


def image_format(path: Path) -> str:
    """The image format PIL writes for `path`'s suffix (.png: PNG): a file object carries no name."""
    from PIL import Image

    from ganctl.errors import GanctlError

    formats = Image.registered_extensions()
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        raise GanctlError(f"Cannot write {path}: an image file needs a suffix such as .png or .jpg, not {suffix or 'none'!r}.")
    return formats[suffix]


def empty_folder(path: str | os.PathLike, option: str) -> Path:
    """A folder to fill with a new set of files: absent or empty. One that holds files already is
    refused rather than mixed (old files beside new ones) or emptied (they may be the user's)."""
    from ganctl.errors import GanctlError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise GanctlError(f"{option} {path} is a file: give a folder (new or empty) for the images.")
    if path.is_dir() and any(path.iterdir()):
        raise GanctlError(f"{option} {path} already holds files: give a new or empty folder, so that no earlier file "
                          "(an old image, an old latents.npy) is mixed with this set or overwritten.")
    return path


def check_working_directory() -> None:
    """Refuse to start in a directory that no longer exists (deleted or moved while a shell stayed in
    it): every relative path needs it, and so do Hydra and torch's libraries as they load."""
    from ganctl.errors import GanctlError

    try:
        os.getcwd()
    except FileNotFoundError:
        raise GanctlError("The directory this command was started in no longer exists (it was deleted or moved): "
                          "cd into an existing directory and run the command again.") from None


def remove_links(*paths: Path) -> None:
    """Remove the links among `paths` (only the links: their targets stay), before a program that
    opens files by name and follows links (Hydra: train.log, .hydra/*.yaml) writes there."""
    for path in paths:
        if os.path.islink(path):
            os.unlink(path)

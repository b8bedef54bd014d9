"""Writing files so that a crash at any moment leaves either the old complete file or the new one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, IO


def write_atomically(path: Path, write: Callable[[IO[bytes]], None], durable: bool = False) -> None:
    """Call `write` on a temporary file beside `path`, then rename it over `path` (atomic on POSIX).

    `durable` also fsyncs the data before the rename, so that a power loss cannot leave an empty
    file under the new name. On any failure the temporary file is removed and the error raised;
    `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

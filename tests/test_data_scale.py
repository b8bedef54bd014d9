"""Data at scale: the one rule that decides in memory (on the GPU or in host memory) against streaming,
the line that says its choice, and the decode cache's size, disk-space check and cost in memory."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import data
from ganctl.data import InMemoryImages, StreamingImages
from helpers import TINY, TINY_DCGAN, compose_config, run

CPU, GPU = torch.device("cpu"), torch.device("cuda")
GIB = 2**30


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every cache this module writes goes under tmp_path, never to $HOME."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(cache))
    return cache


def colour_folder(root: Path, count: int, size: int = 16) -> None:
    """`count` RGB PNGs of distinct colours at `size` px, as a user's flat folder."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (size, size), (10 * i, 255 - 10 * i, 7 * i)).save(root / f"{i:04d}.png")


def build_folder(root: Path, *overrides: str, device: torch.device = CPU):
    cfg, _ = compose_config("dataset=folder", f"dataset.root={root}", *overrides)
    return data.build(cfg.dataset, device)


def one_line(text: str) -> str:
    return " ".join(text.split())  # (rich wraps nothing, but a long path may still break a line in a narrow terminal)


# ----------------------------------------------------------------------------- the rule


def documented(nbytes: int, ram: Optional[int], available: Optional[int], device_free: Optional[int],
               in_memory: Union[str, bool]) -> Optional[str]:
    """Where the README's rule puts the images, read from its thresholds: "gpu", "host" or None (streamed)."""
    if in_memory is False or (in_memory == "auto" and nbytes > data.IN_MEMORY_LIMIT):
        return None
    if device_free is not None and nbytes <= device_free / data.GPU_SHARE:
        return "gpu"
    fits_ram = in_memory is True or ram is None or nbytes <= ram / data.RAM_SHARE
    fits_available = available is None or nbytes <= available / data.AVAILABLE_SHARE
    return "host" if fits_ram and fits_available else None


def test_the_rule_over_its_grid() -> None:
    """Every combination of the inputs, with sizes on each side of every threshold the rule documents."""
    ram, available, device_free = 16 * GIB, 6 * GIB, 8 * GIB
    edges = {data.IN_MEMORY_LIMIT, ram // data.RAM_SHARE, available // data.AVAILABLE_SHARE, device_free // data.GPU_SHARE}
    sizes = sorted({edge + step for edge in edges for step in (-1, 0, 1)} | {1, 64 * GIB})
    seen = set()
    for nbytes, ram_now, available_now, free_now, setting in itertools.product(
            sizes, (ram, None), (available, None), (device_free, None), ("auto", True, False)):
        device = CPU if free_now is None else GPU
        decided = data.holding(nbytes, ram_now, available_now, free_now, device, setting)
        place = {None: None, "cpu": "host", "cuda": "gpu"}[None if decided.where is None else decided.where.type]
        case = (nbytes, ram_now, available_now, free_now, setting)
        assert place == documented(*case), case
        seen.add(place)
        message = decided.message(12_345, nbytes, "/data/pictures")
        assert message.startswith("Streaming 12,345 images from /data/pictures: " if place is None
                                  else f"Holding 12,345 images ({data.amount(nbytes)}) in memory on {decided.where}: "), case
        overridden = setting is True and place is None and decided.reason.startswith("dataset.in_memory=true, but")
        assert decided.warning == (overridden or (place == "host" and free_now is not None)), case
    assert seen == {"gpu", "host", None}


def test_in_memory_must_be_auto_true_or_false() -> None:
    with pytest.raises(data.GanctlError, match="in_memory must be auto, true or false"):
        data.holding(1, None, None, None, CPU, "yes")


# ----------------------------------------------------------------------------- the choice, said once


def test_the_choice_is_said_in_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "images"
    colour_folder(root, 4)
    nbytes = 4 * 3 * 16 * 16
    monkeypatch.setattr(data, "host_ram", lambda: 64 * GIB)
    monkeypatch.setattr(data, "available_memory", lambda: 32 * GIB)
    held = build_folder(root, "dataset.image_size=16")
    said = one_line(capsys.readouterr().err)
    assert isinstance(held, InMemoryImages) and held.images.device == CPU
    assert said.count("Holding ") == 1 and "Streaming " not in said
    assert (f"Holding 4 images ({data.amount(nbytes)}) in memory on cpu: they take at most 4.00 GiB, a quarter of the "
            "64.00 GiB of RAM and half of the 32.00 GiB of host memory available now") in said

    monkeypatch.setattr(data, "available_memory", lambda: 2 * nbytes - 2)  # half of it: a byte short of the images
    streamed = build_folder(root, "dataset.image_size=16")
    said = one_line(capsys.readouterr().err)
    assert isinstance(streamed, StreamingImages)
    assert said.count("Streaming ") == 1 and "Holding " not in said
    assert f"Streaming 4 images from {root}: they would take {data.amount(nbytes)}, more than half of the" in said


# ----------------------------------------------------------------------------- the decode cache


def test_the_cache_says_where_it_goes_and_how_large_before_decoding(tmp_path: Path, cache_in_tmp: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "images"
    colour_folder(root, 8, size=256)  # 8 x 3 x 256 x 256: 1.5 MiB of pixels
    announced = []
    decode_all = data.decode_all

    def decoding(*args, **kwargs):  # what had been said when decoding began
        announced.append(one_line(capsys.readouterr().err))
        return decode_all(*args, **kwargs)

    monkeypatch.setattr(data, "decode_all", decoding)
    build_folder(root, "dataset.image_size=256")
    (written,) = cache_in_tmp.glob("*.npz")
    match = re.search(r"Caching the decoded images in (\S+) \(([\d.]+) MiB; ([\d.]+) (MiB|GiB) free there\)", announced[0])
    assert match is not None, announced
    assert Path(match[1]) == written
    assert abs(float(match[2]) - written.stat().st_size / 2**20) < 0.05  # the size said is the size written


def test_a_disk_without_room_skips_the_cache_and_training_goes_on(tmp_path: Path, cache_in_tmp: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "images"
    colour_folder(root, 8)
    free = data.CACHE_DISK_MARGIN + 1000  # room for the margin and 1,000 bytes: less than the cache's 6 KiB of pixels
    monkeypatch.setattr(data, "disk_free", lambda folder: free)
    result = run(tmp_path / "run", *TINY, *TINY_DCGAN, "dataset=folder", f"dataset.root={root}", "dataset.image_size=16")
    said = one_line(capsys.readouterr().err)
    assert result.step == 4 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert (f"not caching the decoded images: the cache file {cache_in_tmp}" in said
            and f"would take {data.amount(data.cache_size(8, 8 * 3 * 16 * 16))}, and its disk has {data.amount(free)} free" in said)
    assert not cache_in_tmp.exists() or list(cache_in_tmp.iterdir()) == []  # nothing written, nothing partial


RUN_WITH_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
import torch
from ganctl import data
from helpers import compose_config
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
cfg, _ = compose_config("dataset=folder", f"dataset.root={sys.argv[1]}", "dataset.image_size=256")
print("images", len(data.build(cfg.dataset, torch.device("cpu"))))
"""


def test_a_cache_write_that_fails_midway_leaves_no_file(tmp_path: Path, cache_in_tmp: Path) -> None:
    """The disk really refuses the write half-way (a file-size limit, in a process of its own): the
    run goes on with its images, and the cache directory holds no file, whole or partial."""
    root = tmp_path / "images"
    colour_folder(root, 8, size=256)  # a 1.5 MiB cache file; the limit lets 0.5 MiB be written
    done = subprocess.run([sys.executable, "-c", RUN_WITH_A_FILE_SIZE_LIMIT, str(root), str(2**19)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "images 8" in done.stdout and "could not write the dataset cache" in one_line(done.stderr)
    assert list(cache_in_tmp.iterdir()) == []


PEAK_OF_A_CACHE_HIT = """
import sys
import torch
from ganctl import data
from helpers import compose_config

def peak():  # the process's peak resident memory since the last reset (Linux's VmHWM)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

cfg, _ = compose_config("dataset=folder", f"dataset.root={sys.argv[1]}", "dataset.image_size=1024")
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak starts again from what the process holds now
before = peak()
images = data.build(cfg.dataset, torch.device("cpu")).images
print("grew", peak() - before, images.nbytes)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable peak memory")
def test_a_cache_hit_holds_the_images_once(tmp_path: Path, cache_in_tmp: Path) -> None:
    """A fresh process loading a cached 48 MiB of images grows its peak memory by those images once
    (torch's allocations included, which tracemalloc does not see), not twice."""
    root = tmp_path / "images"
    colour_folder(root, 16, size=1024)
    build_folder(root, "dataset.image_size=1024")  # decoded and cached
    done = subprocess.run([sys.executable, "-c", PEAK_OF_A_CACHE_HIT, str(root)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert "decoding" not in done.stderr  # a cache hit
    grew, nbytes = (int(word) for word in done.stdout.split()[-2:])
    assert 0.9 * nbytes < grew < 1.3 * nbytes, (grew, nbytes)


def test_a_cache_numpy_wrote_loads(tmp_path: Path, cache_in_tmp: Path, capsys) -> None:
    """A cache file written by np.savez (ganctl before the piecewise writer) is read as it is, not decoded again."""
    root = tmp_path / "images"
    colour_folder(root, 4)
    first = build_folder(root, "dataset.image_size=16")
    (path,) = cache_in_tmp.glob("*.npz")
    with np.load(path) as arrays:
        saved = {name: arrays[name] for name in arrays.files}
    path.unlink()
    np.savez(path, **saved)
    capsys.readouterr()
    again = build_folder(root, "dataset.image_size=16")
    assert "decoding" not in capsys.readouterr().err and torch.equal(again.images, first.images)

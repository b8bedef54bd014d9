"""Checkpoint integrity: the checksum, damaged and foreign files (fuzzed), which checkpoint a run
directory means, and resumes that never destroy later work. In-process: `helpers.train_in_process`
runs `app.run`, the code behind `ganctl train`, without starting a process."""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from ganctl import checkpoint, cli
from ganctl.errors import GanctlError
from helpers import TINY, TINY_DCGAN, train_in_process

RUN = [*TINY, *TINY_DCGAN, "train.steps=6", "train.sample_every=0"]  # step_2, step_4, step_6 and last.pt
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-18eea1d.pt"  # version 1: no checksum
TRAINED = ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run; tests copy it before they change anything."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_in_process(*RUN, f"hydra.run.dir={run_dir}")
    return run_dir


@pytest.fixture
def run_dir(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def refusal(path: Path) -> str:
    """The one-line message with which checkpoint.load refuses `path` (the test fails if it loads)."""
    with pytest.raises(GanctlError) as refused:
        checkpoint.load(path)
    message = str(refused.value)
    assert "\n" not in message and str(path) in message, message
    assert "weights_only" not in message, message  # never torch's advice to load unsafely
    return message


def damage(data: bytes, offset: int, length: int, rng: random.Random) -> bytes:
    """`length` bytes from `offset` changed (each XORed with a non-zero byte: truly different)."""
    damaged = bytearray(data)
    for i in range(offset, min(offset + length, len(data))):
        damaged[i] ^= rng.randrange(1, 256)
    return bytes(damaged)


def regions(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges of a torch.save zip archive: the records' local headers, the pickle, the tensors'
    data, and the central directory with the end record and its comment."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    found: dict[str, list[tuple[int, int]]] = {"header": [], "pickle": [], "tensor data": []}
    for info in infos:
        name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
        begin = info.header_offset + 30 + name_length + extra_length
        found["header"].append((info.header_offset, begin))
        if info.filename.endswith("data.pkl"):
            found["pickle"].append((begin, begin + info.compress_size))
        elif "/data/" in info.filename and info.compress_size:
            found["tensor data"].append((begin, begin + info.compress_size))
    end = max(stop for ranges in found.values() for _, stop in ranges)  # the last record's end
    found["directory and checksum"] = [(end, len(data))]
    return found


def test_a_checkpoint_is_a_plain_zip_carrying_its_checksum(trained: Path) -> None:
    path = checkpoint.last_path(trained)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert re.fullmatch(rb"ganctl-xxh3-128:[0-9a-f]{32}", archive.comment)
    plain = torch.load(path, map_location="cpu", weights_only=True)  # what the README promises users
    state = checkpoint.load(path)
    assert state["version"] == checkpoint.VERSION and state["step"] == 6
    for key in TRAINED:
        assert_close(state[key], plain[key], rtol=0, atol=0)


def test_damaged_checkpoints_are_never_loaded(trained: Path, tmp_path: Path) -> None:
    """Random bytes of many lengths, truncations at many offsets, and 1 to 32 bytes overwritten in
    the headers, the pickle, the tensor data and the directory: every one is refused in one line."""
    rng = random.Random(17)
    original = checkpoint.last_path(trained).read_bytes()
    cases: list[tuple[str, bytes]] = []
    for length in (0, 1, 3, 4, 21, 22, 100, 200, 1000, 5000, 65536, len(original)):
        for prefix in (b"", checkpoint.ZIP_START, b"\x80\x02"):
            cases.append((f"random {length}", (prefix + rng.randbytes(length))[: max(length, len(prefix))]))
    offsets = {rng.randrange(len(original)) for _ in range(40)}
    offsets |= {start for ranges in regions(original).values() for start, _ in ranges}
    cases += [(f"truncated at {offset}", original[:offset]) for offset in sorted(offsets)]
    for region, ranges in regions(original).items():
        for _ in range(40):
            start, stop = rng.choice(ranges)
            offset = rng.randrange(start, stop)
            cases.append((f"{region} at {offset}", damage(original, offset, rng.choice([1, 2, 4, 8, 32]), rng)))
    assert len(cases) > 250
    for name, data in cases:
        path = tmp_path / "case.pt"
        path.write_bytes(data)
        assert data != original
        message = refusal(path)
        assert re.search("damaged|not a PyTorch checkpoint|Cannot read", message), (name, message)


def test_damaged_checkpoints_without_a_checksum_fail_cleanly(tmp_path: Path) -> None:
    """A version 1 file (no checksum) goes through torch.load itself: whatever its damage does to the
    zip reader and the unpickler, the outcome is a load or ganctl's one-line error, nothing else."""
    rng = random.Random(18)
    original = FIXTURE.read_bytes()
    cases = [original[: rng.randrange(len(original))] for _ in range(30)]
    for ranges in regions(original).values():
        for _ in range(25):
            start, stop = rng.choice(ranges)
            cases.append(damage(original, rng.randrange(start, stop), rng.choice([1, 4, 32]), rng))
    cases += [checkpoint.ZIP_START + rng.randbytes(rng.randrange(10, 3000)) for _ in range(20)]
    refused = 0
    for data in cases:
        path = tmp_path / "old.pt"
        path.write_bytes(data)
        try:
            checkpoint.load(path)
        except GanctlError as error:
            assert "\n" not in str(error) and "weights_only" not in str(error), str(error)
            refused += 1
    assert refused > len(cases) // 2


class Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def test_files_that_are_not_checkpoints_are_called_what_they_are(tmp_path: Path, capsys) -> None:
    from torchvision.utils import save_image

    png = tmp_path / "grid.png"
    save_image(torch.rand(3, 8, 8), png)
    assert "is not a PyTorch checkpoint: it is a PNG image" in refusal(png)
    (tmp_path / "notes.yaml").write_text("model: dcgan\n")
    assert "it is a text file" in refusal(tmp_path / "notes.yaml")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "it is empty" in refusal(tmp_path / "empty.pt")
    np.save(tmp_path / "array.npy", np.zeros(3))
    assert "NumPy" in refusal(tmp_path / "array.npy")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04K\x01.")
    assert "a pickle" in refusal(tmp_path / "pickle.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    assert "not a ganctl checkpoint" in refusal(tmp_path / "foreign.pt")
    torch.save({"x": Payload()}, tmp_path / "payload.pt")
    assert re.search(r"it refers to \S+system, which is not plain data \(unpickling it could run code\)", refusal(tmp_path / "payload.pt"))
    for command in (["sample", str(png)], ["eval", str(png)], ["train", f"resume={png}"]):  # one line, no traceback
        assert cli.main(command) == 1
        output = capsys.readouterr()
        assert output.err.count("\n") == 1 and "it is a PNG image" in output.err and "Traceback" not in output.err


def test_a_version_2_file_without_its_checksum_is_refused(trained: Path, tmp_path: Path) -> None:
    """torch.save of a loaded checkpoint drops the checksum; so could damage to the file's end."""
    resaved = tmp_path / "resaved.pt"
    torch.save(torch.load(checkpoint.last_path(trained), weights_only=True), resaved)
    assert "its checksum is gone" in refusal(resaved)
    state = torch.load(resaved, weights_only=True)
    checkpoint.save(state, resaved)  # ganctl's own writer adds it again
    assert checkpoint.load(resaved)["step"] == 6


def test_a_run_directory_means_its_newest_intact_checkpoint(run_dir: Path) -> None:
    last, step_6 = checkpoint.last_path(run_dir), checkpoint.step_path(run_dir, 6)
    assert checkpoint.find(run_dir)[0] == last
    last.write_bytes(damage(last.read_bytes(), 5000, 4, random.Random(0)))
    path, state = checkpoint.find(run_dir)
    assert (path, state["step"]) == (step_6, 6)
    with pytest.raises(GanctlError, match=re.escape("is damaged") + ".*" + re.escape(f"`ganctl sample {step_6}`")):
        checkpoint.find(last)  # a damaged file named explicitly: refused, naming the one to use
    step_6.write_bytes(step_6.read_bytes()[:-100])
    last.unlink()
    assert checkpoint.find(run_dir)[0] == checkpoint.step_path(run_dir, 4)


def test_resume_of_a_run_with_a_damaged_last_checkpoint_continues_from_the_newest_intact(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    last = checkpoint.last_path(run_dir)
    last.write_bytes(damage(last.read_bytes(), 3000, 1, random.Random(1)))
    checkpoint.step_path(run_dir, 6).unlink()
    result = train_in_process(f"resume={run_dir}", "train.steps=8")
    assert "Using " + str(checkpoint.step_path(run_dir, 4)) in capsys.readouterr().err.replace("\n", "")
    assert result.step == 8 and checkpoint.load(last)["step"] == 8


def test_resuming_an_older_checkpoint_never_overwrites_later_ones(run_dir: Path, trained: Path, tmp_path: Path) -> None:
    before = {path.name: path.read_bytes() for path in (run_dir / "checkpoints").iterdir()}
    step_2 = checkpoint.step_path(run_dir, 2)
    with pytest.raises(GanctlError) as refused:
        train_in_process(f"resume={step_2}")
    message = str(refused.value)
    assert "last.pt holds step 6" in message and f"resume={run_dir}`" in message
    assert {path.name: path.read_bytes() for path in (run_dir / "checkpoints").iterdir()} == before

    branch = tmp_path / "branch"  # the branch the message offers: a new run directory from step 2
    command = re.search(r"`ganctl train (resume=\S+) (hydra\.run\.dir=)<new dir>`", message)
    result = train_in_process(command.group(1), command.group(2) + str(branch))
    assert result.step == 6 and {path.name: path.read_bytes() for path in (run_dir / "checkpoints").iterdir()} == before
    branched, original = checkpoint.load(checkpoint.last_path(branch)), checkpoint.load(checkpoint.last_path(trained))
    for key in TRAINED:  # steps 3..6 again from step 2's checkpoint: exactly the original run's
        assert_close(branched[key], original[key], rtol=0, atol=0, msg=key)

    with pytest.raises(GanctlError, match="already holds another run's checkpoints"):
        train_in_process(f"resume={step_2}", f"hydra.run.dir={branch}")


@pytest.mark.parametrize("failing_write", [1, 2, 3, 4])
def test_a_full_disk_message_gives_a_command_that_works(tmp_path: Path, failing_write: int, monkeypatch) -> None:
    """Checkpoints at steps 2, 4 and 6, each step_<N>.pt then last.pt; the disk fills at one of the
    first four writes. Whatever the message says to run, run it: the run then completes its 6 steps."""
    import errno

    real_fsync, writes = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        writes["n"] += 1
        if writes["n"] == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    run_dir = tmp_path / "run"
    run = [*TINY, *TINY_DCGAN, "train.steps=6", "train.sample_every=0", f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(GanctlError, match="Could not write the checkpoint .*: No space left on device") as stopped:
        train_in_process(*run)
    monkeypatch.setattr(os, "fsync", real_fsync)
    message = str(stopped.value)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # no half-written file left behind
    if failing_write == 3:
        assert "The previous last.pt is intact" in message
    command = re.search(r"`ganctl train (resume=\S+)`", message)
    if failing_write == 1:  # nothing was saved: the message says to start again, and that works
        assert command is None and "start the run again" in message
        assert train_in_process(*run).step == 6
    else:
        assert train_in_process(command.group(1)).step == 6
    assert checkpoint.load(checkpoint.last_path(run_dir))["step"] == 6


def test_a_checkpoint_whose_records_are_compressed_is_refused_before_it_inflates(trained: Path, tmp_path: Path) -> None:
    """An attacker's rewrite of a real checkpoint: its pickle record with 16 MiB of zeros after the
    pickle's end (torch.load reads a whole record into memory; the unpickler stops at STOP), deflated
    to a few kilobytes, and the checksum recomputed as ganctl.checkpoint.save would."""
    original = checkpoint.last_path(trained)
    archive = io.BytesIO()
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(archive, "w") as crafted:
        for record in source.infolist():
            data = source.read(record)
            if record.filename.endswith("/data.pkl"):
                crafted.writestr(record.filename, data + bytes(16 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                crafted.writestr(record.filename, data)
    body, comment = checkpoint.with_checksum(archive.getbuffer())
    path = tmp_path / "last.pt"
    path.write_bytes(bytes(body) + comment)
    assert path.stat().st_size < original.stat().st_size + (1 << 20)
    message = refusal(path)
    assert "data.pkl is compressed" in message and "Nothing was loaded" in message


def test_keep_last_prunes_only_the_checkpoints_the_run_wrote(run_dir: Path) -> None:
    """Beside the run's step_2/4/6 lie a user's text file named like a checkpoint, a stray file named
    beyond every step (it once made each new checkpoint be deleted right after its write), and a
    folder named like one (it crashed the prune). Resumed with keep_last=1, the run keeps its newest
    checkpoint and removes its own older ones only."""
    folder = run_dir / "checkpoints"
    (folder / "step_1.pt").write_text("my notes, not a checkpoint\n")
    (folder / "step_9999999.pt").write_text("stray\n")
    (folder / "step_0000005.pt").mkdir()
    train_in_process(f"resume={run_dir}", "train.steps=10", "train.keep_last=1")
    assert sorted(os.listdir(folder)) == ["last.pt", "step_0000005.pt", "step_0000010.pt", "step_1.pt", "step_9999999.pt"]
    assert (folder / "step_1.pt").read_text() == "my notes, not a checkpoint\n"
    assert checkpoint.load(folder / "step_0000010.pt")["step"] == 10


@pytest.mark.parametrize("change", ["malformed rng", "deeply nested"])
def test_a_checkpoint_that_cannot_resume_is_refused_when_it_loads(run_dir: Path, change: str) -> None:
    """Crafted from a real checkpoint, saved with its checksum: Python's RNG state of the wrong size
    (a resume stopped in a traceback), or metric cards nested 3,000 deep (the unpickler does not
    recurse, so it loaded, trained on and crashed at its first save). Both are refused in one line."""
    import sys

    path = checkpoint.last_path(run_dir)
    state = torch.load(path, weights_only=True)
    if change == "malformed rng":
        state["rng"]["python"] = (3, [1, 2, 3], None)
        checkpoint.save(state, path)
    else:
        deep: list = []
        for _ in range(3000):
            deep = [deep]
        state["metrics"] = [{"metric": "fid", "value": 1.0, "options": deep}]
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(20000)  # the attacker's process: pickling nests as deep as the data
        try:
            checkpoint.save(state, path)
        finally:
            sys.setrecursionlimit(limit)
    crafted = path.read_bytes()
    message = refusal(path)
    assert re.search("rng missing or malformed|nests containers more than 64 levels deep", message), message
    with pytest.raises(GanctlError):
        train_in_process(f"resume={path}", "train.steps=8")
    assert path.read_bytes() == crafted and not (run_dir / "checkpoints" / "step_0000008.pt").exists()


def test_a_full_disk_while_writing_a_grid_stops_with_a_command_that_works(tmp_path: Path, monkeypatch) -> None:
    """The disk fills while the step-3 grid is written (after step 2's checkpoint): one message with
    the command that continues (it used to be a raw OSError), nothing half-written, and the command works."""
    import errno

    from ganctl import train as training

    def full_disk(grid, file, format=None, **kwargs) -> None:
        file.write(b"\x89PNG half a grid")
        raise OSError(errno.ENOSPC, "No space left on device")

    run_dir = tmp_path / "run"
    monkeypatch.setattr(training, "save_image", full_disk)
    with pytest.raises(GanctlError, match="Training stopped: No space left on device") as stopped:
        train_in_process(*TINY, *TINY_DCGAN, "train.steps=4", "train.sample_every=3", f"hydra.run.dir={run_dir}")
    monkeypatch.undo()
    assert os.listdir(run_dir / "samples") == []  # no half-written grid, under its name or a temporary one
    command = re.search(r"`ganctl train (resume=\S+)` \(it resumes from last.pt, step 2\)", str(stopped.value))
    assert command, stopped.value
    assert train_in_process(command.group(1)).step == 4

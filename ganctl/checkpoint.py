"""Checkpoints: plain dicts of tensors and containers, written atomically with a checksum, read with weights_only.

A checkpoint holds everything needed to continue a run or to sample from it with nothing but the
file: the GAN's state (networks, optimizers, schedulers, loss scales: `gan.GAN.state_dict()`), the
step, the RNG states, the resolved config as plain containers, and the data's shape (`data`:
channels, image size, and a class-conditional run's class names, `classes`). Nothing in it can run code when
loaded, and its config names only ganctl's components (`ganctl.registry`). This module owns the
file's layout: `training_state` writes it, `load` checks it for every reader (train resume=, sample,
eval, export) and `upgrade`s what an older ganctl wrote to today's layout (`Checkpoint`: the one
record every reader gets; no other module knows what older versions lacked), and `find` picks what a
path names (a run directory: its newest intact checkpoint).

The checksum: a checkpoint is the zip archive `torch.save` writes, carrying a 128-bit XXH3 hash of
exactly those bytes as the archive's comment (the zip format's own trailing field, so `torch.load`,
`zipfile` and `unzip` read the file as before). `load` recomputes it over the whole file before it
unpickles anything: a byte changed anywhere (zip headers, the pickle, tensor data, the zip directory,
the checksum itself) is refused. XXH3 rather than SHA-256: it is about ten times faster (SHA-256 cost
about as much as serialising the checkpoint: docs/benchmarks.md), and against accidental damage a
128-bit hash misses with odds of 2**-128 either way; neither guards against a deliberate change,
since anyone who can edit the file can recompute an unkeyed hash. Checkpoints from before version 2
carry none and load as before.
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import stat
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional, TypedDict

import numpy as np
import torch
import xxhash
from omegaconf import OmegaConf

from ganctl import registry
from ganctl.config import BEFORE_SPEED_SETTINGS, GROUP_BEFORE, LEGACY_LOSS_KEYS, LEGACY_LOSS_SWITCHES, todays_defaults
from ganctl.console import warn, word
from ganctl.errors import GanctlError
from ganctl.files import write_atomically
from ganctl.rundir import (  # noqa: F401  (the paths of a run directory, used through this module too)
    absolute, best_path, has_checkpoints, last_path, named_checkpoint, no_checkpoint, resolve, run_dir_of, step_files, step_of, step_path,
)

FORMAT = "ganctl-checkpoint"
VERSION = 3  # 3: regularisers as units (loss.regularisers); 2: the checksum in the zip comment; 1 (before it): none
# What a run stores beside the GAN's own state dict entries (which sit at the top level too).
RUN_KEYS = ("format", "version", "step", "wall_seconds", "config", "choices", "metrics", "best", "rng", "data", "lineage",
            "guard")

class DataShape(TypedDict, total=False):
    channels: int
    image_size: int
    classes: list[str]  # a class-conditional run's class names (a label is an index into them)


class Checkpoint(TypedDict, total=False):
    """A checkpoint as every reader gets it from `load` and `find`, whichever ganctl wrote it
    (`upgrade` brings older layouts to this one): what the run stores, then the GAN's state."""

    format: str
    version: int
    step: int
    wall_seconds: float
    config: dict[str, Any]  # the resolved config as plain containers, completed with today's defaults
    choices: dict[str, str]  # the option of each config group
    metrics: list[dict[str, Any]]  # the latest metric cards
    best: Optional[dict[str, Any]]  # the best metric's value and step (checkpoints/best.pt)
    rng: dict[str, Any]
    data: DataShape
    lineage: dict[str, Any]  # a fine-tuned run's only (`finetune.Lineage`): its parents, what was frozen and re-initialised
    guard: dict[str, Any]  # a guarded run's only (ganctl/guard.py): its branch, the changes so far and its decisions
    generator: dict[str, Any]  # (from here on: `gan.GAN.state_dict()`)
    discriminator: dict[str, Any]
    generator_ema: Optional[dict[str, Any]]
    optimizer_g: dict[str, Any]
    optimizer_d: dict[str, Any]
    schedulers: list[dict[str, Any]]
    scalers: list[dict[str, Any]]
    augment: dict[str, Any]
    regularisers: dict[str, dict[str, Any]]  # each regulariser's own state, by its name


ZIP_START, ZIP_END = b"PK\x03\x04", b"PK\x05\x06"  # a zip's first local header; its end record (22 bytes + comment)
CHECKSUM_MARK = b"ganctl-xxh3-128:"
COMMENT_LENGTH = len(CHECKSUM_MARK) + 32  # the mark and the hex digest


def training_state(
    gan_state: dict[str, Any], *, step: int, wall_seconds: float, config: dict, choices: dict,
    metrics: list, best: Optional[dict], data: dict[str, Any], device: torch.device, lineage: Optional[dict] = None,
    guard: Optional[dict] = None,
) -> Checkpoint:
    """A checkpoint: the GAN's state dict, the RNG states and what the run needs to go on from `step`
    (the resolved config, the chosen options, the data's shape, the latest metric cards), and a
    fine-tuned run's lineage (an optional key: other runs' checkpoints have none)."""
    return {
        "format": FORMAT, "version": VERSION, "step": step, "wall_seconds": wall_seconds,
        "config": config, "choices": choices, "metrics": metrics, "best": best,
        **gan_state, "rng": rng_states(device), "data": data, **({"lineage": lineage} if lineage else {}),
        **({"guard": guard} if guard else {}),
    }


def gan_state(state: dict[str, Any]) -> dict[str, Any]:
    """The GAN's entries of a checkpoint (what `GAN.load_state_dict` takes)."""
    return {key: value for key, value in state.items() if key not in RUN_KEYS}


def save(state: dict[str, Any], *paths: Path) -> None:
    """Serialise once, add the checksum, then write each path atomically (temporary file, fsync,
    rename): a crash at any moment leaves either the previous complete file or the new complete one."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body, comment = with_checksum(buffer.getbuffer())
    for index, path in enumerate(paths):
        try:
            write_atomically(path, lambda f: (f.write(body), f.write(comment)), durable=True)
        except OSError as error:  # disk full, read-only or vanished directory, quota...
            raise GanctlError(write_failure(path, error, paths[:index], paths[index:])) from error


def with_checksum(archive: memoryview) -> tuple[memoryview, bytes]:
    """torch.save's archive as (all but its last 2 bytes, what replaces them): the end record's
    comment length, then the comment, which holds the hash of the archive as torch.save wrote it."""
    if bytes(archive[-22:-18]) != ZIP_END or bytes(archive[-2:]) != b"\0\0":
        raise RuntimeError("torch.save did not end its zip archive with an empty comment: ganctl cannot add its checksum")
    comment = CHECKSUM_MARK + xxhash.xxh3_128(archive).hexdigest().encode()
    return archive[:-2], len(comment).to_bytes(2, "little") + comment


def verify_checksum(path: Path, file: BinaryIO) -> bool:
    """True when the open file carries ganctl's checksum and it matches; False when it carries none
    (a checkpoint from before version 2, or a file not written by ganctl); a GanctlError on a mismatch.
    The file is hashed in chunks, from the descriptor torch.load then reads (the same bytes, even if
    a run replaces the path meanwhile), so it is never held in memory twice."""
    end, stored = stored_checksum(file)
    if stored is None:
        return False
    digest, left = xxhash.xxh3_128(), end + 20
    file.seek(0)
    while left > 0 and (chunk := file.read(min(left, 1 << 20))):
        digest.update(chunk)
        left -= len(chunk)
    digest.update(b"\0\0")  # the empty comment's length, as torch.save wrote it
    if left or digest.hexdigest().encode() != stored:
        raise GanctlError(
            f"{path} is damaged: its bytes no longer match the checksum written with it (a disk or "
            "transfer error, or a change by another program). Nothing was loaded from it."
        )
    return True


def stored_checksum(file: BinaryIO) -> tuple[int, Optional[bytes]]:
    """Where the zip's end record starts, and the hex digest ganctl stored in its comment (None: the
    open file carries no ganctl checksum)."""
    end = os.fstat(file.fileno()).st_size - COMMENT_LENGTH - 22
    if end < 0:
        return end, None
    file.seek(end)
    tail = file.read()
    if tail[:4] != ZIP_END or tail[20:22] != COMMENT_LENGTH.to_bytes(2, "little") or tail[22 : 22 + len(CHECKSUM_MARK)] != CHECKSUM_MARK:
        return end, None
    return end, tail[22 + len(CHECKSUM_MARK) :]


def written_by_ganctl(path: Path, verify: bool = False) -> bool:
    """Whether `path` is a plain file (not a link, not a folder) carrying ganctl's checksum; with
    `verify`, one whose bytes match it too (a complete checkpoint, as ganctl wrote it)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as file:
            return verify_checksum(path, file) if verify else stored_checksum(file)[1] is not None
    except (OSError, GanctlError):
        return False


def write_failure(path: Path, error: OSError, written: tuple[Path, ...], untouched: tuple[Path, ...]) -> str:
    """What a failed checkpoint write left, and the command that continues the run from it."""
    run_dir = run_dir_of(path)
    done = "".join(f"{p.name} was written. " for p in written)
    kept = "".join(f"The previous {p.name} is intact. " for p in untouched if p.exists())
    return (
        f"Could not write the checkpoint {path}: {error.strerror or error}. {done}{kept}Training stopped rather than "
        f"go on without checkpoints: free some space (or fix the directory's permissions), then {continue_with(run_dir)}."
    )


def stopped_by(run_dir: Path, error: OSError) -> str:
    """Training stopped by a failed read or write of a file (a full disk while a grid or the summary
    was written, a directory made read-only or removed): what failed, and the command that continues
    from the newest complete checkpoint (every checkpoint is written atomically: none is damaged)."""
    where = f" ({error.filename})" if error.filename else ""
    try:
        os.getcwd()
    except FileNotFoundError:
        where += ", the directory ganctl was started in no longer exists"
    return (f"Training stopped: {error.strerror or error}{where}. Its checkpoints are as they were: free some space "
            f"(or fix the directory), then {continue_with(run_dir)}.")


def continue_with(run_dir: Path) -> str:
    """The command that continues a run from its newest intact checkpoint, or what to do without one."""
    newest, _ = newest_intact(run_dir)
    if newest is None:
        return "start the run again: it has no complete checkpoint to resume from yet"
    return f"continue with `ganctl train {word(f'resume={run_dir}')}` (it resumes from {newest.path.name}, step {newest.state['step']})"


def clean_temporary(run_dir: Path) -> list[Path]:
    """Remove the temporary files of checkpoint writes that a killed process left behind."""
    stray = sorted((Path(run_dir) / "checkpoints").glob(".*.pt*.tmp"))
    for path in stray:
        path.unlink(missing_ok=True)
    return stray


def prune(run_dir: Path, keep: int, newest: int) -> list[Path]:
    """Delete the run's step checkpoints older than its newest `keep` (last.pt and best.pt are never
    touched). Called after the checkpoint of step `newest` is complete, so a checkpoint never goes
    before its successor. Only what the run wrote goes: a step_<N>.pt at or before `newest` (a name
    beyond it is not this run's doing), a plain file carrying ganctl's checksum, verified whole before
    it is deleted. A user's file, a link, a folder or a damaged file named like a checkpoint stays and
    counts for nothing."""
    if keep < 1:  # keep_last=0: keep them all
        return []
    ours = [path for path in reversed(step_files(run_dir)) if step_of(path) <= newest and written_by_ganctl(path)]
    old = [path for path in ours[keep:] if written_by_ganctl(path, verify=True)]
    for path in old:
        path.unlink(missing_ok=True)
    return old[::-1]


def load(path: Path) -> Checkpoint:
    """Read a ganctl checkpoint: verify its checksum, unpickle it with weights_only=True, check its
    layout. Any other file, and any damage, is one GanctlError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
            if not head.startswith(ZIP_START):  # torch.save writes zip archives: nothing else is unpickled
                raise GanctlError(
                    f"{path} is not a PyTorch checkpoint: it is {what_it_is(head, os.fstat(file.fileno()).st_size)}. "
                    "Pass a checkpoint written by `ganctl train` (a run's checkpoints/last.pt or step_<N>.pt) or its run directory."
                )
            checked = verify_checksum(path, file)
            refuse_compressed_records(path, file)
            file.seek(0)
            try:
                with warnings.catch_warnings():  # e.g. "Detected pickle protocol 212" from a damaged file
                    warnings.simplefilter("ignore")
                    state = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as error:
                # Not a fixed list: torch.load parses untrusted bytes in layers that raise their own errors.
                # The zip reader (C++) raises RuntimeError; the weights-only unpickler is Python that runs the
                # file's opcodes on a stack and memo and calls its allowed constructors with the file's
                # arguments, so damage surfaces as UnpicklingError, KeyError, IndexError, TypeError,
                # ValueError, EOFError, struct.error, OverflowError, RecursionError, MemoryError, ... Any
                # Exception here means the file cannot be read as a checkpoint (tests/test_checkpoint.py
                # fuzzes it); KeyboardInterrupt passes.
                raise GanctlError(unreadable(path, error)) from error
    except OSError as error:  # missing, unreadable, a read error of the disk
        raise GanctlError(f"Cannot read checkpoint {path}: {error.strerror or error}.") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GanctlError(f"{path} is a PyTorch file but not a ganctl checkpoint (no '{FORMAT}' marker).")
    version = state.get("version")
    if not checked and isinstance(version, int) and version >= 2:
        raise GanctlError(
            f"{path} is damaged: it is a version {version} checkpoint, written with a checksum, and its checksum "
            "is gone (its end was damaged, or other code re-saved it, e.g. with torch.save: ganctl.checkpoint.save "
            "adds the checksum). Nothing was loaded from it."
        )
    check_layout(path, state)
    return upgrade(state)


def upgrade(state: dict[str, Any]) -> Checkpoint:
    """A checkpoint of any earlier ganctl in today's layout: the one place that knows what older
    versions wrote differently, so that every reader (train resume=, sample, eval, export) gets the
    same record. Each step below names what changed."""
    config = dict(state["config"])
    # Blocks added since (train.*, metrics.*): today's defaults (conf/train.yaml), except the speed
    # settings, which a checkpoint from before them computed without (fp32, NCHW, eager).
    train = {**BEFORE_SPEED_SETTINGS, **(config.get("train") or {})}
    # `auto` precision chose fp32 on every CPU until it chose bf16 on CPUs that have it; checkpoints
    # since store what auto chose, so one that stores auto and was trained on a CPU computed in fp32.
    if train.get("precision") == "auto" and "cuda" not in state["rng"]:
        train["precision"] = "fp32"
    defaults = todays_defaults()
    config["train"] = OmegaConf.to_container(OmegaConf.merge(defaults.train, train))
    config["metrics"] = OmegaConf.to_container(OmegaConf.merge(defaults.metrics, config.get("metrics") or {}))
    config.setdefault("conditioning", {})  # (before class conditioning: unconditional)
    config.setdefault("logger", {"tensorboard": {"_target_": "ganctl.trackers.TensorBoard"}})  # (before the logger group)
    choices = {**GROUP_BEFORE, **state["choices"]}
    state = {**state, "config": config, "choices": choices}
    loss = config.get("loss")
    if isinstance(loss, dict) and ("regularisers" not in loss or any(key in loss for key in LEGACY_LOSS_KEYS)):
        config["loss"] = upgraded_loss(loss)
    # The path lengths' running mean sat in the GAN's state before the regularisers held their own.
    if "path_length_mean" in state:
        mean = state["path_length_mean"]
        state = {key: value for key, value in state.items() if key != "path_length_mean"}
        if "path_length" in config["loss"]["regularisers"]:
            state["regularisers"] = {"path_length": {"mean": mean}}
    return state


def upgraded_loss(loss: dict[str, Any]) -> dict[str, Any]:
    """A loss block from before the regulariser units (checkpoint version 3): its flat keys
    (`config.LEGACY_LOSS_KEYS`) as the units that were on, the gradient penalty's interpolates without
    DiffAugment (as they were then), and the traits then read off its functions (relativistic, the
    boundary between real and fake scores) written down."""
    loss = dict(loss)
    units: dict[str, dict[str, Any]] = {name: dict(node) for name, node in (loss.get("regularisers") or {}).items()}
    switched_on = {LEGACY_LOSS_KEYS[key][0] for key in LEGACY_LOSS_SWITCHES if loss.get(key)}
    for key, (name, target, setting) in LEGACY_LOSS_KEYS.items():
        value = loss.pop(key, None)
        if value is not None and name in switched_on:
            units.setdefault(name, {"_target_": target})[setting] = value
    if "gradient_penalty" in units:
        units["gradient_penalty"]["diffaugment"] = False
    loss["regularisers"] = units
    generator_loss = str((loss.get("generator") or {}).get("_target_", ""))
    discriminator_loss = str((loss.get("discriminator") or {}).get("_target_", ""))
    loss.setdefault("relativistic", generator_loss == "ganctl.losses.relativistic_generator_loss")
    loss.setdefault("boundary", None if "wasserstein" in discriminator_loss else 0.5 if "lsgan" in discriminator_loss else 0.0)
    return loss


def refuse_compressed_records(path: Path, file: BinaryIO) -> None:
    """torch.save stores every record of its archive as it is (uncompressed), so reading a checkpoint
    never takes more memory than its size. A compressed record could inflate a few megabytes into
    gigabytes as torch.load reads it (a checksum cannot tell: anyone can recompute it), so an archive
    with one is refused from its zip directory alone, before any record is read."""
    try:
        with zipfile.ZipFile(file) as archive:  # reads the directory only; the file stays open
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        raise GanctlError(unreadable(path, error)) from error
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise GanctlError(
                f"Refusing to load {path}: its record {record.filename} is compressed ({record.compress_size:,} bytes that "
                f"unpack to {record.file_size:,}), and a checkpoint written by ganctl (torch.save) stores every record "
                "uncompressed. Nothing was loaded from it."
            )


# What a file that is not a zip archive is, by its first bytes, for the message that refuses it.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip-compressed file"), (b"\x93NUMPY", "a NumPy array (.npy)"), (b"%PDF", "a PDF document"),
)


def what_it_is(data: bytes, size: int) -> str:
    """What a file is, from its first bytes `data` and its size."""
    if not size:
        return "empty (0 bytes)"
    for signature, kind in SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (a PyTorch file in the legacy pre-1.6 format, or another program's), which ganctl never unpickles"
    try:
        head = data[:4096].decode("utf-8")
    except UnicodeDecodeError as error:  # not text, unless the cut at 4096 split a character
        head = data[: error.start].decode("utf-8") if error.start >= 4093 else None
    if head is not None and all(c.isprintable() or c in "\t\r\n" for c in head):
        return "a text file"
    return f"{size} bytes of something else (a PyTorch checkpoint is a zip archive)"


def unreadable(path: Path, error: Exception) -> str:
    """The message for a file torch.load refused: never its advice to retry with weights_only=False."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global|GLOBAL (\S+) whose module", str(error))
    if isinstance(error, pickle.UnpicklingError) and found:
        return (
            f"Refusing to load {path}: it refers to {found.group(1) or found.group(2)}, which is not plain data (unpickling "
            "it could run code). ganctl loads only plain checkpoints and never unpickles such a file."
        )
    return (
        f"Cannot read checkpoint {path}: it is damaged or truncated, or a zip archive that is not a PyTorch checkpoint "
        f"({type(error).__name__}). Nothing was loaded from it."
    )


@dataclass
class Found:
    path: Path
    state: Checkpoint


def newest_intact(run_dir: Path, newer_than: int = -1, exclude: Optional[Path] = None) -> tuple[Optional[Found], list[str]]:
    """The newest checkpoint of a run directory that loads and verifies, if it holds a step beyond
    `newer_than`: its last.pt, or a step_<N>.pt beyond it (a last.pt that is missing or damaged, or
    could not be written: disk full), or as a last resort its best.pt; and why newer files were passed over."""
    found, passed_over = None, []
    exclude = exclude.resolve() if exclude is not None else None
    for path in [last_path(run_dir), *reversed(step_files(run_dir))]:
        floor = found.state["step"] if found else newer_than
        number = step_of(path)
        if number is not None and number <= floor:
            break  # this and every older step file: nothing beyond the floor
        if path.resolve() == exclude:
            continue
        if not path.exists():
            passed_over.append(f"{path} is missing.")
            continue
        try:
            state = load(path)
        except GanctlError as error:
            passed_over.append(str(error))
            continue
        if state["step"] > floor:
            if found is not None:
                passed_over.append(f"{found.path} holds step {found.state['step']} only.")
            found = Found(path, state)
    best = best_path(run_dir)
    if found is None and newer_than < 0 and best.exists() and best.resolve() != exclude:
        try:
            found = Found(best, load(best))
        except GanctlError as error:
            passed_over.append(str(error))
    return found, passed_over


def find(path: str | Path, use: str = "ganctl sample {}") -> tuple[Path, Checkpoint]:
    """The checkpoint a path names, loaded and verified: a .pt file itself, or a run directory's
    newest intact checkpoint (its last.pt; when that is missing or damaged, its newest intact
    step_<N>.pt, with a warning that says so). A file that fails to load is refused with the newest
    intact checkpoint beside it, as the command `use` (its `{}` the path)."""
    path = named_checkpoint(path)
    if path.is_dir():
        found, passed_over = newest_intact(path)
        if found is None:
            raise GanctlError(f"No intact checkpoint in {path}: {' '.join(passed_over)} Use a checkpoint from elsewhere, "
                              "or start the run again with hydra.run.dir=<new dir>.")
        if found.path != last_path(path):
            warn(f"{' '.join(passed_over)} Using {found.path} (step {found.state['step']}), the newest intact checkpoint in {path}.")
        return found.path, found.state
    try:
        return path, load(path)
    except GanctlError as error:
        if path.parent.name != "checkpoints":
            raise
        other, _ = newest_intact(path.parent.parent, exclude=path)
        if other is None:
            raise
        raise GanctlError(f"{error} The newest intact checkpoint of its run is {other.path} (step {other.state['step']}): "
                          f"`{use.format(word(other.path))}`.") from error


def check_resume_into(run_dir: Path, path: Path, state: dict[str, Any]) -> None:
    """Resuming `path` into `run_dir` never destroys later work: in the checkpoint's own run, refuse
    when a newer intact checkpoint exists there (and say how to branch); into another directory
    (a branch: resume=... hydra.run.dir=<new dir>), refuse when that directory already holds a run."""
    step = state["step"]
    if Path(run_dir).resolve() == run_dir_of(path).resolve():
        newer, _ = newest_intact(run_dir, newer_than=step, exclude=path)
        if newer is not None:
            raise GanctlError(
                f"Refusing to resume {path} (step {step}) in {run_dir}: that run went further ({newer.path.name} holds "
                f"step {newer.state['step']}), and training on from step {step} there would overwrite it. Continue the run from "
                f"its newest checkpoint with `ganctl train {word(f'resume={run_dir}')}`, or start a new run from step {step} in a "
                f"directory of its own with `ganctl train {word(f'resume={path}')} hydra.run.dir=<new dir>`."
            )
    elif has_checkpoints(run_dir):
        raise GanctlError(
            f"{run_dir} already holds another run's checkpoints: ganctl does not resume {path} over them. Choose a new "
            f"directory with hydra.run.dir=<new dir>, or continue that run with `ganctl train {word(f'resume={run_dir}')}`."
        )


MAX_NESTING = 64  # containers in containers: a run's deepest (the config, optimizer states) nest under 10


def check_layout(path: Path, state: dict[str, Any]) -> None:
    """The run-level entries every reader relies on, with their types (the GAN checks its own)."""
    depth = nesting(state, MAX_NESTING)
    if depth > MAX_NESTING:  # it would load (the unpickler does not recurse) but not save again, nor be checked
        raise GanctlError(f"{path} is not a ganctl checkpoint: it nests containers more than {MAX_NESTING} levels deep "
                          "(a checkpoint's deepest entries nest under 10). Nothing was loaded from it.")
    stored = state.get("config")
    if not isinstance(stored, dict) or not isinstance(stored.get("dataset"), dict) or not isinstance(stored.get("model"), dict):
        raise GanctlError(f"{path} has no stored config with a dataset and a model: it was not written by `ganctl train`.")
    registry.check_config(stored, str(path), prefix="config")  # it names ganctl's components, never code
    data = state.get("data")
    problems = [
        name for name, ok in (
            ("step", isinstance(state.get("step"), int) and state["step"] >= 0),
            ("choices", isinstance(state.get("choices"), dict)),
            ("data", isinstance(data, dict) and all(isinstance(data.get(k), int) for k in ("channels", "image_size"))
             and valid_classes(data.get("classes", []))),
            ("config.conditioning", isinstance(stored.get("conditioning", {}), dict)),
            ("rng", restorable(state.get("rng"))),
            ("metrics", isinstance(state.get("metrics", []), list) and all(isinstance(card, dict) for card in state.get("metrics") or [])),
            ("best", state.get("best") is None or isinstance(state.get("best"), dict)),
            ("lineage", valid_lineage(state.get("lineage"))),
            ("guard", valid_guard(state.get("guard"))),
        ) if not ok
    ]
    if problems:
        raise GanctlError(f"{path} is not a complete ganctl checkpoint: {', '.join(problems)} missing or malformed.")


def valid_lineage(lineage: Any) -> bool:
    """A fine-tuned run's lineage, when there is one: its parents, each with a checksum and a step."""
    if lineage is None:
        return True
    parents = lineage.get("parents") if isinstance(lineage, dict) else None
    return isinstance(parents, list) and bool(parents) and all(
        isinstance(p, dict) and isinstance(p.get("checksum"), str) and isinstance(p.get("step"), int) for p in parents)


def valid_guard(guard: Any) -> bool:
    """A guarded run's record, when there is one (`guard.Guard.state_dict`): its counts, factors and decisions."""
    if guard is None:
        return True
    return (isinstance(guard, dict) and all(isinstance(guard.get(k), int) for k in ("branch", "rollbacks", "strikes", "spent"))
            and all(isinstance(guard.get(k), (int, float)) for k in ("lr", "penalty", "ada_shift"))
            and isinstance(guard.get("decisions", []), list) and all(isinstance(d, dict) for d in guard.get("decisions", [])))


def checksum(path: Path) -> str:
    """A checkpoint file's checksum as ganctl computes it: the XXH3-128 written with it (which `load`
    verifies), or for a file from before checksums the same hash of its bytes."""
    with open(path, "rb") as file:
        _, stored = stored_checksum(file)
        if stored is not None:
            return stored.decode()
        digest = xxhash.xxh3_128()
        file.seek(0)
        while chunk := file.read(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()


def nesting(value: Any, limit: int) -> int:
    """How deeply dicts, lists and tuples nest in `value` (a dict of lists: 2), counted without
    recursion and no further than limit + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list, tuple)):
            continue
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def restorable(states: Any) -> bool:
    """Whether `restore_rng_states` can restore `states`: each is tried on a generator of its own,
    so a malformed one is refused when the checkpoint loads, not by a traceback once a resume is under way."""
    try:
        torch.Generator().set_state(states["torch"])
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.RandomState().set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = states["python"]
        random.Random().setstate((version, tuple(internal), gauss))
        cuda = states.get("cuda", [])
        return isinstance(cuda, list) and all(isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in cuda)
    except Exception:  # any part missing, of the wrong type, size or value
        return False


def valid_classes(classes: Any) -> bool:
    """A conditional run's class names (data.classes): distinct strings."""
    return isinstance(classes, list) and all(isinstance(name, str) for name in classes) and len(set(classes)) == len(classes)


def rng_states(device: torch.device) -> dict[str, Any]:
    """Every RNG the run draws from, in forms that weights_only loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])

"""Reading a stylegan2-ada-pytorch pickle as data: `read` and its restricted unpickler.

NVlabs/stylegan2-ada-pytorch saves its networks as a plain pickle (training_loop.py:
`pickle.dump(dict(training_set_kwargs=..., G=..., D=..., G_ema=..., augment_pipe=...))`) whose modules
its `torch_utils.persistence` writes as records that carry their own module's source code, run by
`pickle.load` to rebuild them. ganctl never runs it: `read` unpickles with `SnapshotUnpickler`, which
knows only what such a file holds as data --

  - the persistence records (`torch_utils.persistence._reconstruct_persistent_obj`), turned into
    `Record`s: the class's name, its constructor's arguments and the module's parameters, buffers and
    submodules; their `module_src` is dropped unread;
  - tensors (`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`) and their storages
    (`torch.storage._load_from_bytes`, read here by `storage_from_bytes`, never by torch.load: every
    storage's size is checked against the bytes that hold it);
  - plain containers (OrderedDict, set, `dnnlib.util.EasyDict` as a dict), numpy's numeric scalars.

Anything else the file names (`os.system`, `builtins.eval`, any other class) stops the unpickling
with one message naming it, before it is called. Before any pickle in the file reaches the unpickler,
`scanned` reads its opcodes without running them, so that no length or memo index in it can make the
unpickler allocate more than the file holds; the whole file is read into memory first for the same
reason (no read can ask for more than it has).
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
import pickletools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ganctl.checkpoint import ZIP_START, what_it_is
from ganctl.errors import GanctlError
from ganctl.published import FILES, SOURCE


@dataclass(frozen=True, slots=True)
class Record:
    """A persistence record as plain data: what the reference's module was built with and holds.
    (Frozen, without a __dict__ and refusing __setstate__: a pickle's BUILD cannot change one once made.)"""

    class_name: str
    init_args: tuple
    init_kwargs: dict[str, Any]
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    modules: dict[str, Optional["Record"]] = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:  # (else dataclass's, which a pickle's BUILD would call with its own values)
        raise ValueError("a persistence record given a state of its own")

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer by its dotted name, as the module's state_dict names them."""
        named = {prefix + name: tensor for name, tensor in {**self.parameters, **self.buffers}.items()}
        for name, child in self.modules.items():
            if child is not None:
                named.update(child.tensors(f"{prefix}{name}."))
        return named


def record_of(meta: Any) -> Record:
    """`_reconstruct_persistent_obj(meta)` as data: meta is {type, version, module_src, class_name, state},
    state the module's __dict__. module_src is never looked at."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str) \
            or not isinstance(meta.get("state"), dict):
        raise ValueError("a persistence record without a class name and state")
    state = meta["state"]

    def entries(key: str, kind: type) -> dict[str, Any]:
        items = state.get(key) or {}
        if not isinstance(items, dict):
            raise ValueError(f"{meta['class_name']}'s {key} is not a dict")
        found = {name: value for name, value in items.items() if value is not None}
        if not all(isinstance(name, str) and isinstance(value, kind) for name, value in found.items()):
            raise ValueError(f"{meta['class_name']}'s {key} holds something other than {kind.__name__}s")
        return found

    modules = entries("_modules", object)
    if not all(isinstance(child, Record) for child in modules.values()):
        outsider = next(type(child).__name__ for child in modules.values() if not isinstance(child, Record))
        raise ValueError(f"{meta['class_name']} holds a submodule that is not a persistence record ({outsider})")
    init_args, init_kwargs = state.get("_init_args", ()), state.get("_init_kwargs", {})
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
        raise ValueError(f"{meta['class_name']}'s constructor arguments are malformed")
    return Record(meta["class_name"], tuple(init_args), dict(init_kwargs), entries("_parameters", torch.Tensor),
                  entries("_buffers", torch.Tensor), modules)


class EasyDict(dict):
    """dnnlib.util.EasyDict as what it holds: a dict (a subclass only so that pickle's BUILD has a __dict__)."""


STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER
LEGACY_PROTOCOL = 1001


@dataclass(frozen=True)
class StorageType:
    dtype: torch.dtype


def storage_from_bytes(data: Any) -> torch.Tensor:
    """`torch.storage._load_from_bytes(data)` without torch.load: data is torch.save's legacy format of
    one storage (pickles of the magic number, the protocol, the system's sizes, the storage's
    persistent id, the list of its key; then its element count and raw bytes). Returned as a flat tensor
    over a copy of those bytes: a declared size larger than the bytes present is refused, so nothing is
    allocated beyond what the file holds."""
    if not isinstance(data, bytes):
        raise ValueError("a storage that is not bytes")
    stream = io.BytesIO(data)
    if HeaderUnpickler(scanned(stream)).load() != LEGACY_MAGIC or HeaderUnpickler(scanned(stream)).load() != LEGACY_PROTOCOL:
        raise ValueError("a storage that is not in torch's legacy format")
    system = HeaderUnpickler(scanned(stream)).load()
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise ValueError("a storage from a big-endian machine")
    declared: dict[str, tuple[torch.dtype, int]] = {}

    class StorageUnpickler(HeaderUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "torch" and name in STORAGE_DTYPES:
                return StorageType(STORAGE_DTYPES[name])
            refuse(module, name)

        def persistent_load(self, pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)
                    and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
                raise ValueError("a malformed storage record")
            declared[pid[2]] = (pid[1].dtype, pid[4])
            return pid[2]

    key = StorageUnpickler(scanned(stream)).load()
    keys = HeaderUnpickler(scanned(stream)).load()
    if keys != [key] or key not in declared:
        raise ValueError("a storage record that is not one storage")
    dtype, numel = declared[key]
    stored = int.from_bytes(stream.read(8), "little")
    itemsize = torch.empty((), dtype=dtype).element_size()
    left = len(data) - stream.tell()
    if stored != numel or numel * itemsize > left:
        raise Oversized(f"a storage that declares {numel:,} elements of {itemsize} bytes and holds {left:,} bytes")
    return torch.frombuffer(bytearray(stream.read(numel * itemsize)), dtype=dtype) if numel else torch.empty(0, dtype=dtype)


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
                   metadata: Any = None) -> torch.Tensor:
    """`torch._utils._rebuild_tensor_v2` on a storage read by `storage_from_bytes`: a strided view of
    it, which torch refuses when it reaches beyond the storage."""
    integers = lambda values: isinstance(values, tuple) and all(isinstance(v, int) and v >= 0 for v in values)  # noqa: E731
    if not (isinstance(storage, torch.Tensor) and isinstance(offset, int) and offset >= 0 and integers(size)
            and integers(stride) and len(size) == len(stride) and not hooks):
        raise ValueError("a malformed tensor record")
    return storage.as_strided(size, stride, offset)  # RuntimeError beyond the storage


def rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *rest: Any) -> torch.Tensor:
    """`torch._utils._rebuild_parameter`: the tensor itself (ganctl's modules own their Parameters)."""
    if not isinstance(data, torch.Tensor):
        raise ValueError("a parameter that is not a tensor")
    return data


NUMERIC_DTYPE = re.compile(r"[<>|=]?[biufc]\d{1,2}")


def numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """numpy.dtype for numeric kinds only (an 'O' dtype would reach for pickled objects)."""
    if not (isinstance(spec, str) and NUMERIC_DTYPE.fullmatch(spec)):
        raise ValueError(f"a numpy dtype other than a number's ({spec!r})")
    return np.dtype(spec)


def numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy.core.multiarray.scalar: a number from its dtype and bytes (numpy writes e.g. np.float32 so)."""
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and isinstance(data, bytes) and len(data) == dtype.itemsize):
        raise ValueError("a malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype)[0].item()


# What a stylegan2-ada-pytorch snapshot may ask for, and what each becomes here. Nothing else is
# resolved: `find_class` refuses every other name before the unpickler can call it.
KNOWN: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): record_of,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy", "dtype"): numpy_dtype,
    ("numpy.core.multiarray", "scalar"): numpy_scalar,  # numpy 1.x
    ("numpy._core.multiarray", "scalar"): numpy_scalar,  # numpy 2.x
}


class Refused(pickle.UnpicklingError):
    """The file asked for something that is not data: `name` is what it asked for (module.name)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def refuse(module: str, name: str) -> None:
    raise Refused(f"{module}.{name}")


def scanned(stream: io.BytesIO) -> io.BytesIO:
    """The stream after its next pickle's opcodes are read, without running any (pickletools.genops),
    positioned back at that pickle: refused when a memo index is not the next one. The C unpickler
    sizes its memo by the largest index it is given, so LONG_BINPUT 4294967295 in a few bytes would have
    it allocate (and clear) 32 GiB; pickle's writer numbers them 0, 1, 2, ..."""
    start, stored = stream.tell(), 0
    for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name == "MEMOIZE":
            stored += 1
        elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(argument, int) or not 0 <= argument <= stored:
                raise ValueError(f"a memo index {argument} beyond the {stored} objects stored so far")
            stored = max(stored, argument + 1)
    stream.seek(start)
    return stream


class Oversized(ValueError):
    """A storage declares more bytes than the file holds for it."""


class HeaderUnpickler(pickle.Unpickler):
    """Knows no names at all: the legacy format's headers and key lists are numbers, strings and dicts."""

    def find_class(self, module: str, name: str) -> Any:
        refuse(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError("an unexpected persistent id")


class SnapshotUnpickler(pickle.Unpickler):
    """Unpickles a stylegan2-ada-pytorch snapshot as data: the names in KNOWN, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        known = KNOWN.get((module, name))
        if known is None:
            refuse(module, name)
        return known

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError("a persistent id (this is not a plain pickle)")


@dataclass
class Snapshot:
    generator: Record
    discriminator: Optional[Record]
    generator_ema: Optional[Record]
    training_set: dict[str, Any]
    sha256: str
    has: list[str]  # which of G, D and G_ema the file holds


def read(path: Path) -> Snapshot:
    """The networks of a stylegan2-ada-pytorch pickle, as records, and the file's SHA-256. Any file
    that is not one -- or that asks for anything but data -- is one GanctlError naming the file."""
    try:
        data = Path(path).read_bytes()  # in memory: no read can ask for more than the file holds
    except OSError as error:
        raise GanctlError(f"Cannot read {path}: {error.strerror or error}.") from error
    if data.startswith(ZIP_START):
        raise GanctlError(f"{path} is not a stylegan2-ada-pytorch pickle: it is a zip archive (torch.save's format, e.g. a "
                          "ganctl checkpoint, which needs no import). Nothing in it was unpacked.")
    if not data.startswith(b"\x80") or data[1:2] not in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise GanctlError(f"{path} is not a stylegan2-ada-pytorch pickle: it is {what_it_is(data[:4096], len(data))}. "
                          f"`ganctl import` reads the network-snapshot-*.pkl files of stylegan2-ada-pytorch ({FILES}).")
    try:
        snapshot = SnapshotUnpickler(scanned(io.BytesIO(data))).load()
    except Refused as refused:
        raise GanctlError(
            f"Refusing to import {path}: it asks for {refused.name}, which is not a tensor, a plain container or a "
            f"{SOURCE} network record (unpickling it could run code). Nothing from the file was run."
        ) from None
    except Oversized as error:
        raise GanctlError(f"Refusing to import {path}: it holds {error}, more than the file has: it is damaged or forged. "
                          "Nothing was loaded from it.") from None
    except Exception as error:  # damaged bytes surface as any error of the unpickler or of the records' checks
        raise GanctlError(f"Cannot import {path}: it is damaged or truncated, or not a {SOURCE} pickle "
                          f"({type(error).__name__}: {str(error)[:160]}). Nothing was loaded from it.") from None
    if not isinstance(snapshot, dict) or all(snapshot.get(key) is None for key in ("G", "G_ema")):
        what = f"a dict of {', '.join(map(str, list(snapshot)[:6]))}" if isinstance(snapshot, dict) else type(snapshot).__name__
        raise GanctlError(f"{path} is a pickle but not a {SOURCE} snapshot: it holds {what}, and no generator (G or G_ema).")
    networks = {key: snapshot.get(key) for key in ("G", "D", "G_ema")}
    for key, network in networks.items():
        expected = "Discriminator" if key == "D" else "Generator"
        if network is not None and not (isinstance(network, Record) and network.class_name == expected):
            found = network.class_name if isinstance(network, Record) else type(network).__name__
            raise GanctlError(f"{path}: its {key} is a {found}, not the {SOURCE} {expected} that ganctl imports.")
    for key, network in networks.items():
        if network is not None:
            check_nesting(network, key, path)
    training_set = snapshot.get("training_set_kwargs")
    return Snapshot(networks["G"] or networks["G_ema"], networks["D"], networks["G_ema"],
                    dict(training_set) if isinstance(training_set, dict) else {}, hashlib.sha256(data).hexdigest(),
                    [key for key, network in networks.items() if network is not None])


MAX_DEPTH, MAX_MODULES = 32, 100_000  # a StyleGAN2 at 1024x1024 nests 5 deep and has a few hundred modules


def check_nesting(network: Record, key: str, path: Path) -> None:
    """A network's records nest as its modules do: a few levels, some hundreds in all. Records nested
    deeper, or reached more often (one record listed as a submodule many times over, which the pickle
    stores once), are refused before anything walks them recursively."""
    stack, reached = [(network, 1)], 0
    while stack:
        record, depth = stack.pop()
        reached += 1
        if depth > MAX_DEPTH or reached > MAX_MODULES:
            raise GanctlError(f"Refusing to import {path}: its {key} nests modules more than {MAX_DEPTH} deep or reaches more "
                              f"than {MAX_MODULES:,} of them (a network has some hundreds); it is damaged or forged.")
        stack.extend((child, depth + 1) for child in record.modules.values() if child is not None)

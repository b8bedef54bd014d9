"""Published StyleGAN2-ADA models as ganctl checkpoints, with no code from the file run (`ganctl import`).

    ganctl import network-snapshot.pkl --out model.pt [dataset=mnist ...]

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
with one message naming it, before it is called. `settings` reads the ganctl config of `model=stylegan2`
from the records' constructor arguments and refuses what ganctl's StyleGAN2 does not have; `convert`
builds ganctl's G, D and EMA from it, copies the tensors in under ganctl's names (`generator_name`,
`critic_name`: the one mapping, which scripts/compare_stylegan2_reference.py uses too) and writes a
checkpoint at step 0 whose lineage names the pickle and its SHA-256. In eval mode (sampling, metrics)
ganctl's G uses its stored noise maps (`noise_const`), the reference's `noise_mode='const'`.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import math
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from ganctl import checkpoint, config
from ganctl.console import console, word
from ganctl.errors import GanctlError
from ganctl.overrides import expand_shorthands

SOURCE = "stylegan2-ada-pytorch"
FILES = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"


# ---------------------------------------------------------------------------------------------------
# Reading the pickle as data


@dataclass
class Record:
    """A persistence record as plain data: what the reference's module was built with and holds."""

    class_name: str
    init_args: tuple
    init_kwargs: dict[str, Any]
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    modules: dict[str, Optional["Record"]] = field(default_factory=dict)

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
    if HeaderUnpickler(stream).load() != LEGACY_MAGIC or HeaderUnpickler(stream).load() != LEGACY_PROTOCOL:
        raise ValueError("a storage that is not in torch's legacy format")
    system = HeaderUnpickler(stream).load()
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

    key = StorageUnpickler(stream).load()
    keys = HeaderUnpickler(stream).load()
    if keys != [key] or key not in declared:
        raise ValueError("a storage record that is not one storage")
    dtype, numel = declared[key]
    stored = int.from_bytes(stream.read(8), "little")
    itemsize = torch.empty((), dtype=dtype).element_size()
    left = len(data) - stream.tell()
    if stored != numel or numel * itemsize > left:
        raise OverflowError(f"a storage that declares {numel:,} elements of {itemsize} bytes and holds {left:,} bytes")
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


def read(path: Path) -> Snapshot:
    """The networks of a stylegan2-ada-pytorch pickle, as records, and the file's SHA-256. Any file
    that is not one -- or that asks for anything but data -- is one GanctlError naming the file."""
    try:
        data = Path(path).read_bytes()  # in memory: no read can ask for more than the file holds
    except OSError as error:
        raise GanctlError(f"Cannot read {path}: {error.strerror or error}.") from error
    if data.startswith(checkpoint.ZIP_START):
        raise GanctlError(f"{path} is not a stylegan2-ada-pytorch pickle: it is a zip archive (torch.save's format, e.g. a "
                          "ganctl checkpoint, which needs no import). Nothing in it was unpacked.")
    if not data.startswith(b"\x80") or data[1:2] not in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise GanctlError(f"{path} is not a stylegan2-ada-pytorch pickle: it is {checkpoint.what_it_is(data[:4096], len(data))}. "
                          f"`ganctl import` reads the network-snapshot-*.pkl files of stylegan2-ada-pytorch ({FILES}).")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))  # (the C unpickler nests by containers, not calls)
    try:
        snapshot = SnapshotUnpickler(io.BytesIO(data)).load()
    except Refused as refused:
        raise GanctlError(
            f"Refusing to import {path}: it asks for {refused.name}, which is not a tensor, a plain container or a "
            f"{SOURCE} network record (unpickling it could run code). Nothing from the file was run."
        ) from None
    except OverflowError as error:
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
    training_set = snapshot.get("training_set_kwargs")
    return Snapshot(networks["G"] or networks["G_ema"], networks["D"], networks["G_ema"],
                    dict(training_set) if isinstance(training_set, dict) else {}, hashlib.sha256(data).hexdigest())


# ---------------------------------------------------------------------------------------------------
# The reference's settings and names as ganctl's


def generator_name(name: str) -> str:
    """The reference G's parameter or buffer name as ganctl's."""
    name = re.sub(r"^mapping\.fc(\d+)\.", r"mapping_network.layers.\1.", name)
    name = name.replace("mapping.embed.", "mapping_network.embed.").replace("mapping.w_avg", "w_avg")
    match = re.match(r"synthesis\.b(\d+)\.(.*)", name)
    return f"blocks.{int(math.log2(int(match.group(1)))) - 2}.{match.group(2)}" if match else name


def critic_name(name: str, image_size: int) -> str:
    """The reference D's parameter name as ganctl's."""
    name = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.layers.\1.", name)
    if name.startswith("b4."):
        return name[3:]
    match = re.match(r"b(\d+)\.(.*)", name)
    if match:
        return f"blocks.{int(math.log2(image_size)) - int(math.log2(int(match.group(1))))}.{match.group(2)}"
    return name


def resample_filter() -> torch.Tensor:
    """The reference's stored resample_filter for [1, 3, 3, 1] (upfirdn2d.setup_filter): ganctl's fixed low-pass."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return torch.outer(taps, taps) / taps.sum() ** 2


# Constructor arguments that ganctl's StyleGAN2 has no setting for, with the only values it can take.
# (num_fp16_res and fp16_channels_last say how the reference computes, not what: ganctl's own
# train.precision decides that; freeze_layers is a training setting: FreezeD is model.discriminator.freeze.)
FIXED = {
    "mapping_kwargs.embed_features": (None,), "mapping_kwargs.layer_features": (None,),
    "mapping_kwargs.activation": ("lrelu",), "synthesis_kwargs.architecture": ("skip",),
    "synthesis_kwargs.resample_filter": ([1, 3, 3, 1],), "synthesis_kwargs.activation": ("lrelu",),
    "synthesis_kwargs.kernel_size": (3,), "synthesis_kwargs.use_noise": (True, False),
    "block_kwargs.activation": ("lrelu",), "block_kwargs.resample_filter": ([1, 3, 3, 1],),
    "epilogue_kwargs.activation": ("lrelu",), "cmap_dim": (None,), "architecture": ("orig", "resnet"),
    "resample_filter": ([1, 3, 3, 1],),
}
IGNORED = {"synthesis_kwargs.num_fp16_res", "synthesis_kwargs.fp16_channels_last", "num_fp16_res",
           "block_kwargs.fp16_channels_last", "block_kwargs.freeze_layers"}


def flat(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments one level deep: {'mapping_kwargs': {'num_layers': 2}} -> {'mapping_kwargs.num_layers': 2}."""
    out = {}
    for key, value in kwargs.items():
        if key.endswith("_kwargs") and isinstance(value, dict):
            out.update({f"{key}.{inner}": setting for inner, setting in value.items()})
        else:
            out[key] = value
    return out


def settings(generator: Record, discriminator: Optional[Record]) -> tuple[list[str], dict[str, Any]]:
    """The `ganctl train` overrides of model=stylegan2 that build the reference's networks, and the data's
    shape ({channels, image_size[, classes]}). Every setting ganctl's StyleGAN2 cannot take is refused, all named in one message."""
    if generator.init_args or (discriminator is not None and discriminator.init_args):
        raise GanctlError("The networks were built with positional arguments, which a stylegan2-ada-pytorch snapshot never has.")
    g, d = flat(generator.init_kwargs), flat(discriminator.init_kwargs) if discriminator else {}
    handled: dict[str, set[str]] = {"G": set(IGNORED), "D": set(IGNORED)}
    unsupported = []

    def take(network: str, values: dict[str, Any], key: str, default: Any) -> Any:
        handled[network].add(key)
        return values.get(key, default)

    for network, values in (("G", g), ("D", d)):
        for key, allowed in FIXED.items():
            if key in values:
                handled[network].add(key)
                value = list(values[key]) if isinstance(values[key], tuple) else values[key]
                if value not in allowed:
                    unsupported.append(f"{network}'s {key}={value!r} (ganctl: {' or '.join(map(repr, allowed))})")
    resolution, channels = take("G", g, "img_resolution", None), take("G", g, "img_channels", None)
    classes = take("G", g, "c_dim", 0)
    if not isinstance(resolution, int) or not isinstance(channels, int) or not isinstance(classes, int):
        raise GanctlError("The generator's record has no image resolution, channels or label size: it is not a stylegan2-ada-pytorch Generator.")
    overrides = [
        "model=stylegan2", f"dataset.image_size={resolution}",
        f"model.generator.latent_dim={take('G', g, 'z_dim', 512)}", f"model.generator.w_dim={take('G', g, 'w_dim', 512)}",
        f"model.generator.mapping_layers={take('G', g, 'mapping_kwargs.num_layers', 8)}",
        f"model.generator.mapping_lr_multiplier={take('G', g, 'mapping_kwargs.lr_multiplier', 0.01)}",
        f"model.generator.w_avg_beta={take('G', g, 'mapping_kwargs.w_avg_beta', 0.995)}",
        f"model.generator.channel_base={take('G', g, 'synthesis_kwargs.channel_base', 32768)}",
        f"model.generator.channel_max={take('G', g, 'synthesis_kwargs.channel_max', 512)}",
        f"model.generator.conv_clamp={as_override(take('G', g, 'synthesis_kwargs.conv_clamp', None))}",
        f"model.generator.noise={as_override(bool(g.get('synthesis_kwargs.use_noise', True)))}",
    ]
    if discriminator is not None:
        for key, value in (("c_dim", classes), ("img_resolution", resolution), ("img_channels", channels)):
            if take("D", d, key, None) != value:
                unsupported.append(f"D's {key}={d.get(key)!r} against G's {value!r}")
        group = take("D", d, "epilogue_kwargs.mbstd_group_size", 4)
        if group is None:
            unsupported.append("D's epilogue_kwargs.mbstd_group_size=None (the whole batch; ganctl: a number)")
        overrides += [
            f"model.discriminator.architecture={take('D', d, 'architecture', 'resnet')}",
            f"model.discriminator.channel_base={take('D', d, 'channel_base', 32768)}",
            f"model.discriminator.channel_max={take('D', d, 'channel_max', 512)}",
            f"model.discriminator.conv_clamp={as_override(take('D', d, 'conv_clamp', None))}",
            f"model.discriminator.mbstd_group_size={group}",
            f"model.discriminator.mbstd_channels={take('D', d, 'epilogue_kwargs.mbstd_num_channels', 1)}",
            f"model.discriminator.mapping_layers={take('D', d, 'mapping_kwargs.num_layers', 8)}",
        ]
        for key in ("mapping_kwargs.lr_multiplier",):
            if take("D", d, key, 0.01) != 0.01:
                unsupported.append(f"D's {key}={d[key]!r} (ganctl: 0.01)")
    if classes:
        overrides += ["conditioning=concat", "conditioning.discriminator=projection"]
    for network, values in (("G", g), ("D", d)):
        unsupported += [f"{network}'s {key}={values[key]!r} (a setting ganctl does not know)" for key in values
                        if key not in handled[network]]
    from ganctl.models.stylegan2 import RESOLUTIONS

    if resolution not in RESOLUTIONS:
        unsupported.append(f"img_resolution={resolution} (ganctl's StyleGAN2: {', '.join(map(str, RESOLUTIONS))})")
    if channels not in (1, 3):
        unsupported.append(f"img_channels={channels} (ganctl's StyleGAN2: 1 or 3)")
    if unsupported:
        raise GanctlError(f"ganctl's model=stylegan2 cannot represent this network: {'; '.join(unsupported)}. Nothing was written.")
    shape: dict[str, Any] = {"channels": channels, "image_size": resolution}
    if classes:
        shape["classes"] = [str(index) for index in range(classes)]
    return overrides, shape


def ganctl_tensors(record: Record, rename, network: str, path: Path) -> dict[str, torch.Tensor]:
    """A network's tensors under ganctl's names; its resample filters (which ganctl does not store) checked."""
    out = {}
    for name, tensor in record.tensors().items():
        if name.endswith("resample_filter"):
            if tensor.shape != (4, 4) or not torch.allclose(tensor.float(), resample_filter()):
                raise GanctlError(f"{path}: {network}'s {name} is not the [1, 3, 3, 1] filter ganctl's StyleGAN2 resamples with.")
            continue
        out[rename(name)] = tensor
    return out


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], network: str, path: Path) -> None:
    """Copy every tensor of the reference's network into ganctl's; refuse any tensor missing, left over or of another shape."""
    ours = module.state_dict()
    missing = sorted(set(ours) - set(tensors))
    extra = sorted(set(tensors) - set(ours))
    wrong = [f"{name} {list(tensors[name].shape)} (ganctl {list(ours[name].shape)})" for name in ours
             if name in tensors and tensors[name].shape != ours[name].shape]
    if missing or extra or wrong:
        first = (f"ganctl's {missing[0]} has no counterpart" if missing else f"its {extra[0]} has no place in ganctl's"
                 if extra else f"its {wrong[0]} differs in shape")
        raise GanctlError(f"{path}: its {network} does not match ganctl's StyleGAN2 built from its settings ({len(missing)} "
                          f"missing, {len(extra)} left over, {len(wrong)} of another shape; {first}). Nothing was written.")
    with torch.no_grad():
        for name, tensor in ours.items():
            tensor.copy_(tensors[name].to(tensor.dtype))


# ---------------------------------------------------------------------------------------------------
# The checkpoint


def compose_config(overrides: list[str]) -> tuple[Any, dict[str, str]]:
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        try:
            cfg = compose(config_name="train", overrides=expand_shorthands(overrides), return_hydra_config=True)
        except Exception as error:  # Hydra's override and composition errors
            raise GanctlError(f"ganctl import: cannot compose the config ({str(error).splitlines()[0]}).") from None
    choices = {group: cfg.hydra.runtime.choices[group] for group in config.GROUPS}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def convert(path: Path, extra: list[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """The ganctl checkpoint (step 0) of the snapshot at `path`, and the overrides of `ganctl train` that
    build its networks (what a fine-tune with init_from= needs on its command line); `extra`: overrides
    for what the pickle does not say (the dataset to evaluate or fine-tune on, metrics settings)."""
    from ganctl.gan import GAN

    path = Path(path)
    snapshot = read(path)
    overrides, shape = settings(snapshot.generator, snapshot.discriminator)
    fixed = {override.split("=", 1)[0] for override in overrides}
    clashing = [item for item in extra if item.split("=", 1)[0].lstrip("+~") in fixed or item.startswith(("model.", "conditioning"))]
    if clashing:
        raise GanctlError(f"ganctl import: {', '.join(clashing)} would change what the pickle defines (the model, its "
                          "conditioning and resolution come from the file); pass the dataset and training settings only.")
    # Without a dataset= of the user's: dataset=folder at the path the reference trained on (set after
    # composing: a path is no override token), which `ganctl eval` reads if it is there.
    own_dataset = any(item.startswith("dataset=") for item in extra)
    dataset = [] if own_dataset else ["dataset=folder", f"dataset.channels={shape['channels']}"]
    cfg, choices = compose_config([*dataset, "train.precision=fp32", "train.channels_last=false",
                                   "train.ema.half_life_kimg=10", *extra, *overrides])
    trained_on = snapshot.training_set.get("path")
    if not own_dataset and isinstance(trained_on, str) and OmegaConf.select(cfg, "dataset.root") is None:
        cfg.dataset.root = trained_on
    config.check(cfg)
    if cfg.dataset.get("channels", shape["channels"]) != shape["channels"]:
        raise GanctlError(f"ganctl import: the network makes {shape['channels']}-channel images and dataset.channels is "
                          f"{cfg.dataset.channels}.")
    torch.manual_seed(0)
    gan = GAN.from_config(cfg, shape["channels"], shape["image_size"], torch.device("cpu"), classes=shape.get("classes"))
    load_into(gan.generator, ganctl_tensors(snapshot.generator, generator_name, "G", path), "G", path)
    if snapshot.discriminator is not None:
        load_into(gan.discriminator, ganctl_tensors(snapshot.discriminator, lambda name: critic_name(name, shape["image_size"]),
                                                    "D", path), "D", path)
    if gan.generator_ema is not None:
        load_into(gan.generator_ema, ganctl_tensors(snapshot.generator_ema or snapshot.generator, generator_name, "G_ema", path),
                  "G_ema", path)
    stored = OmegaConf.to_container(cfg, resolve=True)
    stored["train"]["precision"] = gan.precision
    lineage = {
        "parents": [{
            "path": str(path.resolve()), "checksum": snapshot.sha256, "checksum_kind": "sha256", "step": 0,
            "model": SOURCE, "dataset": snapshot.training_set.get("path"), "conditioning": "concat" if shape.get("classes") else "none",
            "data": dict(shape), "data_fingerprint": None, "imported_from": SOURCE,
            "has": [key for key, record in (("G", snapshot.generator), ("D", snapshot.discriminator), ("G_ema", snapshot.generator_ema))
                    if record is not None],
        }],
        "imported": f"imported from {SOURCE}", "data_fingerprint": None, "frozen": {"blocks": 0, "parameters": 0},
        "reinitialised": {}, "new": {} if snapshot.discriminator is not None else {"discriminator": ["all (the pickle has no D)"]},
    }
    state = checkpoint.training_state(gan.state_dict(), step=0, wall_seconds=0.0, config=stored, choices=choices, metrics=[],
                                      best=None, data=shape, device=torch.device("cpu"), lineage=lineage)
    return state, not_default(overrides)


def not_default(overrides: list[str]) -> list[str]:
    """The overrides whose values differ from model=stylegan2's defaults (the option itself kept)."""
    defaults, _ = compose_config(["model=stylegan2"])
    return [item for item in overrides if item == "model=stylegan2" or "." not in item.split("=", 1)[0]
            or as_override(OmegaConf.select(defaults, item.split("=", 1)[0])) != item.split("=", 1)[1]]


def as_override(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ganctl import",
        description=f"Convert a {SOURCE} network pickle (NVIDIA's published models: {FILES}) into a ganctl checkpoint "
                    "of model=stylegan2, without running any code from the file.")
    parser.add_argument("pickle", help="a network-snapshot-*.pkl of stylegan2-ada-pytorch (G, D and G_ema)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt); an existing file is not replaced")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config for what the pickle does not say, e.g. dataset=mnist (default: dataset=folder at the "
                             "pickle's training-set path)")
    args = parser.parse_intermixed_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise GanctlError(f"{out} already exists: ganctl import does not replace it. Choose another --out, or pass --force.")
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / 'model.pt'}.")
    if not out.parent.is_dir():
        raise GanctlError(f"Cannot write {out}: the folder {out.parent} does not exist.")
    state, model = convert(Path(args.pickle), list(args.overrides))
    checkpoint.save(state, out)
    parent, data = state["lineage"]["parents"][0], state["data"]
    classes = f", {len(data['classes'])} classes" if data.get("classes") else ""
    console.print(f"Imported {args.pickle} ({SOURCE}, sha256 {parent['checksum'][:16]}..., with {', '.join(parent['has'])}) as "
                  f"{out}: model=stylegan2 at {data['image_size']}x{data['image_size']}x{data['channels']}{classes}.\n"
                  f"Sample it:    ganctl sample {word(out)}\n"
                  f"Fine-tune it: ganctl train {word(f'init_from={out}')} {' '.join(map(word, model))} dataset=<yours>")
    return 0

"""A stylegan2-ada-pytorch snapshot's records as a ganctl checkpoint of model=stylegan2.

`settings` reads the ganctl config from the records' constructor arguments and refuses what ganctl's
StyleGAN2 does not have; `convert` builds ganctl's G, D and EMA from it, copies the tensors in under
ganctl's names (`generator_name`, `critic_name`: the one mapping, which
scripts/compare_stylegan2_reference.py uses too) and returns a checkpoint at step 0 whose lineage names
the pickle and its SHA-256. In eval mode (sampling, metrics) ganctl's G uses its stored noise maps
(`noise_const`), the reference's `noise_mode='const'`.
"""

from __future__ import annotations

import math
import re
import reprlib
from pathlib import Path
from typing import Any, Optional

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from ganctl import checkpoint, config
from ganctl.errors import GanctlError
from ganctl.overrides import expand_shorthands
from ganctl.published import SOURCE
from ganctl.published.unpickler import Record, read

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


# ganctl's setting <- (network, the reference's constructor argument, its default there, what it must be).
SETTINGS = (
    ("model.generator.latent_dim", "G", "z_dim", 512, "count"),
    ("model.generator.w_dim", "G", "w_dim", 512, "count"),
    ("model.generator.mapping_layers", "G", "mapping_kwargs.num_layers", 8, "count"),
    ("model.generator.mapping_lr_multiplier", "G", "mapping_kwargs.lr_multiplier", 0.01, "number"),
    ("model.generator.w_avg_beta", "G", "mapping_kwargs.w_avg_beta", 0.995, "number"),
    ("model.generator.channel_base", "G", "synthesis_kwargs.channel_base", 32768, "count"),
    ("model.generator.channel_max", "G", "synthesis_kwargs.channel_max", 512, "count"),
    ("model.generator.conv_clamp", "G", "synthesis_kwargs.conv_clamp", None, "number or None"),
    ("model.generator.noise", "G", "synthesis_kwargs.use_noise", True, "bool"),
    ("model.discriminator.architecture", "D", "architecture", "resnet", "str"),
    ("model.discriminator.channel_base", "D", "channel_base", 32768, "count"),
    ("model.discriminator.channel_max", "D", "channel_max", 512, "count"),
    ("model.discriminator.conv_clamp", "D", "conv_clamp", None, "number or None"),
    ("model.discriminator.mbstd_group_size", "D", "epilogue_kwargs.mbstd_group_size", 4, "count"),
    ("model.discriminator.mbstd_channels", "D", "epilogue_kwargs.mbstd_num_channels", 1, "count"),
    ("model.discriminator.mapping_layers", "D", "mapping_kwargs.num_layers", 8, "count"),
)
KINDS = {
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "number or None": lambda v: v is None or KINDS["number"](v),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def shown(value: Any) -> str:
    """A value from the file for a message: its repr, cut short (the file chose it)."""
    return reprlib.repr(value)


def settings(generator: Record, discriminator: Optional[Record]) -> tuple[list[str], dict[str, Any]]:
    """The `ganctl train` overrides of model=stylegan2 that build the reference's networks, and the data's
    shape ({channels, image_size[, classes]}). Every setting ganctl's StyleGAN2 cannot take is refused,
    all named in one message; every value is checked for its type before it becomes an override."""
    if generator.init_args or (discriminator is not None and discriminator.init_args):
        raise GanctlError("The networks were built with positional arguments, which a stylegan2-ada-pytorch snapshot never has.")
    arguments = {"G": flat(generator.init_kwargs), "D": flat(discriminator.init_kwargs) if discriminator else {}}
    handled = {"G": set(IGNORED), "D": set(IGNORED)}
    unsupported = []
    for network, values in arguments.items():
        for key, allowed in FIXED.items():
            if key in values:
                handled[network].add(key)
                value = list(values[key]) if isinstance(values[key], tuple) else values[key]
                if value not in allowed:
                    unsupported.append(f"{network}'s {key}={shown(value)} (ganctl: {' or '.join(map(repr, allowed))})")
    g = arguments["G"]
    shape_keys = ("img_resolution", "img_channels", "c_dim")
    resolution, channels, classes = (g.get(key, 0 if key == "c_dim" else None) for key in shape_keys)
    if not all(KINDS["count"](value) for value in (resolution, channels, classes)):
        raise GanctlError("The generator's record has no image resolution, channels or label size: it is not a "
                          "stylegan2-ada-pytorch Generator.")
    handled["G"].update(shape_keys)
    overrides = ["model=stylegan2", f"dataset.image_size={resolution}"]
    for setting, network, key, default, kind in SETTINGS:
        if network == "D" and discriminator is None:
            continue
        handled[network].add(key)
        value = arguments[network].get(key, default)
        if not KINDS[kind](value):
            unsupported.append(f"{network}'s {key}={shown(value)} (ganctl: {kind.replace('count', 'a whole number')})")
        else:
            overrides.append(f"{setting}={as_override(value)}")
    if discriminator is not None:
        d = arguments["D"]
        handled["D"].update(shape_keys)
        for key, value in zip(shape_keys, (resolution, channels, classes)):
            if d.get(key, 0 if key == "c_dim" else None) != value:
                unsupported.append(f"D's {key}={shown(d.get(key))} against G's {value}")
        handled["D"].add("mapping_kwargs.lr_multiplier")
        if d.get("mapping_kwargs.lr_multiplier", 0.01) != 0.01:
            unsupported.append(f"D's mapping_kwargs.lr_multiplier={shown(d['mapping_kwargs.lr_multiplier'])} (ganctl: 0.01)")
    if classes:
        overrides += ["conditioning=concat", "conditioning.discriminator=projection"]
    for network, values in arguments.items():
        unsupported += [f"{network}'s {key}={shown(values[key])} (a setting ganctl does not know)" for key in values
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
    with torch.random.fork_rng(devices=[]):  # (every tensor is then overwritten: the caller's RNG stays as it was)
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
            "has": snapshot.has,
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

"""What a config may name, and the one place that builds it: files name components, never code.

A config node names what to build with `_target_` (Hydra's key): `{_target_: ganctl.models.DCGANGenerator,
base_filters: 32}`. Configs come from ganctl's YAML, from a user's YAML (`--config-dir`), from the
command line, and from files written earlier: a checkpoint's stored config, an exported generator's
metadata. Any of those can be crafted, so a name is never imported and called because a file says so:

- each place of the config that builds something (`PLACES`: model.generator, loss.discriminator,
  optimizer.g, dataset, metrics.feature, ...) accepts the exact names of ganctl's own components
  of that kind, listed below -- no attribute path is followed, no prefix is enough;
- a node holds its component's settings and nothing Hydra would act on: no `_args_`, `_recursive_`,
  `_convert_`, and no component nested inside another's settings;
- `check_config` checks a whole config before anything of it is built, and refuses the first
  offence with one message naming its key and value; `build` checks its node again, then calls
  the component itself (not `hydra.utils.instantiate`).

A user's own component (a feature extractor, a regulariser, a model) is accepted only from a module
the user trusts for that command, on the command line (`ganctl --trust my_module train ...`) or in
the environment (`GANCTL_TRUST=my_module`): then `my_module.Name` is accepted at any place, for
names directly in that module. A file can name such a component, but only the user's command makes
it buildable.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganctl.errors import GanctlError

TRUST_VARIABLE = "GANCTL_TRUST"  # modules the user trusts, comma-separated (`--trust` sets it for the command)

GENERATORS = tuple(f"ganctl.models.{name}Generator" for name in ("MLP", "Conv", "DCGAN", "ResNet", "BigGAN", "StyleGAN2", "R3GAN"))
DISCRIMINATORS = tuple(f"ganctl.models.{name}Discriminator" for name in ("MLP", "Conv", "DCGAN", "ResNet", "BigGAN", "StyleGAN2", "R3GAN"))
DISCRIMINATOR_LOSSES = tuple(f"ganctl.losses.{name}_discriminator_loss" for name in ("bce", "hinge", "lsgan", "wasserstein", "relativistic"))
GENERATOR_LOSSES = tuple(f"ganctl.losses.{name}_generator_loss" for name in ("bce", "minimax", "hinge", "lsgan", "wasserstein", "relativistic"))
OPTIMIZERS = tuple(f"torch.optim.{name}" for name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "SGD", "Adagrad", "Adadelta"))
DATASETS = tuple(f"ganctl.data.{name}" for name in ("mnist", "fashion_mnist", "cifar10", "celeba", "folder", "zipped", "quickdraw"))
FEATURES = ("ganctl.metrics.PooledPixels",)
# What metrics.feature may name as a word (ganctl/metrics.py, ganctl/features.py): auto (the bundled
# judge for the bundled digits, else inception), the pretrained backbones; or `judge:FILE`, a judge's
# weights file (ganctl/judge.py: read with weights_only, its network one of ganctl's own).
FEATURE_NAMES = ("auto", "inception", "dinov2", "dinov2-vits14", "dinov2-vitb14", "dinov2-vitl14", "dinov2-vitg14", "clip")
JUDGE_PREFIX = "judge:"
REGULARISERS = tuple(f"ganctl.regularisers.{name}" for name in ("R1", "R2", "GradientPenalty", "PathLength", "WeightClip"))
CALLBACKS = ("ganctl.sweep.SweepSummary", "hydra.experimental.callbacks.LogJobReturnCallback")
TRACKERS = tuple(f"ganctl.trackers.{name}" for name in ("TensorBoard", "CSV", "MLflow", "WandB"))
# What ganctl's Optuna sweeper builds from hydra.sweeper.sampler and hydra.sweeper.pruner.
SAMPLERS = tuple(f"optuna.samplers.{name}" for name in ("TPESampler", "RandomSampler", "CmaEsSampler", "NSGAIISampler",
                                                           "NSGAIIISampler", "QMCSampler", "GPSampler", "GridSampler"))
PRUNERS = tuple(f"optuna.pruners.{name}" for name in ("NopPruner", "MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner",
                                                       "HyperbandPruner", "ThresholdPruner", "WilcoxonPruner"))

NOT_YOURS = ("ganctl", "torch", "torchvision", "hydra", "hydra_plugins", "omegaconf", "numpy", "optuna")  # (no --trust advice)

# Each place of a config that builds something, and what it may name.
PLACES: dict[str, tuple[str, ...]] = {
    "model.generator": GENERATORS,
    "model.discriminator": DISCRIMINATORS,
    "loss.discriminator": DISCRIMINATOR_LOSSES,
    "loss.generator": GENERATOR_LOSSES,
    "optimizer.g": OPTIMIZERS,
    "optimizer.d": OPTIMIZERS,
    "dataset": DATASETS,
    "metrics.feature": FEATURES,
    "loss.regularisers.*": REGULARISERS,  # each regulariser, by its name
    "logger.*": TRACKERS,  # each tracker, by its name
}
# What Hydra's logging configs (hydra.job_logging, hydra.hydra_logging) may name.
LOGGING_CLASSES = ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter",
                   "logging.handlers.RotatingFileHandler", "logging.handlers.TimedRotatingFileHandler",
                   "logging.handlers.WatchedFileHandler", "colorlog.ColoredFormatter")
LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
# Hydra's own keys that make instantiate do more than call one component with its settings.
HYDRA_KEYWORDS = ("_args_", "_recursive_", "_convert_")
# Hydra's launchers and sweepers that `ganctl train -m` may run: Hydra's own plugins and ganctl's.
PLUGIN_PREFIXES = (
    "hydra._internal.core_plugins.", "hydra_plugins.hydra_joblib_launcher.", "hydra_plugins.hydra_submitit_launcher.",
    "hydra_plugins.ganctl_submitit.", "hydra_plugins.ganctl_sweeper.",
)


def trusted_modules() -> tuple[str, ...]:
    """The modules the user trusts for this command (`--trust`, or GANCTL_TRUST)."""
    return tuple(name.strip() for name in os.environ.get(TRUST_VARIABLE, "").split(",") if name.strip())


def trust(modules: list[str]) -> None:
    """Trust these modules for this command and the processes it starts (sweep workers, torchrun ranks)."""
    names = dict.fromkeys([*trusted_modules(), *modules])
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise GanctlError(f"--trust takes a Python module name (e.g. --trust my_package.penalties), got {name!r}.")
    os.environ[TRUST_VARIABLE] = ",".join(names)


def is_trusted(target: str) -> bool:
    """Whether `target` is a name directly in a module the user trusts (my_module.Name)."""
    module, _, name = target.rpartition(".")
    return module in trusted_modules() and name.isidentifier() and not name.startswith("_")


def is_component(target: Any) -> bool:
    """Whether a config may name `target` at some place: one of ganctl's components, or trusted."""
    return isinstance(target, str) and (any(target in allowed for allowed in PLACES.values()) or is_trusted(target))


def refusal(key: str, value: Any, source: str, allowed: tuple[str, ...] = ()) -> GanctlError:
    """The one message for a config that names code where a component belongs."""
    shown = repr(value) if not isinstance(value, str) else value
    module = value.rpartition(".")[0] if isinstance(value, str) else ""
    top = module.partition(".")[0]
    own = (f" If {module} is your own module and you trust it, add --trust {module} to the command."
           if top.isidentifier() and top not in (*sys.stdlib_module_names, *NOT_YOURS) else "")
    choices = f" It may name one of: {', '.join(name.rpartition('.')[2] for name in allowed)}." if allowed else ""
    return GanctlError(f"Refusing {source}: {key} names {shown}, which is not one of ganctl's components there. "
                       f"A config names components, never code; nothing was built from it.{choices}{own}")


def allowed_at(path: str, places: dict[str, tuple[str, ...]]) -> Optional[tuple[str, ...]]:
    """What the node at a dotted path may name (a place `a.b.*` stands for each node below a.b), or
    None if nothing may be built there."""
    parent, _, name = path.rpartition(".")
    return places.get(path, places.get(f"{parent}.*") if parent and name else None)


def nodes(cfg: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every dict of a plain config with its dotted path, the root first."""
    if isinstance(cfg, dict):
        yield path, cfg
        for key, value in cfg.items():
            yield from nodes(value, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, list):
        for index, value in enumerate(cfg):
            yield from nodes(value, f"{path}[{index}]")


def plain(cfg: Any) -> Any:
    """A config as plain containers (interpolations resolved), at any depth."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        except Exception as error:  # an interpolation that does not resolve, a missing value
            raise GanctlError(f"The config cannot be read: {str(error).strip().splitlines()[0]}") from None
    if isinstance(cfg, dict):
        return {key: plain(value) for key, value in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [plain(value) for value in cfg]
    return cfg


def check_config(cfg: Any, source: str = "this config", places: Optional[dict[str, tuple[str, ...]]] = None,
                 prefix: str = "") -> None:
    """Refuse a config (a DictConfig, or a file's plain dict) that names anything but ganctl's components
    at the places that build them, before any of it is built: the first offence, by key (below
    `prefix`) and value."""
    places = PLACES if places is None else places
    try:
        found = list(nodes(plain(cfg)))
    except RecursionError:
        raise GanctlError(f"Refusing {source}: its config is nested too deeply to be a ganctl config.") from None
    for path, node in found:
        def key_of(key: str) -> str:
            return ".".join(part for part in (prefix.rstrip("."), path, key) if part)

        for key in node:
            if not isinstance(key, str):
                raise GanctlError(f"Refusing {source}: {key_of('') or 'its top level'} has a key that is not text ({key!r}).")
            if key in HYDRA_KEYWORDS:
                raise refusal(key_of(key), node[key], source)
        if "_target_" not in node:
            continue
        target, allowed = node["_target_"], allowed_at(path, places)
        if allowed is None or not isinstance(target, str) or not (target in allowed or is_trusted(target)):
            raise refusal(key_of("_target_"), target, source, allowed or ())
        if not isinstance(node.get("_partial_", False), bool):
            raise refusal(key_of("_partial_"), node["_partial_"], source)


def check_hydra(hydra_cfg: Any) -> None:
    """Refuse what Hydra itself would build from the composed config, outside `build`: logging configs
    that name other than the standard library's handlers and formatters, callbacks other than ganctl's
    (and Hydra's job-return log), launchers and sweepers other than Hydra's own plugins and ganctl's
    (unless the user trusts their module)."""
    # Unresolved: Hydra's runtime values (hydra.job.num, ...) are not set yet; an interpolated _target_ is refused.
    hydra_cfg = OmegaConf.to_container(hydra_cfg, resolve=False) if isinstance(hydra_cfg, DictConfig) else hydra_cfg
    source = "this command's Hydra config"
    for key in ("hydra_logging", "job_logging"):
        check_logging(hydra_cfg.get(key) or {}, f"hydra.{key}", source)
    callbacks = hydra_cfg.get("callbacks") or {}
    if not isinstance(callbacks, dict):
        raise refusal("hydra.callbacks", callbacks, source)
    check_config(callbacks, source, {str(name): CALLBACKS for name in callbacks}, prefix="hydra.callbacks")
    for key in ("launcher", "sweeper"):
        node = hydra_cfg.get(key) or {}
        target = node.get("_target_") if isinstance(node, dict) else node
        if not (isinstance(target, str) and (target.startswith(PLUGIN_PREFIXES) or is_trusted(target))):
            raise refusal(f"hydra.{key}._target_", target, source)
        check_config({k: v for k, v in node.items() if k != "_target_"}, source, {"sampler": SAMPLERS, "pruner": PRUNERS},
                     prefix=f"hydra.{key}")


def check_logging(log_config: Any, prefix: str, source: str) -> None:
    """A logging.config.dictConfig dict names classes (`class`), factories (`()`) and objects
    (`ext://`): only the standard handlers and formatters, and the standard streams."""
    for path, node in nodes(log_config):
        for key, value in node.items():
            named = value if key in ("class", "()") else value if isinstance(value, str) and value.startswith("ext://") else None
            allowed = LOGGING_STREAMS if key not in ("class", "()") else LOGGING_CLASSES
            if named is not None and named not in allowed:
                raise refusal(".".join(part for part in (prefix, path, str(key)) if part), named, source, allowed)


def resolve(target: str) -> Any:
    """The callable an accepted name stands for: its module imported, one attribute read."""
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise GanctlError(f"Cannot find {target}: {error}.") from None


def component(node: Any, where: str) -> Any:
    """The callable that the node at `where` names, once it is checked."""
    settings = plain(node)
    if not isinstance(settings, dict) or "_target_" not in settings:
        raise GanctlError(f"{where} must be a config node with _target_ naming a ganctl component, got {settings!r}.")
    check_config(settings, "this config", {"": allowed_at(where, PLACES) or ()}, prefix=where)
    return resolve(settings["_target_"])


def build(node: Any, where: str, **runtime: Any) -> Any:
    """The component the config node at `where` (e.g. "model.generator") names, called with the
    node's settings and the `runtime` facts (image shape, conditioning, a split); with `_partial_`,
    a functools.partial of it. Refused, with the key and value, unless it is allowed there."""
    settings = plain(node)
    target = component(settings, where)
    keywords = {key: value for key, value in settings.items() if key not in ("_target_", "_partial_")}
    if settings.get("_partial_", False):
        return functools.partial(target, **keywords, **runtime)
    try:
        return target(**keywords, **runtime)
    except GanctlError:
        raise
    except Exception as error:  # the component's own refusal of its settings (a size it cannot make, a bad value)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GanctlError(f"Cannot build {where} from its config: {reason}") from error

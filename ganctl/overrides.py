"""The command line's overrides before Hydra composes them: the shorthands of earlier ganctl versions
expanded (`expand_shorthands`), and keys ganctl does not know refused with the closest known one
(`check_override_keys`)."""

from __future__ import annotations

import functools
from typing import Any, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganctl.config import (
    GROUPS, HYDRA_KEYWORDS, LEGACY_LOSS_KEYS, OPEN_MAPPINGS, check_optimizer, config_dir, keyword_parameters, settings_of,
    takes_message, unknown_key,
)
from ganctl.errors import GanctlError


# Hydra's own flags for `ganctl train` (anything else that starts with - is not one).
HYDRA_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "--resolve", "-p", "--package", "-r", "--run",
               "-m", "--multirun", "-sc", "--shell-completion", "-cp", "--config-path", "-cn", "--config-name", "-cd",
               "--config-dir", "--experimental-rerun", "-i", "--info")


def check_habits(arguments: list[str]) -> None:
    """Habits from other tools that Hydra answers with a parser error, refused with the fix: spaces
    around = (`model = mlp`) and flags for config keys (`--steps 100`, `--train.steps=100`)."""
    for index, argument in enumerate(arguments):
        if argument == "=" or (argument.startswith("=") and index > 0):
            before = arguments[index - 1] if index > 0 else ""
            after = arguments[index + 1] if argument == "=" and index + 1 < len(arguments) else argument.lstrip("=")
            raise GanctlError(f"`{' '.join(arguments[max(0, index - 1):index + 2 if argument == '=' else index + 1])}`: an "
                              f"override is one word, without spaces around = : {before}={after}.")
        flag = argument.split("=", 1)[0]
        if argument.startswith("--") and flag not in HYDRA_FLAGS:
            name = flag[2:].replace("-", "_")
            value = argument.split("=", 1)[1] if "=" in argument else (
                arguments[index + 1] if index + 1 < len(arguments) and "=" not in arguments[index + 1] else "<value>")
            keys = [key for key in paths(composed_options(())) if key == name or key.rpartition(".")[2] == name]
            hint = (f"write {' or '.join(f'{key}={value}' for key in keys[:3])}" if keys else
                    "`ganctl train --cfg job` prints every key")
            raise GanctlError(f"{argument}: ganctl train takes its settings as key=value overrides, not flags: {hint}.")


def expand_shorthands(arguments: list[str]) -> list[str]:
    """The regulariser settings of earlier ganctl versions as the units' own keys: `loss.r1_gamma=10`
    becomes `++loss.regularisers.r1._target_=ganctl.regularisers.R1 ++loss.regularisers.r1.gamma=10`
    (adding the unit when the loss option lacks it, as the flat key did). Sweeps (`loss.r1_gamma=1,10`)
    keep their values; other arguments pass unchanged."""
    expanded: list[str] = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        legacy = LEGACY_LOSS_KEYS.get(key.lstrip("+").removeprefix("loss."))
        if not equals or argument.startswith("-") or not key.lstrip("+").startswith("loss.") or legacy is None:
            expanded.append(argument)
            continue
        name, target, setting = legacy
        unit = f"++loss.regularisers.{name}._target_={target}"
        expanded += [*([unit] if unit not in expanded else []), f"++loss.regularisers.{name}.{setting}={value}"]
    return expanded


@functools.lru_cache(maxsize=32)
def composed_options(choices: tuple[str, ...]) -> DictConfig:
    """The config that the group choices (e.g. ('model=mlp',)) compose to, without key overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="train", overrides=list(choices))


def check_override_keys(arguments: list[str]) -> None:
    """Refuse command-line overrides of keys ganctl does not know, with or without `+`, before
    Hydra composes anything (Hydra would accept `+key=...` and store it unread, and answer
    `key=...` with advice to append it). Hydra's own keys (hydra.*) and parse errors are Hydra's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
    except Exception:
        return  # Hydra reports what it cannot parse
    groups = (*GROUPS, "experiment")
    keys = [o for o in overrides if not o.is_hydra_override() and not o.is_delete() and o.package is None
            and o.key_or_group not in groups]
    if not keys:
        return
    # The options each key must fit: the chosen ones, and each option of a group a sweep varies.
    chosen = {o.key_or_group: [o.input_line] for o in overrides if o.key_or_group in groups}
    for swept in (o for o in overrides if o.key_or_group in groups and o.is_sweep_override()):
        try:
            chosen[swept.key_or_group] = [f"{swept.key_or_group}={v}" for v in swept.sweep_string_iterator()]
        except Exception:
            del chosen[swept.key_or_group]  # e.g. a glob: Hydra expands it
    first = tuple(options[0] for options in chosen.values())
    variants = [first] + [tuple(option if choice == options[0] else choice for choice in first)
                          for options in chosen.values() for option in options[1:]]
    for variant in variants:
        try:
            cfg = composed_options(variant)
        except Exception:
            return  # an unknown option or a broken file: Hydra's message names it
        swept = ", ".join(v for v, options in zip(variant, chosen.values()) if len(options) > 1)
        check_override_keys_in(cfg, keys, swept)


def check_override_keys_in(cfg: DictConfig, overrides: list, choices: str) -> None:
    """Each override's key exists in `cfg` (or in a dict an override sets), or is a keyword that
    the _target_ of the node above it accepts (`+optimizer.g.foreach=false`)."""
    dicts: dict[str, DictConfig] = {}  # the nodes that overrides set to a dict, by their path

    def lookup(path: str) -> Any:
        for prefix, node in reversed(dicts.items()):
            if path == prefix or path.startswith(prefix + "."):
                return child(node, path[len(prefix) + 1:])
        return child(cfg, path)

    for override in overrides:
        key = override.key_or_group
        value = None if override.is_sweep_override() else override.value()
        if lookup(key) is ABSENT:
            parent_path, _, name = key.rpartition(".")
            parent = lookup(parent_path)
            targets = [o.value() for o in overrides if o.key_or_group == f"{parent_path}._target_"]
            target = targets[-1] if targets else (parent.get("_target_") if isinstance(parent, DictConfig) else None)
            parameters = keyword_parameters(target) if target else None
            where = override.input_line + (f", with {choices}" if choices else "")
            if name in HYDRA_KEYWORDS and target is not None and (override.is_add() or override.is_force_add()):
                continue  # a new node (+loss.regularisers.mine._target_=...): the registry checks what it names
            if parent_path in OPEN_MAPPINGS:  # a name of the user's (+train.schedules.lr={...}): its own rules check it
                if not (override.is_add() or override.is_force_add()):
                    raise GanctlError(f"{key} is not in the config yet: add it with +{override.input_line}.")
                if isinstance(value, dict):
                    dicts[key] = OmegaConf.create(value)
                continue
            if target is None:
                raise unknown_key(key, [*paths(cfg), *GROUPS, "experiment"], where)
            if parameters is not None and name not in [p.name for p in parameters]:
                settings = settings_of(parameters, parent)
                raise unknown_key(key, [f"{parent_path}.{k}" for k in settings], where,
                                  takes_message(parent_path, target, settings))
            if not (override.is_add() or override.is_force_add()):
                if isinstance(parent, DictConfig) and value is not None:  # a value the optimizer refuses: say that first
                    check_optimizer(OmegaConf.create({**OmegaConf.to_container(parent, resolve=True), name: value}), parent_path)
                raise GanctlError(
                    f"{key} is a setting of {target} that the config does not hold yet{f' (with {choices})' if choices else ''}: "
                    f"add it with +{override.input_line}."
                )
        if isinstance(lookup(key), ListConfig) and isinstance(value, str):
            raise GanctlError(f"{key} takes a list: write {key}=[{value}] (several: {key}=[a,b]).")
        if isinstance(value, dict):
            try:
                dicts[key] = OmegaConf.create(value)
            except Exception:
                pass  # Hydra will say what is wrong with it


ABSENT = object()


def child(node: Any, path: str) -> Any:
    """The node at a dotted path below `node`, or ABSENT."""
    for part in path.split(".") if path else ():
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return ABSENT
    return node


def paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config, nodes and leaves."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from paths(node._get_node(key), path)

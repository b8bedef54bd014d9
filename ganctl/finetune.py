"""Fine-tuning: a new run (step 0, fresh optimizers and schedules) that starts from the G, D and EMA
weights of another checkpoint (`init_from=PATH`), and the lineage its checkpoints carry.

    lineage = finetune.start_from(cfg.init_from, gan, cfg, data, strict=cfg.init_strict)

Each tensor of the new networks is copied from the source when the source has one of the same name
and shape, re-initialised (kept as the new network drew it) when the shape differs (a class
embedding for a new number of classes, the first conv for new channels), or new when the source
lacks it; the table printed before training says which. A network that matches less than half of
the source's tensors, another architecture or another resolution, is refused with its first
mismatch: fine-tuning continues the training of a network, it does not transplant parts of one.

The lineage (`Lineage`) is what a fine-tuned run's checkpoints, train.log and summary.json record:
its parents, nearest first (the source's checksum, step, model and data), what was frozen and what
was re-initialised; a fine-tune of a fine-tune carries its parent's parents on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, Optional, TypedDict

import torch
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from ganctl import checkpoint
from ganctl.console import console
from ganctl.errors import GanctlError

log = logging.getLogger("ganctl")

NETWORKS = ("generator", "discriminator", "generator_ema")
SHOWN = 4  # tensor names the table lists per cell before "and N more"


class Parent(TypedDict):
    path: str  # the source checkpoint file, as it was when the run started
    checksum: str  # its XXH3-128 (`checkpoint.checksum`)
    step: int
    model: Optional[str]  # its config's choices
    dataset: Optional[str]
    conditioning: Optional[str]
    data: dict[str, Any]  # its data's shape and classes
    data_fingerprint: Optional[str]  # its data's fingerprint, when it recorded one (a fine-tuned run does)
    # A published pickle that `ganctl import` read (ganctl.published): its checksum is the file's SHA-256.
    checksum_kind: NotRequired[str]  # "sha256" (absent: XXH3-128)
    imported_from: NotRequired[str]  # "stylegan2-ada-pytorch"
    has: NotRequired[list[str]]  # which of G, D and G_ema the pickle held


class Lineage(TypedDict):
    parents: list[Parent]  # nearest first
    data_fingerprint: str  # this run's data
    frozen: dict[str, int]  # FreezeD: {"blocks": N, "parameters": count}
    reinitialised: dict[str, list[str]]  # network -> tensors whose shape differed from the source's
    new: dict[str, list[str]]  # network -> tensors the source lacks
    imported: NotRequired[str]  # an imported checkpoint's own lineage: "imported from stylegan2-ada-pytorch"


@dataclass
class Transfer:
    """What one network takes from the source: tensor names by what happens to them."""

    network: str
    copied: list[str] = field(default_factory=list)
    reinitialised: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, source's shape, new
    new: list[str] = field(default_factory=list)  # only in the new network
    left_out: list[str] = field(default_factory=list)  # only in the source

    @classmethod
    def between(cls, network: str, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> "Transfer":
        transfer = cls(network)
        for name, tensor in target.items():
            if name not in source:
                transfer.new.append(name)
            elif tuple(source[name].shape) != tuple(tensor.shape):
                transfer.reinitialised.append((name, tuple(source[name].shape), tuple(tensor.shape)))
            else:
                transfer.copied.append(name)
        transfer.left_out = [name for name in source if name not in target]
        return transfer

    def first_mismatch(self) -> str:
        if self.reinitialised:
            name, before, now = self.reinitialised[0]
            return f"{name} is {list(before)} in the source and {list(now)} here"
        return f"{self.new[0]} is not in the source" if self.new else "none"


def start_from(path: str, gan: Any, cfg: DictConfig, data: Any, strict: bool = False) -> Lineage:
    """Load the G, D and EMA weights of the checkpoint `path` names (a file or a run directory) into
    `gan`, a new run's freshly built GAN; print the table of what was copied; return the run's lineage.
    Refused: another architecture or resolution, and with `strict` any re-initialised or new tensor."""
    source_path, source = checkpoint.find(path, use="ganctl train init_from={}")
    refuse_other_architecture(source_path, source, cfg, data.image_size)
    transfers = [load_network(name, gan, source, source_path, strict) for name in NETWORKS
                 if getattr(gan, name) is not None]
    show(source_path, source, transfers)
    frozen = {"blocks": OmegaConf.select(cfg, "model.discriminator.freeze", default=0) or 0,
              "parameters": sum(p.numel() for p in gan.discriminator.parameters() if not p.requires_grad)}
    lineage: Lineage = {
        "parents": [parent(source_path, source), *(source.get("lineage") or {}).get("parents", [])],
        "data_fingerprint": data.fingerprint,
        "frozen": frozen,
        "reinitialised": {t.network: [name for name, _, _ in t.reinitialised] for t in transfers if t.reinitialised},
        "new": {t.network: list(t.new) for t in transfers if t.new},
    }
    return lineage


def refuse_other_architecture(path: Path, source: dict[str, Any], cfg: DictConfig, image_size: int) -> None:
    """Another network family, or another resolution, matches nothing worth copying: refused by name."""
    for network in ("generator", "discriminator"):
        theirs = ((source["config"].get("model") or {}).get(network) or {}).get("_target_")
        ours = OmegaConf.select(cfg, f"model.{network}._target_")
        if theirs != ours:
            raise GanctlError(f"init_from={path}: its {network} is {theirs} and this run's is {ours}; fine-tuning starts "
                              f"from the same architecture: choose the source's model (model={source['choices'].get('model')}).")
    if source["data"]["image_size"] != image_size:
        raise GanctlError(f"init_from={path}: it was trained on {source['data']['image_size']}px images and this run's are "
                          f"{image_size}px; fine-tuning keeps the resolution: set dataset.image_size={source['data']['image_size']}.")


def load_network(name: str, gan: Any, source: dict[str, Any], path: Path, strict: bool) -> Transfer:
    """Copy what fits of the source's `name` into the GAN's; refuse a network that mostly does not fit,
    and with `strict` one that does not fit entirely. The EMA takes the source's EMA (its G when the
    source kept none), and the new G's values where the source's do not fit, so it starts as G does."""
    module = getattr(gan, name)
    theirs = (source.get(name) or source["generator"]) if name == "generator_ema" else source[name]
    ours = module.state_dict() if name != "generator_ema" else gan.generator.state_dict()
    transfer = Transfer.between(name, theirs, ours)
    if len(transfer.copied) * 2 < len(ours):
        raise GanctlError(
            f"init_from={path}: this run's {name} does not match the source's ({len(transfer.copied)} of {len(ours)} "
            f"tensors fit); the first mismatch: {transfer.first_mismatch()}. Fine-tuning keeps the architecture: use the "
            "source's model settings (its run's .hydra/config.yaml, or `ganctl train --cfg job` there).")
    if strict and (transfer.reinitialised or transfer.new):
        raise GanctlError(
            f"init_from={path} with init_strict=true: {name}'s {transfer.first_mismatch()}, so it would be re-initialised "
            f"({len(transfer.reinitialised) + len(transfer.new)} tensors in all). Drop init_strict to fine-tune with them "
            "re-initialised.")
    module.load_state_dict({**ours, **{key: theirs[key] for key in transfer.copied}})
    return transfer


def parent(path: Path, state: dict[str, Any]) -> Parent:
    choices = state.get("choices") or {}
    return {"path": str(Path(path).resolve()), "checksum": checkpoint.checksum(path), "step": state["step"],
            "model": choices.get("model"), "dataset": choices.get("dataset"), "conditioning": choices.get("conditioning"),
            "data": dict(state["data"]), "data_fingerprint": (state.get("lineage") or {}).get("data_fingerprint")}


def names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "") if items else "-"


def show(path: Path, source: dict[str, Any], transfers: list[Transfer]) -> None:
    """The one table before training: per network, what was copied, re-initialised and new; and the same in train.log."""
    table = Table(title=f"Fine-tuning from {path} (step {source['step']})", title_justify="left")
    for column in ("network", "copied", "re-initialised (shape differs)", "new (not in the source)", "left out (only in the source)"):
        table.add_column(column)
    for transfer in transfers:
        reinitialised = [f"{name} {list(before)}->{list(now)}" for name, before, now in transfer.reinitialised]
        table.add_row(transfer.network, f"{len(transfer.copied)} tensors", names(reinitialised), names(transfer.new),
                      names(transfer.left_out))
        log.info("Fine-tuning from %s (step %d), %s: %d tensors copied; re-initialised: %s; new: %s; left out: %s",
                 path, source["step"], transfer.network, len(transfer.copied), names(reinitialised), names(transfer.new),
                 names(transfer.left_out))
    console.print(table)


def on_card(lineage: Lineage) -> dict[str, Any]:
    """What a metric card says of a fine-tuned generator's origin: each parent (nearest first) by its
    checksum, step, model and data, and what was frozen and re-initialised."""
    keep = ("path", "checksum", "checksum_kind", "step", "model", "dataset", "data_fingerprint", "imported_from")
    return {"parents": [{key: p[key] for key in keep if key in p} for p in lineage["parents"]],
            "frozen": dict(lineage.get("frozen") or {}),
            "reinitialised": sum(len(names) for names in (lineage.get("reinitialised") or {}).values()),
            **({"imported": lineage["imported"]} if lineage.get("imported") else {})}


def describe(lineage: Lineage) -> str:
    """One line for train.log and the report: the chain of parents, what was frozen and re-initialised.
    (A checkpoint's lineage is checked for its parents' checksums and steps only, so the rest is read
    with defaults: a file edited by hand still gets a line.)"""
    chain = " <- ".join(f"{p.get('path', '?')} ({parent_facts(p)}, {p.get('checksum_kind', 'xxh3')} {p['checksum'][:12]})"
                        for p in lineage["parents"])
    frozen = lineage.get("frozen") or {}
    reinitialised = sum(len(names) for names in (lineage.get("reinitialised") or {}).values())
    new = sum(len(names) for names in (lineage.get("new") or {}).values())
    blocks = frozen.get("blocks") or 0
    held = (f"D's first {blocks} block{'s' if blocks != 1 else ''} frozen ({frozen.get('parameters', 0):,} parameters)" if blocks
            else "nothing frozen")
    if lineage.get("imported"):  # a checkpoint `ganctl import` wrote (ganctl.published): its parent is the pickle
        return f"Lineage: {lineage['imported']}, {chain}"
    return f"Lineage: fine-tuned from {chain}; {held}; {reinitialised} tensors re-initialised, {new} new"


def parent_facts(parent: dict[str, Any]) -> str:
    """A parent's step, model and data; for a published model `ganctl import` read, where it came from."""
    if parent.get("imported_from"):
        return f"a {parent['imported_from']} pickle, trained on {parent.get('dataset', '?')}"
    return f"step {parent['step']}, {parent.get('model', '?')} on {parent.get('dataset', '?')}"

"""`ganctl compare CARD_OR_RUN...`: rank metric cards from several runs or eval files, but only numbers
that can be compared -- the same protocol, real data, counts, backbone, weights and resizer -- and
otherwise say exactly what differs instead of ranking.

Each argument is a run directory (the cards `ganctl eval` wrote for its last checkpoint, else its
latest evaluation in metrics.jsonl), a cards file (`*.metrics.json`, a list of cards) or a
metrics.jsonl (its latest evaluation). No torch here: it reads JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from rich.markup import escape
from rich.table import Table

from ganctl.console import console
from ganctl.errors import GanctlError

# What a number depends on: cards that differ in any of these are not ranked together.
DEPENDS_ON = ("protocol", "dataset", "split", "num_real", "num_fake", "image_size", "channels", "backbone",
              "weights_sha256", "resize")
# Options that change what is computed (a seed only draws other samples of the same distribution).
OPTIONS_THAT_MATTER = ("subsets", "subset_size", "degree", "splits", "k", "truncation", "epsilon", "space", "distance")
# stylegan2-ada's and ganctl's sense of "better", by metric (a per-class card: its metric's)
HIGHER_IS_BETTER = {"is", "precision", "recall", "density", "coverage", "class_balance", "judge_accuracy"}


def cards_of(path: Path) -> list[dict[str, Any]]:
    """The cards an argument stands for (see the module's docstring)."""
    if path.is_dir():
        evaluated = path / "checkpoints" / "last.metrics.json"
        if evaluated.is_file():
            return read_cards(evaluated)
        logged = path / "metrics.jsonl"
        if logged.is_file():
            return read_cards(logged)
        raise GanctlError(f"{path} has no metric cards: neither checkpoints/last.metrics.json (written by `ganctl eval "
                          f"{path}`) nor metrics.jsonl (written by a run with train.eval_every). Score it first.")
    if not path.is_file():
        raise GanctlError(f"{path} is neither a run directory nor a cards file.")
    return read_cards(path)


def read_cards(path: Path) -> list[dict[str, Any]]:
    """A .json list of cards, or a .jsonl of cards (its latest evaluation: the cards of its last step)."""
    try:
        text = path.read_text()
        cards = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GanctlError(f"{path} cannot be read as metric cards ({type(error).__name__}).") from None
    if not isinstance(cards, list) or not all(isinstance(card, dict) and "metric" in card and "value" in card for card in cards):
        raise GanctlError(f"{path} holds no metric cards (a list of objects with metric and value, as ganctl eval writes).")
    if path.suffix == ".jsonl" and cards:
        last = cards[-1].get("step")
        cards = [card for card in cards if card.get("step") == last]
    return cards


def signature(card: dict[str, Any]) -> dict[str, Any]:
    """What the card's number depends on (a card from before protocols counts as custom)."""
    options = card.get("options") or {}
    return {**{key: card.get(key, "custom" if key == "protocol" else None) for key in DEPENDS_ON},
            **{f"options.{key}": options[key] for key in OPTIONS_THAT_MATTER if key in options}}


def differences(groups: list[list[tuple[str, dict[str, Any]]]]) -> list[str]:
    """For each field that differs between the groups: `field: value (sources); value (sources)`."""
    lines = []
    keys = sorted({key for group in groups for _, card in group for key in signature(card)},
                  key=lambda key: (key.startswith("options."), key))
    for key in keys:
        seen = [signature(group[0][1]).get(key) for group in groups]
        if len({json.dumps(value, sort_keys=True) for value in seen}) > 1:
            parts = [f"{shown(value)} ({', '.join(source for source, _ in group)})" for value, group in zip(seen, groups)]
            lines.append(f"{key}: " + "; ".join(parts))
    return lines


def shown(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "..."  # a SHA-256
    return "the whole split" if value is None else str(value)


def grouped(entries: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """Entries with the same signature together, in the order first seen."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for source, card in entries:
        groups.setdefault(json.dumps(signature(card), sort_keys=True), []).append((source, card))
    return list(groups.values())


def compare(arguments: list[str], metric: Optional[str] = None) -> dict[str, Any]:
    """The ranking of each metric among the sources where their cards agree, and what differs where
    they do not: {metric: {"ranked": [[(source, card), ...] best first, ...], "differs": [...]}}."""
    if len(arguments) < 2:
        raise GanctlError("ganctl compare needs at least two runs or cards files to compare.")
    by_metric: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for argument in arguments:
        for card in cards_of(Path(argument)):
            if "/" in card["metric"] or card["metric"] == "nearest_l1":  # per-class cards; the memorisation check
                continue
            by_metric.setdefault(card["metric"], []).append((argument, card))
    if metric is not None:
        if metric not in by_metric:
            raise GanctlError(f"No card of {metric!r} in these sources; they have {', '.join(sorted(by_metric)) or 'none'}.")
        by_metric = {metric: by_metric[metric]}
    result = {}
    for name, entries in by_metric.items():
        groups = grouped(entries)
        higher = name in HIGHER_IS_BETTER
        ranked = [sorted(group, key=lambda entry: entry[1]["value"], reverse=higher) for group in groups if len(group) > 1]
        result[name] = {"ranked": ranked, "differs": differences(groups) if len(groups) > 1 else [],
                        "alone": [group[0][0] for group in groups if len(group) == 1], "sources": sorted({s for s, _ in entries})}
    return result


def print_comparison(result: dict[str, Any]) -> None:
    for name, found in result.items():
        for group in found["ranked"]:
            first = group[0][1]
            table = Table(title=f"{name}: ranked ({'higher' if name in HIGHER_IS_BETTER else 'lower'} is better), protocol "
                                f"{first.get('protocol', 'custom')}, {first.get('num_fake')} generated vs {first.get('num_real')} "
                                f"real {first.get('split')}, {first.get('backbone')}", title_justify="left")
            for column in ("rank", "value", "± std", "step", "source"):
                table.add_column(column, justify="right" if column != "source" else "left", overflow="fold")
            for rank, (source, card) in enumerate(group, 1):
                std = "" if card.get("std") is None else f"{card['std']:.4f}"
                table.add_row(str(rank), f"{card['value']:.4f}", std, str(card.get("step")), escape(source))
            console.print(table)
        if found["differs"]:
            not_ranked = "not ranked across these" if found["ranked"] else "not ranked"
            console.print(f"[yellow]{name}: {not_ranked}[/]: the cards differ in")
            for line in found["differs"]:
                console.print(f"  {escape(line)}")
        elif not found["ranked"]:
            console.print(f"{name}: only in {escape(', '.join(found['sources']))}; nothing to compare it with.")


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ganctl compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Rank metric cards of several runs or eval files, only where their protocol, real data, counts, backbone, "
                    "weights and resizer agree; otherwise say what differs.",
        epilog="examples:\n  ganctl compare outputs/run_a outputs/run_b\n"
               "  ganctl compare a/checkpoints/last.metrics.json b/checkpoints/step_0004000.metrics.json --metric fid")
    parser.add_argument("sources", nargs="+", help="run directories, *.metrics.json or metrics.jsonl files")
    parser.add_argument("--metric", help="only this metric (e.g. fid)")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print the comparison as JSON")
    options = parser.parse_args(args)
    result = compare(options.sources, options.metric)
    if options.as_json:
        print(json.dumps({name: {"ranked": [[{"source": source, "value": card["value"], "step": card.get("step")}
                                             for source, card in group] for group in found["ranked"]],
                                 "differs": found["differs"]} for name, found in result.items()}, indent=2))
    else:
        print_comparison(result)
    return 0

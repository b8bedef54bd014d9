"""What a run directory holds, read for its report: only files runs already write (.hydra/, train.log,
summary.json, status.json, tb/, samples/, metrics.jsonl, checkpoints/ and what `ganctl eval` puts beside
them). Each reader returns what exists so far, so a run still training, an old run or a run cut short
gives what it has; what is missing is said, never guessed."""

from __future__ import annotations

import csv
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from ganctl.errors import GanctlError

LOG_RECORD = re.compile(r"\[(?P<time>[^\]]+)\]\[(?P<level>[A-Z]+)\] (?P<message>.*)")
GRID_NAME = re.compile(r"step_(\d+)\.png")
SESSION = re.compile(r"(Training|Resuming) (?P<dir>.+?): (?P<choices>.*), (?P<images>\d+) images of .* steps (?P<start>\d+) -> (?P<end>\d+), "
                     r"(?P<threads>\d+) torch threads?")


@dataclass
class LogRecord:
    time: str
    level: str
    message: str


@dataclass
class Run:
    """A run directory as its report sees it."""

    path: Path
    overrides: Optional[list[str]] = None  # .hydra/overrides.yaml: the command line
    choices: dict[str, str] = field(default_factory=dict)  # the option of each group (and experiment)
    config: Optional[dict[str, Any]] = None  # the run's config, plain
    log: list[LogRecord] = field(default_factory=list)
    summary: Optional[dict[str, Any]] = None  # summary.json: written when the run finished
    status: Optional[dict[str, Any]] = None  # status.json: a sweep job's
    checkpoints: list[Path] = field(default_factory=list)
    has_events: bool = False

    @property
    def command(self) -> Optional[str]:
        if self.overrides is None:
            return None
        return " ".join(["ganctl train", *(shlex.quote(override) for override in self.overrides)])

    def lacks(self) -> list[str]:
        """One line on what the run directory lacks that a report shows, if it lacks any of it."""
        missing = [what for what, there in (("no checkpoints (checkpoints/)", bool(self.checkpoints)),
                                            ("no TensorBoard events (tb/)", self.has_events)) if not there]
        if not missing:
            return []
        consequence = ", ".join(what for what, gone in (("no curves", not self.has_events),
                                                        ("no latent walk or config from a checkpoint", not self.checkpoints)) if gone)
        return [f"{self.path} has {' and '.join(missing)} yet, so this report has {consequence}: the run has not reached its "
                "first train.log_every / train.ckpt_every step, or stopped before it."]


def read_run(path: str | Path) -> Run:
    """The files of a run directory; a GanctlError when it is not one."""
    from ganctl import rundir

    path = Path(path)
    if not path.is_dir():
        raise GanctlError(f"{path} is not a directory: pass a run directory (ganctl train's hydra.run.dir) or a sweep directory.")
    run = Run(path=path)
    hydra_dir = path / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        run.overrides = [str(item) for item in OmegaConf.load(hydra_dir / "overrides.yaml")]
    if (hydra_dir / "hydra.yaml").is_file():
        choices = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices") or {}
        run.choices = {key: str(value) for key, value in choices.items() if not key.startswith("hydra/") and value is not None}
    if (hydra_dir / "config.yaml").is_file():
        run.config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"), resolve=False)
    run.log = read_log(path / "train.log")
    run.summary = read_json(path / "summary.json")
    run.status = read_json(path / "status.json")
    run.checkpoints = sorted(rundir.checkpoints_dir(path).glob("*.pt")) if rundir.checkpoints_dir(path).is_dir() else []
    run.has_events = any((path / "tb").glob("events.out.tfevents.*")) if (path / "tb").is_dir() else False
    if not (run.overrides is not None or run.log or run.checkpoints or run.has_events or (path / "samples").is_dir()):
        raise GanctlError(f"{path} is not a ganctl run directory: it has none of .hydra/, train.log, checkpoints/, tb/ or "
                          "samples/. Pass the directory `ganctl train` wrote (hydra.run.dir), or a sweep directory.")
    return run


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_log(path: Path) -> list[LogRecord]:
    """train.log's records (Hydra's `[time][LEVEL] message` lines; a message's further lines joined to it)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    records: list[LogRecord] = []
    for line in lines:
        match = LOG_RECORD.match(line)
        if match:
            records.append(LogRecord(match["time"], match["level"], match["message"]))
        elif records:
            records[-1].message += "\n" + line
    return records


def sessions(run: Run) -> list[dict[str, str]]:
    """Each time ganctl trained in the directory: when, started or resumed, the steps, the threads."""
    found = []
    for record in run.log:
        match = SESSION.match(record.message)
        if match:
            found.append({"time": record.time, "kind": match[1], "start": match["start"], "end": match["end"],
                          "threads": match["threads"], "images": match["images"]})
    return found


def logged(run: Run, prefix: str) -> Optional[str]:
    """The newest log message starting with `prefix`, without it."""
    for record in reversed(run.log):
        if record.message.startswith(prefix):
            return record.message[len(prefix):]
    return None


def problems(run: Run) -> list[LogRecord]:
    """What the run logged as a warning or an error: divergence stops, damaged checkpoints skipped,
    refused resumes, unwise settings."""
    return [record for record in run.log if record.level in ("WARNING", "ERROR", "CRITICAL")]


def lineage(run: Run, recorded: Optional[dict] = None) -> Optional[str]:
    """Where a run started from when it did not start from scratch: the chain of parents a fine-tune's
    checkpoint records (`recorded`, init_from=), or `resume=` of a checkpoint of another run (a branch),
    with the step it started at."""
    if recorded:
        from ganctl.finetune import describe

        return describe(recorded).removeprefix("Lineage: ")
    resume = (run.config or {}).get("resume")
    if resume in (None, "", "null"):
        return None
    start = next((session["start"] for session in sessions(run) if session["kind"] == "Resuming"), None)
    source = Path(str(resume))
    inside = source.resolve() == run.path.resolve() or run.path.resolve() in source.resolve().parents
    at = f" at step {start}" if start else ""
    return f"resumed from its own checkpoint {source}{at}" if inside else f"started from {source}{at} (a branch or fine-tune of that run)"


def guard(run: Run, recorded: Optional[dict] = None) -> Optional[str]:
    """What a guarded run's guard (train.guard) decided: its policy, the branch it ended on, and each
    rollback or stop with its step, from summary.json or else the checkpoint's record (`recorded`)."""
    state = (run.summary or {}).get("guard") or recorded
    policy = (((run.config or {}).get("train") or {}).get("guard") or {}).get("policy")
    if not isinstance(state, dict):
        return f"policy {policy}: no decision yet" if policy not in (None, "none") else None
    acted = [d for d in state.get("decisions") or [] if isinstance(d, dict) and d.get("action") in ("rollback", "stop")]
    steps = "; ".join(f"step {d.get('step')}: " + (f"rolled back to step {d.get('restored')}, branch {d.get('branch')}"
                                                   if d["action"] == "rollback" else "stopped") for d in acted)
    return (f"policy {policy or 'none'}, branch {state.get('branch', 0)}" + (f" ({steps})" if steps else ", no rollback or stop"))


def training_grids(run_dir: Path) -> list[tuple[int, Path]]:
    """The fixed-latent grids samples/step_<N>.png, oldest first."""
    samples = Path(run_dir) / "samples"
    found = [(int(match[1]), path) for path in samples.glob("step_*.png") if (match := GRID_NAME.fullmatch(path.name))]
    return sorted(found)


def chosen_grids(grids: list[tuple[int, Path]], budget: int) -> tuple[list[tuple[int, bytes]], int]:
    """As many grids as fit in `budget` bytes, evenly spread over training and always the last one:
    (step, PNG bytes) pairs, and how many of the grids were left out. A grid being written right now
    (empty) is skipped."""
    sized = [(step, path, path.stat().st_size) for step, path in grids if path.stat().st_size > 0]
    if not sized:
        return [], len(grids)
    keep = len(sized)
    while keep > 1 and sum(size for *_, size in spread(sized, keep)) > budget:
        keep -= 1
    chosen = spread(sized, keep)
    return [(step, path.read_bytes()) for step, path, _ in chosen], len(grids) - len(chosen)


def spread(items: list, count: int) -> list:
    """`count` of `items`, evenly spaced, the last always among them."""
    if count >= len(items):
        return list(items)
    last = len(items) - 1
    indices = sorted({round(last - i * last / max(count - 1, 1)) for i in range(count)}) if count > 1 else [last]
    return [items[i] for i in indices]


def config_diff(config: dict[str, Any], choices: dict[str, str]) -> tuple[list[tuple[str, Any, Any]], str]:
    """The run's config against the defaults of its chosen options (`ganctl train group=option ...`
    with no other override): (key, default, the run's) for every key that differs, and what it was
    compared with. A config composed from options this ganctl no longer has cannot be compared."""
    from hydra import compose, initialize_config_dir

    from ganctl import config as schema

    groups = [f"{group}={choices[group]}" for group in schema.GROUPS if group in choices]
    try:
        with initialize_config_dir(config_dir=schema.config_dir(), version_base="1.3"):
            defaults = OmegaConf.to_container(compose(config_name="train", overrides=groups), resolve=True)
    except Exception as error:  # Hydra's own errors: an option that is gone, a renamed group
        return [], f"not compared: today's configs cannot compose this run's options ({str(error).splitlines()[0][:160]})"
    ours, theirs = flatten(config), flatten(defaults)
    keys = sorted(set(ours) | set(theirs))
    rows = [(key, theirs.get(key, "(absent)"), ours.get(key, "(absent)")) for key in keys if ours.get(key, "(absent)") != theirs.get(key, "(absent)")]
    return rows, "ganctl train " + " ".join(groups)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys and leaf values (a list is one leaf)."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def metric_cards(run: Run) -> list[dict[str, Any]]:
    """Every metric card the run holds: those measured while training (metrics.jsonl, the newest per
    metric) and those `ganctl eval` wrote beside its checkpoints (<checkpoint>.metrics.json), each with
    where it came from."""
    newest: dict[str, dict[str, Any]] = {}
    try:
        lines = (run.path / "metrics.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            card = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if isinstance(card, dict) and "metric" in card and card.get("step", 0) >= newest.get(card["metric"], {}).get("step", 0):
            newest[card["metric"]] = {**card, "source": "training (metrics.jsonl)"}
    cards = list(newest.values())
    for path in sorted((run.path / "checkpoints").glob("*.metrics.json")):
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cards += [{**card, "source": f"ganctl eval ({path.name})"} for card in loaded if isinstance(card, dict) and "metric" in card]
    return cards


def truncation_sweeps(run: Run) -> list[tuple[Path, list[dict[str, str]], Optional[bytes]]]:
    """`ganctl eval --truncation-sweep` results beside the checkpoints: (table path, its rows, its plot)."""
    found = []
    for path in sorted((run.path / "checkpoints").glob("*.truncation.csv")):
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            continue
        plot = path.with_suffix(".png")
        found.append((path, rows, plot.read_bytes() if plot.is_file() else None))
    return found

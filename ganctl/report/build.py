"""The report of a run, and of a sweep, as one HTML page: the sections in the order a person reads
them (who the run is, what went wrong, what G makes, the curves, the metrics)."""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path
from typing import Any, Optional

from ganctl import plots
from ganctl.errors import GanctlError
from ganctl.report import runs
from ganctl.report.charts import line_chart
from ganctl.report.page import Markup, document, facts, grids_slider, image, section, table

GRID_BUDGET = 3_000_000  # bytes of training grids a run's report embeds (its last grid always): a few MB in all
JOB_CURVES = ("loss/", "metrics/")  # a sweep job's section: its losses and metrics


# ---------------------------------------------------------------- a run


class RunReport:
    """The sections of one run's page, built from its files (and its newest intact checkpoint)."""

    def __init__(self, run: runs.Run, walk: bool = True) -> None:
        self.run = run
        self.notes = run.lacks()
        self.state, self.checkpoint = self.newest_checkpoint()
        self.series = self.scalars()
        self.walk = walk

    def newest_checkpoint(self) -> tuple[Optional[dict[str, Any]], Optional[Path]]:
        if not self.run.checkpoints:
            return None, None
        from ganctl import checkpoint

        try:
            path, state = checkpoint.find(self.run.path, use="ganctl report {}")
        except GanctlError as error:
            self.notes.append(f"No checkpoint could be read: {error}")
            return None, None
        return state, path

    def scalars(self) -> plots.Series:
        if not self.run.has_events:
            return {}
        try:
            return plots.read_scalars(self.run.path)
        except GanctlError as error:
            self.notes.append(str(error))
            return {}

    @property
    def config(self) -> Optional[dict[str, Any]]:
        """The run's config: Hydra's record of its command line, or, for a run that started from a
        checkpoint (resume=), the config stored in its checkpoint, which is the one it trained with."""
        if self.run.config is not None and self.run.config.get("resume") in (None, "null"):
            return self.run.config
        return self.state["config"] if self.state is not None else self.run.config

    @property
    def step(self) -> Optional[int]:
        """How far the run got: the newest of its summary, its logged curves and its checkpoint."""
        known = [(self.run.summary or {}).get("steps"), self.state and self.state.get("step"),
                 max((steps[-1] for steps, _ in self.series.values() if steps), default=None)]
        known = [step for step in known if isinstance(step, int)]
        return max(known) if known else None

    @property
    def total_steps(self) -> Optional[int]:
        return ((self.config or {}).get("train") or {}).get("steps")

    def status(self) -> str:
        job = (self.run.status or {}).get("status")
        of = f" of {self.total_steps}" if self.total_steps else ""
        if self.run.summary is not None and job in (None, "finished"):
            return f"finished: {self.step}{of} steps"
        if job is not None:
            detail = (self.run.status or {}).get("error") or (self.run.status or {}).get("signal") or ""
            return f"{job}{': ' + detail if detail else ''} (step {self.step}{of})"
        return (f"no summary.json yet: still training, or stopped before its end, at step {self.step}{of}"
                if self.step is not None else "no step logged yet")

    def identity(self) -> str:
        run, summary = self.run, self.run.summary or {}
        versions = runs.logged(run, "Versions: ")
        speed = self.series.get("speed/images_per_second")
        images_per_second = summary.get("images_per_second") or (speed[1][-1] if speed else None)
        wall = summary.get("wall_seconds") or (self.state or {}).get("wall_seconds")
        sessions = runs.sessions(run)
        pairs = [
            ("status", self.status()),
            ("command", Markup(f"<code>{escape(run.command)}</code>") if run.command else "(no .hydra/overrides.yaml)"),
            ("options", ", ".join(f"{group}={option}" for group, option in run.choices.items())
             or ", ".join(f"{g}={summary[g]}" for g in ("model", "loss", "optimizer", "dataset", "conditioning") if summary.get(g))),
            ("lineage", runs.lineage(run, (self.state or {}).get("lineage"))),  # (the checkpoint's, checked when it was read)
            ("guard", runs.guard(run, (self.state or {}).get("guard"))),  # train.guard's decisions (README "A run that guards itself")
            ("versions", versions.split("; device")[0] if versions else "not recorded (a run from a ganctl before train.log held them)"),
            ("device", summary.get("device") or (versions.split("; device ")[1] if versions and "; device " in versions else None)),
            ("torch threads", str(summary.get("torch_threads") or (sessions[-1]["threads"] if sessions else ""))),
            ("wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else None),
            ("images/s", f"{images_per_second:.0f}" if isinstance(images_per_second, (int, float)) else None),
            ("checkpoint", self.checkpoint_name()),
        ]
        body = facts(pairs)
        if len(sessions) > 1 or (sessions and sessions[0]["kind"] == "Resuming"):
            body += "<h3>Sessions</h3>" + table(["started", "how", "steps", "threads"],
                                                [(s["time"], s["kind"].lower(), f"{s['start']} -> {s['end']}", s["threads"]) for s in sessions])
        return section("run", "Run", body + self.config_section())

    def checkpoint_name(self) -> Optional[str]:
        """The checkpoint the report read, inside the run directory when it is there."""
        if self.checkpoint is None:
            return None
        path, run_dir = Path(self.checkpoint).resolve(), self.run.path.resolve()
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)

    def config_section(self) -> str:
        config = self.config
        if config is None:
            return "<h3>Config</h3><p class=\"muted\">No config: the run has neither .hydra/config.yaml nor a checkpoint.</p>"
        rows, against = runs.config_diff(config, self.run.choices or (self.state or {}).get("choices") or {})
        if not against.startswith("ganctl train"):
            return f"<h3>Config</h3><p class=\"muted\">{escape(against)}</p>"
        shown = table(["key", "default", "this run"], [(key, str(default), str(value)) for key, default, value in rows]) if rows \
            else "<p>No key differs.</p>"
        from omegaconf import OmegaConf

        full = f"<details><summary>the whole config</summary><pre>{escape(OmegaConf.to_yaml(config))}</pre></details>"
        return (f"<h3>Config against the defaults</h3><p class=\"muted\">Keys that differ from <code>{escape(against)}</code> "
                f"(the defaults of the options this run chose).</p>{shown}{full}")

    def warnings(self) -> str:
        found = runs.problems(self.run)
        if not found:
            note = "None: train.log holds no warning or error." if self.run.log else "No train.log: nothing to read warnings from."
            return section("warnings", "Warnings", f"<p class=\"muted\">{note}</p>")
        items = "".join(f"<li><span class=\"muted\">{escape(r.time)} {escape(r.level.lower())}:</span> "
                        f"{escape(r.message)}</li>" for r in found)
        return section("warnings", f"Warnings ({len(found)})", f"<ul class=\"warnings\">{items}</ul>")

    def samples(self) -> str:
        grids = runs.training_grids(self.run.path)
        chosen, left_out = runs.chosen_grids(grids, GRID_BUDGET)
        if not chosen:
            body = "<p class=\"muted\">No training grids (samples/step_&lt;N&gt;.png) yet.</p>"
        else:
            classes = ((self.state or {}).get("data") or {}).get("classes")
            layout = (f"One row per class ({', '.join(map(str, classes[:16]))}{' ...' if len(classes) > 16 else ''}), the same latents "
                      "down each column." if classes else "The same latents at every step.")
            more = f" {left_out} of the {len(grids)} grids are left out to keep the page small (evenly spread)." if left_out else ""
            body = (f"<p>The fixed-latent grid through training, the last one large. {layout} Play animates them; the "
                    f"slider or a thumbnail picks one.{more}</p>"
                    + grids_slider([(f"step {step}", data) for step, data in chosen], "training grid"))
        return section("samples", "Samples", body + self.walk_section())

    def walk_section(self) -> str:
        if not self.walk:
            return ""
        if self.state is None:
            return "<h3>Latent walk</h3><p class=\"muted\">No checkpoint to walk through.</p>"
        from ganctl.report.walk import latent_walk

        try:
            gif, width, caption, command = latent_walk(self.state, str(self.run.path))
        except GanctlError as error:
            return f"<h3>Latent walk</h3><p class=\"muted\">No walk: {escape(str(error))}</p>"
        step = self.state.get("step")
        return (f"<h3>Latent walk</h3><p>Step {step}, {escape(caption)}: the frames of <code>{escape(command)}</code>.</p>"
                + image(gif, "image/gif", f"latent walk at step {step}", "pixels walk", width=min(8 * width, 720)))

    def curves(self) -> str:
        if not self.series:
            return section("curves", "Curves", "<p class=\"muted\">No curves: the run has logged no statistic yet.</p>")
        charts = [line_chart(name, [(tag, *self.series[tag]) for tag in tags]) for name, tags in panels(self.series)]
        return section("curves", "Curves", "<p class=\"muted\">Every statistic the run logged to TensorBoard, by name "
                       "(the panels of curves.png, and the rest).</p>" + f"<div class=\"charts\">{''.join(charts)}</div>")

    def metrics(self) -> str:
        cards = runs.metric_cards(self.run)
        plain = [card for card in cards if card["metric"] != "nearest_l1"]
        branched = any(isinstance(c.get("branch"), dict) for c in plain)  # a guarded run's cards name their branch
        body = table(["metric", "value", "std", "step", "real", "fake", "split", "backbone", "from", *(["branch"] if branched else [])],
                     [(c["metric"], c.get("value"), c.get("std"), c.get("step"), c.get("num_real"), c.get("num_fake"),
                       c.get("split"), c.get("backbone"), c["source"], *([(c.get("branch") or {}).get("index")] if branched else []))
                      for c in plain]) if plain else \
            "<p class=\"muted\">No metric cards: the run measured none (train.eval_every=0) and ganctl eval has not scored it.</p>"
        for path, rows, plot in runs.truncation_sweeps(self.run):
            body += (f"<h3>Truncation sweep ({escape(path.name)})</h3>" + table(list(rows[0]) if rows else [],
                     [[float(value) if is_number(value) else value for value in row.values()] for row in rows])
                     + (image(plot, "image/png", "metrics against truncation psi", "plot") if plot else ""))
        for card in (card for card in cards if card["metric"] == "nearest_l1"):
            grid = Path(card.get("grid") or "")
            baseline = card.get("baseline_test_to_train")
            body += (f"<h3>Nearest training images (step {card.get('step')})</h3><p>Each sample, then its nearest training "
                     f"image: mean distance {card['value']:.4f}" + (f" (held-out real images: {baseline:.4f})" if baseline else "")
                     + ".</p>" + (image(grid.read_bytes(), "image/png", "samples and their nearest training images", "pixels large")
                                  if grid.is_file() else f"<p class=\"muted\">Its grid {escape(str(grid))} is gone.</p>"))
        return section("metrics", "Metrics", body)

    def html(self) -> str:
        body = self.identity() + self.warnings() + self.samples() + self.curves() + self.metrics()
        nav = [("run", "Run"), ("warnings", "Warnings"), ("samples", "Samples"), ("curves", "Curves"), ("metrics", "Metrics")]
        subtitle = f"{self.run.path.resolve()} · {self.status()} · report written {time.strftime('%Y-%m-%d %H:%M')}"
        return document(f"ganctl report: {self.run.path.name}", f"Run {self.run.path.name}", subtitle, self.notes, nav, body)


def is_number(text: Any) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def panels(series: plots.Series) -> list[tuple[str, list[str]]]:
    """curves.png's panels that have data, then one panel per other group of tags (speed/, per-class
    metrics, a regulariser of yours), so that every statistic is drawn. HParams' copies are left out."""
    drawn = [(name, sorted(tag for tag in series if wanted(tag))) for name, wanted in plots.PANELS]
    placed = {tag for _, tags in drawn for tag in tags}
    rest: dict[str, list[str]] = {}
    for tag in sorted(series):
        if tag not in placed and not tag.startswith("hparams/"):
            group = tag.rsplit("/", 1)[0] if tag.count("/") > 1 else tag.split("/")[0]
            rest.setdefault(group, []).append(tag)
    return [(name, tags) for name, tags in drawn if tags] + list(rest.items())


def run_report(run_dir: str | Path, walk: bool = True) -> str:
    return RunReport(runs.read_run(run_dir), walk).html()


# ---------------------------------------------------------------- a sweep


def sweep_report(sweep_dir: str | Path) -> str:
    """A sweep's page: its table (sortable, each job linked to its section), its curves one line per job,
    an Optuna search's history and parameter importances, and each job's last grid beside its curves."""
    from ganctl import sweep

    sweep_dir = Path(sweep_dir)
    rows = sweep.read_sweep(sweep_dir)
    swept = list(rows[0]["values"]) if rows else []
    jobs = [(row, job_series(Path(row["run_dir"]))) for row in rows]
    notes = [] if rows else [f"{sweep_dir} has no job yet."]
    table_rows = [(Markup(f'<a href="#job-{escape(str(row["job"]))}">{escape(str(row["job"]))}</a>'),
                   *(float(value) if is_number(value) else value for value in row["values"].values()),
                   row["status"] + (f": {row['detail']}" if row["detail"] else ""), row["objective"], row["d_loss"], row["g_loss"],
                   row["images_per_second"], row["wall_seconds"], row["steps"]) for row in rows]
    body = section("summary", "Summary", "<p class=\"muted\">Click a column's name to sort by it; a job's number leads to "
                   "its section.</p>" + table(["job", *swept, "status", "objective", "d_loss", "g_loss", "images/s", "wall s", "steps"],
                                              table_rows, "sortable", "jobs"))
    body += section("curves", "Curves", sweep_curves(jobs))
    optuna = optuna_section(sweep_dir, rows)
    body += optuna
    body += section("jobs", "Jobs", "".join(job_section(row, series) for row, series in jobs))
    nav = [("summary", "Summary"), ("curves", "Curves"), *([("search", "Search")] if optuna else []), ("jobs", "Jobs")]
    finished = sum(row["status"] == "finished" for row in rows)
    subtitle = f"{sweep_dir.resolve()} · {len(rows)} jobs, {finished} finished · report written {time.strftime('%Y-%m-%d %H:%M')}"
    return document(f"ganctl report: sweep {sweep_dir.name}", f"Sweep {sweep_dir.name}", subtitle, notes, nav, body)


def job_series(run_dir: Path) -> plots.Series:
    try:
        return plots.read_scalars(run_dir)
    except GanctlError:
        return {}  # a job that failed before it logged anything


def job_label(row: dict[str, Any]) -> str:
    """`job 2: optimizer.g.lr=0.00075, loss=hinge`: its swept values, numbers to 4 significant digits."""
    values = ", ".join(f"{key}={float(value):.4g}" if is_number(value) else f"{key}={value}" for key, value in row["values"].items())
    return f"job {row['job']}: {values}" if values else f"job {row['job']}"


def sweep_curves(jobs: list[tuple[dict[str, Any], plots.Series]]) -> str:
    tags = sorted({tag for _, series in jobs for tag in series if tag.startswith(JOB_CURVES) and tag.count("/") == 1})
    charts = [line_chart(tag, [(job_label(row), *series[tag]) for row, series in jobs if tag in series]) for tag in tags]
    return (f"<p class=\"muted\">One line per job.</p><div class=\"charts\">{''.join(charts)}</div>" if charts
            else "<p class=\"muted\">No job has logged anything yet.</p>")


def job_section(row: dict[str, Any], series: plots.Series) -> str:
    run_dir = Path(row["run_dir"])
    grids = runs.training_grids(run_dir)
    last = grids[-1] if grids and grids[-1][1].stat().st_size else None
    alt = f"job {row['job']}: its last training grid"
    picture = (f"<div><p class=\"muted\">step {last[0]}</p>{image(last[1].read_bytes(), 'image/png', alt)}</div>"
               if last else "<div class=\"muted\">No grid yet.</div>")
    wanted = [(name, [tag for tag in tags if tag.startswith(JOB_CURVES)]) for name, tags in panels(series)]
    charts = "".join(line_chart(name, [(tag, *series[tag]) for tag in tags]) for name, tags in wanted if tags)
    status = row["status"] + (f": {row['detail']}" if row["detail"] else "")
    return (f"<article id=\"job-{escape(str(row['job']))}\"><h3>{escape(job_label(row))}</h3>"
            f"<p class=\"muted\">{escape(status)} · {escape(str(run_dir))}</p>"
            f"<div class=\"pair\">{picture}<div class=\"charts\">{charts or '<p class=muted>No curves yet.</p>'}</div></div></article>")


def stored_study(sweep_dir: Path) -> Any:
    """The sweep's Optuna study from its storage (None: a sweep whose study lived in memory, or one
    whose storage cannot be read here)."""
    from ganctl import search

    record = search.study_record(sweep_dir)
    if record is None:
        return None
    try:
        return search.load_study(record)
    except Exception:  # the database is gone or elsewhere: the jobs' records stand in for it
        return None


def optuna_section(sweep_dir: Path, rows: list[dict[str, Any]]) -> str:
    """An Optuna search: each trial's objective in the order it ran with the best so far, and how much
    each parameter mattered, from its study's storage (or the jobs' own records, for an older sweep)."""
    from omegaconf import OmegaConf

    from ganctl import sweep

    hydra_files = [Path(row["run_dir"]) / ".hydra" / "hydra.yaml" for row in rows]
    hydra_cfg = next((OmegaConf.load(path).hydra for path in hydra_files if path.is_file()), None)
    if hydra_cfg is None or "optuna" not in str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="")).lower():
        return ""
    from ganctl.report.search import history_chart, importances

    done = [row for row in rows if isinstance(row["objective"], (int, float)) and math.isfinite(row["objective"])]
    record = sweep.read_json(sweep_dir / sweep.SWEEP_FILE) or {}
    params = OmegaConf.to_container(hydra_cfg.sweeper.params, resolve=False) if hydra_cfg.sweeper.get("params") else {}
    body = history_chart(done) + importances(record.get("command", record.get("overrides")), params, done, stored_study(sweep_dir))
    results = sweep_dir / "optimization_results.yaml"
    if results.is_file():
        body += f"<h3>Optuna's result</h3><pre>{escape(results.read_text())}</pre>"
    return section("search", "Search", body)

"""`ganctl report`: the page of a run, of a conditional run and of an Optuna sweep, opened in a real
headless Chromium and read as a person would: its sections, every picture decoded and not blank, the
grid slider, the sweep table sorted by a click, a job's link, and not one request beyond the file."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from browser import IMAGE_STATE, browser_session, screenshot_dir
from helpers import TINY, TINY_DCGAN, run_cli

TINY_ARGS = [*TINY, *TINY_DCGAN]
# Offline metrics on a tiny pixel extractor, measured at every sample: cards, curves, a truncation sweep.
METRICS = ["metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.num_fake=50", "metrics.num_real=100",
           "train.eval_every=2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"GANCTL_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, cache: dict[str, str]) -> Path:
    """The default model, loss and data at tiny size from the command line, then what a user adds: the
    nearest-neighbour check, a truncation sweep, and a resume refused (an error in train.log)."""
    from ganctl.evaluate import evaluate, truncation_sweep

    run_dir = tmp_path_factory.mktemp("report") / "run"
    result = run_cli("train", *TINY_ARGS, *METRICS, f"hydra.run.dir={run_dir}", cwd=run_dir.parent, env=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANCTL_CACHE_DIR", cache["GANCTL_CACHE_DIR"])
        evaluate(run_dir, names=["fid"], nearest=4, device="cpu")
        truncation_sweep(run_dir, [1, 0.5], names=["fid"], num=50, device="cpu")
    refused = run_cli("train", f"resume={run_dir}", "model=mlp", cwd=run_dir.parent, env=cache)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    return run_dir


@pytest.fixture(scope="module")
def optuna_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("report_sweep") / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
                     "hydra.sweeper.sampler.seed=0", "optimizer.g.lr=tag(log, interval(1e-4, 1e-2))",
                     "loss.critic_steps=choice(1, 2)", f"hydra.sweep.dir={sweep_dir}", cwd=sweep_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return sweep_dir


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    yield from browser_session(tmp_path_factory)


def open_page(browser, path: Path):
    """The page in a new tab, with the list of every request the tab makes."""
    tab = browser.new_page()
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(path.resolve().as_uri())
    return tab, requests


def check_pictures(tab) -> int:
    """Every picture on the page is embedded, decoded and more than one colour; how many there are."""
    pictures = tab.locator("img")
    for index in range(pictures.count()):
        picture = pictures.nth(index)
        assert picture.get_attribute("src").startswith("data:image/"), picture.get_attribute("alt")
        state = picture.evaluate(IMAGE_STATE)
        assert state["decoded"] and state["colours"] > 1, (picture.get_attribute("alt"), state)
    return pictures.count()


def test_a_run_report_shows_the_run_in_a_browser(finished_run: Path, browser, tmp_path: Path) -> None:
    from ganctl.report import report

    page = report(finished_run, tmp_path / "run.html")
    assert page.stat().st_size < 5_000_000
    tab, requests = open_page(browser, page)
    assert tab.locator("h2").all_inner_texts() == ["Run", "Warnings (1)", "Samples", "Curves", "Metrics"]
    facts = dict(zip(tab.locator("#run table.facts th").all_inner_texts(), tab.locator("#run table.facts td").all_inner_texts()))
    assert shlex.split(facts["command"]) == ["ganctl", "train", *TINY_ARGS, *METRICS]  # Hydra's record leaves out hydra.*
    assert facts["status"] == "finished: 4 of 4 steps" and facts["device"] == "cpu"
    assert f"torch {torch.__version__}" in facts["versions"]
    diff = {row.split("\t")[0]: row.split("\t")[1:] for row in tab.locator("#run table:not(.facts) tr").all_inner_texts()}
    assert diff["train.steps"] == ["8500", "4"] and diff["train.eval_every"] == ["0", "2"]
    assert "Cannot resume with model=mlp" in tab.locator("#warnings").inner_text()

    captions = tab.locator("#samples .strip button span").all_inner_texts()
    assert captions == ["step 2", "step 4"]
    view = tab.locator("#samples img.view")
    tab.locator("#samples input[type=range]").fill("0")  # the slider to the first grid
    assert view.get_attribute("src") == tab.locator("#samples .strip img").first.get_attribute("src")
    assert tab.locator("#samples .caption").inner_text() == "step 2"
    assert tab.locator("#samples img.walk").count() == 1

    charts = tab.locator("#curves figcaption").all_inner_texts()
    assert {"losses", "D's view of real and fake", "regularisers", "learning rates", "image-quality metrics", "speed"} <= set(charts)
    metrics = tab.locator("#metrics").inner_text()
    assert "Truncation sweep (last.truncation.csv)" in metrics and "Nearest training images (step 4)" in metrics
    assert "training (metrics.jsonl)" in metrics and "fid" in metrics
    assert check_pictures(tab) == 1 + 2 + 1 + 1 + 1  # the grid view, 2 thumbnails, walk, truncation plot, nearest grid
    tab.screenshot(path=str(screenshot_dir() / "report_run.png"), full_page=True)
    assert requests == [page.resolve().as_uri()]  # the page itself, and nothing else


def test_a_conditional_run_gets_one_row_per_class_and_a_walk_of_its_classes(tiny_conditional_run: Path, browser,
                                                                               tmp_path: Path) -> None:
    """An in-process run: no .hydra/ or train.log, as a run of an old ganctl has none; the report says so."""
    from ganctl.report import report

    tab, requests = open_page(browser, report(tiny_conditional_run, tmp_path / "conditional.html"))
    samples = tab.locator("#samples").inner_text()
    assert "One row per class (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in samples
    assert "--class 0,1,2,3,4,5,6,7,8,9" in samples
    facts = tab.locator("#run table.facts").inner_text()
    assert "(no .hydra/overrides.yaml)" in facts and "not recorded" in facts
    assert "No train.log" in tab.locator("#warnings").inner_text()
    assert check_pictures(tab) >= 3
    assert len(requests) == 1


def test_a_sweep_report_sorts_by_a_click_and_links_each_job(optuna_sweep: Path, browser, tmp_path: Path) -> None:
    from ganctl.report import report

    page = report(optuna_sweep, tmp_path / "sweep.html")
    tab, requests = open_page(browser, page)
    rows = json.loads((optuna_sweep / "sweep.json").read_text())
    assert "tag(log, interval(1e-4, 1e-2))" in " ".join(rows["command"])  # the search space, as given
    headers = tab.locator("#jobs thead th").all_inner_texts()
    column = headers.index("objective")

    def objectives() -> list[float]:
        return [float(text) for text in tab.locator(f"#jobs tbody td:nth-child({column + 1})").all_inner_texts()]

    assert len(objectives()) == 3
    tab.locator("#jobs thead th", has_text="objective").click()
    assert objectives() == sorted(objectives()) and objectives() != sorted(objectives(), reverse=True)
    tab.locator("#jobs thead th", has_text="objective").click()
    assert objectives() == sorted(objectives(), reverse=True)

    first_job = tab.locator("#jobs tbody td a").first
    target = first_job.get_attribute("href")
    first_job.click()
    assert tab.evaluate("location.hash") == target
    assert tab.locator(f"{target} img").count() == 1 and tab.locator(f"{target} figure.chart").count() >= 1

    search = tab.locator("#search").inner_text()
    assert "objective of each trial" in search
    importances = dict(zip(tab.locator("#search table td:nth-child(1)").all_inner_texts(),
                           map(float, tab.locator("#search table td:nth-child(2)").all_inner_texts())))
    assert set(importances) == {"optimizer.g.lr", "loss.critic_steps"} and sum(importances.values()) == pytest.approx(1, abs=1e-3)
    assert check_pictures(tab) == 3
    tab.screenshot(path=str(screenshot_dir() / "report_sweep.png"), full_page=True)
    assert requests == [page.resolve().as_uri()]


def test_a_run_still_training_or_without_checkpoints_says_what_it_has(finished_run: Path, tmp_path: Path) -> None:
    from ganctl.report.build import run_report

    in_progress = tmp_path / "in_progress"  # as the run was before it finished: no summary.json, no last grid
    shutil.copytree(finished_run, in_progress)
    (in_progress / "summary.json").unlink()
    (in_progress / "samples" / "step_0000004.png").unlink()
    html = run_report(in_progress, walk=False)
    assert "no summary.json yet: still training, or stopped before its end, at step 4 of 4" in html
    assert "step 2" in html and "step 4</span>" not in html

    bare = tmp_path / "bare"  # a run that has not reached its first log or checkpoint step
    shutil.copytree(finished_run / ".hydra", bare / ".hydra")
    html = run_report(bare)
    assert (f"{bare} has no checkpoints (checkpoints/) and no TensorBoard events (tb/) yet, so this report has no curves, "
            "no latent walk or config from a checkpoint") in html


def test_a_folder_that_is_no_run_is_one_line(tmp_path: Path, capsys) -> None:
    from ganctl.cli import main

    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["report", str(tmp_path)]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path} is not a ganctl run directory" in error and "Traceback" not in error

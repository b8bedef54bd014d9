"""The README's screenshots of `ganctl report` and `ganctl explore` (docs/report.png, docs/explore.png),
taken in headless Chromium (the distribution's, driven by Playwright) from a run directory, e.g. the
Quickstart's: `python scripts/docs_screenshots.py outputs/2026-11-22/12-00-00`. Each is quantised to
64 colours, which keeps it small."""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent.parent / "docs"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def small_png(shot: Path, out: Path) -> None:
    Image.open(shot).convert("RGB").quantize(64).save(out, optimize=True)
    print(f"Wrote {out} ({out.stat().st_size // 1000} kB)")


def report_shot(context, run: Path, work: Path) -> None:
    """The report's samples section: the grid slider and the walk."""
    from ganctl.report import report

    page = context.new_page()
    page.goto(report(run, work / "report.html").resolve().as_uri())
    page.locator("#samples").screenshot(path=str(work / "report.png"))
    small_png(work / "report.png", DOCS / "report.png")


def explore_shot(context, run: Path, work: Path) -> None:
    """The explore page at seed 3, once its image has been drawn."""
    from ganctl.explore import explorer_of
    from ganctl.explore.app import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    explorer, title = explorer_of(str(run), device="cpu")
    served, url = serve(explorer, title, str(run), "127.0.0.1", port, block=False)
    try:
        page = context.new_page()
        page.goto(url)
        image = page.locator("#seed-image img")
        image.wait_for(timeout=60_000)
        first = image.get_attribute("src")
        slider = page.locator("#seed input[type=range]")
        slider.focus()
        for _ in range(3):
            slider.press("ArrowRight")
        page.wait_for_function("([selector, old]) => document.querySelector(selector).src !== old", arg=["#seed-image img", first])
        page.wait_for_timeout(1000)
        page.screenshot(path=str(work / "explore.png"), clip={"x": 0, "y": 0, "width": 900, "height": 760})
        small_png(work / "explore.png", DOCS / "explore.png")
    finally:
        served.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="a run directory")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        work = Path(folder)
        context = playwright.chromium.launch_persistent_context(str(work / "profile"), executable_path=shutil.which("chromium"),
                                                               args=FLAGS, viewport={"width": 900, "height": 760})
        report_shot(context, options.run, work)
        explore_shot(context, options.run, work)
        context.close()


if __name__ == "__main__":
    main()

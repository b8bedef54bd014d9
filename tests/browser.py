"""A real headless Chromium for the tests that look at a page as a person would (the report, the explore
page), driven by Playwright with the distribution's browser (`apt-get install chromium`: .ci/run does).

Without Chromium or Playwright those tests skip, saying which is missing; under CI (CI=true) a missing
browser fails them instead, since .ci/run installs it. Screenshots go to $GANCTL_SCREENSHOTS, or
test-screenshots/ at the top of the repository, where CI keeps them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium on a machine without internet hangs on its background connections unless told not to make them.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"]


def chromium_path() -> str | None:
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}: CI installs it (.ci/run), so the browser tests must run there")
    pytest.skip(f"{what}: the browser tests need it (apt-get install chromium; pip install -c constraints.txt '.[test]')")


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("GANCTL_SCREENSHOTS") or Path(__file__).resolve().parent.parent / "test-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One Chromium for a test module (a fresh profile in a temporary folder), closed after it."""
    path = chromium_path()
    if path is None:
        missing(f"No Chromium found (looked for {', '.join(CANDIDATES)})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright (the Python package) is not installed")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(str(profile), executable_path=path, args=FLAGS,
                                                               headless=True, viewport={"width": 1200, "height": 900})
        try:
            yield context
        finally:
            context.close()


# Whether an <img> is decoded, and whether its pixels are more than one colour (a blank image is one).
IMAGE_STATE = """async img => {
  // (a busy machine may still be loading it: wait for its decoding, up to 30 s; a broken image rejects)
  await Promise.race([img.decode().catch(() => {}), new Promise(resolve => setTimeout(resolve, 30000))]);
  if (!img.complete || img.naturalWidth === 0) { return {decoded: false, colours: 0}; }
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length && seen.size < 3; i += 4) { seen.add(data[i] + "," + data[i + 1] + "," + data[i + 2]); }
  return {decoded: true, colours: seen.size};
}"""

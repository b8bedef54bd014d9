"""`ganctl explore`: the page's images equal what `ganctl sample` writes for the same settings (asked
through the page's own API), a bad value is a message for that request alone, and in a real Chromium
the image changes when a slider moves. One tiny conditional StyleGAN2 (every control: class, truncation
in W, style mixing, walks in W and z), one page and one browser for the module."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import IMAGE_STATE, browser_session, screenshot_dir
from helpers import TINY, TINY_STYLEGAN2, run

# Looked for, not imported: Gradio loads with the page, after ganctl.explore.app has switched its telemetry off.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gradio") is None,
                                reason="ganctl explore needs the ui extra: pip install -c constraints.txt '.[ui]'")

SIZE, PADDING = 32, 2  # the run's images; torchvision's grid padding around each


@pytest.fixture(scope="module")
def stylegan_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step of a class-conditional StyleGAN2 of a few thousand parameters (no R1 or path length:
    the step is what is slow, and only G's weights matter here)."""
    directory = tmp_path_factory.mktemp("explore") / "run"
    run(directory, *TINY, *TINY_STYLEGAN2, "train.steps=1", "loss.r1_gamma=0", "loss.path_length=0",
        "conditioning=concat", "conditioning.discriminator=projection")
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page(stylegan_run: Path):
    """The explore page of the run, served on 127.0.0.1 as `ganctl explore RUN` serves it, closed after the module."""
    from ganctl.explore import explorer_of
    from ganctl.explore.app import serve

    explorer, title = explorer_of(str(stylegan_run), device="cpu")
    served, url = serve(explorer, title, str(stylegan_run), "127.0.0.1", free_port(), block=False)
    yield url
    served.close()


@pytest.fixture(scope="module")
def client(page: str):
    from gradio_client import Client

    return Client(page, verbose=False, download_files=True)


def pixels(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cell(grid: np.ndarray, row: int, column: int) -> np.ndarray:
    """Image (row, column) of a torchvision grid of SIZE-pixel images."""
    top, left = PADDING + row * (SIZE + PADDING), PADDING + column * (SIZE + PADDING)
    return grid[top:top + SIZE, left:left + SIZE]


def test_each_image_equals_what_ganctl_sample_writes(client, stylegan_run: Path, tmp_path: Path) -> None:
    from ganctl.sample.grid import sample
    from ganctl.sample.mixing import style_mixing
    from ganctl.sample.walks import interpolate

    shown, command = client.predict(5, 0.7, "3", api_name="/seed_image")
    written = sample(stylegan_run, num=1, seed=5, truncation=0.7, classes="3", device="cpu", out=tmp_path / "seed.png")
    assert pixels(shown).shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(pixels(shown), pixels(written))
    assert command == f"ganctl sample {stylegan_run} --seed 5 --num 1 --truncation 0.7 --class 3"
    other_class, _ = client.predict(5, 0.7, "4", api_name="/seed_image")
    assert not np.array_equal(pixels(other_class), pixels(shown))  # the class control reaches G

    mixed, _ = client.predict(1, 2, "coarse", 1.0, "4", api_name="/mixed_image")
    grid = style_mixing(stylegan_run, rows=[1], columns=[2], layers="coarse", classes="4", device="cpu", out=tmp_path / "mix.png")
    np.testing.assert_array_equal(pixels(mixed), cell(pixels(grid), 1, 1))
    assert not np.array_equal(pixels(mixed), cell(pixels(grid), 1, 0))  # the row source alone differs from the mix

    for space in ("w", "z"):
        frame, _ = client.predict(1, 2, 4, 3, 1.0, "0", space, api_name="/walk_image")
        walk = interpolate(stylegan_run, [1, 2], frames=4, classes="0", device="cpu", space=space, out=tmp_path / f"walk_{space}.gif")
        strip = pixels(walk.with_suffix(".png"))
        np.testing.assert_array_equal(pixels(frame), cell(strip, 0, 3))
        assert not np.array_equal(pixels(frame), cell(strip, 0, 2))


@pytest.mark.parametrize("api,values,message", [
    ("/mixed_image", (1, 2, "9-12", 1.0, "0"), "--mix-layers is coarse, middle, fine"),
    ("/seed_image", (1, 1.0, "no such class"), "no such class is not in the list of choices"),  # Gradio's own check
    ("/walk_image", (1, 2, 4, 9, 1.0, "0", "w"), "The position on the walk must be a whole number from 0 to 4"),
    ("/direction_image", (1, 99, 1.0, 1.0, "0", "seed"), "Value 99 is greater than maximum value 9"),  # Gradio's own
    ("/direction_image", (1, 0, 1.0, 1.0, "0", "projected upload"), "No projected image in this page: upload one first"),
])
def test_a_bad_value_is_a_message_and_the_page_goes_on(client, api: str, values: tuple, message: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(*values, api_name=api)
    image, _ = client.predict(3, 1.0, "1", api_name="/seed_image")  # the next request is served as usual
    assert pixels(image).std() > 0


def test_a_direction_and_a_projected_upload_equal_what_ganctl_sample_writes(client, page: str, stylegan_run: Path,
                                                                           tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from ganctl.directions import argument_parser
    from ganctl.directions.find import directions
    from ganctl.sample.direction import direction_strips
    from ganctl.sample.grid import sample

    found = directions(argument_parser().parse_args([str(stylegan_run), "--out", str(tmp_path / "dirs.npy"), "--device", "cpu"]))
    shown, command = client.predict(5, 2, 1.5, 0.7, "3", "seed", api_name="/direction_image")
    written = direction_strips(stylegan_run, f"{found}:2", "1.5", num=1, seed=5, classes="3", truncation=0.7, device="cpu",
                               out=tmp_path / "direction.png")
    assert pixels(shown).shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(pixels(shown), pixels(written))
    assert command.startswith(f"ganctl sample {stylegan_run} --direction dirs.npy:2 --strength=1.5 --seed 5 --num 1 "
                              "--truncation 0.7 --class 3  (dirs.npy: ganctl directions")
    unedited, _ = client.predict(5, 2, 0, 0.7, "3", "seed", api_name="/direction_image")
    assert not np.array_equal(pixels(unedited), pixels(shown))  # the strength moves the image

    # An upload (here one of G's own images) projected in a few steps, then edited: `ganctl sample --latents
    # FILE --direction` of the latent the page offers for download.
    target = sample(stylegan_run, num=1, seed=7, classes="3", device="cpu", out=tmp_path / "target.png")
    reconstruction, latents, projection_command, start = client.predict(handle_file(str(target)), 3, "3", api_name="/project_image")
    assert start == "projected upload" and "--steps 3 --class 3" in projection_command
    np.testing.assert_array_equal(pixels(reconstruction), pixels(direction_strips(
        stylegan_run, f"{found}:1", "0", latents_file=latents, device="cpu", out=tmp_path / "reconstruction.png")))
    edited, command = client.predict(0, 1, -2, 1.0, "3", "projected upload", api_name="/direction_image")
    written = direction_strips(stylegan_run, f"{found}:1", "-2", latents_file=latents, device="cpu", out=tmp_path / "edited.png")
    np.testing.assert_array_equal(pixels(edited), pixels(written))
    assert not np.array_equal(pixels(edited), pixels(reconstruction))
    assert command.startswith(f"ganctl sample {stylegan_run} --latents projected.pt --direction dirs.npy:1 --strength=-2")

    other_user = Client(page, verbose=False, download_files=True)  # the projection is this session's alone
    with pytest.raises(AppError, match="No projected image in this page: upload one first"):
        other_user.predict(0, 1, -2, 1.0, "3", "projected upload", api_name="/direction_image")


def test_an_upload_that_is_no_image_is_a_message(client, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(AppError, match=r"Cannot read 1 of 1 images as pictures: .*notes.txt \(UnidentifiedImageError\)"):
        client.predict(handle_file(str(tmp_path / "notes.txt")), 3, "3", api_name="/project_image")
    image, _ = client.predict(3, 1.0, "1", api_name="/seed_image")  # the page goes on
    assert pixels(image).std() > 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    yield from browser_session(tmp_path_factory)


def test_the_image_changes_when_a_slider_moves(page: str, browser) -> None:
    tab = browser.new_page()
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(page)
    image = tab.locator("#seed-image img")
    image.wait_for(timeout=60_000)
    first = image.get_attribute("src")
    assert image.evaluate(IMAGE_STATE) == {"decoded": True, "colours": 3}  # decoded, and not one flat colour
    slider = tab.locator("#seed input[type=range]")
    slider.focus()
    slider.press("ArrowRight")  # seed 0 -> 1, as a person moves it with the keyboard
    # The new picture, once the browser has loaded it (its src changes first, its pixels a moment later).
    tab.wait_for_function("([selector, old]) => { const img = document.querySelector(selector); "
                          "return img.src !== old && img.complete && img.naturalWidth > 0; }", arg=["#seed-image img", first],
                          timeout=60_000)
    assert image.evaluate(IMAGE_STATE)["decoded"]
    assert tab.locator("#seed-command textarea").input_value().endswith("--seed 1 --num 1 --class 0")
    tab.screenshot(path=str(screenshot_dir() / "explore.png"), full_page=True)
    assert requests and all(url.startswith(page) for url in requests), [url for url in requests if not url.startswith(page)]


def test_the_edited_image_changes_when_the_strength_moves(page: str, browser) -> None:
    tab = browser.new_page()
    tab.goto(page)
    tab.get_by_role("tab", name="Direction").click()
    image = tab.locator("#direction-image img")
    image.wait_for(timeout=60_000)
    first = image.get_attribute("src")
    slider = tab.locator("#strength input[type=range]")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")  # strength 0 -> 1
    # The last of the presses drawn (its command shown), then its picture loaded.
    tab.wait_for_function("() => document.querySelector('#direction-command textarea').value.includes('--strength=1 ')",
                          timeout=60_000)
    tab.wait_for_function("([selector, old]) => { const img = document.querySelector(selector); "
                          "return img.src !== old && img.complete && img.naturalWidth > 0; }", arg=["#direction-image img", first],
                          timeout=60_000)
    assert image.evaluate(IMAGE_STATE) == {"decoded": True, "colours": 3}
    tab.screenshot(path=str(screenshot_dir() / "explore-direction.png"), full_page=True)


def test_explore_without_the_ui_extra_says_how_to_install_it(stylegan_run: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ganctl.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed: find_spec finds nothing
    assert main(["explore", str(stylegan_run)]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "pip install 'ganctl[ui]'" in error and "Traceback" not in error

"""A judge trained on labelled data: `ganctl judge train` on class subfolders and on stylegan2-ada's
dataset.json, its file, its verdicts (class balance, accuracy by class) through the evaluator, the
judge ganctl ships for the bundled digits, and the Quickstart's run scored offline with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import judge, judge_cli, metrics
from ganctl.data import DIGITS, InMemoryImages, bundled_mnist
from ganctl.errors import GanctlError
from helpers import run_cli


def bars(folder: Path, per_class: int = 12, flat: bool = False) -> list[tuple[str, int]]:
    """Two classes of 16x16 grayscale PNGs: a horizontal bar or a vertical one, at varying places."""
    rng = np.random.default_rng(0)
    listed = []
    for label, name in enumerate(("horizontal", "vertical")):
        for index in range(per_class):
            pixels = rng.integers(0, 40, (16, 16)).astype(np.uint8)
            at = rng.integers(2, 13)
            if label == 0:
                pixels[at:at + 2, 2:14] = 255
            else:
                pixels[2:14, at:at + 2] = 255
            relative = f"{name}_{index}.png" if flat else f"{name}/{index}.png"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / relative)
            listed.append((relative, label))
    return listed


def test_class_balance_and_accuracy_on_known_predictions() -> None:
    value, options = judge.class_balance(torch.zeros(50, dtype=torch.long), 10)  # every sample one class
    assert value == pytest.approx(0.1) and options["present"] == 1 and options["shares"][0] == 1.0
    value, options = judge.class_balance(torch.arange(50) % 10, 10)  # an even spread
    assert value == pytest.approx(1.0) and options["present"] == 10
    half = judge.class_balance(torch.arange(50) % 5, 10)[0]  # five classes of ten
    assert half == pytest.approx(0.5) and math.isclose(judge.class_balance(torch.arange(50) % 5, 10)[1]["effective_classes"], 5)
    overall, per_class = judge.accuracy_by_class(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    assert overall == 0.5 and per_class == [1.0, pytest.approx(1 / 3), None]


def test_a_judge_trained_on_class_folders_and_on_dataset_json(tmp_path: Path) -> None:
    bars(tmp_path / "folders")
    out = tmp_path / "judge.pt"
    result = run_cli("judge", "train", str(tmp_path / "folders"), "--out", str(out), "--image-size", "16",
                     "--channels", "1", "--epochs", "2", env={"GANCTL_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    trained = judge.load(out)
    assert trained.classes == ["horizontal", "vertical"] and trained.net.image_size == 16
    card = trained.card
    assert f"Held-out accuracy {card['accuracy']:.2%}" in result.stderr and f"--feature judge:{out}" in result.stderr
    assert (card["train_images"], card["held_out_images"]) == (21, 3) and len(card["data"]) == 64
    listed = bars(tmp_path / "flat", flat=True)
    (tmp_path / "flat" / "dataset.json").write_text(json.dumps({"labels": [[name, label + 3] for name, label in listed]}))
    assert judge_cli.train_main([str(tmp_path / "flat"), "--out", str(tmp_path / "json.pt"), "--image-size", "16", "--channels", "1",
                             "--epochs", "2"]) == 0
    from_json = judge.load(tmp_path / "json.pt")
    assert from_json.classes == ["3", "4"]  # the labels' values
    held_out = judge.held_out_split(judge.json_labelled(tmp_path / "flat", 1, 16), 0.1)[1]
    assert judge.accuracy(from_json.net, held_out) == from_json.card["accuracy"]  # the card reports the held-out images
    with pytest.raises(GanctlError, match="lists missing.png, which cannot be read"):
        (tmp_path / "flat" / "dataset.json").write_text(json.dumps({"labels": [["missing.png", 0]]}))
        judge_cli.train_main([str(tmp_path / "flat"), "--out", str(tmp_path / "x.pt")])


def test_a_judge_file_is_checked(tmp_path: Path) -> None:
    with pytest.raises(GanctlError, match="no judge file there. Train one with `ganctl judge train"):
        judge.load("judge:" + str(tmp_path / "none.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(GanctlError, match="not a ganctl judge file"):
        judge.load(tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(GanctlError, match="cannot be read as a ganctl judge"):
        judge.load(tmp_path / "broken.pt")


def test_the_bundled_judge_is_the_bundled_digits_one() -> None:
    bundled = judge.load("judge:digits")
    images, labels = bundled_mnist("train")
    assert bundled.card["data"] == judge.fingerprint(images, labels.long())  # trained on exactly these digits
    assert bundled.classes == DIGITS and bundled.card["accuracy"] >= 0.97
    test_images, test_labels = bundled_mnist("test")
    held_out = judge.Labelled(test_images, test_labels.long(), DIGITS, "", "test")
    assert judge.accuracy(bundled.net, held_out) == pytest.approx(bundled.card["accuracy"], abs=1e-3)


def test_the_verdicts_through_the_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real held-out digits asked for as their own class score the judge's accuracy; asked for as the next
    digit, almost nothing. Real digits spread evenly; a batch of one digit does not."""
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    images, labels = bundled_mnist("test")
    real = InMemoryImages(images[:200], torch.device("cpu"), labels=labels[:200], classes=DIGITS)
    settings = {"names": ["fid"], "num_fake": 300, "num_real": None, "batch_size": 100, "feature": "judge:digits",
                "inception_weights": None, "split": "test", "seed": 0}
    conditional = metrics.Evaluator(settings, real, torch.device("cpu"), classes=DIGITS)
    assert conditional.names == ["fid", "judge_accuracy"]
    asked = labels[200:500].long()
    cards = conditional.score([images[200:500]], step=0, labels=asked)
    overall = next(card for card in cards if card["metric"] == "judge_accuracy")
    assert overall["value"] > 0.95 and overall["library"] == "ganctl (the judge's predictions)"
    assert sorted(card["metric"] for card in cards if card["metric"].startswith("judge_accuracy/")) == sorted(
        f"judge_accuracy/{digit}" for digit in DIGITS)
    wrong = conditional.score([images[200:500]], step=0, labels=(asked + 1) % 10)
    assert next(card for card in wrong if card["metric"] == "judge_accuracy")["value"] < 0.05

    unconditional = metrics.Evaluator(settings, real, torch.device("cpu"))
    assert unconditional.names == ["fid", "class_balance"]
    spread = next(c for c in unconditional.score([images[200:500]], step=0) if c["metric"] == "class_balance")
    ones = next(c for c in unconditional.score([images[labels == 1][:50]], step=0) if c["metric"] == "class_balance")
    assert spread["value"] > 0.95 and ones["value"] < 0.15 and ones["options"]["present"] == 1
    assert spread["backbone"].startswith("judge digits_judge.pt")
    with pytest.raises(GanctlError, match="class_balance is a judge's verdict"):
        metrics.Evaluator({**settings, "names": ["class_balance"], "feature": {"_target_": "ganctl.metrics.PooledPixels"}},
                          real, torch.device("cpu"))


def test_the_quickstart_run_is_scored_offline_with_the_bundled_judge(tiny_run: Path, tmp_path: Path) -> None:
    """`ganctl eval RUN` on a run of the default config: judge FD, KID and class balance, with no weights
    and no download (the Inception weights variable points nowhere; a download would fail the run)."""
    env = {"GANCTL_CACHE_DIR": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch"),
           metrics.WEIGHTS_ENV: str(tmp_path / "nowhere" / metrics.INCEPTION_FILE)}
    result = run_cli("eval", str(tiny_run), "--device", "cpu", "--num", "200", "--out", str(tmp_path / "cards.json"), env=env)
    assert result.returncode == 0, result.stderr
    cards = json.loads((tmp_path / "cards.json").read_text())
    assert [card["metric"] for card in cards] == ["fid", "kid", "class_balance"]
    assert all(card["backbone"].startswith("judge digits_judge.pt") and card["num_real"] == 4000 for card in cards)
    assert "class_balance" in result.stdout + result.stderr and not (tmp_path / "torch").exists()

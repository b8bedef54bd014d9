"""`ganctl eval` on a checkpoint from a tiny training run: metric cards, the table, --nearest, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import checkpoint, metrics
from ganctl.errors import GanctlError
from ganctl.evaluate import evaluate, nearest_training_images
from helpers import TINY, TINY_DCGAN, run_cli, run

POOLED = "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-step run whose stored config scores with the tiny extractor, on 100 samples."""
    directory = tmp_path_factory.mktemp("run")
    run(directory, *TINY, *TINY_DCGAN, POOLED, "metrics.num_fake=100", "metrics.num_real=300")
    return directory


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Caches in tmp_path; weights never downloaded (in-process: the download fails; subprocesses get
    a weights path that does not exist, so they stop before any download)."""
    env = {"GANCTL_CACHE_DIR": str(tmp_path / "cache"), "TORCH_HOME": str(tmp_path / "torch"),
           metrics.WEIGHTS_ENV: str(tmp_path / "no-weights" / metrics.INCEPTION_FILE)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    return env


def test_eval_cli_prints_the_table_and_writes_the_cards(run_dir: Path, offline: dict[str, str]) -> None:
    result = run_cli("eval", str(run_dir), "--device", "cpu", env=offline)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    card_file = run_dir / "checkpoints" / "last.metrics.json"
    assert "ganctl eval: step 4" in output and str(card_file) in output and "Traceback" not in output
    cards = json.loads(card_file.read_text())
    assert [card["metric"] for card in cards] == ["fid", "kid"]
    for card in cards:
        assert f"│ {card['metric']}" in output and f"{card['value']:.4f}" in output
        assert (card["step"], card["num_fake"], card["num_real"], card["split"]) == (4, 100, 300, "train")
        assert card["backbone"] == "ganctl.metrics.PooledPixels(size=8)" and card["generator"] == "ema"
        assert card["checkpoint"] == str((run_dir / "checkpoints" / "last.pt").resolve())
        assert card["value"] > 0  # 4 training steps make noise, not digits
    assert list((Path(offline["GANCTL_CACHE_DIR"]) / "real_features").glob("*.pt"))


def test_flags_override_the_stored_settings(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cards.json"
    cards, path = evaluate(run_dir / "checkpoints" / "step_0000002.pt", names=["kid"], num=50, split="test",
                           seed=3, device="cpu", ema=False, out=out)
    assert path == out and json.loads(out.read_text()) == cards
    (card,) = cards
    assert (card["metric"], card["step"], card["num_fake"], card["split"], card["generator"]) == ("kid", 2, 50, "test", "raw")
    assert card["num_real"] == 300 and card["options"]["seed"] == 3


def test_nearest_writes_the_side_by_side_grid(run_dir: Path) -> None:
    cards, path = evaluate(run_dir, names=["none"], device="cpu", nearest=10)
    (card,) = cards
    grid = run_dir / "samples" / "nearest_step0000004.png"
    assert card["metric"] == "nearest_l1" and card["grid"] == str(grid) and card["num_fake"] == 10
    assert 0 < card["value"] < 1 and 0 < card["baseline_test_to_train"] < 1
    # 10 samples in rows of 8: samples, neighbours, samples, neighbours; 28 px cells with 2 px padding
    assert Image.open(grid).size == (8 * 30 + 2, 4 * 30 + 2)
    assert json.loads(path.read_text()) == cards


def test_nearest_finds_the_closest_image_by_mean_absolute_difference() -> None:
    class Real:
        images = torch.tensor([0, 100, 200], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()

        def batches(self, batch_size: int):
            yield from self.images.split(2)  # the nearest may be in any batch

    queries = torch.tensor([190, 100, 40], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    distances, neighbours = nearest_training_images(queries, Real())
    torch.testing.assert_close(distances, torch.tensor([10, 0, 40]) / 255.0)
    assert neighbours[:, 0, 0, 0].tolist() == [200, 100, 0]


def test_missing_inception_weights_via_the_cli(run_dir: Path, tmp_path: Path, offline: dict[str, str]) -> None:
    """A run that scores with Inception, evaluated offline with a weights path that is wrong."""
    state = checkpoint.load(checkpoint.last_path(run_dir))
    state["config"]["metrics"]["feature"] = "inception"
    path = tmp_path / "inception_run" / "checkpoints" / "last.pt"
    checkpoint.save(state, path)
    result = run_cli("eval", str(path), "--device", "cpu", env=offline)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error:" in result.stderr and metrics.INCEPTION_URL in result.stderr
    assert f"{metrics.WEIGHTS_ENV} points at {offline[metrics.WEIGHTS_ENV]}, which is not a file" in result.stderr
    assert not path.with_name("last.metrics.json").exists()


def test_missing_inception_weights_in_process(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.WEIGHTS_ENV)

    def offline(url: str, dst: str, **kwargs) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    state = checkpoint.load(checkpoint.last_path(run_dir))
    with pytest.raises(GanctlError, match="downloading it failed .OSError: network unreachable.") as error:
        metrics.Evaluator({**state["config"]["metrics"], "feature": "inception"}, None, torch.device("cpu"))
    assert metrics.INCEPTION_FILE in str(error.value) and str(metrics.hub_weights_path().parent) in str(error.value)


@pytest.mark.parametrize("content,message", [
    ("truncated", "Cannot read checkpoint"),
    ({"generator": torch.zeros(2)}, "not a ganctl checkpoint"),
    ({"format": checkpoint.FORMAT, "step": 3}, "no stored config with a dataset and a model"),
])
def test_corrupt_or_foreign_checkpoints(content, message: str, run_dir: Path, tmp_path: Path, offline: dict[str, str]) -> None:
    path = tmp_path / "model.pt"
    if content == "truncated":
        data = checkpoint.last_path(run_dir).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        torch.save(content, path)
    result = run_cli("eval", str(path), env=offline)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("kwargs,message", [
    ({"num": 1}, "--num must be at least 2"),
    ({"names": ["fid", "fdi"]}, "Unknown metric 'fdi'"),
    ({"names": ["none"]}, "Nothing to do"),
    ({"split": "val"}, "--split must be train or test"),
    ({"nearest": -1}, "--nearest must be 0"),
    ({"names": ["is"]}, "Inception Score needs the Inception backbone and 3-channel images"),
])
def test_bad_eval_arguments(run_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(GanctlError, match=message):
        evaluate(run_dir, device="cpu", **kwargs)


def test_usage_lists_eval() -> None:
    from ganctl.cli import USAGE

    assert "  eval " in USAGE and "--nearest K" in USAGE


# ----------------------------------------------------------------------------- folders, truncation, offline


def test_a_folder_of_images_is_scored_against_the_run_dataset(run_dir: Path, tmp_path: Path) -> None:
    from ganctl.data import bundled_mnist
    from ganctl.evaluate import evaluate_folder

    folder = tmp_path / "other_tool"
    folder.mkdir()
    for i, digit in enumerate(bundled_mnist("train")[0][:30]):  # training digits, some saved at another size
        image = Image.fromarray(digit[0].numpy())
        (image.resize((56, 56)) if i < 5 else image).save(folder / f"{i:03d}.png")
    np.save(folder / "latents.npy", np.zeros((30, 4)))  # not an image: ignored
    cards, path = evaluate_folder(folder, run=run_dir, names=["fid", "precision", "recall"], device="cpu")
    assert path == tmp_path / "other_tool.metrics.json" and json.loads(path.read_text()) == cards
    assert [card["metric"] for card in cards] == ["fid", "precision", "recall"]
    assert all(card["num_fake"] == 30 and card["options"]["resized"] == 5 for card in cards)
    assert cards[1]["value"] == 1.0  # real training digits: every one inside a real image's k-NN ball
    from ganctl.evaluate import folder_batches, image_files

    resized = [0]
    batches = folder_batches(image_files(folder, None), 1, 28, 7, resized)  # decoded a batch at a time, as scored
    assert next(batches).shape == (7, 1, 28, 28) and resized == [5]  # (the first 7 files: 5 of them were 56 px)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(GanctlError, match="broken.png cannot be read as an image"):
        evaluate_folder(folder, run=run_dir, device="cpu")
    with pytest.raises(GanctlError, match="name it with --dataset NAME"):
        evaluate_folder(folder, device="cpu")
    with pytest.raises(GanctlError, match="not a dataset option.*choose from"):
        evaluate_folder(folder, dataset="imagenet", device="cpu")


def test_nearest_works_offline_and_names_the_metrics_it_skipped(run_dir: Path, tmp_path: Path, capsys) -> None:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    state["config"]["metrics"]["feature"] = "inception"
    path = tmp_path / "inception_run" / "checkpoints" / "last.pt"
    checkpoint.save(state, path)
    cards, card_path = evaluate(path, nearest=4, device="cpu")  # the run's metrics need weights this machine lacks
    output = " ".join(capsys.readouterr().err.split())
    assert "Skipped fid, kid" in output and metrics.WEIGHTS_ENV in output and metrics.INCEPTION_URL in output
    assert [card["metric"] for card in json.loads(card_path.read_text())] == ["nearest_l1"] == [card["metric"] for card in cards]
    with pytest.raises(GanctlError, match=metrics.INCEPTION_FILE):  # asked for by name: still an error
        evaluate(path, names=["fid"], nearest=4, device="cpu")


def test_metrics_against_truncation_psi(run_dir: Path, tmp_path: Path) -> None:
    from ganctl.evaluate import truncation_sweep

    table = truncation_sweep(run_dir, [1, 0.5, 0], names=["fid", "recall"], num=50, device="cpu", out=tmp_path / "psi.csv")
    rows = list(csv.DictReader(table.open()))
    assert [float(row["psi"]) for row in rows] == [1, 0.5, 0] and list(rows[0]) == ["psi", "fid", "recall"]
    plain, _ = evaluate(run_dir, names=["fid", "recall"], num=50, device="cpu", out=tmp_path / "plain.json")
    assert float(rows[0]["fid"]) == pytest.approx(plain[0]["value"], rel=1e-6)  # psi=1 is no truncation
    assert float(rows[2]["recall"]) == 0.0  # psi=0: every sample the same image, no variety

    assert Image.open(tmp_path / "psi.png").size == (800, 320)
    assert [card["options"]["truncation"] for card in json.loads((tmp_path / "psi.json").read_text())][::2] == [1, 0.5, 0]


def test_a_nearest_grid_that_cannot_be_written_is_one_message(run_dir: Path, tmp_path: Path) -> None:
    """The run's samples/ is not a writable folder (here a file in its place, as on a read-only or
    broken disk): `eval --nearest` says which file it could not write, with no traceback."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir / "checkpoints", copy / "checkpoints")
    (copy / "samples").write_text("not a folder")
    with pytest.raises(GanctlError, match=r"Cannot write the nearest-neighbour grid .*nearest_step\d+\.png"):
        evaluate(copy, names=["none"], nearest=2, device="cpu")

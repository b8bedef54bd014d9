"""dataset=zip (archives as StyleGAN2-ADA's dataset_tool.py writes them, with dataset.json labels), a
folder's dataset.json, and dataset.mirror."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import data
from ganctl.data import InMemoryImages, StreamingImages
from ganctl.errors import GanctlError
from helpers import TINY, TINY_DCGAN, compose_config, run_cli

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def load(option: str, *overrides: str):
    cfg, _ = compose_config(f"dataset={option}", *overrides)
    return data.build(cfg.dataset, CPU)


def pictures(count: int, size: int = 12, mode: str = "RGB") -> list[np.ndarray]:
    """Images whose left and right halves differ, so a flip shows."""
    rng = np.random.default_rng(0)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def dataset_tool_zip(path: Path, images: list[np.ndarray], labels: list[int] | None) -> list[str]:
    """An archive laid out as dataset_tool.py writes one: 00000/img00000000.png, ... and dataset.json."""
    names = [f"{index // 1000:05d}/img{index:08d}.png" for index in range(len(images))]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, pixels in zip(names, images):
            archive.writestr(name, png(pixels))
        archive.writestr("dataset.json", json.dumps({"labels": None if labels is None else [list(p) for p in zip(names, labels)]}))
    return names


def test_a_dataset_tool_archive_with_labels_in_memory_and_streamed(tmp_path: Path) -> None:
    images, labels = pictures(7, mode="L"), [2, 0, 1, 2, 0, 1, 2]
    dataset_tool_zip(tmp_path / "data.zip", images, labels)
    in_memory = load("zip", f"dataset.root={tmp_path / 'data.zip'}")
    assert isinstance(in_memory, InMemoryImages)
    assert (in_memory.channels, in_memory.image_size) == (1, 12)  # null settings: the first image's
    assert torch.equal(in_memory.images[:, 0], torch.from_numpy(np.stack(images)))
    assert in_memory.labels.tolist() == labels and in_memory.classes == ["0", "1", "2"]
    streamed = load("zip", f"dataset.root={tmp_path / 'data.zip'}", "dataset.in_memory=false", "dataset.image_size=8",
                    "dataset.channels=3")
    assert isinstance(streamed, StreamingImages) and streamed.classes == ["0", "1", "2"]
    batches = list(streamed.labelled_batches(3))
    assert torch.cat([b for b, _ in batches]).shape == (7, 3, 8, 8)
    assert torch.cat([l for _, l in batches]).tolist() == labels
    resized = load("zip", f"dataset.root={tmp_path / 'data.zip'}", "dataset.image_size=8", "dataset.channels=3")
    assert torch.equal(torch.cat(list(streamed.batches(3))), resized.images)


def test_a_folder_with_a_dataset_json_is_labelled_by_it(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "part").mkdir(parents=True)
    images = pictures(4)
    names = ["a.png", "part/b.png", "part/c.png", "d.png"]
    for name, pixels in zip(names, images):
        (root / name).write_bytes(png(pixels))
    (root / "dataset.json").write_text(json.dumps({"labels": [[n, label] for n, label in zip(names, [1, 0, 1, 0])]}))
    source = load("folder", f"dataset.root={root}", "dataset.image_size=12")
    assert source.classes == ["0", "1"]
    by_name = dict(zip(sorted(names), source.labels.tolist()))
    assert by_name == {"a.png": 1, "part/b.png": 0, "part/c.png": 1, "d.png": 0}


def test_labels_null_means_unlabelled(tmp_path: Path) -> None:
    dataset_tool_zip(tmp_path / "data.zip", pictures(3), None)
    source = load("zip", f"dataset.root={tmp_path / 'data.zip'}")
    assert source.classes is None and "labels\": null" in source.unlabelled


def bad_json(text: str):
    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("00000/img00000000.png", png(pictures(1)[0]))
            archive.writestr("dataset.json", text)
    return write


def truncated(path: Path) -> None:
    dataset_tool_zip(path, pictures(3), [0, 1, 0])
    path.write_bytes(path.read_bytes()[:300])


def bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("00000/img00000000.png", b"\0" * (8 * 2**20))


def no_images(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")


@pytest.mark.parametrize("write, message", [
    (truncated, "is not a readable ZIP archive"),
    (bomb, "looks like a ZIP bomb"),
    (no_images, "holds no images"),
    (bad_json("{not json"), "is not valid JSON"),
    (bad_json("[" * 100_000), "is not valid JSON"),  # nested past Python's recursion limit
    (bad_json('{"classes": []}'), 'has no "labels" entry'),
    (bad_json('{"labels": [["00000/img00000000.png", 0.5]]}'), "each label is a class index"),
    (bad_json('{"labels": [["00000/img00000000.png"]]}'), "not a list of \\[file name, class index\\] pairs"),
    (bad_json('{"labels": [["elsewhere.png", 0]]}'), "has no label for 1 of the 1 images"),
    (bad_json('{"labels": [["00000/img00000000.png", 0], ["gone.png", 1]]}'), "labels 1 file that is not among the images"),
], ids=["truncated", "bomb", "no-images", "not-json", "nested-too-deep", "no-labels-key", "fraction", "not-pairs", "unlabelled", "stray"])
def test_damaged_archives_and_label_files_get_one_message(tmp_path: Path, write, message: str) -> None:
    write(tmp_path / "data.zip")
    with pytest.raises(GanctlError, match=message):
        load("zip", f"dataset.root={tmp_path / 'data.zip'}")


def test_a_zip_bomb_through_the_cli_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    bomb(tmp_path / "data.zip")
    result = run_cli("train", "dataset=zip", f"dataset.root={tmp_path / 'data.zip'}", *TINY, *TINY_DCGAN,
                     "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "ZIP bomb" in result.stderr and not (tmp_path / "run" / "checkpoints").exists()


def test_mirror_draws_each_image_and_its_flip_alike_and_leaves_the_statistics_unflipped() -> None:
    images = torch.from_numpy(np.stack(pictures(3))).permute(0, 3, 1, 2).contiguous()
    plain, mirrored = InMemoryImages(images, CPU), InMemoryImages(images, CPU, mirror=True)
    torch.manual_seed(0)
    drawn = mirrored.sample(600)
    as_floats = images.float() / 127.5 - 1
    upright = (drawn[:, None] == as_floats[None]).flatten(2).all(-1).any(-1)
    flipped = (drawn[:, None] == as_floats.flip(-1)[None]).flatten(2).all(-1).any(-1)
    assert bool((upright | flipped).all()) and 0.4 < upright.double().mean().item() < 0.6
    torch.manual_seed(0)
    assert (plain.sample(600)[:, None] == as_floats[None]).flatten(2).all(-1).any(-1).all()  # mirror off: never flipped
    assert torch.equal(torch.cat(list(mirrored.batches(2))), images)  # what real statistics see


def test_mirror_off_draws_what_it_drew_before() -> None:
    """mirror=false takes the same random draws as a source built without the setting (runs repeat)."""
    source = load("mnist")
    torch.manual_seed(5)
    index = torch.randint(len(source), (8,))
    expected = source.images[index].float().div(127.5).sub(1)
    torch.manual_seed(5)
    assert torch.equal(source.sample(8), expected)


def test_streamed_mirror_flips_every_other_pass(tmp_path: Path) -> None:
    images = pictures(4)
    dataset_tool_zip(tmp_path / "data.zip", images, None)
    source = load("zip", f"dataset.root={tmp_path / 'data.zip'}", "dataset.in_memory=false", "dataset.mirror=true")
    as_floats = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.manual_seed(0)
    first, second = source.sample(4), source.sample(4)  # one pass each

    def matches(batch: torch.Tensor, reference: torch.Tensor) -> bool:
        return bool((batch[:, None] == reference[None]).flatten(2).all(-1).any(-1).all())

    assert matches(first, as_floats) and matches(second, as_floats.flip(-1))


def test_mirror_must_be_a_boolean() -> None:
    with pytest.raises(GanctlError, match="dataset.mirror must be true or false"):
        load("mnist", "dataset.mirror=2")

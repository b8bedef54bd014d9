"""Every dataset option loads small files written here in its real format, through the real readers."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets

from ganctl import data
from ganctl.data import InMemoryImages, StreamingImages
from ganctl.errors import GanctlError
from helpers import TINY, TINY_DCGAN, compose_config, run_cli

SHARED_MNIST = Path(__file__).parents[2] / "shared" / "data"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every cache this module writes goes under tmp_path, never to $HOME."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(cache))
    return cache


def load(option: str, *overrides: str, split: str = "train"):
    cfg, _ = compose_config(f"dataset={option}", *overrides)
    return data.build(cfg.dataset, CPU, split=split)


# ----------------------------------------------------------------------------- files in real formats


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST's IDX format: big-endian magic (0x0803 images, 0x0801 labels), the sizes, then the bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, h, w) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())


def write_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 3) -> np.ndarray:
    """cifar-10-batches-py as torchvision expects it; torchvision's MD5 list is pointed at these files.
    Returns the training rows (N, 3072): 1024 red, then 1024 green, then 1024 blue values."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    rows = {name: rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8) for name in names}
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows[name], "labels": [0] * per_batch, "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(tv_datasets.CIFAR10, "train_list", [[n, md5(n)] for n in names[:5]])
    monkeypatch.setattr(tv_datasets.CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(tv_datasets.CIFAR10, "meta", {**tv_datasets.CIFAR10.meta, "md5": md5("batches.meta")})
    return np.concatenate([rows[name] for name in names[:5]])


def solid(mode: str, size: tuple[int, int], color) -> Image.Image:
    return Image.new(mode, size, color)


def write_mixed_folder(root: Path) -> dict[str, tuple[int, int, int]]:
    """Images of every supported format and mode, in class subfolders and at the top, plus a corrupt
    file, a hidden file and a non-image. Returns each readable file's expected RGB colour."""
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "nested").mkdir(parents=True)
    palette = solid("P", (40, 30), 0)
    palette.putpalette([10, 200, 30] + [0] * 765)
    transparent_palette = solid("P", (30, 30), 0)
    transparent_palette.putpalette([0, 0, 0] * 256)
    images = {
        "cats/red.png": (solid("RGB", (32, 32), (255, 0, 0)), (255, 0, 0)),
        "cats/blue.jpg": (solid("RGB", (50, 40), (0, 0, 255)), (0, 0, 255)),
        "cats/gray.png": (solid("L", (20, 20), 100), (100, 100, 100)),
        "dogs/green.webp": (solid("RGB", (64, 64), (0, 255, 0)), (0, 255, 0)),
        "dogs/nested/yellow.bmp": (solid("RGB", (16, 24), (255, 255, 0)), (255, 255, 0)),
        "dogs/transparent.png": (solid("RGBA", (32, 32), (0, 0, 0, 0)), (255, 255, 255)),  # onto white
        "dogs/half_alpha.png": (solid("RGBA", (32, 32), (0, 0, 0, 128)), (127, 127, 127)),
        "palette.png": (palette, (10, 200, 30)),
        "palette_transparent.png": (transparent_palette, (255, 255, 255)),
        "upper.JPEG": (solid("RGB", (30, 30), (200, 100, 50)), (200, 100, 50)),
    }
    for name, (image, _) in images.items():
        if name == "palette_transparent.png":
            image.save(root / name, transparency=0)
        else:
            image.save(root / name)
    (root / "dogs" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # PNG magic, no image
    (root / ".hidden.png").write_bytes(b"junk")  # hidden: ignored, not reported
    (root / "notes.txt").write_text("not an image")
    return {name: color for name, (_, color) in images.items()}


# ----------------------------------------------------------------------------- MNIST and Fashion-MNIST


def test_default_is_the_bundled_mnist() -> None:
    source = load("mnist")
    assert isinstance(source, InMemoryImages)
    assert (len(source), source.channels, source.image_size) == (4000, 1, 28)
    assert len(load("mnist", split="test")) == 1000


@pytest.mark.skipif(not (SHARED_MNIST / "MNIST" / "raw").is_dir(), reason="shared MNIST files not present")
def test_real_mnist_files_through_torchvision() -> None:
    """The shared IDX files are the bundled digits re-encoded: both paths must agree pixel for pixel."""
    source = load("mnist", f"dataset.root={SHARED_MNIST}")
    torch.testing.assert_close(source.images, data.bundled_mnist("train")[0])
    test = load("mnist", f"dataset.root={SHARED_MNIST}", split="test")
    torch.testing.assert_close(test.images, data.bundled_mnist("test")[0])


@pytest.mark.parametrize("option,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_load_with_their_split(tmp_path: Path, option: str, folder: str) -> None:
    rng = np.random.default_rng(1)
    train, test = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / folder / "raw", "train", train, np.zeros(6, np.uint8))
    write_idx(tmp_path / folder / "raw", "t10k", test, np.zeros(2, np.uint8))
    source = load(option, f"dataset.root={tmp_path}")
    assert torch.equal(source.images, torch.from_numpy(train).unsqueeze(1))
    assert torch.equal(load(option, f"dataset.root={tmp_path}", split="test").images, torch.from_numpy(test).unsqueeze(1))
    assert load(option, f"dataset.root={tmp_path}", "dataset.image_size=32").images.shape == (6, 1, 32, 32)


def test_fashion_mnist_needs_a_root_and_its_files(tmp_path: Path) -> None:
    with pytest.raises(GanctlError, match="needs dataset.root"):
        load("fashion_mnist")
    with pytest.raises(GanctlError, match=r"FashionMNIST/raw/train-images-idx3-ubyte.*dataset.download=true"):
        load("fashion_mnist", f"dataset.root={tmp_path}")


@pytest.mark.parametrize("option,folder,files", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte.gz"),
    ("fashion_mnist", "FashionMNIST/raw", "train-images-idx3-ubyte.gz"),
    ("cifar10", "", "cifar-10-python.tar.gz"),
])
def test_an_offline_download_says_where_the_files_go_and_leaves_no_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, folder: str, files: str
) -> None:
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    existing = tmp_path / "kept"
    existing.mkdir()
    for root in (tmp_path / "new" / "data", existing):
        with pytest.raises(GanctlError) as refused:
            load(option, f"dataset.root={root}", "dataset.download=true")
        message = str(refused.value)
        assert "Could not download" in message and "offline" in message, message
        assert files in message and f"in {(root / folder).resolve()}/" in message, message
        assert ("bundled with ganctl" in message) == (option == "mnist")
    assert not (tmp_path / "new").exists()  # the folders the download made are gone
    assert existing.is_dir() and not any(existing.iterdir())  # a folder that was there stays


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar10_pickle_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = write_cifar10(tmp_path, monkeypatch)
    source = load("cifar10", f"dataset.root={tmp_path}")
    assert (len(source), source.channels, source.image_size) == (15, 3, 32)
    expected = torch.from_numpy(rows).view(15, 3, 32, 32)  # each row is the red, green, blue planes
    assert torch.equal(source.images, expected)
    assert len(load("cifar10", f"dataset.root={tmp_path}", split="test")) == 3
    assert load("cifar10", f"dataset.root={tmp_path}", "dataset.image_size=64").images.shape == (15, 3, 64, 64)


def test_cifar10_files_that_fail_their_checksum_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision unpickles these files: a file that is not the one it knows must never be opened."""
    write_cifar10(tmp_path, monkeypatch)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(GanctlError, match="cifar-10-batches-py/data_batch_3 is there but differs from the original file"):
        load("cifar10", f"dataset.root={tmp_path}")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()  # missing, not changed: said so
    with pytest.raises(GanctlError, match="not found or incomplete: expected .*cifar-10-batches-py/ with data_batch_1"):
        load("cifar10", f"dataset.root={tmp_path}")


# ----------------------------------------------------------------------------- folders of images


def test_folder_of_mixed_images(tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    colors = write_mixed_folder(tmp_path / "images")
    with caplog.at_level(logging.WARNING, logger="ganctl"):
        source = load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=16")
    assert (len(source), source.channels, source.image_size) == (len(colors), 3, 16)
    # sorted relative paths: the decoded colours come back in that order, each exact (JPEG/WEBP nearly)
    for image, name in zip(source.images, sorted(colors)):
        expected = torch.tensor(colors[name], dtype=torch.float32).view(3, 1, 1).expand(3, 16, 16)
        torch.testing.assert_close(image.float(), expected, atol=4, rtol=0, msg=name)
    warning = "skipped 1 unreadable image file of 11 under"
    assert warning in caplog.text and "corrupt.png" in caplog.text
    assert warning in capsys.readouterr().err


def test_folder_grayscale_and_center_crop(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    source = load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=8", "dataset.channels=1")
    assert source.images.shape == (10, 1, 8, 8)
    wide = tmp_path / "wide"
    wide.mkdir()
    pixels = np.zeros((10, 30, 3), np.uint8)
    pixels[:, 10:20] = 255  # only the middle third is white: a center crop keeps it, squashing would not
    Image.fromarray(pixels).save(wide / "wide.png")
    image = load("folder", f"dataset.root={wide}", "dataset.image_size=10").images[0]
    assert image.shape == (3, 10, 10) and image.min() == 255
    image = load("folder", f"dataset.root={wide}", "dataset.image_size=5").images[0]  # 30x10 -> 15x5, then crop
    assert image.shape == (3, 5, 5) and image[:, :, 1:4].min() == 255 and image[:, :, 0].max() < 255


def test_folder_strict_makes_a_corrupt_file_an_error(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    with pytest.raises(GanctlError, match=r"1 of 11 image files .* could not be read: dogs/corrupt.png"):
        load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.strict=true")


def test_folder_mistakes_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(GanctlError, match="No images found under"):
        load("folder", f"dataset.root={tmp_path / 'empty'}")
    with pytest.raises(GanctlError, match="does not exist"):
        load("folder", f"dataset.root={tmp_path / 'nowhere'}")
    with pytest.raises(GanctlError, match="needs dataset.root"):
        load("folder")
    with pytest.raises(GanctlError, match="must be 1 .* or 3"):
        load("folder", f"dataset.root={SHARED_MNIST}", "dataset.channels=4")
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "a.jpg").write_bytes(b"nope")
    with pytest.raises(GanctlError, match="None of the 1 image files"):
        load("folder", f"dataset.root={tmp_path / 'only_bad'}")


def test_folder_has_no_test_split(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    with pytest.raises(GanctlError, match="no test split"):
        load("folder", f"dataset.root={tmp_path / 'images'}", split="test")


def test_max_items_spreads_over_subfolders(tmp_path: Path) -> None:
    for label, value in (("a", 0), ("b", 255)):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("L", (8, 8), value).save(tmp_path / label / f"{i}.png")
    images = load("folder", f"dataset.root={tmp_path}", "dataset.image_size=8", "dataset.channels=1", "dataset.max_items=4").images
    assert images.shape == (4, 1, 8, 8)
    assert images[:, 0, 0, 0].tolist() == [0, 0, 255, 255]


def test_decoded_folder_is_cached_and_refreshed_when_a_file_changes(
    tmp_path: Path, cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "images"
    write_mixed_folder(root)
    first = load("folder", f"dataset.root={root}", "dataset.image_size=16")
    cached = list(cache_in_tmp.glob("*.npz"))
    assert len(cached) == 1 and not list(cache_in_tmp.glob(".*.tmp"))
    with np.load(cached[0], allow_pickle=False) as arrays:  # safe to load: plain arrays only
        assert np.array_equal(arrays["images"], first.images.numpy())

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    with monkeypatch.context() as patched:
        patched.setattr(data, "decode_image", no_decoding)
        again = load("folder", f"dataset.root={root}", "dataset.image_size=16")
    assert torch.equal(again.images, first.images) and again.fingerprint == first.fingerprint

    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "cats" / "red.png")  # rewritten: new size and mtime
    os.utime(root / "cats" / "red.png", ns=(1, 1))
    changed = load("folder", f"dataset.root={root}", "dataset.image_size=16")
    assert changed.fingerprint != first.fingerprint
    assert changed.images[sorted(write_names(root)).index("cats/red.png")][:, 0, 0].tolist() == [1, 2, 3]
    assert len(list(cache_in_tmp.glob("*.npz"))) == 1  # the outdated entry was replaced

    load("folder", f"dataset.root={root}", "dataset.image_size=24", f"dataset.cache={tmp_path / 'mine'}")
    assert len(list((tmp_path / "mine").glob("*.npz"))) == 1
    load("folder", f"dataset.root={root}", "dataset.image_size=20", "dataset.cache=false")
    assert len(list(cache_in_tmp.glob("*.npz"))) == 1


def write_names(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in data.find_images(root) if p.name != "corrupt.png"]


def unknown_compression(archive: bytes) -> bytes:
    """A ZIP whose members claim compression method 99, which no reader knows (local and central headers)."""
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = archive.find(signature)
        while start >= 0:
            archive = archive[: start + offset] + (99).to_bytes(2, "little") + archive[start + offset + 2 :]
            start = archive.find(signature, start + 4)
    return archive


@pytest.mark.parametrize("damage", [lambda archive: archive[:100], unknown_compression], ids=["truncated", "unknown compression"])
def test_a_damaged_cache_file_is_decoded_again(tmp_path: Path, cache_in_tmp: Path, damage) -> None:
    write_mixed_folder(tmp_path / "images")
    first = load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=8")
    (cached,) = cache_in_tmp.glob("*.npz")
    cached.write_bytes(damage(cached.read_bytes()))
    again = load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=8")
    assert torch.equal(again.images, first.images)


def test_streaming_matches_in_memory(tmp_path: Path, cache_in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "images"
    write_mixed_folder(root)
    in_memory = load("folder", f"dataset.root={root}", "dataset.image_size=16")
    capsys.readouterr()
    streamed = load("folder", f"dataset.root={root}", "dataset.image_size=16", "dataset.in_memory=false")
    assert isinstance(streamed, StreamingImages)
    assert (streamed.channels, streamed.image_size, streamed.fingerprint) == (3, 16, in_memory.fingerprint)
    assert torch.equal(torch.cat(list(streamed.batches(4))), in_memory.images)
    assert "skipped 1 unreadable image file" in capsys.readouterr().err
    torch.manual_seed(0)
    for _ in range(3):  # 11 files, one unreadable: batches of 7 must still be full
        batch = streamed.sample(7)
        assert batch.shape == (7, 3, 16, 16) and batch.dtype == torch.float32
        assert -1.0 <= batch.min() and batch.max() <= 1.0


def test_in_memory_auto_streams_what_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mixed_folder(tmp_path / "images")
    monkeypatch.setattr(data, "IN_MEMORY_LIMIT", 10 * 3 * 16 * 16)  # fewer bytes than 11 images take
    assert isinstance(load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=16"), StreamingImages)
    with pytest.raises(GanctlError, match="in_memory must be auto, true or false"):
        load("folder", f"dataset.root={tmp_path / 'images'}", "dataset.in_memory=maybe")


def test_sample_is_in_tanh_range_and_follows_the_global_rng() -> None:
    source = load("mnist")
    torch.manual_seed(3)
    first = source.sample(16)
    torch.manual_seed(3)
    torch.testing.assert_close(source.sample(16), first)
    assert first.min() >= -1.0 and first.max() <= 1.0 and first.min() < -0.99 and first.max() > 0.99


# ----------------------------------------------------------------------------- CelebA


def write_celeba_jpegs(folder: Path, count: int) -> None:
    """Aligned-CelebA-style images: 178x218 JPEGs named 000001.jpg, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        pixels = np.full((218, 178, 3), 20 * i, np.uint8)
        pixels[:20] = 255  # a white band at the top: cropped away by the center crop at 64
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=95)


def test_celeba_as_a_plain_folder_of_jpegs(tmp_path: Path) -> None:
    write_celeba_jpegs(tmp_path / "img_align_celeba", 5)
    for root in (tmp_path, tmp_path / "img_align_celeba"):
        source = load("celeba", f"dataset.root={root}")
        assert (len(source), source.channels, source.image_size) == (5, 3, 64)
        torch.testing.assert_close(source.images[2].float().mean(), torch.tensor(60.0), atol=2, rtol=0)
        assert source.images[:, :, 0].float().mean() < 200  # the top band lies outside the square crop
    with pytest.raises(GanctlError, match="no test split"):
        load("celeba", f"dataset.root={tmp_path}", split="test")


def test_celeba_in_torchvision_layout_uses_the_official_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "celeba"
    write_celeba_jpegs(folder / "img_align_celeba", 6)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    partition = [0, 0, 0, 1, 2, 2]  # train, train, train, valid, test, test
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    (folder / "list_attr_celeba.txt").write_text("6\nSmiling\n" + "".join(f"{n} 1\n" for n in names))
    (folder / "list_bbox_celeba.txt").write_text("6\nimage_id x_1 y_1 width height\n" + "".join(f"{n} 0 0 1 1\n" for n in names))
    (folder / "list_landmarks_align_celeba.txt").write_text("6\nlefteye_x lefteye_y\n" + "".join(f"{n} 1 1\n" for n in names))
    files = [(entry[0], hashlib.md5((folder / entry[2]).read_bytes()).hexdigest(), entry[2]) for entry in tv_datasets.CelebA.file_list if entry[2].endswith(".txt")]
    monkeypatch.setattr(tv_datasets.CelebA, "file_list", files)

    train = load("celeba", f"dataset.root={tmp_path}", "dataset.image_size=32")
    assert train.images.shape == (3, 3, 32, 32)
    assert train.images.float().mean(dim=(1, 2, 3)).round().tolist() == [20.0, 40.0, 60.0]
    test = load("celeba", f"dataset.root={folder}", "dataset.image_size=32", split="test")  # celeba/ itself works too
    assert test.images.float().mean(dim=(1, 2, 3)).round().tolist() == [100.0, 120.0]

    (folder / "list_attr_celeba.txt").write_text("damaged")
    with pytest.raises(GanctlError, match="CelebA files not found or incomplete.*img_align_celeba folder itself"):
        load("celeba", f"dataset.root={tmp_path}")


# ----------------------------------------------------------------------------- Quick, Draw!


def test_quickdraw_bitmap_file_and_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    camel = rng.integers(0, 256, (10, 784), dtype=np.uint8)
    np.save(tmp_path / "full_numpy_bitmap_camel.npy", camel)
    source = load("quickdraw", f"dataset.root={tmp_path / 'full_numpy_bitmap_camel.npy'}")
    assert (len(source), source.channels, source.image_size) == (10, 1, 28)
    assert torch.equal(source.images, torch.from_numpy(camel).view(10, 1, 28, 28))
    assert load("quickdraw", f"dataset.root={tmp_path / 'full_numpy_bitmap_camel.npy'}", "dataset.max_items=4").images.shape[0] == 4

    cat = rng.integers(0, 256, (10, 784), dtype=np.uint8)
    np.save(tmp_path / "full_numpy_bitmap_cat.npy", cat)
    both = load("quickdraw", f"dataset.root={tmp_path}", "dataset.max_items=6", "dataset.image_size=32")
    assert both.images.shape == (6, 1, 32, 32)
    small = load("quickdraw", f"dataset.root={tmp_path}", "dataset.max_items=6").images
    assert torch.equal(small, torch.from_numpy(np.concatenate([camel[:3], cat[:3]])).view(6, 1, 28, 28))
    with pytest.raises(GanctlError, match="no test split"):
        load("quickdraw", f"dataset.root={tmp_path}", split="test")


def test_quickdraw_wrong_arrays_are_clear_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(GanctlError, match=r"shape \(5, 28, 28\).*N x 784 uint8"):
        load("quickdraw", f"dataset.root={tmp_path / 'wrong.npy'}")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(GanctlError, match="not a readable .npy file"):  # pickled objects are never loaded
        load("quickdraw", f"dataset.root={tmp_path / 'objects.npy'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanctlError, match="No .npy files found"):
        load("quickdraw", f"dataset.root={tmp_path / 'empty'}")


# ----------------------------------------------------------------------------- through training


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GANCTL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir(None) == tmp_path / "xdg" / "ganctl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir(None) == Path.home() / ".cache" / "ganctl"
    assert data.cache_dir(False) is None and data.cache_dir("~/x") == Path.home() / "x"


def test_train_on_a_folder_through_the_cli(tmp_path: Path) -> None:
    write_mixed_folder(tmp_path / "images")
    result = run_cli(
        "train", "dataset=folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=32",
        *TINY, *TINY_DCGAN, "hydra.run.dir=run", cwd=tmp_path, env={"GANCTL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable image file" in result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert list((tmp_path / "cache").glob("*.npz"))



# ----------------------------------------------------------------------------- class labels


def test_labelled_datasets_give_labels_and_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digits = load("mnist")
    assert digits.classes == [str(digit) for digit in range(10)]
    assert torch.equal(digits.labels, data.bundled_mnist("train")[1])
    rng = np.random.default_rng(3)
    images, labels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.array([3, 1, 4, 1, 5, 9], np.uint8)
    for folder in ("MNIST", "FashionMNIST"):
        write_idx(tmp_path / folder / "raw", "train", images, labels)
        write_idx(tmp_path / folder / "raw", "t10k", images[:2], labels[:2])
    mnist, fashion = load("mnist", f"dataset.root={tmp_path}"), load("fashion_mnist", f"dataset.root={tmp_path}")
    assert mnist.labels.tolist() == fashion.labels.tolist() == [3, 1, 4, 1, 5, 9]
    assert fashion.classes[:2] == ["T-shirt/top", "Trouser"] and len(fashion.classes) == 10
    write_cifar10(tmp_path / "cifar", monkeypatch)
    cifar = load("cifar10", f"dataset.root={tmp_path / 'cifar'}")
    assert cifar.classes == [f"class{i}" for i in range(10)] and cifar.labels.tolist() == [0] * 15  # batches.meta's names


def test_labels_outside_the_classes_are_refused_only_when_labels_are_needed(tmp_path: Path) -> None:
    write_idx(tmp_path / "MNIST" / "raw", "train", np.zeros((2, 28, 28), np.uint8), np.array([1, 12], np.uint8))
    write_idx(tmp_path / "MNIST" / "raw", "t10k", np.zeros((1, 28, 28), np.uint8), np.array([0], np.uint8))
    cfg, _ = compose_config("dataset=mnist", f"dataset.root={tmp_path}")
    assert len(data.build(cfg.dataset, CPU)) == 2  # an unconditional run never reads them
    with pytest.raises(GanctlError, match="labels from 1 to 12, but the dataset has 10 classes"):
        data.build(cfg.dataset, CPU, labels=True)


def write_class_folders(root: Path) -> None:
    """Class subfolders as torchvision's ImageFolder reads them: b/ holds white images (one nested
    deeper), a/ black ones; the sorted names number the classes (a = 0, b = 1)."""
    for name, value in (("b/0.png", 255), ("b/deeper/1.png", 255), ("a/0.png", 0), ("a/1.png", 0), ("a/2.png", 0)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), value).save(root / name)


def test_class_subfolders_label_a_folder_in_memory_cached_and_streamed(tmp_path: Path, cache_in_tmp: Path) -> None:
    root = tmp_path / "classes"
    write_class_folders(root)
    settings = (f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    source = data.build(compose_config("dataset=folder", *settings)[0].dataset, CPU, labels=True)
    assert source.classes == ["a", "b"]
    assert torch.equal(source.labels, (source.images[:, 0, 0, 0] == 255).long())  # each image's label is its folder's
    (cached,) = cache_in_tmp.glob("*.npz")
    again = data.build(compose_config("dataset=folder", *settings)[0].dataset, CPU, labels=True)
    assert torch.equal(again.labels, source.labels)
    with np.load(cached) as arrays:  # a cache file from before labels: decoded again, with them
        np.savez(cached, images=arrays["images"], unreadable=arrays["unreadable"])
    assert torch.equal(data.build(compose_config("dataset=folder", *settings)[0].dataset, CPU, labels=True).labels, source.labels)

    streamed = data.build(compose_config("dataset=folder", *settings, "dataset.in_memory=false")[0].dataset, CPU, labels=True)
    assert isinstance(streamed, StreamingImages) and streamed.classes == ["a", "b"]
    torch.manual_seed(0)
    for _ in range(3):
        images, labels = streamed.sample_labelled(4)
        assert torch.equal(labels, (images[:, 0, 0, 0] > 0).long())
    pairs = list(streamed.labelled_batches(2))
    assert torch.equal(torch.cat([labels for _, labels in pairs]), source.labels)


def test_a_folder_of_quickdraw_files_is_labelled_by_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    np.save(tmp_path / "full_numpy_bitmap_camel.npy", rng.integers(0, 256, (5, 784), dtype=np.uint8))
    np.save(tmp_path / "cat.npy", rng.integers(0, 256, (3, 784), dtype=np.uint8))
    both = data.build(compose_config("dataset=quickdraw", f"dataset.root={tmp_path}")[0].dataset, CPU, labels=True)
    assert both.classes == ["cat", "camel"]  # sorted by file name: cat.npy, full_numpy_bitmap_camel.npy
    assert both.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    one = compose_config("dataset=quickdraw", f"dataset.root={tmp_path / 'cat.npy'}")[0].dataset
    with pytest.raises(GanctlError, match=r"one Quick, Draw! file is one class \(cat\)"):
        data.build(one, CPU, labels=True)


# ----------------------------------------------------------------------------- what a folder and the cache may hold


def gray_folder(root: Path, count: int, size: int = 8, suffix: str = ".png") -> None:
    """`count` grayscale images of distinct values in root/a and root/b, as a user's folder."""
    for i in range(count):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.new("L", (size, size), 10 * i).save(root / "ab"[i % 2] / f"{i}{suffix}")


def test_links_in_a_folder_lead_to_each_image_once(tmp_path: Path) -> None:
    """A link back up the tree (it once made 2 images 82; three such loops never ended) and a second
    link to a folder already searched: each image is found once, under the name met first."""
    looped, linked = tmp_path / "looped", tmp_path / "linked"
    for root in (looped, linked):
        gray_folder(root, 2)
    (looped / "a" / "loop").symlink_to("..", target_is_directory=True)
    (linked / "b" / "again").symlink_to(linked / "a", target_is_directory=True)
    for root in (looped, linked):
        assert [p.relative_to(root).as_posix() for p in data.find_images(root)] == ["a/0.png", "b/1.png"]
    assert load("folder", f"dataset.root={looped}", "dataset.image_size=8", "dataset.channels=1").images.shape == (2, 1, 8, 8)


def test_a_file_name_that_is_not_utf8_is_read_like_any_other(tmp_path: Path) -> None:
    root = tmp_path / "images"
    gray_folder(root, 2)
    try:
        Image.new("L", (8, 8), 77).save(os.fsencode(root / "a") + b"/caf\xe9.png")  # Latin-1, as old archives name files
    except OSError:
        pytest.skip("this file system takes UTF-8 names only")
    images = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1").images
    assert sorted(images[:, 0, 0, 0].tolist()) == [0, 10, 77]


def test_the_cache_ignores_an_npz_that_was_not_written_for_the_files(tmp_path: Path, cache_in_tmp: Path) -> None:
    """Any valid .npz put under the cache's name (another dataset's images, of the same shape) is not
    what the folder holds: it is decoded again."""
    root = tmp_path / "images"
    gray_folder(root, 4)
    first = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    (cached,) = cache_in_tmp.glob("*.npz")
    np.savez(cached, images=np.full((4, 1, 8, 8), 255, np.uint8), labels=np.zeros(4, np.int64), unreadable=np.array([], str))
    again = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    assert torch.equal(again.images, first.images)


def test_the_cache_notices_an_edit_that_keeps_size_and_mtime(tmp_path: Path, cache_in_tmp: Path) -> None:
    """A BMP rewritten with other pixels has the same size; its modification time set back as some
    copy and sync tools do. The status-change time is part of the key: the edit is seen."""
    root = tmp_path / "images"
    gray_folder(root, 2, suffix=".bmp")
    first = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    edited = root / "a" / "0.bmp"
    before = edited.stat()
    Image.new("L", (8, 8), 200).save(edited)
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert edited.stat().st_size == before.st_size
    again = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    assert first.images[0, 0, 0, 0] == 0 and again.images[0, 0, 0, 0] == 200


def test_loading_the_cache_holds_the_images_once(tmp_path: Path, cache_in_tmp: Path) -> None:
    import tracemalloc

    root = tmp_path / "images"
    gray_folder(root, 16, size=512)
    cfg, _ = compose_config("dataset=folder", f"dataset.root={root}", "dataset.image_size=512", "dataset.channels=1")
    size = data.build(cfg.dataset, CPU).images.numel()  # 4 MiB of uint8, decoded and cached
    tracemalloc.start()  # numpy's arrays are traced: the cached images are read into one
    try:
        again = data.build(cfg.dataset, CPU)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert again.images.numel() == size and peak < 1.5 * size  # not a second copy of the images


def test_in_memory_true_streams_what_available_memory_cannot_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    root = tmp_path / "images"
    gray_folder(root, 4)
    monkeypatch.setattr(data, "available_memory", lambda: 2 * 4 * 8 * 8 - 1)  # less than twice what 4 images take
    source = load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1", "dataset.in_memory=true")
    assert isinstance(source, StreamingImages) and len(source) == 4
    assert "dataset.in_memory=true, but the decoded images take" in capsys.readouterr().err


def test_a_killed_cache_write_leaves_no_temporary_file_behind(tmp_path: Path, cache_in_tmp: Path) -> None:
    """What a cache write killed mid-way leaves (a hidden temporary file, unlocked, untouched since)
    is removed by the next run that uses the cache; a write in progress (locked) is left alone."""
    root = tmp_path / "images"
    gray_folder(root, 2)
    cache_in_tmp.mkdir()
    killed = cache_in_tmp / ".0123456789abcdef-0123.npz.4242.tmp"
    killed.write_bytes(bytes(1000))
    os.utime(killed, (1, 1))
    from ganctl.files import open_new

    with open_new(cache_in_tmp / ".fedcba9876543210-0123.npz.4343.tmp") as live:  # another process's write
        os.utime(live.fileno(), (1, 1))
        load("folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
        assert [p.name for p in cache_in_tmp.glob(".*.tmp")] == [".fedcba9876543210-0123.npz.4343.tmp"]


def test_a_dataset_the_gpu_has_no_room_for_stays_in_host_memory(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Where decoded images are kept: the decision, with the GPU's free memory (the OS boundary) made up."""
    from ganctl import data, fits

    monkeypatch.setattr(fits, "free_memory", lambda device: 4 * 2**30)
    gpu = torch.device("cuda")
    assert data.placement(2**30, gpu) == gpu  # a quarter of what is free: on the GPU
    assert data.placement(2**30 + 1, gpu) == torch.device("cpu")
    assert "stay in host memory, and each batch is copied to the GPU" in " ".join(capsys.readouterr().err.split())
    assert data.placement(2**40, torch.device("cpu")) == torch.device("cpu")

"""`ganctl export`: ONNX (checked with onnxruntime), TorchScript and safetensors, unconditional and conditional,
and the README's script that uses an exported generator without ganctl."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganctl import checkpoint
from ganctl.errors import GanctlError
from ganctl.export import CHECK_TOLERANCE, export, load_safetensors
from ganctl.sampling import Sampler

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def run_dir(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def conditional_dir(tiny_conditional_run: Path) -> Path:
    return tiny_conditional_run


@pytest.fixture(scope="module")
def onnx_file(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(run_dir, "onnx", tmp_path_factory.mktemp("onnx") / "generator.onnx")


def sampler_of(run_dir: Path) -> Sampler:
    return Sampler.from_checkpoint(checkpoint.load(checkpoint.last_path(run_dir)), torch.device("cpu"))


def test_onnx_matches_pytorch_in_onnxruntime_at_any_batch_size(run_dir: Path, onnx_file: Path) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["ganctl"])
    assert (meta["latent_dim"], meta["channels"], meta["image_size"], meta["classes"], meta["step"]) == (16, 1, 28, None, 4)
    latents = torch.randn(7, 16, generator=torch.Generator().manual_seed(5))
    (images,) = session.run(["images"], {"latents": latents.numpy()})
    expected = sampler_of(run_dir)(latents)
    assert images.shape == (7, 1, 28, 28)
    np.testing.assert_allclose(images, expected.numpy(), atol=CHECK_TOLERANCE, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_and_safetensors_give_pytorchs_images(run_dir: Path, tmp_path: Path) -> None:
    latents = torch.randn(5, 16, generator=torch.Generator().manual_seed(6))
    expected = sampler_of(run_dir)(latents)
    scripted = torch.jit.load(str(export(run_dir, "torchscript", tmp_path / "g.ts.pt")))
    torch.testing.assert_close(scripted(latents), expected, atol=CHECK_TOLERANCE, rtol=0)
    path = export(run_dir, "safetensors", tmp_path / "g.safetensors")
    assert path.read_bytes()[8:9] == b"{"  # a JSON header, then raw tensors: nothing to unpickle
    generator, meta = load_safetensors(path)
    assert meta["weights"] == "ema" and meta["step"] == 4
    with torch.no_grad():
        assert torch.equal(generator(latents), expected)
    raw = load_safetensors(export(run_dir, "safetensors", tmp_path / "raw.safetensors", ema=False))[0]
    with torch.no_grad():
        assert not torch.equal(raw(latents), expected)
    (tmp_path / "noise.safetensors").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GanctlError, match="not a generator that ganctl export wrote"):
        load_safetensors(tmp_path / "noise.safetensors")


def test_a_conditional_generator_takes_the_class_as_an_input(conditional_dir: Path, tmp_path: Path) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(export(conditional_dir, "onnx", tmp_path / "c.onnx")), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["latents", "labels"]
    latents = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 9, 3, 3, 7, 1])
    (images,) = session.run(["images"], {"latents": latents.numpy(), "labels": labels.numpy()})
    np.testing.assert_allclose(images, sampler_of(conditional_dir)(latents, labels=labels).numpy(), atol=CHECK_TOLERANCE, rtol=0)
    generator, meta = load_safetensors(export(conditional_dir, "safetensors", tmp_path / "c.safetensors"))
    assert meta["classes"] == [str(digit) for digit in range(10)]
    with torch.no_grad():
        assert torch.equal(generator(latents, labels), sampler_of(conditional_dir)(latents, labels=labels))


def test_the_readme_script_runs_without_ganctl(onnx_file: Path, tmp_path: Path) -> None:
    text = README.read_text()
    script = re.search(r"<!-- export-script -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(script.strip().splitlines()) <= 10 and "ganctl" not in script.replace('["ganctl"]', "")
    (tmp_path / "generator.onnx").write_bytes(onnx_file.read_bytes())
    (tmp_path / "use.py").write_text(script)
    (tmp_path / "ganctl.py").write_text("raise ImportError('the script must not need ganctl')\n")  # shadows the installed one
    (tmp_path / "torch.py").write_text("raise ImportError('the script must not need torch')\n")
    result = subprocess.run([sys.executable, "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "row.png").size == (8 * 28, 28)


def test_bad_export_arguments(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GanctlError, match="--format must be one of onnx, torchscript, safetensors"):
        export(run_dir, "tflite")
    (tmp_path / "junk.pt").write_bytes(bytes(range(256)))
    with pytest.raises(GanctlError, match="is not a PyTorch checkpoint"):
        export(tmp_path / "junk.pt", "onnx")
    with pytest.raises(GanctlError, match="is a directory"):
        export(run_dir, "onnx", tmp_path)


@pytest.mark.parametrize("format", ["torchscript", "safetensors"])
def test_an_export_that_fails_its_check_is_not_left_under_its_name(run_dir: Path, tmp_path: Path, monkeypatch, format: str) -> None:
    """A generator that does not export faithfully (here: no difference is close enough) leaves
    nothing at --out, and an earlier file there stays as it was."""
    from ganctl import export as exporting

    out = tmp_path / f"generator.{format}"
    out.write_bytes(b"an earlier export")
    faithful = exporting.compare
    monkeypatch.setattr(exporting, "compare", lambda ours, theirs, what, tolerance: faithful(ours, theirs, what, -1.0))
    with pytest.raises(GanctlError, match="does not export faithfully"):
        export(run_dir, format, out)
    assert out.read_bytes() == b"an earlier export" and sorted(tmp_path.iterdir()) == [out]

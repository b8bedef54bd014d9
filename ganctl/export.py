"""`ganctl export`: a checkpoint's generator (its EMA by default) for use without ganctl.

    ganctl export RUN --format onnx          # <run>/export/generator_step<N>.onnx, checked with onnxruntime
    ganctl export RUN --format torchscript   # .ts.pt, checked after torch.jit.load
    ganctl export RUN --format safetensors   # .safetensors: G's weights and, as metadata, how to rebuild it

Every format takes the latents (N, latent_dim) float32 ("latents") and, for a class-conditional G,
the class indices (N,) int64 ("labels"), and gives images (N, C, H, W) float32 in [-1, 1] ("images").
G runs in eval mode (BatchNorm with its running statistics). Each file carries a JSON description
(latent_dim, channels, image_size, classes, step, the generator's config): ONNX in its metadata under
"ganctl", TorchScript as the extra file "ganctl.json", safetensors in its header metadata.

ONNX and TorchScript exports are checked before the command returns: their outputs for 4 latents
(of every class in turn, conditional) must match PyTorch's within CHECK_TOLERANCE; a safetensors
file is read back (no pickle is involved) into a G rebuilt from its metadata and must match exactly.
The checkpoint is read through `checkpoint.load`, as every reader does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Optional

from ganctl import rundir
from ganctl.console import console
from ganctl.errors import GanctlError

FORMATS = {"onnx": ".onnx", "torchscript": ".ts.pt", "safetensors": ".safetensors"}
CHECK_TOLERANCE = 1e-4  # absolute, on images in [-1, 1]: float32 kernels differ in the order they sum
EXTRA = {"onnx": "ganctl[export]  (onnx, onnxscript, onnxruntime)", "safetensors": "ganctl[export]  (safetensors)"}


def missing(what: str, package: str) -> GanctlError:
    return GanctlError(f"Exporting to {what} needs {package}, which is not installed: pip install '{EXTRA[what].split()[0]}' "
                       f"{EXTRA[what].split(None, 1)[1]}.")


def description(state: dict[str, Any], sampler: Any) -> dict[str, Any]:
    data = state["data"]
    return {
        "format": "ganctl-generator",
        "latent_dim": int(sampler.latent_dim),
        "channels": int(data["channels"]),
        "image_size": int(data["image_size"]),
        "classes": sampler.classes,
        "step": int(state["step"]),
        "weights": sampler.weights,
        "generator": state["config"]["model"]["generator"],
        "conditioning": state["config"].get("conditioning"),
        "inputs": {"latents": "float32 (N, latent_dim), standard normal", **({"labels": "int64 (N,), class indices"} if sampler.classes else {})},
        "outputs": {"images": "float32 (N, channels, image_size, image_size) in [-1, 1]"},
    }


def example_inputs(meta: dict[str, Any], num: int = 4) -> tuple:
    import torch

    latents = torch.randn(num, meta["latent_dim"], generator=torch.Generator().manual_seed(0))
    if meta["classes"]:
        return latents, torch.arange(num) % len(meta["classes"])
    return (latents,)


def generator_module(sampler: Any) -> Any:
    """G as a module of (latents[, labels]) -> images, in eval mode, for tracing."""
    from torch import nn

    class Generator(nn.Module):
        def __init__(self, generator: nn.Module) -> None:
            super().__init__()
            self.generator = generator

        def forward(self, latents, labels=None):
            return self.generator(latents) if labels is None else self.generator(latents, labels)

    return Generator(sampler.generator).eval()


def compare(ours: Any, theirs: Any, what: str, tolerance: float) -> float:
    import torch

    theirs = torch.as_tensor(theirs)
    if tuple(theirs.shape) != tuple(ours.shape):
        raise GanctlError(f"The {what} export gives images of shape {tuple(theirs.shape)}, PyTorch {tuple(ours.shape)}.")
    difference = (theirs.float() - ours).abs().max().item()
    if not difference <= tolerance:
        raise GanctlError(f"The {what} export's images differ from PyTorch's by up to {difference:.2e} (tolerance "
                          f"{tolerance:g}): this generator does not export faithfully; try another --format.")
    return difference


def export_onnx(module: Any, inputs: tuple, expected: Any, meta: dict[str, Any], out: Path) -> float:
    import torch

    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise missing("onnx", "onnx and onnxruntime") from None
    names = ["latents", "labels"][: len(inputs)]
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            warnings.simplefilter("ignore")  # e.g. that latents and labels share the batch axis's name
            program = torch.onnx.export(module, inputs, dynamo=True, input_names=names, output_names=["images"],
                                        dynamic_shapes=tuple({0: batch} for _ in inputs), verbose=False)
    except ImportError as error:  # onnxscript, which torch's exporter needs
        raise missing("onnx", f"onnxscript ({error})") from None
    except Exception as error:  # the exporter reports an unsupported operation in many ways
        raise GanctlError(f"torch.onnx cannot export this generator ({type(error).__name__}: "
                          f"{str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}).") from None
    model = program.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = "ganctl", json.dumps(meta)
    onnx.checker.check_model(model)
    feed = {name: tensor.numpy() for name, tensor in zip(names, inputs)}

    def check(path: Path) -> float:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (images,) = session.run(["images"], feed)
        return compare(expected, images, "ONNX", CHECK_TOLERANCE)

    return write(out, lambda f: f.write(model.SerializeToString()), check)


def export_torchscript(module: Any, inputs: tuple, expected: Any, meta: dict[str, Any], out: Path) -> float:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings and torch.jit's deprecation notice
        traced = torch.jit.trace(module, inputs, check_trace=False)

        def check(path: Path) -> float:
            return compare(expected, torch.jit.load(str(path), map_location="cpu")(*inputs), "TorchScript", CHECK_TOLERANCE)

        return write(out, lambda f: torch.jit.save(traced, f, _extra_files={"ganctl.json": json.dumps(meta)}), check)


def export_safetensors(sampler: Any, inputs: tuple, expected: Any, meta: dict[str, Any], out: Path) -> float:
    try:
        from safetensors.torch import save
    except ImportError:
        raise missing("safetensors", "safetensors") from None
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in sampler.generator.state_dict().items()}
    header = {"ganctl": json.dumps(meta)}

    def check(path: Path) -> float:
        generator, _ = load_safetensors(path)
        images = generator(*inputs) if len(inputs) == 2 else generator(inputs[0])
        return compare(expected, images, "safetensors", 0.0)

    return write(out, lambda f: f.write(save(tensors, metadata=header)), check)


def load_safetensors(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """A generator exported as safetensors, rebuilt from the file alone (its metadata says how; its
    weights load without pickle): (G in eval mode, the description). Needs ganctl for the classes."""
    import torch

    from ganctl.sampling import build_generator, conditioning_of

    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        raise missing("safetensors", "safetensors") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["ganctl"])
        tensors = load_file(str(path))
        config = {"model": {"generator": meta["generator"]}, "conditioning": meta["conditioning"]}
        generator = build_generator(meta["generator"], meta["channels"], meta["image_size"], conditioning_of(config, meta["classes"]))
        generator.load_state_dict(tensors)
    except GanctlError:
        raise
    except Exception as error:
        raise GanctlError(f"{path} is not a generator that ganctl export wrote ({type(error).__name__}).") from None
    return generator.eval().requires_grad_(False).to(torch.float32), meta


def write(out: Path, writer: Any, check: Any) -> float:
    """Write the export to a temporary file beside `out`, `check` it there (its largest difference
    from PyTorch), and only then give it its name: an export that fails its check is never left at `out`."""
    from ganctl.files import write_atomically

    differences: list[float] = []
    try:
        write_atomically(out, writer, check=lambda path: differences.append(check(path)))
    except OSError as error:
        raise GanctlError(f"Cannot write {out}: {error}") from error
    return differences[0]


def export(path: str | Path, format: str, out: Optional[str | Path] = None, ema: bool = True) -> Path:
    """Export the checkpoint's generator to `format` (onnx | torchscript | safetensors), checked."""
    if format not in FORMATS:
        raise GanctlError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}.")
    rundir.named_checkpoint(path)  # a mistyped path is answered before torch loads
    import torch

    from ganctl import checkpoint
    from ganctl.sampling import Sampler

    ckpt_path, state = checkpoint.find(path, use="ganctl export {}")
    sampler = Sampler.from_checkpoint(state, torch.device("cpu"), ema)
    meta = description(state, sampler)
    default = checkpoint.run_dir_of(ckpt_path) / "export" / f"generator_step{state['step']:07d}_{sampler.weights}{FORMATS[format]}"
    out = Path(out) if out else default
    if out.is_dir():
        raise GanctlError(f"--out {out} is a directory: give a file name such as {out / ('generator' + FORMATS[format])}.")
    inputs = example_inputs(meta)
    module = generator_module(sampler)
    with torch.no_grad():
        expected = module(*inputs).float()  # (4, C, H, W)
    if format == "onnx":
        difference = export_onnx(module, inputs, expected, meta, out)
    elif format == "torchscript":
        difference = export_torchscript(module, inputs, expected, meta, out)
    else:
        difference = export_safetensors(sampler, inputs, expected, meta, out)
    inputs_text = "latents (N, {}){}".format(meta["latent_dim"], " and labels (N,)" if meta["classes"] else "")
    console.print(f"Exported the {sampler.weights} generator of step {state['step']} to {out} ({format}: {inputs_text} -> "
                  f"images (N, {meta['channels']}, {meta['image_size']}, {meta['image_size']}) in [-1, 1]); "
                  f"checked against PyTorch: largest difference {difference:.1e}.")
    return out


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ganctl export", description="Export a checkpoint's generator to ONNX, TorchScript or safetensors.")
    parser.add_argument("checkpoint", help="a checkpoint .pt file, or a run directory (its newest intact checkpoint)")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="onnx | torchscript | safetensors")
    parser.add_argument("--out", help="the file (default <run>/export/generator_step<N>_<ema|raw>.<onnx|ts.pt|safetensors>)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="export the raw generator, not its EMA")
    options = parser.parse_args(args)
    export(options.checkpoint, options.format, options.out, options.ema)
    return 0

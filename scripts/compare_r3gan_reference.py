"""Check model=r3gan and loss=r3gan against their reference, brownvc/R3GAN, on this machine's CPU.

    git clone https://github.com/brownvc/R3GAN /tmp/R3GAN
    python scripts/compare_r3gan_reference.py --reference /tmp/R3GAN

(--reference may also be a bare git directory: its HEAD's R3GAN/, training/, torch_utils/ and dnnlib/
are extracted to a temporary folder.) The reference is imported from there, never copied into ganctl.
Its networks are built with its plain-PyTorch paths (R3GAN/FusedOperators.py's
BiasedActivationReference, R3GAN/Resamplers.py's Interpolative{Up,Down}samplerReference in place of
the CUDA bias_act and upfirdn2d), in fp32 (its FP16Stages, bf16, are left out: they follow
train.precision in ganctl). `requests` and `pkg_resources`, which only its download helpers and
version checks use, are stubbed when missing.

What it prints, reference against ganctl, the reference's weights copied into ganctl's networks by
name (its zero-initialised biases and last convs first perturbed, so that every weight counts):

  - parameter counts at the presets of its train.py (CIFAR10 with 10 classes and without, FFHQ-64,
    FFHQ-256, ImageNet-32 with 1,000 classes), built on the meta device;
  - G's images and D's scores, for the CIFAR-10 networks with 10 classes at full width, and for the
    FFHQ-256 layout at a quarter width (every transition: 1x1 convs where widths change, 7 stages);
  - one training step's gradients: D's (RpGAN + gamma/2 (R1 + R2), its AccumulateDiscriminatorGradients)
    and then, after the same Adam step of D (lr 2e-4, betas (0, 0.9), eps 1e-8), G's (its
    AccumulateGeneratorGradients: the reals scored again by the updated D), against one GAN.step of
    ganctl's loss=r3gan with its gradients recorded before each optimizer step.

Differences are max |reference - ganctl|, and for gradients also relative to the largest gradient.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ganctl import config
from ganctl.gan import GAN
from ganctl.models import UNCONDITIONAL, Conditioning, R3GANDiscriminator, R3GANGenerator

PRESETS = {  # the reference's train.py presets (widths = 3/4 x 1024 ..., cardinalities = 3 x 32 ...)
    "CIFAR10": ([768] * 4, [96] * 4, 32),
    "FFHQ-64": ([768] * 4 + [384], [96] * 4 + [48], 64),
    "FFHQ-256": ([768] * 4 + [384, 192, 96], [96] * 4 + [48, 24, 12], 256),
    "ImageNet-32": ([1536] * 4, [96] * 4, 32),
}


def import_reference(path: Path) -> tuple[Any, Any]:
    """The reference's R3GAN.Networks (on its plain-PyTorch paths) and R3GAN.Trainer."""
    if not (path / "R3GAN" / "Networks.py").is_file():
        if not (path / "HEAD").is_file():
            raise SystemExit(f"{path} holds neither R3GAN/Networks.py nor a git directory")
        folder = Path(tempfile.mkdtemp(prefix="r3ganref-"))
        archive = subprocess.run(["git", f"--git-dir={path}", "archive", "HEAD", "R3GAN", "training", "torch_utils", "dnnlib"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "x", "-C", str(folder)], input=archive, check=True)
        path = folder
    for name in ("requests", "pkg_resources"):  # (download helpers, a version check)
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            if name == "pkg_resources":
                from packaging.version import parse

                stub.parse_version = parse
            sys.modules[name] = stub
    sys.path.insert(0, str(path))
    import R3GAN.FusedOperators as fused  # noqa: E402  (the reference)
    import R3GAN.Networks as networks  # noqa: E402
    import R3GAN.Resamplers as resamplers  # noqa: E402
    import R3GAN.Trainer as trainer  # noqa: E402

    networks.BiasedActivation = fused.BiasedActivationReference
    networks.InterpolativeUpsampler = resamplers.InterpolativeUpsamplerReference
    networks.InterpolativeDownsampler = resamplers.InterpolativeDownsamplerReference
    return networks, trainer


def reference_pair(networks: Any, widths: list[int], cardinalities: list[int], classes: int) -> tuple[nn.Module, nn.Module]:
    """The reference's G and D as its train.py builds them for a preset (2 blocks per stage, expansion 2, z 64)."""
    blocks = [2] * len(widths)
    conditional = {"ConditionDimension": classes} if classes else {}
    generator = networks.Generator(64, widths, cardinalities, blocks, 2,
                                   **conditional, **({"ConditionEmbeddingDimension": 64} if classes else {}))
    critic = networks.Discriminator(widths[::-1], cardinalities[::-1], blocks[::-1], 2,
                                    **conditional, **({"ConditionEmbeddingDimension": widths[0]} if classes else {}))
    return generator, critic


def ganctl_pair(widths: list[int], cardinalities: list[int], image_size: int, classes: int) -> tuple[nn.Module, nn.Module]:
    conditioning = Conditioning("concat", "projection", classes) if classes else UNCONDITIONAL
    settings = {"widths": widths, "cardinalities": cardinalities, "blocks": [2] * len(widths)}
    return (R3GANGenerator(3, image_size, 64, conditioning=conditioning, **settings),
            R3GANDiscriminator(3, image_size, conditioning=conditioning, **settings))


def ganctl_name(name: str) -> Optional[str]:
    """The reference's parameter name as ganctl's (None: a resampling filter, which ganctl does not store)."""
    if name.endswith("Resampler.Kernel"):
        return None
    name = re.sub(r"^MainLayers\.(\d+)\.Layers\.(\d+)\.", r"stages.\1.\2.", name)
    for theirs, ours in (("LinearLayer1.Layer.weight", "expand.weight"), ("NonLinearity1.Bias", "expand.bias"),
                         ("LinearLayer2.Layer.weight", "grouped.weight"), ("NonLinearity2.Bias", "grouped.bias"),
                         ("LinearLayer3.Layer.weight", "project.weight"), ("LinearLayer.Layer.weight", "conv.weight"),
                         ("LinearLayer.weight", "linear.weight"), ("Basis.weight", "basis"), ("Basis", "basis"),
                         ("AggregationLayer.Layer.weight", "output.weight"), ("ExtractionLayer.Layer.weight", "input.weight"),
                         ("EmbeddingLayer.weight", "embedding.weight")):
        if name.endswith(theirs):
            return name[: len(name) - len(theirs)] + ours
    raise KeyError(f"no ganctl name for the reference's {name}")


def copy_weights(reference: nn.Module, ours: nn.Module) -> None:
    """Perturb the reference's zero-initialised tensors (biases, each block's last conv), then copy every
    parameter into ours by name (label embeddings transposed: a linear map of the one-hot label there,
    a table here; D's depthwise basis without its singleton input-channel axis)."""
    torch.manual_seed(1)
    mine = dict(ours.named_parameters())
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if not parameter.any():
                parameter.copy_(0.05 * torch.randn_like(parameter))
        for name, tensor in reference.named_parameters():
            target = mine.pop(ganctl_name(name))
            value = tensor.t() if name.endswith("EmbeddingLayer.weight") else tensor
            target.copy_(value.reshape(target.shape))
    assert not mine, f"ganctl parameters without a counterpart: {sorted(mine)}"


def largest(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{(a.detach() - b.detach()).abs().max().item():.2e} (values up to {a.detach().abs().max().item():.2g})"


def gradient_difference(reference: nn.Module, ours: dict[str, torch.Tensor]) -> str:
    """Largest |grad difference| over all parameters, absolute and relative to the largest gradient."""
    worst, scale, where = 0.0, 0.0, ""
    for name, parameter in reference.named_parameters():
        theirs = parameter.grad.double() if parameter.grad is not None else torch.zeros_like(parameter, dtype=torch.float64)
        other = ours[ganctl_name(name)].double()
        other = other.t() if name.endswith("EmbeddingLayer.weight") else other
        difference = (theirs - other.reshape(theirs.shape)).abs().max().item()
        scale = max(scale, theirs.abs().max().item())
        if difference > worst:
            worst, where = difference, name
    return f"{worst:.2e} (relative {worst / max(scale, 1e-30):.1e}; largest gradient {scale:.2g}; worst at {where})"


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def compare_counts(networks: Any) -> None:
    print("Parameter counts (reference / ganctl), G and D:")
    for preset, classes in (("CIFAR10", 10), ("CIFAR10", 0), ("FFHQ-64", 0), ("FFHQ-256", 0), ("ImageNet-32", 1000)):
        widths, cardinalities, size = PRESETS[preset]
        with torch.device("meta"):
            theirs = reference_pair(networks, widths, cardinalities, classes)
            ours = ganctl_pair(widths, cardinalities, size, classes)
        print(f"  {preset:12s} {classes:4d} classes: G {count(theirs[0]):,} / {count(ours[0]):,}   "
              f"D {count(theirs[1]):,} / {count(ours[1]):,}   "
              f"{'equal' if [count(n) for n in theirs] == [count(n) for n in ours] else 'DIFFERENT'}")


def ganctl_gan(widths: list[int], cardinalities: list[int], image_size: int, classes: int, gamma: float) -> GAN:
    """ganctl's GAN as `ganctl train model=r3gan` builds it (fp32, NCHW), with these stages."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    stages = [f"model.{role}.{key}={value}".replace(" ", "") for role in ("generator", "discriminator")
              for key, value in (("widths", widths), ("cardinalities", cardinalities), ("blocks", [2] * len(widths)))]
    conditional = ["conditioning=concat", "conditioning.discriminator=projection"] if classes else []
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            "model=r3gan", *stages, *conditional, f"dataset.image_size={image_size}", "train.precision=fp32",
            "train.channels_last=false", "train.device=cpu", "train.ema.decay=0", f"loss.regularisers.r1.gamma={gamma}",
            f"loss.regularisers.r2.gamma={gamma}"])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    config.check(cfg)
    return GAN.from_config(cfg, 3, image_size, torch.device("cpu"), classes=[str(c) for c in range(classes)] if classes else None)


def compare_networks(networks: Any, trainer: Any, name: str, widths: list[int], cardinalities: list[int],
                     image_size: int, classes: int, batch: int, gamma: float = 0.05) -> None:
    print(f"\n{name}: {image_size}x{image_size}x3, widths {widths}, {classes or 'no'} classes, batch {batch}")
    torch.manual_seed(0)
    generator, critic = reference_pair(networks, widths, cardinalities, classes)
    gan = ganctl_gan(widths, cardinalities, image_size, classes, gamma)
    copy_weights(generator, gan.generator)
    copy_weights(critic, gan.discriminator)
    labels = torch.randint(classes, (batch,)) if classes else None
    real = torch.rand(batch, 3, image_size, image_size) * 2 - 1
    torch.manual_seed(0)
    z = torch.randn(batch, 64)  # the first draw after seeding, as in one_step's GAN.step
    one_hot = torch.nn.functional.one_hot(labels, classes).float() if classes else None
    with torch.no_grad():
        images = generator(z, one_hot)
        print(f"  G's images:  {largest(images, gan.generator(z, labels))}")
        print(f"  D's scores:  {largest(critic(real, one_hot), gan.discriminator(real, labels))}")
    one_step(trainer, generator, critic, gan, z, real, labels, one_hot, gamma)
    exact_step(trainer, generator, critic, widths, cardinalities, image_size, classes, real, labels, one_hot, gamma)


def recorded_step(gan: GAN, real: torch.Tensor, labels: Optional[torch.Tensor]) -> tuple[dict, dict, dict]:
    """One GAN.step from seed 0 (its latents are the first draw), with D's gradients before its optimizer
    step, D's weights after it, and G's gradients recorded."""
    recorded: list[dict[str, torch.Tensor]] = []

    def recording_apply(optimizer, scaler) -> None:
        network = gan.discriminator if optimizer is gan.optimizer_d else gan.generator
        recorded.append({n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in network.named_parameters()})
        optimizer.step()
        if network is gan.discriminator:
            recorded.append({n: p.detach().clone() for n, p in network.named_parameters()})

    gan.apply = recording_apply  # (instead of GAN.apply: the same step on the accumulated gradient, in fp32)
    torch.manual_seed(0)  # GAN.step draws its latents first thing after the batch: the same z
    gan.step(iter([(real, labels)]), 1)
    d_gradients, d_after, g_gradients = recorded
    return d_gradients, d_after, g_gradients


def reference_phase(trainer: Any, generator: nn.Module, critic: nn.Module, dtype: torch.dtype,
                    d_weights: Optional[dict[str, torch.Tensor]], which: str, inputs: tuple, gamma: float) -> nn.Module:
    """The reference's D phase (AccumulateDiscriminatorGradients) or G phase (AccumulateGeneratorGradients)
    on copies of its networks in `dtype`, D at `d_weights` (ganctl's names) when given; the network
    whose gradients it accumulated."""
    g, d = copy.deepcopy(generator).to(dtype), copy.deepcopy(critic).to(dtype)
    for stage in (*g.MainLayers, *d.MainLayers):  # (each stage casts its input to its DataType)
        stage.DataType = dtype
    if d_weights is not None:
        load_ganctl_weights(d, d_weights)
    training = trainer.AdversarialTraining(g, d)
    g.requires_grad_(which == "G")
    d.requires_grad_(which == "D")
    inputs = [t.to(dtype) if t is not None else None for t in inputs]
    if which == "D":
        training.AccumulateDiscriminatorGradients(*inputs, gamma)
        return d
    training.AccumulateGeneratorGradients(*inputs)
    return g


def one_step(trainer: Any, generator: nn.Module, critic: nn.Module, gan: GAN, z: torch.Tensor, real: torch.Tensor,
             labels: Optional[torch.Tensor], one_hot: Optional[torch.Tensor], gamma: float) -> None:
    """One GAN.step, its gradients recorded before each optimizer step, against the reference's D phase
    at the same weights, and its G phase at the D that GAN.step's update left (copied back), each also
    in fp64: the reference's own fp32 rounding, next to the difference."""
    d_gradients, d_after, g_gradients = recorded_step(gan, real, labels)
    inputs = (z, real, one_hot)
    d32 = reference_phase(trainer, generator, critic, torch.float32, None, "D", inputs, gamma)
    d64 = reference_phase(trainer, generator, critic, torch.float64, None, "D", inputs, gamma)
    print(f"  D's gradients, RpGAN + gamma/2 (R1 + R2): {gradient_difference(d32, d_gradients)}")
    print(f"    the reference's fp32 against its fp64:  {gradient_difference(d64, named_gradients(d32))}")
    print(f"    ganctl's fp32 against the reference's fp64: {gradient_difference(d64, d_gradients)}")
    adam = copy.deepcopy(d32)
    with torch.no_grad():
        for parameter, twin in zip(adam.parameters(), d32.parameters()):
            parameter.grad = twin.grad.clone()
    torch.optim.Adam(adam.parameters(), lr=2e-4, betas=(0.0, 0.9), eps=1e-8).step()
    moved = {ganctl_name(n): p for n, p in adam.named_parameters()}
    print(f"  D after its Adam step (the reference's torch.optim.Adam, ganctl's fused): "
          f"{max((moved[n].reshape(-1) - (p.t() if n.endswith('embedding.weight') else p).reshape(-1)).abs().max().item() for n, p in d_after.items()):.2e}")
    g32 = reference_phase(trainer, generator, critic, torch.float32, d_after, "G", inputs, gamma)
    g64 = reference_phase(trainer, generator, critic, torch.float64, d_after, "G", inputs, gamma)
    print(f"  G's gradients at that D (re-scored reals): {gradient_difference(g32, g_gradients)}")
    print(f"    the reference's fp32 against its fp64:  {gradient_difference(g64, named_gradients(g32))}")
    print(f"    ganctl's fp32 against the reference's fp64: {gradient_difference(g64, g_gradients)}")


def exact_step(trainer: Any, generator: nn.Module, critic: nn.Module, widths: list[int], cardinalities: list[int],
               image_size: int, classes: int, real: torch.Tensor, labels: Optional[torch.Tensor],
               one_hot: Optional[torch.Tensor], gamma: float) -> None:
    """The same step with ganctl and the reference both in fp64: what differs then is not rounding."""
    torch.set_default_dtype(torch.float64)
    to_fp32 = torch.Tensor.float  # ganctl hands autocast's outputs on with .float(): here fp64 stays fp64
    torch.Tensor.float = lambda tensor, *args, **kwargs: tensor if tensor.dtype == torch.float64 else to_fp32(tensor, *args, **kwargs)
    try:
        gan = ganctl_gan(widths, cardinalities, image_size, classes, gamma)
        for network in (gan.generator, gan.discriminator, gan.generator_ema):
            if network is not None:
                network.double()
        copy_weights(generator, gan.generator)
        copy_weights(critic, gan.discriminator)
        torch.manual_seed(0)
        z = torch.randn(real.shape[0], 64)  # GAN.step's first draw, now in fp64
        d_gradients, d_after, g_gradients = recorded_step(gan, real.double(), labels)
        inputs = (z, real, one_hot)
        d64 = reference_phase(trainer, generator, critic, torch.float64, None, "D", inputs, gamma)
        g64 = reference_phase(trainer, generator, critic, torch.float64, d_after, "G", inputs, gamma)
        print(f"  both in fp64: D's gradients {gradient_difference(d64, d_gradients)}")
        print(f"  both in fp64: G's gradients {gradient_difference(g64, g_gradients)}")
    finally:
        torch.set_default_dtype(torch.float32)
        torch.Tensor.float = to_fp32


def named_gradients(reference: nn.Module) -> dict[str, torch.Tensor]:
    """A reference network's gradients under ganctl's names and shapes (to compare two references)."""
    out = {}
    for name, parameter in reference.named_parameters():
        gradient = parameter.grad.double()
        out[ganctl_name(name)] = gradient.t() if name.endswith("EmbeddingLayer.weight") else gradient
    return out


def load_ganctl_weights(reference: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """ganctl's weights (by its names) into a reference network."""
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            value = weights[ganctl_name(name)]
            value = value.t() if name.endswith("EmbeddingLayer.weight") else value
            parameter.copy_(value.reshape(parameter.shape))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="a checkout (or bare git directory) of brownvc/R3GAN")
    args = parser.parse_args()
    networks, trainer = import_reference(args.reference.resolve())
    compare_counts(networks)
    widths, cardinalities, _ = PRESETS["CIFAR10"]
    compare_networks(networks, trainer, "CIFAR10 preset, conditional", widths, cardinalities, 32, 10, batch=4)
    quarter = [w // 4 for w in PRESETS["FFHQ-256"][0]], [c // 4 for c in PRESETS["FFHQ-256"][1]]
    compare_networks(networks, trainer, "FFHQ-256 layout at a quarter width", *quarter, 256, 0, batch=2, gamma=150.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Check model=biggan against its reference, ajbrock/BigGAN-PyTorch, on this machine: the parameter
counts of both at the settings conf/model/biggan.yaml quotes, and the outputs of both with the same
weights (spectral norm off on both sides: the two draw their power iteration's u at random).

    git clone https://github.com/ajbrock/BigGAN-PyTorch /tmp/BigGAN-PyTorch
    python scripts/compare_biggan_reference.py --reference /tmp/BigGAN-PyTorch

The reference is imported from its checkout (BigGAN.py, layers.py, sync_batchnorm/), never copied
into ganctl. Weights are copied by name (ganctl's `shortcut` is the reference's `conv_sc`, its
attention `query/key/value/output` are `theta/phi/g/o`, ...), attention gates set to 0.7 so that
attention counts, and G runs in training mode (batch statistics) on the same latents and labels.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ganctl.models import BigGANDiscriminator, BigGANGenerator, Conditioning

ATTENTION = {"query": "theta", "key": "phi", "value": "g", "output": "o"}


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def without_spectral_norm(network: nn.Module) -> nn.Module:
    for layer in network.modules():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    return network


def generator_name(name: str, attention_after: int | None) -> str:
    name = name.replace(".parametrizations.weight.original", ".weight")
    match = re.match(r"attention\.(\w+)(.*)", name)
    if match:
        return f"blocks.{attention_after}.1.{ATTENTION.get(match.group(1), match.group(1))}{match.group(2)}"
    name = re.sub(r"blocks\.(\d+)\.", r"blocks.\1.0.", name)
    name = name.replace("shortcut", "conv_sc").replace("norm1", "bn1").replace("norm2", "bn2")
    return (name.replace("output.0.weight", "output_layer.0.gain").replace("output.0.bias", "output_layer.0.bias")
            .replace("output.2.", "output_layer.2."))


def critic_name(name: str, attention_after: int | None) -> str:
    name = name.replace(".parametrizations.weight.original", ".weight")
    match = re.match(r"blocks\.(\d+)\.(\w+)(.*)", name)
    if not match:
        return name.replace("output.0.output.", "linear.").replace("output.0.embedding.", "embed.")
    index, part, rest = int(match.group(1)), match.group(2), match.group(3)
    if attention_after is not None and index == attention_after + 1:
        return f"blocks.{attention_after}.1.{ATTENTION.get(part, part)}{rest}"
    block = index - 1 if attention_after is not None and index > attention_after + 1 else index
    return f"blocks.{block}.0.{part.replace('shortcut', 'conv_sc')}{rest}"


def copy_weights(ours: nn.Module, reference: nn.Module, rename) -> None:
    theirs = dict(reference.named_parameters())
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            target = theirs.pop(rename(name))
            target.copy_(parameter.view_as(target))
        assert not theirs, f"reference parameters without a counterpart: {sorted(theirs)}"
        for parameter in [*ours.parameters(), *reference.parameters()]:
            if parameter.ndim == 0:
                parameter.fill_(0.7)  # attention's gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of ajbrock/BigGAN-PyTorch")
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference))
    import BigGAN  # noqa: E402  (the reference)
    import layers  # noqa: E402

    print("parameter counts (G, D): reference | ganctl")
    counts = [
        ("32 px, CIFAR-10 script", 32, 10, dict(G_ch=64, D_ch=64, dim_z=128, G_shared=False, hier=False, G_attn="0", D_attn="0"),
         dict(latent_dim=128, shared_dim=None, hierarchical=False, shared_embedding=False), None),
        ("128 px, ImageNet script", 128, 1000, dict(G_ch=96, D_ch=96, dim_z=120, G_shared=True, hier=True, shared_dim=128,
                                                   G_attn="64", D_attn="64"),
         dict(latent_dim=120, shared_dim=128, hierarchical=True, shared_embedding=True), 64),
    ]
    for label, size, classes, theirs, ours, attention in counts:
        conditioning = Conditioning("batchnorm", "projection", classes)
        reference = (BigGAN.Generator(resolution=size, n_classes=classes, G_init="N02", no_optim=True, **theirs),
                     BigGAN.Discriminator(resolution=size, n_classes=classes, D_init="N02", **theirs))
        width = theirs["G_ch"]
        mine = (BigGANGenerator(channels=3, image_size=size, width=width, attention=attention, init="N02", conditioning=conditioning, **ours),
                BigGANDiscriminator(3, size, width, attention=attention, init="N02", conditioning=conditioning))
        print(f"  {label}: {count(reference[0]):,}, {count(reference[1]):,} | {count(mine[0]):,}, {count(mine[1]):,}")

    layers.SN.W_ = lambda self: self.weight  # the reference without spectral norm
    torch.manual_seed(0)
    conditioning = Conditioning("batchnorm", "projection", 10)
    print("largest output difference, same weights, spectral norm off:")
    for size, theirs, ours, attention_after in [
        (32, dict(G_shared=True, hier=True, shared_dim=32, G_attn="16"), dict(shared_dim=32, attention=16), 1),
        (32, dict(G_shared=False, hier=False, G_attn="0"), dict(shared_dim=None, hierarchical=False, shared_embedding=False), None),
        (64, dict(G_shared=True, hier=True, shared_dim=32, G_attn="32"), dict(shared_dim=32, attention=32), 2),
    ]:
        reference = BigGAN.Generator(G_ch=4, dim_z=40, resolution=size, n_classes=10, no_optim=True, G_param="none", **theirs)
        mine = without_spectral_norm(BigGANGenerator(40, 3, size, width=4, conditioning=conditioning, **ours))
        copy_weights(mine, reference, lambda name: generator_name(name, attention_after))
        z, labels = torch.randn(6, 40), torch.randint(10, (6,))
        with torch.no_grad():
            difference = (reference(z, reference.shared(labels)) - mine(z, labels)).abs().max().item()
        print(f"  G at {size} px ({', '.join(f'{k}={v}' for k, v in theirs.items())}): {difference:.2e}")
    for size, attention in [(32, None), (64, 32), (128, 64)]:
        reference = BigGAN.Discriminator(D_ch=8, resolution=size, n_classes=10, D_attn=str(attention or 0))
        mine = without_spectral_norm(BigGANDiscriminator(3, size, 8, attention=attention, conditioning=conditioning))
        copy_weights(mine, reference, lambda name: critic_name(name, None if attention is None else 0))
        images, labels = torch.randn(5, 3, size, size), torch.randint(10, (5,))
        with torch.no_grad():
            difference = (reference(images, labels).flatten() - mine(images, labels)).abs().max().item()
        print(f"  D at {size} px (attention {attention}): {difference:.2e}")


if __name__ == "__main__":
    main()

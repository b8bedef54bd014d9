"""Check model=stylegan2 against its reference, NVlabs/stylegan2-ada-pytorch, on this machine's CPU.

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/stylegan2-ada-pytorch
    python scripts/compare_stylegan2_reference.py --reference /tmp/stylegan2-ada-pytorch

(--reference may also be a bare git directory: its HEAD's training/, torch_utils/ and dnnlib/ are
extracted to a temporary folder.) The reference is imported from there, never copied into ganctl; on
a CPU its custom ops take their plain-PyTorch paths (bias_act and upfirdn2d `impl='ref'`,
conv2d_gradfix falls back to torch's convs), so no CUDA plugin is built. `requests`, which only its
download helpers use, is stubbed when missing.

What it prints, reference against ganctl with the same weights (copied by name; the reference's
zero-initialised biases and noise strengths, and its affine biases of 1, are first perturbed so that
every one of them counts):

  - parameter counts at the `cifar` config (train.py --cfg=cifar), unconditional and with 10 classes;
  - the mapping network's w, and w_avg after one training-mode call;
  - the synthesis network's images with the stored noise (eval, noise_mode='const') and with the same
    random noise (training mode, the same RNG draws), before ganctl's eval-mode clamp;
  - D's scores (resnet and orig, and conditional with projection);
  - the gradients of one step's terms on the same batch: G's non-saturating loss, D's logistic loss,
    R1 (gamma / 2) and the path-length penalty (weight 2, half the batch, the running mean from 0),
    each the reference's StyleGAN2Loss.accumulate_gradients phase against ganctl's loss functions
    (loss=stylegan2) and its PathLength regulariser; and style mixing's ws for one cutoff.

Differences are max |reference - ganctl|, and for gradients also relative to the largest gradient.

With --train DIR it trains the reference instead, on ganctl's bundled digits at the narrow config of
docs/benchmarks.md (its own loss and training procedure; see train_reference), and writes G_ema's
samples for scripts/digit_judge.py:

    python scripts/compare_stylegan2_reference.py --reference <checkout> --train /tmp/reference-run --seconds 590
    python scripts/digit_judge.py /tmp/reference-run/step1000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from torch import nn

from ganctl import config
from ganctl.gan import GAN
from ganctl.overrides import expand_shorthands
from ganctl.regularisers import GeneratorInputs, squared_gradient_norm
from ganctl.models import Conditioning, StyleGAN2Discriminator, StyleGAN2Generator
from ganctl.published.conversion import critic_name, generator_name  # the names `ganctl import` copies by


def import_reference(path: Path):
    """The reference's training.networks and training.loss, from a checkout or a bare git directory."""
    if not (path / "training" / "networks.py").is_file():
        if not (path / "HEAD").is_file():
            raise SystemExit(f"{path} holds neither training/networks.py nor a git directory")
        folder = Path(tempfile.mkdtemp(prefix="sg2ref-"))
        archive = subprocess.run(["git", f"--git-dir={path}", "archive", "HEAD", "training", "torch_utils", "dnnlib"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "x", "-C", str(folder)], input=archive, check=True)
        path = folder
    try:
        import requests  # noqa: F401  (dnnlib.util imports it for downloads only)
    except ImportError:
        sys.modules["requests"] = types.ModuleType("requests")
    sys.path.insert(0, str(path))
    from training import loss, networks  # noqa: E402  (the reference)

    return networks, loss


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def copy_weights(reference: nn.Module, ours: nn.Module, rename) -> None:
    """Perturb the reference's constant-initialised tensors, then copy every parameter and buffer
    (but its resampling filters, which ganctl does not store) into ours by name."""
    torch.manual_seed(1)
    mine = {**dict(ours.named_parameters()), **dict(ours.named_buffers())}
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if name.endswith("noise_strength"):
                parameter.copy_(0.3 * torch.randn(()))
            elif name.endswith("affine.bias"):
                parameter.add_(0.2 * torch.randn_like(parameter))
            elif name.endswith("bias"):
                # (the mapping networks' biases are scaled by their lr multiplier, 0.01, at run time)
                parameter.copy_(torch.randn_like(parameter) * (10.0 if name.startswith("mapping.fc") else 0.1))
        for name, tensor in [*reference.named_parameters(), *reference.named_buffers()]:
            if name.endswith("resample_filter"):
                continue
            target = mine.pop(rename(name))
            assert target.shape == tensor.shape, (name, target.shape, tensor.shape)
            target.copy_(tensor)
    assert not mine, f"ganctl tensors without a counterpart: {sorted(mine)}"


def largest(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{(a.detach().float() - b.detach().float()).abs().max().item():.2e} (values up to {a.detach().abs().max().item():.2g})"


def gradient_difference(reference: nn.Module, ours: nn.Module, rename) -> str:
    """Largest |grad difference| over all parameters, absolute and relative to the largest gradient."""
    mine = dict(ours.named_parameters())
    worst, scale, name_worst = 0.0, 0.0, ""
    for name, parameter in reference.named_parameters():
        theirs = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        other = mine[rename(name)].grad
        other = other if other is not None else torch.zeros_like(theirs)
        difference = (theirs - other).abs().max().item()
        scale = max(scale, theirs.abs().max().item())
        if difference > worst:
            worst, name_worst = difference, name
    return f"{worst:.2e} (relative {worst / max(scale, 1e-30):.1e}; largest gradient {scale:.2g}; worst at {name_worst})"


def ganctl_gan(image_size: int, channels: int, overrides: list[str], classes: int = 0) -> GAN:
    """ganctl's GAN as `ganctl train model=stylegan2 <overrides>` builds it for a dataset with
    `classes` classes (its networks get the reference's weights afterwards)."""
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=expand_shorthands([
            "model=stylegan2", f"dataset.image_size={image_size}", "train.precision=fp32", "train.channels_last=false", *overrides]))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return GAN.from_config(cfg, channels, image_size, torch.device("cpu"), classes=[str(i) for i in range(classes)] or None)


def zero_grads(*networks: nn.Module) -> None:
    for network in networks:
        for parameter in network.parameters():
            parameter.grad = None


def train_reference(networks, reference_loss, args: argparse.Namespace) -> None:
    """The reference itself trained on ganctl's bundled digits at 32x32: its networks at the narrow
    digits config, its StyleGAN2Loss, and training_loop.py's procedure (phases Gmain, Greg, Dmain, Dreg,
    each on its own latents; lazy regularisation as separate Adam steps, lr x k/(k+1), betas ** (k/(k+1));
    gradients nan_to_num'd; G_ema by half-life 10 kimg, ramp-up 0.05). Every --every steps it writes
    1,000 images of G_ema (latents of seed 0, noise_mode='const') to <dir>/step<N>/ for scripts/digit_judge.py."""
    import copy
    import time

    from PIL import Image

    from ganctl import data

    torch.manual_seed(0)
    digits = data.InMemoryImages(data.mnist(None, False, 32).images, torch.device("cpu"))
    generator = networks.Generator(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=1,
                                   mapping_kwargs=dict(num_layers=2),
                                   synthesis_kwargs=dict(channel_base=512, channel_max=64)).train().requires_grad_(False)
    critic = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=1, architecture=args.architecture,
                                    channel_base=512, channel_max=64,
                                    epilogue_kwargs=dict(mbstd_group_size=args.mbstd_group)).train().requires_grad_(False)
    average = copy.deepcopy(generator).eval()
    loss = reference_loss.StyleGAN2Loss(device=torch.device("cpu"), G_mapping=generator.mapping, G_synthesis=generator.synthesis,
                                        D=critic, style_mixing_prob=args.style_mixing, r1_gamma=args.r1_gamma,
                                        pl_weight=args.path_length)
    phases = []
    for name, network, interval in [("G", generator, 4), ("D", critic, 16)]:
        ratio = interval / (interval + 1)
        optimizer = torch.optim.Adam(network.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        phases += [(name + "main", network, optimizer, 1), (name + "reg", network, optimizer, interval)]
    no_labels = torch.zeros(args.batch, 0)
    start, images_seen = time.time(), 0
    for step in range(args.steps):
        real = digits.sample(args.batch)
        for (phase, network, optimizer, interval), latents in zip(phases, torch.randn(len(phases) * args.batch, 64).split(args.batch)):
            if step % interval:
                continue
            optimizer.zero_grad(set_to_none=True)
            network.requires_grad_(True)
            loss.accumulate_gradients(phase, real, no_labels, latents, no_labels, sync=True, gain=interval)
            network.requires_grad_(False)
            for parameter in network.parameters():
                if parameter.grad is not None:
                    torch.nan_to_num(parameter.grad, nan=0, posinf=1e5, neginf=-1e5, out=parameter.grad)
            optimizer.step()
        beta = 0.5 ** (args.batch / max(min(10_000, images_seen * 0.05), 1e-8))
        with torch.no_grad():
            for averaged, parameter in zip(average.parameters(), generator.parameters()):
                averaged.copy_(parameter.lerp(averaged, beta))
            for averaged, buffer in zip(average.buffers(), generator.buffers()):
                averaged.copy_(buffer)
        images_seen += args.batch
        if (step + 1) % args.every == 0:
            folder = args.train / f"step{step + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            latents = torch.randn(1000, 64, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                fakes = torch.cat([average(chunk, torch.zeros(len(chunk), 0), noise_mode="const") for chunk in latents.split(250)])
            for index, pixels in enumerate(((fakes.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()):
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
            print(f"step {step + 1}, {time.time() - start:.0f} s: wrote {folder}", flush=True)
        if time.time() - start > args.seconds:
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout (or bare git directory) of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--train", type=Path, metavar="DIR",
                        help="instead of comparing: train the reference on the bundled digits (see train_reference)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=600, help="--train: stop after this long")
    parser.add_argument("--every", type=int, default=250, help="--train: write samples every this many steps")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--r1-gamma", type=float, default=0.05)
    parser.add_argument("--path-length", type=float, default=2.0)
    parser.add_argument("--style-mixing", type=float, default=0.9)
    parser.add_argument("--architecture", default="resnet", choices=["resnet", "orig"])
    parser.add_argument("--mbstd-group", type=int, default=4)
    args = parser.parse_args()
    networks, reference_loss = import_reference(args.reference)
    torch.set_grad_enabled(True)
    if args.train:
        train_reference(networks, reference_loss, args)
        return

    print("parameter counts (G, D) at --cfg=cifar (32x32x3, channel base 32768, max 512, mapping 2, orig D, mbstd 32):")
    for classes in (0, 10):
        theirs_g = networks.Generator(z_dim=512, c_dim=classes, w_dim=512, img_resolution=32, img_channels=3,
                                      mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=32768, channel_max=512))
        theirs_d = networks.Discriminator(c_dim=classes, img_resolution=32, img_channels=3, architecture="orig",
                                          channel_base=32768, channel_max=512, epilogue_kwargs=dict(mbstd_group_size=32))
        conditioning = Conditioning("concat", "projection", classes) if classes else Conditioning()
        ours_g = StyleGAN2Generator(3, 32, mapping_layers=2, channel_base=32768, channel_max=512, conditioning=conditioning)
        ours_d = StyleGAN2Discriminator(3, 32, "orig", channel_base=32768, channel_max=512, mbstd_group_size=32,
                                        conditioning=conditioning)
        print(f"  {classes or 'no'} classes: reference {count(theirs_g):,}, {count(theirs_d):,} | "
              f"ganctl {count(ours_g):,}, {count(ours_d):,}")

    # The narrow digits config of docs/benchmarks.md: 32x32x1, channel base 512, max 64, z = w = 64,
    # mapping 2; and 64x64x3 (four resolutions of up- and downsampling, three channels).
    batch, z_dim, gamma = 8, 64, 0.05
    small = ["model.generator.latent_dim=64", "model.generator.w_dim=64", "model.generator.mapping_layers=2",
             "model.generator.channel_base=512", "model.generator.channel_max=64", "model.discriminator.channel_base=512",
             "model.discriminator.channel_max=64", "model.discriminator.mapping_layers=2", "model.generator.style_mixing=0",
             f"loss.r1_gamma={gamma}", "loss.path_length=2"]
    for size, channels, architecture, classes in [(32, 1, "resnet", 0), (32, 1, "orig", 0), (32, 1, "resnet", 10), (64, 3, "resnet", 0)]:
        print(f"\n{size}x{size}x{channels}, channel base 512, max 64, z = w = 64, mapping 2, D {architecture}, "
              f"{f'{classes} classes' if classes else 'unconditional'}:")
        overrides = [*small, f"model.discriminator.architecture={architecture}"]
        if classes:
            overrides += ["conditioning=concat", "conditioning.discriminator=projection"]
        gan = ganctl_gan(size, channels, overrides, classes)
        ours_g, ours_d = gan.generator, gan.discriminator
        theirs_g = networks.Generator(z_dim=z_dim, c_dim=classes, w_dim=64, img_resolution=size, img_channels=channels,
                                      mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=512, channel_max=64))
        theirs_d = networks.Discriminator(c_dim=classes, img_resolution=size, img_channels=channels, architecture=architecture,
                                          channel_base=512, channel_max=64, mapping_kwargs=dict(num_layers=2),
                                          epilogue_kwargs=dict(mbstd_group_size=4))
        copy_weights(theirs_g, ours_g, generator_name)
        copy_weights(theirs_d, ours_d, lambda name: critic_name(name, size))
        print(f"  parameters: reference {count(theirs_g):,}, {count(theirs_d):,} | ganctl {count(ours_g):,}, {count(ours_d):,}")

        torch.manual_seed(2)
        z = torch.randn(batch, z_dim)
        labels = torch.randint(classes, (batch,)) if classes else None
        c = nn.functional.one_hot(labels, classes).float() if classes else torch.zeros(batch, 0)
        real = torch.randn(batch, channels, size, size).clamp(-1, 1)
        theirs_g.eval(), ours_g.eval()
        with torch.no_grad():
            ws = theirs_g.mapping(z, c)
            print("  mapping w:", largest(ws[:, 0], ours_g.mapping_network(z, labels)))
            print("  synthesis, stored noise (eval / noise_mode='const'):",
                  largest(theirs_g.synthesis(ws, noise_mode="const"), ours_g.synthesis(ws, clamp=False)))
            theirs_g.train(), ours_g.train()
            torch.manual_seed(3)
            theirs = theirs_g.synthesis(ws)
            torch.manual_seed(3)
            print("  synthesis, the same random noise (training mode):", largest(theirs, ours_g.synthesis(ws)))
            theirs_g.mapping(z, c), ours_g.mapping(z, labels)
            print("  w_avg after one training-mode mapping:", largest(theirs_g.mapping.w_avg, ours_g.w_avg))
            images = theirs.clamp(-1, 1)
            print("  D scores:", largest(theirs_d(images, c).flatten(), ours_d(images, labels)),
                  "| of real-like noise:", largest(theirs_d(real, c).flatten(), ours_d(real, labels)))
            # Style mixing with one cutoff: the reference's run_G writes ws[:, cutoff:] from a second z.
            z2, cutoff = torch.randn(batch, z_dim), 3
            mixed_theirs = theirs_g.mapping(z, c, skip_w_avg_update=True)
            mixed_theirs[:, cutoff:] = theirs_g.mapping(z2, c, skip_w_avg_update=True)[:, cutoff:]
            w1, w2 = ours_g.mapping_network(z, labels), ours_g.mapping_network(z2, labels)
            layer = torch.arange(ours_g.num_ws).view(1, -1, 1)
            mixed_ours = torch.where(layer < cutoff, w1.unsqueeze(1), w2.unsqueeze(1))
            print(f"  style-mixed ws (cutoff {cutoff}, the rule of ganctl's mapping):", largest(mixed_theirs, mixed_ours))

        # One step's terms, both networks in training mode, the same noise (seeded before each G call).
        theirs_g.train(), ours_g.train()
        loss = reference_loss.StyleGAN2Loss(device=torch.device("cpu"), G_mapping=theirs_g.mapping, G_synthesis=theirs_g.synthesis,
                                            D=theirs_d, style_mixing_prob=0, r1_gamma=gamma, pl_weight=2)
        ours_loss = gan.loss
        units = {unit.name: unit for unit in ours_loss.regularisers}
        for phase, network_theirs, network_ours, rename in [
            ("Gmain", theirs_g, ours_g, generator_name), ("Dmain", theirs_d, ours_d, lambda n: critic_name(n, size)),
            ("Dreg", theirs_d, ours_d, lambda n: critic_name(n, size)), ("Greg", theirs_g, ours_g, generator_name),
        ]:
            zero_grads(theirs_g, theirs_d, ours_g, ours_d)
            for other in (theirs_g, theirs_d, ours_g, ours_d):
                other.requires_grad_(other is network_theirs or other is network_ours)
            torch.manual_seed(4)
            loss.accumulate_gradients(phase, real, c, z, c, sync=True, gain=1)
            torch.manual_seed(4)
            if phase == "Gmain":
                value = ours_loss.generator(gan.scores(ours_d, ours_g(z, labels) if classes else ours_g(z), labels))
                what = "G's loss"
            elif phase == "Dmain":
                fake = (ours_g(z, labels) if classes else ours_g(z)).detach()
                value = ours_loss.discriminator(gan.scores(ours_d, real, labels), gan.scores(ours_d, fake, labels))
                what = "D's loss"
            elif phase == "Dreg":
                value = units["r1"].gamma / 2 * squared_gradient_norm(lambda x: gan.scores(ours_d, x, labels), real)
                what = "R1 (gamma / 2)"
            else:
                units["path_length"].mean.zero_()
                inputs = GeneratorInputs(z, labels, gan.images_and_styles, gan.group)
                value = units["path_length"].weight * units["path_length"].penalty(inputs)
                what = "path length (weight 2)"
            value.backward()
            print(f"  gradients, {what}: {gradient_difference(network_theirs, network_ours, rename)}")
        print("  path lengths' running mean after one step:", largest(loss.pl_mean, units["path_length"].mean))
        for network in (theirs_g, theirs_d, ours_g, ours_d):
            network.requires_grad_(True)

    print("\nlazy regularisation (the training loop, not compared numerically): the reference runs R1 and the path"
          "\nlength as separate optimizer steps, every 16 / 4 iterations, with Adam's lr x k/(k+1) and betas ** (k/(k+1))"
          f"\n(D: lr {0.0025 * 16 / 17:.6f}, beta2 {0.99 ** (16 / 17):.6f}; G: lr {0.0025 * 4 / 5:.6f}, beta2 {0.99 ** (4 / 5):.6f});"
          "\nganctl adds each to its step's loss under the nominal settings (lr 0.0025, betas (0, 0.99)).")


if __name__ == "__main__":
    main()

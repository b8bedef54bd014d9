"""BigGAN (model=biggan): the reference's networks parameter for parameter, spectral norm where the
reference puts it, shapes conditional and not at 32 and 64 px, hierarchical latents that reach every
block, the sizes and options it refuses, and a tiny conditional BigGAN with attention that resumes
exactly and trains in bf16. Every loss trains with it in tests/test_gan_family.py (unconditional) and
tests/test_conditional.py (each conditioning); experiment=cifar10_biggan in tests/test_experiments.py."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganctl.registry import build
from ganctl.errors import GanctlError
from ganctl.gan import GAN
from ganctl.models import UNCONDITIONAL, BigGANDiscriminator, BigGANGenerator, Conditioning, ProjectionOutput, SelfAttention
from ganctl.models.biggan import BigGANBatchNorm
from helpers import TINY, compose_config, run
from test_train import straight_and_resumed

CIFAR10 = ["model.generator.latent_dim=128", "model.generator.shared_embedding=false", "model.generator.hierarchical=false",
           "model.generator.init=N02", "model.discriminator.init=N02"]  # launch_cifar_ema.sh
IMAGENET128 = ["model.generator.width=96", "model.discriminator.width=96", "model.generator.attention=64",
               "model.discriminator.attention=64", "model.generator.init=N02", "model.discriminator.init=N02"]  # launch_BigGAN_bs256x8.sh
# Small enough to train in a second: 8 channels per block at 32 px.
TINY_BIGGAN = ["model=biggan", "model.generator.width=2", "model.discriminator.width=2", "model.generator.latent_dim=16",
               "model.generator.shared_dim=8", "dataset.image_size=32", "train.channels_last=false"]


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())  # spectral norm's u, v are buffers


def build_pair(image_size: int, classes: int, *overrides: str) -> tuple[nn.Module, nn.Module]:
    cfg, _ = compose_config("model=biggan", *overrides)
    conditioning = Conditioning("batchnorm", "projection", classes) if classes else UNCONDITIONAL
    shape = {"channels": 3, "image_size": image_size, "conditioning": conditioning}
    return build(cfg.model.generator, "model.generator", **shape), build(cfg.model.discriminator, "model.discriminator", **shape)


# Counted from ajbrock/BigGAN-PyTorch (commit 9845943), its Generator and Discriminator built with the same settings.
@pytest.mark.parametrize("image_size,classes,overrides,sizes", [
    (32, 10, CIFAR10, (4_304_387, 4_207_361)),  # its CIFAR-10 script
    (32, 0, CIFAR10, (4_276_739, 4_204_801)),  # unconditional: G = the reference with one class; D without its projection
    (32, 10, ["model.generator.init=N02"], (4_358_915, 4_207_361)),  # the model's defaults: shared embedding, hierarchical z
    (64, 10, ["model.generator.attention=32", "model.discriminator.attention=32", "model.generator.init=N02",
              "model.discriminator.init=N02"], (31_842_820, 19_558_082)),
    (128, 1000, IMAGENET128, (70_433_988, 87_982_370)),  # the paper's 128 px BigGAN: 70.4M / 88.0M
])
def test_biggan_is_the_reference_network_parameter_for_parameter(image_size, classes, overrides, sizes, monkeypatch) -> None:
    if image_size == 32:  # spectral norm's power iterations and all: its u vectors add no parameters
        generator, critic = build_pair(image_size, classes, *overrides)
    else:  # 20M-160M parameters: counted without allocating them (spectral norm off: meta tensors have no values to iterate)
        monkeypatch.setattr("ganctl.models.biggan._spectrally_normalise", lambda network, kinds: None)
        with torch.device("meta"):
            generator, critic = build_pair(image_size, classes, *overrides)
    assert (count(generator), count(critic)) == sizes


def test_spectral_norm_is_on_every_layer_but_gs_embeddings() -> None:
    generator, critic = build_pair(32, 10, "model.generator.width=2", "model.discriminator.width=2",
                                   "model.generator.attention=16", "model.discriminator.attention=8")
    g_layers = [m for m in generator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    d_layers = [m for m in critic.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    # G: linear + 3 blocks x (3 convs + 2 BNs x 2 gain/bias maps) + 4 attention convs + the output conv
    assert len(g_layers) == 1 + 3 * 7 + 4 + 1 and all(parametrize.is_parametrized(m, "weight") for m in g_layers)
    # D: 4 blocks x 2 convs, 2 shortcuts (the blocks that halve), 4 attention convs, the linear layer, the class embedding
    assert len(d_layers) == 8 + 2 + 4 + 1 + 1 and all(parametrize.is_parametrized(m, "weight") for m in d_layers)
    assert isinstance(critic.output[0], ProjectionOutput)
    embeddings = [m for m in generator.modules() if isinstance(m, nn.Embedding)]
    assert embeddings == [generator.shared] and not parametrize.is_parametrized(generator.shared)  # as the reference
    assert sum(isinstance(m, BigGANBatchNorm) for m in generator.modules()) == 6
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("classes", [0, 10])
def test_conditional_and_unconditional_biggans_make_images_and_score_them(image_size: int, classes: int) -> None:
    attention = ["model.generator.attention=16", "model.discriminator.attention=8"]
    generator, critic = build_pair(image_size, classes, "model.generator.width=2", "model.discriminator.width=2", *attention)
    labels = torch.randint(10, (3,)) if classes else None
    images = generator(torch.randn(3, generator.latent_dim), labels)
    assert images.shape == (3, 3, image_size, image_size) and images.abs().max() <= 1
    assert critic(images, labels).shape == (3,)
    assert (generator.blocks[0].norm1.gain.in_features == 128 + generator.chunk) if classes else not hasattr(generator, "shared")
    assert any(isinstance(m, ProjectionOutput) for m in critic.modules()) == bool(classes)


def test_each_chunk_of_a_hierarchical_latent_reaches_g() -> None:
    torch.manual_seed(0)
    generator, _ = build_pair(32, 10, "model.generator.width=2", "model.generator.latent_dim=12")
    generator.eval()
    assert generator.latent_dim == 12 and generator.chunk == 3  # the linear layer's chunk and one per block
    z, labels = torch.randn(2, 12), torch.tensor([1, 2])
    with torch.no_grad():
        base = generator(z, labels)
        for chunk in range(4):
            moved = z.clone()
            moved[:, 3 * chunk:3 * chunk + 3] += 1.0
            assert (generator(moved, labels) - base).abs().max() > 1e-3, chunk


def test_a_latent_that_does_not_split_evenly_is_cut_as_the_reference_cuts_it(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ganctl"):
        generator = BigGANGenerator(128, 3, 64, width=1)  # 5 chunks at 64 px
    assert "does not split evenly into 5 chunks" in caplog.text
    assert generator.latent_dim == 125 and generator(torch.randn(2, 125)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("make,message", [
    (lambda: BigGANGenerator(16, 3, 48, width=1), "BigGAN cannot make 48x48 images"),
    (lambda: BigGANDiscriminator(3, 36, width=1), "BigGAN cannot make 36x36 images"),
    (lambda: BigGANGenerator(16, 3, 512, width=1), "BigGAN cannot make 512x512 images"),
    (lambda: BigGANGenerator(16, 3, 8, width=1), "BigGAN cannot make 8x8 images"),
    (lambda: BigGANGenerator(16, 3, 32, width=1, shared_embedding=False, conditioning=Conditioning("batchnorm", "projection", 10)),
     "hierarchical=true needs model.generator.shared_embedding=true"),
    (lambda: BigGANGenerator(3, 3, 32, width=1), "latent_dim=3 is too small to split into 4 chunks"),
    (lambda: BigGANGenerator(16, 3, 32, width=0), "model.generator.width must be a whole number"),
    (lambda: BigGANDiscriminator(3, 32, width=1, init="kaiming"), "model.discriminator.init must be one of ortho, N02, glorot"),
    (lambda: BigGANGenerator(16, 3, 32, width=2, attention=64), "model.generator.attention=64: this network.s feature maps"),
])
def test_what_biggan_cannot_make_is_refused_with_the_reason(make, message: str) -> None:
    with pytest.raises(GanctlError, match=message):
        make()


def test_the_cifar10_recipe_averages_g_with_the_references_decay_from_its_start() -> None:
    cfg, _ = compose_config("experiment=cifar10_biggan", "model.generator.width=1", "model.discriminator.width=1",
                            "train.device=cpu")
    gan = GAN.from_config(cfg, 3, 32, torch.device("cpu"), classes=[str(c) for c in range(10)])
    assert gan.ema_decay_at(1000, 50) == 0.0  # a copy of G until the reference's ema_start
    assert math.isclose(gan.ema_decay_at(1001, 50), 0.9999, abs_tol=1e-9)
    assert math.isclose(gan.ema_decay_at(100_000, 50), 0.9999, abs_tol=1e-9)  # constant, as the reference's


# ----------------------------------------------------------------------------- training

CONDITIONAL = [*TINY, *TINY_BIGGAN, "conditioning=projection", "loss=hinge", "loss.critic_steps=2", "model.generator.attention=16",
               "model.discriminator.attention=8", "train.ckpt_every=0", "train.sample_every=0"]


def test_a_conditional_biggan_with_attention_resumes_exactly(tmp_path: Path) -> None:
    a, b = straight_and_resumed(tmp_path, CONDITIONAL)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(key.startswith("shared.") for key in a["generator"])
    assert sum(key.endswith("gamma") for key in [*a["generator"], *a["discriminator"]]) == 2


def test_a_biggan_step_in_bf16_is_finite(tmp_path: Path) -> None:
    result = run(tmp_path, *CONDITIONAL, "train.precision=bf16", "train.steps=2")
    assert result.step == 2 and all(math.isfinite(value) for value in result.summary["losses"].values())


def test_attention_sits_where_asked_in_both_networks() -> None:
    generator, critic = build_pair(32, 10, "model.generator.width=2", "model.discriminator.width=2",
                                   "model.generator.attention=16", "model.discriminator.attention=8")
    sizes: list[int] = []
    for layer in [*generator.modules(), *critic.modules()]:
        if isinstance(layer, SelfAttention):
            layer.register_forward_hook(lambda module, args, output: sizes.append(output.shape[-1]))
    labels = torch.randint(10, (2,))
    critic(generator(torch.randn(2, generator.latent_dim), labels), labels)
    assert sizes == [16, 8]


def test_the_biggan_preset_trains_as_biggan_does_unless_the_command_line_says_otherwise() -> None:
    cfg, choices = compose_config("model=biggan")
    assert cfg.loss.discriminator._target_ == "ganctl.losses.hinge_discriminator_loss"
    assert (cfg.optimizer.g.lr, list(cfg.optimizer.d.betas)) == (2.0e-4, [0.0, 0.999])  # not adam_fast's 3.2e-3
    cfg, _ = compose_config("model=biggan", "loss=bce", "optimizer=adam_fast")
    assert cfg.loss.discriminator._target_ == "ganctl.losses.bce_discriminator_loss" and cfg.optimizer.g.lr == 3.2e-3

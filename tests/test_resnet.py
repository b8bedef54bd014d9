"""The ResNet models (model=sngan) and self-attention: the published networks parameter for parameter,
spectral norm on every critic layer, the sizes the family makes or refuses, attention where asked
and global in reach, and a tiny conditional ResNet with attention that trains and resumes exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganctl.registry import build
from ganctl.errors import GanctlError
from ganctl.models import ConditionalBatchNorm, Conditioning, DCGANDiscriminator, DCGANGenerator, ProjectionOutput, SelfAttention
from ganctl.models import ResNetDiscriminator, ResNetGenerator
from helpers import TINY, compose_config, run
from test_train import straight_and_resumed

TINY_RESNET = ["model=sngan", "model.generator.width=8", "model.discriminator.width=8", "model.generator.latent_dim=16",
               "train.channels_last=false"]


def count(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())  # spectral norm's u, v are buffers


@pytest.mark.parametrize("image_size,generator_size,critic_size", [
    (32, 4_276_739, 1_053_825),  # the CIFAR-10 network of Miyato et al. 2018
    (64, 12_220_675, 10_141_441),  # sngan_projection's 64x64 ResNetGenerator / SNResNetDiscriminator, ch=64
])
def test_sngan_is_the_published_network_with_spectral_norm_on_every_critic_layer(image_size, generator_size, critic_size) -> None:
    cfg, _ = compose_config("model=sngan")
    generator = build(cfg.model.generator, "model.generator", channels=3, image_size=image_size)
    critic = build(cfg.model.discriminator, "model.discriminator", channels=3, image_size=image_size)
    assert (count(generator), count(critic)) == (generator_size, critic_size)
    weighted = [m for m in critic.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == (11 if image_size == 32 else 16) and all(parametrize.is_parametrized(m, "weight") for m in weighted)
    assert not any(parametrize.is_parametrized(m) for m in generator.modules())  # SNGAN's G has none
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


def test_conditional_sngan_conditions_every_block_norm_and_projects_with_a_normalised_embedding() -> None:
    conditioning = Conditioning("batchnorm", "projection", num_classes=10)
    generator = ResNetGenerator(16, 3, 32, width=8, conditioning=conditioning)
    critic = ResNetDiscriminator(3, 32, width=8, conditioning=conditioning)
    # The reference's class-conditional BatchNorm in each of the 3 blocks (2 each); the output BatchNorm stays plain.
    assert sum(isinstance(m, ConditionalBatchNorm) for m in generator.modules()) == 6
    assert isinstance(generator.output[0], nn.BatchNorm2d)
    projection = next(m for m in critic.modules() if isinstance(m, ProjectionOutput))
    assert parametrize.is_parametrized(projection.embedding, "weight")


@pytest.mark.parametrize("image_size,blocks", [(28, 2), (48, 3), (128, 5)])
def test_the_family_follows_the_image_size(image_size: int, blocks: int) -> None:
    generator = ResNetGenerator(8, 1, image_size, width=4)
    critic = ResNetDiscriminator(1, image_size, width=4)
    images = generator(torch.randn(2, 8))
    assert images.shape == (2, 1, image_size, image_size) and critic(images).shape == (2,)
    assert len(generator.blocks) == blocks
    assert len(critic.blocks) == (4 if image_size <= 32 else max(5, blocks + 1))


def test_sizes_the_family_cannot_make_are_refused_clearly() -> None:
    for size in (36, 8, 100):  # 9 doubled twice; too small to double twice from 3; 25 doubled twice
        with pytest.raises(GanctlError, match=f"cannot make {size}x{size} images"):
            ResNetGenerator(8, 3, size)


def test_self_attention_starts_as_the_identity_and_reaches_across_the_image() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(16)
    x = torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(attention(x), x, rtol=0, atol=0)  # gamma = 0 at initialisation
    with torch.no_grad():
        attention.gamma.fill_(1.0)
        far = x.clone()
        far[:, :, 7, 7] += 5.0  # one pixel in the far corner
        changed = (attention(far) - attention(x))[0, :, 0, 0]
    assert changed.abs().max() > 1e-4  # the top-left output sees it: no convolution reaches that far


def attended_sizes(network: nn.Module, *inputs: torch.Tensor) -> list[int]:
    sizes: list[int] = []
    for layer in network.modules():
        if isinstance(layer, SelfAttention):
            layer.register_forward_hook(lambda module, args, output: sizes.append(output.shape[-1]))
    network(*inputs)
    return sizes


@pytest.mark.parametrize("family", ["resnet", "dcgan"])
def test_attention_sits_at_the_resolution_asked_for_and_other_resolutions_are_refused(family: str) -> None:
    if family == "resnet":
        generator, critic = ResNetGenerator(8, 3, 32, width=16, attention=16), ResNetDiscriminator(3, 32, width=16, attention=8)
    else:
        generator = DCGANGenerator(8, base_filters=8, channels=3, image_size=32, attention=16)
        critic = DCGANDiscriminator(base_filters=8, channels=3, image_size=32, norm="none", spectral_norm=True, attention=8)
    assert attended_sizes(generator, torch.randn(2, 8)) == [16]
    assert attended_sizes(critic, torch.randn(2, 3, 32, 32)) == [8]
    attention = next(m for m in critic.modules() if isinstance(m, SelfAttention))
    assert all(parametrize.is_parametrized(conv, "weight") for conv in attention.modules() if isinstance(conv, nn.Conv2d))
    with pytest.raises(GanctlError, match=r"model.generator.attention=12: this network.s feature maps are"):
        (ResNetGenerator(8, 3, 32, width=16, attention=12) if family == "resnet"
         else DCGANGenerator(8, base_filters=8, channels=3, image_size=32, attention=12))


def test_spectral_norm_with_a_batchnorm_critic_is_warned_about(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ganctl"):
        DCGANDiscriminator(base_filters=8, channels=1, image_size=28, norm="none", spectral_norm=True)
        assert not caplog.records
        DCGANDiscriminator(base_filters=8, channels=1, image_size=28, norm="batch", spectral_norm=True)
    assert "spectral_norm=true with norm=batch" in caplog.text


def test_a_conditional_resnet_with_attention_resumes_exactly(tmp_path: Path) -> None:
    overrides = [*TINY, *TINY_RESNET, "conditioning=projection", "loss=hinge", "loss.critic_steps=2", "model.generator.attention=14",
                 "model.discriminator.attention=7", "train.ckpt_every=0", "train.sample_every=0"]
    a, b = straight_and_resumed(tmp_path, overrides)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(key.endswith("gamma") for key in a["generator"]) and any(key.endswith("gamma") for key in a["discriminator"])


def test_a_resnet_trains_in_bf16(tmp_path: Path) -> None:
    result = run(tmp_path, *TINY, *TINY_RESNET, "loss=hinge", "train.precision=bf16", "train.steps=2")
    assert result.step == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.summary["losses"].values())


def test_a_tall_spectrally_normalised_layer_trains_under_torch_compile_as_in_eager() -> None:
    """SNGAN's first shortcut, a 1x1 conv from RGB to many channels: torch.compile's backward used to fail
    on its power iteration ("modified by an inplace operation"); it must train, with eager's gradients."""
    from ganctl.models.layers import spectrally_normalised

    torch.manual_seed(0)
    compiled_layer, eager_layer = (spectrally_normalised(nn.Conv2d(3, 8, 1)) for _ in range(2))
    eager_layer.load_state_dict(compiled_layer.state_dict())
    compiled = torch.compile(compiled_layer)
    real, fake = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    for _ in range(2):  # two D-like calls a step, two steps: the singular vectors move in between
        (compiled(real).mean() - compiled(fake).mean()).backward()
        (eager_layer(real).mean() - eager_layer(fake).mean()).backward()
    torch.testing.assert_close(compiled_layer.parametrizations.weight.original.grad,
                               eager_layer.parametrizations.weight.original.grad)

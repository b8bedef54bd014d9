"""Model options: shapes at the dataset's size, the Keras-style camel GAN layer for layer, critic
variants, and the presets that choose a loss and optimizer too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganctl.registry import build
from ganctl.errors import GanctlError
from ganctl.models import ConvDiscriminator, ConvGenerator, DCGANGenerator
from helpers import compose_config

MODELS = ("dcgan", "dcgan_small", "mlp", "conv", "wgan", "wgangp", "sngan")


def build_pair(model: str, channels: int, image_size: int, *overrides: str) -> tuple[nn.Module, nn.Module]:
    cfg, _ = compose_config(f"model={model}", *overrides)
    shape = {"channels": channels, "image_size": image_size}
    return build(cfg.model.generator, "model.generator", **shape), build(cfg.model.discriminator, "model.discriminator", **shape)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("channels,image_size", [(1, 28), (3, 32)])
def test_every_model_maps_latents_to_images_to_one_score_each(model: str, channels: int, image_size: int) -> None:
    overrides = []
    if model == "conv" and image_size == 32:  # the camel preset makes 28x28: start from 8x8 instead
        overrides = ["model.generator.initial_size=8"]
    generator, discriminator = build_pair(model, channels, image_size, *overrides)
    images = generator(torch.randn(4, generator.latent_dim))
    assert images.shape == (4, channels, image_size, image_size)
    assert images.min() >= -1 and images.max() <= 1  # tanh, like the data
    assert discriminator(images).shape == (4,)
    assert not isinstance(list(discriminator.modules())[-1], nn.Sigmoid)  # raw scores, no sigmoid


def test_conv_preset_is_the_keras_camel_gan_layer_for_layer() -> None:
    generator, discriminator = build_pair("conv", 1, 28)
    trainable = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    # The Keras book's model summaries: D 720,833 parameters; G 837,377 trainable (plus 6,784
    # BatchNorm moving statistics that Keras counts as non-trainable parameters).
    assert trainable(discriminator) == 720_833
    assert trainable(generator) == 837_377
    assert sum(b.numel() for name, b in generator.named_buffers() if "running" in name) == 6_784

    sizes = []
    x = torch.randn(2, 100)
    for layer in generator.net:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(128, 14, 14), (64, 28, 28), (64, 28, 28), (1, 28, 28)]  # upsampling in the first two
    x = torch.randn(2, 1, 28, 28)
    sizes = []
    for layer in discriminator.features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 14, 14), (64, 7, 7), (128, 4, 4), (128, 4, 4)]  # strides 2, 2, 2, 1 ("same")
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.4 for m in discriminator.modules()) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in discriminator.modules())
    norms = [m for m in generator.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert len(norms) == 4 and all(abs(m.momentum - 0.1) < 1e-9 for m in norms)  # Keras 0.9 = PyTorch 0.1


def test_conv_discriminator_batch_norm_never_on_the_first_layer() -> None:
    critic = ConvDiscriminator([8, 16, 16], [3, 3, 3], [2, 2, 1], channels=1, image_size=28, batch_norm_momentum=0.9)
    layers = list(critic.features)
    assert not isinstance(layers[1], nn.BatchNorm2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == 2


def test_conv_generator_transposed_strides_make_the_same_size_as_upsampling() -> None:
    common = dict(latent_dim=8, initial_size=7, initial_channels=8, filters=[8, 8], kernel_sizes=[5, 3, 3], channels=1, image_size=28)
    strided = ConvGenerator(**common, strides=[2, 2, 1], upsample=[1, 1, 1])
    upsampled = ConvGenerator(**common, strides=[1, 1, 1], upsample=[2, 2, 1])
    z = torch.randn(3, 8)
    assert strided(z).shape == upsampled(z).shape == (3, 1, 28, 28)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in strided.modules()) == 2
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in upsampled.modules())


def test_conv_generator_refuses_a_size_it_cannot_make() -> None:
    with pytest.raises(GanctlError, match="makes 28x28 images.*32x32"):
        build_pair("conv", 1, 32)


def test_dcgan_nearest_upsampling_has_no_strided_transposed_convs() -> None:
    nearest = DCGANGenerator(16, 8, channels=1, image_size=32, upsample="nearest")
    transpose = DCGANGenerator(16, 8, channels=1, image_size=32, upsample="transpose")
    strided = lambda g: [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)]  # noqa: E731
    assert strided(nearest) == [] and len(strided(transpose)) == 3
    assert sum(isinstance(m, nn.Upsample) for m in nearest.modules()) == 3
    assert nearest(torch.randn(2, 16)).shape == transpose(torch.randn(2, 16)).shape == (2, 1, 32, 32)


def test_mlp_generator_options_for_the_vanilla_gan() -> None:
    generator, _ = build_pair("mlp", 1, 28, "model.generator.batch_norm=false", "model.generator.activation=leaky_relu")
    assert not any(isinstance(m, nn.BatchNorm1d) for m in generator.modules())
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in generator.modules()) == 3


def test_wgangp_preset_is_a_complete_wgangp() -> None:
    cfg, choices = compose_config("model=wgangp")
    assert (choices["loss"], choices["optimizer"]) == ("wgangp", "wgangp")
    assert (cfg.loss.regularisers.gradient_penalty.weight, cfg.loss.critic_steps, list(cfg.loss.regularisers)) == (10.0, 5, ["gradient_penalty"])
    for net in ("g", "d"):
        assert cfg.optimizer[net]._target_ == "torch.optim.Adam"
        assert cfg.optimizer[net].lr == 1e-4 and list(cfg.optimizer[net].betas) == [0.0, 0.9]
    _, critic = build_pair("wgangp", 1, 28)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())


def test_wgan_preset_is_a_complete_wgan() -> None:
    cfg, choices = compose_config("model=wgan")
    assert (choices["loss"], choices["optimizer"]) == ("wgan", "wgan")
    assert (cfg.loss.regularisers.clip.bound, cfg.loss.critic_steps, list(cfg.loss.regularisers)) == (0.01, 5, ["clip"])
    assert cfg.optimizer.d._target_ == "torch.optim.RMSprop" and cfg.optimizer.d.lr == 5e-5


def test_command_line_loss_and_optimizer_win_over_a_preset() -> None:
    cfg, choices = compose_config("model=wgangp", "loss=hinge", "optimizer=adam")
    assert (choices["model"], choices["loss"], choices["optimizer"]) == ("wgangp", "hinge", "adam")
    assert cfg.loss.critic_steps == 1 and cfg.optimizer.d.lr == 2e-4
    assert cfg.model.discriminator.norm == "layer"


def test_the_default_run_is_dcgan_small_with_an_r1_critic() -> None:
    cfg, choices = compose_config()
    assert (choices["model"], choices["loss"]) == ("dcgan_r1", "rpgan_r1r2")
    units = cfg.loss.regularisers
    assert (units.r1.gamma, units.r1.every, units.r2.gamma, units.r2.every) == (0.1, 16, 0.1, 16)
    assert cfg.loss.generator._target_ == "ganctl.losses.relativistic_generator_loss"
    assert (cfg.model.generator.base_filters, cfg.model.discriminator.norm, cfg.model.discriminator.minibatch_std) == (32, "none", 4)
    _, critic = build_pair("dcgan_r1", 1, 28)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    cfg, choices = compose_config("loss=hinge")  # the command line wins over the preset's loss
    assert choices["loss"] == "hinge" and not cfg.loss.regularisers


def test_rmsprop_option_has_the_camel_gan_settings() -> None:
    cfg, _ = compose_config("optimizer=rmsprop")
    assert (cfg.optimizer.d.lr, cfg.optimizer.g.lr) == (8e-4, 4e-4)
    optimizer = build(cfg.optimizer.d, "optimizer.d")([nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.RMSprop)


def test_dcgan_minibatch_std_shows_d_the_batch_variety() -> None:
    from ganctl.models import DCGANDiscriminator
    from ganctl.models.layers import MinibatchStd

    spread = MinibatchStd(4)
    same = spread(torch.randn(1, 3, 2, 2).repeat(8, 1, 1, 1))  # (8, 4, 2, 2)
    varied = spread(torch.randn(8, 3, 2, 2))
    assert same.shape == varied.shape == (8, 4, 2, 2)
    assert same[:, 3].abs().max() < 1e-3 and (varied[:, 3] > 0.1).all()  # ~0 for copies of one image
    x = torch.randn(8, 4, 3, 3)  # two feature groups: StyleGAN2's formula, written out in NCHW
    y = x.reshape(4, 2, 2, 2, 3, 3)
    expected = ((y - y.mean(0)).square().mean(0) + 1e-8).sqrt().mean((2, 3, 4)).repeat(4, 1)  # (8, 2)
    got = MinibatchStd(4, num_channels=2)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(got[:, :4], x) and torch.allclose(got[:, 4:], expected[:, :, None, None].expand(8, 2, 3, 3))
    critic = DCGANDiscriminator(8, 1, 28, minibatch_std=4)
    assert any(isinstance(m, MinibatchStd) for m in critic.modules())
    assert critic.net[-1].in_channels == 8 * 2 + 1  # the last conv reads the features and their spread
    assert critic(torch.randn(6, 1, 28, 28)).shape == (6,)  # a batch the group size does not divide
    with pytest.raises(GanctlError, match="minibatch_std"):
        DCGANDiscriminator(8, 1, 28, minibatch_std=-1)


def test_minibatch_std_gradients_are_exact_to_second_order() -> None:
    """Its hand-written backward (and R1's derivative of it) against finite differences, in float64."""
    from ganctl.models.layers import MinibatchStd

    for features in (1, 2):
        spread = MinibatchStd(4, num_channels=features)
        x = torch.randn(8, 4, 3, 3, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
        assert torch.autograd.gradcheck(spread, (x,))
        assert torch.autograd.gradgradcheck(spread, (x,))

"""StyleGAN2: the reference's parameter counts, its resampling, its shapes and refusals, W space (truncation, style
mixing, w_avg), its regularisers (lazy R1 for any model, path length), the half-life EMA, and exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint, config, data
from ganctl.errors import GanctlError
from ganctl.gan import GAN, half_life_decay
from ganctl.regularisers import path_lengths, squared_gradient_norm
from ganctl.models import Conditioning, StyleGAN2Discriminator, StyleGAN2Generator
from ganctl.sampling import Sampler
from helpers import TINY, TINY_STYLEGAN2, build_gan, compose_config, run

TEN_CLASSES = Conditioning("concat", "projection", num_classes=10)


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_stylegan2_ada_cifar() -> None:
    """NVlabs/stylegan2-ada-pytorch `--cfg=cifar`: 32x32x3, channel base 32768, max 512, mapping 2, orig D, mbstd 32."""
    cifar_g = dict(channels=3, image_size=32, mapping_layers=2, channel_base=32768, channel_max=512)
    cifar_d = dict(channels=3, image_size=32, architecture="orig", channel_base=32768, channel_max=512, mbstd_group_size=32)
    assert parameters(StyleGAN2Generator(**cifar_g)) == 19_947_539
    assert parameters(StyleGAN2Discriminator(**cifar_d)) == 20_720_641
    assert parameters(StyleGAN2Generator(**cifar_g, conditioning=TEN_CLASSES)) == 20_215_315
    assert parameters(StyleGAN2Discriminator(**cifar_d, conditioning=TEN_CLASSES)) == 23_089_664


@pytest.mark.parametrize("channels,size,architecture", [(1, 64, "resnet"), (3, 32, "orig")])
def test_shapes_at_each_resolution_and_channel_count(channels: int, size: int, architecture: str) -> None:
    generator = StyleGAN2Generator(channels, size, latent_dim=8, w_dim=8, mapping_layers=1, channel_base=128, channel_max=8)
    discriminator = StyleGAN2Discriminator(channels, size, architecture, channel_base=128, channel_max=8, mbstd_group_size=4)
    images = generator(torch.randn(6, 8))
    assert images.shape == (6, channels, size, size)
    assert discriminator(images).shape == (6,)  # 6 images, groups of 4: mbstd uses groups of 3
    assert generator.num_ws == 2 * int(math.log2(size)) - 2


def test_resampling_is_upfirdn2d_with_zeros_beyond_the_border() -> None:
    """The reference's upsample2d / downsample2d with the [1, 3, 3, 1] filter: bilinear inside the image,
    its edge pixels weighed against zeros outside it (not repeated, not renormalised)."""
    from ganctl.models.stylegan2 import downsample, upsample

    edge_up = torch.tensor([0.75, 1, 1, 1, 1, 1, 1, 0.75])
    torch.testing.assert_close(upsample(torch.ones(1, 1, 4, 4)), torch.outer(edge_up, edge_up).view(1, 1, 8, 8))
    ramp = torch.arange(4.0).expand(1, 1, 4, 4)  # 0, 1, 2, 3 along each row: interpolated at 1/4 and 3/4
    torch.testing.assert_close(upsample(ramp)[0, 0, 3, 1:7], torch.tensor([0.25, 0.75, 1.25, 1.75, 2.25, 2.75]))
    edge_down = torch.tensor([7 / 8, 1, 1, 7 / 8])
    torch.testing.assert_close(downsample(torch.ones(2, 3, 8, 8)), torch.outer(edge_down, edge_down).expand(2, 3, 4, 4))


def test_d_downsampling_conv_filters_at_full_size_then_strides() -> None:
    """conv2d_resample(down=2) with a 3x3 kernel: the filter zero-padded by 2 at full size, then the conv at
    stride 2, so its taps are neighbouring pixels. An all-ones kernel spreads an impulse at pixel 8 over
    outputs 3, 4, 5 as [1/2, 7/8, 1/8] along each axis, times the weight gain 1/3 (a conv of the
    downsampled map, taps two pixels apart, would spread it over outputs 2-5)."""
    from ganctl.models.stylegan2 import Conv

    conv = Conv(1, 1, 3, activation=False, bias=False, down=True)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    impulse = torch.zeros(1, 1, 16, 16)
    impulse[..., 8, 8] = 1.0
    profile = torch.zeros(8)
    profile[3:6] = torch.tensor([0.5, 0.875, 0.125])
    torch.testing.assert_close(conv(impulse)[0, 0], torch.outer(profile, profile) / 3)


def test_upsampling_conv_is_a_transposed_convolution_as_the_reference() -> None:
    """conv2d_resample(up=2, padding=1), as the reference's synthesis layers use it: a transposed conv at
    stride 2 -- a true convolution, so a kernel's top-left tap carries a pixel towards the top left --
    then the filter with gain 4. An impulse at input pixel 1 lands on outputs 0-3 as [1/4, 3/4, 3/4, 1/4]
    along each axis (upsampling, then a correlation, would put it on 2-5)."""
    from ganctl.models.stylegan2 import modulated_conv

    weight = torch.zeros(1, 1, 3, 3)
    weight[..., 0, 0] = 1.0
    impulse = torch.zeros(1, 1, 4, 4)
    impulse[..., 1, 1] = 1.0
    profile = torch.zeros(8)
    profile[:4] = torch.tensor([0.25, 0.75, 0.75, 0.25])
    output = modulated_conv(impulse, weight, torch.ones(1, 1), demodulate=False, up=True)
    torch.testing.assert_close(output[0, 0], torch.outer(profile, profile))


def test_refuses_other_resolutions_channels_and_conditioning() -> None:
    with pytest.raises(GanctlError, match="32, 64, 128, 256, 512, 1024"):
        StyleGAN2Generator(3, 48)
    with pytest.raises(GanctlError, match="32, 64, 128, 256, 512, 1024"):
        StyleGAN2Discriminator(3, 2048)
    with pytest.raises(GanctlError, match="1- or 3-channel"):
        StyleGAN2Generator(4, 32)
    with pytest.raises(GanctlError, match="conditioning.discriminator=projection"):
        StyleGAN2Generator(3, 32, conditioning=Conditioning("batchnorm", "projection", 10))
    with pytest.raises(GanctlError, match="conditioning.discriminator=projection"):
        StyleGAN2Discriminator(3, 32, conditioning=Conditioning("concat", "concat", 10))


def small_generator(**kwargs) -> StyleGAN2Generator:
    return StyleGAN2Generator(1, 32, latent_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=4, **kwargs)


def test_w_average_moves_in_training_only_and_eval_is_deterministic() -> None:
    torch.manual_seed(0)
    generator = small_generator(conditioning=TEN_CLASSES)
    z, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    generator(z, labels)
    moved = generator.w_avg.clone()
    assert moved.abs().sum() > 0
    generator.eval()
    first = generator(z, labels)
    torch.testing.assert_close(generator(z, labels), first, rtol=0, atol=0)  # stored noise, no mixing
    torch.testing.assert_close(generator.w_avg, moved, rtol=0, atol=0)
    assert first.abs().max() <= 1.0  # eval images are clamped to [-1, 1]


def test_truncation_lerps_w_towards_its_average() -> None:
    torch.manual_seed(0)
    generator = small_generator()
    generator(torch.randn(64, 8))  # a w_avg to pull towards
    generator.eval()
    z = torch.randn(5, 8)
    torch.testing.assert_close(generator.forward_truncated(z, psi=1.0), generator(z))
    average = generator.forward_truncated(z, psi=0.0)  # every latent makes the average image
    torch.testing.assert_close(average, average[:1].expand_as(average))
    half = generator.forward_truncated(z, psi=0.5)
    assert (half - average).abs().mean() < (generator(z) - average).abs().mean()


def test_style_mixing_takes_the_later_layers_from_a_second_latent() -> None:
    torch.manual_seed(0)
    mixing, plain = small_generator(style_mixing=1.0), small_generator(style_mixing=0.0)
    ws = mixing.mapping(torch.randn(3, 8))  # (B, num_ws, W)
    assert not torch.equal(ws[:, 0], ws[:, -1]) and torch.equal(ws[:, 0], ws[:, 0])
    changes = (ws[:, 1:] != ws[:, :-1]).any(dim=2).any(dim=0).sum()
    assert changes == 1  # one cutoff layer: before it z's w, from it the other z's
    ws = plain.mapping(torch.randn(3, 8))
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm() -> None:
    weight = torch.randn(1, 2, 3, 3)
    critic = lambda images: (images * weight).sum(dim=(1, 2, 3))  # noqa: E731
    penalty = squared_gradient_norm(critic, torch.randn(4, 2, 3, 3))
    torch.testing.assert_close(penalty, weight.square().sum())


def test_path_lengths_of_a_linear_map_by_hand() -> None:
    """images = A w for one layer of styles: lengths are ||A^T y|| for the noise y, whose expectation is ||A||_F / sqrt(HW)."""
    torch.manual_seed(0)
    matrix = torch.randn(16, 4)  # (C*H*W, W) with C=1, H=W=4
    styles = torch.randn(4096, 1, 4, requires_grad=True)
    images = (styles[:, 0] @ matrix.t()).view(-1, 1, 4, 4)
    lengths = path_lengths(images, styles)
    assert lengths.shape == (4096,)
    expected = (matrix.square().sum() / 16).sqrt()
    assert abs(lengths.square().mean().sqrt() - expected) < 0.05 * expected


def test_half_life_ema_matches_the_reference_formula() -> None:
    # cifar: ema_kimg 500, ramp-up 0.05, batch 64: beta = 0.5 ** (64 / min(500k, 0.05 * images seen))
    assert half_life_decay(500_000, 0.05, 0, 64) == 0.0
    assert half_life_decay(500_000, 0.05, 6400, 64) == pytest.approx(0.5 ** (64 / 320))
    assert half_life_decay(500_000, 0.05, 10**9, 64) == pytest.approx(0.5 ** (64 / 500_000))
    assert half_life_decay(10_000, None, 0, 32) == pytest.approx(0.5 ** (32 / 10_000))


def units(gan: GAN) -> dict:
    """The GAN's regularisers by their names in loss.regularisers."""
    return {unit.name: unit for unit in gan.loss.regularisers}


def test_the_full_procedure_trains_and_reports_its_regularisers() -> None:
    cfg, _ = compose_config(*TINY_STYLEGAN2, *TINY, "loss.r1_every=2", "conditioning=concat", "conditioning.discriminator=projection",
                            "train.ema.half_life_kimg=0.01", "train.ema.rampup=0.05")
    config.check(cfg)
    _, images = build_gan(compose_config(*TINY_STYLEGAN2, *TINY)[0])
    gan = GAN.from_config(cfg, images.channels, images.image_size, torch.device("cpu"), classes=images.classes)
    assert gan.generator_ema is not None and gan.conditional
    batches = data.endless(images, 8, labels=True)
    first = [gan.step(batches, 1), gan.step(batches, 2)]
    assert all(torch.isfinite(value) for step in first for value in step.values())
    r1, path_length = first[0]["reg/r1"], first[0]["reg/path_length"]
    assert r1 > 0 and path_length > 0 and units(gan)["path_length"].mean > 0  # both due at the first step
    assert torch.equal(gan.generator_ema.w_avg, gan.generator.w_avg)  # buffers are copied to the EMA


def test_each_regulariser_switches_off() -> None:
    cfg, _ = compose_config(*TINY_STYLEGAN2, *TINY, "loss.r1_gamma=0", "loss.path_length=0", "model.generator.style_mixing=0")
    gan, images = build_gan(cfg)
    statistics = gan.step(data.endless(images, 8), 1)
    assert "reg/r1" not in statistics and "reg/path_length" not in statistics  # off: nothing to report
    assert units(gan)["path_length"].mean == 0


def test_r1_works_for_other_models_and_path_length_is_refused_without_w() -> None:
    cfg, _ = compose_config(*TINY, "model=wgangp", "loss=bce", "loss.r1_gamma=1", "model.generator.base_filters=8",
                            "model.discriminator.base_filters=8", "model.generator.latent_dim=16")
    gan, images = build_gan(cfg)
    assert gan.step(data.endless(images, 8), 1)["reg/r1"] > 0
    cfg, _ = compose_config(*TINY, "model=dcgan_small", "loss.r1_gamma=1")  # a BatchNorm critic
    with pytest.raises(GanctlError, match="BatchNorm"):  # R1 is per image, as the gradient penalty
        build_gan(cfg)
    cfg, _ = compose_config(*TINY, "loss.path_length=2")
    with pytest.raises(GanctlError, match="model=stylegan2"):
        build_gan(cfg)


def test_resume_is_exact_with_lazy_regularisers_w_avg_and_path_length_mean(tmp_path: Path) -> None:
    """4 steps straight = 2 steps + resume to 4: R1 every 2 critic updates, path length every 2 G steps
    (both due on either side of the break: steps 1 and 3), style mixing, the half-life EMA with ramp-up."""
    overrides = [*TINY_STYLEGAN2, *TINY, "loss.r1_every=2", "loss.path_length_every=2", "train.ckpt_every=0",
                 "train.sample_every=0", "train.ema.half_life_kimg=0.01", "train.ema.rampup=0.05"]
    run(tmp_path / "straight", *overrides, "train.steps=4")
    run(tmp_path / "resumed", *overrides, "train.steps=2")
    state = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert state["regularisers"]["path_length"]["mean"] > 0
    run(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", "train.steps=4", resume=state)
    keys = ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d", "regularisers")
    straight, resumed = (checkpoint.load(tmp_path / name / "checkpoints" / "last.pt") for name in ("straight", "resumed"))
    torch.testing.assert_close({k: straight[k] for k in keys}, {k: resumed[k] for k in keys}, rtol=0, atol=0)
    assert straight["generator"]["w_avg"].abs().sum() > 0


def test_bf16_step_with_every_regulariser_is_finite() -> None:
    cfg, _ = compose_config(*TINY_STYLEGAN2, *TINY, "train.precision=bf16")
    gan, images = build_gan(cfg)
    statistics = gan.step(data.endless(images, 8), 1)  # R1 and path length are due at the first step
    assert all(torch.isfinite(value) for value in statistics.values())
    assert statistics["reg/r1"] > 0 and statistics["reg/path_length"] > 0
    assert units(gan)["path_length"].mean.dtype == torch.float32


def test_the_sampler_truncates_stylegan2_in_w_not_in_z() -> None:
    """`ganctl sample --truncation` reaches StyleGAN2 through its own hook: the same latents, the lerp
    towards w_avg (psi 0: every latent makes the average image)."""
    torch.manual_seed(0)
    generator = small_generator()
    generator(torch.randn(64, 8))  # a w_avg to pull towards
    generator.eval()
    plain, truncated = Sampler(generator), Sampler(generator, truncation=0.0)
    torch.testing.assert_close(truncated.latents(4, seed=3), plain.latents(4, seed=3))  # z is left alone
    average = truncated(truncated.latents(4, seed=3))
    torch.testing.assert_close(average, average[:1].expand_as(average))
    torch.testing.assert_close(average, generator.forward_truncated(plain.latents(4, seed=3), psi=0.0))


def test_conv_clamp_bounds_every_conv_layer_as_the_reference() -> None:
    """StyleGAN2-ADA's conv_clamp: each conv layer's output after bias, activation and gain stays within
    +-clamp (x gain: a resnet branch's sqrt(1/2) shrinks the bound with it), whatever its weights."""
    from ganctl.models.stylegan2 import Conv, SynthesisLayer, ToRGB

    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    for clamp in (None, 2.0):
        layers = [Conv(4, 4, 3, conv_clamp=clamp), SynthesisLayer(4, 4, 8, 8, conv_clamp=clamp), ToRGB(4, 3, 8, conv_clamp=clamp)]
        with torch.no_grad():
            for layer in layers:
                layer.weight.mul_(1e4)
                layer.bias.fill_(1e4)  # (demodulation undoes a huge weight; a huge bias it does not)
        outputs = [layers[0](x, gain=math.sqrt(0.5)), layers[1](x, w), layers[2](x, w)]
        bounds = [2.0 * math.sqrt(0.5), 2.0, 2.0]
        for output, bound in zip(outputs, bounds):
            assert (output.abs().max() <= bound + 1e-6) if clamp else (output.abs().max() > 100)
    generator = small_generator(conv_clamp=256)
    discriminator = StyleGAN2Discriminator(1, 32, "resnet", channel_base=64, channel_max=4, conv_clamp=256)
    convs = [m for m in [*generator.modules(), *discriminator.modules()] if isinstance(m, (Conv, SynthesisLayer, ToRGB))]
    skips = {id(block.skip) for block in discriminator.blocks}
    assert all((m.conv_clamp == 256) == (id(m) not in skips) for m in convs) and len(convs) > len(skips) > 0
    with pytest.raises(GanctlError, match="conv_clamp must be a positive number"):
        small_generator(conv_clamp=0)


def test_compile_keeps_the_double_backward_eager_and_compiles_g_with_style_mixing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """train.compile=true: with path length due every 2 steps G stays eager, with R1 D does (each warning
    says why), and the run trains; without path length, G -- style mixing, w_avg update and all -- goes
    through torch.compile (dynamo's eager backend here: inductor's C++ build of it takes minutes on a CPU)."""
    import functools

    import torch._dynamo
    from torch._dynamo.utils import counters

    overrides = [*TINY_STYLEGAN2, *TINY, "train.compile=true", "train.steps=2", "train.ckpt_every=0", "train.sample_every=0",
                 "loss.r1_every=2", "loss.path_length_every=2"]
    result = run(tmp_path / "eager", *overrides)
    assert result.step == 2 and all(math.isfinite(v) for v in result.summary["losses"].values())
    err = capsys.readouterr().err
    assert "G runs eagerly, because path-length regularisation" in err and "D runs eagerly, because R1" in err
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    compiled_before = counters["frames"]["ok"]
    result = run(tmp_path / "compiled", *overrides, "loss.path_length=0")
    assert result.step == 2 and all(math.isfinite(v) for v in result.summary["losses"].values())
    assert counters["frames"]["ok"] > compiled_before and "G runs eagerly" not in capsys.readouterr().err

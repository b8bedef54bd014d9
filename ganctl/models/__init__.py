"""Generators and discriminators.

Every generator maps latents (B, latent_dim) to images (B, C, H, W) in [-1, 1] (tanh output) and
exposes `latent_dim`. Every discriminator maps images to raw scores (B,) -- logits, no sigmoid;
higher means "more real" (the losses module states the convention once).

The dataset's channels and image size are runtime facts: they arrive as constructor arguments
at build time and are never copied by hand into the model configs. So does the run's
`conditioning` (how G and D see the class label, for the dataset's number of classes): every
`forward` takes `labels=None` beside its input, class indices (B,) that a conditioned network reads
and an unconditional one ignores. Conditioned with an auxiliary classifier (ACGAN), a discriminator
returns (scores (B,), class logits (B, K)). The pieces live in `ganctl.models.conditioning`.

Each family lives in its own module; the config names them here (`_target_: ganctl.models.<Class>`),
so a checkpoint's stored config keeps working when a module is reorganised.
"""

from ganctl.models.conditioning import (
    UNCONDITIONAL, AuxiliaryOutput, ConditionalBatchNorm, Conditioning, LabelConcat, LabelLayer, LabelledSequential,
    ProjectionOutput,
)
from ganctl.models.biggan import BigGANDiscriminator, BigGANGenerator, biggan_layout
from ganctl.models.conv import ConvDiscriminator, ConvGenerator
from ganctl.models.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_layout
from ganctl.models.layers import activation_layer, dcgan_init
from ganctl.models.mlp import MLPDiscriminator, MLPGenerator
from ganctl.models.resnet import ResNetDiscriminator, ResNetGenerator, resnet_layout
from ganctl.models.attention import SelfAttention
from ganctl.models.r3gan import R3GANDiscriminator, R3GANGenerator
from ganctl.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

__all__ = [
    "BigGANDiscriminator", "BigGANGenerator", "biggan_layout",
    "ConvDiscriminator", "ConvGenerator", "DCGANDiscriminator", "DCGANGenerator", "MLPDiscriminator", "MLPGenerator",
    "R3GANDiscriminator", "R3GANGenerator", "ResNetDiscriminator", "ResNetGenerator", "SelfAttention", "StyleGAN2Discriminator", "StyleGAN2Generator", "resnet_layout",
    "activation_layer", "dcgan_init", "dcgan_layout",
    "UNCONDITIONAL", "AuxiliaryOutput", "ConditionalBatchNorm", "Conditioning", "LabelConcat", "LabelLayer",
    "LabelledSequential", "ProjectionOutput",
]

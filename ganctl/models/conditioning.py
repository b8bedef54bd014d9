"""Class conditioning: how G and D see the label, as pieces that every model family wires in.

The config's `conditioning` group says in one place how each network sees the label
(conf/conditioning/*.yaml). The run makes it concrete for the dataset's classes -- a `Conditioning`,
a runtime fact like the channels and the image size -- and hands it to both networks at build time.
A family asks it for the pieces it needs, where it needs them:

    G's way, `conditioning.generator`:
      concat      a learned embedding of the label joined to the latent  (`generator_input`)
      batchnorm   class-conditional BatchNorm: each class its own scale and shift, in place of
                  G's BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018)  (`batch_norm`)
    D's way, `conditioning.discriminator`:
      concat      a learned embedding of the label joined to D's input as constant planes
                  (or to the flattened input of an MLP)  (`critic_input`)
      projection  D's score plus the inner product of a class embedding with the features D's
                  output layer reads (Miyato & Koyama 2018)  (`critic_output`)
      auxiliary   an auxiliary classifier beside D's score over the same features (ACGAN, Odena et
                  al. 2017): D returns (scores, class logits); the GAN's step adds its loss (`critic_output`)

With `UNCONDITIONAL` every piece is the plain layer a family had before (no label layers at all), so
an unconditional network is the same network, weight for weight. A layer that reads the labels is a
`LabelLayer`; `LabelledSequential` is nn.Sequential handing the labels to those layers. A family
whose critic is spectrally normalised normalises the pieces' Linear and Embedding layers too (the
DCGAN critic does, as SNGAN's projection discriminator normalises its class embedding), and
`Conditioning.check` refuses a network that lacks the piece its way asks for.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ganctl.config import ConditioningSettings
from ganctl.errors import GanctlError



# --------------------------------------------------------------------------- the pieces


class LabelLayer(nn.Module):
    """A layer whose forward takes (x, labels): labels are (B,) class indices."""


class LabelledSequential(nn.Sequential):
    """nn.Sequential that hands `labels` to its LabelLayers; every other layer sees x alone (without
    label layers it computes exactly what nn.Sequential does, with the same state-dict keys)."""

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Any:
        for layer in self:
            if isinstance(layer, LabelLayer):
                if labels is None:
                    raise ValueError(f"{type(layer).__name__} is class-conditional: the network needs labels")
                x = layer(x, labels)
            else:
                x = layer(x)
        return x

    def activations(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """The output of each activation layer (ReLU, LeakyReLU) on the way through, first to last: the
        network's hidden features (what a discriminator's `feature_maps` returns); the layers after the
        last activation (a minibatch statistic, the output) are not run."""
        last = max((i for i, layer in enumerate(self) if isinstance(layer, (nn.ReLU, nn.LeakyReLU))), default=-1)
        features = []
        for layer in list(self)[: last + 1]:
            x = layer(x, labels) if isinstance(layer, LabelLayer) else layer(x)
            if isinstance(layer, (nn.ReLU, nn.LeakyReLU)):
                features.append(x)
        return features


class LabelConcat(LabelLayer):
    """x joined with a learned embedding of its label: (B, F) -> (B, F + dim), or (B, C, H, W) ->
    (B, C + dim, H, W) with the embedding repeated at every pixel."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, dim)  # N(0, 1), like the latent it joins

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(labels).to(x.dtype)  # (B, dim)
        if x.ndim == 4:
            embedded = embedded[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])  # (B, dim, H, W)
        return torch.cat([x, embedded], dim=1)


class ConditionalBatchNorm(LabelLayer):
    """BatchNorm without its own affine parameters, then the class's scale and shift:
    gamma[y] * BN(x) + beta[y]; every gamma starts at 1 and every beta at 0, so at initialisation it is
    G's plain BatchNorm. The running statistics are shared by all classes."""

    def __init__(self, features: int, num_classes: int, dims: int = 2, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.norm = norm(features, affine=False, momentum=momentum, eps=eps)
        self.scale = nn.Embedding(num_classes, features)
        self.shift = nn.Embedding(num_classes, features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        normalised = self.norm(x)
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.ndim - 2)  # (B, C, 1, 1) or (B, C)
        scale, shift = (table(labels).view(shape).to(normalised.dtype) for table in (self.scale, self.shift))
        return torch.addcmul(shift, normalised, scale)  # shift + normalised * scale, in one pass


class ProjectionOutput(LabelLayer):
    """D's output layer plus the projection term (Miyato & Koyama 2018):
    score = output(h) + <embed(y), h>, h being the features the output layer reads, flattened."""

    def __init__(self, output: nn.Module, features: int, num_classes: int) -> None:
        super().__init__()
        self.output = output
        self.embedding = nn.Embedding(num_classes, features)
        nn.init.xavier_uniform_(self.embedding.weight)  # the reference code's Glorot init

    def forward(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        projection = (self.embedding(labels) * h.flatten(1)).sum(dim=1)  # (B,)
        return self.output(h).flatten() + projection


class AuxiliaryOutput(nn.Module):
    """D's output layer beside an auxiliary classifier reading the same features (ACGAN):
    h -> (scores (B,), class logits (B, K))."""

    def __init__(self, output: nn.Module, features: int, num_classes: int) -> None:
        super().__init__()
        self.output = output
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.output(h).flatten(), self.classifier(h.flatten(1))


def flat_scores(output: Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A critic's output with its scores as (B,): a tensor, or (scores, class logits) with an auxiliary head."""
    if isinstance(output, tuple):
        return output[0].flatten(), output[1]
    return output.flatten()


# --------------------------------------------------------------------------- the run's conditioning


class Conditioning:
    """How G and D see the label, for `num_classes` classes: what families build their pieces from.
    (A plain class, not a dataclass: Hydra passes it to the constructors as it is.)"""

    def __init__(self, generator: str = "none", discriminator: str = "none", num_classes: int = 0,
                 embedding_dim: int = 16) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.num_classes, self.embedding_dim = num_classes, embedding_dim

    @classmethod
    def from_settings(cls, settings: Optional[Mapping[str, Any]], classes: Optional[Sequence[str]]) -> "Conditioning":
        """The config's conditioning block (None: a config from before it, unconditional) for a
        dataset's classes (None: it has none)."""
        settings = dict(settings or {})
        ConditioningSettings.check(settings)
        generator, discriminator = settings.get("generator", "none"), settings.get("discriminator", "none")
        if generator == discriminator == "none":
            return UNCONDITIONAL
        if not classes or len(classes) < 2:
            raise GanctlError("A class-conditional GAN needs at least two classes to condition on, "
                              f"got {len(classes or [])}.")
        return cls(generator, discriminator, len(classes), settings.get("embedding_dim", 16))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def __repr__(self) -> str:
        return (f"Conditioning(generator={self.generator!r}, discriminator={self.discriminator!r}, "
                f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim})")

    # G's pieces
    def generator_input(self) -> list[nn.Module]:
        """The layers that come before G's first layer: the label's embedding joined to the latent."""
        return [LabelConcat(self.num_classes, self.embedding_dim)] if self.generator == "concat" else []

    def generator_input_size(self, latent_dim: int) -> int:
        """What G's first layer reads: the latent, and the label's embedding when it is joined to it."""
        return latent_dim + (self.embedding_dim if self.generator == "concat" else 0)

    def batch_norm(self, features: int, dims: int = 2, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
        """G's BatchNorm: class-conditional with `batchnorm`, else torch's own."""
        if self.generator == "batchnorm":
            return ConditionalBatchNorm(features, self.num_classes, dims, momentum, eps)
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        return norm(features, momentum=momentum, eps=eps)

    # D's pieces
    def critic_input(self) -> list[nn.Module]:
        """The layers that come before D's first weighted layer: the label's embedding joined to its input."""
        return [LabelConcat(self.num_classes, self.embedding_dim)] if self.discriminator == "concat" else []

    def critic_input_size(self, size: int) -> int:
        """What D's first weighted layer reads: input channels (or flattened features) plus the label planes."""
        return size + (self.embedding_dim if self.discriminator == "concat" else 0)

    def critic_output(self, output: nn.Module, features: int) -> nn.Module:
        """D's output layer, reading `features` values per image: with the projection term, or beside an
        auxiliary classifier, or as it is."""
        if self.discriminator == "projection":
            return ProjectionOutput(output, features, self.num_classes)
        if self.discriminator == "auxiliary":
            return AuxiliaryOutput(output, features, self.num_classes)
        return output

    def check(self, network: nn.Module, role: str) -> None:
        """Refuse a network of a family that did not wire in the piece its way asks for (`role`:
        generator or discriminator), rather than train it silently unconditional."""
        way = self.generator if role == "generator" else self.discriminator
        if getattr(network, "conditions_itself", False):  # a family with its own label pieces refuses the ways it lacks itself
            return
        piece = {"concat": LabelConcat, "batchnorm": ConditionalBatchNorm, "projection": ProjectionOutput,
                 "auxiliary": AuxiliaryOutput}.get(way)
        if piece is None or any(isinstance(module, piece) for module in network.modules()):
            return
        family = type(network).__name__
        if way == "batchnorm":
            raise GanctlError(
                f"conditioning.generator=batchnorm makes G's BatchNorm class-conditional, but this {family} has no "
                "BatchNorm (e.g. model.generator.batch_norm=false, or batch_norm_momentum=null for model=conv). "
                "Use conditioning.generator=concat, or give G its BatchNorm back."
            )
        raise GanctlError(f"The {family} does not support conditioning.{role}={way}: its model family has no "
                          f"place for it. Choose another conditioning.{role}.")


UNCONDITIONAL = Conditioning()

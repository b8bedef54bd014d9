"""Named evaluation protocols: presets that fix everything a number depends on, so that a card can
say which one it followed and `ganctl compare` can tell comparable numbers from the rest.

A protocol fixes the metric set, the generated count, the real split and count, the backbone and
the resizer (docs/metrics.md says where each comes from and what differs from its source):

    ganctl eval RUN --protocol fid50k_full          # the protocol's settings, then any flag on top
    ganctl train metrics.protocol=fd_dinov2 ...       # likewise, for the evaluations during training

`metrics.protocol=NAME` sets the metrics keys the protocol fixes; a key also given on the command
line (or an eval flag) keeps its value, and then the cards say `custom` and what differs. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from ganctl.errors import GanctlError

FIXED = ("names", "num_fake", "split", "num_real", "feature", "resize")  # what a protocol fixes, as metrics keys
CUSTOM = "custom"


@dataclass(frozen=True)
class Protocol:
    name: str
    names: tuple[str, ...]
    num_fake: int
    split: str
    num_real: Optional[int]  # None: the whole split
    feature: str
    resize: str
    source: str  # whose protocol it is, where it is defined

    def settings(self) -> dict[str, Any]:
        """The metrics keys it fixes, as the metrics block holds them."""
        return {"names": list(self.names), "num_fake": self.num_fake, "split": self.split, "num_real": self.num_real,
                "feature": self.feature, "resize": self.resize}


PROTOCOLS = {
    protocol.name: protocol for protocol in (
        Protocol("fid50k_full", ("fid",), 50_000, "train", None, "inception", "tf1",
                 "stylegan2-ada-pytorch's fid50k_full (metrics/metric_main.py): 50,000 generated images against "
                 "the whole training set, the TensorFlow Inception-v3 pool features, TF1 bilinear to 299"),
        Protocol("studiogan_cifar10", ("fid", "is"), 50_000, "test", None, "inception", "clean",
                 "StudioGAN's CIFAR-10 evaluation (-ref test, --eval_backbone InceptionV3_tf, --post_resizer clean): "
                 "50,000 generated images against the 10,000 test images"),
        Protocol("fd_dinov2", ("fid",), 50_000, "train", None, "dinov2", "clean",
                 "dgm-eval's FD-DINOv2 (Stein et al. 2023, --model dinov2 --clean_resize): the Frechet distance of "
                 "DINOv2 ViT-L/14 class tokens, 50,000 generated images against the training set"),
        Protocol("digits_judge", ("fid", "kid", "class_balance"), 1_000, "test", None, "judge:digits", "tf1",
                 "ganctl's offline check of MNIST digits: the bundled digit judge's features, 1,000 generated digits "
                 "against the 1,000 held-out bundled test digits, and how evenly they spread over the ten digits"),
    )
}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise GanctlError(f"Unknown protocol {name!r} (metrics.protocol or --protocol): choose from {', '.join(PROTOCOLS)}, "
                          "or leave it unset for your own settings (docs/metrics.md, Protocols).")
    return PROTOCOLS[name]


def explicit_keys(overrides: Iterable[str]) -> set[str]:
    """The metrics keys a command line sets (`metrics.num_fake=1000` -> num_fake)."""
    keys = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("metrics."):
            keys.add(key.removeprefix("metrics.").split(".", 1)[0])
    return keys


def preset(metrics: Mapping[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """The protocol's values for the keys it fixes that are not in `keep` (the keys given
    explicitly); nothing without a protocol."""
    name = metrics.get("protocol")
    if not name:
        return {}
    kept = set(keep)
    return {key: value for key, value in get(name).settings().items() if key not in kept}


def differences(settings: Mapping[str, Any]) -> dict[str, list[Any]]:
    """How settings that name a protocol depart from it: {key: [the protocol's, these]}."""
    protocol = get(settings["protocol"])
    expected = protocol.settings()
    return {key: [expected[key], normalised(key, settings.get(key))] for key in FIXED
            if normalised(key, settings.get(key)) != expected[key]}


def normalised(key: str, value: Any) -> Any:
    return [str(name).lower() for name in value] if key == "names" and value is not None else value


def label(settings: Mapping[str, Any]) -> tuple[str, dict[str, list[Any]]]:
    """The protocol a card names: the protocol when the settings keep every value it fixes, else
    `custom`, with what differs from the protocol they started from (empty without one)."""
    name = settings.get("protocol")
    if not name:
        return CUSTOM, {}
    changed = differences(settings)
    return (CUSTOM if changed else name), changed

"""Where the config lives, its typed schema, its checks, and how a resumed run's stored config takes
overrides. What a config may build, and building it, are `ganctl.registry`'s."""

from __future__ import annotations

import dataclasses
import functools
import difflib
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from ganctl import registry
from ganctl.errors import GanctlError
from ganctl.schedules import Schedule

GROUPS = ("model", "loss", "optimizer", "dataset", "conditioning")
# The option a checkpoint from before a group existed was trained with.
GROUP_BEFORE = {"conditioning": "none"}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METRIC_NAMES = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "class_balance", "judge_accuracy",
                "ppl_zend", "ppl_wend")
JUDGE_METRICS = ("class_balance", "judge_accuracy")  # a judge's verdicts: metrics.feature=judge:FILE only
PPL_METRICS = ("ppl_zend", "ppl_wend")  # perceptual path length (ganctl/ppl.py), in z or in W
PPL_DISTANCES = ("lpips", "discriminator", "judge")  # the perceptual distance PPL measures with
DDP_BACKENDS = ("auto", "nccl", "gloo")
SPLITS = ("train", "test")  # a dataset's splits (those without a test split say so when asked for one)
MIN_IMAGE_SIZE = 4  # the smallest images any dataset reader or model makes
# What a class-conditional GAN's evaluation adds: the mean of the per-class scores of FID and KID.
INTRA_CLASS_METRICS = {"intra_fid": "fid", "intra_kid": "kid"}


def config_dir() -> str:
    """conf/ ships inside the installed package as ganctl/conf; a source checkout has it at the top."""
    packaged = Path(__file__).parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf")


def dataset_node(name: str, root: Optional[str]) -> Any:
    """The config of `dataset=<name>` (a conf/dataset option), with dataset.root when given."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    overrides = [f"dataset={name}"] + ([f"dataset.root={root}"] if root else [])
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name="train", overrides=overrides).dataset
    except HydraException as error:
        options = sorted(path.stem for path in (Path(config_dir()) / "dataset").glob("*.yaml"))
        raise GanctlError(f"--dataset {name}: not a dataset option ({str(error).splitlines()[0][:160]}); "
                          f"choose from {', '.join(options)}.") from None


# Mappings whose keys the user names (train.schedules.<knob>): added on the command line with +, checked by their own rules.
OPEN_MAPPINGS = ("train.schedules",)

# Keys a resumed run may change: when and how often things happen, never what is trained.
SCHEDULE_KEYS = (
    "train.steps",
    "train.log_every",
    "train.sample_every",
    "train.ckpt_every",
    "train.device",
    "train.eval_every",
    "train.keep_last",
    "train.precision",
    "train.channels_last",
    "train.compile",
    "train.batch_gpu",
    "train.threads",
    "train.ddp_backend",
    "train.curves",
    *(f"train.guard.{key}" for key in ("policy", "worse_by", "patience", "max_rollbacks", "lr", "penalty", "ada_target")),
)

# Speed settings that a checkpoint from before them lacks: it continues computing as it did then.
BEFORE_SPEED_SETTINGS = {"precision": "fp32", "channels_last": False, "compile": False}


@dataclass
class EMASettings:
    decay: float = MISSING
    start: int = MISSING
    half_life_kimg: Optional[float] = None  # StyleGAN2's EMA: half-life in thousands of images (replaces decay)
    rampup: Optional[float] = None  # with half_life_kimg: at most rampup x the images seen so far


ADA_MODES = ("none", "adaptive", "fixed")
ADA_TRANSFORMS = ("xflip", "rotate90", "translation", "brightness", "contrast", "saturation", "cutout")  # applied in this order


@dataclass
class AdaSettings:
    """Adaptive discriminator augmentation (ganctl/ada.py); values in conf/train.yaml."""

    mode: str = MISSING
    p: float = MISSING
    target: float = MISSING
    interval: int = MISSING
    kimg: float = MISSING
    transforms: List[str] = MISSING

    @staticmethod
    def check(settings: Any) -> None:
        """The `train.ada` block's values; one clear GanctlError for the first bad one."""
        if settings.mode not in ADA_MODES:
            raise GanctlError(f"train.ada.mode must be one of {', '.join(ADA_MODES)}, got {settings.mode!r}.")
        if not 0.0 <= settings.p <= 1.0:
            raise GanctlError(f"train.ada.p must be a probability in [0, 1], got {settings.p}.")
        if not 0.0 <= settings.target < 1.0:
            raise GanctlError(f"train.ada.target must be in [0, 1) (the reference uses 0.6), got {settings.target}.")
        if settings.interval < 1:
            raise GanctlError(f"train.ada.interval must be at least 1 step, got {settings.interval}.")
        if not settings.kimg > 0:
            raise GanctlError(f"train.ada.kimg must be positive (thousands of images for p to go from 0 to 1), got {settings.kimg}.")
        unknown = [name for name in settings.transforms if name not in ADA_TRANSFORMS]
        if unknown:
            raise GanctlError(f"train.ada.transforms: unknown transform {unknown[0]!r}; choose from {', '.join(ADA_TRANSFORMS)}.")
        if settings.mode != "none" and not settings.transforms:
            raise GanctlError(f"train.ada.mode={settings.mode} with no train.ada.transforms: name at least one of "
                              f"{', '.join(ADA_TRANSFORMS)}.")


GUARD_POLICIES = ("none", "stop", "rollback")


@dataclass
class GuardSettings:
    """A run that guards itself against collapse (ganctl/guard.py); values in conf/train.yaml."""

    policy: str = "none"  # none | stop | rollback
    worse_by: float = 0.25  # an evaluation of metrics.best this much worse than the best so far (relative) is a strike
    patience: int = 1  # strikes in a row before the policy acts
    max_rollbacks: int = 3  # rollbacks before it stops instead
    lr: float = 0.5  # a rollback multiplies both learning rates by this ...
    penalty: float = 2.0  # ... the gradient penalties' weights (R1, R2, WGAN-GP's) by this ...
    ada_target: float = -0.1  # ... and moves ADA's target by this (adaptive ADA only)

    @staticmethod
    def check(settings: Any) -> None:
        """The `train.guard` block's values; one clear GanctlError for the first bad one."""
        if settings.policy not in GUARD_POLICIES:
            match = difflib.get_close_matches(str(settings.policy), GUARD_POLICIES, n=1)
            raise GanctlError(f"train.guard.policy must be one of {', '.join(GUARD_POLICIES)}, got {settings.policy!r}"
                              + (f": did you mean {match[0]}?" if match else "."))
        if not settings.worse_by >= 0:
            raise GanctlError(f"train.guard.worse_by must be 0 or more (a fraction of the best value), got {settings.worse_by}.")
        if settings.patience < 1:
            raise GanctlError(f"train.guard.patience must be at least 1 (strikes in a row before it acts), got {settings.patience}.")
        if settings.max_rollbacks < 0:
            raise GanctlError(f"train.guard.max_rollbacks must be 0 or more, got {settings.max_rollbacks}.")
        for key in ("lr", "penalty"):
            if not (math.isfinite(settings[key]) and settings[key] > 0):
                raise GanctlError(f"train.guard.{key} must be a positive factor (e.g. {0.5 if key == 'lr' else 2.0}), "
                                  f"got {settings[key]}.")
        if not -1 < settings.ada_target < 1:
            raise GanctlError(f"train.guard.ada_target moves ADA's target (a value in [0, 1]) and must be between -1 and 1, "
                              f"got {settings.ada_target}.")
        if settings.policy == "rollback" and (settings.lr, settings.penalty, settings.ada_target) == (1, 1, 0):
            raise GanctlError("train.guard.policy=rollback with train.guard.lr=1, penalty=1 and ada_target=0 would restore the "
                              "checkpoint and its random state and replay the same steps: give a rollback a change.")


@dataclass
class TrainSettings:
    """Types only; the values live in conf/train.yaml. Hydra rejects e.g. train.batch_size=abc."""

    steps: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    device: str = MISSING
    log_every: int = MISSING
    sample_every: int = MISSING
    ckpt_every: int = MISSING
    num_samples: int = MISSING
    lr_schedule: str = MISSING
    augment: List[str] = MISSING
    eval_every: int = MISSING
    sync_batchnorm: bool = MISSING
    ddp_backend: str = MISSING
    global_batch_size: Optional[int] = None
    batch_gpu: Optional[int] = None  # images per forward/backward pass: the step's batch in micro-batches (`check_batch_gpu`)
    keep_last: int = MISSING
    precision: str = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    curves: bool = MISSING
    threads: Any = None  # torch's intra-op threads: null = chosen from the CPUs this process may use (ganctl/threads.py); checked in `check_threads`
    ema: EMASettings = field(default_factory=EMASettings)
    ada: AdaSettings = field(default_factory=AdaSettings)
    schedules: Dict[str, Any] = field(default_factory=dict)  # knob -> its cosine over images seen: a `Schedule`'s fields (ganctl/schedules.py)
    guard: GuardSettings = field(default_factory=GuardSettings)


@dataclass
class MetricsSettings:
    """The metrics block (ganctl/metrics.py); values in conf/train.yaml. Also the plain settings the
    metrics are computed with (`from_node`)."""

    names: List[str] = MISSING
    num_fake: int = MISSING
    num_real: Optional[int] = None
    batch_size: int = MISSING
    feature: Any = MISSING  # a registry.FEATURE_NAMES word, judge:FILE, or a node with _target_
    inception_weights: Optional[str] = None
    split: str = MISSING
    best: str = MISSING
    seed: int = MISSING
    protocol: Optional[str] = None  # a named protocol (ganctl/protocols.py); None: the values above, "custom"
    resize: str = "tf1"  # tf1 | clean: how images reach a pretrained backbone's input size (ganctl/features.py)
    feature_weights: Optional[str] = None  # the weights file of metrics.feature=dinov2 or clip
    ppl_distance: str = "lpips"  # lpips | discriminator | judge: the perceptual distance of ppl_zend / ppl_wend

    @classmethod
    def from_node(cls, node: Any) -> "MetricsSettings":
        """Plain values from a config node or dict (a MetricsSettings passes through)."""
        if isinstance(node, cls):
            return node
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})


def resolved_metrics(node: Any, dataset: Any) -> MetricsSettings:
    """The metrics block as a run evaluates with it: `feature: auto` made concrete for its dataset."""
    settings = MetricsSettings.from_node(node)
    return dataclasses.replace(settings, feature=auto_feature(settings.feature, dataset))


def auto_feature(feature: Any, dataset: Any) -> Any:
    """metrics.feature as it is used: `auto` is the judge ganctl ships for the digits when the data are
    MNIST's (dataset=mnist), else Inception; anything else as it is."""
    if feature != "auto":
        return feature
    target = dataset.get("_target_") if isinstance(dataset, (dict, DictConfig)) else None
    return f"{registry.JUDGE_PREFIX}digits" if target == "ganctl.data.mnist" else "inception"


REPORTS = ("probability", "wasserstein", "scores")

# The flat loss keys of ganctl before the units: a shorthand on the command line (`loss.r1_gamma=10`)
# and in the stored config of an older checkpoint. Each is a setting of one unit: (its name in
# loss.regularisers, its class, its setting).
LEGACY_LOSS_KEYS: dict[str, tuple[str, str, str]] = {
    "gradient_penalty": ("gradient_penalty", "ganctl.regularisers.GradientPenalty", "weight"),
    "clip": ("clip", "ganctl.regularisers.WeightClip", "bound"),
    "r1_gamma": ("r1", "ganctl.regularisers.R1", "gamma"),
    "r1_every": ("r1", "ganctl.regularisers.R1", "every"),
    "r2_gamma": ("r2", "ganctl.regularisers.R2", "gamma"),
    "r2_every": ("r2", "ganctl.regularisers.R2", "every"),
    "path_length": ("path_length", "ganctl.regularisers.PathLength", "weight"),
    "path_length_every": ("path_length", "ganctl.regularisers.PathLength", "every"),
    "path_length_decay": ("path_length", "ganctl.regularisers.PathLength", "decay"),
    "path_length_batch_shrink": ("path_length", "ganctl.regularisers.PathLength", "batch_shrink"),
}
# The setting of each unit that switches it on (its others alone leave it off, as before the units).
LEGACY_LOSS_SWITCHES = ("gradient_penalty", "clip", "r1_gamma", "r2_gamma", "path_length")



@dataclass
class LossSettings:
    """A loss option (conf/loss/*.yaml; built into `losses.GANLoss`): D's and G's loss functions
    (_partial_ targets), how the critic is trained and read, and the regularisers by name
    (`ganctl.regularisers`: each a _target_ node with its own settings)."""

    discriminator: Any = MISSING
    generator: Any = MISSING
    critic_steps: int = 1  # D updates per G update
    report: str = "scores"  # how D's scores are logged: probability | wasserstein | scores
    relativistic: bool = False  # G's loss also takes D's scores of the step's real images (RpGAN)
    rescore_reals: bool = False  # relativistic: G's loss scores the step's reals again with the updated D (R3GAN), instead of reusing D's scores from its update
    boundary: Optional[float] = 0.0  # D's score on the line between real and fake: 0 (BCE, hinge, RpGAN), 0.5 (least squares), null (Wasserstein)
    regularisers: Dict[str, Any] = field(default_factory=dict)  # name -> {_target_: ganctl.regularisers.R1, gamma: ..., every: ...}

    @staticmethod
    def check(node: DictConfig) -> None:
        """The loss block's own values; the regularisers check theirs when they are built."""
        if node.critic_steps < 1:
            raise GanctlError(f"loss.critic_steps must be at least 1, got {node.critic_steps}.")
        if node.report not in REPORTS:
            raise GanctlError(f"loss.report must be one of {', '.join(REPORTS)}, got {node.report!r}.")
        if node.rescore_reals and not node.relativistic:
            raise GanctlError("loss.rescore_reals=true re-scores the real images for G's loss, but this loss's G loss "
                              "does not take D's scores of them (loss.relativistic=false): use a relativistic loss "
                              "(loss=rpgan, loss=r3gan), or set loss.rescore_reals=false.")
        labels = OmegaConf.select(node, "discriminator", default={})
        for key in ("real_target", "label_noise", "flip_prob"):
            value = labels.get(key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise GanctlError(f"loss.discriminator.{key} must be in [0.0, 1.0], got {value}.")


GENERATOR_WAYS = ("none", "concat", "batchnorm")  # how G sees the label
DISCRIMINATOR_WAYS = ("none", "concat", "projection", "auxiliary")  # how D does
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")  # train.augment (ganctl/augment.py)


@dataclass
class ConditioningSettings:
    """How G and D see the class label (conf/conditioning/*.yaml; ganctl/models/conditioning.py).
    The defaults are an unconditional GAN's, and what a checkpoint from before conditioning means."""

    generator: str = "none"  # none | concat | batchnorm
    discriminator: str = "none"  # none | concat | projection | auxiliary
    embedding_dim: int = 16  # the label embedding that `concat` joins to G's latent and D's input
    auxiliary_weight: float = 1.0  # ACGAN: weight of the auxiliary classifier's loss

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        """The conditioning block's values: known ways, both networks conditioned or neither, sizes and weights in range."""
        generator, discriminator = settings.get("generator", "none"), settings.get("discriminator", "none")
        if generator not in GENERATOR_WAYS:
            raise GanctlError(f"conditioning.generator must be one of {', '.join(GENERATOR_WAYS)}, got {generator!r}.")
        if discriminator not in DISCRIMINATOR_WAYS:
            raise GanctlError(f"conditioning.discriminator must be one of {', '.join(DISCRIMINATOR_WAYS)}, got {discriminator!r}.")
        if (generator == "none") != (discriminator == "none"):
            seeing, blind = ("G", "D") if discriminator == "none" else ("D", "G")
            raise GanctlError(
                f"conditioning.generator={generator} with conditioning.discriminator={discriminator}: only {seeing} would "
                f"see the label, and a label {blind} cannot see teaches nothing (G cannot learn to make a class D does "
                "not check, and D cannot check a class G was not asked for). Condition both, e.g. conditioning=projection, "
                "or neither (conditioning=none)."
            )
        embedding_dim = settings.get("embedding_dim", 16)
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise GanctlError(f"conditioning.embedding_dim must be a whole number, at least 1, got {embedding_dim!r}.")
        weight = settings.get("auxiliary_weight", 1.0)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise GanctlError(f"conditioning.auxiliary_weight must be 0 or more, got {weight!r}.")


@dataclass
class Schema:
    model: Any = MISSING
    loss: LossSettings = field(default_factory=LossSettings)
    conditioning: ConditioningSettings = field(default_factory=ConditioningSettings)
    optimizer: Any = MISSING
    dataset: Any = MISSING
    train: TrainSettings = field(default_factory=TrainSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logger: Dict[str, Any] = field(default_factory=dict)  # the trackers, by name (conf/logger/, ganctl.trackers)
    resume: Optional[str] = None
    init_from: Optional[str] = None  # fine-tuning: a checkpoint or run directory whose G, D and EMA weights start a new run
    init_strict: bool = False  # with init_from: refuse any tensor that would be re-initialised or is new


ConfigStore.instance().store(name="schema", node=Schema)


def check(cfg: DictConfig) -> None:
    """Value checks the types cannot express; one clear GanctlError for the first problem. First of
    all, that the config names nothing but ganctl's components (or a trusted module's); then the
    values, with no torch import (a mistake is answered at once); last the keys each component takes
    (which imports the components)."""
    registry.check_config(cfg)
    LossSettings.check(cfg.loss)
    train = cfg.train
    for key in ("steps", "batch_size", "log_every", "num_samples"):
        if train[key] < 1:
            raise GanctlError(f"train.{key} must be at least 1, got {train[key]}.")
    for key in ("sample_every", "ckpt_every", "keep_last"):
        if train[key] < 0:
            raise GanctlError(f"train.{key} must be 0 or more, got {train[key]}.")
    check_precision(train.precision)
    check_threads(OmegaConf.select(train, "threads"))
    if train.ddp_backend not in DDP_BACKENDS:
        raise GanctlError(f"train.ddp_backend must be one of {', '.join(DDP_BACKENDS)}, got {train.ddp_backend!r}.")
    if train.global_batch_size is not None and train.global_batch_size < 1:
        raise GanctlError(f"train.global_batch_size must be at least 1, or null (each process draws train.batch_size); got {train.global_batch_size}.")
    if train.global_batch_size is None:  # (else the batch per process is known once the processes are)
        check_batch_gpu(train.get("batch_gpu"), train.batch_size)
    if not 0.0 <= train.ema.decay < 1.0:
        raise GanctlError(f"train.ema.decay must be in [0, 1), got {train.ema.decay} (0 turns EMA off).")
    for key in ("half_life_kimg", "rampup"):
        value = OmegaConf.select(train, f"ema.{key}")
        if value is not None and not value > 0:
            raise GanctlError(f"train.ema.{key} must be positive, or null (off); got {value}.")
    for net in ("g", "d"):
        lr = OmegaConf.select(cfg, f"optimizer.{net}.lr")
        if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
            raise GanctlError(f"optimizer.{net}.lr must be a positive number, got {lr!r}.")
    if train.lr_schedule not in ("constant", "linear", "cosine"):
        raise GanctlError(f"train.lr_schedule must be constant, linear or cosine, got {train.lr_schedule!r}.")
    unknown = [name for name in train.augment if name not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise GanctlError(f"train.augment: unknown transform {unknown[0]!r}; choose from {', '.join(DIFFAUGMENT_POLICIES)}.")
    if OmegaConf.select(cfg, "train.ada") is not None:
        AdaSettings.check(train.ada)
    check_schedules(cfg)
    freeze = OmegaConf.select(cfg, "model.discriminator.freeze", default=0)
    if not (isinstance(freeze, int) and freeze >= 0):
        raise GanctlError(f"model.discriminator.freeze must be a whole number of D's blocks, 0 or more; got {freeze!r}.")
    if OmegaConf.select(cfg, "train.guard") is not None:
        GuardSettings.check(train.guard)
    image_size = OmegaConf.select(cfg, "dataset.image_size")
    if image_size is not None and not (isinstance(image_size, int) and image_size >= MIN_IMAGE_SIZE):
        raise GanctlError(f"dataset.image_size must be a whole number of pixels, at least {MIN_IMAGE_SIZE}; got {image_size!r}.")
    if OmegaConf.select(cfg, "train.eval_every", default=0) < 0:
        raise GanctlError(f"train.eval_every must be 0 (off) or more, got {cfg.train.eval_every}.")
    if OmegaConf.select(cfg, "conditioning") is not None:
        ConditioningSettings.check(OmegaConf.to_container(cfg.conditioning, resolve=True))
    if OmegaConf.select(cfg, "metrics") is not None:
        check_metrics(cfg.metrics, conditional=is_conditional(cfg), dataset=OmegaConf.select(cfg, "dataset"))
    check_keys(cfg)
    for net in ("g", "d"):
        if OmegaConf.select(cfg, f"optimizer.{net}") is not None:
            check_optimizer(cfg.optimizer[net], f"optimizer.{net}")


def check_threads(threads: Any) -> None:
    """train.threads: null (automatic) or a whole number of threads, at least 1. Typed Any in the schema
    so that every wrong value (0, -2, 1.5, abc) gets this one message, not Hydra's type error."""
    if threads is None or (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        return
    raise GanctlError(f"train.threads must be a whole number of torch threads, at least 1 (e.g. train.threads=2), or null "
                      f"to choose from the CPUs this process may use; got {threads!r}.")


def check_batch_gpu(batch_gpu: Any, batch_size: int) -> int:
    """train.batch_gpu made concrete for a batch of `batch_size` images per process: the images of one
    forward and backward pass (null: the whole batch). It must divide the batch, so that every
    micro-batch holds as many images and weighs as much in the step's gradient."""
    if batch_gpu is None:
        return batch_size
    if isinstance(batch_gpu, bool) or not isinstance(batch_gpu, int) or batch_gpu < 1 or batch_size % batch_gpu:
        divisors = [k for k in range(batch_size - 1, 0, -1) if batch_size % k == 0][:3] or [batch_size]
        raise GanctlError(
            f"train.batch_gpu={batch_gpu!r} must be a whole number of images that divides the batch of {batch_size} per "
            f"process (e.g. {', '.join(f'train.batch_gpu={k}' for k in divisors)}), or null for the whole batch at once."
        )
    return batch_gpu


def check_schedules(cfg: DictConfig) -> None:
    """train.schedules: each schedule's values, and no other setting that would move the same knob."""
    schedules = OmegaConf.select(cfg, "train.schedules") or {}
    for knob, node in schedules.items():
        Schedule.check(node, knob, list(cfg.loss.regularisers))
    train = cfg.train
    if "lr" in schedules and train.lr_schedule != "constant":
        raise GanctlError(f"train.schedules.lr and train.lr_schedule={train.lr_schedule} both move the learning rate: "
                          "keep one (train.lr_schedule=constant with the schedule).")
    if "ema_half_life_kimg" in schedules and (train.ema.half_life_kimg is not None or train.ema.rampup is not None):
        raise GanctlError("train.schedules.ema_half_life_kimg sets the EMA's half-life at every step: leave "
                          "train.ema.half_life_kimg and train.ema.rampup null.")
    if "ada_p" in schedules and train.ada.mode != "fixed":
        raise GanctlError(f"train.schedules.ada_p sets ADA's p at every step, which needs train.ada.mode=fixed "
                          f"(got {train.ada.mode}: {'p steered by D' if train.ada.mode == 'adaptive' else 'no augmentation'}).")


def is_conditional(cfg: DictConfig | dict) -> bool:
    """Whether the config (composed, or a checkpoint's plain one) trains a class-conditional GAN: G sees labels."""
    conditioning = cfg.get("conditioning") or {}
    return conditioning.get("generator", "none") != "none"


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise GanctlError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")


def check_metric_names(names: Any) -> list[str]:
    """Metric names (metrics.names or --metrics), lower-cased and without repeats; unknown ones refused."""
    names = [str(name).lower() for name in names]
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise GanctlError(f"Unknown metric {unknown[0]!r} (metrics.names or --metrics): choose from {', '.join(METRIC_NAMES)}.")
    if not names:
        raise GanctlError(f"No metric given (metrics.names or --metrics): choose from {', '.join(METRIC_NAMES)}.")
    return list(dict.fromkeys(names))


def check_metrics(metrics: DictConfig, conditional: bool = False, dataset: Any = None) -> None:
    """The metrics block: a known protocol, names, sizes that torchmetrics can use, a best metric among
    the names (or, for a class-conditional GAN, the intra-class mean of one of them), a feature
    extractor ganctl has, and the metrics only some extractors or generators can give."""
    if metrics.get("protocol") is not None:
        from ganctl import protocols

        protocols.get(metrics.protocol)
    names = check_metric_names(metrics.names)
    if metrics.num_fake < 2:
        raise GanctlError(f"metrics.num_fake must be at least 2, got {metrics.num_fake}.")
    if metrics.num_real is not None and metrics.num_real < 2:
        raise GanctlError(f"metrics.num_real must be at least 2 or null (every image), got {metrics.num_real}.")
    if metrics.batch_size < 1:
        raise GanctlError(f"metrics.batch_size must be at least 1, got {metrics.batch_size}.")
    if metrics.split not in SPLITS:
        raise GanctlError(f"metrics.split must be train or test, got {metrics.split!r}.")
    feature = check_feature(metrics.feature)
    judged = judge_metrics(auto_feature(feature, dataset), conditional)
    intra = [name for name, base in INTRA_CLASS_METRICS.items() if base in names] if conditional else []
    if metrics.best not in names + intra + judged:
        raise GanctlError(f"metrics.best={metrics.best} must be one of metrics.names ({', '.join(names)})"
                          + (f" or {', '.join(intra + judged)}" if intra + judged else "") + ".")
    if metrics.get("resize", "tf1") not in ("tf1", "clean"):
        raise GanctlError(f"metrics.resize must be tf1 (TensorFlow 1.x bilinear, as the original FID) or clean "
                          f"(clean-fid's PIL bicubic), got {metrics.resize!r}.")
    asked = [name for name in JUDGE_METRICS if name in names]
    if asked and not judged:
        raise GanctlError(f"{asked[0]} is a judge's verdict: it needs metrics.feature=judge:FILE (a judge from "
                          "`ganctl judge train`, or judge:digits for MNIST digits).")
    if "judge_accuracy" in names and not conditional:
        raise GanctlError("judge_accuracy is the share of each class's samples the judge gives that class: it needs a "
                          "class-conditional generator. An unconditional one's is class_balance.")
    if metrics.get("ppl_distance", "lpips") not in PPL_DISTANCES:
        raise GanctlError(f"metrics.ppl_distance must be one of {', '.join(PPL_DISTANCES)}, got {metrics.ppl_distance!r}.")


def check_feature(feature: Any) -> Any:
    """metrics.feature: one of the backbones ganctl has by name, a judge file, or a ganctl extractor node."""
    if isinstance(feature, str) and (feature in registry.FEATURE_NAMES or feature.startswith(registry.JUDGE_PREFIX)):
        return feature
    if isinstance(feature, DictConfig) and "_target_" in feature:
        return feature
    raise GanctlError(
        f"metrics.feature must be one of {', '.join(registry.FEATURE_NAMES)}, judge:FILE (a judge from ganctl judge train), "
        f"or a node with _target_ naming a ganctl feature extractor, e.g. "
        f"metrics.feature={{_target_:ganctl.metrics.PooledPixels,size:8}}; got {feature!r}."
    )


def judge_metrics(feature: Any, conditional: bool) -> list[str]:
    """The verdict a judge adds to the cards: judge_accuracy for a conditional generator, class_balance
    for an unconditional one; nothing without a judge."""
    if not (isinstance(feature, str) and feature.startswith(registry.JUDGE_PREFIX)):
        return []
    return ["judge_accuracy"] if conditional else ["class_balance"]


# ---------------------------------------------------------------- keys and optimizer settings

HYDRA_KEYWORDS = ("_target_", "_partial_")
BUILD_KEYWORDS = {("dataset", "mirror")}  # (node, key): read by ganctl where the node is built, not passed to its _target_
# Optimizer keywords that depend on the device the run trains on: not tried out on a CPU tensor.
DEVICE_KEYWORDS = ("fused", "capturable")


def keyword_parameters(target: Any) -> Optional[list[inspect.Parameter]]:
    """The keyword parameters of the component `target` names, or None when it takes any (**kwargs)
    or is not a component (building it will say so). Only names the registry accepts are looked up."""
    if not registry.is_component(target):
        return None
    try:
        parameters = inspect.signature(registry.resolve(str(target))).parameters.values()
    except Exception:  # not importable or no signature: `build` reports it
        return None
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def settings_of(parameters: list[inspect.Parameter], node: Any) -> list[str]:
    """The parameters a config node may set: those it sets and those with defaults (the others, such
    as an optimizer's params, a loss's scores or a model's channels, arrive when it is built or called)."""
    return [p.name for p in parameters if p.default is not p.empty or (isinstance(node, DictConfig) and p.name in node)]


def closest(name: str, known: list[str]) -> Optional[str]:
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key(key: str, known: list[str], where: str = "", takes: Optional[str] = None) -> GanctlError:
    """The one message for a key ganctl does not know: the closest known key among its siblings
    (`known`, full paths), else what the node's callable takes."""
    parent, _, name = key.rpartition(".")
    siblings = [k for k in known if k.rpartition(".")[0] == parent]
    match = closest(name, [k.rpartition(".")[2] for k in siblings]) if siblings else None
    match = (f"{parent}.{match}" if parent else match) if match else (None if siblings else closest(key, known))
    message = f"Unknown key {key}{f' ({where})' if where else ''}: "
    if match:
        message += f"did you mean {match}?"
    elif takes:
        message += takes
    else:
        message += "ganctl's config has no such key."
    return GanctlError(message + " `ganctl train --cfg job` prints every key of the config.")


def takes_message(node_path: str, target: str, settings: list[str]) -> str:
    return f"{target} (at {node_path}) takes " + (", ".join(settings) if settings else "no settings") + "."


def walk(node: Any, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every dict node of a config with its dotted path, the root first."""
    if isinstance(node, DictConfig):
        yield path, node
        for key in node.keys():
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                yield from walk(child, f"{path}.{key}" if path else str(key))


def check_keys(cfg: DictConfig) -> None:
    """Every key is one ganctl reads: a typed block (train, metrics, loss, ...) holds only its
    fields, and a node with _target_ only keywords its callable accepts. (`+key=value` on the
    command line can add any key; this is where one that would be ignored is refused.)"""
    for path, node in walk(cfg):
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            fields = [f.name for f in dataclasses.fields(schema)]
            for key in node.keys():
                if key not in fields:
                    known = [f"{path}.{f}" if path else f for f in fields]
                    raise unknown_key(f"{path}.{key}" if path else str(key), known)
        parameters = keyword_parameters(node._target_) if "_target_" in node else None
        for key in node.keys() if parameters is not None else ():
            if key not in HYDRA_KEYWORDS and key not in [p.name for p in parameters] and (path, key) not in BUILD_KEYWORDS:
                settings = settings_of(parameters, node)
                raise unknown_key(f"{path}.{key}", [f"{path}.{k}" for k in settings],
                                  takes=takes_message(path, node._target_, settings))


def check_optimizer(node: DictConfig, where: str) -> None:
    """What an optimizer node asks for, checked by the torch.optim class itself before anything is
    built: keywords it takes (check_keys), tuples of the length of its defaults (Adam's betas),
    and the values its constructor accepts, tried on a throwaway parameter."""
    import torch

    target = node.get("_target_")
    if target not in registry.OPTIMIZERS:
        return  # a user's own optimizer (--trust) checks its own settings when it is built
    cls = registry.resolve(target)
    settings = OmegaConf.to_container(node, resolve=True)
    for name, parameter in inspect.signature(cls).parameters.items():
        if isinstance(parameter.default, tuple) and name in settings:
            value = settings[name]
            if not isinstance(value, (list, tuple)) or len(value) != len(parameter.default):
                example = ",".join(str(v) for v in parameter.default)
                raise GanctlError(
                    f"{where}.{name} must be a list of {len(parameter.default)} numbers for {target}, "
                    f"e.g. {where}.{name}=[{example}]; got {value!r}."
                )
    trial = {k: v for k, v in settings.items() if k not in HYDRA_KEYWORDS and k not in DEVICE_KEYWORDS}
    try:
        cls([torch.nn.Parameter(torch.zeros(1))], **trial)
    except (ValueError, TypeError, RuntimeError, IndexError, KeyError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise GanctlError(f"{where}: {target} refuses these settings ({reason}). Fix them under {where}.") from None


def override_key(override: str) -> str:
    """'train.steps=2000' -> 'train.steps'; '+a.b=1' -> 'a.b'; 'model=mlp' -> 'model'."""
    return override.split("=", 1)[0].lstrip("+~")


def resumed_config(
    stored: dict, stored_choices: dict, current: DictConfig, overrides: list[str], choices: dict
) -> DictConfig:
    """The stored config of a run being resumed, with the command line's schedule overrides applied.

    Any override that would change what is trained (architecture, loss, optimizer, data) is
    refused: a checkpoint's weights only make sense with the config that produced them.
    """
    cfg = OmegaConf.create(stored)  # (as `checkpoint.upgrade` completed it)
    cfg.loss = OmegaConf.merge(OmegaConf.structured(LossSettings), cfg.loss)
    cfg.conditioning = OmegaConf.merge(OmegaConf.structured(ConditioningSettings), cfg.get("conditioning") or {})
    for override in overrides:
        key = override_key(override)
        if key == "resume":
            continue
        if key == "logger" or key.startswith("logger."):  # where the numbers go, not what is trained
            cfg.logger = current.logger
            continue
        if key == "experiment":
            raise GanctlError(
                f"Cannot resume with {override}: a resumed run keeps the config it was started with. "
                "Start a new run to use an experiment."
            )
        if key in GROUPS:
            stored_choice = stored_choices[key]
            if choices[key] != stored_choice:
                raise GanctlError(
                    f"Cannot resume with {override}: the run was trained with {key}={stored_choice}. "
                    "A resumed run keeps its model, loss, optimizer, dataset and conditioning; start a new run instead."
                )
            continue
        new, old = OmegaConf.select(current, key), OmegaConf.select(cfg, key)
        if new == old:
            continue
        if key not in SCHEDULE_KEYS:
            raise GanctlError(
                f"Cannot resume with {override}: the run was trained with {key}={old}, and a resumed run "
                f"keeps its architecture, loss, optimizer and data. Only these may change: "
                f"{', '.join(SCHEDULE_KEYS)}. Start a new run to change {key}."
            )
        OmegaConf.update(cfg, key, new)
    return cfg


@functools.lru_cache(maxsize=1)
def todays_defaults() -> DictConfig:
    """conf/train.yaml's own blocks (train, metrics, ...) as written there: what a key means that a
    checkpoint from before it lacks, and eval's metric settings without a run."""
    return OmegaConf.load(Path(config_dir()) / "train.yaml")

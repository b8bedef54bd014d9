"""Class-conditional GANs: every conditioning option with every model and loss trains or is refused
in one line by a rule of its conditioning or of its loss's regularisers (each rule has its own test); labels reach G and D; runs resume exactly; sampling by class is deterministic;
evaluation adds intra-class FID; data without labels is refused at start."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from ganctl import checkpoint, config
from ganctl import data as datasets
from ganctl.config import config_dir
from ganctl.errors import GanctlError
from ganctl.gan import GAN
from ganctl.sample.grid import sample
from ganctl.sampling import Sampler
from helpers import TINY, TINY_DCGAN, compose_config, run, run_cli
from test_gan_family import SMALL

CPU = torch.device("cpu")


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (Path(config_dir()) / group).glob("*.yaml"))


MODELS, LOSSES = options("model"), options("loss")  # every option, including ones added later
CONDITIONINGS = [option for option in options("conditioning") if option != "none"]


@lru_cache(maxsize=None)
def pair_config(model: str, loss: str):
    """One composition per model x loss (Hydra's compose is the slow part); conditioning is set on top."""
    return compose_config(f"model={model}", f"loss={loss}", *SMALL.get(model, []), "loss.critic_steps=2", "train.device=cpu")[0]


def with_conditioning(cfg, option: str):
    """`cfg` as `conditioning=<option>` composes it: the option's file merged into the schema."""
    cfg = cfg.copy()
    cfg.conditioning = OmegaConf.merge(cfg.conditioning, OmegaConf.load(Path(config_dir()) / "conditioning" / f"{option}.yaml"))
    config.check(cfg)
    return cfg


@pytest.fixture(scope="module")
def digits():
    return datasets.build(compose_config()[0].dataset, CPU, labels=True)


def test_an_option_merged_on_top_is_what_hydra_composes() -> None:
    for option in CONDITIONINGS:
        composed, choices = compose_config("model=mlp", f"conditioning={option}")
        assert choices["conditioning"] == option
        assert with_conditioning(compose_config("model=mlp")[0], option) == composed


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_conditioning_with_every_model_and_loss_trains_or_is_refused(digits, conditioning: str, model: str, loss: str) -> None:
    cfg = with_conditioning(pair_config(model, loss), conditioning)
    torch.manual_seed(0)
    size = 32 if model == "stylegan2" else 28  # (StyleGAN2 makes powers of two from 32)
    try:
        gan = GAN.from_config(cfg, 1, size, CPU, classes=digits.classes)
    except GanctlError as error:  # which rule: the conditioning's, or one of the loss's regularisers'
        rules = ["conditioning.", *(f"loss.regularisers.{name}" for name in cfg.loss.regularisers)]
        assert any(rule in str(error) for rule in rules) and "\n" not in str(error), error
        return
    seen: list[torch.Tensor] = []

    def recorded(batches):
        for images, labels in batches:
            seen.append(labels)
            yield images, labels

    batches = recorded(datasets.endless(digits, 4, labels=True))
    for step in (1, 2):
        statistics = gan.step(batches, step)
    assert all(torch.isfinite(value) for value in statistics.values()) and len(seen) == 2 * cfg.loss.critic_steps

    # The label reaches G (and D, unless it only classifies): another class, another image or score.
    # (Class-conditional BatchNorm starts the same for every class: compare two classes G trained on.)
    first, second = seen[-1][0], next(label for label in seen[-1] if label != seen[-1][0])
    latents = torch.randn(3, gan.latent_dim)
    one, other = (gan.sampler(latents, labels=torch.full((3,), int(c))) for c in (first, second))
    assert not torch.equal(one, other)
    if conditioning != "acgan":
        gan.discriminator.eval()
        scores = [gan.discriminator(one, torch.full((3,), int(c))) for c in (first, second)]
        assert not torch.equal(*scores)
    else:
        assert statistics["classifier/loss"] > 0  # the auxiliary classifier's loss was computed and trained


@pytest.mark.parametrize("overrides,message", [
    (["conditioning=projection", "model=mlp", "model.generator.batch_norm=false"], "has no BatchNorm"),
    (["conditioning=projection", "model=conv", "model.generator.batch_norm_momentum=null"], "has no BatchNorm"),
    (["conditioning=projection", "conditioning.generator=none"], "only D would see the label"),
    (["conditioning=acgan", "conditioning.discriminator=none"], "only G would see the label"),
    (["conditioning=concat", "conditioning.generator=onehot"], "conditioning.generator must be one of none, concat, batchnorm"),
    (["conditioning=concat", "conditioning.embedding_dim=0"], "conditioning.embedding_dim must be"),
    (["conditioning=acgan", "conditioning.auxiliary_weight=-1"], "auxiliary_weight must be 0 or more"),
    (["conditioning=none", "metrics.best=intra_fid"], "metrics.best=intra_fid must be one of metrics.names"),
])
def test_conditioning_that_cannot_work_is_refused_with_the_reason(digits, overrides: list[str], message: str) -> None:
    cfg, _ = compose_config(*overrides, "train.device=cpu")
    with pytest.raises(GanctlError, match=message):
        config.check(cfg)
        GAN.from_config(cfg, 1, 28, CPU, classes=digits.classes)


# ----------------------------------------------------------------------------- a conditional run


CONDITIONAL = [*TINY, *TINY_DCGAN, "conditioning=projection"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("conditional")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GANCTL_CACHE_DIR", str(directory.parent / "conditional-cache"))  # never $HOME
        run(directory, *CONDITIONAL, "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:4}", "metrics.num_fake=200",
            "metrics.num_real=1000", "train.eval_every=4", "metrics.names=[fid]", "metrics.best=intra_fid")
    return directory


def test_the_checkpoint_stores_the_classes_and_the_grid_has_a_row_per_class(run_dir: Path) -> None:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    assert state["data"] == {"channels": 1, "image_size": 28, "classes": [str(digit) for digit in range(10)]}
    assert state["choices"]["conditioning"] == "projection"
    assert json.loads((run_dir / "summary.json").read_text())["conditioning"] == "projection"
    # 16 grid images for 10 classes: one per class, a column of 10 rows (28 px cells, 2 px padding)
    assert Image.open(run_dir / "samples" / "step_0000004.png").size == (1 * 30 + 2, 10 * 30 + 2)
    # evaluated during training too: intra-class FID beside the overall one, and best.pt chosen by it
    cards = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [card["metric"] for card in cards[:3]] == ["fid", "intra_fid", "fid/0"] and len(cards) == 12
    best = checkpoint.load(checkpoint.best_path(run_dir))["best"]
    assert best == {"metric": "intra_fid", "value": cards[1]["value"], "step": 4}


def test_a_conditional_run_resumes_exactly(tmp_path: Path) -> None:
    overrides = [*TINY, *TINY_DCGAN, "conditioning=acgan", "train.ckpt_every=0", "train.sample_every=0"]
    run(tmp_path / "straight", *overrides, "train.steps=6")
    run(tmp_path / "resumed", *overrides, "train.steps=3")
    state = checkpoint.load(checkpoint.last_path(tmp_path / "resumed"))
    run(tmp_path / "resumed", *overrides, "train.steps=6", resume=state)
    a, b = (checkpoint.load(checkpoint.last_path(tmp_path / name)) for name in ("straight", "resumed"))
    for key in ("generator", "discriminator", "generator_ema", "optimizer_g", "optimizer_d"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_refuses_a_change_of_conditioning(run_dir: Path) -> None:
    state = checkpoint.load(checkpoint.last_path(run_dir))
    for override in ("conditioning=acgan", "conditioning.embedding_dim=4"):
        cfg, choices = compose_config(*CONDITIONAL, override)
        with pytest.raises(GanctlError, match="Cannot resume with conditioning"):
            config.resumed_config(state["config"], state["choices"], cfg, [override], choices)


def test_sampling_by_class_is_deterministic_and_independent_of_the_other_classes(run_dir: Path, tmp_path: Path) -> None:
    a = sample(run_dir, num=6, seed=4, classes="3", out=tmp_path / "a.png", images_dir=tmp_path / "a", device="cpu")
    b = sample(run_dir, num=6, seed=4, classes="3", out=tmp_path / "b.png", images_dir=tmp_path / "b", device="cpu")
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["3", "latents.npy"]  # the latents of every class's images
    threes = sorted((tmp_path / "a" / "3").iterdir())
    assert [p.name for p in threes] == [f"{i:04d}.png" for i in range(6)]
    assert [p.read_bytes() for p in threes] == [p.read_bytes() for p in sorted((tmp_path / "b" / "3").iterdir())]

    sample(run_dir, num=6, seed=4, classes="7,3", out=tmp_path / "c.png", images_dir=tmp_path / "c", device="cpu")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["3", "7", "latents.npy"]
    assert [p.read_bytes() for p in sorted((tmp_path / "c" / "3").iterdir())] == [p.read_bytes() for p in threes]
    assert [p.read_bytes() for p in sorted((tmp_path / "c" / "7").iterdir())] != [p.read_bytes() for p in threes]
    assert Image.open(tmp_path / "c.png").size == (6 * 30 + 2, 2 * 30 + 2)  # one row per class


def test_the_per_class_grid_shares_latents_down_each_column(run_dir: Path) -> None:
    sampler = Sampler.from_checkpoint(checkpoint.load(checkpoint.last_path(run_dir)), CPU)
    images = sampler.by_class([2, 5], num=3, seed=1)
    latents = sampler.latents(3, seed=1)
    torch.testing.assert_close(images[3:], sampler(latents, labels=torch.full((3,), 5)), rtol=0, atol=0)
    assert sampler.class_index("5") == 5 and sampler.class_index(" 7") == 7


def test_class_mistakes_are_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(GanctlError, match=r"Unknown class 'cat': this generator's 10 classes are 0, 1, 2, .*, 9"):
        sample(run_dir, classes="3,cat", device="cpu")
    with pytest.raises(GanctlError, match="Unknown class '10'"):
        sample(run_dir, classes="10", device="cpu")
    unconditional = tmp_path / "unconditional"
    run(unconditional, *TINY, *TINY_DCGAN, "train.steps=1")
    with pytest.raises(GanctlError, match="--class 3: this checkpoint's generator is unconditional"):
        sample(unconditional, classes="3", device="cpu")


def test_eval_adds_intra_class_fid_from_the_real_features_split_by_class(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    from ganctl.evaluate import evaluate

    cards, _ = evaluate(run_dir, names=["fid", "kid"], device="cpu", out=tmp_path / "cards.json")
    by_name = {card["metric"]: card for card in cards}
    digits = [str(digit) for digit in range(10)]
    assert list(by_name) == ["fid", "kid", "intra_fid", *(f"fid/{d}" for d in digits), "intra_kid", *(f"kid/{d}" for d in digits)]
    per_class = [by_name[f"fid/{d}"]["value"] for d in digits]
    assert by_name["intra_fid"]["value"] == pytest.approx(sum(per_class) / 10)
    assert all(value > 0 for value in per_class) and by_name["intra_fid"]["options"]["classes"] == 10
    # 200 fakes in the real classes' proportions (the first 1,000 training digits), 1,000 real images split by class
    assert sum(by_name[f"fid/{d}"]["num_fake"] for d in digits) == 200
    real_counts = torch.bincount(datasets.bundled_mnist()[1][:1000], minlength=10).tolist()
    assert [by_name[f"fid/{d}"]["num_real"] for d in digits] == real_counts
    assert [by_name[f"fid/{d}"]["class"] for d in digits] == digits
    cached = torch.load(next((tmp_path / "cache" / "real_features").glob("*.pt")), weights_only=True)
    assert torch.equal(cached["labels"], datasets.bundled_mnist()[1][:1000])


def test_per_class_scores_are_torchmetrics_own_on_each_class() -> None:
    """The intra-class FID of labelled images: each class's FID is torchmetrics' on that class's images."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from ganctl import metrics

    images, labels = datasets.bundled_mnist("train")
    real = datasets.InMemoryImages(images[:600], CPU, labels=labels[:600], classes=[str(d) for d in range(10)])
    fake, fake_labels = (part[:300] for part in datasets.bundled_mnist("test"))
    settings = dict(names=["fid"], num_fake=300, num_real=None, batch_size=100, split="train", seed=0, inception_weights=None,
                    feature={"_target_": "ganctl.metrics.PooledPixels", "size": 4})
    evaluator = metrics.Evaluator(settings, real, CPU, classes=real.classes)
    cards = {card["metric"]: card["value"] for card in evaluator.score([fake], 0, fake_labels)}
    for digit in (0, 6):
        fid = FrechetInceptionDistance(feature=metrics.PooledPixels(4), input_img_size=(1, 28, 28))
        fid.update(images[:600][labels[:600] == digit], real=True)
        fid.update(fake[fake_labels == digit], real=False)
        assert cards[f"fid/{digit}"] == pytest.approx(fid.compute().item(), rel=1e-4, abs=1e-6)


# ----------------------------------------------------------------------------- data without labels


@pytest.mark.parametrize("layout,message", [
    ("flat", "not in class subfolders"),
    ("loose", "1 image file lies directly in"),
    ("one_class", "at least two classes, but this dataset has one ('cats')"),
])
def test_folders_without_labels_are_refused_for_conditioning(tmp_path: Path, monkeypatch, layout: str, message: str) -> None:
    monkeypatch.setenv("GANCTL_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "images"
    for name in {"flat": ["a.png", "b.png"], "loose": ["cats/a.png", "dogs/b.png", "c.png"], "one_class": ["cats/a.png"]}[layout]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 100).save(root / name)
    cfg, _ = compose_config("dataset=folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1")
    datasets.build(cfg.dataset, CPU)  # unconditional: fine
    with pytest.raises(GanctlError, match=f"A class-conditional GAN needs .*{re.escape(message)}"):
        datasets.build(cfg.dataset, CPU, labels=True)


def test_the_cli_refuses_conditioning_on_a_flat_folder_before_training(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / f"{i}.png")
    result = run_cli("train", "conditioning=acgan", "dataset=folder", f"dataset.root={root}", "dataset.image_size=28",
                     *TINY, *TINY_DCGAN, f"hydra.run.dir={tmp_path / 'run'}", env={"GANCTL_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "A class-conditional GAN needs class labels, but the images in" in result.stderr
    assert "conditioning=none" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_sweep_over_conditionings_then_sampling_by_class_from_the_command_line(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY, *TINY_DCGAN, "train.steps=2", "train.sample_every=0", "conditioning=concat,acgan",
                     f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for job, option in (("0", "concat"), ("1", "acgan")):
        assert json.loads((sweep_dir / job / "summary.json").read_text())["conditioning"] == option
    assert "| conditioning |" in (sweep_dir / "summary.md").read_text()

    images = tmp_path / "images"
    result = run_cli("sample", str(sweep_dir / "1"), "--class", "3,8", "--num", "2", "--images-dir", str(images), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sorted(str(p.relative_to(images)) for p in images.rglob("*.png")) == ["3/0000.png", "3/0001.png", "8/0000.png", "8/0001.png"]
    result = run_cli("sample", str(sweep_dir / "1"), "--class", "cat", "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Unknown class 'cat': this generator's 10 classes are 0, 1, 2" in result.stderr

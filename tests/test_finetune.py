"""Fine-tuning (init_from=): what is copied, re-initialised and refused; FreezeD; lineage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganctl import checkpoint, config, finetune, sweep
from ganctl.errors import GanctlError
from ganctl.gan import GAN
from helpers import TINY, TINY_DCGAN, build_gan, compose_config, run, run_cli
from test_train import straight_and_resumed

TINY_RUN = [*TINY, *TINY_DCGAN]


def source_gan(path: Path, *overrides: str) -> tuple[GAN, dict]:
    """The GAN a checkpoint holds, rebuilt from its config (as a resume would)."""
    state = checkpoint.load(checkpoint.last_path(path))
    cfg, _ = compose_config(*TINY_RUN, *overrides)
    gan = GAN.from_config(cfg, 1, 28, torch.device("cpu"), classes=state["data"].get("classes"))
    gan.load_state_dict(checkpoint.gan_state(state))
    return gan, state


def fine_tune_gan(source: Path, *overrides: str, classes: list[str] | None = None, strict: bool = False):
    """A new run's GAN for `overrides` (classes: the dataset's, to change their number), started from `source`."""
    cfg, _ = compose_config(*TINY_RUN, "train.seed=1", *overrides)
    config.check(cfg)
    if classes is None:
        gan, images = build_gan(cfg)
    else:
        gan = GAN.from_config(cfg, 1, 28, torch.device("cpu"), classes=classes)
        images = SimpleNamespace(image_size=28, fingerprint="made-up")
    return gan, finetune.start_from(str(source), gan, cfg, images, strict=strict)


def test_copied_weights_make_the_source_images(tiny_run: Path) -> None:
    gan, lineage = fine_tune_gan(tiny_run)
    source, state = source_gan(tiny_run)
    latents = torch.randn(6, gan.latent_dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gan.generate(latents), source.generate(latents), rtol=0, atol=0)  # through the EMA
    torch.testing.assert_close(gan.generator.eval()(latents), source.generator.eval()(latents), rtol=0, atol=0)
    torch.testing.assert_close(gan.discriminator.state_dict(), source.discriminator.state_dict(), rtol=0, atol=0)
    assert lineage["reinitialised"] == {} and lineage["new"] == {}
    assert lineage["parents"][0]["step"] == state["step"] == 4
    assert lineage["parents"][0]["checksum"] == checkpoint.checksum(checkpoint.last_path(tiny_run))
    assert not any(value.abs().sum() for value in gan.optimizer_d.state_dict()["state"].values() if torch.is_tensor(value))
    assert gan.optimizer_g.state_dict()["state"] == {}  # fresh optimizers


def test_a_new_number_of_classes_is_re_initialised_and_shown(tiny_conditional_run: Path, capsys) -> None:
    gan, lineage = fine_tune_gan(tiny_conditional_run, "conditioning=projection", classes=["a", "b", "c"])
    shown = capsys.readouterr().err
    assert "re-initialised" in shown and "[10, " in shown and "->[3, " in shown
    assert lineage["reinitialised"]["discriminator"]  # D's class embedding
    embedding = next(name for name in lineage["reinitialised"]["discriminator"])
    assert gan.discriminator.state_dict()[embedding].shape[0] == 3
    source, _ = source_gan(tiny_conditional_run, "conditioning=projection")
    copied = [name for name in source.discriminator.state_dict() if name not in lineage["reinitialised"]["discriminator"]]
    torch.testing.assert_close({k: gan.discriminator.state_dict()[k] for k in copied},
                               {k: source.discriminator.state_dict()[k] for k in copied}, rtol=0, atol=0)


def test_strict_refuses_any_re_initialised_tensor(tiny_conditional_run: Path) -> None:
    with pytest.raises(GanctlError, match=r"init_strict=true: .* is \[10, .* in the source and \[3, .* here"):
        fine_tune_gan(tiny_conditional_run, "conditioning=projection", classes=["a", "b", "c"], strict=True)
    digits = [str(digit) for digit in range(10)]
    fine_tune_gan(tiny_conditional_run, "conditioning=projection", classes=digits, strict=True)  # the same classes: nothing to refuse


def test_another_architecture_or_resolution_is_refused_naming_the_first_mismatch(tiny_run: Path) -> None:
    with pytest.raises(GanctlError, match=r"generator does not match the source's \(\d+ of \d+ tensors fit\); the first "
                                          r"mismatch: net\.\S+ is \[\d+, \d+.*\] in the source and \[\d+, \d+.*\] here"):
        fine_tune_gan(tiny_run, "model.generator.base_filters=16")
    with pytest.raises(GanctlError, match="trained on 28px images and this run's are 32px"):
        fine_tune_gan(tiny_run, "dataset.image_size=32")
    with pytest.raises(GanctlError, match="its generator is ganctl.models.DCGANGenerator and this run's is ganctl.models.MLPGenerator"):
        cfg, _ = compose_config(*TINY, "model=mlp", f"init_from={tiny_run}")
        gan, images = build_gan(cfg)
        finetune.start_from(cfg.init_from, gan, cfg, images)


def test_freeze_keeps_the_first_blocks_while_the_rest_train(tiny_run: Path, tmp_path: Path) -> None:
    # Adam with weight decay: a frozen weight outside the optimizer cannot move even by decay.
    run(tmp_path, *TINY_RUN, f"init_from={tiny_run}", "model.discriminator.freeze=1", "+optimizer.d.weight_decay=0.1")
    before, after = (checkpoint.load(checkpoint.last_path(path))["discriminator"] for path in (tiny_run, tmp_path))
    first = ("net.0.",)  # DCGAN's first block: the conv from the image
    assert [name for name in before if name.startswith(first)]
    for name, value in before.items():
        if name.startswith(first):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    changed = [name for name, value in before.items() if not name.startswith(first) and not torch.equal(after[name], value)]
    assert any(name.startswith("net.2.") for name in changed)  # the second block trained
    lineage = checkpoint.load(checkpoint.last_path(tmp_path))["lineage"]
    assert lineage["frozen"] == {"blocks": 1, "parameters": sum(v.numel() for k, v in before.items() if k.startswith(first))}


def frozen_weights_kept(source: Path, tuned: Path, first: str = "net.0.") -> None:
    before, after = (checkpoint.load(checkpoint.last_path(path))["discriminator"] for path in (source, tuned))
    assert [name for name in before if name.startswith(first)]
    assert all(torch.equal(after[name], value) for name, value in before.items() if name.startswith(first))
    assert any(not torch.equal(after[name], value) for name, value in before.items() if not name.startswith(first))


def test_freeze_under_compile(tiny_run: Path, tmp_path: Path) -> None:
    """Compiled G and D (loss=rpgan: no double backward, so D compiles too) keep the frozen block fixed."""
    from torch._dynamo.utils import counters

    compiled_before = counters["frames"]["ok"]
    run(tmp_path, *TINY_RUN, f"init_from={tiny_run}", "model.discriminator.freeze=1", "loss=rpgan", "train.compile=true",
        "train.steps=2", "train.sample_every=0")
    assert counters["frames"]["ok"] - compiled_before >= 2
    frozen_weights_kept(tiny_run, tmp_path)


def test_freeze_under_ddp(tiny_run: Path, tmp_path: Path) -> None:
    """Two ranks (gloo) fine-tune with D's first block frozen: the ranks agree and the block stays the source's."""
    from test_ddp import torchrun

    result = torchrun("train", *TINY_RUN, f"init_from={tiny_run}", "model.discriminator.freeze=1", "train.device=cpu",
                      f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["ranks"] == {"world_size": 2, "weights_agree": True}
    frozen_weights_kept(tiny_run, tmp_path / "run")


def test_freeze_needs_blocks() -> None:
    cfg, _ = compose_config(*TINY, "model=mlp", "model.discriminator.freeze=1")
    with pytest.raises(GanctlError, match="MLPDiscriminator has no blocks to freeze"):
        build_gan(cfg)
    cfg, _ = compose_config(*TINY_RUN, "model.discriminator.freeze=3")
    with pytest.raises(GanctlError, match="has 2 blocks here"):
        build_gan(cfg)
    cfg, _ = compose_config(*TINY_RUN, "model.discriminator.freeze=-1")
    with pytest.raises(GanctlError, match="model.discriminator.freeze must be a whole number"):
        config.check(cfg)


def test_a_fine_tune_with_freeze_resumes_exactly(tiny_run: Path, tmp_path: Path) -> None:
    straight, resumed = straight_and_resumed(tmp_path, [*TINY_RUN, "train.ckpt_every=0", f"init_from={tiny_run}",
                                                        "model.discriminator.freeze=1"])
    torch.testing.assert_close(straight, resumed, rtol=0, atol=0)
    lineages = [checkpoint.load(checkpoint.last_path(tmp_path / name)).get("lineage") for name in ("straight", "resumed")]
    assert lineages[0] == lineages[1] and lineages[0]["frozen"]["blocks"] == 1


def test_lineage_of_a_fine_tune_of_a_fine_tune(tiny_run: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    run(first, *TINY_RUN, f"init_from={tiny_run}", "model.discriminator.freeze=1")
    result = run_cli("train", *TINY_RUN, f"init_from={first}", f"hydra.run.dir={second}")
    assert result.returncode == 0, result.stderr
    lineage = checkpoint.load(checkpoint.last_path(second))["lineage"]
    parents = lineage["parents"]
    assert [p["path"] for p in parents] == [str(checkpoint.last_path(first).resolve()), str(checkpoint.last_path(tiny_run).resolve())]
    assert [p["checksum"] for p in parents] == [checkpoint.checksum(checkpoint.last_path(p)) for p in (first, tiny_run)]
    assert parents[0]["data_fingerprint"] == lineage["data_fingerprint"]  # the first fine-tune recorded its data
    assert parents[1]["data_fingerprint"] is None  # trained from scratch: it recorded none
    assert parents[0]["model"] == parents[1]["model"] == "dcgan_r1"
    assert json.loads((second / "summary.json").read_text())["lineage"] == lineage
    log = (second / "train.log").read_text()
    assert f"Lineage: fine-tuned from {checkpoint.last_path(first).resolve()} (step 4" in log
    assert f"<- {checkpoint.last_path(tiny_run).resolve()} (step 4" in log
    assert "Fine-tuning from" in result.stderr and "copied" in result.stderr
    from ganctl.report.build import run_report

    page = run_report(second, walk=False)  # the report's run facts: the same chain
    assert f"fine-tuned from {checkpoint.last_path(first).resolve()} (step 4" in page and "nothing frozen" in page


def test_metric_cards_carry_the_lineage(tiny_run: Path, tmp_path: Path) -> None:
    """Cards from the run's own evaluations and from `ganctl eval` say where the generator came from."""
    tuned = tmp_path / "tuned"
    run(tuned, *TINY_RUN, f"init_from={tiny_run}", "train.eval_every=2", "metrics.names=[fid]", "metrics.num_fake=64",
        "metrics.num_real=64", "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:4}")
    expected = finetune.on_card(checkpoint.load(checkpoint.last_path(tuned))["lineage"])
    assert expected["parents"][0]["checksum"] == checkpoint.checksum(checkpoint.last_path(tiny_run))
    cards = [json.loads(line) for line in (tuned / "metrics.jsonl").read_text().splitlines()]
    assert [card["step"] for card in cards] == [2, 4] and all(card["lineage"] == expected for card in cards)
    result = run_cli("eval", str(tuned), "--num", "64", "--out", str(tmp_path / "cards.json"))
    assert result.returncode == 0, result.stderr
    assert all(card["lineage"] == expected for card in json.loads((tmp_path / "cards.json").read_text()))
    assert f"Lineage: fine-tuned from {checkpoint.last_path(tiny_run).resolve()}" in " ".join((result.stdout + result.stderr).split())


def test_init_from_with_resume_is_refused(tiny_run: Path) -> None:
    result = run_cli("train", f"init_from={tiny_run}", f"resume={tiny_run}")
    assert result.returncode == 1
    assert "pass one of them, not both" in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_a_malformed_lineage_is_refused_and_none_is_fine(tiny_run: Path, tmp_path: Path) -> None:
    state = checkpoint.load(checkpoint.last_path(tiny_run))
    assert "lineage" not in state  # a run from scratch has none, and loads
    checkpoint.save({**state, "lineage": {"parents": [{"checksum": 3}]}}, tmp_path / "bad.pt")
    with pytest.raises(GanctlError, match="lineage missing or malformed"):
        checkpoint.load(tmp_path / "bad.pt")
    checkpoint.save({**state, "guard": {"branch": 1, "rollbacks": 1, "strikes": 0, "spent": 0, "lr": 0.5, "penalty": 2.0,
                                        "ada_shift": 0.0, "decisions": [7]}}, tmp_path / "bad_guard.pt")
    with pytest.raises(GanctlError, match="guard missing or malformed"):  # a guard's decisions are records
        checkpoint.load(tmp_path / "bad_guard.pt")


def test_summary_shows_the_parent_of_a_fine_tuned_job(tmp_path: Path) -> None:
    from rich.console import Console

    lineage = {"parents": [{"path": "/runs/b/checkpoints/last.pt", "step": 200, "checksum": "ab"},
                           {"path": "/runs/a/checkpoints/last.pt", "step": 300, "checksum": "cd"}]}
    assert sweep.parent_of({"lineage": lineage}) == "/runs/b/checkpoints/last.pt step 200 (+1 before it)"
    assert sweep.parent_of({}) == ""
    row = {"job": 0, "values": {}, "status": "finished", "detail": "", "objective": 0.25, "objective_source": "d_gap",
           "d_loss": 1.2, "g_loss": 0.7, "images_per_second": 100.0, "wall_seconds": 10.0, "steps": 4,
           "run_dir": str(tmp_path / "0"), "loss": "bce", "parent": sweep.parent_of({"lineage": lineage})}
    console = Console(record=True, width=300)
    sweep.print_table(tmp_path, [row], console)
    text = console.export_text()
    assert "fine-tuned from" in text and "/runs/b/checkpoints/last.pt step 200 (+1 before it)" in text


@pytest.mark.parametrize("name", ["dcgan", "sngan", "biggan", "stylegan2", "r3gan"])
def test_every_family_with_blocks_freezes_its_first_ones(name: str) -> None:
    from ganctl import models

    built = {
        "dcgan": lambda freeze: models.DCGANDiscriminator(8, 1, 32, freeze=freeze),
        "sngan": lambda freeze: models.ResNetDiscriminator(1, 32, width=4, freeze=freeze),
        "biggan": lambda freeze: models.BigGANDiscriminator(1, 32, width=2, freeze=freeze),
        "stylegan2": lambda freeze: models.StyleGAN2Discriminator(1, 32, channel_base=256, channel_max=16, freeze=freeze),
        "r3gan": lambda freeze: models.R3GANDiscriminator(1, 32, widths=(8,) * 4, cardinalities=(2,) * 4, blocks=(1,) * 4,
                                                         freeze=freeze),
    }[name]
    discriminator = built(2)
    blocks = discriminator.image_side_blocks()
    frozen = {id(p) for block in blocks[:2] for p in block.parameters()}
    assert frozen and all(not p.requires_grad for block in blocks[:2] for p in block.parameters())
    assert all(p.requires_grad for p in discriminator.parameters() if id(p) not in frozen)
    assert any(p.requires_grad for p in blocks[2].parameters())
    assert all(p.requires_grad for p in built(0).parameters())

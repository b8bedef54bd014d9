"""Named protocols (what a card says it followed, and when a setting makes it custom) and `ganctl
compare` (ranks only cards that agree, else says what differs): no torch, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganctl import app, compare, config, protocols
from ganctl.errors import GanctlError
from helpers import compose_config, run_cli


def test_each_protocol_fixes_everything_a_number_depends_on() -> None:
    assert set(protocols.PROTOCOLS) >= {"fid50k_full", "studiogan_cifar10", "fd_dinov2"}
    full = protocols.get("fid50k_full").settings()
    assert full == {"names": ["fid"], "num_fake": 50_000, "split": "train", "num_real": None, "feature": "inception", "resize": "tf1"}
    studio = protocols.get("studiogan_cifar10")
    assert (studio.num_fake, studio.split, studio.num_real) == (50_000, "test", None)  # CIFAR-10's test split is its 10k
    assert protocols.get("fd_dinov2").feature == "dinov2" and protocols.get("fd_dinov2").resize == "clean"
    with pytest.raises(GanctlError, match="Unknown protocol 'fid10k'.*fid50k_full"):
        protocols.get("fid10k")


def test_a_card_names_its_protocol_and_a_changed_setting_makes_it_custom() -> None:
    settings = {"protocol": "fid50k_full", **protocols.get("fid50k_full").settings()}
    assert protocols.label(settings) == ("fid50k_full", {})
    assert protocols.label({**settings, "names": ["FID"]}) == ("fid50k_full", {})  # names as metrics checks them
    assert protocols.label({**settings, "num_fake": 10_000}) == ("custom", {"num_fake": [50_000, 10_000]})
    assert protocols.label({**settings, "resize": "clean", "split": "test"}) == (
        "custom", {"split": ["train", "test"], "resize": ["tf1", "clean"]})
    assert protocols.label({**settings, "protocol": None}) == ("custom", {})


def test_a_runs_protocol_sets_its_keys_but_the_command_line_wins() -> None:
    task = ["metrics.protocol=fd_dinov2", "metrics.num_fake=2000"]
    cfg, _ = compose_config(*task)
    app.with_protocol(cfg, task)
    assert (cfg.metrics.feature, cfg.metrics.resize, list(cfg.metrics.names)) == ("dinov2", "clean", ["fid"])
    assert cfg.metrics.num_fake == 2000 and protocols.label(cfg.metrics) == ("custom", {"num_fake": [50_000, 2000]})
    config.check(cfg)
    cfg, _ = compose_config("metrics.protocol=fid50k_full")
    app.with_protocol(cfg, ["metrics.protocol=fid50k_full"])
    assert protocols.label(cfg.metrics) == ("fid50k_full", {}) and cfg.metrics.best == "fid"


def card(metric: str, value: float, **changes) -> dict:
    base = {"metric": metric, "value": value, "std": None, "step": 100, "protocol": "custom", "num_real": 1000,
            "num_fake": 1000, "split": "test", "dataset": "d" * 64, "image_size": 28, "channels": 1,
            "backbone": "judge digits_judge.pt", "weights_sha256": "a" * 64, "resize": "none", "options": {"seed": 0}}
    return {**base, **changes}


def write(path: Path, cards: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cards))
    return str(path)


def test_compare_ranks_comparable_cards_and_names_what_differs(tmp_path: Path) -> None:
    a = write(tmp_path / "a.metrics.json", [card("fid", 30.0), card("class_balance", 0.9)])
    b = write(tmp_path / "b.metrics.json", [card("fid", 12.0), card("class_balance", 0.95)])
    c = write(tmp_path / "c.metrics.json", [card("fid", 5.0, num_fake=5000, options={"seed": 3})])
    result = compare.compare([a, b, c])
    assert [source for source, _ in result["fid"]["ranked"][0]] == [b, a]  # lower is better; c stands apart
    assert result["fid"]["differs"] == [f"num_fake: 1000 ({a}, {b}); 5000 ({c})"]
    assert [source for source, _ in result["class_balance"]["ranked"][0]] == [b, a]  # higher is better

    d = write(tmp_path / "d.metrics.json", [card("fid", 1.0, weights_sha256="b" * 64, protocol="fid50k_full")])
    result = compare.compare([a, d])
    assert result["fid"]["ranked"] == [] and result["fid"]["differs"] == [
        f"protocol: custom ({a}); fid50k_full ({d})", f"weights_sha256: aaaaaaaaaaaa... ({a}); bbbbbbbbbbbb... ({d})"]


def test_compare_reads_runs_and_says_what_is_missing(tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    (run_a / "checkpoints").mkdir(parents=True)
    (run_a / "metrics.jsonl").write_text("\n".join(json.dumps(c) for c in [card("fid", 50.0, step=2), card("fid", 40.0, step=4)]))
    write(run_b / "checkpoints" / "last.metrics.json", [card("fid", 45.0)])
    result = run_cli("compare", str(run_a), str(run_b), "--json")
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)["fid"]["ranked"][0]
    assert [(entry["source"], entry["value"]) for entry in ranked] == [(str(run_a), 40.0), (str(run_b), 45.0)]  # run_a's latest

    result = run_cli("compare", str(run_a), str(tmp_path / "nothing"))
    assert result.returncode == 1 and "neither a run directory nor a cards file" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_cli("compare", str(run_a), str(tmp_path / "empty"))
    assert result.returncode == 1 and "has no metric cards" in result.stderr

"""A run that guards itself (train.guard, ganctl/guard.py): the policy's decisions, a rollback's change
composed with the schedules, the rollback's exact restore, a resumed guarded run, the same decisions
twice, where the decisions are recorded, and bad settings refused -- on a tiny run provoked to get
worse (a learning rate far too high, and any evaluation worse than the best counted as a strike)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ganctl import checkpoint, config, data, plots
from ganctl.errors import GanctlError
from ganctl.evaluate import evaluate
from ganctl.guard import Guard
from ganctl.report import runs
from ganctl.schedules import Schedule
from ganctl.train import RunOutputs
from helpers import TINY, TINY_DCGAN, build_gan, compose_config, poison_generator_loss, run, run_cli

PROVOKED = [*TINY, *TINY_DCGAN, "train.steps=8", "train.log_every=1", "train.sample_every=0", "train.ckpt_every=2",
            "train.eval_every=1", "metrics.feature={_target_:ganctl.metrics.PooledPixels,size:8}", "metrics.names=[fid]",
            "metrics.num_fake=50", "metrics.num_real=100", "loss=bce", "optimizer.g.lr=0.05", "optimizer.d.lr=0.05"]
GUARDED = ["train.guard.policy=rollback", "train.guard.worse_by=0", "train.guard.max_rollbacks=2"]


class FakeGAN:
    """What a guard touches: ADA's configured target and mode, and `retune`."""

    def __init__(self) -> None:
        self.configured_ada_target, self.ada = 0.6, SimpleNamespace(adaptive=True)
        self.retuned: list[tuple] = []

    def retune(self, lr: float, penalty: float, ada_target: float, steps_spent: int) -> None:
        self.retuned.append((lr, penalty, round(ada_target, 6), steps_spent))


def settings(**changes) -> SimpleNamespace:
    values = dict(policy="rollback", worse_by=0.25, patience=2, max_rollbacks=1, lr=0.5, penalty=2.0, ada_target=-0.1)
    return SimpleNamespace(**{**values, **changes})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provoked run with the guard, through the CLI (its terminal output in terminal.txt)."""
    run_dir = tmp_path_factory.mktemp("guarded")
    result = run_cli("train", *PROVOKED, *GUARDED, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    (run_dir / "terminal.txt").write_text(result.stdout + result.stderr)
    return run_dir


def decisions(run_dir: Path, action: str = "rollback") -> list[dict]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return [d for d in summary["guard"]["decisions"] if d["action"] == action]


def test_the_policy_decides_from_strikes_and_counts() -> None:
    gan = FakeGAN()
    guard = Guard(settings(), "fid", False, gan)
    best = {"value": 10.0, "step": 100}
    assert guard.after_evaluation(100, 10.0, None, True).action == "continue"  # nothing to compare with yet
    assert guard.after_evaluation(200, 12.0, best, True).action == "continue"  # 20% worse: within worse_by
    first = guard.after_evaluation(300, 13.0, best, True)
    assert (first.action, first.strike) == ("continue", True)  # a strike, patience 2
    assert guard.after_evaluation(350, 9.0, best, True).action == "continue" and guard.strikes == 0  # better: strikes reset
    guard.after_evaluation(400, 13.0, best, True)
    rollback = guard.after_evaluation(500, 14.0, best, True)
    assert (rollback.action, rollback.restored, rollback.branch) == ("rollback", 100, 1)
    assert rollback.changes == {"learning rates x": [1.0, 0.5], "smoothing penalties x": [1.0, 2.0], "ADA target": [0.6, 0.5]}
    assert gan.retuned == [] and guard.branch_record() == {
        "index": 1, "from_step": 100, "settings": {"learning rates x": 0.5, "smoothing penalties x": 2.0, "ADA target shift": -0.1}}
    guard.apply(gan)
    assert gan.retuned == [(0.5, 2.0, -0.1, 0)]
    for step in (600, 700):
        last = guard.after_evaluation(step, 20.0, best, True)
    assert last.action == "stop" and "max_rollbacks=1" in last.reason  # no rollback left
    higher = Guard(settings(patience=1, policy="stop"), "class_balance", True, FakeGAN())
    assert higher.after_evaluation(1, 0.5, {"value": 0.9, "step": 0}, True).action == "stop"  # lower is worse here
    assert Guard(settings(), "fid", False, FakeGAN()).at_divergence(5, None).action == "stop"  # nothing to go back to
    assert Guard(settings(patience=1), "fid", False, FakeGAN()).after_evaluation(2, float("nan"), best, True).action == "rollback"
    resumed = Guard(settings(), "fid", False, (gan := FakeGAN()), guard.state_dict())
    assert (resumed.branch, resumed.lr, gan.retuned) == (1, 0.5, [(0.5, 2.0, -0.1, 0)])  # a resumed run keeps its branch


@pytest.mark.parametrize("schedule", ["+train.schedules.lr={base:2e-3,final:5e-4,images:64}", "train.lr_schedule=linear"])
def test_a_rollbacks_factors_hold_over_the_schedules(schedule: str) -> None:
    cfg = compose_config(*TINY, *TINY_DCGAN, "train.steps=8", "loss.r1_every=1", schedule,
                         "+train.schedules.r1={base:0.2,final:0.02,images:64}")[0]
    gan, images = build_gan(cfg)
    batches, r1 = data.endless(images, 8), next(unit for unit in gan.loss.regularisers if unit.name == "r1")
    gan.step(batches, 1)
    gan.retune(lr=0.5, penalty=2.0)
    lr, r1_gamma = Schedule.from_node(cfg.train.schedules.get("lr", {"base": 0, "final": 0, "images": 1})), Schedule.from_node(cfg.train.schedules.r1)
    for step in (2, 3):  # each step sets the scheduled values afresh: the factors stay on top of them
        gan.step(batches, step)
        seen = (step - 1) * 8
        expected = lr(seen) * 0.5 if "lr" in cfg.train.schedules else 0.0032 * (1 - step / 8) * 0.5  # adam_fast's 3.2e-3
        assert [optimizer.param_groups[0]["lr"] for optimizer in (gan.optimizer_g, gan.optimizer_d)] == pytest.approx([expected] * 2)
        assert r1.scale == pytest.approx(r1_gamma(seen) / 2 * 2.0)
    gan.retune(lr=0.5, penalty=2.0)  # applying it twice is applying it once
    assert r1.scale == pytest.approx(r1_gamma(16) / 2 * 2.0)


def test_a_rollback_restores_the_checkpoint_exactly(tmp_path: Path) -> None:
    cfg, choices = compose_config(*TINY, *TINY_DCGAN, *GUARDED, "+train.schedules.lr={base:2e-3,final:5e-4,images:64}")
    gan, images = build_gan(cfg)
    batches = data.endless(images, 8)
    guard = Guard(cfg.train.guard, "fid", False, gan)
    outputs = RunOutputs(tmp_path, cfg, choices, gan, {"channels": 1, "image_size": 28}, torch.device("cpu"), None, guard)
    for step in (1, 2):
        gan.step(batches, step)
    outputs.best = {"metric": "fid", "value": 1.0, "step": 2}
    checkpoint.save(outputs.state(2), checkpoint.best_path(tmp_path))
    saved = checkpoint.load(checkpoint.best_path(tmp_path))
    for step in (3, 4):  # the branch the guard abandons
        gan.step(batches, step)
    outputs.follow(guard.at_divergence(4, 2), SimpleNamespace(scalars=lambda *args: None))
    now = outputs.state(4)
    for key in ("generator", "discriminator", "generator_ema"):
        assert all(torch.equal(now[key][name], value) for name, value in saved[key].items())
    assert all(torch.equal(a, b) for a, b in zip(now["optimizer_d"]["state"][0].values(), saved["optimizer_d"]["state"][0].values()))
    assert torch.equal(now["rng"]["torch"], saved["rng"]["torch"]) and outputs.rolled_back_at == 4
    assert now["guard"]["branch"] == 1 and now["guard"]["decisions"][0]["restored"] == 2 and now["guard"]["spent"] == 2
    gan.step(batches, 5)  # the schedule stands where the checkpoint left it: step 5 trains as step 3 did, at half the rate
    lr = Schedule.from_node(cfg.train.schedules.lr)
    assert gan.optimizer_g.param_groups[0]["lr"] == pytest.approx(lr((3 - 1) * 8) * 0.5)
    outputs.best["step"] = 5  # a second rollback, to a checkpoint of branch 1 (its schedules 2 steps behind)
    checkpoint.save(outputs.state(5), checkpoint.best_path(tmp_path))
    gan.step(batches, 6)
    outputs.follow(guard.at_divergence(6, 5), SimpleNamespace(scalars=lambda *args: None))
    assert guard.spent == 3  # 2 before step 5's checkpoint, 1 since
    gan.step(batches, 7)  # trains as the 4th step of the schedule, at a quarter of the rate
    assert gan.optimizer_g.param_groups[0]["lr"] == pytest.approx(lr((4 - 1) * 8) * 0.25)


def test_each_decision_is_recorded_as_a_branch(guarded: Path) -> None:
    rollbacks = decisions(guarded)
    assert rollbacks  # the high learning rate makes an evaluation worse than the best: a rollback
    log, terminal = (guarded / "train.log").read_text(), (guarded / "terminal.txt").read_text()
    cards = [json.loads(line) for line in (guarded / "metrics.jsonl").read_text().splitlines()]
    scalars = plots.read_scalars(guarded)
    for decision in rollbacks:
        assert f"Guard at step {decision['step']}" in log and f"rolled back to step {decision['restored']}" in log
        assert f"Guard at step {decision['step']}" in terminal
        best_before = min((c for c in cards if c["step"] < decision["step"]), key=lambda c: c["value"])
        assert decision["restored"] == best_before["step"]  # the best checkpoint so far
        steps, values = scalars["guard/branch"]
        assert values[steps.index(decision["step"])] == decision["branch"]  # TensorBoard (and every tracker)
    assert all(card["branch"]["index"] == sum(d["step"] < card["step"] for d in rollbacks) for card in cards)
    assert f"rolled back to step {rollbacks[0]['restored']}, branch 1" in runs.guard(runs.read_run(guarded))  # the report
    assert all(card["branch"]["index"] == len(rollbacks) for card in evaluate(str(guarded), num=50, device="cpu",
                                                                                  out=guarded / "eval.json")[0])  # ganctl eval


def test_the_guard_changes_nothing_until_it_acts(guarded: Path, tmp_path: Path) -> None:
    unguarded = run(tmp_path, *PROVOKED)
    assert "guard" not in unguarded.summary
    plain = [json.loads(line)["value"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    cards = [json.loads(line) for line in (guarded / "metrics.jsonl").read_text().splitlines()]
    before = [c["value"] for c in cards if c["step"] <= decisions(guarded)[0]["step"]]
    assert before == plain[:len(before)]
    assert [c["value"] for c in cards] != plain  # and then it does


def test_the_same_run_makes_the_same_decisions(guarded: Path, tmp_path: Path) -> None:
    again = run(tmp_path, *PROVOKED, *GUARDED)
    assert again.summary["guard"] == json.loads((guarded / "summary.json").read_text())["guard"]
    first, second = (checkpoint.load(checkpoint.last_path(d)) for d in (guarded, tmp_path))
    assert all(torch.equal(first["generator"][name], value) for name, value in second["generator"].items())


@pytest.mark.parametrize("ended", ["after the first rollback", "where the guard acted"])
def test_a_resumed_guarded_run_continues_its_branch_exactly(guarded: Path, tmp_path: Path, ended: str) -> None:
    """Resumed from a run that ended after the first rollback, or just where the straight run's guard acted
    last (an evaluation that was the shorter run's result, judged when the run goes on)."""
    acted = [decision["step"] for decision in json.loads((guarded / "summary.json").read_text())["guard"]["decisions"]]
    stop_at = acted[-1] if ended == "where the guard acted" else next(step for step in (4, 6) if step > acted[0])
    run(tmp_path, *PROVOKED, *GUARDED, f"train.steps={stop_at}")
    resumed = run(tmp_path, "train.steps=8", resume=checkpoint.load(checkpoint.last_path(tmp_path)))
    assert resumed.summary["guard"]["decisions"] == json.loads((guarded / "summary.json").read_text())["guard"]["decisions"]
    first, second = (checkpoint.load(checkpoint.last_path(d)) for d in (guarded, tmp_path))
    assert all(torch.equal(first["generator"][name], value) for name, value in second["generator"].items())
    assert first["optimizer_d"]["param_groups"][0]["lr"] == second["optimizer_d"]["param_groups"][0]["lr"]


@pytest.mark.parametrize("override, message", [
    ("train.guard.policy=rolback", "train.guard.policy must be one of none, stop, rollback, got 'rolback': did you mean rollback?"),
    ("train.guard.lr=0", "train.guard.lr must be a positive factor"),
    ("train.guard.penalty=-2", "train.guard.penalty must be a positive factor"),
    ("train.guard.patience=0", "train.guard.patience must be at least 1"),
    ("train.guard.ada_target=1.5", "train.guard.ada_target moves ADA's target"),
    ("train.guard.lr=1", "give a rollback a change"),
])
def test_bad_guard_settings_are_refused_in_one_line(override: str, message: str) -> None:
    extra = ["train.guard.penalty=1", "train.guard.ada_target=0"] if override == "train.guard.lr=1" else []
    policy = [] if override.startswith("train.guard.policy") else ["train.guard.policy=rollback"]
    with pytest.raises(GanctlError, match=message.replace("?", r"\?")) as refused:
        config.check(compose_config(*policy, override, *extra)[0])
    assert "\n" not in str(refused.value)


def test_a_bad_policy_on_the_command_line_exits_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli("train", "train.guard.policy=rolback", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0 and "did you mean rollback" in result.stderr and "Traceback" not in result.stderr


def test_a_divergence_rolls_back_to_the_last_finite_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    poison_generator_loss(monkeypatch)  # G's loss turns NaN at step 3
    result = run(tmp_path, *TINY, *TINY_DCGAN, "train.log_every=1", "train.steps=6", "train.guard.policy=rollback")
    assert "with train.eval_every=0: no evaluation to judge" in capsys.readouterr().err  # it says what it can watch
    (decision,) = result.summary["guard"]["decisions"]
    assert (decision["step"], decision["action"], decision["restored"]) == (3, "rollback", 2)  # last.pt: no best.pt without evaluations
    state = checkpoint.load(checkpoint.last_path(tmp_path))
    assert state["step"] == 6 and all(torch.isfinite(t).all() for t in state["generator"].values() if t.is_floating_point())

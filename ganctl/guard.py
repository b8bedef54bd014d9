"""A run that guards itself against collapse (`train.guard`): after each evaluation and at a
divergence, a policy decides to continue, to stop, or to roll back -- restore checkpoints/best.pt
(weights, EMA, optimizer states, ADA's p, the regularisers' state, the RNG states) and continue with a
stated change: both learning rates multiplied by `lr`, the smoothing penalties' weights (R1, R2,
WGAN-GP's) by `penalty`, ADA's target moved by `ada_target`.

    guard = Guard(cfg.train.guard, "fid", False, gan, resumed_state)  # applies the changes made so far
    decision = guard.after_evaluation(step, value, best, restorable)  # continue | stop | rollback
    decision = guard.at_divergence(step, restorable_step)             # rollback | stop

The rule (`policy: rollback`): an evaluation whose metrics.best is worse than the best so far by more
than `worse_by` (a fraction of the best) is a strike; `patience` strikes in a row act; a divergence
(a non-finite loss or weight) acts at once. After `max_rollbacks` rollbacks the run stops instead.
`policy: stop` stops where `rollback` would roll back. Each decision is a branch: branch 0 is the run
as configured, branch k starts after the k-th rollback.

The changes are factors over what the run would use without the guard (`GAN.retune`): a learning
rate from train.lr_schedule or train.schedules.lr, a penalty's weight scheduled or not, are scaled at
every step, so a schedule never overrides them. The run's step count (the logs' x-axis, and the budget
train.steps) does not go back: the steps between the restored checkpoint and the rollback are *spent*,
and the schedules stand where the checkpoint left them, `spent` steps behind the step count
(train.lr_schedule's scheduler is restored with the checkpoint; train.schedules read the step less
`spent`). All of it lives here and in the run's checkpoints (the `guard` entry), so a resumed run
continues the branch it was on exactly, and the same run with the same policy makes the same decisions.
No torch here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

CONTINUE, STOP, ROLLBACK = "continue", "stop", "rollback"


@dataclass
class Decision:
    step: int
    action: str  # continue | stop | rollback
    reason: str
    branch: int  # the branch the run is on after it
    restored: Optional[int] = None  # a rollback: the step of the checkpoint it restored
    changes: dict[str, list[float]] = field(default_factory=dict)  # a rollback: {setting: [before, after]}
    strike: bool = False  # an evaluation worse than the best by more than worse_by

    def describe(self) -> str:
        """The decision in one line, for train.log, the terminal and the report."""
        if self.action == ROLLBACK:
            changed = ", ".join(f"{key} {before:g} -> {after:g}" for key, (before, after) in self.changes.items())
            return (f"Guard at step {self.step}: {self.reason}: rolled back to step {self.restored} (its checkpoint restored "
                    f"exactly, the schedules' place included; the {self.step - self.restored} steps since are spent) and "
                    f"continues as branch {self.branch} with {changed}.")
        return f"Guard at step {self.step}: {self.reason}: {'stops the run' if self.action == STOP else 'continues'}."


class Guard:
    """The policy, the strikes and the branch a run is on, and the changes it made so far."""

    def __init__(self, settings: Any, metric: str, higher_is_better: bool, gan: Any, state: Optional[dict[str, Any]] = None) -> None:
        """`settings`: the train.guard block (None: no guard, as a run from before it); `metric`:
        metrics.best; `gan`: the run's GAN, whose configured values the changes scale."""
        self.policy = getattr(settings, "policy", "none") if settings is not None else "none"
        self.settings, self.metric, self.higher_is_better = settings, metric, higher_is_better
        self.configured_ada_target, self.adaptive = gan.configured_ada_target, gan.ada.adaptive
        self.lr, self.penalty, self.ada_shift = 1.0, 1.0, 0.0  # the changes so far, as factors and a shift
        self.spent = 0  # steps trained on abandoned branches: the schedules stand this far behind the step count
        self.branch, self.rollbacks, self.strikes = 0, 0, 0
        self.decisions: list[dict[str, Any]] = []
        if state:
            self.load_state_dict(state)
        self.apply(gan)

    @property
    def active(self) -> bool:
        return self.policy != "none"

    @property
    def recorded(self) -> bool:
        """Whether checkpoints and the summary keep its state: it watches, or it made changes (a run
        resumed with policy none keeps the factors of the branch it was on)."""
        return self.active or self.branch > 0

    def apply(self, gan: Any) -> None:
        """The changes made so far, on the GAN (from its configured values: applying twice is applying once);
        nothing before the first rollback, so an unguarded run computes exactly as before the guard."""
        if self.branch == 0:
            return
        gan.retune(self.lr, self.penalty, self.ada_shift, self.spent)

    # ------------------------------------------------------------------ decisions

    def after_evaluation(self, step: int, value: float, best: Optional[dict[str, Any]], restorable: bool) -> Decision:
        """After an evaluation whose metrics.best is `value`, with the best so far `best` (before this one)
        and whether checkpoints/best.pt can be restored."""
        if best is None or not self.is_strike(value, best["value"]):
            self.strikes = 0
            return self.decided(Decision(step, CONTINUE, f"{self.metric} {value:.4g}", self.branch), record=False)
        self.strikes += 1
        worse = abs(value - best["value"]) / max(abs(best["value"]), 1e-12)
        reason = (f"{self.metric} {value:.4g} is {worse:.0%} worse than the best {best['value']:.4g} (step {best['step']})"
                  f"{f', strike {self.strikes} of {self.settings.patience}' if self.settings.patience > 1 else ''}")
        if self.strikes < self.settings.patience:
            return self.decided(Decision(step, CONTINUE, reason, self.branch, strike=True))
        return self.act(step, reason, best["step"] if restorable else None)

    def at_divergence(self, step: int, restorable: Optional[int]) -> Decision:
        """At a non-finite loss or weight, with the step of the newest finite checkpoint to go back to (None: none)."""
        return self.act(step, "a loss or weight became NaN or infinite", restorable)

    def act(self, step: int, reason: str, restorable: Optional[int]) -> Decision:
        """Roll back (to the checkpoint of step `restorable`) when the policy and the count allow; else stop."""
        self.strikes = 0
        if self.policy != "rollback" or restorable is None or self.rollbacks >= self.settings.max_rollbacks:
            why = ("" if self.policy != "rollback" else " (no checkpoint to go back to)" if restorable is None
                   else f" ({self.rollbacks} rollbacks made, train.guard.max_rollbacks={self.settings.max_rollbacks})")
            return self.decided(Decision(step, STOP, reason + why, self.branch))
        before = self.changed_settings()
        self.rollbacks += 1
        self.branch += 1
        self.lr *= self.settings.lr
        self.penalty *= self.settings.penalty
        self.ada_shift += self.settings.ada_target if self.adaptive else 0.0
        after = self.changed_settings()
        changes = {key: [before[key], after[key]] for key in after if after[key] != before[key]}
        return self.decided(Decision(step, ROLLBACK, reason, self.branch, restorable, changes))

    def restored(self, decision: Decision, checkpoint_guard: Optional[dict[str, Any]]) -> None:
        """A rollback's checkpoint was loaded: the steps since its place on the schedules are spent (the
        steps spent before it, in its own guard record, and the steps from it to this decision)."""
        self.spent = decision.step - decision.restored + int((checkpoint_guard or {}).get("spent", 0))

    def is_strike(self, value: float, best: float) -> bool:
        if not math.isfinite(value):  # a metric of a collapsed G can come out NaN: worse than any value
            return True
        margin = self.settings.worse_by * abs(best)
        return value < best - margin if self.higher_is_better else value > best + margin

    def changed_settings(self) -> dict[str, float]:
        """What a rollback changes, as factors of the configured values (and ADA's target itself)."""
        settings = {"learning rates x": self.lr, "smoothing penalties x": self.penalty}
        if self.adaptive:
            settings["ADA target"] = round(max(0.0, self.configured_ada_target + self.ada_shift), 6)
        return settings

    def decided(self, decision: Decision, record: bool = True) -> Decision:
        if record:
            self.decisions.append(asdict(decision))
        return decision

    # ------------------------------------------------------------------ what cards and checkpoints keep

    def branch_record(self) -> dict[str, Any]:
        """The branch a card's numbers come from (`branch_of` its state)."""
        return branch_of(self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"branch": self.branch, "rollbacks": self.rollbacks, "strikes": self.strikes, "lr": self.lr,
                "penalty": self.penalty, "ada_shift": self.ada_shift, "spent": self.spent,
                "decisions": list(self.decisions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.branch, self.rollbacks, self.strikes = int(state["branch"]), int(state["rollbacks"]), int(state["strikes"])
        self.lr, self.penalty, self.ada_shift = float(state["lr"]), float(state["penalty"]), float(state["ada_shift"])
        self.spent = int(state["spent"])
        self.decisions = list(state.get("decisions") or [])


def branch_of(state: dict[str, Any]) -> dict[str, Any]:
    """The branch of a guard's state (a checkpoint's `guard` entry): its index, the step of the checkpoint
    the last rollback restored, and the changes so far (factors; ADA's target shift when there is one),
    as a metric card names it."""
    last = next((d for d in reversed(state.get("decisions") or []) if d.get("action") == ROLLBACK), None)
    settings = {"learning rates x": state["lr"], "smoothing penalties x": state["penalty"],
                **({"ADA target shift": round(state["ada_shift"], 6)} if state["ada_shift"] else {})}
    return {"index": state["branch"], "from_step": last["restored"] if last else None,
            "settings": settings if state["branch"] else {}}

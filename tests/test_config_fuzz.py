"""Property-based: any mix of good and bad config values gives either a valid run or one clear
error (non-zero exit, a message, no traceback) -- never a crash or a hang."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganctl import checkpoint
from ganctl.cli import main

counter = itertools.count()

def mostly(good: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    """Good values most of the time, so that valid runs are common too."""
    return st.sampled_from(good * 3 + bad) if bad else st.sampled_from(good)


values = st.fixed_dictionaries({
    "train.steps": mostly(["2", "1"], ["0", "-1", "abc", "1.5"]),
    "train.batch_size": mostly(["4", "2"], ["0", "-3", "x"]),
    "optimizer.g.lr": mostly(["1e-3", "2e-4"], ["0", "-1e-4", "fast"]),
    "dataset.image_size": mostly(["28", "32"], ["30", "0", "-8", "12"]),
    "model": mostly(["dcgan_small", "mlp", "conv", "wgangp"], []),
    "loss": mostly(["bce", "hinge", "wgan", "wgangp"], []),
    "train.log_every": mostly(["1", "3"], ["0"]),
    "loss.critic_steps": mostly(["1", "2"], ["0"]),
})
SMALL = {"dcgan_small": ["model.generator.base_filters=4", "model.discriminator.base_filters=4"],
         "wgangp": ["model.generator.base_filters=4", "model.discriminator.base_filters=4"],
         "mlp": ["model.generator.hidden=[8]", "model.discriminator.hidden=[8]"],
         "conv": ["model.generator.filters=[4,4,4]", "model.discriminator.filters=[4,4,4,4]"]}


@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values)
def test_any_config_gives_a_run_or_one_clear_error(tmp_path: Path, capsys, chosen: dict[str, str]) -> None:
    run_dir = tmp_path / f"run{next(counter)}"
    overrides = [f"{key}={value}" for key, value in chosen.items()] + SMALL[chosen["model"]]
    code = main(["train", *overrides, "train.device=cpu", "train.sample_every=0", "train.num_samples=4", "train.curves=false",
                 f"hydra.run.dir={run_dir}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        assert checkpoint.load(checkpoint.last_path(run_dir))["step"] == int(chosen["train.steps"])
    else:
        assert code == 1 and "error" in err.lower(), err
        assert not run_dir.exists()  # a refused run writes nothing

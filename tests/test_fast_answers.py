"""Every mistake that needs no torch is answered before torch loads (issue 35, "fast to answer"):
each bad command runs in a fresh interpreter, which must exit non-zero with one line naming the
mistake, no traceback, and without ever having imported torch (what makes the answer take a
fraction of a second instead of the seconds torch takes to import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A checkpoint path that exists (its bytes are never read: each of these commands stops before that),
# so that the mistake after the path is the one answered.
CKPT = "model.pt"

RUN_MAIN = ("import sys\nfrom ganctl.cli import main\ntry:\n    code = main(sys.argv[1:])\n"  # (argparse exits through SystemExit)
            "finally:\n    print('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(code)")

CASES = {
    # train: a config value, and a mistyped path to resume or fine-tune from
    "train: a flag where an override goes": (["train", "--steps", "3"], "takes its settings as key=value overrides"),
    "train: a value out of range": (["train", "train.batch_size=0", "hydra.run.dir=run"], "train.batch_size must be at least 1"),
    "train: a mistyped resume=": (["train", "resume=no/such/run"], "Checkpoint not found: no/such/run"),
    "train: a mistyped init_from=": (["train", "init_from=nosuch.pt", "hydra.run.dir=run"], "Checkpoint not found: nosuch.pt"),
    # sample: the path, a count, a psi, the flags of two modes, a seed list, a file of latents
    "sample: a mistyped checkpoint": (["sample", "/nonexist.pt"], "Checkpoint not found: /nonexist.pt"),
    "sample: a run without checkpoints": (["sample", "."], "No checkpoint in ."),
    "sample: an unknown flag": (["sample", CKPT, "--bogus"], "unrecognized arguments: --bogus"),
    "sample: --num 0": (["sample", CKPT, "--num", "0"], "--num must be at least 1, got 0."),
    "sample: --truncation 2": (["sample", CKPT, "--truncation", "2"], "--truncation must be a number from 0"),
    "sample: two modes": (["sample", CKPT, "--interpolate", "--mix", "2", "2"], "--interpolate and --mix do different things"),
    "sample: mixing flags that exclude each other": (["sample", CKPT, "--mix", "2", "2", "--mix-rows", "1"], "give one or the other"),
    "sample: a walk of one seed": (["sample", CKPT, "--interpolate", "--seeds", "4"], "at least 2 seeds"),
    "sample: a bad seed list": (["sample", CKPT, "--add", "1,x"], "--add takes comma-separated whole-number seeds"),
    "sample: a missing latents file": (["sample", CKPT, "--latents", "nowhere.npy"], "--latents nowhere.npy: no such file."),
    "sample: an unknown --device": (["sample", CKPT, "--device", "gpu"], "--device gpu is not a device: use auto, cpu"),
    "sample: a bad --strength": (["sample", CKPT, "--direction", CKPT, "--strength", "-3:3:0"], "--strength takes START:STOP:COUNT"),
    "sample: --fps 0": (["sample", CKPT, "--interpolate", "--seeds", "1,2", "--fps", "0"], "--fps must be more than 0"),
    # eval
    "eval: a mistyped checkpoint": (["eval", "/nonexist.pt"], "Checkpoint not found: /nonexist.pt"),
    "eval: an unknown metric": (["eval", CKPT, "--metrics", "nosuch"], "Unknown metric 'nosuch'"),
    "eval: --num 1": (["eval", CKPT, "--num", "1"], "--num must be at least 2 (FID and KID need two images), got 1."),
    "eval: a psi beyond 1 in a sweep": (["eval", CKPT, "--truncation-sweep", "1,2"], "--truncation must be a number from 0"),
    "eval: --images that is no folder": (["eval", "--images", "nowhere", "--dataset", "mnist"], "--images nowhere is not a directory"),
    "eval: an unknown protocol": (["eval", CKPT, "--protocol", "fid50k"], "Unknown protocol 'fid50k'"),
    "eval: a --resize not in its list": (["eval", CKPT, "--resize", "bicubic"], "invalid choice: 'bicubic'"),
    "eval: an unknown backbone": (["eval", CKPT, "--feature", "resnet"], "metrics.feature must be one of"),
    # export, import
    "export: a mistyped checkpoint": (["export", "/nonexist.pt", "--format", "onnx"], "Checkpoint not found: /nonexist.pt"),
    "import: a missing pickle": (["import", "/nonexist.pkl", "--out", "m.pt"], "Cannot read /nonexist.pkl: no such file."),
    # project, directions, explore
    "project: a mistyped checkpoint": (["project", "/nonexist.pt", "a.png", "--out", "d"], "Checkpoint not found: /nonexist.pt"),
    "project: a missing image": (["project", CKPT, "nowhere.png", "--out", "d"], "nowhere.png: no such file or folder."),
    "project: --steps 0": (["project", CKPT, CKPT, "--out", "d", "--steps", "0"], "--steps must be at least 1, got 0."),
    "directions: a mistyped checkpoint": (["directions", "/nonexist.pt", "--out", "d.npy"], "Checkpoint not found: /nonexist.pt"),
    "directions: --top 0": (["directions", CKPT, "--out", "d.npy", "--top", "0"], "--top must be at least 1, got 0."),
    "directions: half a labelled pair": (["directions", CKPT, "--out", "d.npy", "--positive", CKPT], "--positive and --negative go together"),
    "explore: a mistyped checkpoint": (["explore", "/nonexist.pt"], "Checkpoint not found: /nonexist.pt"),
    "explore: a missing directions file": (["explore", CKPT, "--directions", "none.npy"], "--direction none.npy: no such file"),
    # judge
    "judge: an unknown dataset": (["judge", "train", "nosuch", "--out", "j.pt"], "--dataset nosuch: not a dataset option"),
    "judge: --epochs 0": (["judge", "train", "mnist", "--out", "j.pt", "--epochs", "0"], "--epochs must be at least 1, got 0."),
}


@pytest.mark.parametrize("args,message", list(CASES.values()), ids=list(CASES))
def test_a_mistake_that_needs_no_torch_is_answered_before_torch_loads(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / CKPT).write_bytes(b"never read")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run([sys.executable, "-c", RUN_MAIN, *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode != 0, result.stdout + result.stderr
    answer = [line for line in result.stderr.strip().splitlines() if not line.startswith(("usage:", " "))]  # (argparse's usage)
    assert len(answer) == 1 and message in answer[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no torch", "torch was imported before the mistake was answered"
    assert not (tmp_path / "run").exists()  # a refused training run leaves nothing

"""The command line as a user meets it: real subprocesses, exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganctl import checkpoint
from helpers import TINY, TINY_DCGAN, run_cli

TINY_ARGS = [*TINY, *TINY_DCGAN]


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


def test_help_lists_the_subcommands() -> None:
    ganctl = Path(sys.executable).parent / "ganctl"
    result = subprocess.run([str(ganctl), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "train" in result.stdout and "sample" in result.stdout


@pytest.mark.parametrize("command", [["--help"], ["sample", "--help"], ["plot", "--help"], ["animate", "--help"], ["export", "--help"],
                                     ["report", "--help"], ["explore", "--help"], ["project", "--help"], ["directions", "--help"],
                                     ["import", "--help"]])
def test_help_does_not_import_torch(command: list[str]) -> None:
    code = ("import sys\nfrom ganctl.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'gradio' not in sys.modules, 'gradio imported'" % command)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("override", ["train.batch_size=0", "train.augment=[blur]", "conditioning.generator=concat"])
def test_a_mistake_in_a_new_runs_values_is_answered_before_torch_loads(override: str, tmp_path: Path) -> None:
    code = ("import sys\nfrom ganctl.cli import main\ncode = main(['train', %r, %r])\n"
            "assert code == 1 and 'torch' not in sys.modules, ('torch imported', code)" % (override, f"hydra.run.dir={tmp_path / 'run'}"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "error:" in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "run").exists()


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    result = run_cli("train", "--cfg", "job", "model=mlp", "optimizer.d.lr=4e-4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MLPGenerator" in result.stdout and "lr: 0.0004" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `ganctl train` run that the tests below read (and never modify)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("train", *TINY_ARGS, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def test_train_then_sample_from_the_command_line(trained_run: Path, tmp_path: Path) -> None:
    assert (trained_run / ".hydra" / "config.yaml").exists()
    assert (trained_run / "summary.json").exists()
    result = run_cli("sample", str(trained_run), "--num", "12", "--out", str(tmp_path / "g.png"),
                     "--images-dir", str(tmp_path / "img"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.png").exists() and len(list((tmp_path / "img").glob("*.png"))) == 12


def test_resume_continues_in_the_same_run_directory(trained_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(trained_run, run_dir)
    original_hydra_config = (run_dir / ".hydra" / "config.yaml").read_text()
    result = run_cli("train", f"resume={run_dir}", "train.steps=6", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 6
    assert not (tmp_path / "outputs").exists()
    assert (run_dir / ".hydra" / "config.yaml").read_text() == original_hydra_config

    again = run_cli("train", f"resume={run_dir}", cwd=tmp_path)
    assert again.returncode == 0 and "already reached 6" in again.stdout + again.stderr

    refused = run_cli("train", f"resume={run_dir}", "train.steps=8", "model.generator.base_filters=16", cwd=tmp_path)
    assert_clean_error(refused, "model.generator.base_filters")
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 6


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "train.step=10"], ["Unknown key train.step", "did you mean train.steps?"]),
        (["train", "optimizer.d.betas=[1.5,0.999]", *TINY_ARGS], ["torch.optim.Adam refuses these settings"]),
        (["train", "model=nosuchmodel"], ["nosuchmodel", "dcgan"]),
        (["train", "train.batch_size=abc"], ["batch_size", "abc"]),
        (["train", "train.steps=-5"], ["train.steps must be at least 1"]),
        (["train", "dataset.root=missing_folder", *TINY_ARGS], ["MNIST files not found", "dataset.download=true"]),
        (["train", "resume=no/such/run"], ["Checkpoint not found"]),
        (["sample", "no/such/run"], ["Checkpoint not found"]),
        (["sample", "."], ["No checkpoint in ."]),
        (["nosuchcommand"], ["unknown command"]),
    ],
)
def test_user_mistakes_get_one_clear_message(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    if args[0] == "train":
        args = [*args, "hydra.run.dir=run"]
    result = run_cli(*args, cwd=tmp_path)
    assert_clean_error(result, *fragments)
    assert "To append to your config" not in result.stderr  # ganctl's message, not Hydra's advice
    assert not (tmp_path / "run").exists()  # a refused run leaves nothing


def test_a_run_directory_named_through_the_environment_is_refused_before_hydra_writes(trained_run: Path, tmp_path: Path) -> None:
    """hydra.run.dir=${oc.env:...} naming a finished run: refused as the plain path is, before Hydra
    rewrites that run's .hydra/ (the interpolation used to skip the early refusal)."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    before = {path.name: path.read_bytes() for path in (run_dir / ".hydra").iterdir()}
    result = run_cli("train", *TINY_ARGS, "loss=hinge", "hydra.run.dir=${oc.env:GANCTL_TEST_RUN}", cwd=tmp_path,
                     env={"GANCTL_TEST_RUN": str(run_dir)})
    assert_clean_error(result, f"{run_dir} already holds a run")
    assert {path.name: path.read_bytes() for path in (run_dir / ".hydra").iterdir()} == before

def test_sample_refuses_zero_samples(trained_run: Path, tmp_path: Path) -> None:
    assert_clean_error(run_cli("sample", str(trained_run), "--num", "0", cwd=tmp_path), "--num must be at least 1")


def test_malicious_checkpoints_run_no_code(tmp_path: Path) -> None:
    """(Truncated and foreign checkpoints through the CLI: tests/test_eval.py; every byte: tests/test_checkpoint.py.)"""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    plain, zipped = tmp_path / "plain.pt", tmp_path / "zip.pt"
    plain.write_bytes(pickle.dumps(Payload()))
    torch.save({"x": Payload()}, zipped)
    # Every command reads checkpoints through checkpoint.load; each is tried on one of the two pickle formats.
    for command in (["sample", str(plain)], ["train", f"resume={zipped}"], ["eval", str(zipped)]):
        assert_clean_error(run_cli(*command, cwd=tmp_path))
        assert not marker.exists()


def test_sigint_saves_last_checkpoint_and_prints_the_resume_command(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY_ARGS, "train.steps=100000", "train.ckpt_every=0", "train.sample_every=0", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "ganctl", "train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, deadline = run_dir / "train.log", time.time() + 300
    while not (log.exists() and "] step 2 " in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)  # until a logged step: the signal handlers are in place, whatever the machine's load
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert f"ganctl train resume={run_dir}" in output.replace("\n", "")
    state = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert 0 < state["step"] < 100000


def test_multirun_writes_one_run_directory_per_combination(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli("train", "-m", *TINY_ARGS, "train.steps=2", "loss=bce,hinge", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for job, loss in (("0", "bce"), ("1", "hinge")):
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        assert (summary["loss"], summary["steps"]) == (loss, 2)
        assert (sweep_dir / job / "checkpoints" / "last.pt").exists()


def test_a_run_directory_hydra_cannot_make_is_one_line(tmp_path: Path) -> None:
    """A ${now:} run directory (computed by Hydra, so not checked before it) where none can be made:
    here under a file, as under a read-only or missing mount."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    result = run_cli("train", *TINY_ARGS, "hydra.run.dir=blocked/${now:%H-%M-%S}", cwd=tmp_path)
    assert_clean_error(result, "Cannot create the run directory's files", "hydra.run.dir=<dir>")


def test_a_python_tag_in_a_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "mine" / "loss").mkdir(parents=True)
    (tmp_path / "mine" / "loss" / "evil.yaml").write_text(f'discriminator: !!python/object/apply:os.system ["touch {tmp_path / "pwned"}"]\n')
    result = run_cli("train", "--config-dir", str(tmp_path / "mine"), *TINY_ARGS, "loss=evil", "hydra.run.dir=run", cwd=tmp_path)
    assert_clean_error(result, "evil.yaml, line 1", "python/object/apply:os.system")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "run").exists()


def test_a_deleted_working_directory_is_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for command in (["train", *TINY_ARGS], ["sample", str(tmp_path / "run")]):
        result = subprocess.run([sys.executable, "-m", "ganctl", *command], cwd=gone, preexec_fn=lambda: os.rmdir(gone),
                                env=env, capture_output=True, text=True, timeout=120)
        assert_clean_error(result, "The directory this command was started in no longer exists")
        gone.mkdir()


def test_a_run_directory_outside_ascii_trains_and_resumes(tmp_path: Path) -> None:
    """Hydra's grammar takes such a path only quoted; ganctl quotes it (a refusal used to say nothing of why)."""
    run_dir = tmp_path / "café"
    result = run_cli("train", *TINY_ARGS, "train.steps=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["step"] == 2
    from ganctl import app

    assert app.named_run_dir(app.resume_arguments([f"resume={run_dir}"])) == run_dir  # resume= names it as Hydra parses it


def test_the_commands_printed_for_copying_work_on_a_path_with_spaces(tmp_path: Path) -> None:
    run_dir = tmp_path / "my runs" / "first run"
    result = run_cli("train", *TINY_ARGS, "train.steps=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = {line.strip().split()[0]: line.strip() for line in result.stderr.splitlines() if line.strip().startswith(("ganctl sample", "Follow"))}
    assert f"tensorboard --logdir '{run_dir}'" in printed["Follow"]
    command = printed["ganctl"].replace("ganctl", f"{sys.executable} -m ganctl", 1)
    copied = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert copied.returncode == 0 and (run_dir / "samples" / "grid.png").exists(), copied.stderr

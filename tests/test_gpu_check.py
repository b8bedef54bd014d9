"""scripts/gpu_check.py, the first run on a GPU, in its reduced CPU mode: every check it has runs and
records its figures (so it cannot rot before a GPU is lent), and a check that fails is recorded
without stopping the others."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def test_every_check_runs_on_a_cpu_and_writes_its_figures(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = {name: result["error"] for name, result in record["checks"].items() if "error" in result}
    assert done.returncode == 0 and not failed, (failed, done.stderr[-2000:])
    assert list(record["checks"]) == list(script.CHECKS)
    assert record["checks"]["resume"]["figures"]["bit_for_bit"] and record["checks"]["ddp"]["figures"]["weights_agree"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert all(f"| {name} |" in table for name in script.CHECKS)


def test_a_check_that_fails_is_recorded_and_the_others_still_run(tmp_path: Path, monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def broken(args, work):
        raise RuntimeError("no NCCL here")

    monkeypatch.setattr(script, "CHECKS", {"broken": broken, "fine": lambda args, work: {"answer": 42}})
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--device", "cpu", "--out", str(tmp_path)])
    assert script.main() == 1
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["checks"]["broken"]["error"] == "RuntimeError: no NCCL here"
    assert record["checks"]["fine"]["figures"] == {"answer": 42}
    assert "| broken | FAILED: RuntimeError: no NCCL here |" in (tmp_path / "gpu_check.md").read_text()

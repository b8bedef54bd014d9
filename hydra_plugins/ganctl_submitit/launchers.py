"""ganctl's submitit launchers for `ganctl train -m` (conf/hydra/launcher/: slurm_gpu, slurm_multigpu,
local_tasks): hydra-submitit-launcher's own, made ready for jobs of several tasks that train one run
together (DDP on `tasks_per_node` GPUs of each of `nodes` nodes; see ganctl.distributed). They live in
the hydra_plugins package because Hydra instantiates launchers from there only.

Every task of a job runs the job's Hydra job. Tasks other than rank 0 run it in a throwaway directory,
as `ganctl.app.main` does for torchrun's other ranks, so that the run directory (its .hydra/,
train.log, status.json, checkpoints) is written by rank 0 alone; their log records go to submitit's
log of the task (<sweep dir>/.submitit/<job id>/). Without `ganctl[sweep]` (hydra-submitit-launcher)
there is nothing here: Hydra imports this module at every start.
"""

from __future__ import annotations

import tempfile
from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:
    submitit_launcher = None


class RankZeroOwnsTheRunDir:
    """What ganctl adds to a submitit launcher (mixed in before it)."""

    def __call__(self, sweep_overrides: list[str], job_dir_key: str, job_num: int, job_id: str, singleton_state: Any) -> Any:
        """One task of a job: this runs in the task's process."""
        import submitit

        run_job = super().__call__  # type: ignore[misc]
        if submitit.JobEnvironment().global_rank == 0:
            return run_job(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        with tempfile.TemporaryDirectory(prefix="ganctl-task") as elsewhere:
            elsewhere_overrides = [f"hydra.sweep.dir={elsewhere}", "hydra.output_subdir=null", "hydra/job_logging=default"]
            return run_job([*sweep_overrides, *elsewhere_overrides], job_dir_key, job_num, job_id, singleton_state)


if submitit_launcher is not None:

    class SlurmLauncher(RankZeroOwnsTheRunDir, submitit_launcher.SlurmLauncher):
        """hydra/launcher=slurm_gpu, slurm_multigpu: SLURM jobs, one task per GPU."""

    class LocalLauncher(RankZeroOwnsTheRunDir, submitit_launcher.LocalLauncher):
        """hydra/launcher=local_tasks: the same jobs as processes on this machine (one node)."""

"""Data-parallel training with PyTorch DDP: several processes, started by torchrun or as the tasks of
a submitit job (SLURM, or submitit_local on one machine), train one run.

torchrun (on one node or several) tells each process its place in its environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, ...). A submitit job with several tasks (`hydra.launcher.tasks_per_node`,
`hydra.launcher.nodes`) tells it through SLURM's (or submitit_local's) variables, which submitit's
`TorchDistributedEnvironment` turns into the same ones: rank 0 of the job's first node hosts the
rendezvous. Every rank builds the same networks from the same seed, DDP averages their gradients, and
each rank draws its own batches, so one step trains on world_size x the per-process batch. Each rank
uses one GPU (cuda:LOCAL_RANK) or CPU cores. Rank 0 alone logs, samples, evaluates and writes
checkpoints, into one run directory. In a single process all of this is a no-op.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganctl.device import resolve_device
from ganctl.errors import GanctlError


@dataclass(frozen=True)
class Launch:
    """How this process was started: `by` torchrun, as a task of a submitit job, or alone ("")."""

    by: str = ""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launch() -> Launch:
    """This process's place, from submitit's job environment (a job of several tasks) or torchrun's."""
    if "SUBMITIT_FOLDER" in os.environ:  # set in every task of a submitit job
        from submitit.helpers import TorchDistributedEnvironment

        job = TorchDistributedEnvironment()
        if job.world_size > 1:
            return Launch("submitit", job.rank, job.world_size, job.local_rank, job.local_world_size)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        return Launch(
            "torchrun", int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
        )
    return Launch()


@dataclass
class Group:
    """Where this process stands: its rank among world_size processes."""

    rank: int = 0
    world_size: int = 1
    flags: Optional[Any] = None  # a gloo process group for CPU-side agreement (stop requests)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


# The group this process joined, and its device: a submitit job's tasks join as the job starts (to
# agree on resuming, see sweep.run_job), and training then finds them here.
_joined: Optional[tuple[Group, torch.device]] = None


def setup(device: torch.device, backend: str = "auto") -> tuple[Group, torch.device]:
    """Join the run's process group: one GPU per rank (cuda:LOCAL_RANK) on NCCL, or CPUs on gloo
    (`backend` auto picks so; gloo also runs on GPUs). A single process gets Group() and `device`."""
    global _joined
    place = launch()
    if place.world_size == 1:
        return Group(), device
    if _joined is not None:
        return _joined
    if place.by == "submitit":  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK from the job
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if device.type == "cuda":
        device = torch.device("cuda", place.local_rank)
        if place.local_world_size > torch.cuda.device_count():
            raise GanctlError(too_many_processes(place, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise GanctlError(f"Multi-process training runs on CUDA GPUs or CPUs, not on {device.type}.")
    backend = choose_backend(backend, device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    flags = dist.new_group(backend="gloo") if backend == "nccl" else None
    _joined = Group(dist.get_rank(), dist.get_world_size(), flags), device
    return _joined


def join(settings: Any) -> Group:
    """Join the run's process group ahead of training, as `settings` (the config's train block) asks:
    the tasks of a submitit job do, to follow rank 0 on whether the job resumes (sweep.run_job)."""
    return setup(resolve_device(settings.device), settings.ddp_backend)[0]


def too_many_processes(place: Launch, gpus: int) -> str:
    """The message for more processes on a node than GPUs to give each its own."""
    if place.by == "submitit":
        return (
            f"This job runs {place.local_world_size} tasks on {socket.gethostname()}, but they see {gpus} GPU(s): "
            f"each task needs its own. Set hydra.launcher.gpus_per_node={place.local_world_size} (one GPU per "
            f"task) or hydra.launcher.tasks_per_node={gpus}."
        )
    return (
        f"torchrun started {place.local_world_size} processes on {socket.gethostname()}, but it has {gpus} GPU(s): "
        f"use --nproc_per_node={gpus} or fewer."
    )


def choose_backend(backend: str, device: torch.device) -> str:
    """train.ddp_backend made concrete: auto is NCCL on GPUs and gloo on CPUs; NCCL needs GPUs."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise GanctlError(
            f"train.ddp_backend=nccl runs on CUDA GPUs only, but this run trains on the {device.type.upper()} "
            f"(train.device={device}): use train.ddp_backend=gloo (or auto), or train.device=cuda."
        )
    if backend == "nccl" and not dist.is_nccl_available():
        raise GanctlError("train.ddp_backend=nccl, but this PyTorch build has no NCCL: use train.ddp_backend=gloo.")
    return backend


def per_process_batch(batch_size: int, global_batch_size: Optional[int], group: Group) -> int:
    """The batch each process draws per step: train.batch_size, or train.global_batch_size shared out."""
    if global_batch_size is None:
        return batch_size
    if global_batch_size % group.world_size:
        lower = global_batch_size - global_batch_size % group.world_size
        examples = f"e.g. {lower} or {lower + group.world_size}" if lower else f"e.g. {group.world_size}"
        raise GanctlError(
            f"train.global_batch_size={global_batch_size} does not divide among {group.world_size} processes: "
            f"choose a multiple of {group.world_size} ({examples}), or train.global_batch_size=null to "
            f"give each process train.batch_size."
        )
    return global_batch_size // group.world_size


def wrap(module: nn.Module, group: Group, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """The module as the training loop calls it: DDP-wrapped when there are several ranks."""
    if not group.enabled:
        return module
    if sync_batchnorm:
        if device.type != "cuda":
            raise GanctlError("train.sync_batchnorm=true needs CUDA GPUs (PyTorch's SyncBatchNorm); set it to false on CPUs.")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def accumulating(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Around a micro-batch's forward and backward passes: DDP averages the gradient over the ranks
    only in the last (`sync`); before it each rank accumulates its own (DDP's no_sync)."""
    if sync or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()


def any_rank(flag: bool, group: Group) -> bool:
    """True on every rank when it is true on any: all ranks stop at the same step."""
    if not group.enabled:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group.flags)
    return bool(value.item())


def broadcast(value: Any, group: Group) -> Any:
    """Rank 0's value, on every rank (e.g. the run directory, which Hydra names by the clock)."""
    if not group.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(value: torch.Tensor, group: Group) -> torch.Tensor:
    """The mean of `value` over every rank, on every rank (itself in a single process). No gradient
    flows through the collective: combine it with the local value to keep one (see GAN.path_length_penalty)."""
    if not group.enabled:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)  # a sum: gloo has no average
    return total / group.world_size


def reseed(group: Group) -> None:
    """Give each rank its own random stream (its own batches and latents), derived from the shared one."""
    if not group.enabled:
        return
    base = int(torch.randint(2**31, (1,)).item())  # the same number on every rank
    torch.manual_seed(base + group.rank)


def weights_agree(modules: list[nn.Module], group: Group) -> bool:
    """Whether every rank holds bit-identical weights (DDP's promise), checked by hashing them.
    (BatchNorm's running statistics are not weights: each rank's follow its own last batches.)"""
    return tensors_agree([parameter for module in modules for parameter in module.parameters()], group)


def tensors_agree(tensors: list[torch.Tensor], group: Group) -> bool:
    """Whether every rank holds bit-identical `tensors` (e.g. ADA's augmentation probability)."""
    if not group.enabled:
        return True
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digests = [None] * group.world_size
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def teardown(failed: bool = False) -> None:
    """Leave the process group, if this process joined one: after a barrier when the run ended well;
    at once when it failed, so that ranks waiting in a collective for this one fail too, not hang."""
    global _joined
    _joined = None
    if dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()

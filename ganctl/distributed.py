"""Data-parallel training with PyTorch DDP, started by torchrun.

`torchrun --nproc_per_node=N $(which ganctl) train ...` starts N copies of ganctl; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...) tells each one its place. Every rank
builds the same networks from the same seed, DDP averages their gradients, and each rank draws its
own batches, so one step trains on N x train.batch_size images. Rank 0 alone logs, samples, evaluates
and writes checkpoints, into one run directory. Without torchrun (WORLD_SIZE unset or 1) all of this
is a no-op and training is a plain single process.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ganctl.errors import GanctlError


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


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


def setup(device: torch.device) -> tuple[Group, torch.device]:
    """Join torchrun's process group: NCCL with one GPU per rank (cuda:LOCAL_RANK), gloo on CPUs."""
    if not launched_by_torchrun():
        return Group(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= torch.cuda.device_count():
            raise GanctlError(
                f"torchrun started {os.environ['WORLD_SIZE']} processes, but this machine has "
                f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node={torch.cuda.device_count()} or fewer."
            )
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise GanctlError(f"Multi-process training runs on CUDA GPUs or CPUs, not on {device.type}.")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    flags = dist.new_group(backend="gloo") if device.type == "cuda" else None
    return Group(dist.get_rank(), dist.get_world_size(), flags), device


def wrap(module: nn.Module, group: Group, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """The module as the training loop calls it: DDP-wrapped when there are several ranks."""
    if not group.enabled:
        return module
    if sync_batchnorm:
        if device.type != "cuda":
            raise GanctlError("train.sync_batchnorm=true needs CUDA GPUs (PyTorch's SyncBatchNorm); set it to false on CPUs.")
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


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


def reseed(group: Group) -> None:
    """Give each rank its own random stream (its own batches and latents), derived from the shared one."""
    if not group.enabled:
        return
    base = int(torch.randint(2**31, (1,)).item())  # the same number on every rank
    torch.manual_seed(base + group.rank)


def weights_agree(modules: list[nn.Module], group: Group) -> bool:
    """Whether every rank holds bit-identical weights (DDP's promise), checked by hashing them.
    (BatchNorm's running statistics are not weights: each rank's follow its own last batches.)"""
    if not group.enabled:
        return True
    digest = hashlib.sha256()
    for module in modules:
        for parameter in module.parameters():
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    digests = [None] * group.world_size
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def teardown(group: Group) -> None:
    if group.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

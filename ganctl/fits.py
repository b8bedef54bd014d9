"""Whether the networks a config describes can train, asked before the first step: a network that
cannot be built as configured (a size of 0, a width that leaves no channels) fails in a trial forward
pass with one message naming its settings, and a batch is refused when D's minibatch-std groups do not
divide it or when its activations alone exceed the memory the device has free -- instead of a
traceback, or the kernel killing the process, in the first step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ganctl.console import warn
from ganctl.errors import GanctlError
from ganctl.models.layers import MinibatchStd


@dataclass
class Trial:
    """What a trial forward pass measured: the bytes of every layer's output per image, for G and D."""

    generator_bytes: int
    discriminator_bytes: int

    def step_bytes(self, batch_size: int) -> int:
        """A lower bound of what one training step holds for its backward passes: G's activations, and
        D's for the real and the fake batch (R1, R2 and the optimizers' state come on top)."""
        return batch_size * (self.generator_bytes + 2 * self.discriminator_bytes)


def trial(generator: nn.Module, discriminator: nn.Module, model: DictConfig, conditional: bool) -> Trial:
    """G on two latents and D on its images, in eval mode (no running statistic or average moves),
    without gradients and with every RNG restored after it: a network that fails here would have
    failed in the first step. `model`: the config's model block, for the message."""
    device = next(generator.parameters()).device
    labels = torch.zeros(2, dtype=torch.long, device=device) if conditional else None
    modes = (generator.training, discriminator.training)
    generator.eval(), discriminator.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(0)
            latents = torch.randn(2, generator.latent_dim, device=device)
            with counting(generator) as generator_bytes:
                images = attempt(lambda: generator(latents) if labels is None else generator(latents, labels), "generator", model)
            with counting(discriminator) as discriminator_bytes:
                attempt(lambda: discriminator(images) if labels is None else discriminator(images, labels), "discriminator", model)
    finally:
        generator.train(modes[0]), discriminator.train(modes[1])
    return Trial(generator_bytes[0] // 2, discriminator_bytes[0] // 2)


class counting:
    """Sums the bytes of every leaf module's output inside the block: `with counting(net) as total:`."""

    def __init__(self, network: nn.Module) -> None:
        self.total = [0]
        self.handles = [module.register_forward_hook(self.add) for module in network.modules() if not list(module.children())]

    def add(self, module: nn.Module, inputs: Any, output: Any) -> None:
        for tensor in output if isinstance(output, tuple) else (output,):
            if isinstance(tensor, torch.Tensor):
                self.total[0] += tensor.numel() * 4  # fp32, as the step's backward keeps them at most

    def __enter__(self) -> list[int]:
        return self.total

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()


def attempt(forward: Any, network: str, model: DictConfig) -> torch.Tensor:
    """The forward pass, or one GanctlError that names the network and the settings that look wrong."""
    try:
        return forward()
    except GanctlError:
        raise
    except Exception as error:  # torch's own refusal of a shape, deep inside a layer
        node = OmegaConf.to_container(model.get(network, {}), resolve=True) if isinstance(model, DictConfig) else {}
        suspects = [f"model.{network}.{key}={value}" for key, value in node.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and key != "minibatch_std"]
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        hint = f" Check {', '.join(suspects)}: sizes must be positive." if suspects else ""
        raise GanctlError(f"model.{network} cannot make images as configured ({reason}).{hint}") from None


def minibatch_std_group(discriminator: nn.Module) -> int:
    """The largest group D's minibatch standard deviation takes (1: D has none)."""
    return max((m.group_size for m in discriminator.modules() if isinstance(m, MinibatchStd)), default=1)


def check_batch(discriminator: nn.Module, measured: Trial, batch_size: int, device: torch.device,
                micro_batch: Optional[int] = None) -> None:
    """Refuse a batch (images per process) that D's minibatch-std groups do not divide, or whose
    activations exceed the device's free memory; say so when a group is larger than the batch.
    `micro_batch` (train.batch_gpu): the images of one pass, which the groups must divide too, and
    which is what the activations are measured for."""
    for layer in (m for m in discriminator.modules() if isinstance(m, MinibatchStd)):
        group = layer.group_size
        if micro_batch is not None and micro_batch < batch_size and micro_batch % group:
            divisors = [k for k in range(batch_size, 0, -1) if batch_size % k == 0 and k % group == 0]
            raise GanctlError(
                f"D's minibatch standard deviation takes groups of {group} images, which do not divide the micro-batch "
                f"of train.batch_gpu={micro_batch}: choose a micro-batch of whole groups (e.g. "
                f"train.batch_gpu={next((k for k in divisors if k < micro_batch), divisors[-1] if divisors else group)}), or a "
                f"group that divides it (model.discriminator.minibatch_std or mbstd_group_size)."
            )
        if group > batch_size:
            warn(f"D's minibatch-std groups ({group}) are larger than the batch ({batch_size} images per process): "
                 f"each group is the whole batch.")
        elif batch_size % group:
            divisors = [g for g in range(group, 0, -1) if batch_size % g == 0]
            raise GanctlError(
                f"D's minibatch standard deviation takes groups of {group} images, which do not divide the batch of "
                f"{batch_size} per process: choose a group that does (model.discriminator.minibatch_std or "
                f"mbstd_group_size, e.g. {divisors[0]}), or a batch it divides (e.g. train.batch_size={batch_size - batch_size % group or group})."
            )
    pass_size = micro_batch or batch_size
    needed, free = measured.step_bytes(pass_size), free_memory(device)
    if free is not None and needed > free:
        fits = max(1, pass_size * free // needed // 4)  # (the bound leaves out backward's own buffers)
        pieces = max(k for k in range(1, min(fits, batch_size) + 1) if batch_size % k == 0)  # a micro-batch that divides the batch
        split = micro_batch is not None and micro_batch < batch_size
        raise GanctlError(
            f"{'train.batch_gpu' if split else 'train.batch_size'}={pass_size} needs at least {needed / 2**30:.1f} GiB for "
            f"one pass's activations alone, more than the {free / 2**30:.1f} GiB of {device.type.upper()} memory free now: try "
            + (f"train.batch_gpu={pieces}" if split else
               f"train.batch_size={fits}, or the same batch in micro-batches (train.batch_gpu={pieces})") + ", or a smaller model."
        )


def free_memory(device: torch.device) -> Optional[int]:
    """Bytes the device can still give: the GPU's free memory, or the host's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def out_of_memory(error: BaseException) -> bool:
    """Whether an exception is an allocator's refusal (CUDA's error type, or the CPU allocator's message)."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


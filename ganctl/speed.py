"""How fast a run computes, never what it trains: precision, memory format, torch.compile, optimizers.

- `train.precision`: fp32, or bf16 / fp16 autocast for the networks' forward passes. Weights, optimizer
  states, losses and the gradient penalty's norm stay in fp32; fp16 adds a GradScaler per network and
  runs the penalty's critic pass in fp32 (its range would overflow the loss-scaled double backward).
  `auto` is bf16 on GPUs that support it and on CPUs with native bf16, and fp32 everywhere else.
- `train.channels_last`: NHWC weights and activations for convolutional models, which oneDNN and
  cuDNN run faster than NCHW.
- `train.compile`: torch.compile for G and D, falling back to eager where it cannot compile.
- Optimizers run as one fused kernel where torch has one for the device (CUDA; the CPU from torch 2.4:
  Adam's update is then a third of the time of its foreach ops), else as foreach (multi-tensor) ops.

On the CPU every setting is deterministic, so an interrupted run resumes exactly at any precision.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from ganctl.config import check_precision
from ganctl.errors import GanctlError
from ganctl.console import warn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 convolutions and matmuls natively (else it emulates them)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision a run uses on `device`: `auto` made concrete, unusable choices refused."""
    check_precision(name)
    if name == "auto":  # bf16 where the hardware has it: the default run's quality holds (docs/benchmarks.md)
        native = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_native_bf16()
        return "bf16" if native else "fp32"
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise GanctlError("train.precision=bf16, but this GPU has no bfloat16 support: use fp16 (or fp32).")
    if device.type == "cpu" and name == "bf16" and not cpu_has_native_bf16():
        warn("train.precision=bf16 on a CPU without native bfloat16 (AVX512-BF16 or AMX): it is emulated "
             "and usually slower than fp32.")
    if device.type == "cpu" and name == "fp16":
        better = "bf16, which this CPU has natively (or fp32)" if cpu_has_native_bf16() else "fp32 (this CPU has no native bf16 either)"
        warn(f"train.precision=fp16 on a CPU: fp16 is a GPU format, emulated here and slower than fp32; use {better}.")
    return name


def autocast(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for the networks' forward passes: autocast to bf16 / fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    return partial(torch.autocast, device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16's loss scaling, one per network; a pass-through (no scaling, no sync) at other precisions."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def configure_backends(device: torch.device, precision: str) -> None:
    """cuDNN picks the fastest convolution algorithms for the run's fixed shapes. fp32 means fp32:
    TF32 tensor-core math, which rounds inputs to 10 bits of mantissa, is used only by the autocast
    precisions."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def has_convolutions(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def memory_format(module: nn.Module, channels_last: bool) -> nn.Module:
    """The module with channels_last (NHWC) weights when asked and it has convolutions; else as is."""
    if channels_last and has_convolutions(module):
        return module.to(memory_format=torch.channels_last)
    return module


def fused_kernels_on(device: torch.device) -> bool:
    """Whether this torch has fused optimizer kernels for `device` (CUDA; the CPU from torch 2.4)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:  # a torch that does not say: CUDA only, as before the CPU kernels
        return device.type == "cuda"
    return device.type in _get_fused_kernels_supported_devices()


def optimizer(factory: Callable[..., torch.optim.Optimizer], parameters: Iterator[nn.Parameter],
              device: torch.device) -> torch.optim.Optimizer:
    """The configured optimizer, fused where it offers a fused kernel for the device, else foreach on
    the CPU, unless the config chose either."""
    chosen = getattr(factory, "keywords", {})
    cls = getattr(factory, "func", factory)
    accepted = inspect.signature(cls).parameters
    fast: dict[str, Any] = {}
    if "fused" not in chosen and "foreach" not in chosen:
        if "fused" in accepted and fused_kernels_on(device):
            fast["fused"] = True
        elif device.type == "cpu" and "foreach" in accepted:  # (other devices: torch's own default)
            fast["foreach"] = True
    return factory(parameters, **fast)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradients for `module`'s weights inside (only for its inputs): G's step needs D's
    input-gradients, never D's weight-gradients, which would cost a third of D's backward pass."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), flags):
            parameter.requires_grad_(flag)


def compiled(module: nn.Module, name: str, enabled: bool, double_backward: str = "") -> Callable:
    """`module` under torch.compile when enabled; eager, with one warning, where it cannot be compiled.

    torch.compile has no double backward, which a penalty on a gradient needs: a network trained with
    one (`double_backward` names it: the gradient penalty, R1, path-length regularisation) stays eager. Other failures (no C++ compiler for the CPU backend, an unsupported op) show at
    a call, when torch compiles: that call and the rest run eagerly.
    """
    if not enabled:
        return module
    if double_backward:
        needs = "needs" if " and " not in double_backward else "need"
        warn(f"train.compile: {name} runs eagerly, because {double_backward} {needs} a double "
             "backward, which torch.compile does not support.")
        return module
    if not torch.cuda.is_available():
        # The CPU backend imports torch's C++ extension loader, which warns "No CUDA runtime is found,
        # using CUDA_HOME=..." on any machine with a CUDA toolkit but no GPU; nothing here uses CUDA.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return CompiledOrEager(module, name)


class CompiledOrEager:
    """Calls the compiled module until compiling it fails once; from then on, the module itself."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module, self.name = module, name
        self.compiled: Optional[Callable] = torch.compile(module)

    def __call__(self, *args: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as error:  # a compiler failure: nothing has run yet, so run eagerly
                cause = getattr(error, "inner_exception", None) or error  # what the backend raised
                reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
                warn(f"train.compile: torch.compile could not compile {self.name} ({reason}); it runs eagerly.")
                self.compiled = None
        return self.module(*args, **kwargs)

"""Speed defaults chosen by measurement (the lists live in ``configs/defaults/speed.yaml``, each with the
measurement behind it; ``docs/speed.md`` gives the figures), and activation checkpointing. ``engine/runtime.py``
applies them."""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

import torch
import yaml
from torch import nn

from papernets.config import CONFIGS_DIR

_DEFAULTS = yaml.safe_load((CONFIGS_DIR / "defaults" / "speed.yaml").read_text())

# The measured defaults (src/papernets/configs/defaults/speed.yaml says which measurement gave each list):
FAMILY_REPRESENTATIVES: list[str] = list(_DEFAULTS["representatives"])
CHANNELS_LAST_CPU_FAMILIES: frozenset[str] = frozenset(_DEFAULTS["channels_last_cpu"])
BF16_CPU_FAMILIES: frozenset[str] = frozenset(_DEFAULTS["bf16_cpu"])
COMPILE_CPU_FAMILIES: frozenset[str] = frozenset(_DEFAULTS["compile_cpu"])
# ...and those compiled only when the run trains in fp32 (their compile gain was measured on the fp32 step).
COMPILE_CPU_FP32_FAMILIES: frozenset[str] = frozenset(_DEFAULTS["compile_cpu_fp32"])
# The compile rule's premise: compile time is paid back within one epoch of this many images (Fashion-MNIST's).
COMPILE_MIN_IMAGES: int = int(_DEFAULTS["compile_min_images"])


def use_channels_last(family: str, device: torch.device) -> bool:
    """Whether to train and profile a model family in channels_last memory format on ``device``."""
    if device.type == "cuda":
        return True
    return family in CHANNELS_LAST_CPU_FAMILIES


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX), which oneDNN uses."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_label() -> str:
    """This machine's CPU model and the bf16 instructions oneDNN can use on it, for the header of a timed table
    (bf16's speed-up, and speed in general, depend on them): e.g. ``AMD EPYC (AVX-512 BF16)``."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.M) or re.match("()", "")).group(1).split())
    isa = "AMX" if "amx_bf16" in flags else "AVX-512 BF16" if "avx512_bf16" in flags else "no bf16 instructions"
    return f"{name.group(1).strip() if name else platform.machine()} ({isa})"


def use_bf16(family: str, device: torch.device) -> bool:
    """Whether ``train.amp: auto`` trains a family under bf16 autocast on a CPU ``device``."""
    return device.type == "cpu" and family in BF16_CPU_FAMILIES and cpu_supports_bf16()


def use_compile(family: str, device: torch.device, train_images: int = COMPILE_MIN_IMAGES,
                fixed_shapes: bool = True, fp32: bool = False) -> bool:
    """Whether an unset ``train.compile`` compiles a family's training step on ``device``: a family of
    ``COMPILE_CPU_FAMILIES`` (or of ``COMPILE_CPU_FP32_FAMILIES`` when the run trains in ``fp32``, without autocast),
    in a run that trains at least ``COMPILE_MIN_IMAGES`` images in all (where the measurement says the compile time
    is paid back) at one input size (progressive learning's stages would each compile again). On CUDA nothing was
    measured (no GPU was at hand), so it stays off there."""
    measured = family in COMPILE_CPU_FAMILIES or (fp32 and family in COMPILE_CPU_FP32_FAMILIES)
    return device.type == "cpu" and measured and train_images >= COMPILE_MIN_IMAGES and fixed_shapes


# ------------------------------------------------------------------------------------ activation checkpointing

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def checkpoint_units(model: nn.Module) -> list[nn.Module]:
    """The modules whose activations activation checkpointing drops: the blocks inside the model's top-level
    containers (ResNet's ``layerN`` blocks, a transformer's ``blocks``, EfficientNet's stages, DenseNet's dense
    blocks and transitions), or a whole container of plain layers (VGG's and AlexNet's ``features``).

    Only containers of exactly the plain types count (``ConvNormAct`` subclasses ``nn.Sequential`` and is a
    single layer)."""
    units: list[nn.Module] = []
    for child in model.children():
        if type(child) not in _CONTAINERS:
            continue
        blocks = [m for m in child.children() if _has_params(m) and any(True for _ in m.children())]
        if blocks:
            units.extend(blocks)
        elif isinstance(child, nn.Sequential) and _has_params(child):
            units.append(child)
    return units


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each unit's forward pass in the backward pass instead of keeping its activations
    (``torch.utils.checkpoint``, non-reentrant, RNG state preserved so dropout and stochastic depth repeat).

    The parameters and the state dict are untouched: each unit's ``forward`` is wrapped in place. Without
    gradients (evaluation) the units run as usual. Batch-norm running statistics are updated once more by each
    recomputation (as in torchvision's and timm's checkpointing). Returns the number of units."""
    units = checkpoint_units(model)
    for unit in units:
        if "forward" not in vars(unit):  # not wrapped yet
            # a partial of the unit (not a closure), so that copy.deepcopy (EMA) gives the copy its own
            unit.forward = functools.partial(_checkpointed_forward, unit)
    return len(units)


def _checkpointed_forward(unit: nn.Module, *args, **kwargs):
    from torch.utils.checkpoint import checkpoint

    plain = functools.partial(type(unit).forward, unit)
    if not torch.is_grad_enabled():
        return plain(*args, **kwargs)
    return checkpoint(plain, *args, use_reentrant=False, **kwargs)


def kept_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward (parameters excluded)."""
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        if t.data_ptr() not in params:
            seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())

"""Speed defaults chosen by measurement (see the README's "Speed" section for the figures behind them)."""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

import torch
from torch import nn

# One model per family, the one the benchmark's default list trains (or the family's smallest common member):
# the models that benchmarks/memory_format.py and benchmarks/speed_options.py measure for the defaults below.
FAMILY_REPRESENTATIVES: list[str] = [
    "lenet5_bn", "alexnet", "vgg16_bn", "nin", "googlenet", "inception_v3", "resnet18", "resnext50_32x4d",
    "seresnet18", "densenet40_k12", "darknet53", "xception", "mobilenet_v1", "mobilenet_v2", "squeezenet1_1",
    "shufflenet_v1_g3", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_v2_s", "vit_s_16", "mixer_s_16",
    "resmlp_12", "gmlp_s_16",
]

# Families whose training step measured at least 5% faster in channels_last on the CPU, by
# `python benchmarks/memory_format.py --out docs/results/memory_format.md` (batch 128 at 28x28x1, small-image
# forms; figures in that file). Every convolutional family but AlexNet gained (x1.12 to x1.82, depthwise networks
# the most); AlexNet (x0.98), ViT (x0.98), MLP-Mixer (x1.01) and gMLP (x0.95) did not. ResMLP measured x1.06.
CHANNELS_LAST_CPU_FAMILIES: frozenset[str] = frozenset({
    "darknet", "densenet", "efficientnet", "efficientnet_v2", "googlenet", "inception", "lenet", "mobilenet", "nin",
    "resmlp", "resnet", "resnext", "senet", "shufflenet", "squeezenet", "vgg", "xception",
})


def use_channels_last(family: str, device: torch.device) -> bool:
    """Whether to train and profile a model family in channels_last memory format on ``device``."""
    if device.type == "cuda":
        return True
    return family in CHANNELS_LAST_CPU_FAMILIES


# The families trained under bf16 autocast by default on the CPU (``train.amp: auto``, where the CPU has bf16
# instructions) and compiled by default (``train.compile`` unset), as measured by
# `python benchmarks/speed_options.py --out docs/results/speed_options.md` (one model per family, batch 128 at
# 28x28x1; figures in that file). bf16: every measured model of the family at least 10% faster, its loss after 30
# Adam steps on Fashion-MNIST within 10% of fp32's and its accuracy at most 3 points below (x1.15 for MobileNetV1
# to x2.80 for Xception). Not LeNet (x1.04), ShuffleNet (x1.03 and x0.83), ResNeXt (loss 13% above fp32's),
# EfficientNetV2 (accuracy 6.6 points below) and gMLP (loss 14% below: not following fp32). Compile: at least 10%
# faster and its cold compile time paid back within one epoch of 54,000 images, in a family that does not train in
# bf16 (compile was timed on the fp32 step). A test keeps both sets within what the committed table accepts.
BF16_CPU_FAMILIES: frozenset[str] = frozenset({
    "alexnet", "darknet", "densenet", "efficientnet", "googlenet", "inception", "mlp_mixer", "mobilenet", "nin",
    "resmlp", "resnet", "senet", "squeezenet", "vgg", "vit", "xception",
})
COMPILE_CPU_FAMILIES: frozenset[str] = frozenset({"efficientnet_v2", "gmlp", "resnext"})


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


# The rule's premise: compile time is paid back within one epoch of this many images (Fashion-MNIST's training split).
COMPILE_MIN_IMAGES = 54_000


def use_compile(family: str, device: torch.device, train_images: int = COMPILE_MIN_IMAGES,
                fixed_shapes: bool = True) -> bool:
    """Whether an unset ``train.compile`` compiles a family's training step on ``device``: a family of
    ``COMPILE_CPU_FAMILIES``, in a run that trains at least ``COMPILE_MIN_IMAGES`` images in all (where the
    measurement says the compile time is paid back) at one input size (progressive learning's stages would each
    compile again). On CUDA nothing was measured (no GPU was at hand), so it stays off there."""
    return (device.type == "cpu" and family in COMPILE_CPU_FAMILIES and train_images >= COMPILE_MIN_IMAGES
            and fixed_shapes)


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

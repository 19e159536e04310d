"""Map weights from torchvision or timm onto papernets models of the same architecture.

Weights come from the other library's own download cache (it downloads them when the user has internet) or
from a local file holding that library's state dict (``pretrained_file``). Nothing here downloads by itself.
Each model's ``PretrainedSource.convert`` renames keys; the helpers below cover the common cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papernets.errors import ModelConfigError

__all__ = ["PretrainedSource", "load_pretrained", "reference_model", "rename_keys", "map_by_order", "adapt_input_conv"]


@dataclass(frozen=True)
class PretrainedSource:
    """Where equivalent weights live in another library, and how to map their state dict onto ours.

    ``library`` is ``"torchvision"`` or ``"timm"``; ``name`` the model name there; ``convert`` maps their state
    dict to ours (it receives their state dict and our freshly built model); ``kwargs`` are extra keywords for
    our builder so that the architecture matches theirs exactly (e.g. a torchvision-compatible variant).
    """

    library: str
    name: str
    convert: Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    ref_kwargs: dict[str, Any] = field(default_factory=dict)



def rename_keys(state: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """Apply regex substitutions to every key, in order; all rules are tried on every key."""
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def map_by_order(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Pair their tensors with ours in registration order, checking every shape.

    For architectures whose modules are declared in the same order as the reference implementation. Any shape
    mismatch or count mismatch is an error, so a wrong pairing cannot pass silently.
    """
    ours = model.state_dict()
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    mine = [k for k in ours if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(mine):
        raise ValueError(f"cannot map by order: {len(theirs)} tensors in the source, {len(mine)} in ours")
    out: dict[str, torch.Tensor] = {}
    for (their_key, value), my_key in zip(theirs, mine, strict=True):
        if value.shape != ours[my_key].shape:
            raise ValueError(
                f"cannot map by order: {their_key} {tuple(value.shape)} vs {my_key} {tuple(ours[my_key].shape)}"
            )
        out[my_key] = value
    for key in ours:
        if key.endswith("num_batches_tracked"):
            out[key] = ours[key]
    return out


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-layer weight trained on RGB to ``in_chans`` channels (sum for 1, tile and rescale else)."""
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise ModelConfigError("pretrained='timm' needs timm: pip install timm") from exc
    return timm


def reference_model(library: str, name: str, **kwargs: Any) -> nn.Module:
    """A randomly initialized reference model from torchvision or timm (used by tests; no download)."""
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)
    if library == "timm":
        return _import_timm().create_model(name, pretrained=False, **kwargs)
    raise ModelConfigError(f"unknown weight library {library!r}; use 'torchvision' or 'timm'.")


def _fetch_state_dict(library: str, name: str) -> dict[str, torch.Tensor]:
    """Their pretrained state dict, through their own download cache (it downloads only when not cached)."""
    if library == "torchvision":
        import torchvision

        weights = torchvision.models.get_model_weights(name).DEFAULT
        return weights.get_state_dict(progress=True)
    if library == "timm":
        return _import_timm().create_model(name, pretrained=True).state_dict()
    raise ModelConfigError(f"unknown weight library {library!r}; use 'torchvision' or 'timm'.")


def load_pretrained(
    name: str,
    builder: Callable[..., nn.Module],
    sources: dict[str, PretrainedSource],
    num_classes: int,
    in_chans: int,
    img_size: int,
    pretrained: str | bool,
    pretrained_file: str | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    library = "torchvision" if pretrained is True else str(pretrained)
    if library not in sources:
        have = ", ".join(sorted(sources)) or "none"
        raise ModelConfigError(
            f"{name} has no {library!r} weights to import; available sources: {have}."
        )
    source = sources[library]
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise ModelConfigError(f"pretrained file {pretrained_file!r} does not exist.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    else:
        state = _fetch_state_dict(library, source.name)
    # ImageNet weights belong to the ImageNet form: keep it at any image size unless told otherwise.
    build = {"small_input": False, **source.kwargs, **kwargs}
    model = builder(num_classes=1000, in_chans=3, img_size=img_size, **build)
    converted = source.convert(state, model)
    model.load_state_dict(converted, strict=True)
    if in_chans != 3:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
        with torch.no_grad():
            new = adapt_input_conv(first.weight.data, in_chans) if first.weight.dim() == 4 else None
        if new is None:
            raise ModelConfigError(f"cannot adapt {name}'s first layer to {in_chans} input channels.")
        first.weight = nn.Parameter(new)
        if isinstance(first, nn.Conv2d):
            first.in_channels = in_chans
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model

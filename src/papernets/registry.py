"""The model registry: every architecture registers a builder under its paper name.

A model file declares its paper once (``Paper``) and registers one-line builders::

    RESNET = Paper("Deep Residual Learning for Image Recognition", "He, Zhang, Ren, Sun", 2015,
                   "https://arxiv.org/abs/1512.03385")

    @register_model(paper=RESNET, family="resnet", default_img_size=224, min_img_size=8)
    def resnet18(**kwargs) -> ResNet:
        return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)

``create_model`` fills in the common keywords (``num_classes``, ``in_chans``, ``img_size``), checks the image
size against the model's minimum, and optionally maps weights from torchvision or timm onto the model.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from papernets.errors import ModelConfigError, UnknownModelError
from papernets.pretrained import PretrainedSource, load_pretrained

__all__ = [
    "list_families",
    "Paper",
    "ModelEntry",
    "PretrainedSource",
    "UnknownModelError",
    "ModelConfigError",
    "register_model",
    "create_model",
    "list_models",
    "model_info",
    "get_entry",
    "resolve_name",
]


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    year: int
    url: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    paper: Paper
    family: str
    default_img_size: int
    min_img_size: int
    aliases: tuple[str, ...] = ()
    pretrained: dict[str, PretrainedSource] = field(default_factory=dict)
    variable_img_size: bool = True

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paper": self.paper.title,
            "authors": self.paper.authors,
            "year": self.paper.year,
            "url": self.paper.url,
            "family": self.family,
            "default_img_size": self.default_img_size,
            "min_img_size": self.min_img_size,
            "variable_img_size": self.variable_img_size,
            "aliases": list(self.aliases),
            "pretrained": sorted(self.pretrained),
        }


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    *,
    paper: Paper,
    family: str,
    default_img_size: int = 224,
    min_img_size: int = 16,
    aliases: tuple[str, ...] = (),
    pretrained: dict[str, PretrainedSource] | None = None,
    variable_img_size: bool = True,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under its function name.

    ``variable_img_size`` is False for models whose weights fix the number of patches (MLP-Mixer, ResMLP,
    gMLP): they must be built for the size they will see.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY or name in _ALIASES:
            raise RuntimeError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=fn,
            paper=paper,
            family=family,
            default_img_size=default_img_size,
            min_img_size=min_img_size,
            aliases=tuple(aliases),
            pretrained=dict(pretrained or {}),
            variable_img_size=variable_img_size,
        )
        for alias in aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise RuntimeError(f"alias {alias!r} is registered twice")
            _ALIASES[alias] = name
        return fn

    return wrap


def resolve_name(name: str) -> str:
    """Return the registered name for ``name`` or one of its aliases; raise with close matches if unknown."""
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    squashed = {n.replace("_", ""): n for n in list(_REGISTRY) + list(_ALIASES)}
    if key.replace("_", "") in squashed:  # "ResNet-18" -> resnet18
        return resolve_name(squashed[key.replace("_", "")])
    candidates = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=4, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else " Run `papernets models` to list them."
    raise UnknownModelError(f"unknown model {name!r}.{hint}")


def get_entry(name: str) -> ModelEntry:
    return _REGISTRY[resolve_name(name)]


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching an fnmatch ``pattern`` (aliases are not listed)."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern.lower()))


def list_families() -> list[str]:
    """Sorted names of the model families (``ModelEntry.family``) that have a registered model."""
    return sorted({e.family for e in _REGISTRY.values()})


def model_info(name: str) -> dict[str, Any]:
    """Paper title, authors, year, url, family, default and minimum image size of a model."""
    return get_entry(name).info()


def create_model(
    name: str,
    num_classes: int = 1000,
    in_chans: int = 3,
    img_size: int | None = None,
    pretrained: str | bool = False,
    pretrained_file: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``img_size`` defaults to the paper's input size; below 64 the model uses its small-image form unless
    ``small_input`` says otherwise. ``pretrained`` is ``"torchvision"`` or ``"timm"`` to map that library's
    weights onto ours (they come from its own download cache, or from ``pretrained_file``, a state dict saved
    by that library). Other keywords (``drop_rate``, ``drop_path_rate``, ``small_input``, ...) go to the model.
    """
    entry = get_entry(name)
    if img_size is None:
        img_size = entry.default_img_size
    if img_size < entry.min_img_size:
        raise ModelConfigError(
            f"image size {img_size} is below {entry.name}'s minimum of {entry.min_img_size} px; "
            f"use an image size of at least {entry.min_img_size}."
        )
    if num_classes < 1:
        raise ModelConfigError(f"num_classes must be at least 1, got {num_classes}.")
    if in_chans < 1:
        raise ModelConfigError(f"in_chans must be at least 1, got {in_chans}.")
    if pretrained:
        return load_pretrained(entry.name, entry.builder, entry.pretrained, num_classes, in_chans, img_size,
                               pretrained, pretrained_file, kwargs)
    return entry.builder(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)

"""Building the configured model: the registry's builder with the config's keywords, checked against the
signature of the model class before anything is built, so that a keyword the model does not take is a one-line
error naming the config key."""

from __future__ import annotations

import inspect
import typing
from typing import Any

from torch import nn

from papernets.config import Config
from papernets.errors import ModelConfigError
from papernets.registry import ModelEntry, create_model, get_entry

__all__ = ["accepted_keywords", "build_model", "model_kwargs"]

_MODEL_KEYS = ("drop_rate", "drop_path_rate", "small_input")  # model.<key>; anything else is model.kwargs.<key>


def model_kwargs(cfg: Config) -> dict[str, Any]:
    """The keywords a config passes to the model builder: ``model.kwargs`` and the ``model.*`` keys that are set."""
    kwargs: dict[str, Any] = dict(cfg.model.kwargs)
    for key in _MODEL_KEYS:
        if getattr(cfg.model, key) is not None:
            kwargs[key] = getattr(cfg.model, key)
    return kwargs


def accepted_keywords(entry: ModelEntry) -> set[str] | None:
    """The keywords the model class of ``entry`` takes (its builder's return annotation), or None where it takes
    any (``**kwargs``) or the class cannot be told."""
    try:
        cls = typing.get_type_hints(entry.builder).get("return")
    except Exception:  # an annotation that does not resolve: no check, the call itself decides
        return None
    if not isinstance(cls, type):
        return None
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_model(cfg: Config, num_classes: int, in_chans: int, image_size: int | None = None) -> nn.Module:
    """The configured model for a dataset with ``num_classes`` classes and ``in_chans`` channels.

    Raises ModelConfigError for a keyword the model does not take (a ``model.kwargs`` key, or
    ``model.drop_path_rate`` for a model without stochastic depth)."""
    entry = get_entry(cfg.model.name)
    kwargs = model_kwargs(cfg)
    accepted = accepted_keywords(entry)
    if accepted is not None:
        for key in sorted(set(kwargs) - accepted):
            where = f"model.{key}" if key in _MODEL_KEYS else f"model.kwargs.{key}"
            raise ModelConfigError(f"{entry.name} does not take the keyword {key!r} ({where}); remove it.")
    if cfg.model.pretrained:
        kwargs["pretrained"] = cfg.model.pretrained
    try:
        return create_model(entry.name, num_classes=cfg.model.num_classes or num_classes,
                            in_chans=cfg.model.in_chans or in_chans, img_size=image_size or cfg.data.image_size,
                            **kwargs)
    except TypeError as exc:  # a keyword the class takes but the builder fixes itself (e.g. ResNet's depth)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ModelConfigError(f"{entry.name} rejected its keywords {sorted(kwargs)}: {first}; check model.kwargs "
                               f"and model.drop_rate, drop_path_rate, small_input.") from exc

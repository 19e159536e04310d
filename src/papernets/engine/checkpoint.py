"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects), tagged with
``format`` so that a foreign file is recognised as such.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch

from papernets.errors import CheckpointError

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint", "find_checkpoint"]

FORMAT = "papernets-checkpoint-v1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(path: str | Path, prefer: Literal["last", "best"] = "last") -> Path:
    """A checkpoint file, or the checkpoint of a run directory: ``checkpoints/last.pt`` (else ``best.pt``) to
    resume a run, ``prefer="best"`` for ``best.pt`` (else ``last.pt``): the weights the run tested, for eval and
    predict."""
    path = Path(path)
    if path.is_dir():
        names = ("last.pt", "best.pt") if prefer == "last" else ("best.pt", "last.pt")
        for candidate in (*(path / "checkpoints" / n for n in names), path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in {str(path)!r} (expected checkpoints/last.pt or best.pt).")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.")
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", prefer: Literal["last", "best"] = "last"
) -> dict[str, Any]:
    """Load a checkpoint file or a run directory's checkpoint (see ``find_checkpoint``); ``state["path"]`` says
    which file was read."""
    path = find_checkpoint(path, prefer)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {first[:200]}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a papernets checkpoint (no '{FORMAT}' tag).")
    state["path"] = str(path)
    return state

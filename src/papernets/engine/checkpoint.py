"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects), tagged with
``format`` so that a foreign file is recognised as such.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch

from papernets.errors import CheckpointError

__all__ = ["CheckpointError", "FORMAT", "NEXT_BEST", "save_checkpoint", "load_checkpoint", "find_checkpoint",
           "promote_best", "reconcile_best"]

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
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(exc):
            free = shutil.disk_usage(path.parent).free / 1e6
            raise CheckpointError(f"no space left on the device to write {str(path)!r} ({free:.0f} MB free); the "
                                  "previous checkpoint is intact: free some space and resume the run.") from exc
        raise


def _disk_full(exc: BaseException) -> bool:
    """A write that failed because the disk is full (torch reports it as a short write: "unexpected pos")."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("unexpected pos" in text or "No space left" in text)


# What every papernets checkpoint (last.pt and best.pt alike) holds; a file without one of them is refused.
REQUIRED_KEYS = ("model", "optimizer", "schedule", "epoch", "global_step", "best_val_acc", "best_epoch", "history",
                 "partial", "config", "data")


def _first_sentences(text: str, limit: int = 300) -> str:
    """The first line of an error, whole sentences up to ``limit`` characters (never cut mid-word)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= limit:
        return line
    cut = line.rfind(". ", 0, limit)
    return line[: cut + 1] if cut > 0 else line[: line.rfind(" ", 0, limit)] + " ..."


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
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a text or truncated file is not one
        raise CheckpointError(f"{str(path)!r} is not a papernets checkpoint: not a PyTorch checkpoint file at all "
                              "(not the zip archive torch.save writes; truncated, or another kind of file).")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        first = _first_sentences(str(exc)) or type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {first}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a papernets checkpoint (no '{FORMAT}' tag).")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{str(path)!r} is an incomplete papernets checkpoint: it has no "
                              f"{', '.join(missing)}.")
    state["path"] = str(path)
    return state


# The best checkpoint is written in three moves, so that a kill at any moment leaves a run that resumes to the same
# weights: the new best goes to NEXT_BEST, then last.pt (which names the best epoch) is written, then NEXT_BEST is
# renamed over best.pt. Killed before last.pt: NEXT_BEST is from a future the resumed run will redo, and is removed.
# Killed after last.pt: NEXT_BEST holds the epoch last.pt names, and the rename is finished on resume.
NEXT_BEST = "best.pt.next"


def promote_best(ckpt_dir: Path) -> None:
    """Rename a complete ``best.pt.next`` over ``best.pt`` (the third move)."""
    nxt = ckpt_dir / NEXT_BEST
    if nxt.is_file():
        os.replace(nxt, ckpt_dir / "best.pt")


def reconcile_best(ckpt_dir: Path, best_epoch: int) -> str | None:
    """On resume: finish or undo an interrupted best-checkpoint update so that ``best.pt`` holds ``best_epoch``
    (the epoch ``last.pt`` names), and remove temporary files a kill left behind. Returns what was done, or None."""
    done = None
    nxt = ckpt_dir / NEXT_BEST
    if nxt.is_file():
        try:
            epoch = int(torch.load(nxt, map_location="cpu", weights_only=True).get("epoch", -1))
        except Exception:  # a partial file cannot be: it was renamed into place complete; but never trust it
            epoch = -1
        if epoch == best_epoch:
            promote_best(ckpt_dir)
            done = f"finished writing best.pt (epoch {epoch})"
        else:
            nxt.unlink()
            done = f"removed a best checkpoint of epoch {epoch} that the resumed run will redo"
    for tmp in ckpt_dir.glob(".*.tmp"):  # temporary files of writes a kill interrupted
        tmp.unlink(missing_ok=True)
    return done

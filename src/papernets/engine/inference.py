"""Using a trained model: load a run or checkpoint, evaluate it on a split, predict images.

``load_trained`` returns a ``TrainedModel``: the model in eval mode with the weights the run tested (``best.pt``
of a run directory, its EMA where the run selected on it), in the runtime the run's evaluation used (memory
format, autocast dtype, test-time flips), and the data facts the run saved (classes, channels, mean and std). Both
``papernets eval`` and ``papernets predict`` go through it, and so do the benchmark scripts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papernets.config import Config, config_from_dict
from papernets.data.datasets import IMAGE_EXTENSIONS
from papernets.data.images import ImageTooLarge, open_image
from papernets.data.stream import eval_transform
from papernets.data.transforms import normalize, pil_to_uint8, preprocess_pil
from papernets.engine.build import build_model
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.distributed import DistInfo
from papernets.engine.evaluation import evaluate, tta_logits, tta_of
from papernets.engine.pipeline import eval_loader, open_data
from papernets.engine.runtime import Runtime, resolve_runtime
from papernets.errors import CheckpointError, UsageError
from papernets.registry import get_entry

__all__ = ["TrainedModel", "load_trained", "evaluate_split", "image_files", "predict_images"]


@dataclass
class TrainedModel:
    model: nn.Module  # eval mode, on runtime.device, in its memory format
    cfg: Config  # the run's resolved config
    ckpt: dict[str, Any]  # the checkpoint as read (its "path" says which file)
    runtime: Runtime

    @property
    def data(self) -> dict[str, Any]:
        """What the run saved of its dataset: name, classes, in_chans, native_size, mean, std, num_classes."""
        return self.ckpt["data"]

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])

    def preprocess(self, img: Any) -> torch.Tensor:
        """One PIL image as a batch of one, prepared as the run's evaluation batches were: squared at the dataset's
        size and resized (in-memory pipeline), or resized to ``image_size / crop_pct`` and center-cropped (stream
        pipeline); normalized with the run's statistics."""
        d, size = self.data, self.cfg.data.image_size
        if d.get("pipeline") == "stream":
            x = eval_transform(size, d["crop_pct"])(pil_to_uint8(img, gray=d["in_chans"] == 1))
            x = normalize(x[None], tuple(d["mean"]), tuple(d["std"]))
        else:
            x = preprocess_pil(img, d["in_chans"], d["native_size"], size, tuple(d["mean"]), tuple(d["std"]))
        x = x.to(self.runtime.device)
        return x.contiguous(memory_format=torch.channels_last) if self.runtime.channels_last else x

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (fp32) as the run's evaluation computed them: its autocast dtype and test-time augmentation."""
        with self.runtime.autocast():
            return tta_logits(self.model, x, tta_of(self.cfg.train))


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The model of a checkpoint file or run directory (its ``best.pt``, else ``last.pt``: the weights whose test
    accuracy the run reported), ready to evaluate on ``device``."""
    ckpt = load_checkpoint(checkpoint, prefer="best")
    if not all(k in ckpt for k in ("config", "data", "model")):
        raise CheckpointError(f"{ckpt['path']!r} holds no trained run (its config, data or weights are missing).")
    cfg = config_from_dict(ckpt["config"])
    cfg.model.pretrained = None
    data = ckpt["data"]
    model = build_model(cfg, data["num_classes"], data["in_chans"])
    weights = ckpt["model"]
    if cfg.train.select_best_on == "ema" and ckpt.get("ema") is not None:
        weights = ckpt["ema"]  # the run selected and tested its EMA weights
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} does not match its model {cfg.model.name}.") from exc
    runtime = resolve_runtime(cfg.train, get_entry(cfg.model.name).family, torch.device(device), training=False)
    runtime.apply()
    model.to(runtime.device).eval()
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return TrainedModel(model, cfg, ckpt, runtime)


def evaluate_split(
    trained: TrainedModel, dataset: str | None = None, data_root: str | None = None, split: str = "test",
    limit: int | None = None, batch_size: int = 256,
) -> dict[str, Any]:
    """Top-1, top-5, loss and the confusion matrix (a tensor, rows the true class) of ``trained`` on a split of its
    dataset (or of another with the same classes and channels), its images prepared by the run's pipeline with the
    run's statistics, evaluated as the run evaluated."""
    saved = trained.data
    cfg = copy.deepcopy(trained.cfg)
    d = cfg.data
    name = dataset or d.name
    d.root = data_root if data_root is not None else (d.root if name == d.name else None)
    d.name, d.limit, d.eval_limit, d.download = name, limit, None, False
    d.pipeline = saved.get("pipeline", "memory") if name == "imagefolder" else "auto"
    cfg.train.eval_batch_size = batch_size
    data = open_data(cfg)
    s = data.splits
    if s.num_classes != saved["num_classes"] or s.in_chans != saved["in_chans"]:
        raise UsageError(f"dataset {name!r} has {s.num_classes} classes and {s.in_chans} channels; the "
                         f"checkpoint's model expects {saved['num_classes']} and {saved['in_chans']}.")
    s.mean, s.std = tuple(saved["mean"]), tuple(saved["std"])  # the run's normalization
    rt = trained.runtime
    count = {"train": s.num_train, "val": s.num_val, "test": s.num_test}[split]
    if count == 0:
        raise UsageError(f"the {split} split of {name!r} is empty.")
    loader = eval_loader(data, cfg, split, rt.device, channels_last=rt.channels_last)
    result = evaluate(trained.model, loader, DistInfo(0, 1, 0, rt.device), rt.amp_dtype,
                      flip=tta_of(trained.cfg.train), confusion=True)
    return {"checkpoint": trained.ckpt["path"], "model": cfg.model.name, "dataset": name, "split": split,
            "images": int(result["images"]), "top1": result["acc"], "top5": result["top5"], "loss": result["loss"],
            "confusion": result["confusion"]}


def image_files(items: list[str]) -> list[Path]:
    """The image files named, folders searched recursively for images."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise UsageError(f"no images in folder {item!r}.")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"image {item!r} does not exist.")
    return files


def predict_images(trained: TrainedModel, items: list[str], top_k: int = 3) -> list[dict[str, Any]]:
    """The ``top_k`` labels and probabilities of each image (files or folders of images)."""
    from PIL import UnidentifiedImageError

    classes = trained.classes
    if top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {top_k}.")
    if top_k > len(classes):
        raise UsageError(f"--top-k {top_k} is more than the model's {len(classes)} classes; use --top-k 1 to "
                         f"{len(classes)}.")
    results = []
    for path in image_files(items):
        try:
            with open_image(path) as img:
                img.load()
                x = trained.preprocess(img)
        except ImageTooLarge as exc:
            raise UsageError(str(exc)) from exc
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise UsageError(f"cannot read image {str(path)!r}: {exc}") from exc
        top = trained.logits(x).softmax(dim=1)[0].topk(top_k)
        results.append({"image": str(path), "top": [{"label": classes[i], "probability": float(p)}
                                                    for p, i in zip(top.values, top.indices, strict=True)]})
    return results

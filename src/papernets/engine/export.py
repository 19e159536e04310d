"""A trained model out of papernets: ONNX, TorchScript or safetensors, with what is needed to use it, checked.

``export_trained`` writes the model of a run or checkpoint (the weights the run tested, in eval mode, fp32) as

- ``onnx``: PyTorch's exporter (``torch.onnx.export``, ``dynamo=True``), a dynamic batch dimension, the file's
  metadata (``metadata_props``) holding the model name, the class names, the normalization, the input size and the
  run's config; onnxruntime runs it (``pip install papernets[onnx]``);
- ``torchscript``: ``torch.jit.trace`` (deprecated by PyTorch in favour of ``torch.export``; kept for tools that
  still read it), the same metadata as the extra file ``papernets.json``;
- ``safetensors``: the weights alone (``pip install papernets[safetensors]``), the metadata in the file's header.

Then it checks the file against the PyTorch model on 8 images of seeded normal noise: the largest absolute logit
difference is returned, and above ``tolerance`` (1e-4) times the logits' scale, ``max(1, largest |logit|)``, the
export fails unless ``check`` is off. The scale: fp32 keeps about 7 significant digits, so two correct fp32
evaluations of a deep network agree to a fraction of its logits' size, not to a fixed amount (Inception-v3 at 28 px:
PyTorch's own fp32 logits, up to 6.7, differ from an fp64 evaluation of the same model by 2.6e-4); for logits
within [-1, 1] the limit is 1e-4 exactly. ``load_onnx`` reads an exported ONNX file back as a ``TrainedModel``
(``engine/inference.py``), so that ``papernets predict`` and ``papernets eval`` run it with onnxruntime exactly as
they run a checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from papernets.config import config_from_dict, config_to_dict
from papernets.engine.inference import TrainedModel, load_trained
from papernets.engine.runtime import resolve_runtime
from papernets.errors import CheckpointError, UsageError
from papernets.registry import get_entry

__all__ = ["FORMATS", "SUFFIXES", "ExportResult", "export_trained", "export_module", "load_onnx", "load_any",
           "metadata", "OnnxModule"]

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "safetensors": ".safetensors"}
CHECK_IMAGES = 8
META_KEY = "papernets"


@dataclass
class ExportResult:
    path: Path
    format: str
    image_size: int
    max_abs_diff: float | None  # None: not checked
    checked_with: str
    limit: float | None = None  # tolerance x max(1, largest |logit|)


def _missing(package: str, extra: str) -> UsageError:
    return UsageError(f"this needs the {package} package: pip install 'papernets[{extra}]'.")


def metadata(trained: TrainedModel, image_size: int) -> dict[str, str]:
    """What a user of the exported file needs, as strings: model, classes, normalization, input size, config."""
    d = trained.data
    return {"papernets_model": trained.cfg.model.name, "papernets_classes": json.dumps(list(d["classes"])),
            "papernets_mean": json.dumps(list(d["mean"])), "papernets_std": json.dumps(list(d["std"])),
            "papernets_input": json.dumps([1, int(d["in_chans"]), image_size, image_size]),
            META_KEY: json.dumps({"config": config_to_dict(trained.cfg), "data": d, "image_size": image_size})}


def _sample(in_chans: int, image_size: int) -> torch.Tensor:
    """The check's input: ``CHECK_IMAGES`` images of normal noise (in the normalized space the model sees)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(CHECK_IMAGES, in_chans, image_size, image_size, generator=g)


def export_trained(source: str | Path, fmt: str, out: str | Path | None = None, image_size: int | None = None,
                   opset: int | None = None, check: bool = True, tolerance: float = 1e-4) -> ExportResult:
    """Export the model of run or checkpoint ``source`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}.")
    trained = load_trained(source)
    model = trained.model.float().to(memory_format=torch.contiguous_format).eval()
    size = int(image_size or trained.cfg.data.image_size)
    entry = get_entry(trained.cfg.model.name)
    if size < entry.min_img_size:
        raise UsageError(f"--image-size {size} is below {entry.name}'s minimum of {entry.min_img_size}.")
    ckpt_path = Path(trained.ckpt["path"])
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    path = Path(out) if out else run_dir / f"{entry.name}{SUFFIXES[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _sample(int(trained.data["in_chans"]), size)

    def rebuild() -> nn.Module:
        return load_trained(trained.ckpt["path"]).model.float().to(memory_format=torch.contiguous_format).eval()

    diff, engine, limit = export_module(model, x, fmt, path, metadata(trained, size), opset, check, tolerance,
                                        rebuild)
    return ExportResult(path, fmt, size, diff, engine, limit)


def export_module(model: nn.Module, x: torch.Tensor, fmt: str, path: Path, meta: dict[str, str],
                  opset: int | None = None, check: bool = True, tolerance: float = 1e-4,
                  rebuild: Any = None) -> tuple[float | None, str, float]:
    """Write ``model`` (eval mode, fp32) as ``fmt`` to ``path`` with ``meta``, and compare the file's logits on
    ``x`` with the model's: (largest absolute difference or None unchecked, what ran the file, the limit:
    ``tolerance`` x max(1, largest |logit|)). ``rebuild``: a new model of the same architecture, to load safetensors
    weights into."""
    name = type(model).__name__
    with torch.inference_mode():
        try:
            want = model(x).float()
        except RuntimeError as exc:
            raise UsageError(f"{name} does not run on input {tuple(x.shape[1:])}: {str(exc).splitlines()[0]}") from exc
    writer = {"onnx": _onnx, "torchscript": _torchscript, "safetensors": _safetensors}[fmt]
    got, engine = writer(model, x, path, meta, opset, rebuild)
    diff = float((got - want).abs().max()) if check else None
    scale = max(1.0, float(want.abs().max()))
    limit = tolerance * scale
    if check and not diff <= limit:  # a NaN fails too
        raise CheckpointError(f"the exported {fmt} file {str(path)!r} differs from the PyTorch model by {diff:.3g} "
                              f"(largest absolute logit difference on {len(x)} images; the limit is {limit:.3g}: "
                              f"{tolerance:g} x the largest |logit|, {scale:.3g}); use --no-check to keep it anyway.")
    return diff, engine, limit


def _onnx(model: nn.Module, x: torch.Tensor, path: Path, meta: dict[str, str], opset: int | None,
          rebuild: Any) -> tuple[torch.Tensor, str]:
    try:
        import onnx
        import onnxruntime  # noqa: F401  (checked here, before a long export)
    except ImportError as exc:
        raise _missing(exc.name or "onnx", "onnx") from exc
    batch = torch.export.Dim("batch", min=1, max=65536)
    kwargs: dict[str, Any] = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["images"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), verbose=False, external_data=False, **kwargs)
        except Exception as exc:
            raise CheckpointError(f"ONNX export of {type(model).__name__} failed: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return _run_onnx(path, x), "onnxruntime"


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = OnnxModule(path)
    with torch.inference_mode():
        return session(x)


def _torchscript(model: nn.Module, x: torch.Tensor, path: Path, meta: dict[str, str], opset: int | None,
                 rebuild: Any) -> tuple[torch.Tensor, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export (see the docstring)
        traced = torch.jit.trace(model, x)
        torch.jit.save(traced, str(path), _extra_files={"papernets.json": json.dumps(meta)})
        loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        return loaded(x).float(), "torch.jit.load"


def _safetensors(model: nn.Module, x: torch.Tensor, path: Path, meta: dict[str, str], opset: int | None,
                 rebuild: Any) -> tuple[torch.Tensor, str]:
    try:
        from safetensors.torch import load_file, save_file
    except ImportError as exc:
        raise _missing("safetensors", "safetensors") from exc
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    if rebuild is None:
        raise UsageError("a safetensors check needs a new model to load the weights into (rebuild).")
    fresh = rebuild()
    fresh.load_state_dict(load_file(str(path)))
    with torch.inference_mode():
        return fresh(x).float(), "safetensors load into a new model"


class OnnxModule(nn.Module):
    """An ONNX file run by onnxruntime on the CPU, callable as a module: images (N, C, H, W) in, logits out."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise _missing("onnxruntime", "onnx") from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise CheckpointError(f"{str(path)!r} is not an ONNX model onnxruntime can run: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.meta = dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().contiguous().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0]).float()


def load_onnx(path: str | Path) -> TrainedModel:
    """An ONNX file written by ``papernets export`` as a ``TrainedModel`` run by onnxruntime (fp32, CPU)."""
    module = OnnxModule(path)
    if META_KEY not in module.meta:
        raise CheckpointError(f"{str(path)!r} has no papernets metadata: export it with `papernets export`.")
    meta = json.loads(module.meta[META_KEY])
    cfg = config_from_dict(meta["config"])
    cfg.data.image_size = int(meta["image_size"])
    cfg.train.amp, cfg.train.channels_last = "off", False
    runtime = resolve_runtime(cfg.train, get_entry(cfg.model.name).family, torch.device("cpu"), training=False)
    return TrainedModel(module, cfg, {"path": str(path), "data": meta["data"], "config": meta["config"]}, runtime)


def load_any(path: str | Path) -> TrainedModel:
    """A run directory or checkpoint (``load_trained``), or an ONNX file written by ``papernets export``."""
    return load_onnx(path) if str(path).lower().endswith(".onnx") else load_trained(path)

"""`papernets export` (ONNX, TorchScript, safetensors) and running an exported ONNX file with `predict` and `eval`."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import papernets
from papernets.cli import main
from papernets.engine import export as export_mod

BENCH_ROWS = ["alexnet", "vgg16", "nin", "googlenet", "lenet5_bn", "resnet18", "densenet40_k12", "mobilenet_v1",
              "mobilenet_v2", "inception_v3", "darknet53", "xception", "resnext50_32x4d", "seresnet18",
              "squeezenet1_1", "shufflenet_v1_g3", "efficientnet_b0", "efficientnet_v2_s", "vit_s_16", "mixer_s_16",
              "resmlp_12", "gmlp_s_16"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["train", "--model", "resnet20", "--dataset", "synthetic", "--image-size", "32", "--epochs", "1",
                 "--batch-size", "32", "--out", str(out), "--name", "r", "--set", "data.limit=96",
                 "--set", "output.plots=false", "--set", "train.threads=1",
                 "--set", "train.amp=off"]) == 0  # fp32 on every CPU: the checkpoint's logits equal the ONNX file's
    images = out / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((40, 36, 3)) * 255).astype("uint8")).save(images / f"{i}.png")
    return out / "r", images


def test_onnx_export_holds_its_metadata_takes_any_batch_and_predicts_as_the_checkpoint(run, capsys):
    import onnx

    run_dir, images = run
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    line = capsys.readouterr().out.strip()
    path = run_dir / "resnet20.onnx"
    assert line.startswith(str(path)) and "largest absolute logit difference" in line
    diff, limit = re.search(r"difference (\S+) \(limit (\S+)\)$", line).groups()
    assert float(diff) <= float(limit) and 1e-4 <= float(limit) < 1e-2
    assert not list(run_dir.glob("*.onnx.data"))  # one self-contained file
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["papernets_model"] == "resnet20" and json.loads(meta["papernets_classes"])[0] == "class0"
    assert json.loads(meta["papernets_input"]) == [1, 3, 32, 32] and len(json.loads(meta["papernets_mean"])) == 3
    module = export_mod.OnnxModule(path)
    trained = export_mod.load_trained(run_dir)
    for n in (1, 5):  # the batch dimension is dynamic
        x = torch.randn(n, 3, 32, 32)
        assert torch.allclose(module(x), trained.logits(x), atol=1e-4)
    # predict and eval give the checkpoint's answers
    assert main(["predict", str(run_dir), str(images), "--json", "--top-k", "3"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["predict", str(path), str(images), "--json", "--top-k", "3"]) == 0
    got = json.loads(capsys.readouterr().out)
    for a, b in zip(want, got, strict=True):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert all(abs(t["probability"] - u["probability"]) <= 1e-4 for t, u in zip(a["top"], b["top"], strict=True))
    assert main(["eval", str(run_dir), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["eval", str(path), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["images"] == b["images"] and abs(a["top1"] - b["top1"]) <= 1 / a["images"]
    assert abs(a["loss"] - b["loss"]) <= 1e-4


def test_torchscript_and_safetensors_exports_are_checked_and_carry_metadata(run, capsys, tmp_path):
    from safetensors import safe_open

    run_dir, _ = run
    ts = tmp_path / "m.ts"
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(ts)]) == 0
    assert "largest absolute logit difference 0" in capsys.readouterr().out
    extra = {"papernets.json": ""}
    torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["papernets.json"])["papernets_model"] == "resnet20"
    st = tmp_path / "m.safetensors"
    assert main(["export", str(run_dir), "--format", "safetensors", "--out", str(st)]) == 0
    assert "largest absolute logit difference 0" in capsys.readouterr().out
    with safe_open(str(st), "pt") as f:
        assert f.metadata()["papernets_model"] == "resnet20"
        assert set(f.keys()) == set(export_mod.load_trained(run_dir).model.state_dict())


def test_export_refuses_bad_input_in_one_line(run, capsys, tmp_path, monkeypatch):
    run_dir, _ = run
    assert main(["export", str(run_dir), "--format", "onnx", "--image-size", "0"]) == 2
    assert "--image-size must be at least 1" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "onnx", "--image-size", "3"]) == 2
    assert "below resnet20's minimum" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--format", "onnx"]) == 2
    capsys.readouterr()
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_text("not a model")
    assert main(["predict", str(not_onnx), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not an ONNX model onnxruntime can run" in err and len(err.splitlines()) == 1

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "y.onnx")]) == 2
    assert "pip install 'papernets[onnx]'" in capsys.readouterr().err


def test_a_failed_check_is_an_error_unless_no_check(run, capsys, tmp_path, monkeypatch):
    run_dir, _ = run
    real = export_mod._run_onnx
    monkeypatch.setattr(export_mod, "_run_onnx", lambda path, x: real(path, x) + 1e-3)
    out = tmp_path / "off.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 2
    assert "differs from the PyTorch model by 0.001" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out), "--no-check"]) == 0
    assert "not checked (--no-check)" in capsys.readouterr().out


def _export_model(name, size, in_chans, tmp_path):
    """Export a freshly built model after setting its batch-norm statistics on a few batches of noise, as training
    would have: with the initial statistics (mean 0, variance 1) a deep network's logits reach thousands (DenseNet-40:
    about 5,000), where fp32 rounding alone differs by more than 1e-4 between two correct implementations. Heads
    initialized to zero (ViT, Mixer, gMLP) get small random weights, and VGG and AlexNet He initialization (with
    their papers' initializations the logits barely depend on the image: 5e-4 and 8e-5 apart), so that the logits
    differ between images and a wrong file cannot pass the check."""
    from papernets.engine.evaluation import recompute_bn_stats

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the model's initial weights, whichever tests ran before
    kwargs = {"init": "he"} if name.startswith("vgg") or name == "alexnet" else {}
    model = papernets.create_model(name, num_classes=10, in_chans=in_chans, img_size=size, **kwargs).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(0.0, 0.02, generator=g)
    recompute_bn_stats(model, [(torch.randn(4, in_chans, size, size, generator=g), None) for _ in range(3)])
    x = torch.randn(2, in_chans, size, size, generator=g)
    with torch.inference_mode():
        spread = float((model(x)[0] - model(x)[1]).abs().max())
    assert spread > 1e-3, (name, spread)  # the logits depend on the image, 10x the check's limit: it can fail
    diff, engine, limit = export_mod.export_module(model, x, "onnx", tmp_path / f"{name}.onnx",
                                                   {"papernets_model": name})
    print(f"{name}@{size}: largest absolute logit difference {diff:.3g} (limit {limit:.3g}; logits differ between "
          f"the two images by up to {spread:.3g})")
    assert engine == "onnxruntime" and diff <= limit, (name, diff, limit)
    return diff, limit


@pytest.mark.parametrize("name", ["lenet5_bn", pytest.param("mobilenet_v2", marks=pytest.mark.slow),
                                  pytest.param("vit_s_16", marks=pytest.mark.slow)])
def test_benchmark_models_export_to_onnx_at_their_small_form(name, tmp_path):
    _export_model(name, 28, 1, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [(n, 28) for n in BENCH_ROWS]
                         + [(n, 224) for n in ("resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b_16")])
def test_every_benchmark_model_exports_to_onnx_at_28_px_and_four_at_224(name, size, tmp_path):
    """``pytest -m slow -s -k every_benchmark`` prints each model's largest difference."""
    _export_model(name, size, 1 if size == 28 else 3, tmp_path)


@pytest.mark.parametrize("scale, added, ok", [(1.0, 5e-5, True), (1.0, 2e-4, False), (100.0, 5e-3, True),
                                              (100.0, 2e-2, False)])
def test_the_check_limit_is_1e_4_times_the_logit_scale(scale, added, ok, tmp_path, monkeypatch):
    """Logits within [-1, 1]: 1e-4 absolute; logits up to 100: 1e-2 (fp32's relative precision, not a fixed amount)."""
    from papernets.errors import CheckpointError

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 0]]) * scale)
        model[1].bias.zero_()
    x = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])  # logits: scale, -scale / 2, 0
    real = export_mod._run_onnx
    monkeypatch.setattr(export_mod, "_run_onnx", lambda path, x: real(path, x) + added)
    if ok:
        diff, _, limit = export_mod.export_module(model, x, "onnx", tmp_path / "m.onnx", {})
        assert diff == pytest.approx(added, rel=1e-2) and limit == pytest.approx(1e-4 * scale)
    else:
        with pytest.raises(CheckpointError, match=r"the limit is [0-9.e-]+: 0\.0001 x the largest \|logit\|"):
            export_mod.export_module(model, x, "onnx", tmp_path / "m.onnx", {})

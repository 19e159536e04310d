"""The Python API (papernets.train, papernets.load, Run) and TensorBoard logging (train.tensorboard)."""

import pytest
from PIL import Image

import papernets
from papernets.config import ConfigError
from papernets.errors import UsageError

TINY = {"data": {"name": "synthetic", "limit": 64, "image_size": 28}, "model": {"name": "lenet5_bn"},
        "output": {"plots": False}}


def test_train_takes_a_dict_and_keyword_overrides_and_returns_the_run(tmp_path):
    run = papernets.train(TINY, run_dir=tmp_path / "r", epochs=2, batch_size=32, lr=0.003, threads=1)
    assert run.dir == tmp_path / "r" and run.summary["epochs"] == 2 and len(run.metrics) == 2
    assert run.config.optim.lr == 0.003 and run.config.train.batch_size == 32
    assert run.summary["best_val_acc"] == pytest.approx(max(m["val_acc"] for m in run.metrics))
    model, preprocess, classes = papernets.load(run.dir)
    assert classes[:2] == ["class0", "class1"] and not model.training
    x = preprocess(Image.new("RGB", (40, 30), (200, 10, 10)))
    assert x.shape == (1, 3, 28, 28) and model(x).shape == (1, 10)
    with pytest.raises(UsageError, match="already holds a run"):
        papernets.train(TINY, run_dir=tmp_path / "r", epochs=1)


def test_train_keywords_must_name_one_key_or_a_section(tmp_path):
    with pytest.raises(ConfigError, match="keyword 'name' is in several sections"):
        papernets.train(TINY, run_dir=tmp_path / "x", name="resnet20")
    with pytest.raises(ConfigError, match="keyword 'epoch' is not a config key"):
        papernets.train(TINY, run_dir=tmp_path / "x", epoch=1)
    with pytest.raises(ConfigError, match="model= takes a mapping"):
        papernets.train(TINY, run_dir=tmp_path / "x", model="resnet20")
    assert not (tmp_path / "x").exists()


def test_tensorboard_logs_steps_epochs_and_the_config(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = papernets.train(TINY, run_dir=tmp_path / "tb", epochs=2, batch_size=16, threads=1, tensorboard=True)
    events = list((run.dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(run.dir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"step/loss", "step/acc", "step/lr", "step/img_per_s", "epoch/train_loss", "epoch/val_acc",
            "epoch/lr", "epoch/train_img_per_s"} <= tags
    steps = [e.step for e in acc.Scalars("step/loss")]
    assert steps == list(range(1, run.summary["steps"] + 1))
    val = [e.value for e in acc.Scalars("epoch/val_acc")]
    assert val == pytest.approx([m["val_acc"] for m in run.metrics])
    hparams = [p for p in (run.dir / "tensorboard").rglob("events.out.tfevents.*") if p.parent != run.dir /
               "tensorboard"] + events
    text = b"".join(p.read_bytes() for p in hparams)
    assert b"optim.lr" in text and b"hparam/test_acc" in text


def test_nothing_imports_tensorboard_unless_a_run_turns_it_on(tmp_path):
    import subprocess
    import sys

    code = ("import sys, papernets; papernets.train({'data': {'name': 'synthetic', 'limit': 32, 'image_size': 28}, "
            "'model': {'name': 'lenet5_bn'}, 'output': {'plots': False}}, run_dir=sys.argv[1], epochs=1, "
            "batch_size=16); print(any(m.startswith(('tensorboard', 'torch.utils.tensorboard')) "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip().splitlines()[-1] == "False"

"""Hostile input and faults, replayed: every case gets exit code 2 (or 130) and one line on stderr without a
traceback, and nothing outside the run is written. Add a case here whenever a new one is found.

The cases, most severe first: a kill between the checkpoint files; two runs started at once into one folder; runs
that would overwrite what is not theirs; numbers as people write them; images decoded wrongly or too large; errors
that were tracebacks or exit 1; cosmetic ones.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from papernets.cli import main
from papernets.config import apply_overrides, load_config
from papernets.data.images import MAX_SIDE, open_image, to_8bit
from papernets.engine.checkpoint import load_checkpoint, save_checkpoint

TINY = ["--model", "lenet5_bn", "--dataset", "synthetic", "--image-size", "28", "--batch-size", "32",
        "--set", "data.limit=128", "--set", "output.plots=false", "--set", "train.threads=1"]


def one_line(capsys, code, want=2):
    """The CLI's answer to a bad input: ``want`` as exit code, one line on stderr, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == want, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def snapshot(path):
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- 1. a kill between checkpoint files

KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from papernets.engine import checkpoint, trainer
    target, after, epoch_to_kill = sys.argv[1], sys.argv[2] == "after", int(sys.argv[3])
    real_save, real_promote = checkpoint.save_checkpoint, checkpoint.promote_best

    def save(state, path):
        hit = Path(path).name == target and state["epoch"] == epoch_to_kill
        if hit and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(state, path)
        if hit and after:
            os.kill(os.getpid(), signal.SIGKILL)

    def promote(ckpt_dir):
        if target == "rename" and (Path(ckpt_dir) / checkpoint.NEXT_BEST).is_file():
            state = checkpoint.torch.load(Path(ckpt_dir) / checkpoint.NEXT_BEST, weights_only=True)
            if state["epoch"] == epoch_to_kill:
                os.kill(os.getpid(), signal.SIGKILL)
        real_promote(ckpt_dir)

    trainer.save_checkpoint = save
    trainer.promote_best = promote
    from papernets.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def _train_args(out, name):
    return [*TINY, "--epochs", "3", "--lr", "0.003", "--out", str(out), "--name", name]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert main(["train", *_train_args(out, "r")]) == 0
    run = out / "r"
    return json.loads((run / "summary.json").read_text()), load_checkpoint(run / "checkpoints" / "best.pt")


@pytest.mark.parametrize("target,when", [
    pytest.param("best.pt.next", "before", marks=pytest.mark.slow),
    pytest.param("best.pt.next", "after", marks=pytest.mark.slow), ("last.pt", "after"),
    pytest.param("rename", "before", marks=pytest.mark.slow)])
def test_a_kill_at_each_checkpoint_write_of_the_last_epoch_resumes_to_the_same_result(
        tmp_path, uninterrupted, target, when):
    """kill -9 at each write of the last epoch's checkpoints (the last epoch improves on validation, so best.pt
    is written), then --resume: the same summary and best.pt as the run done in one go."""
    summary, best = uninterrupted
    assert summary["best_epoch"] == 3, "the last epoch must improve for this test to reach best.pt"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run([sys.executable, str(script), target, when, "3", "train", *_train_args(tmp_path, "r")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    run = tmp_path / "r"
    assert not (run / "summary.json").exists()
    assert main(["train", "--resume", str(run)]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    for key in ("test_acc", "test_loss", "best_val_acc", "best_epoch", "epochs", "tested_weights"):
        assert resumed[key] == summary[key], key
    got = load_checkpoint(run / "checkpoints" / "best.pt")
    assert got["epoch"] == best["epoch"] == 3
    for k in best["model"]:
        assert torch.equal(got["model"][k], best["model"][k]), k
    assert not list((run / "checkpoints").glob(".*.tmp")) and not (run / "checkpoints" / "best.pt.next").exists()


# ----------------------------------------------------------------------- 2. two runs started at once, one folder


def test_two_runs_started_at_once_into_one_folder_one_is_refused(tmp_path):
    args = [sys.executable, "-m", "papernets", "train", *TINY, "--epochs", "2", "--out", str(tmp_path),
            "--name", "same"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2).strip()
    assert "claimed by another run" in err or "already holds a run" in err or "another papernets process" in err
    summary = json.loads((tmp_path / "same" / "summary.json").read_text())
    cfg = load_config(tmp_path / "same" / "config.yaml")
    assert summary["epochs"] == 2 and cfg.train.epochs == 2


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path, capsys):
    from papernets.engine import rundir

    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    fd = rundir.claim_run_dir(tmp_path / "r", resuming=True)  # as another process training it would hold it
    try:
        code = subprocess.run([sys.executable, "-m", "papernets", "train", "--resume", str(tmp_path / "r"),
                               "--epochs", "2"], capture_output=True, text=True, timeout=300)
    finally:
        os.close(fd)
    assert code.returncode == 2 and "being trained by another papernets process" in code.stderr
    assert len(code.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------ 3. never overwrite what is not its own


def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path, capsys):
    args = ["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r", "--set", "output.checkpoint=false",
            "--set", "output.save_best=false"]
    assert main(args) == 0
    before = snapshot(tmp_path / "r")
    capsys.readouterr()
    err = one_line(capsys, main(args))
    assert "already holds a run" in err and snapshot(tmp_path / "r") == before


def test_training_into_a_folder_that_is_not_a_run_changes_nothing(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes\n")
    (mine / "metrics.csv").write_text("a,b\n1,2\n")
    before = snapshot(mine)
    err = one_line(capsys, main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "mine"]))
    assert "not empty and not a papernets run" in err and snapshot(mine) == before


def test_resume_from_a_checkpoint_in_a_foreign_folder_changes_nothing(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    foreign = tmp_path / "downloads"
    foreign.mkdir()
    (foreign / "model.pt").write_bytes((tmp_path / "r" / "checkpoints" / "last.pt").read_bytes())
    (foreign / "config.yaml").write_text("not papernets\n")
    before = snapshot(foreign)
    capsys.readouterr()
    err = one_line(capsys, main(["train", "--resume", str(foreign / "model.pt"), "--epochs", "2"]))
    assert "not a papernets run directory" in err and snapshot(foreign) == before


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", ".."])
def test_names_that_leave_the_out_folder_are_refused(tmp_path, capsys, name):
    out = tmp_path / "out"
    err = one_line(capsys, main(["train", *TINY, "--epochs", "1", "--out", str(out), "--name", name]))
    assert "output.name (--name) must be one folder name" in err
    assert not any(tmp_path.iterdir()) and not os.path.exists("/abs")


def test_temporary_files_have_fresh_names_and_do_not_follow_planted_links(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    run = tmp_path / "r"
    run.mkdir()
    (run / ".metrics.csv.tmp").symlink_to(target)  # a planted link with the old fixed temporary name
    (run / "metrics.csv.tmp").symlink_to(target)
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 2  # not empty
    from papernets.engine import rundir

    rundir.atomic_write_text(run / "metrics.csv", "x\n")  # the writer itself, into a folder with planted links
    assert target.read_text() == "keep me\n" and (run / "metrics.csv").read_text() == "x\n"


# -------------------------------------------------------------------------------------------- 4. numbers


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("5E-5", 5e-5), ("1.0e30", 1e30), ("3e-3", 0.003)])
def test_numbers_as_people_write_them(tmp_path, text, value):
    assert apply_overrides(load_config(None), [f"optim.lr={text}"]).optim.lr == value
    path = tmp_path / "c.yaml"
    path.write_text(f"optim:\n  lr: {text}\n  weight_decay: {text}\n")
    cfg = load_config(path)
    assert cfg.optim.lr == value and cfg.optim.weight_decay == value


# --------------------------------------------------------------------------------------------- 5. images


def _png_header_only(path, width, height):
    """A PNG file whose header claims width x height (its pixel data is a stub): a decompression bomb's shape."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp16 = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    Image.fromarray(ramp16).save(tmp_path / "a.png")  # a 16-bit PNG
    with open_image(tmp_path / "a.png") as img:
        eight = np.asarray(to_8bit(img))
    assert eight.min() == 0 and eight.max() == 255 and len(np.unique(eight)) == 256
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tiff")
    with open_image(tmp_path / "f.tiff") as img:
        eight = np.asarray(to_8bit(img))
    assert eight.min() == 0 and eight.max() == 255 and eight.mean() == pytest.approx(127.5, abs=1)


@pytest.mark.parametrize("size", [(2_000_000, 1), (14_000, 14_000)])
def test_absurd_image_sizes_are_one_line_before_decoding(tmp_path, capsys, size):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    capsys.readouterr()
    images = tmp_path / "images"
    images.mkdir()
    _png_header_only(images / "huge.png", *size)
    err = one_line(capsys, main(["predict", str(tmp_path / "r"), str(images)]))
    assert "huge.png" in err and (f"{size[0]}x{size[1]}" in err or "decompression bomb" in err)
    assert size[0] > MAX_SIDE or size[0] * size[1] > 100_000_000
    for split in ("train", "test"):  # an image folder: train/<class>/, test/<class>/
        for cls in ("a", "b"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (32, 32)).save(folder / f"ok{i}.png")
    _png_header_only(folder / "huge.png", *size)
    err = one_line(capsys, main(["train", "--model", "lenet5_bn", "--dataset", "imagefolder", "--data-root",
                                 str(tmp_path / "data"), "--image-size", "28", "--epochs", "1", "--out",
                                 str(tmp_path / "runs"), "--name", "x", "--set", "data.val_fraction=0"]))
    assert "huge.png" in err


# -------------------------------------------------------------------------------- 6. one line and exit code 2


def test_a_binary_config_and_a_config_folder(tmp_path, capsys):
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"\x00\xff\xfe\x00" * 10)
    assert "is not text" in one_line(capsys, main(["train", "--config", str(binary)]))
    assert "is a folder" in one_line(capsys, main(["train", "--config", str(tmp_path)]))


def test_checkpoints_that_are_not_whole(tmp_path, capsys):
    tagged = tmp_path / "tagged.pt"
    save_checkpoint({"epoch": 1}, tagged)  # the format tag, no weights
    assert "incomplete papernets checkpoint" in one_line(capsys, main(["eval", str(tagged)]))
    assert "incomplete papernets checkpoint" in one_line(capsys, main(["train", "--resume", str(tagged)]))
    text = tmp_path / "notes.pt"
    text.write_text("hello, this is text\n" * 20)
    assert "not a PyTorch checkpoint file" in one_line(capsys, main(["eval", str(text)]))


@pytest.mark.parametrize("args,fragment", [
    (["--lr", "inf"], "optim.lr must be a positive finite number"),
    (["--device", "meta"], "is not a device papernets trains or evaluates on"),
    (["--set", "model.num_classes=1"], "model.num_classes must be at least 2"),
    (["--epochs", "abc"], "invalid int value: 'abc' (see papernets train --help)"),
])
def test_bad_values_are_refused_before_a_run_folder_exists(tmp_path, capsys, args, fragment):
    code = main(["train", *TINY, "--epochs", "1", *args, "--out", str(tmp_path), "--name", "r"]) \
        if args[0] != "--epochs" else _argparse_exit(["train", *args])
    err = one_line(capsys, code)
    assert fragment in err and not (tmp_path / "r").exists()


def _argparse_exit(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_debug_keeps_the_exit_code(capsys, tmp_path):
    assert main(["--debug", "train", "--model", "resnet_99", "--out", str(tmp_path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_full_disk_names_the_disk(tmp_path, monkeypatch):
    from papernets.engine import checkpoint

    def full(obj, f):
        f.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 470080 vs 469968")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(checkpoint.CheckpointError, match="no space left on the device .* previous checkpoint is"):
        save_checkpoint({"model": {}}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir()), "the partial temporary file is removed"


def test_ctrl_c_while_starting_is_one_line_and_exit_130():
    # Ctrl-C's default action in the child, whatever the test runner inherited (a job started in the background
    # with `&` ignores SIGINT, and its children with it)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "papernets"), "models"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.4)  # importing torch and the models takes longer than this
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err


# ------------------------------------------------------------------------------------------- 7. cosmetic


def test_no_validation_split_and_profile_steps(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--set", "data.val_fraction=0", "--out", str(tmp_path),
                 "--name", "r"]) == 0
    err = capsys.readouterr().err
    assert "no validation split" in err and "-100.00%" not in err
    assert "--steps must be at least 1" in one_line(capsys, main(["profile", "lenet5", "--steps", "0"]))


def test_resume_removes_the_temporary_files_a_kill_left(tmp_path):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]) == 0
    ckpts = tmp_path / "r" / "checkpoints"
    (ckpts / ".last.pt.abc123.tmp").write_bytes(b"partial")
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2"]) == 0
    assert not list(ckpts.glob(".*.tmp"))


def test_a_long_checkpoint_read_error_keeps_whole_sentences():
    from papernets.engine.checkpoint import _first_sentences

    long = "Weights only load failed. " + "This file may hold code that runs when it is loaded. " * 10 + "\nmore"
    short = _first_sentences(long)
    assert short.endswith(".") and len(short) <= 300 and short.startswith("Weights only load failed.")
    assert _first_sentences("x" * 50) == "x" * 50

"""`papernets bench`: protocols, rows, out-of-memory halving, resume, tables, plots and the HTML report in
Chromium; and the trainer's gradient accumulation (train.accum_steps) that the halving relies on."""

import csv
import io
import json
import re
import shutil
import subprocess
import urllib.parse

import pytest
import torch
import yaml
from PIL import Image

from papernets.bench import runner
from papernets.bench.runner import load_protocol, paper_schedule_config, row_config, select_rows
from papernets.cli import main
from papernets.config import ConfigError, apply_overrides, load_config
from papernets.engine import step as step_mod
from papernets.engine import trainer as trainer_mod
from papernets.engine.checkpoint import load_checkpoint
from papernets.engine.trainer import Trainer, TrainingInterrupted, config_from_checkpoint
from papernets.registry import get_entry

CLASSIC_ROWS = ["alexnet", "vgg16", "nin", "googlenet", "lenet5_bn", "resnet18", "densenet40_k12", "mobilenet_v1",
                "mobilenet_v2", "inception_v3", "darknet53", "xception", "resnext50_32x4d", "seresnet18",
                "squeezenet1_1", "shufflenet_v1_g3", "efficientnet_b0", "efficientnet_v2_s", "vit_s_16",
                "mixer_s_16", "resmlp_12", "gmlp_s_16", "resnet18_sam"]


# ------------------------------------------------------------------------------------------------ protocols


@pytest.mark.parametrize("name,batch", [("classic", 128), ("fashion-quick", 32), ("fashion-paper", 128)])
def test_protocols_hold_the_classic_rows_and_resolve(name, batch):
    p = load_protocol(name)
    assert [r.id for r in p.rows] == CLASSIC_ROWS
    for row in p.rows:
        cfg, recipe = row_config(p, row)
        assert cfg.model.name == get_entry(row.model).name and cfg.train.batch_size == batch
        assert cfg.optim.sam == (row.id == "resnet18_sam")
        assert (recipe is not None) == (name == "fashion-paper") and cfg.train.recipe is None
        if p.paper_schedule:  # the paper's schedule only: the optimizer stays the protocol's
            sched, source = paper_schedule_config(cfg)
            assert sched.optim == cfg.optim and sched.schedule.name not in ("none", "constant"), row.id
            assert "scaled from" in source
    if name == "classic":
        base = load_config(runner.PROTOCOLS_DIR.parents[0] / "base.yaml")
        cfg, _ = row_config(p, p.rows[0])
        assert (cfg.data.name, cfg.data.image_size, cfg.train.epochs, cfg.optim.name, cfg.optim.lr) == \
            ("cifar10", base.data.image_size, base.train.epochs, base.optim.name, base.optim.lr)


def test_paper_schedule_is_the_recipes_scaled_schedule():
    from papernets.optim.recipes import recipe_overrides

    p = load_protocol("fashion-quick")
    cfg, _ = row_config(p, next(r for r in p.rows if r.id == "resnet18"))
    sched, _ = paper_schedule_config(cfg)
    want = recipe_overrides("resnet18", cfg.train.epochs, cfg.train.batch_size)[0]["schedule"]
    assert sched.schedule.name == want["name"] and sched.schedule.milestones == want["milestones"]
    assert sched.optim.name == "adam" and sched.optim.lr == 0.001


def test_models_narrows_and_widens_the_rows():
    p = load_protocol("fashion-quick")
    assert [r.id for r in select_rows(p, "resnet18*")] == ["resnet18", "resnet18_sam"]
    rows = select_rows(p, "lenet5_bn, resnet20,vit_b_*")
    assert [r.id for r in rows] == ["lenet5_bn", "resnet20", "vit_b_16", "vit_b_32"]
    assert rows[1].model == "resnet20" and rows[1].config == {}
    with pytest.raises(ConfigError, match="resnet18_sam"):
        select_rows(p, "resnet18_sma")


def test_unknown_protocol_or_model_is_a_one_line_usage_error(capsys, tmp_path):
    assert main(["bench", "--protocol", "fashion-quik", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fashion-quick" in err and len(err.splitlines()) == 1
    assert main(["bench", "--protocol", "fashion-quick", "--models", "resnet18_sma", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "resnet18_sam" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir()), "nothing may train on a usage error"


# --------------------------------------------------------------------------------------- accumulation


def _tiny(*extra):
    """LeNet-5 (no batch norm) on 230 synthetic training images: 4 steps an epoch (the last of 38)."""
    return apply_overrides(load_config(None), [
        "model.name=lenet5", "data.name=synthetic", "data.image_size=28", "data.limit=230", "train.epochs=2",
        "train.batch_size=64", "train.threads=1", "optim.name=sgd", "optim.lr=0.05", "schedule.name=cosine",
        "output.plots=false", *extra])


def _weights(run):
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_accum_steps_gives_the_same_weights_without_batch_norm(tmp_path, monkeypatch):
    Trainer(_tiny(), tmp_path / "one", stream=io.StringIO()).fit()
    micro = []
    real = step_mod._accumulate

    def spy(net, optimizer, scaler, forwards, check):
        micro.append(len(forwards))
        return real(net, optimizer, scaler, forwards, check)

    monkeypatch.setattr(step_mod, "_accumulate", spy)
    Trainer(_tiny("train.accum_steps=2"), tmp_path / "two", stream=io.StringIO()).fit()
    assert micro == [2] * 8  # every batch, the short last one too, went as two micro-batches
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    ca, cb = (load_checkpoint(tmp_path / r / "checkpoints" / "last.pt") for r in ("one", "two"))
    assert ca["global_step"] == cb["global_step"] == 8  # one optimizer and schedule step per loader batch
    assert ca["history"][-1]["lr"] == cb["history"][-1]["lr"]
    assert abs(ca["history"][-1]["train_loss"] - cb["history"][-1]["train_loss"]) < 1e-4


def test_accum_steps_resume_is_exact(tmp_path, monkeypatch):
    cfg = _tiny("train.accum_steps=2", "model.drop_rate=0.1")
    Trainer(cfg, tmp_path / "full", stream=io.StringIO()).fit()
    cut = Trainer(cfg, tmp_path / "cut", stream=io.StringIO())
    calls = {"n": 0}
    real = trainer_mod.Progress.update

    def update(bar, *args, **kwargs):  # as Ctrl-C during the second step of the second epoch (4 steps an epoch)
        real(bar, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:
            cut.stop_requested = True

    monkeypatch.setattr(trainer_mod.Progress, "update", update)
    with pytest.raises(TrainingInterrupted):
        cut.fit()
    monkeypatch.setattr(trainer_mod.Progress, "update", real)
    ckpt = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["partial"]["step"] == 2
    Trainer(config_from_checkpoint(ckpt), tmp_path / "cut", resume=ckpt, stream=io.StringIO()).fit()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ"


def test_accum_steps_is_validated():
    with pytest.raises(ConfigError, match="divide"):
        apply_overrides(load_config(None), ["train.batch_size=64", "train.accum_steps=3"])
    with pytest.raises(ConfigError, match="optim.sam"):
        apply_overrides(load_config(None), ["train.accum_steps=2", "optim.sam=true"])
    with pytest.raises(ConfigError, match="at least 1"):
        apply_overrides(load_config(None), ["train.accum_steps=0"])


# ----------------------------------------------------------------------------------------------- a bench

TINY = {
    "description": "A tiny test protocol",
    "paper_schedule": True,
    "base": {"data": {"name": "synthetic", "image_size": 28, "limit": 200},
             "optim": {"name": "adam", "lr": 0.002},
             "train": {"epochs": 1, "batch_size": 64, "threads": 1, "seed": 0},
             "output": {"plots": False}},
    "models": ["lenet5", {"id": "resnet20_oom", "model": "resnet20"},
               {"id": "lenet5_12px", "model": "lenet5", "config": {"data": {"image_size": 12}}}],
}
OOM_ABOVE = 16


def _oom_hook(module, args):
    if module.training and args[0].shape[0] > OOM_ABOVE:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes. "
                           "Error code 12 (Cannot allocate memory)")


def _patch_oom(mp):
    """ResNet-20 "runs out of memory" on a training batch above 16 images (its forward pass raises)."""
    real = trainer_mod.build_model

    def build(cfg, *args, **kwargs):
        model = real(cfg, *args, **kwargs)
        if cfg.model.name == "resnet20":
            model.register_forward_pre_hook(_oom_hook)
        return model

    mp.setattr(trainer_mod, "build_model", build)


@pytest.fixture
def fake_oom(monkeypatch):
    _patch_oom(monkeypatch)


def _bench(protocol_file, tmp, *extra):
    return main(["--debug", "bench", "--protocol", str(protocol_file), "--out", str(tmp / "runs"), "--results",
                 str(tmp / "results"), *extra])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    protocol = tmp / "tiny.yaml"
    protocol.write_text(yaml.safe_dump(TINY, sort_keys=False))
    mp = pytest.MonkeyPatch()
    _patch_oom(mp)
    try:
        assert _bench(protocol, tmp) == 0
    finally:
        mp.undo()
    return tmp, protocol


def _records(tmp):
    return {r["id"]: r for r in json.loads((tmp / "results" / "tiny.json").read_text())["records"]}


def test_bench_rows_and_the_out_of_memory_rule(bench):
    tmp, _ = bench
    recs = _records(tmp)
    assert set(recs) == {"lenet5", "resnet20_oom", "lenet5_12px"}
    ok = recs["lenet5"]
    assert ok["status"] == "ok" and 0 < ok["test_acc"] <= 1 and ok["params"] > 0
    for key in ("test_acc", "paper_schedule_test_acc", "params", "gmacs", "gflops", "train_img_per_s",
                "infer_img_per_s", "peak_memory_mb", "wall_time_s", "batch_size", "configuration"):
        assert ok[key] is not None, key
    assert ok["gflops"] == pytest.approx(2 * ok["gmacs"]) and ok["input"] == "3x28x28"
    assert ok["paper_schedule"] == "multistep"  # LeNet-5's recipe: x0.5 at passes 2, 5, 8, 12 of 20
    oom = recs["resnet20_oom"]
    assert oom["status"] == "ok" and oom["batch_size"] == 64 and oom["accum_steps"] == 4
    assert oom["micro_batch"] == OOM_ABOVE and oom["paper_schedule_accum_steps"] == 4
    assert oom["peak_memory_batch"] == OOM_ABOVE
    cfg = load_config(tmp / "runs" / "tiny" / "resnet20_oom" / "config.yaml")
    assert (cfg.train.batch_size, cfg.train.accum_steps) == (64, 4)
    bad = recs["lenet5_12px"]
    assert bad["status"] == "failed" and "below lenet5's minimum of 16" in bad["error"]
    assert bad["paper_schedule_error"].startswith("not run")
    for rid in recs:  # normal run directories
        run = tmp / "runs" / "tiny" / rid
        assert (run / "bench.json").is_file()
        if recs[rid]["status"] == "ok":
            assert (run / "summary.json").is_file() and (run / "metrics.csv").is_file()
            assert (tmp / "runs" / "tiny" / f"{rid}-paper_schedule" / "summary.json").is_file()


def test_bench_tables(bench):
    tmp, _ = bench
    md = (tmp / "results" / "tiny.md").read_text()
    assert "| family | model | year | test acc (%) | acc, paper LR schedule (%) | params | GMACs (3x28x28) |" in md
    lines = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(lines) == 3 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert not any("|  |" in line for line in lines), "an empty cell"
    by_id = {re.search(r"`([^`]+)`", line).group(1): line for line in lines}
    assert "64 = 4 x 16" in by_id["resnet20_oom (resnet20)"]
    assert "failed: ModelConfigError: image size 12 is below lenet5's minimum" in by_id["lenet5_12px (lenet5)"]
    recs = _records(tmp)
    assert f"| {recs['lenet5']['test_acc'] * 100:.2f} |" in by_id["lenet5"]
    with (tmp / "results" / "tiny.csv").open() as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(recs) and float(rows["lenet5"]["test_acc"]) == recs["lenet5"]["test_acc"]
    assert rows["lenet5_12px"]["status"] == "failed" and rows["resnet20_oom"]["accum_steps"] == "4"
    for name in ("acc_vs_gmacs", "acc_vs_params", "train_time", "curves"):
        path = tmp / "results" / f"tiny_{name}.png"
        with Image.open(path) as img:
            assert img.size[0] > 400 and img.size[1] > 200, name
        assert f"]({path.name})" in md


def _mtimes(tmp):
    return {p: p.stat().st_mtime_ns for p in (tmp / "runs" / "tiny").rglob("*.pt")}


def test_bench_resumes_where_it_stopped(bench, fake_oom):
    tmp, protocol = bench
    before = _records(tmp)
    mtimes = _mtimes(tmp)
    lenet = tmp / "runs" / "tiny" / "lenet5"
    (lenet / "summary.json").unlink()  # as a bench killed after lenet5's last epoch, before its test
    (lenet / "bench.json").unlink()
    sched = tmp / "runs" / "tiny" / "resnet20_oom-paper_schedule"
    shutil.rmtree(sched)  # and resnet20's paper-schedule run never started
    (tmp / "runs" / "tiny" / "resnet20_oom" / "bench.json").unlink()
    assert _bench(protocol, tmp) == 0
    after = _records(tmp)
    assert after["lenet5"]["test_acc"] == before["lenet5"]["test_acc"]  # resumed, not retrained
    assert after["resnet20_oom"]["test_acc"] == before["resnet20_oom"]["test_acc"]
    assert after["resnet20_oom"]["paper_schedule_test_acc"] == before["resnet20_oom"]["paper_schedule_test_acc"]
    now = _mtimes(tmp)
    kept = {p: m for p, m in mtimes.items() if "resnet20_oom-paper_schedule" not in str(p)}
    assert all(now[p] == m for p, m in kept.items()), "a finished run was trained again"
    assert (sched / "summary.json").is_file()
    assert after["lenet5_12px"]["error"] == before["lenet5_12px"]["error"]


def _chromium(url, profile, *extra):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is missing: apt-get install -y chromium (scripts/setup.sh installs it)")
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--window-size=1366,900", "--virtual-time-budget=5000", *extra, url],
        capture_output=True, text=True, timeout=120)


def test_bench_html_report_in_chromium(bench, tmp_path):
    """The report in headless Chromium: sorted from the address, a row's curves opened, a family filtered, a
    screenshot at a laptop's width; its text rendered (no Markdown syntax), its plots inline."""
    tmp, _ = bench
    page = tmp / "results" / "tiny.html"
    text = page.read_text()
    assert "<script>" in text and not re.search(r'src="(?!data:)', text), "images and scripts must be inline"
    assert not re.search(r'href="(https?:|/)', text), "links go to the run directories beside the report only"
    assert "`" not in re.sub(r"<script>.*</script>", "", text, flags=re.S), "Markdown backticks left in the page"
    assert "<code>papernets bench --protocol tiny</code>" in text
    query = {"sort": "test_acc", "order": "desc", "open": "lenet5"}
    res = _chromium(page.resolve().as_uri() + "?" + urllib.parse.urlencode(query), tmp_path / "p1", "--dump-dom")
    dom = res.stdout
    assert 'data-ready="1"' in dom, res.stderr[-2000:]
    assert 'data-sort-key="test_acc"' in dom and 'data-sort-order="desc"' in dom
    ids = re.findall(r'<tr class="row (?:ok|failed)(?: open)?" data-id="([^"]+)"', dom)
    recs = _records(tmp)
    want = sorted((r for r in recs.values() if r["status"] == "ok"), key=lambda r: -r["test_acc"])
    assert ids == [r["id"] for r in want] + ["lenet5_12px"]  # failed rows last
    opened = re.search(r'<tr class="detail" data-for="lenet5"( hidden(="")?)?>(.*?)</tr>', dom, flags=re.S)
    assert opened and opened.group(1) is None, "the row's details did not open"
    assert '<svg class="curve"' in opened.group(3) and "<polyline" in opened.group(3)
    assert 'class="row ok open" data-id="lenet5"' in dom
    closed = re.search(r'<tr class="detail" data-for="resnet20_oom"( hidden(="")?)?>', dom)
    assert closed and closed.group(1) is not None
    widths = re.findall(r'<img[^>]*data-natural-width="(\d+)"', dom)
    assert len(widths) == 6 and all(int(w) > 100 for w in widths), widths
    res = _chromium(page.resolve().as_uri() + "?family=lenet", tmp_path / "p2", "--dump-dom")
    tags = re.findall(r'<tr class="row [^"]*" data-id="([^"]+)"([^>]*)>', res.stdout)
    hidden = {rid for rid, attrs in tags if re.search(r"\shidden(=|\s|$)", attrs)}
    families = {r["id"]: r["family"] for r in _records(tmp).values()}
    assert len(tags) == len(families) and hidden == {rid for rid, fam in families.items() if fam != "lenet"}
    shot = tmp_path / "report.png"
    res = _chromium(page.resolve().as_uri() + "?open=lenet5", tmp_path / "p3", f"--screenshot={shot}")
    with Image.open(shot) as img:
        assert img.size == (1366, 900)
        assert sum(1 for n in img.convert("L").histogram() if n) > 20, "a blank screenshot"  # grey levels used


def test_out_of_memory_with_sam_turns_on_activation_checkpointing(tmp_path, monkeypatch):
    """A SAM row cannot accumulate: on out of memory the bench retries it with activation checkpointing."""
    from papernets.engine.speed import checkpoint_units

    real = trainer_mod.build_model

    def hook(module, args):
        wrapped = all("forward" in vars(u) for u in checkpoint_units(module))
        if module.training and not wrapped:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes.")

    def build(cfg, *args, **kwargs):
        model = real(cfg, *args, **kwargs)
        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(trainer_mod, "build_model", build)
    protocol = tmp_path / "sam.yaml"
    protocol.write_text(yaml.safe_dump({
        "description": "SAM out of memory", "paper_schedule": False,
        "base": {"data": {"name": "synthetic", "image_size": 28, "limit": 64},
                 "optim": {"name": "adam", "lr": 0.002, "sam": True},
                 "train": {"epochs": 1, "batch_size": 32, "threads": 1}, "output": {"plots": False}},
        "models": ["resnet20"]}, sort_keys=False))
    assert _bench(protocol, tmp_path) == 0
    rec = json.loads((tmp_path / "results" / "sam.json").read_text())["records"][0]
    assert rec["status"] == "ok" and rec["activation_checkpointing"] is True and rec["accum_steps"] == 1
    assert "activation checkpointing" in rec["note"] and "activation checkpointing" in rec["configuration"]
    assert load_config(tmp_path / "runs" / "sam" / "resnet20" / "config.yaml").train.activation_checkpointing

"""benchmarks/vs_plain.py: papernets' trainer against the plain PyTorch tutorial loop. Both sides train the same
work, the results section goes between its markers in a copy of docs/results/speed.md (the rest of the file
unchanged), and --resume keeps a measured row. No assertion on speed."""

import json
import re

import pytest
import torch

from conftest import REPO, benchmark_module
from papernets.engine import allocator


@pytest.fixture(scope="module")
def vs():
    module = benchmark_module("vs_plain")
    if module.fashion_files() is None:
        pytest.skip("the real Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): "
                    "benchmarks/vs_plain.py trains on it")
    return module


def test_both_sides_train_the_same_images_and_steps_and_the_section_is_published(vs, tmp_path, monkeypatch, capsys):
    committed = (REPO / "docs" / "results" / "speed.md").read_text()
    # the committed file without its measured section: the first run appends one, the --resume run below replaces it
    original = committed[:committed.index(vs.START)].rstrip("\n") + "\n" if vs.START in committed else committed
    out = tmp_path / "speed.md"
    out.write_text(original)
    runs = []
    real_ours = vs.run_ours

    def ours(*args, **kwargs):
        result = real_ours(*args, **kwargs)
        runs.append((args, kwargs, result))
        return result

    monkeypatch.setattr(vs, "run_ours", ours)
    real_plain, plain_cache = vs.run_plain, []

    def plain(*args, **kwargs):
        result = real_plain(*args, **kwargs)
        plain_cache.append(allocator.malloc_cache_enabled())
        return result

    monkeypatch.setattr(vs, "run_plain", plain)
    argv = ["--models", "lenet5_bn", "--epochs", "1", "--batch-size", "32", "--images", "300", "--rounds", "1",
            "--out", str(out)]
    if allocator.available():
        allocator.set_malloc_cache(True)  # as a papernets round before it leaves the process
    vs.main(argv)
    assert len(runs) == 1
    if allocator.available():  # the plain loop ran with glibc's defaults, papernets with its malloc cache
        assert plain_cache == [False] and allocator.malloc_cache_enabled()
    assert not any(tmp_path.glob("lenet5_bn-round*")), "the run directory was not deleted"

    data = json.loads((tmp_path / "vs_plain.json").read_text())
    assert data["settings"] == {"epochs": 1, "batch_size": 32, "images": 300, "image_size": 28}
    [row] = data["rows"]
    # measure() raises when the sides differ; here the counts themselves: 300 images in ceil(300 / 32) steps
    assert (row["model"], row["images"], row["steps"], row["rounds"]) == ("lenet5_bn", 300, 10, 1)
    assert set(row["runtime"]) == {"amp", "channels_last", "compile", "malloc_cache"}
    assert row["plain_img_s"] > 0 and row["ours_img_s"] > 0

    text = out.read_text()
    assert text.startswith(original), "the rest of speed.md changed"
    added = text[len(original):]
    assert added.count(vs.START) == 1 and added.count(vs.END) == 1
    assert added.strip().startswith(vs.START) and added.strip().endswith(vs.END)
    assert vs.COLUMNS in added
    header = [c.strip() for c in vs.COLUMNS.strip("|").split("|")]
    for needed in ("model", "plain img/s", "papernets img/s", "papernets / plain", "plain s/epoch",
                   "papernets s/epoch", "CPU"):
        assert needed in header
    [line] = [x for x in added.splitlines() if x.startswith("| lenet5_bn |")]
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    assert len(cells) == len(header)
    assert cells[1:3] == ["300", "10"]
    assert "python benchmarks/vs_plain.py --models lenet5_bn" in added and "--out speed.md" in added
    assert str(tmp_path) not in added and str(REPO) not in added and str(tmp_path) not in json.dumps(data)
    # the reference table's parser and the committed-table test read only their own rows
    from papernets.bench.compare import read_markdown

    assert read_markdown(text)[0] == read_markdown(original)[0]
    assert read_markdown(text)[2] == read_markdown(original)[2]
    assert "nothing to measure" not in capsys.readouterr().out

    # --resume keeps the measured row without measuring it again and measures only the new model
    calls = []

    def fake(name, args, tv_root, work):
        calls.append(name)
        return {**row, "model": name}

    monkeypatch.setattr(vs, "measure", fake)
    vs.main([argv[0], "lenet5_bn", "resnet20", *argv[2:], "--resume"])
    assert calls == ["resnet20"]
    data2 = json.loads((tmp_path / "vs_plain.json").read_text())
    assert data2["rows"][0] == row and [r["model"] for r in data2["rows"]] == ["lenet5_bn", "resnet20"]
    assert len(data2["commands"]) == 2 and data2["commands"][1].endswith("--resume")
    text2 = out.read_text()
    assert text2.startswith(original) and text2.count(vs.START) == 1 and text2.count(vs.END) == 1
    assert line in text2 and re.search(r"^\| resnet20 \|", text2, re.M)

    # nothing left to measure: the section is written back as it was
    vs.main([argv[0], "lenet5_bn", "resnet20", *argv[2:], "--resume"])
    assert calls == ["resnet20"] and out.read_text() == text2

    # --again measures the named rows again (after a change to the trainer) and keeps the others
    vs.main([argv[0], "lenet5_bn", *argv[2:], "--resume", "--again"])
    assert calls == ["resnet20", "lenet5_bn"]
    data3 = json.loads((tmp_path / "vs_plain.json").read_text())
    assert [r["model"] for r in data3["rows"]] == ["lenet5_bn", "resnet20"]  # in the order they had
    assert data3["commands"][-1].endswith("--resume --again")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        vs.main([*argv, "--again"])
    assert "--again measures the --models rows of a --resume run again" in capsys.readouterr().err

    # other settings do not mix with the kept rows
    capsys.readouterr()
    with pytest.raises(SystemExit):
        vs.main([*argv[:5], "64", *argv[6:], "--resume"])
    assert "was measured with" in capsys.readouterr().err


def test_plain_side_reads_the_images_papernets_trains_on(vs, tmp_path):
    import torchvision

    from papernets.data import load_dataset

    vs.check_same_work()
    root = vs.torchvision_root(tmp_path / "data")
    plain = torchvision.datasets.FashionMNIST(root=str(root), train=True, download=False)
    ours = load_dataset("fashion-mnist", limit=300)
    idx = vs.train_indices(len(plain), 300)
    assert torch.equal(plain.data[idx].unsqueeze(1), ours.train_x)
    assert torch.equal(plain.targets[idx], ours.train_y)


def test_publish_replaces_only_the_section(vs, tmp_path):
    out = tmp_path / "page.md"
    head, tail = "# Title\n\ntext before\n", "\n## After\n\nkept as it is\n"
    out.write_text(head + f"{vs.START}\nold\n{vs.END}" + tail)
    vs.publish(out, f"{vs.START}\nnew\n{vs.END}\n")
    assert out.read_text() == head + f"{vs.START}\nnew\n{vs.END}" + tail
    fresh = tmp_path / "new.md"
    vs.publish(fresh, f"{vs.START}\nx\n{vs.END}\n")
    assert fresh.read_text() == f"{vs.START}\nx\n{vs.END}\n"
    broken = tmp_path / "broken.md"
    broken.write_text(f"a\n{vs.START}\nb\n")
    with pytest.raises(SystemExit):
        vs.publish(broken, f"{vs.START}\nx\n{vs.END}\n")

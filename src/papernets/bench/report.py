"""The bench's results: ``<protocol>.md`` (the comparison table), ``.csv``, ``.json``, the plots, and
``<protocol>.html`` (``html.py``: one self-contained page, sortable, filterable by family, each row's curves and
per-class results a click away)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from papernets.bench.protocol import Protocol

from papernets.bench.html import html_report
from papernets.bench.table import (
    CSV_COLUMNS,
    NUMERIC,
    cell,
    fmt_seconds,
    input_label,
    sort_by_family,
    table_columns,
)

__all__ = ["CSV_COLUMNS", "sort_by_family", "table_columns", "markdown_table", "headline_table", "write_report"]

# The README's headline: the budget table narrowed to what fits a screen (the whole table is in docs/results/).
HEADLINE_COLUMNS = [("family", "family"), ("id", "model"), ("test_acc", "test acc (%)"), ("params", "params"),
                    ("gmacs", "GMACs"), ("train_img_per_s", "train img/s"), ("steps", "steps"),
                    ("data_epochs", "epochs")]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(records: list[dict[str, Any]], paper_schedule: bool,
                   columns: list[tuple[str, str]] | None = None) -> str:
    """The rows of ``records`` in family order, with ``columns`` (key, header), by default the whole table's."""
    cols = columns or table_columns(records, paper_schedule)
    right = NUMERIC
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---:" if k in right else "---" for k, _ in cols) + "|"]
    for r in sort_by_family(records):
        cells = [_md_escape(cell(r, k)[0]) for k, _ in cols]
        cells[1] = f"`{cells[1]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline_table(records: list[dict[str, Any]]) -> str:
    """The README's narrow form of a budget table: family, model, test accuracy, size, speed, steps and epochs; and
    each row's CPU when the rows ran on more than one (a budget buys more steps on a faster CPU)."""
    cpus = {r.get("cpu") for r in records if r.get("cpu")}
    return markdown_table(records, False, HEADLINE_COLUMNS + ([("cpu", "CPU")] if len(cpus) > 1 else []))


def _meta(protocol: Protocol, records: list[dict[str, Any]]) -> dict[str, Any]:
    from papernets.engine.rundir import versions

    devices = sorted({r["device"] for r in records if r.get("device")})
    return {
        "protocol": protocol.name, "description": protocol.description, "paper_schedule": protocol.paper_schedule,
        "bench": protocol.bench, "cpus": sorted({r["cpu"] for r in records if r.get("cpu")}),
        "base": protocol.base, "rows": len(records), "failed": sum(r.get("status") != "ok" for r in records),
        "total_time_s": sum(r.get("bench_time_s") or 0.0 for r in records), "devices": devices,
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions(),
    }


def _intro(meta: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    v = meta["versions"]
    size = input_label(records)
    lines = [
        f"{meta['description']}.",
        "",
        f"Written by `papernets bench --protocol {meta['protocol']}` (papernets {v['papernets']}, torch {v['torch']}) "
        f"on {', '.join(meta['devices']) or 'n/a'}: {meta['rows']} models"
        + (f" ({meta['failed']} failed)" if meta["failed"] else "")
        + f", total time {fmt_seconds(meta['total_time_s'])} (training"
        + (", paper-schedule runs" if meta["paper_schedule"] else "") + " and profiling).",
        "",
        "Test accuracy is that of the best-validation checkpoint"
        + ("; \"paper LR schedule\" is the same run with only the schedule of the model's paper recipe (scaled to "
           "the run, as `--recipe paper` scales it; its name in brackets)" if meta["paper_schedule"] else "")
        + f". GMACs and GFLOPs are per image at {size or 'the input size of each row'} (GFLOPs = 2 x GMACs). "
        "Train img/s: the median over epochs of `metrics.csv`; inference img/s and peak memory (one training step "
        "at the micro-batch the run used) from `bench/profile.py`. A batch written `B = k x m` ran out of memory at "
        "B and accumulated k micro-batches of m (the same effective batch).",
    ]
    if meta.get("bench"):
        b = meta["bench"]
        lines += [
            "",
            f"Every row trained for the same budget of {b['budget_min']:g} minutes of wall time: a calibration of "
            f"{b['calibration_s']:g} s of timed steps at the start of the row turned it into the row's step count "
            "(steps), written to its `config.yaml`, so the row repeats exactly from its config; images seen = steps x "
            "batch, epochs = images seen / training images. The learning rate warms up, then decays to zero at the "
            f"last step. Validation {'midway and ' if b['segments'] == 2 else ''}at the end"
            + (f" ({b['segments']} points)" if b["segments"] > 2 else "")
            + "; wall time counts training and validation, training time the training steps alone (what the "
            "calibration aimed at the budget: how far it is from the budget is how well the calibration predicted "
            "the row's pace). Each row names the CPU it ran on ("
            + (", ".join(meta.get("cpus") or []) or "n/a") + "): a row resumed on another day keeps its own.",
        ]
    return lines


def _plot_section(plots: dict[str, Path]) -> list[str]:
    names = {"acc_vs_time": "accuracy against wall time", "acc_vs_gmacs": "accuracy against GMACs",
             "acc_vs_params": "accuracy against parameters", "speed_vs_gmacs": "images per second against GMACs",
             "train_time": "training time per model", "curves": "train and validation curves"}
    return [f"![{names[k]}]({p.name})" for k, p in plots.items()]


def write_report(protocol: Protocol, records: list[dict[str, Any]], results: Path, final: bool = True
                 ) -> dict[str, Path]:
    """Write ``results/<protocol>.{md,csv,json}`` and, when ``final``, the plots and ``<protocol>.html`` (the bench
    writes the tables after every row, the figures once at the end); return the paths by kind."""
    from papernets.bench.plots import PLOT_NAMES, write_plots

    results.mkdir(parents=True, exist_ok=True)
    name = protocol.name
    meta = _meta(protocol, records)
    if final:
        plots = write_plots(sort_by_family(records), name, input_label(records) or "each row's input size", results)
    else:
        plots = {k: results / f"{name}_{k}.png" for k in PLOT_NAMES}
    md = [f"# Benchmark: {name}", "", *_intro(meta, records), "", markdown_table(records, protocol.paper_schedule),
          "", *_plot_section(plots), ""]
    out = {"md": results / f"{name}.md", "csv": results / f"{name}.csv", "json": results / f"{name}.json",
           "html": results / f"{name}.html"}
    out["md"].write_text("\n".join(md))
    with out["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in sort_by_family(records):
            writer.writerow({k: r.get(k) for k in CSV_COLUMNS})
    out["json"].write_text(json.dumps({**meta, "records": sort_by_family(records)}, indent=2) + "\n")
    if final:
        page = html_report(name, _intro(meta, records), records, table_columns(records, protocol.paper_schedule),
                           plots, results)
        out["html"].write_text(page)
    return {**out, **plots}

"""The bench's results: ``<protocol>.md`` (the comparison table), ``.csv``, ``.json``, the plots, and
``<protocol>.html`` (self-contained: the table sortable by clicking a header, the plots embedded as PNG).

The HTML table also sorts on load from the address: ``<protocol>.html?sort=test_acc&order=desc``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from papernets.bench.protocol import Protocol

__all__ = ["CSV_COLUMNS", "sort_by_family", "table_columns", "markdown_table", "write_report"]

CSV_COLUMNS = [
    "id", "model", "family", "year", "status", "error", "test_acc", "best_val_acc", "paper_schedule_test_acc",
    "paper_schedule", "paper_schedule_error", "params", "gmacs", "gflops", "input", "train_img_per_s",
    "infer_img_per_s", "peak_memory_mb", "wall_time_s", "paper_schedule_wall_time_s", "batch_size", "accum_steps",
    "micro_batch", "epochs", "device", "cpu", "budget_min", "steps", "images_seen", "data_epochs", "configuration",
    "note", "run_dir",
]
BUDGET_COLUMNS = [("cpu", "CPU"), ("budget_min", "budget"), ("steps", "steps"), ("images_seen", "images seen"),
                  ("data_epochs", "epochs")]
_NUMERIC = {"year", "test_acc", "paper_schedule_test_acc", "params", "gmacs", "gflops", "train_img_per_s",
            "infer_img_per_s", "peak_memory_mb", "wall_time_s", "batch_size", "budget_min", "steps", "images_seen",
            "data_epochs"}


def sort_by_family(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Families in the order of their first paper, models by year within a family (then as listed)."""
    first: dict[str, int] = {}
    for r in records:
        first[r["family"]] = min(first.get(r["family"], 9999), int(r.get("year") or 9999))
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(records, key=lambda r: (first[r["family"]], r["family"], int(r.get("year") or 9999), order[id(r)]))


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _num(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _input_label(records: list[dict[str, Any]]) -> str | None:
    """The input size shared by every row, or None when the rows differ."""
    labels = {r.get("input") for r in records if r.get("input")}
    return labels.pop() if len(labels) == 1 else None


def table_columns(records: list[dict[str, Any]], paper_schedule: bool) -> list[tuple[str, str]]:
    """(key, header) of the table's columns; GMACs and GFLOPs are labelled with the input size."""
    size = _input_label(records)
    at = f" ({size})" if size else ""
    cols = [("family", "family"), ("id", "model"), ("year", "year"), ("test_acc", "test acc (%)")]
    if paper_schedule:
        cols.append(("paper_schedule_test_acc", "acc, paper LR schedule (%)"))
    cols += [("params", "params"), ("gmacs", f"GMACs{at}"), ("gflops", f"GFLOPs{at}")]
    if size is None:
        cols.append(("input", "input"))
    cols += [("train_img_per_s", "train img/s"), ("infer_img_per_s", "infer img/s"),
             ("peak_memory_mb", "peak memory (MB)"), ("wall_time_s", "wall time")]
    if any("budget_min" in r for r in records):
        cols += BUDGET_COLUMNS
    return cols + [("batch_size", "batch"), ("configuration", "configuration")]


def _cell(r: dict[str, Any], key: str) -> tuple[str, Any]:
    """(text, sort value) of one cell; the sort value is None for a missing figure (sorted last)."""
    ok = r.get("status") == "ok"
    v = r.get(key)
    if key == "id":
        return (r["id"] if r["id"] == r["model"] else f"{r['id']} ({r['model']})"), r["id"]
    if key == "test_acc":
        return (f"{v * 100:.2f}", v) if ok else (f"failed: {r.get('error')}", None)
    if key == "paper_schedule_test_acc":
        if v is not None:
            return f"{v * 100:.2f} ({r.get('paper_schedule')})", v
        return f"failed: {r.get('paper_schedule_error') or 'not run'}", None
    if key == "params":
        return _num(v, ","), v
    if key in ("gmacs", "gflops"):
        return _num(v, ".3g" if v is not None and v < 1 else ".2f"), v
    if key in ("train_img_per_s", "infer_img_per_s"):
        return _num(v, ".1f"), v
    if key == "peak_memory_mb":
        return _num(v, ".0f"), v
    if key == "wall_time_s":
        return (_fmt_seconds(v) if ok else "n/a"), (v if ok else None)
    if key == "budget_min":
        return ("n/a", None) if v is None else (f"{v:g} min", v)
    if key in ("steps", "images_seen"):
        return _num(v, ","), v
    if key == "data_epochs":
        return _num(v, ".2f"), v
    if key == "batch_size":
        if v is None:
            return "n/a", None
        accum = r.get("accum_steps") or 1
        return (f"{v} = {accum} x {v // accum}" if accum > 1 else str(v)), v
    if key == "configuration":
        text = v or "n/a"
        if r.get("profile_error"):
            text += f"; profiling failed: {r['profile_error']}"
        return text, text
    return ("n/a" if v is None else str(v)), v


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(records: list[dict[str, Any]], paper_schedule: bool) -> str:
    cols = table_columns(records, paper_schedule)
    right = _NUMERIC
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---:" if k in right else "---" for k, _ in cols) + "|"]
    for r in sort_by_family(records):
        cells = [_md_escape(_cell(r, k)[0]) for k, _ in cols]
        cells[1] = f"`{cells[1]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    size = _input_label(records)
    lines = [
        f"{meta['description']}.",
        "",
        f"Written by `papernets bench --protocol {meta['protocol']}` (papernets {v['papernets']}, torch {v['torch']}) "
        f"on {', '.join(meta['devices']) or 'n/a'}: {meta['rows']} models"
        + (f" ({meta['failed']} failed)" if meta["failed"] else "")
        + f", total time {_fmt_seconds(meta['total_time_s'])} (training"
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
            + "; wall time counts training and validation. Each row names the CPU it ran on ("
            + (", ".join(meta.get("cpus") or []) or "n/a") + "): a row resumed on another day keeps its own.",
        ]
    return lines


def _plot_section(plots: dict[str, Path]) -> list[str]:
    names = {"acc_vs_time": "accuracy against wall time", "acc_vs_gmacs": "accuracy against GMACs",
             "acc_vs_params": "accuracy against parameters", "speed_vs_gmacs": "images per second against GMACs",
             "train_time": "training time per model", "curves": "train and validation curves"}
    return [f"![{names[k]}]({p.name})" for k, p in plots.items()]


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>papernets bench: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; }}
th {{ background: #f2f2f2; cursor: pointer; user-select: none; position: sticky; top: 0; }}
th.asc::after {{ content: " \\25B2"; }} th.desc::after {{ content: " \\25BC"; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.failed td {{ color: #a33; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
</style></head>
<body data-ready="0">
<h1>papernets bench: {name}</h1>
{intro}
<table id="bench"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<p>Click a column header to sort (again to reverse); <code>?sort=KEY&amp;order=desc</code> sorts on load.</p>
{images}
<script>
function cellValue(row, i) {{
  const v = row.cells[i].dataset.v;
  if (v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isNaN(n) ? v : n;
}}
function sortTable(key, order) {{
  const table = document.getElementById("bench");
  const heads = Array.from(table.tHead.rows[0].cells);
  const i = heads.findIndex(th => th.dataset.key === key);
  if (i < 0) return false;
  const desc = order === "desc";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {{
    const x = cellValue(a, i), y = cellValue(b, i);
    if (x === null || y === null) return (x === null) - (y === null);  // missing figures last
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c;
  }});
  rows.forEach(r => body.appendChild(r));
  heads.forEach(th => th.classList.remove("asc", "desc"));
  heads[i].classList.add(desc ? "desc" : "asc");
  table.dataset.sortKey = key;
  table.dataset.sortOrder = desc ? "desc" : "asc";
  return true;
}}
document.querySelectorAll("#bench th").forEach(th => th.addEventListener("click", () => {{
  const table = document.getElementById("bench");
  const again = table.dataset.sortKey === th.dataset.key && table.dataset.sortOrder === "asc";
  sortTable(th.dataset.key, again ? "desc" : "asc");
}}));
const params = new URLSearchParams(window.location.search);
if (params.get("sort")) sortTable(params.get("sort"), params.get("order") || "asc");
window.addEventListener("load", () => {{
  document.querySelectorAll("img").forEach(img => {{ img.dataset.naturalWidth = String(img.naturalWidth); }});
  document.body.dataset.ready = "1";
}});
</script>
</body></html>
"""


def html_report(protocol: Protocol, records: list[dict[str, Any]], meta: dict[str, Any],
                plots: dict[str, Path]) -> str:
    cols = table_columns(records, protocol.paper_schedule)
    numeric = _NUMERIC
    head = "".join(f'<th data-key="{k}">{html.escape(h)}</th>' for k, h in cols)
    body = []
    for r in sort_by_family(records):
        cells = []
        for k, _ in cols:
            text, value = _cell(r, k)
            v = "" if value is None else (repr(value) if isinstance(value, float) else str(value))
            cls = ' class="num"' if k in numeric else ""
            cells.append(f'<td{cls} data-v="{html.escape(v)}">{html.escape(text)}</td>')
        status = "ok" if r.get("status") == "ok" else "failed"
        body.append(f'<tr class="{status}" data-id="{html.escape(r["id"])}">' + "".join(cells) + "</tr>")
    images = []
    for key, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        images.append(f'<h2>{html.escape(key.replace("_", " "))}</h2>\n'
                      f'<img id="plot-{key}" alt="{html.escape(key)}" src="data:image/png;base64,{data}">')
    intro = "\n".join(f"<p>{html.escape(p)}</p>" for p in "\n".join(_intro(meta, records)).split("\n\n"))
    return _HTML.format(name=html.escape(protocol.name), intro=intro, head=head, body="\n".join(body),
                        images="\n".join(images))


def write_report(protocol: Protocol, records: list[dict[str, Any]], results: Path, final: bool = True
                 ) -> dict[str, Path]:
    """Write ``results/<protocol>.{md,csv,json}`` and, when ``final``, the plots and ``<protocol>.html`` (the bench
    writes the tables after every row, the figures once at the end); return the paths by kind."""
    from papernets.bench.plots import PLOT_NAMES, write_plots

    results.mkdir(parents=True, exist_ok=True)
    name = protocol.name
    meta = _meta(protocol, records)
    if final:
        plots = write_plots(sort_by_family(records), name, _input_label(records) or "each row's input size", results)
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
        out["html"].write_text(html_report(protocol, records, meta, plots))
    return {**out, **plots}

"""The bench's HTML report, ``<protocol>.html``: one self-contained page (styles, script and plots inside it).

- the intro, its Markdown rendered (code, bold, links);
- the table's main columns, narrow enough for a laptop screen; a click on a header sorts by it (again: the other
  way; ``?sort=KEY&order=desc`` sorts on load), the family menu shows one family;
- a click on a row opens its details below it: the row's learning curves (train and validation accuracy per epoch,
  or per segment of a budget, drawn as SVG), the rest of its figures (configuration, CPU, batch, GFLOPs, steps),
  its per-class accuracy, precision and recall where its run wrote them, and links to its run directory and its
  confusion matrix;
- every plot of the bench, inline.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import re
from pathlib import Path
from typing import Any

from papernets.bench.table import NUMERIC, cell, sort_by_family

__all__ = ["html_report", "render_inline", "curve_svg", "MAIN_COLUMNS"]

# The columns of the table itself; every other column of the Markdown table goes into a row's details.
MAIN_COLUMNS = {"family", "id", "year", "test_acc", "paper_schedule_test_acc", "params", "gmacs", "train_img_per_s",
                "infer_img_per_s", "peak_memory_mb", "wall_time_s", "steps", "images_seen"}


def render_inline(text: str) -> str:
    """Markdown's inline syntax as HTML: `code`, **bold**, [text](url); everything else escaped."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', out)


def curve_svg(curves: list[dict[str, Any]], width: int = 360, height: int = 170) -> str:
    """Train and validation accuracy (%) per epoch as a small SVG line chart ('' without points)."""
    points = [c for c in curves if c.get("epoch") is not None]
    if not points:
        return ""
    left, right, top, bottom = 36, 10, 22, 24
    xs = [float(c["epoch"]) for c in points]
    x0, x1 = min(0.0, min(xs)), max(xs) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * (width - left - right)

    def py(acc: float) -> float:
        return top + (1 - acc) * (height - top - bottom)

    parts = [f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="accuracy per epoch">']
    for pct in (0, 25, 50, 75, 100):
        y = py(pct / 100)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 3:.1f}" class="tick" text-anchor="end">{pct}</text>')
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{height - 8}" class="tick" text-anchor="middle">{x:g}</text>')
    for key, cls in (("train_acc", "train"), ("val_acc", "val")):
        pts = [(px(float(c["epoch"])), py(float(c[key]))) for c in points
               if isinstance(c.get(key), int | float) and c[key] == c[key]]
        if pts:
            parts.append(f'<polyline class="{cls}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>')
            parts += [f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in pts]
    parts.append(f'<text x="{left}" y="11" class="legend"><tspan class="lt">train</tspan> and '
                 '<tspan class="lv">validation</tspan> accuracy (%) by epoch</text>')
    return "".join(parts) + "</svg>"


def _per_class_table(run_dir: Path) -> str:
    path = run_dir / "per_class.csv"
    if not path.is_file():
        return ""
    with path.open() as f:
        rows = list(csv.DictReader(f))

    def pct(v: str) -> str:
        return f"{float(v) * 100:.1f}" if v else "-"

    body = "".join(f"<tr><td>{html.escape(r['class'])}</td><td class=num>{r['images']}</td>"
                   f"<td class=num>{pct(r['accuracy'])}</td><td class=num>{pct(r['precision'])}</td>"
                   f"<td class=num>{pct(r['recall'])}</td></tr>" for r in rows)
    return ('<table class="per-class"><thead><tr><th>class</th><th>images</th><th>accuracy %</th>'
            f"<th>precision %</th><th>recall %</th></tr></thead><tbody>{body}</tbody></table>")


def _details(r: dict[str, Any], detail_cols: list[tuple[str, str]], results: Path) -> str:
    items = []
    for key, header in detail_cols:
        text, _ = cell(r, key)
        if text not in ("", "n/a"):
            items.append(f"<dt>{html.escape(header)}</dt><dd>{html.escape(text)}</dd>")
    for key, header in (("note", "note"), ("error", "error"), ("profile_error", "profiling")):
        if r.get(key):
            items.append(f"<dt>{header}</dt><dd>{html.escape(str(r[key]))}</dd>")
    links = []
    run_dir = Path(r["run_dir"]) if r.get("run_dir") else None
    per_class = ""
    if run_dir is not None:
        rel = Path(os.path.relpath(run_dir, results)).as_posix()
        links.append(f'<a href="{html.escape(rel)}/">run directory</a>')
        for name, label in (("per_class.csv", "per-class CSV"), ("confusion.csv", "confusion matrix (CSV)"),
                            ("plots/confusion.png", "confusion matrix (PNG)")):
            if (run_dir / name).is_file():
                links.append(f'<a href="{html.escape(rel)}/{name}">{label}</a>')
        per_class = _per_class_table(run_dir)
    svg = curve_svg(r.get("curves") or [])
    return (f'<div class="detail-grid"><div>{svg or "<p>no curves: the row did not train</p>"}</div>'
            f'<dl>{"".join(items)}</dl><div>{per_class}<p class="links">{" · ".join(links)}</p></div></div>')


def html_report(name: str, intro: list[str], records: list[dict[str, Any]], columns: list[tuple[str, str]],
                plots: dict[str, Path], results: Path) -> str:
    """The page (see the module docstring); ``columns``: the Markdown table's, split here into main and details."""
    main = [(k, h) for k, h in columns if k in MAIN_COLUMNS]
    detail_cols = [(k, h) for k, h in columns if k not in MAIN_COLUMNS]
    head = "".join(f'<th data-key="{k}"{" class=num" if k in NUMERIC else ""}>{html.escape(h)}</th>'
                   for k, h in main)
    body = []
    for r in sort_by_family(records):
        cells = []
        for k, _ in main:
            text, value = cell(r, k)
            v = "" if value is None else (repr(value) if isinstance(value, float) else str(value))
            cls = ' class="num"' if k in NUMERIC else ""
            cells.append(f'<td{cls} data-v="{html.escape(v)}">{html.escape(text)}</td>')
        status = "ok" if r.get("status") == "ok" else "failed"
        rid, family = html.escape(r["id"]), html.escape(r.get("family") or "")
        body.append(f'<tr class="row {status}" data-id="{rid}" data-family="{family}" tabindex="0" '
                    f'title="click for the curves and details">' + "".join(cells) + "</tr>")
        body.append(f'<tr class="detail" data-for="{rid}" hidden><td colspan="{len(main)}">'
                    f"{_details(r, detail_cols, results)}</td></tr>")
    families = sorted({r.get("family") or "" for r in records})
    options = "".join(f'<option value="{html.escape(f)}">{html.escape(f)}</option>' for f in families)
    images = "".join(
        f'<figure><img id="plot-{k}" alt="{html.escape(k.replace("_", " "))}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode("ascii")}">'
        f'<figcaption>{html.escape(k.replace("_", " "))}</figcaption></figure>' for k, p in plots.items())
    paragraphs = "".join(f"<p>{render_inline(p)}</p>" for p in "\n".join(intro).split("\n\n") if p.strip())
    return _PAGE.format(name=html.escape(name), intro=paragraphs, head=head, body="\n".join(body), options=options,
                        images=images)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>papernets bench: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1280px; padding: 0 1em; color: #222;
        line-height: 1.45; }}
p {{ max-width: 75em; }}
code {{ background: #f3f3f3; padding: 0 3px; border-radius: 3px; font-size: 92%; }}
.controls {{ margin: 1em 0 0.5em; display: flex; gap: 1.5em; align-items: center; flex-wrap: wrap; }}
table#bench {{ border-collapse: collapse; font-size: 13px; width: 100%; }}
#bench th, #bench td {{ border-bottom: 1px solid #ddd; padding: 4px 6px; vertical-align: top; }}
#bench th {{ background: #f2f2f2; cursor: pointer; user-select: none; position: sticky; top: 0; text-align: left; }}
#bench th.asc::after {{ content: " \\25B2"; }} #bench th.desc::after {{ content: " \\25BC"; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.row {{ cursor: pointer; }} tr.row:hover {{ background: #f6f9ff; }} tr.row.open {{ background: #eef4ff; }}
tr.failed td {{ color: #a33; }}
tr.detail > td {{ background: #fafafa; padding: 10px 12px; }}
.detail-grid {{ display: grid; grid-template-columns: 370px 1fr 1fr; gap: 16px; }}
dl {{ margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; font-size: 12px; }}
dt {{ color: #666; }} dd {{ margin: 0; }}
table.per-class {{ border-collapse: collapse; font-size: 12px; }}
table.per-class td, table.per-class th {{ padding: 1px 6px; border-bottom: 1px solid #eee; }}
svg.curve .grid {{ stroke: #e4e4e4; }} svg.curve .tick {{ font-size: 9px; fill: #777; }}
svg.curve polyline {{ fill: none; stroke-width: 1.6; }} svg.curve .legend {{ font-size: 10px; }}
svg.curve .train {{ stroke: #1f77b4; fill: #1f77b4; }} svg.curve .val {{ stroke: #ff7f0e; fill: #ff7f0e; }}
svg.curve polyline.train, svg.curve polyline.val {{ fill: none; }}
svg.curve .lt {{ fill: #1f77b4; font-weight: 600; }} svg.curve .lv {{ fill: #ff7f0e; font-weight: 600; }}
figure {{ margin: 1.5em 0; }} figure img {{ max-width: 100%; display: block; }}
figcaption {{ color: #666; font-size: 13px; }}
</style></head>
<body data-ready="0">
<h1>papernets bench: {name}</h1>
{intro}
<div class="controls"><label>Family <select id="family"><option value="">all</option>{options}</select></label>
<span>Click a column header to sort, a row for its curves, per-class results and details.</span></div>
<table id="bench"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<h2>Plots</h2>
{images}
<script>
const table = document.getElementById("bench");
function pairs() {{
  return Array.from(table.tBodies[0].querySelectorAll("tr.row")).map(r => [r, r.nextElementSibling]);
}}
function cellValue(row, i) {{
  const v = row.cells[i].dataset.v;
  if (v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isNaN(n) ? v : n;
}}
function sortTable(key, order) {{
  const heads = Array.from(table.tHead.rows[0].cells);
  const i = heads.findIndex(th => th.dataset.key === key);
  if (i < 0) return false;
  const desc = order === "desc";
  const rows = pairs();
  rows.sort(([a], [b]) => {{
    const x = cellValue(a, i), y = cellValue(b, i);
    if (x === null || y === null) return (x === null) - (y === null);  // missing figures last
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return desc ? -c : c;
  }});
  rows.forEach(([r, d]) => {{ table.tBodies[0].appendChild(r); table.tBodies[0].appendChild(d); }});
  heads.forEach(th => th.classList.remove("asc", "desc"));
  heads[i].classList.add(desc ? "desc" : "asc");
  table.dataset.sortKey = key;
  table.dataset.sortOrder = desc ? "desc" : "asc";
  return true;
}}
function toggle(row) {{
  const detail = row.nextElementSibling;
  detail.hidden = !detail.hidden;
  row.classList.toggle("open", !detail.hidden);
}}
function filterFamily(family) {{
  pairs().forEach(([r, d]) => {{
    const show = !family || r.dataset.family === family;
    r.hidden = !show;
    if (!show) {{ d.hidden = true; r.classList.remove("open"); }}
  }});
  table.dataset.family = family;
}}
table.querySelectorAll("th").forEach(th => th.addEventListener("click", () => {{
  const again = table.dataset.sortKey === th.dataset.key && table.dataset.sortOrder === "asc";
  sortTable(th.dataset.key, again ? "desc" : "asc");
}}));
table.querySelectorAll("tr.row").forEach(r => {{
  r.addEventListener("click", () => toggle(r));
  r.addEventListener("keydown", e => {{ if (e.key === "Enter") toggle(r); }});
}});
document.getElementById("family").addEventListener("change", e => filterFamily(e.target.value));
const params = new URLSearchParams(window.location.search);
if (params.get("sort")) sortTable(params.get("sort"), params.get("order") || "asc");
if (params.get("family")) {{ document.getElementById("family").value = params.get("family");
                            filterFamily(params.get("family")); }}
if (params.get("open")) {{
  const r = table.querySelector(`tr.row[data-id="${{params.get("open")}}"]`);
  if (r) toggle(r);
}}
window.addEventListener("load", () => {{
  document.querySelectorAll("img").forEach(img => {{ img.dataset.naturalWidth = String(img.naturalWidth); }});
  document.body.dataset.ready = "1";
}});
</script>
</body></html>
"""

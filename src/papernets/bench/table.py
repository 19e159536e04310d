"""The bench table's columns and cells, shared by the Markdown table (``report.py``) and the HTML report
(``html.py``)."""

from __future__ import annotations

from typing import Any

__all__ = ["CSV_COLUMNS", "BUDGET_COLUMNS", "NUMERIC", "sort_by_family", "fmt_seconds", "input_label",
           "table_columns", "cell"]

CSV_COLUMNS = [
    "id", "model", "family", "year", "status", "error", "test_acc", "best_val_acc", "paper_schedule_test_acc",
    "paper_schedule", "paper_schedule_error", "params", "gmacs", "gflops", "input", "train_img_per_s",
    "infer_img_per_s", "peak_memory_mb", "wall_time_s", "paper_schedule_wall_time_s", "batch_size", "accum_steps",
    "micro_batch", "epochs", "device", "cpu", "budget_min", "train_time_s", "steps", "images_seen", "data_epochs",
    "configuration", "note", "run_dir",
]
BUDGET_COLUMNS = [("cpu", "CPU"), ("budget_min", "budget"), ("train_time_s", "training time"), ("steps", "steps"),
                  ("images_seen", "images seen"), ("data_epochs", "epochs")]
NUMERIC = {"year", "test_acc", "paper_schedule_test_acc", "params", "gmacs", "gflops", "train_img_per_s",
            "infer_img_per_s", "peak_memory_mb", "wall_time_s", "batch_size", "budget_min", "train_time_s", "steps",
            "images_seen", "data_epochs"}


def sort_by_family(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Families in the order of their first paper, models by year within a family (then as listed)."""
    first: dict[str, int] = {}
    for r in records:
        first[r["family"]] = min(first.get(r["family"], 9999), int(r.get("year") or 9999))
    order = {id(r): i for i, r in enumerate(records)}
    return sorted(records, key=lambda r: (first[r["family"]], r["family"], int(r.get("year") or 9999), order[id(r)]))


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _num(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def input_label(records: list[dict[str, Any]]) -> str | None:
    """The input size shared by every row, or None when the rows differ."""
    labels = {r.get("input") for r in records if r.get("input")}
    return labels.pop() if len(labels) == 1 else None


def table_columns(records: list[dict[str, Any]], paper_schedule: bool) -> list[tuple[str, str]]:
    """(key, header) of the table's columns; GMACs and GFLOPs are labelled with the input size."""
    size = input_label(records)
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


def cell(r: dict[str, Any], key: str) -> tuple[str, Any]:
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
        return (fmt_seconds(v) if ok else "n/a"), (v if ok else None)
    if key == "budget_min":
        return ("n/a", None) if v is None else (f"{v:g} min", v)
    if key == "train_time_s":
        return (fmt_seconds(v) if ok and v is not None else "n/a"), (v if ok else None)
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

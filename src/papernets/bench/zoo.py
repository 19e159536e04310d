"""The zoo as a table: every registered model with its paper and its parameters and MACs (``papernets models``,
and the model table of ``docs/models.md``)."""

from __future__ import annotations

from typing import Any

from papernets.engine.counting import meta_model_stats
from papernets.registry import list_models, model_info

__all__ = ["model_rows", "models_markdown"]


def model_rows(pattern: str = "*", small: bool = False) -> list[dict[str, Any]]:
    """Registry info plus params and MACs at the ImageNet configuration (and, with ``small``, at 28x28 gray)."""
    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        params, macs = meta_model_stats(name)
        row = {**info, "params": params, "gmacs": macs / 1e9}
        if small:
            p28, m28 = meta_model_stats(name, img_size=28, in_chans=1, num_classes=10)
            row.update(params_28=p28, gmacs_28=m28 / 1e9)
        rows.append(row)
    return rows


def models_markdown(rows: list[dict[str, Any]]) -> str:
    """The model table of docs/models.md."""
    lines = [
        "| model | paper | year | params (ImageNet) | GMACs (ImageNet) | input | params (28x28x1, 10 cl.) "
        "| GMACs (28x28x1) | min size | weights from |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['name']}` | [{r['paper']}]({r['url']}) | {r['year']} | {r['params']:,} | {r['gmacs']:.3f} "
            f"| {r['default_img_size']} | {r['params_28']:,} | {r['gmacs_28']:.4f} | {r['min_img_size']} "
            f"| {', '.join(r['pretrained']) or '-'} |"
        )
    return "\n".join(lines)

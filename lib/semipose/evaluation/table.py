"""Markdown metric tables printed after every evaluation (COCO, MPII and AIC alike)."""
from __future__ import annotations

from typing import Mapping

from semipose.utils.io import atomic_write_text


def format_table(name_values: Mapping[str, float], arch_name: str) -> str:
    """Three-line markdown table, values with 4 decimals, in the mapping's order.

    ``| Arch | AP | Ap .5 | ... |`` / ``|---|---|...|`` / ``| <arch_name> | 0.1234 | ... |``
    (no trailing newline).
    """
    names = list(name_values.keys())
    header = "| Arch | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    values = " | ".join(f"{float(v):.4f}" for v in name_values.values())
    row = f"| {arch_name} | {values} |"
    return "\n".join([header, rule, row])


def write_table(path: str, text: str) -> None:
    """Write ``text`` (plus a final newline) to ``path`` atomically, creating its folder."""
    atomic_write_text(text if text.endswith("\n") else text + "\n", path)

"""Every config key with its default and its one-line comment, read from defaults.py (the comments
there are the documentation; nothing is kept twice). Used by ``--list-keys``."""
from __future__ import annotations

import inspect
import re
from typing import List, Tuple

from . import defaults

_LINE = re.compile(r"^\s*(_C|e|s)\.([A-Z0-9_.]+)\s*=\s*(.+?)\s*(?:#\s*(.*))?$")
_CONTEXT = {"resnet_extra": "MODEL.EXTRA.", "hrnet_extra": "MODEL.EXTRA.",
            "_hrnet_stage": "MODEL.EXTRA.STAGE<n>."}
_TEMPLATES = ("resnet_extra", "hrnet_extra", "_hrnet_stage")  # section values, not keys
_NOTE = {"resnet_extra": " (ResNet)", "hrnet_extra": " (HRNet)", "_hrnet_stage": " (HRNet)"}


def key_docs() -> List[Tuple[str, str, str]]:
    """(full key, default as written, comment) for every key of defaults.py, in file order."""
    out, func = [], ""
    for line in inspect.getsource(defaults).splitlines():
        if line.startswith("def "):
            func = line[4:].split("(")[0]
        elif line and not line[0].isspace():
            func = ""
        m = _LINE.match(line)
        if not m or m.group(3) == "CN()" or m.group(3).split("(")[0] in _TEMPLATES:
            continue
        owner, key, value, comment = m.groups()
        prefix = "" if owner == "_C" else _CONTEXT.get(func, "")
        if func == "_hrnet_stage":
            value = "(per stage)"
        out.append((prefix + key, value, (comment or "") + _NOTE.get(func, "")))
    # top-level sections first, then the MODEL.EXTRA templates (defined first in the file)
    return sorted(out, key=lambda row: row[0].startswith("MODEL.EXTRA."))


def format_key_docs() -> str:
    rows = key_docs()
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}  # {c}" if c else f"{k:<{width}}  {v}"
                     for k, v, c in rows)

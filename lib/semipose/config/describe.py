"""Every config key with its default and its one-line comment, read from defaults.py (the comments
there are the documentation; nothing is kept twice). Used by ``--list-keys``."""
from __future__ import annotations

import inspect
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

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


def registered_extra_docs() -> List[Tuple[str, str, str]]:
    """(key, default, '(<title> backbone)') for the MODEL.EXTRA template of every backbone
    registered outside defaults.py (a user's or a plugin's), whose keys have no comment here to
    read; the built-in templates are documented by key_docs()."""
    from ..engine.compare import flatten
    from ..models.registry import backbones
    return [(key, repr(value), f"({b.title} backbone)")
            for b in backbones().values()
            if getattr(b.template, "__module__", "") != defaults.__name__
            for key, value in flatten(b.template(), "MODEL.EXTRA.").items()]


def all_key_docs() -> List[Tuple[str, str, str]]:
    """What ``--list-keys`` and ``semipose keys`` list: key_docs() and the MODEL.EXTRA templates
    of backbones registered outside defaults.py."""
    return key_docs() + registered_extra_docs()


def format_key_docs(rows: Sequence[Tuple[str, str, str]] | None = None) -> str:
    """``rows`` (default all_key_docs()) as aligned lines: KEY  default  # comment."""
    rows = all_key_docs() if rows is None else list(rows)
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}  # {c}" if c else f"{k:<{width}}  {v}"
                     for k, v, c in rows)


# ----------------------------------------------------------------------------- docs/configuration.md
# The configuration page of the documentation is this function's output, committed as
# docs/configuration.md (tests/test_docs.py checks that the two are equal), so the page can only
# say what defaults.py says. Regenerate it after changing a default or its comment:
#     python -m semipose.config.describe --markdown > docs/configuration.md
REGENERATE = "python -m semipose.config.describe --markdown > docs/configuration.md"

# Shown as code in a comment: a command-line flag (--local_rank), a config key (DATASET.ROOT,
# MASK_JOINT_NUM) or a snake_case name (pose_dual_mt, apply_dirs(), t_A); method names without an
# underscore are added per page.
_CODE_TOKEN = (r"--[a-z][a-z0-9_-]*"
               r"|\b[A-Z][A-Z0-9]*(?:[._][A-Z0-9]+)+\b"
               r"|\b[a-z][a-z0-9]*(?:_[A-Za-z0-9]+)+\b(?:\(\))?")
# A method's registration line in methods/*.py, read as text: importing the methods loads torch.
_REGISTERED = re.compile(r'^@register_method\(\s*"([a-z0-9_]+)"', re.M)
# What markdown would read as formatting in a table cell: escaped, so the text shows as written.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")

# One line on what each top-level section is for (the keys themselves carry their own comments).
_SECTION_INTRO = {
    "": "Run-wide settings: seed, device, output and log folders, data loader processes, "
        "logging frequency, distributed timeout.",
    "SSL": "The options of the semi-supervised methods, read by the parts a method is assembled "
           "from (`lib/semipose/methods/parts.py`): the hard view, the consistency term, and the "
           "few options of single methods.",
    "CUDNN": "cuDNN switches (CUDA only).",
    "MODEL": "The method (`MODEL.NAME`), the backbone and the network's input and output sizes.",
    "LOSS": "The supervised heatmap loss.",
    "DATASET": "What is trained and scored on, where it lives, and the augmentation of the "
               "training crops.",
    "TRAIN": "Schedule, optimiser, batch size, resuming, and the speed switches (all off by "
             "default: fp32 eager, as the reference).",
    "TEST": "Validation: how often, flip test, decoding, boxes, the checkpoint metric.",
    "DEBUG": "Pictures of batches and heatmaps written during training and validation.",
    "MONITOR": "The collapse monitor of the semi-supervised methods.",
    "SYNTHETIC": "The generated synthetic dataset (configs under `experiments/synthetic/`).",
}

_HEADER = """\
# Configuration

<!-- Generated from lib/semipose/config/defaults.py by
{regenerate}
Edit the defaults and their comments there, then regenerate; tests/test_docs.py checks that
this file is current. -->

Every run is configured by one experiment YAML file merged over the defaults below. The
commands print the merged result with `--print-config` and this list with `--list-keys`.

## How a config is put together

1. **Defaults.** Every key on this page, with the default shown. A key that is not on this
   page is an error naming the closest valid key, in a file as on the command line.
2. **`_BASE_` files.** An experiment file may start with `_BASE_: other.yaml` (or a list of
   files, merged in order): the base's keys are merged first, sections key by key, then the
   file's own. Paths are relative to the file's folder; a cycle or a missing base is an error
   naming the chain. `experiments/synthetic/posedual.yaml` is `ssl_benchmark.yaml` plus four
   keys this way.
3. **The experiment file** given with `--cfg`.
4. **Flags** such as `--workers 2` or `--gpus 0`, which set their keys (`WORKERS`, `DEVICE`).
5. **`KEY VALUE` pairs** at the end of the command line, full dotted keys, read as Python
   literals where they parse as one (`TRAIN.LR 0.002`, `TRAIN.LR_STEP "[27, 33]"`,
   `TEST.FLIP_TEST True`) and as strings otherwise (`DEVICE cpu`). Flags may come before or
   after them.

Values are checked against the type of the default (an int is accepted for a float key, a list
for a tuple, one int `v` for a `[w, h]` size as `[v, v]`) and against what the key allows, when
the config is loaded. Sizes are written `[width, height]`.

## The reference's key names

The semi-supervised keys live in the `SSL` section here. The reference implementation's names
of them stay accepted, in YAML files and on the command line, and are rewritten to their new
place before merging (`lib/semipose/config/aliases.py`), so its experiment files load
unchanged. Setting both names of one key in one file is an error.

| reference name | key |
|---|---|
{aliases}

Keys the reference declares but never reads are accepted and ignored with a note, and do not
appear in the merged config: {legacy}.
"""


def method_names() -> List[str]:
    """MODEL.NAME values registered by the files of lib/semipose/methods, in file order."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "methods")
    names: List[str] = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                names += _REGISTERED.findall(f.read())
    return names


def _code_pattern() -> "re.Pattern[str]":
    words = "|".join(sorted((re.escape(n) for n in method_names()), key=len, reverse=True))
    return re.compile(_CODE_TOKEN + (rf"|\b(?:{words})\b" if words else ""))


def _md_text(text: str, code: "re.Pattern[str] | None" = None) -> str:
    """Plain text for a markdown table cell: config keys and names as code, formatting
    characters escaped, '<' written as an entity (it would start an HTML tag)."""
    out, pos = [], 0
    for m in (code or _code_pattern()).finditer(text):
        out.append(_MD_SPECIAL.sub(r"\\\1", text[pos:m.start()]).replace("<", "&lt;"))
        out.append(f"`{m.group(0)}`")
        pos = m.end()
    out.append(_MD_SPECIAL.sub(r"\\\1", text[pos:]).replace("<", "&lt;"))
    return "".join(out)


def md_cell(text: str, code: bool = False, names: "re.Pattern[str] | None" = None) -> str:
    """One table cell. ``code``: the text as a code span, unless it holds a '|' or a backtick
    (a pipe inside a code span is escaped differently by different markdown readers), then as
    escaped text."""
    if code and "|" not in text and "`" not in text:
        return f"`{text}`"
    return _md_text(text, names)


def _section_comments() -> Dict[str, str]:
    """Section (dotted) -> its comment in defaults.py: `_C.SSL.HARD = CN()  # ...` lines."""
    out = {}
    for line in inspect.getsource(defaults).splitlines():
        m = _LINE.match(line)
        if m and m.group(1) == "_C" and (m.group(3) == "CN()" or
                                         m.group(3).split("(")[0] in _TEMPLATES):
            out[m.group(2)] = m.group(4) or ""
    return out


def _subsection(key: str, sections: Dict[str, str]) -> str:
    """The second-level section a key is listed under ('' = directly in its top-level one)."""
    parts = key.split(".")
    if len(parts) > 2 and ".".join(parts[:2]) in sections:
        return ".".join(parts[:2])
    return ""


def _table(rows: List[Tuple[str, str, str]], names: "re.Pattern[str]") -> List[str]:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, value, comment in rows:
        lines.append(f"| {md_cell(key, code=True)} | {md_cell(value, code=True)} | "
                     f"{md_cell(comment, names=names)} |")
    return lines


def _sentence(text: str, names: "re.Pattern[str]") -> str:
    """A comment as a paragraph: capitalised unless it starts with a name shown as code."""
    text = _md_text(text, names)
    if not text.startswith("`"):
        text = text[0].upper() + text[1:]
    return text + "."


def markdown_key_docs() -> str:
    """docs/configuration.md: how a config is put together, the reference's key names, then
    every key of defaults.py with its default and comment, a heading and a table per section."""
    from .aliases import ALIASES, LEGACY
    aliases = "\n".join(f"| `{old}` | `{new}` |" for old, new in ALIASES.items())
    legacy = ", ".join(f"`{k}`" for k in LEGACY)
    lines = [_HEADER.format(regenerate=REGENERATE, aliases=aliases, legacy=legacy)]

    sections, names = _section_comments(), _code_pattern()
    groups: Dict[str, Dict[str, List[Tuple[str, str, str]]]] = {}  # top -> sub -> rows
    for row in key_docs():
        key = row[0]
        top = key.split(".")[0] if "." in key else ""
        groups.setdefault(top, {}).setdefault(_subsection(key, sections), []).append(row)

    for top, subs in groups.items():
        title = top or "Top-level keys"
        lines += [f"## {title}", ""]
        intro = _SECTION_INTRO.get(top, sections.get(top, ""))
        if intro:
            lines += [intro, ""]
        # a section's own keys first, then its subsections, each under its heading
        for sub, rows in sorted(subs.items(), key=lambda item: item[0] != ""):
            if sub:
                lines += [f"### {sub}", ""]
                note = sections.get(sub, "")
                if sub == "MODEL.EXTRA":  # its comment in defaults.py points at the docstring
                    note = ("the architecture's keys, in two templates: a YAML file's "
                            "MODEL.EXTRA is merged into the ResNet one (keys marked ResNet) or "
                            "the HRNet one (marked HRNet), chosen by its content (NUM_LAYERS or "
                            "STAGE2) or else by MODEL.NAME / MODEL.BACKBONE; an HRNet "
                            "STAGE<n> has the same keys for each of STAGE2, STAGE3, STAGE4")
                if note:
                    lines += [_sentence(note, names), ""]
            lines += _table(rows, names) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(
        prog="python -m semipose.config.describe",
        description="Print every config key with its default and meaning.")
    ap.add_argument("--markdown", action="store_true",
                    help=f"the documentation page instead of the plain list ({REGENERATE})")
    args = ap.parse_args(argv)
    sys.stdout.write(markdown_key_docs() if args.markdown else format_key_docs() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

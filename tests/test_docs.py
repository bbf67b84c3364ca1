"""The documentation stays true to the code: the configuration page is the generated text of the
config defaults, every page is in the site's navigation, and the README's commands and links are
the ones CI and readers use."""
from __future__ import annotations

import os
import re

import pytest
import yaml

from semipose.config import get_defaults
from semipose.config.aliases import ALIASES, LEGACY
from semipose.config.describe import REGENERATE, key_docs, markdown_key_docs, md_cell

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _leaf_keys(node, prefix: str = ""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield prefix + k


def test_configuration_page_is_the_generated_text():
    committed = _read("docs", "configuration.md")
    generated = markdown_key_docs()
    if committed != generated:
        old, new = committed.splitlines(), generated.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        pytest.fail(f"docs/configuration.md is out of date with lib/semipose/config/defaults.py "
                    f"(first difference at line {first + 1}: "
                    f"{old[first] if first < len(old) else '<end>'!r} -> "
                    f"{new[first] if first < len(new) else '<end>'!r}); regenerate it from the "
                    f"repository root with: {REGENERATE}", pytrace=False)


def test_configuration_page_has_a_row_per_key_and_every_alias():
    page = markdown_key_docs()
    # key tables have three columns (key | default | meaning); the alias table has two
    rows = re.findall(r"^\| `([A-Za-z0-9_.<>]+)` \| (.+?) \| (.*) \|$", page, re.M)
    # exactly one row per key_docs entry (MODEL.EXTRA keys once per template)
    assert sorted(key for key, _, _ in rows) == sorted(k for k, _, _ in key_docs())
    defaults = {k: v for k, v, _ in key_docs()}
    assert ("SEED", "`1314`") in [(k, d) for k, d, _ in rows]
    assert all(d == f"`{defaults[k]}`" for k, d, _ in rows if "|" not in defaults[k])
    # every leaf of the defaults (the ResNet template of MODEL.EXTRA) has its row
    for key in _leaf_keys(get_defaults()):
        assert f"| `{key}` |" in page, key
    for old, new in ALIASES.items():
        assert f"| `{old}` | `{new}` |" in page
    for key in LEGACY:
        assert f"`{key}`" in page
    # a heading per top-level section, in the order of defaults.py
    sections = [k for k in get_defaults() if isinstance(get_defaults()[k], dict)]
    headings = re.findall(r"^## ([A-Z]+)$", page, re.M)
    assert headings == sections


def test_markdown_cells_escape_what_markdown_would_read():
    # a pipe would end the cell; inside a code span readers disagree on '\|', so no code span
    assert md_cell("a|b") == r"a\|b"
    assert md_cell("resnet|hrnet", code=True) == r"resnet\|hrnet"
    assert md_cell("(256, 256)", code=True) == "`(256, 256)`"
    # '<run>' would be read as an HTML tag, '*' and '_' as emphasis
    assert md_cell("OUTPUT_DIR/<run>") == "`OUTPUT_DIR`/&lt;run>"
    assert md_cell("d * teacher + (1 - d) * student") == r"d \* teacher + (1 - d) \* student"
    # config keys, snake_case names and registered method names show as code
    assert md_cell("alias MASK_JOINT_NUM of pose_dual and sspcm") == (
        "alias `MASK_JOINT_NUM` of `pose_dual` and `sspcm`")


def test_escaped_cells_render_as_written():
    markdown = pytest.importorskip("markdown")
    text = "pipe | star * under_score <tag> [x]"
    html = markdown.markdown(f"| a | b |\n|---|---|\n| {md_cell('x|y', code=True)} | "
                             f"{md_cell(text)} |\n", extensions=["tables"])
    cells = re.findall(r"<td>(.*?)</td>", html)
    assert cells == ["x|y", "pipe | star * <code>under_score</code> &lt;tag&gt; [x]"]


def _nav_files(nav) -> list:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_files(value) if isinstance(value, list) else [value]
    return out


def test_site_navigation_lists_every_page():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        site = yaml.safe_load(f)
    assert site["docs_dir"] == "docs" and site["strict"] is True
    nav = _nav_files(site["nav"])
    pages = sorted(f for f in os.listdir(DOCS) if f.endswith(".md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_readme_keeps_the_commands_and_its_links_resolve():
    readme = _read("README.md")
    # .ci/run runs the README's test command; the quick start is the first thing a reader runs
    assert 'pip install -e ".[export]" pytest && python -m pytest -q tests' in readme
    assert ("pip install -e . && python pose_estimation/train.py --cfg "
            "experiments/synthetic/posedual.yaml") in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into docs/"
    for link in local:
        assert os.path.exists(os.path.join(ROOT, link)), link

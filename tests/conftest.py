"""Suite-wide guard: no test writes into the user's own folders (log/, output/, data/ of the
checkout); every test keeps its files under its temporary folder."""
from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUARDED = ("log", "output", "data")


def _entries() -> set:
    """Top-level entries of the guarded folders (a new run or dataset shows up there)."""
    out = set()
    for name in GUARDED:
        folder = os.path.join(ROOT, name)
        if os.path.isdir(folder):
            out |= {os.path.join(name, e) for e in os.listdir(folder)}
    return out


@pytest.fixture(scope="session", autouse=True)
def no_writes_outside_tmp():
    before = _entries()
    yield
    new = sorted(_entries() - before)
    assert not new, f"tests wrote into the checkout: {new}; give them tmp_path folders"

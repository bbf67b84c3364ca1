"""The table of random streams: the same seeds as the formulas it replaced, used once each."""
import io
import os
import re
import tokenize
from collections import Counter

import numpy as np
import pytest
import torch

from semipose.data.loaders import build_loader, set_loader_epoch
from semipose.utils.streams import STREAMS, stream_rng, stream_seed

LIB = os.path.join(os.path.dirname(__file__), os.pardir, "lib", "semipose")
TABLE = os.path.join("utils", "streams.py")

# (SEED, rank, epoch, index, global step) values the old formulas are checked at.
CASES = [(1314, 0, 0, 0, 0), (1314, 3, 2, 17, 250), (0, 1, 1, 5, 1), (7, 7, 140, 123456, 999_999),
         (2 ** 31 - 1, 15, 3, 2 ** 20, 10 ** 7)]


def code_only(text):
    """``text`` with its comments and string literals (docstrings included) blanked out, so that
    a formula quoted in a docstring is not taken for code; line numbers are kept."""
    lines = text.splitlines(keepends=True)
    prose = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    for tok in reversed(list(tokenize.generate_tokens(io.StringIO(text).readline))):
        if tok.type not in prose:
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for r in range(r0, r1 + 1):
            line = lines[r - 1]
            a = c0 if r == r0 else 0
            b = c1 if r == r1 else len(line.rstrip("\n"))
            lines[r - 1] = line[:a] + " " * (b - a) + line[b:]
    return "".join(lines)


def library_sources():
    """(path relative to lib/semipose, code without comments and strings) of every module."""
    for folder, _, files in os.walk(LIB):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, LIB), code_only(f.read())


@pytest.mark.parametrize("seed, rank, epoch, index, step", CASES)
def test_integer_seeds_equal_the_old_formulas(seed, rank, epoch, index, step):
    # The formulas as they were written in each place before the table.
    assert stream_seed("process", seed=seed, rank=rank) == seed + rank  # engine/trainer.py
    assert stream_seed("hard_view", seed=seed, rank=rank) == seed + rank  # engine/model_setup.py
    assert (stream_seed("world_change", seed=seed, rank=rank, step=step)
            == (int(seed) + rank) * 1_000_003 + step)  # engine/state.py
    assert stream_seed("shuffle", seed=seed) == int(seed)  # data/loaders.py
    assert stream_seed("loader", seed=seed) == int(seed)
    assert stream_seed("loader_epoch", seed=seed, epoch=epoch) == seed * 1_000_003 + int(epoch)
    initial = seed * 2 ** 32 + index  # torch worker seeds are 64 bits wide
    assert stream_seed("worker", initial_seed=initial) == initial % (2 ** 32)
    assert stream_seed("export_check") == 0  # engine/export.py


@pytest.mark.parametrize("seed, rank, epoch, index, step", CASES)
def test_entropy_lists_equal_the_old_ones(seed, rank, epoch, index, step):
    assert stream_seed("item", seed=seed, epoch=epoch, index=index) == [seed, epoch, index]
    assert stream_seed("item", seed=seed, epoch=epoch, index=index, extra=(4, 2)) == [
        seed, epoch, index, 4, 2]  # data/dataset.py
    assert stream_seed("pairing", seed=seed, epoch=epoch, rank=rank) == [seed, epoch, rank, 0x5EED]
    assert stream_seed("paired_labeled", seed=seed, epoch=epoch, index=index) == [
        seed, epoch, index, 0]  # data/paired.py
    assert stream_seed("paired_unlabeled", seed=seed, epoch=epoch, index=index) == [
        seed, epoch, index, 1]
    assert stream_seed("monitor", seed=seed, index=np.int64(index)) == [seed, index]
    assert stream_seed("synthetic_scene", seed=seed, split=2, index=index) == [seed, 2, index]
    assert stream_seed("synthetic_detections", seed=seed, split=2, index=index) == [
        seed, 2, index, 1]
    assert stream_seed("synthetic_textures") == 20210101


def test_written_out_values():
    assert stream_seed("process", seed=1314, rank=3) == 1317
    assert stream_seed("world_change", seed=1314, rank=3, step=250) == 1317004201
    assert stream_seed("loader_epoch", seed=1314, epoch=7) == 1314003949
    assert stream_seed("worker", initial_seed=2 ** 40 + 5) == 5
    assert type(stream_seed("monitor", seed=1314, index=np.int64(17))[1]) is int
    # First draws of the numpy generators, as before the table.
    first = [("item", dict(seed=1314, epoch=2, index=17), 84553447),
             ("pairing", dict(seed=1314, epoch=2, rank=1), 1387346466),
             ("paired_unlabeled", dict(seed=1314, epoch=2, index=17), 2055283638),
             ("monitor", dict(seed=1314, index=17), 1150407365),
             ("synthetic_scene", dict(seed=0, split=1, index=5), 1776822992),
             ("synthetic_detections", dict(seed=0, split=1, index=5), 985742452),
             ("synthetic_textures", {}, 1322987606)]
    for name, parts, value in first:
        assert stream_rng(name, **parts).integers(0, 2 ** 31) == value, name
    # numpy pads entropy with zeros: paired_labeled of an index is the item stream of it
    assert (stream_rng("paired_labeled", seed=1314, epoch=2, index=17).integers(0, 2 ** 31)
            == 84553447)


def test_unknown_stream_names_the_table():
    with pytest.raises(KeyError, match="unknown random stream 'proces'.*process"):
        stream_seed("proces", seed=1, rank=0)
    with pytest.raises(TypeError):
        stream_seed("process", seed=1)  # a missing part is an error, not a default


def test_loader_generator_and_sampler_follow_the_table():
    data = list(range(10))
    loader = build_loader(data, 2, 0, shuffle=True, seed=1314, pin_memory=False)
    assert loader.generator.initial_seed() == 1314 and loader.sampler.seed == 1314
    set_loader_epoch(loader, 3)
    assert loader.generator.initial_seed() == 1314 * 1_000_003 + 3
    # torch's sampler: randperm from SEED + epoch
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(1314 + 3)).tolist()
    assert list(loader.sampler) == expected


def test_every_stream_is_derived_in_exactly_one_place():
    # Names are string literals, blanked in library_sources: read them from the raw files.
    use = re.compile(r"stream_(?:seed|rng)\(\s*\"(\w+)\"")
    places = Counter()
    for rel, code in library_sources():
        if rel != TABLE:
            with open(os.path.join(LIB, rel), encoding="utf-8") as f:
                raw = f.read()
            # only calls in code count (a call quoted in a docstring is not a use)
            places.update(m.group(1) for m in use.finditer(raw)
                          if code[m.start():m.start() + len("stream_")] == "stream_")
    assert set(places) == set(STREAMS), "streams in the table but unused, or used but not in it"
    assert [n for n, count in places.items() if count != 1] == []


def test_no_seed_is_derived_outside_the_table():
    # What the table replaced: inline entropy lists, constant seeds, seed arithmetic.
    ad_hoc = re.compile(r"default_rng\(\s*[\[\d]|manual_seed\(\s*\d|RandomState\(|1_000_003"
                        r"|SEED\s*[+*]|initial_seed\(\)\s*%|\bseed\s*[+*]\s*\w")
    found = [f"{rel}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}"
             for rel, text in library_sources() if rel != TABLE
             for m in ad_hoc.finditer(text)]
    assert found == []

"""Suite-wide guard: no test writes into the user's own folders (log/, output/, data/ of the
checkout); every test keeps its files under its temporary folder."""
from __future__ import annotations

import hashlib
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


# ---------------------------------------------------------------- shared tiny-run setup
# Overrides that make a synthetic-data run tiny and CPU-only: 64x64 crops, a narrow deconv head,
# 8 training items in batches of 4, no loader workers, no data generation on demand.
TINY = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.EXTRA.HEATMAP_SIZE", "[16, 16]",
        "MODEL.EXTRA.SIGMA", "1.0", "MODEL.EXTRA.NUM_DECONV_FILTERS", "[32, 32, 32]",
        "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8", "WORKERS", "0", "PRINT_FREQ", "1",
        "DATASET.TRAIN_LEN", "8", "SYNTHETIC.GENERATE_IF_MISSING", "False", "DEVICE", "cpu"]


def tiny(*pairs: str) -> list:
    """TINY with more ``KEY VALUE`` pairs: a key TINY has takes the new value in its place, other
    keys are appended (so each key appears once)."""
    assert len(pairs) % 2 == 0, f"KEY VALUE pairs expected, got {pairs}"
    out = list(TINY)
    for key, value in zip(pairs[0::2], pairs[1::2]):
        if key in out[0::2]:
            out[out.index(key) + 1] = value
        else:
            out += [key, value]
    return out


def make_synthetic(tmp_path_factory, name: str = "synthetic", seed: int = 3, num_train: int = 6,
                   num_val: int = 3) -> str:
    """A generated synthetic COCO root (no unlabeled images) in a fresh temporary folder."""
    from semipose.data.synthetic import generate

    root = str(tmp_path_factory.mktemp(name))
    generate(root, seed=seed, num_train=num_train, num_val=num_val, num_unlabeled=0,
             show_progress=False)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    """The tiny synthetic set (seed 3, 6 train / 3 val images), generated once per test module;
    a module that needs another size defines its own ``data_root``."""
    return make_synthetic(tmp_path_factory)


def synthetic_opts(root: str, out: str, overrides: list, *extra: str) -> list:
    """``overrides`` (e.g. TINY) + the keys that point a run at the synthetic set at ``root``,
    with outputs and TensorBoard under ``out``, then ``extra`` KEY VALUE pairs."""
    det = os.path.join(root, "coco", "person_detection_results",
                       "synthetic_val2017_detections.json")
    return list(overrides) + ["DATASET.ROOT", root, "OUTPUT_DIR", out, "LOG_DIR",
                              os.path.join(out, "tb"), "TEST.COCO_BBOX_FILE", det, *extra]


def synthetic_cfg(cfg_path: str, root: str, out: str, overrides: list):
    """``load_cfg(cfg_path)`` with :func:`synthetic_opts`."""
    from semipose.config import load_cfg

    return load_cfg(cfg_path, synthetic_opts(root, out, overrides))


def script_env() -> dict:
    """Environment of a script run in a subprocess: this checkout's library first, one thread,
    unbuffered output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "lib"), env.get("PYTHONPATH", "")])
    return env


def tree_digest(root: str) -> dict:
    """SHA-256 of every file below ``root``, by path relative to it: two trees are byte-identical
    when their digests are equal."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def video_frames(path: str) -> list:
    """Every frame of a video file (BGR arrays), read with the library's own reader."""
    from semipose.inference import frames

    return [frame for _, frame, _ in frames(path)]

"""Every random stream of the library in one table: stream name -> how its seed is derived.

A stream's seed is a function of a few integers (the config's SEED, the DDP rank, the epoch,
an item index, ...), never of the order in which things happen, so that a run gives the same
numbers with any number of workers and after a resume. Library code gets a seed only through
``stream_seed(name, ...)`` (or a numpy generator through ``stream_rng``); the formulas below are
the only place where seeds are derived.

====================  =================================  ========================================
stream                seed                               what it seeds
====================  =================================  ========================================
process               SEED + rank                        a rank's python/numpy/torch global
                                                         RNGs (engine/trainer.py)
hard_view             SEED + rank                        the method's hard-view generators
                                                         (engine/model_setup.py)
world_change          (SEED + rank) * 1_000_003 + step   process and hard_view again when a
                                                         checkpoint is resumed by another
                                                         world size (engine/state.py)
shuffle               SEED (torch adds the epoch)        DistributedSampler order: randperm
                                                         seeded SEED + epoch (data/loaders.py)
loader                SEED                               the DataLoader's generator (worker
                                                         base seeds) when built (data/loaders.py)
loader_epoch          SEED * 1_000_003 + epoch           that generator at each epoch's start
worker                torch worker seed % 2**32          python/numpy/torch in DataLoader
                                                         worker k (torch gives it base + k)
item                  [SEED, epoch, index, *extra]       one sample's augmentation
                                                         (data/dataset.py)
pairing               [SEED, epoch, rank, 0x5EED]        labeled partner of each paired item
                                                         (data/paired.py)
paired_labeled        [SEED, epoch, index, 0]            the labeled crop of paired item index
paired_unlabeled      [SEED, epoch, index, 1]            its unlabeled crop: shared geometry
                                                         and RandAugment twin (data/paired.py)
monitor               [SEED, index]                      the collapse monitor's fixed crops
                                                         (engine/data_setup.py)
export_check          0                                  random crops an ONNX export is
                                                         checked on (engine/export.py)
synthetic_scene       [SYNTHETIC.SEED, split, index]     one synthetic image
                                                         (data/synthetic.py)
synthetic_detections  [SYNTHETIC.SEED, split, index, 1]  its simulated detections
synthetic_textures    20210101                           noise tiles of all synthetic images
                                                         (data/synthetic_render.py)
synthetic_quadruped   [SYNTHETIC.SEED, split, index, 2]  one synthetic quadruped image
                                                         (data/synthetic_custom.py)
synthetic_clip        [SYNTHETIC.SEED, index, 0, 3]      one synthetic quadruped video clip
                                                         (data/synthetic_custom.py)
====================  =================================  ========================================

List seeds are numpy ``SeedSequence`` entropy (``np.random.default_rng(list)``). numpy pads
entropy of fewer than 4 words with zeros, so there a trailing 0 changes nothing:
``paired_labeled`` of index i is the ``item`` stream of index i, and ``monitor`` of index i is
``item`` of epoch i, index 0. They draw for different crops, so this is harmless; a new list
stream should end in a distinct non-zero word (like ``pairing``).

``process`` and ``hard_view`` share their seed: the hard view draws from generators of its own,
which on the CPU start where the global torch generator starts (weight initialisation then
moves the global one on).

The multiplier 1_000_003 (``SPREAD``, a prime) keeps the seeds of neighbouring (SEED + rank)
or SEED values apart by more than a run's steps or epochs: rank 1 never takes a seed rank 0
uses at a later step.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Union

import numpy as np

# An integer seed, or SeedSequence entropy for numpy generators.
Seed = Union[int, List[int]]

# Last entropy word of the pairing stream: item streams end in 0 (labeled) or 1 (unlabeled).
PAIRING_WORD = 0x5EED
# Multiplier that separates one (SEED, rank) or SEED from the next (see the module docstring).
SPREAD = 1_000_003


def _process(*, seed: int, rank: int) -> int:
    return int(seed) + int(rank)


def _hard_view(*, seed: int, rank: int) -> int:
    return int(seed) + int(rank)


def _world_change(*, seed: int, rank: int, step: int) -> int:
    return (int(seed) + int(rank)) * SPREAD + int(step)


def _shuffle(*, seed: int) -> int:
    # torch's DistributedSampler seeds its permutation with this + the epoch of set_epoch.
    return int(seed)


def _loader(*, seed: int) -> int:
    return int(seed)


def _loader_epoch(*, seed: int, epoch: int) -> int:
    return int(seed) * SPREAD + int(epoch)


def _worker(*, initial_seed: int) -> int:
    # torch.initial_seed() in a worker is 64 bits wide; numpy's legacy seeding takes 32.
    return int(initial_seed) % (2 ** 32)


def _item(*, seed: int, epoch: int, index: int, extra: tuple = ()) -> List[int]:
    return [seed, epoch, int(index), *extra]


def _pairing(*, seed: int, epoch: int, rank: int) -> List[int]:
    return [seed, epoch, rank, PAIRING_WORD]


def _paired_labeled(*, seed: int, epoch: int, index: int) -> List[int]:
    return [seed, epoch, index, 0]


def _paired_unlabeled(*, seed: int, epoch: int, index: int) -> List[int]:
    return [seed, epoch, index, 1]


def _monitor(*, seed: int, index: int) -> List[int]:
    return [seed, int(index)]


def _export_check() -> int:
    return 0


def _synthetic_scene(*, seed: int, split: int, index: int) -> List[int]:
    return [seed, split, index]


def _synthetic_detections(*, seed: int, split: int, index: int) -> List[int]:
    # A stream of its own, so that simulating detections never changes the rendered image.
    return [seed, split, index, 1]


def _synthetic_textures() -> int:
    return 20210101


def _synthetic_quadruped(*, seed: int, split: int, index: int) -> List[int]:
    # Ends in 2: never the people's scene ([.., 0] after numpy's padding) or detections (1).
    return [seed, split, index, 2]


def _synthetic_clip(*, seed: int, index: int) -> List[int]:
    return [seed, int(index), 0, 3]


STREAMS: Dict[str, Callable[..., Seed]] = {
    "process": _process,
    "hard_view": _hard_view,
    "world_change": _world_change,
    "shuffle": _shuffle,
    "loader": _loader,
    "loader_epoch": _loader_epoch,
    "worker": _worker,
    "item": _item,
    "pairing": _pairing,
    "paired_labeled": _paired_labeled,
    "paired_unlabeled": _paired_unlabeled,
    "monitor": _monitor,
    "export_check": _export_check,
    "synthetic_scene": _synthetic_scene,
    "synthetic_detections": _synthetic_detections,
    "synthetic_textures": _synthetic_textures,
    "synthetic_quadruped": _synthetic_quadruped,
    "synthetic_clip": _synthetic_clip,
}


def stream_seed(name: str, **parts: Any) -> Seed:
    """The seed of stream ``name`` from its parts, e.g. ``stream_seed("process", seed=SEED,
    rank=rank)`` (see the table above for each stream's parts)."""
    try:
        derive = STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown random stream {name!r}; the streams are "
                       f"{', '.join(STREAMS)} (utils/streams.py)") from None
    return derive(**parts)


def stream_rng(name: str, **parts: Any) -> np.random.Generator:
    """A numpy generator of stream ``name``: ``np.random.default_rng(stream_seed(name, ...))``."""
    return np.random.default_rng(stream_seed(name, **parts))

"""Throughput of the synthetic people generator (images/s), per stage and end to end.

    python bench/bench_synthetic.py                  # 300 images, 1 process, then all cores
    python bench/bench_synthetic.py --images 1000 --workers 1 4

Stages (one process, OpenCV limited to 1 thread): scene sampling, rendering (background, people,
occluders, label map, annotations, camera effects), JPEG encoding (quality 90). End to end runs
``generate`` (COCO format: train split only, so JSON writing is included) into a temporary folder.
Prints medians over ``--repeats``.

Reference figures (2-core development VM shared with other jobs, Python 3.11, OpenCV 5.0,
numpy 2.4; images 320x240 .. 640x480, 1-4 people): sampling ~0.6 ms, rendering ~3.3 ms, JPEG
~0.6 ms per image; ``generate`` with 1 worker ~130-200 images/s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import cv2
import numpy as np

from semipose.data.synthetic import JPEG_QUALITY, generate
from semipose.data.synthetic_render import noise_tiles, render_scene
from semipose.data.synthetic_scene import sample_scene


def stages(n: int) -> tuple:
    """Seconds per image for (sampling, rendering, JPEG encoding) over n scenes."""
    t = np.zeros(3)
    for i in range(n):
        t0 = time.perf_counter()
        scene = sample_scene(np.random.default_rng([99, 0, i]))
        t1 = time.perf_counter()
        img, _ = render_scene(scene)
        t2 = time.perf_counter()
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        t[:] += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    return tuple(t / n)


def end_to_end(n: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        generate(d, seed=0, num_train=n, num_val=0, num_unlabeled=0, show_progress=False, workers=workers)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300, help="images per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="repeats (median reported)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                    help="process counts for the end-to-end runs")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    noise_tiles()
    runs = [stages(a.images) for _ in range(a.repeats)]
    med = [statistics.median(r[k] for r in runs) * 1e3 for k in range(3)]
    print(f"per image (ms, median of {a.repeats}): sample {med[0]:.2f}  render {med[1]:.2f}  "
          f"jpeg {med[2]:.2f}  -> {1e3 / sum(med):.0f} images/s in one process")
    for w in a.workers:
        rate = statistics.median(end_to_end(a.images, w) for _ in range(a.repeats))
        print(f"generate(), {w} worker(s): {rate:.0f} images/s ({rate / w:.0f} per process)")


if __name__ == "__main__":
    main()

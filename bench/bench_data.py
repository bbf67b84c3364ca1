"""Throughput and peak memory of the per-sample training pipeline (single process, CPU).

    python bench/bench_data.py                 # real COCO fixture images (tests/data/fixtures)
    python bench/bench_data.py --synthetic 20  # N generated 640x480 JPEGs with random person boxes
    python bench/bench_data.py --device-path   # host CPU per pair, DATASET.DEVICE_PIPELINE on/off

Measures samples/s of PoseDataset.__getitem__ (decode, augment, warp to 256x192, normalise,
Gaussian targets) and of a paired item (labeled + unlabeled [+ RandAugment twin]); prints the
median over repeats and the process's peak RSS.

``--device-path`` instead measures the loader side per pair (items + default_collate of a batch,
process CPU time, one thread) with the CPU path and with the device path's plans, their ratio,
and, for information, the device stage (decode, warp, targets) run on the CPU and, where a GPU
is present, on CUDA (wall time to a synchronize, and the host CPU it takes).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

from semipose.data.coco import CocoDataset
from semipose.data.dataset import PoseDataset
from semipose.data.keypoints import COCO, UNION, labeled_union_ids
from semipose.data.paired import PairedDataset
from semipose.transforms.affine import box_to_center_scale
from semipose.transforms.randaugment import RandAugment
from semipose.transforms.sample import SampleTransform

SIZE, HM = (192, 256), (48, 64)
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fixtures")


def synthetic_records(folder: str, n: int, seed: int = 0) -> list:
    """n smooth random 640x480 JPEGs (natural-image-like file sizes), one person box each."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        low = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        img = cv2.resize(low, (640, 480), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
        path = os.path.join(folder, f"{i:012d}.jpg")
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        x, y = rng.uniform(0, 300), rng.uniform(0, 150)
        box = [x, y, rng.uniform(80, 300), rng.uniform(150, 320)]
        c, s = box_to_center_scale(box, SIZE[0] / SIZE[1])
        joints = np.zeros((UNION.num_joints, 2), np.float32)
        vis = np.zeros(UNION.num_joints, np.float32)
        ids = labeled_union_ids(COCO)
        joints[ids] = np.column_stack([rng.uniform(box[0], box[0] + box[2], ids.size),
                                       rng.uniform(box[1], box[1] + box[3], ids.size)])
        vis[ids] = 1
        records.append({"image": path, "image_id": i, "center": c, "scale": s, "joints": joints,
                        "joints_vis": vis, "score": 1.0,
                        "raw_box": np.asarray(box, np.float32)})
    return records


def current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def timed(fns: dict, n: int, repeats: int) -> dict:
    """Median rate (calls/s) of each ``fn(i)``, i in range(n), over ``repeats`` passes.

    The functions take turns within every repeat, so background load on a shared machine hits
    all of them alike.
    """
    rates = {name: [] for name in fns}
    for fn in fns.values():
        fn(0)  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for i in range(n):
                fn(i)
            rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def cpu_and_wall_ms(fn, n: int, repeats: int, sync=lambda: None) -> tuple:
    """Medians over ``repeats`` of the process CPU time and the wall time (ms) per call of
    ``fn(i)``, i < n, after one warm-up call. CPU time stops before ``sync()`` (e.g. a CUDA
    synchronize), so it is the host's share; wall time runs to it.

    CPU time is the figure to quote on a shared machine: far less inflated by other jobs.
    """
    fn(0)  # warm-up: caches, decoder handles, kernels, allocator
    sync()
    cpus, walls = [], []
    for _ in range(repeats):
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            fn(i)
        cpus.append((time.process_time() - c0) * 1000 / n)
        sync()
        walls.append((time.perf_counter() - w0) * 1000 / n)
    return statistics.median(cpus), statistics.median(walls)


def cpu_ms_per_item(fn, n: int, repeats: int) -> float:
    """Median over ``repeats`` of the process CPU time (ms) per call of ``fn(i)``, i < n."""
    return cpu_and_wall_ms(fn, n, repeats)[0]


def stage_dispatch_ms(records: list, twin, batch: int, repeats: int) -> float:
    """CPU ms per pair of the device stage on 32x24 JPEGs warped to 16x16 crops: the pixel work
    is negligible there, so this estimates the stage's Python and op-dispatch cost, the part
    that stays on the host when the stage runs on a GPU."""
    import torch
    from torch.utils.data import default_collate
    from semipose.transforms.device_pipeline import DeviceStage, PlanTransform

    with tempfile.TemporaryDirectory() as tmp:
        tiny = []
        for i, rec in enumerate(records):
            img = cv2.resize(cv2.imread(rec["image"]), (32, 24), interpolation=cv2.INTER_AREA)
            path = os.path.join(tmp, f"{i}.jpg")
            cv2.imwrite(path, img)
            tiny.append(dict(rec, image=path))
        t = PlanTransform((16, 16), (4, 4), 1, UNION.flip_pairs, True, joint_set=UNION)
        ds = PoseDataset(tiny, t, True, seed=0)
        paired = PairedDataset(ds, ds, labeled_union_ids(COCO), twin, seed=0)
        plans = [default_collate([paired[(b * batch + i) % len(paired)] for i in range(batch)])
                 for b in range(4)]
        stage = DeviceStage(t)
        return cpu_ms_per_item(lambda b: stage(plans[b % 4], torch.device("cpu")), 4,
                               repeats) / batch


def stage_ms(stage, plans: list, device, repeats: int, batch: int) -> tuple:
    """(wall ms, host CPU ms) per pair of the device stage on ``device``, medians over repeats
    of 4 batches. On CUDA the wall time runs to a synchronize, so it is the GPU's time when the
    GPU is the slower side; the CPU time is what the stage costs the host (the trainer's main
    process) per pair."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cpu, wall = cpu_and_wall_ms(lambda b: stage(plans[b % len(plans)], device), 4, repeats, sync)
    return wall / batch, cpu / batch


def device_path_report(records: list, source: str, batch: int, repeats: int) -> None:
    """Loader-side host CPU per pair with the device path off and on, and the device stage."""
    import torch
    from torch.utils.data import default_collate
    from semipose.transforms.device_pipeline import DeviceStage, PlanTransform

    torch.set_num_threads(1)
    print(f"source: {source}; pairs (labeled + unlabeled [+ RandAugment(2, 20) twin]), crop "
          f"{SIZE[1]}x{SIZE[0]}, heatmap {HM[1]}x{HM[0]}, batch {batch} pairs; process CPU "
          f"time, 1 thread; median of {repeats} x 4 batches (torch {torch.__version__})")
    for twin in (None, RandAugment(2, 20)):
        rows = {}
        for name, kind in (("cpu path", SampleTransform), ("device path", PlanTransform)):
            t = kind(SIZE, HM, 2, UNION.flip_pairs, True, joint_set=UNION)
            ds = PoseDataset(records, t, True, seed=0)
            paired = PairedDataset(ds, ds, labeled_union_ids(COCO), twin, seed=0)
            batches = [[(b * batch + i) % len(paired) for i in range(batch)] for b in range(4)]
            load = lambda b: default_collate([paired[i] for i in batches[b % 4]])  # noqa: E731
            rows[name] = cpu_ms_per_item(load, 4, repeats) / batch
            if kind is PlanTransform:
                stage, plans = DeviceStage(t), [load(b) for b in range(4)]
                rows["device stage on the CPU (info)"] = cpu_ms_per_item(
                    lambda b: stage(plans[b % 4], torch.device("cpu")), 4, repeats) / batch
                if torch.cuda.is_available():  # the stage as the trainer runs it on a GPU
                    wall, host = stage_ms(stage, plans, torch.device("cuda"), repeats, batch)
                    rows["device stage on CUDA, wall to sync"] = wall
                    rows["device stage on CUDA, host CPU"] = host
        rows["stage dispatch, tiny images (info)"] = stage_dispatch_ms(records, twin, batch,
                                                                       repeats)
        label = "pairs + RandAugment twin" if twin else "pairs"
        for name, ms in rows.items():
            print(f"{label:25s} {name:36s} {ms:7.3f} ms CPU per pair")
        ratio = rows["device path"] / rows["cpu path"]
        print(f"{label:25s} {'ratio device / cpu path':36s} {ratio:7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", type=int, default=0, help="generate N JPEGs instead of the fixture")
    ap.add_argument("--samples", type=int, default=200, help="samples per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device-path", action="store_true",
                    help="host CPU per pair with DATASET.DEVICE_PIPELINE off and on")
    ap.add_argument("--batch", type=int, default=32, help="pairs per batch for --device-path")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # DataLoader workers run OpenCV single-threaded; measure that
    base_mib = current_rss_mib()  # after importing torch/cv2/numpy

    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            records = synthetic_records(tmp, args.synthetic)
            source = f"{args.synthetic} synthetic 640x480 JPEGs"
        else:
            records = CocoDataset(FIXTURE, "val2017", UNION.num_joints, SIZE, is_train=True).records
            source = f"COCO val2017 fixture ({len(records)} persons, 4 real JPEGs)"
        if args.device_path:
            device_path_report(records, source, args.batch, args.repeats)
            return
        t = SampleTransform(SIZE, HM, 2, UNION.flip_pairs, True, joint_set=UNION)
        ds = PoseDataset(records, t, True, seed=0)
        n = args.samples
        paired = PairedDataset(ds, ds, labeled_union_ids(COCO), seed=0)
        paired_ra = PairedDataset(ds, ds, labeled_union_ids(COCO), RandAugment(2, 20), seed=0)
        rates = timed({"single": lambda i: ds[i % len(ds)],
                       "pair": lambda i: paired[i % len(paired)],
                       "pair_ra": lambda i: paired_ra[i % len(paired_ra)]}, n, args.repeats)
        single, pair, pair_ra = rates["single"], rates["pair"], rates["pair_ra"]
        # process CPU time per pair, one thread: the cost a DataLoader worker's core pays
        pair_ms = cpu_ms_per_item(lambda i: paired[i % len(paired)], n, args.repeats)

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"source: {source}; crop {SIZE[1]}x{SIZE[0]}, heatmap {HM[1]}x{HM[0]}, 1 process, "
          f"cv2 threads 1; median of {args.repeats} x {n} samples")
    print(f"train sample (decode+aug+warp+targets): {single:8.1f} samples/s")
    print(f"paired item (labeled + unlabeled):      {pair:8.1f} items/s")
    print(f"paired item + RandAugment(2, 20) twin:  {pair_ra:8.1f} items/s")
    print(f"paired item, CPU time on one core:      {pair_ms:8.3f} ms per pair")
    print(f"peak RSS: {peak_mib:.0f} MiB (after imports: {base_mib:.0f} MiB)  (python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"opencv {cv2.__version__})")


if __name__ == "__main__":
    main()

"""Generator of a synthetic people dataset in the COCO folder layout (no downloads needed).

Layout under ``out_dir`` (``formats`` picks the datasets; COCO is the default)::

    coco/annotations/person_keypoints_train2017.json     COCO keypoint annotations
    coco/annotations/person_keypoints_val2017.json
    coco/annotations/image_info_unlabeled2017.json       images + categories (annotations: [])
    coco/images/{train2017,val2017,unlabeled2017}/%012d.jpg
    coco/person_detection_results/synthetic_val2017_detections.json        detector-style boxes
    coco/person_detection_results/synthetic_unlabeled2017_detections.json
    mpii/annot/{train,validation}.json, mpii/annot/gt_validation.mat, mpii/images/%09d.jpg
    ai_challenger/{train,validation}/keypoint_<set>_annotation.json, .../images/<sha1>.jpg

Sizes: COCO train/val/unlabeled have num_train/num_val/num_unlabeled images. MPII train and
validation have ceil(num_train / 2) and ceil(num_val / 2) images; AI Challenger train and validation
ceil(num_unlabeled / 2) and ceil(num_val / 2) (AIC plays the unlabeled role in MPII+AIC training).

Image ids: COCO id = split code * 10**8 + index + 1 (train 1, val 2, unlabeled 3), unique across
splits. Each image is rendered from ``np.random.default_rng([seed, split code, index])`` (the
``synthetic_scene`` stream of utils/streams.py), so the same seed gives byte-identical files
whatever the number of worker processes. Images are written first, annotation files last, every
file atomically.

``body="quadruped"`` (``--body quadruped``) writes a custom keypoint dataset of a four-legged
animal instead, in the converted-folder layout (dataset.yaml, annotations/{train,val}.json,
images/...), optionally a DeepLabCut project of its labels and unlabeled video clips: see
``synthetic_custom``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from semipose.data import synthetic_formats as fmt
from semipose.data.keypoints import COCO, UNION
from semipose.data.synthetic_body import Draws
from semipose.data.synthetic_render import noise_tiles, render_scene
from semipose.data.synthetic_scene import PRESETS, sample_scene, scene_preset
from semipose.errors import ConfigError
from semipose.utils.streams import stream_rng

JPEG_QUALITY = 90
FORMATS = ("coco", "mpii", "aic")
BODIES = ("person", "quadruped")
_CODES = {("coco", "train2017"): 1, ("coco", "val2017"): 2, ("coco", "unlabeled2017"): 3,
          ("mpii", "train"): 4, ("mpii", "validation"): 5, ("aic", "train"): 6, ("aic", "validation"): 7}
_ID_STRIDE = 10 ** 8
_COCO_IDX = np.array([UNION.index(n) for n in COCO.names])


def _half(n: int) -> int:
    return (n + 1) // 2


def _r2(a) -> list:
    return np.round(np.asarray(a, np.float64), 2).tolist()


def _compact(person: Dict) -> Dict:
    """JSON-ready person; the box is taken from the rounded hull so that the two agree exactly and
    every rounded labeled joint stays inside both (rounding is monotone)."""
    hull = np.round(person["hull"], 2)
    lo, hi = hull.min(0), hull.max(0)
    bbox = [float(lo[0]), float(lo[1]), round(float(hi[0] - lo[0]), 2), round(float(hi[1] - lo[1]), 2)]
    return {"joints": _r2(person["joints"]), "vis": person["vis"].tolist(), "bbox": bbox,
            "area": round(person["area"], 2), "hull": hull.ravel().tolist()}


def _render_one(task: tuple) -> Dict:
    """Render, encode and write one image; return its compact annotation record."""
    seed, code, index, path, with_dets, preset = task
    rng = stream_rng("synthetic_scene", seed=seed, split=code, index=index)
    img, people = render_scene(sample_scene(rng, preset))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    fmt.atomic_write(path, buf.tobytes())
    h, w = img.shape[:2]
    persons = [_compact(p) for p in people if (p["vis"] > 0).any() and len(p["hull"]) >= 3]
    out = {"width": w, "height": h, "persons": persons}
    if with_dets:  # a separate stream, so detections never change the rendered image
        gt = [(p["bbox"], 1.0 - float((np.asarray(p["vis"])[_COCO_IDX] == 2).mean()))
              for p in persons if (np.asarray(p["vis"])[_COCO_IDX] > 0).any()]
        rng_dets = stream_rng("synthetic_detections", seed=seed, split=code, index=index)
        out["dets"] = fmt.simulate_detections(Draws(rng_dets), gt, w, h)
    return out


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already
    noise_tiles()


def _check_formats(formats: Sequence[str]) -> List[str]:
    if isinstance(formats, str):
        formats = (formats,)
    out = []
    for f in formats:
        name = {"ai_challenger": "aic"}.get(f, f)
        if name not in FORMATS:
            raise ConfigError(f"unknown synthetic dataset format '{f}': use any of {FORMATS}")
        if name not in out:
            out.append(name)
    return out


def _plan(out_dir: str, seed: int, counts: Dict[tuple, int]) -> Dict[tuple, Dict]:
    """Per split: image folder, file names and ids."""
    plan = {}
    for (ds, split), n in counts.items():
        code = _CODES[(ds, split)]
        if ds == "coco":
            folder = os.path.join(out_dir, "coco", "images", split)
            ids = [code * _ID_STRIDE + i + 1 for i in range(n)]
            names = ["%012d.jpg" % i for i in ids]
        elif ds == "mpii":
            folder = os.path.join(out_dir, "mpii", "images")
            names = ["%d%08d.jpg" % (code, i) for i in range(n)]
            ids = names
        else:
            folder = os.path.join(out_dir, "ai_challenger", split, "images")
            ids = [hashlib.sha1(f"semipose-synthetic-{seed}-{split}-{i}".encode()).hexdigest()
                   for i in range(n)]
            names = [f"{i}.jpg" for i in ids]
        plan[(ds, split)] = {"code": code, "folder": folder, "ids": ids, "names": names}
    return plan


def _run(tasks: List[tuple], workers: int, show_progress: bool,
         render: Callable[[tuple], Dict] = _render_one) -> List[Dict]:
    """``render`` of every task, in order, in ``workers`` processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), disable=not show_progress, desc="synthetic images", unit="img")
    results = []
    if workers > 1 and len(tasks) > 1:
        import multiprocessing as mp

        # spawn, not fork: a forked child inherits OpenCV's (or torch's) thread pool state from the
        # parent and can deadlock in its first parallel OpenCV call.
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            for r in pool.imap(render, tasks, chunksize=8):
                results.append(r)
                bar.update()
    else:
        for t in tasks:
            results.append(render(t))
            bar.update()
    bar.close()
    return results


def generate(out_dir: str, seed: int = 0, num_train: int = 2000, num_val: int = 200,
             num_unlabeled: int = 2000, show_progress: bool = True,
             formats: Optional[Sequence[str]] = None, workers: int = 1, preset: str = "standard",
             body: str = "person", videos: int = 0, clip_frames: int = 48,
             video_ext: str = ".mp4") -> Dict[str, str]:
    """Write the synthetic dataset under ``out_dir``; return {name: path} of what was written.

    ``body`` "person" (the default) writes the people datasets below; "quadruped" writes a
    custom keypoint dataset of a four-legged animal (``synthetic_custom.generate_quadruped``:
    formats "custom" and "dlc", ``videos`` unlabeled clips of ``clip_frames`` frames each, as
    ``video_ext`` files). ``formats`` None means the body's default: ("coco",) for people.

    Keys: "root"; with COCO "coco_train", "coco_val", "coco_unlabeled" (annotation files),
    "coco_val_detections", "coco_unlabeled_detections", "coco_images"; with MPII "mpii_train",
    "mpii_validation", "mpii_gt_validation", "mpii_images"; with AIC "aic_train", "aic_validation",
    "aic_images" (the folder holding train/ and validation/). ``workers`` > 1 renders in that many
    processes (same bytes as one process). ``preset`` picks the scene kind (see
    synthetic_scene.PRESETS: "standard", or "light" for CPU-sized experiments).
    """
    if body not in BODIES:
        raise ConfigError(f"unknown synthetic body {body!r}: use one of {BODIES}")
    if body == "quadruped":
        from semipose.data.synthetic_custom import generate_quadruped

        return generate_quadruped(out_dir, seed=seed, num_train=num_train, num_val=num_val,
                                  num_unlabeled=num_unlabeled, show_progress=show_progress,
                                  formats=formats, workers=workers, preset=preset, videos=videos,
                                  clip_frames=clip_frames, video_ext=video_ext)
    if videos:
        raise ConfigError(f"videos={videos}: clips are rendered for body 'quadruped' only; the "
                          f"people generator writes images")
    scene_preset(preset)  # fail before any folder is written
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_unlabeled", num_unlabeled)):
        if not 0 <= n < _ID_STRIDE:
            raise ConfigError(f"{name}={n} is out of range: use 0 <= {name} < {_ID_STRIDE}")
    fmts = _check_formats(("coco",) if formats is None else formats)
    counts: Dict[tuple, int] = {}
    if "coco" in fmts:
        counts.update({("coco", "train2017"): num_train, ("coco", "val2017"): num_val,
                       ("coco", "unlabeled2017"): num_unlabeled})
    if "mpii" in fmts:
        counts.update({("mpii", "train"): _half(num_train), ("mpii", "validation"): _half(num_val)})
    if "aic" in fmts:
        counts.update({("aic", "train"): _half(num_unlabeled), ("aic", "validation"): _half(num_val)})
    plan = _plan(out_dir, seed, counts)
    tasks, owners = [], []
    for key, p in plan.items():
        os.makedirs(p["folder"], exist_ok=True)
        dets = key in (("coco", "val2017"), ("coco", "unlabeled2017"))
        for i, name in enumerate(p["names"]):
            tasks.append((seed, p["code"], i, os.path.join(p["folder"], name), dets, preset))
            owners.append(key)
    results = _run(tasks, max(1, int(workers)), show_progress)
    by_split: Dict[tuple, List[Dict]] = {k: [] for k in plan}
    for key, r in zip(owners, results):
        by_split[key].append(r)
    paths = {"root": out_dir}
    if "coco" in fmts:
        paths.update(_write_coco(out_dir, seed, plan, by_split))
    if "mpii" in fmts:
        paths.update(_write_mpii(out_dir, plan, by_split))
    if "aic" in fmts:
        paths.update(_write_aic(out_dir, plan, by_split))
    return paths


def _write_coco(out_dir: str, seed: int, plan: Dict, res: Dict) -> Dict[str, str]:
    ann_dir = os.path.join(out_dir, "coco", "annotations")
    det_dir = os.path.join(out_dir, "coco", "person_detection_results")
    os.makedirs(ann_dir, exist_ok=True)
    os.makedirs(det_dir, exist_ok=True)
    paths, ann_id = {"coco_images": os.path.join(out_dir, "coco", "images")}, 1
    splits = (("train2017", "coco_train"), ("val2017", "coco_val"), ("unlabeled2017", "coco_unlabeled"))
    for split, key in splits:
        p, rs = plan[("coco", split)], res[("coco", split)]
        images = [{"id": i, "file_name": n, "width": r["width"], "height": r["height"], "license": 1}
                  for i, n, r in zip(p["ids"], p["names"], rs)]
        anns = None
        if split != "unlabeled2017":
            anns = []
            for image_id, r in zip(p["ids"], rs):
                for person in r["persons"]:
                    a = fmt.coco_annotation(person, image_id, ann_id)
                    if a is not None:
                        anns.append(a)
                        ann_id += 1
        prefix = "image_info" if anns is None else "person_keypoints"
        paths[key] = os.path.join(ann_dir, f"{prefix}_{split}.json")
        fmt.write_json(paths[key], fmt.coco_file(images, anns, seed))
        if split != "train2017":
            dets = [d for image_id, r in zip(p["ids"], rs) for d in fmt.coco_detections(image_id, r["dets"])]
            paths[key + "_detections"] = os.path.join(det_dir, f"synthetic_{split}_detections.json")
            fmt.write_json(paths[key + "_detections"], dets)
    return paths


def _write_mpii(out_dir: str, plan: Dict, res: Dict) -> Dict[str, str]:
    annot = os.path.join(out_dir, "mpii", "annot")
    os.makedirs(annot, exist_ok=True)
    paths = {"mpii_images": os.path.join(out_dir, "mpii", "images")}
    for split in ("train", "validation"):
        records, heads = [], []
        for name, r in zip(plan[("mpii", split)]["names"], res[("mpii", split)]):
            for person in r["persons"]:
                rec = fmt.mpii_record(person, name)
                if rec is not None:
                    records.append(rec)
                    heads.append(fmt.head_box(np.asarray(person["joints"])))
        paths["mpii_" + split] = os.path.join(annot, f"{split}.json")
        fmt.write_json(paths["mpii_" + split], records)
        if split == "validation":
            paths["mpii_gt_validation"] = os.path.join(annot, "gt_validation.mat")
            fmt.write_mpii_gt(paths["mpii_gt_validation"], records, heads)
    return paths


def _write_aic(out_dir: str, plan: Dict, res: Dict) -> Dict[str, str]:
    paths = {"aic_images": os.path.join(out_dir, "ai_challenger")}
    for split in ("train", "validation"):
        p = plan[("aic", split)]
        entries = [fmt.aic_entry(r["persons"], i) for i, r in zip(p["ids"], res[("aic", split)])]
        paths["aic_" + split] = os.path.join(out_dir, "ai_challenger", split,
                                             f"keypoint_{split}_annotation.json")
        fmt.write_json(paths["aic_" + split], entries)
    return paths


def main(argv: Sequence[str] | None = None) -> Dict[str, str]:
    ap = argparse.ArgumentParser(
        prog="python -m semipose.data.synthetic",
        description="Write a synthetic people dataset in the COCO folder layout (and optionally "
                    "MPII / AI Challenger layouts) so that the whole pipeline runs without downloads; "
                    "with --body quadruped, a custom keypoint dataset of a four-legged animal (the "
                    "converted-folder layout), optionally a DeepLabCut project (--dlc) and unlabeled "
                    "video clips (--video N).")
    ap.add_argument("--out", required=True,
                    help="dataset root to write (coco/, mpii/, ai_challenger/ go inside; with "
                         "--body quadruped dataset.yaml, annotations/, images/, ...)")
    ap.add_argument("--seed", type=int, default=0,
                    help="random seed; the same seed gives identical files (default 0)")
    ap.add_argument("--num-train", type=int, default=2000,
                    help="COCO train2017 images (default 2000); MPII train gets half")
    ap.add_argument("--num-val", type=int, default=200,
                    help="COCO val2017 images (default 200); MPII/AIC validation get half")
    ap.add_argument("--num-unlabeled", type=int, default=2000,
                    help="COCO unlabeled2017 images (default 2000); AIC train gets half")
    ap.add_argument("--formats", nargs="+", default=None,
                    choices=list(FORMATS) + ["ai_challenger", "custom", "dlc"],
                    help="datasets to write (default: coco; for --body quadruped: custom, and "
                         "dlc for a DeepLabCut project too)")
    ap.add_argument("--preset", default="standard", choices=sorted(PRESETS),
                    help="scene kind: 'standard' (default) or 'light' (smaller images, less clutter)")
    ap.add_argument("--body", default="person", choices=list(BODIES),
                    help="what the images show: 'person' (default, COCO / MPII / AIC layouts) or "
                         "'quadruped' (16 joints, a custom keypoint dataset)")
    ap.add_argument("--dlc", action="store_true",
                    help="--body quadruped: also write the labels as a DeepLabCut project under "
                         "<out>/dlc (labeled-data/<video>/imgNNNN.png + CollectedData_synthetic.csv)")
    ap.add_argument("--video", type=int, default=0, metavar="N",
                    help="--body quadruped: render N unlabeled clips of a walking animal under "
                         "<out>/videos (default 0)")
    ap.add_argument("--clip-frames", type=int, default=48, help="frames per clip (default 48)")
    ap.add_argument("--video-format", default="mp4", choices=["mp4", "avi"],
                    help="clip files: mp4 (mp4v codec, default) or avi (MJPG)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="rendering processes (default: all cores); output does not depend on it")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = ap.parse_args(argv)
    formats = a.formats
    if a.body == "person" and (a.dlc or a.video):
        ap.error("--dlc and --video are written for --body quadruped; the people generator writes "
                 "the COCO / MPII / AIC layouts (--formats)")
    if a.dlc:
        formats = list(formats or ["custom"]) + ["dlc"]
    paths = generate(a.out, seed=a.seed, num_train=a.num_train, num_val=a.num_val,
                     num_unlabeled=a.num_unlabeled, show_progress=not a.no_progress,
                     formats=formats, workers=a.workers, preset=a.preset, body=a.body,
                     videos=a.video, clip_frames=a.clip_frames, video_ext="." + a.video_format)
    for k in sorted(paths):
        print(f"{k}: {paths[k]}")
    return paths


if __name__ == "__main__":
    main()

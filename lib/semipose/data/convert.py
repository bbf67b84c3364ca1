"""Import another tool's labels into the folder layout of a custom keypoint dataset.

    python -m semipose.data.convert dlc --csv CollectedData.csv --images-root PROJECT --out DIR

``dlc`` reads a DeepLabCut / Lightning Pose label file (CSV) and writes::

    DIR/dataset.yaml              the dataset description: joints = the bodyparts in order, flip
                                  pairs guessed from left/right in the names (check them)
    DIR/annotations/train.json    COCO keypoints format; the labeled images are split by image
    DIR/annotations/val.json      (--val-fraction, --seed); images without labels go to train
    DIR/images/<path in the CSV>  the labeled images, hard-linked (or copied), nested folders kept

The label file has three header rows (four in multi-animal projects)::

    scorer,       ,      ,          me,   me,   me,   me       (a single path column works too:
    individuals,  ,      ,          m1,   m1,   m2,   m2        labeled-data/video1/img001.png)
    bodyparts,    ,      ,          nose, nose, nose, nose
    coords,       ,      ,          x,    y,    x,    y         (likelihood columns are ignored)
    labeled-data, video1, img001.png, 12.5, 40.1, ,     ,       (empty = joint not labeled)

Row and column numbers in messages are 1-based, as a spreadsheet shows them. A joint is inside
an image of width W when -0.5 <= x <= W (pixel centres at integers or at half-integers both fit).
Reading the file is data/dlc_csv.py; this module splits, writes and reports.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from ..errors import ConfigError, DataError, MissingFileError, UserError
from ..utils.io import TMP_PREFIX, atomic_write_text
from .dlc_csv import (UNIQUE_INDIVIDUAL, BadRowError, LabeledImage, LabelHeader, bad_row,
                      image_path, read_label_csv, read_row)
from .meta import DatasetMeta, guess_flip_pairs

# The smallest margin of a keypoint box (pixels each side), so that one labeled joint, or joints
# on a line, still give a box with some room around them.
MIN_MARGIN_PX = 5.0
NEXT_STEP = ("python pose_estimation/train.py --cfg experiments/custom/posedual.yaml "
             "DATASET.ROOT {out}")
MAX_LISTED_SKIPS = 10  # skipped rows shown one per line in the summary; the rest are counted


def keypoint_box(joints: np.ndarray, width: int, height: int, margin: float) -> List[float]:
    """[x, y, w, h] around the labeled joints (NaN rows ignored): their extent plus ``margin``
    times the extent on each side (at least MIN_MARGIN_PX), clipped to the image."""
    xy = joints[~np.isnan(joints).any(axis=1)]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = np.maximum(margin * (hi - lo), MIN_MARGIN_PX)
    x0, y0 = max(0.0, float(lo[0] - pad[0])), max(0.0, float(lo[1] - pad[1]))
    x1, y1 = min(float(width), float(hi[0] + pad[0])), min(float(height), float(hi[1] + pad[1]))
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def split_images(count: int, val_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask [count]: True = validation. round(fraction * count) images, at least one
    in each part when the fraction is > 0 and there are two images or more; the same seed gives
    the same split."""
    n_val = int(round(val_fraction * count))
    if val_fraction > 0 and count >= 2:
        n_val = min(max(n_val, 1), count - 1)
    mask = np.zeros(count, bool)
    mask[np.random.default_rng(seed).permutation(count)[:n_val]] = True
    return mask


def coco_files(images: Sequence[LabeledImage], is_val: np.ndarray, joints: Sequence[str],
               skeleton: Sequence[Tuple[int, int]], name: str, box: str, margin: float,
               description: str) -> Tuple[Dict, Dict]:
    """(train, val) COCO keypoint dicts; image ids 1.. and annotation ids 1.. in CSV order
    across both files, so that they are unique in the dataset."""
    category = {"id": 1, "name": name, "supercategory": name, "keypoints": list(joints),
                "skeleton": [[a + 1, b + 1] for a, b in skeleton]}
    files = [{"info": {"description": description}, "images": [], "annotations": [],
              "categories": [category]} for _ in range(2)]
    ann_id = 0
    for image_id, (image, val) in enumerate(zip(images, is_val), start=1):
        out = files[int(val)]
        out["images"].append({"id": image_id, "file_name": image.file_name,
                              "width": image.width, "height": image.height})
        for _, xy in image.persons:
            labeled = ~np.isnan(xy).any(axis=1)
            keypoints: List[float] = []
            for (x, y), v in zip(xy.tolist(), labeled):
                keypoints += [x, y, 2] if v else [0, 0, 0]
            bbox = (keypoint_box(xy, image.width, image.height, margin) if box == "keypoints"
                    else [0.0, 0.0, float(image.width), float(image.height)])
            ann_id += 1
            out["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox,
                "keypoints": keypoints, "num_keypoints": int(labeled.sum()),
                "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0})
    return files[0], files[1]


def description_text(name: str, joints: Sequence[str], flip_pairs: Sequence[Tuple[int, int]],
                     skeleton: Sequence[Tuple[int, int]], csv_path: str) -> str:
    """The dataset.yaml of a converted folder, with comments saying what to check."""
    data = {"name": name, "joints": list(joints),
            "flip_pairs": [[joints[a], joints[b]] for a, b in flip_pairs],
            "upper_body": [], "lower_body": [],
            "skeleton": [[joints[a], joints[b]] for a, b in skeleton]}
    # No palette / joint_colors: the default colours follow flip_pairs, so they stay right
    # after the user edits the pairs.
    head = (f"# Dataset description written by `python -m semipose.data.convert dlc` from\n"
            f"# {csv_path}.\n"
            f"# joints: the bodyparts of the label file in its order (the network's outputs).\n"
            f"# flip_pairs: GUESSED from left/right in the names; check them. A horizontal flip\n"
            f"#   swaps each pair; write a pair as [left, right] (drawn in the left / right\n"
            f"#   colour).\n"
            f"# upper_body / lower_body: empty = no half-body crops (DATASET.PROB_HALF_BODY needs\n"
            f"#   both halves).\n"
            f"# skeleton: the edges drawn between joints (demo, debug images).\n"
            f"# sigmas: not given, so OKS AP uses the evaluator's default sigma for every joint;\n"
            f"#   add one per joint (in the order of 'joints') to score with your own.\n")
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def link_or_copy(source: str, dest: str, copy: bool = False) -> str:
    """Put ``source`` at ``dest`` (a hard link, or a copy across file systems or with ``copy``)
    through a temporary sibling and a rename, so ``dest`` is never half a file. Returns
    'linked', 'copied' or 'kept' (``dest`` already is ``source``)."""
    if os.path.exists(dest) and os.path.samefile(source, dest):
        return "kept"
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.basename(dest), dir=folder)
    os.close(fd)
    os.remove(tmp)
    try:
        how = "copied"
        if not copy:
            try:
                os.link(source, tmp)
                how = "linked"
            except OSError:
                pass  # another file system, or links not allowed: copy instead
        if how == "copied":
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
    return how


# ---------------------------------------------------------------------------------- conversion
@dataclass
class ConversionResult:
    """What ``convert_dlc`` wrote, for the summary and for tests."""

    out: str
    joints: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    images: int
    persons: int
    train_images: int
    val_images: int
    skipped: List[BadRowError]
    files: Dict[str, str]


def parse_skeleton(edges: Sequence[str], joints: Sequence[str]) -> Tuple[Tuple[int, int], ...]:
    """'a,b' edges (bodypart names) -> index pairs."""
    out = []
    for edge in edges:
        ends = [e.strip() for e in edge.split(",")]
        if len(ends) != 2 or not all(ends):
            raise ConfigError(f"--skeleton {edge!r}: give an edge as two bodyparts 'a,b'")
        for e in ends:
            if e not in joints:
                raise ConfigError(f"--skeleton {edge!r}: unknown bodypart '{e}'; the bodyparts "
                                  f"are {', '.join(joints)}")
        out.append((joints.index(ends[0]), joints.index(ends[1])))
    return tuple(out)


def convert_dlc(csv_path: str, images_root: str, out: str, val_fraction: float = 0.1,
                seed: int = 0, box: str = "keypoints", margin: float = 0.1,
                skip_bad: bool = False, skeleton: Sequence[str] = (), name: str = "",
                copy: bool = False, overwrite: bool = False,
                log: Callable[[str], None] = print) -> ConversionResult:
    """Convert a DeepLabCut / Lightning Pose label CSV into a converted folder at ``out``
    (see the module docstring); prints a summary through ``log``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction {val_fraction:g}: give a fraction in [0, 1), e.g. 0.1")
    if box not in ("keypoints", "frame"):
        raise ConfigError(f"--box {box!r}: use 'keypoints' (labeled extent plus a margin) or "
                          f"'frame' (the whole image)")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ConfigError(f"--margin {margin:g}: give a fraction >= 0 of the keypoint extent, "
                          f"e.g. 0.1")
    if not os.path.isdir(images_root):
        raise MissingFileError(f"--images-root '{images_root}' is not a folder: give the project "
                               f"folder that the image paths in {csv_path} are relative to")
    out = os.path.normpath(out)
    paths = {"description": os.path.join(out, "dataset.yaml"),
             "train": os.path.join(out, "annotations", "train.json"),
             "val": os.path.join(out, "annotations", "val.json"),
             "images": os.path.join(out, "images")}
    existing = [p for k, p in paths.items() if k != "images" and os.path.exists(p)]
    if existing and not overwrite:
        raise ConfigError(f"--out '{out}' already holds a converted dataset ({existing[0]}); "
                          f"choose another folder, or pass --overwrite to replace it (edits to "
                          f"its dataset.yaml are lost)")

    header, rows = read_label_csv(csv_path)
    joints = header.joints
    edges = parse_skeleton(skeleton, joints)
    images: List[LabeledImage] = []
    skipped: List[BadRowError] = []
    first_row: Dict[str, int] = {}
    for line, cells in rows:
        if not any(cells):
            continue  # a blank line
        try:
            rel = image_path(cells[:header.index_columns])
            if rel in first_row:
                raise bad_row(csv_path, line, 0, "image path", f"'{rel}' is labeled again (first in "
                           f"row {first_row[rel]})", "merge the two rows", "repeated image")
            image = read_row(csv_path, images_root, header, line, cells)
        except BadRowError as err:
            if not skip_bad:
                raise
            skipped.append(err)
            continue
        first_row[rel] = line
        images.append(image)
    persons = sum(len(i.persons) for i in images)
    if persons == 0:
        what = f"{len(skipped)} bad rows skipped, " if skipped else ""
        raise DataError(f"{csv_path}: no labeled joint in any usable row ({what}{len(images)} "
                        f"images without labels); label some frames first")

    # Split the labeled images only: an image without labels has nothing to score, and in
    # train.json it can still serve as an unlabeled image.
    labeled = np.flatnonzero([bool(i.persons) for i in images])
    is_val = np.zeros(len(images), bool)
    is_val[labeled] = split_images(len(labeled), val_fraction, seed)
    flip_pairs = guess_flip_pairs(joints, left_first=True)
    name = name or os.path.basename(out) or "custom"
    text = description_text(name, joints, flip_pairs, edges, csv_path)
    DatasetMeta.from_dict(yaml.safe_load(text), source=paths["description"])  # it must read back
    train, val = coco_files(images, is_val, joints, edges, name, box, margin,
                            f"converted from {os.path.basename(csv_path)} by "
                            f"python -m semipose.data.convert dlc")

    # Images first, the annotation files and the description last: a folder with a train.json
    # has all its images.
    how = Counter(link_or_copy(i.source, os.path.join(paths["images"], *i.file_name.split("/")),
                               copy) for i in images)
    for key, data in (("train", train), ("val", val)):
        atomic_write_text(json.dumps(data), paths[key])
    atomic_write_text(text, paths["description"])

    result = ConversionResult(out, joints, flip_pairs, len(images), persons,
                              int((~is_val).sum()), int(is_val.sum()), skipped, paths)
    _summary(result, header, images, is_val, how, box, margin, val_fraction, seed, csv_path,
             images_root, log)
    return result


def _summary(result: ConversionResult, header: LabelHeader, images: List[LabeledImage],
             is_val: np.ndarray, how: Counter, box: str, margin: float, val_fraction: float,
             seed: int, csv_path: str, images_root: str, log: Callable[[str], None]) -> None:
    joints = header.joints
    animals = (f"individuals: {', '.join(header.individuals)}" if header.individuals != ("",)
               else "one animal per image")
    log(f"read {csv_path}: {len(joints)} bodyparts, {animals}")
    if header.ignored:
        log(f"  unique bodyparts of '{UNIQUE_INDIVIDUAL}' left out (not part of an animal): "
            f"{', '.join(header.ignored)}")
    empty = sum(not i.persons for i in images)
    log(f"images: {result.images} ({empty} without a labeled joint, kept in train.json), "
        f"persons: {result.persons}")
    if result.skipped:
        kinds = Counter(e.reason for e in result.skipped)
        log(f"skipped rows (--skip-bad): {len(result.skipped)} ("
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")
        for err in result.skipped[:MAX_LISTED_SKIPS]:
            log(f"  {str(err).split('; ')[0]}")
        if len(result.skipped) > MAX_LISTED_SKIPS:
            log(f"  ... and {len(result.skipped) - MAX_LISTED_SKIPS} more")
    counts = np.zeros(len(joints), int)
    for image in images:
        for _, xy in image.persons:
            counts += ~np.isnan(xy).any(axis=1)
    width = max(len(j) for j in joints)
    log(f"labeled joints per bodypart (of {result.persons} persons):")
    for j, n in zip(joints, counts):
        log(f"  {j:<{width}}  {n}")
    persons_in = [sum(len(i.persons) for i, v in zip(images, is_val) if v == part)
                  for part in (False, True)]
    log(f"split of the labeled images (--val-fraction {val_fraction:g}, --seed {seed}): train "
        f"{_count(result.train_images, 'image')} / {_count(persons_in[0], 'person')}, val "
        f"{_count(result.val_images, 'image')} / {_count(persons_in[1], 'person')}")
    if result.val_images == 0:
        log("  no validation images: validation will have nothing to score; use a "
            "--val-fraction > 0 with two labeled images or more")
    if box == "keypoints":
        log(f"boxes: the labeled extent plus {margin:g} of it each side (at least "
            f"{MIN_MARGIN_PX:g} px), clipped to the image")
    else:
        log("boxes: the whole frame")
    if result.flip_pairs:
        log("flip pairs guessed from the names (check them in dataset.yaml):")
        for a, b in result.flip_pairs:
            log(f"  {joints[a]} <-> {joints[b]}")
    else:
        log("flip pairs: none found in the names; a horizontal flip then keeps every joint's "
            "label: add the left/right pairs to dataset.yaml (flip_pairs) or set "
            "DATASET.FLIP False")
    log("sigmas: none (OKS AP uses the evaluator's default sigma); upper_body / lower_body: "
        "empty (no half-body crops); edit dataset.yaml to add them")
    log("wrote:")
    log(f"  {result.files['description']}")
    log(f"  {result.files['train']} ({_count(result.train_images, 'image')})")
    log(f"  {result.files['val']} ({_count(result.val_images, 'image')})")
    done = ", ".join(f"{n} {k}" for k, n in sorted(how.items()))
    log(f"  {result.files['images']}{os.sep} ({done} from {images_root})")
    log("next: " + NEXT_STEP.format(out=result.out))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------------- command line
def build_parser(prog: str = "python -m semipose.data.convert") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Convert another tool's keypoint labels into a custom dataset folder "
                    "(dataset.yaml, annotations/train.json and val.json, images/).")
    sub = ap.add_subparsers(dest="format", required=True, metavar="FORMAT")
    dlc = sub.add_parser("dlc", help="a DeepLabCut / Lightning Pose label CSV",
                         description="Convert a DeepLabCut / Lightning Pose label CSV "
                                     "(CollectedData_<scorer>.csv).")
    dlc.add_argument("--csv", required=True, help="the label file")
    dlc.add_argument("--images-root", required=True,
                     help="the folder the image paths in the CSV are relative to (the project "
                          "folder holding labeled-data/)")
    dlc.add_argument("--out", required=True, help="the dataset folder to write (DATASET.ROOT)")
    dlc.add_argument("--val-fraction", type=float, default=0.1,
                     help="fraction of the labeled images for annotations/val.json "
                          "(default 0.1)")
    dlc.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    dlc.add_argument("--box", choices=("keypoints", "frame"), default="keypoints",
                     help="person box: the labeled extent plus a margin (default) or the whole "
                          "frame")
    dlc.add_argument("--margin", type=float, default=0.1,
                     help=f"keypoint box margin each side, a fraction of the extent (default 0.1; "
                          f"at least {MIN_MARGIN_PX:g} px)")
    dlc.add_argument("--skip-bad", action="store_true",
                     help="skip unusable rows (and count them) instead of stopping at the first")
    dlc.add_argument("--skeleton", nargs="+", default=[], metavar="A,B",
                     help="edges to draw, as bodypart pairs 'a,b' (optional)")
    dlc.add_argument("--name", default="", help="dataset name (default: the --out folder's name)")
    dlc.add_argument("--copy", action="store_true",
                     help="copy the images (default: hard links where the file system allows)")
    dlc.add_argument("--overwrite", action="store_true",
                     help="replace the dataset.yaml and annotations of an earlier conversion")
    return ap


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``prog``: the command name in the usage text (``semipose convert`` runs this too)."""
    args = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    try:
        convert_dlc(args.csv, args.images_root, args.out, val_fraction=args.val_fraction,
                    seed=args.seed, box=args.box, margin=args.margin, skip_bad=args.skip_bad,
                    skeleton=args.skeleton, name=args.name, copy=args.copy,
                    overwrite=args.overwrite)
    except (UserError, OSError) as exc:
        # The error conventions of the other command-line tools (one 'error:' line, status 2);
        # imported here only, since engine.cli loads torch and a conversion needs none.
        from ..engine.cli import error_line, report
        report(f"error: {error_line(exc)}", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

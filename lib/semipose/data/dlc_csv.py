"""Reading a DeepLabCut / Lightning Pose label file (CSV): its header rows, then one labeled image
per row, with errors that name the file, the 1-based row and column, and what to do.

The layout (three header rows, four in multi-animal projects) is described in data/convert.py,
which turns what this module reads into a custom keypoint dataset folder.
"""
from __future__ import annotations

import csv
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError, MissingFileError

# The individual that holds a multi-animal project's unique bodyparts (not part of any animal).
UNIQUE_INDIVIDUAL = "single"
HEADER_LABELS = ("scorer", "individuals", "bodyparts", "coords")
COORDS = ("x", "y", "likelihood")
SKIP_HINT = "or pass --skip-bad to skip such rows"

class BadRowError(DataError):
    """One data row of a label file that cannot be used; ``reason`` is a short kind for the
    skipped-rows count of --skip-bad."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---------------------------------------------------------------------------------- the CSV
@dataclass
class LabelHeader:
    """The header rows of a label file."""

    index_columns: int                    # columns holding the image path (1, or 3 when split)
    joints: Tuple[str, ...]               # the bodyparts of one animal, in file order
    individuals: Tuple[str, ...]          # '' for a single-animal file
    # (x column, y column) per individual and joint, 0-based column indices
    columns: Dict[str, List[Tuple[int, int]]]
    column_names: Dict[int, str]          # 0-based column -> 'mouse1 nose x' for messages
    ignored: Tuple[str, ...] = ()         # unique bodyparts of a multi-animal file
    width: int = 0                        # cells per row


@dataclass
class LabeledImage:
    """One usable data row."""

    row: int
    file_name: str                         # relative to the images root, '/'-separated
    source: str                            # the file to copy
    width: int
    height: int
    # (individual, joints [J, 2] with NaN where the joint is not labeled), only those with labels
    persons: List[Tuple[str, np.ndarray]] = field(default_factory=list)


def read_label_csv(path: str) -> Tuple[LabelHeader, List[Tuple[int, List[str]]]]:
    """The header and the data rows (1-based row number, cells) of a DeepLabCut label file."""
    if not os.path.isfile(path):
        raise MissingFileError(f"label file '{path}' not found: give the "
                               f"CollectedData_<scorer>.csv of a DeepLabCut project "
                               f"(labeled-data/<video>/) or a Lightning Pose label CSV with "
                               f"--csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    first = text.split("\n", 1)[0]
    # A spreadsheet saved in a locale with decimal commas separates cells with ';'.
    delimiter = ";" if "," not in first and ";" in first else ","
    rows: List[Tuple[int, List[str]]] = []
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    start = 1
    try:
        for cells in reader:
            rows.append((start, [c.strip() for c in cells]))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}: row {start}: not valid CSV ({err}); fix the file") from None
    header, used = _read_header(path, rows)
    return header, rows[used:]


def _read_header(path: str, rows: List[Tuple[int, List[str]]]) -> Tuple[LabelHeader, int]:
    labels: Dict[str, Tuple[int, List[str]]] = {}
    used = 0
    for line, cells in rows:
        label = next((c for c in cells[:3] if c), "").lower()
        if not labels and label != "scorer":
            raise DataError(f"{path}: row {line} starts with {label or 'an empty cell'!r}; a "
                            f"DeepLabCut label file starts with the header rows 'scorer', "
                            f"('individuals'), 'bodyparts', 'coords'")
        if label not in HEADER_LABELS:
            break
        if label in labels:
            raise DataError(f"{path}: row {line}: header row '{label}' appears twice (first in "
                            f"row {labels[label][0]}); fix the header")
        labels[label] = (line, cells)
        used += 1
        if label == "coords":
            break
    for need in ("bodyparts", "coords"):
        if need not in labels:
            raise DataError(f"{path}: no '{need}' header row; the header rows are 'scorer', "
                            f"('individuals'), 'bodyparts', 'coords', each named in the first "
                            f"cell")
    coords_line, coords = labels["coords"]
    start = next((c for c in range(1, len(coords)) if coords[c].lower() in COORDS), None)
    if start is None:
        raise DataError(f"{path}: row {coords_line} (coords) names no 'x' / 'y' column; the "
                        f"coords row lists x, y (and likelihood) for every bodypart")
    width = max(len(cells) for _, cells in (labels[k] for k in labels))

    def cell(label: str, col: int) -> str:
        cells = labels[label][1] if label in labels else []
        return cells[col] if col < len(cells) else ""

    multi = "individuals" in labels
    found: Dict[Tuple[str, str], Dict[str, int]] = {}
    order: List[Tuple[str, str]] = []
    names: Dict[int, str] = {}
    for col in range(start, width):
        who, part, coord = cell("individuals", col), cell("bodyparts", col), cell("coords", col)
        if not (who or part or coord):
            continue  # a trailing empty column
        for label, value, what in (("individuals", who, "individual"), ("bodyparts", part,
                                   "bodypart"), ("coords", coord, "coordinate")):
            if not value and (label != "individuals" or multi):
                raise DataError(f"{path}: row {labels[label][0]} ({label}), column {col + 1}: "
                                f"empty; every data column needs its {what} named")
        coord = coord.lower()
        if coord not in COORDS:
            raise DataError(f"{path}: row {coords_line} (coords), column {col + 1}: {coord!r} is "
                            f"not a coordinate; use x, y or likelihood")
        key = (who, part)
        if key not in found:
            found[key] = {}
            order.append(key)
        if coord in found[key]:
            raise DataError(f"{path}: column {col + 1}: bodypart '{part}'"
                            f"{f' of {who}' if who else ''} has a second '{coord}' column (the "
                            f"first is column {found[key][coord] + 1}); each bodypart has one x "
                            f"and one y")
        found[key][coord] = col
        names[col] = f"{who + ' ' if who else ''}{part} {coord}"
    for (who, part), cols in found.items():
        for coord in ("x", "y"):
            if coord not in cols:
                raise DataError(f"{path}: bodypart '{part}'{f' of {who}' if who else ''} has no "
                                f"'{coord}' column; each bodypart has an x and a y column")
    individuals: List[str] = []
    parts: Dict[str, List[str]] = {}
    for who, part in order:
        if who not in parts:
            individuals.append(who)
            parts[who] = []
        parts[who].append(part)
    animals = [w for w in individuals if w != UNIQUE_INDIVIDUAL] or individuals
    if not animals:
        raise DataError(f"{path}: no bodypart columns after the image path; the header names "
                        f"each bodypart's x and y columns")
    joints = parts[animals[0]]
    for who in animals[1:]:
        if parts[who] != joints:
            raise DataError(f"{path}: row {labels['individuals'][0]} (individuals): '{who}' has "
                            f"the bodyparts {parts[who]} but '{animals[0]}' has {joints}; every "
                            f"individual needs the same bodyparts in the same order")
    ignored = tuple(parts[w][i] for w in individuals if w not in animals
                    for i in range(len(parts[w])))
    columns = {w: [(found[(w, p)]["x"], found[(w, p)]["y"]) for p in joints] for w in animals}
    return LabelHeader(start, tuple(joints), tuple(animals), columns, names, ignored,
                       width), used


# ---------------------------------------------------------------------------------- rows
def bad_row(csv_path: str, line: int, col: int, what: str, problem: str, todo: str,
            reason: str) -> BadRowError:
    """The error of one bad row: file, 1-based row and column, the cell's meaning, the problem,
    what to do; ``reason`` groups skipped rows in the conversion summary."""
    return BadRowError(f"{csv_path}: row {line}, column {col + 1} ({what}): {problem}; {todo}, "
                       f"{SKIP_HINT}", reason)


def image_path(cells: Sequence[str]) -> str:
    """The image path of a data row ('/'-separated), from one cell or split over several."""
    parts = [c.replace("\\", "/") for c in cells if c]
    return posixpath.normpath("/".join(parts)) if parts else ""


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of the stored pixel grid, from the file header (EXIF orientation is
    ignored, as the training's decoder ignores it)."""
    from PIL import Image  # only the converter reads image headers with Pillow

    with Image.open(path) as im:
        return int(im.size[0]), int(im.size[1])


def read_row(csv_path: str, images_root: str, header: LabelHeader, line: int,
             cells: List[str]) -> LabeledImage:
    """One data row -> a LabeledImage; BadRowError (naming row and column) if it is unusable."""
    k = header.index_columns
    if len(cells) > header.width and any(cells[header.width:]):
        col = header.width + next(i for i, c in enumerate(cells[header.width:]) if c)
        raise bad_row(csv_path, line, col, "beyond the header", f"the row has {len(cells)} cells, "
                   f"the header {header.width}", "remove the extra cells", "extra cells")
    cells = cells + [""] * (header.width - len(cells))
    rel = image_path(cells[:k])
    what = "image path"
    if not rel or rel == ".":
        raise bad_row(csv_path, line, 0, what, "empty", "give the image path relative to "
                   "--images-root", "bad image path")
    if rel.startswith("/") or rel.split("/")[0] == ".." or re.match(r"^[A-Za-z]:", rel):
        raise bad_row(csv_path, line, 0, what, f"'{rel}' is not a path inside --images-root",
                   "write it relative to the project folder (e.g. labeled-data/<video>/img.png)",
                   "bad image path")
    source = os.path.join(images_root, *rel.split("/"))
    if not os.path.isfile(source):
        raise bad_row(csv_path, line, 0, what, f"image '{source}' not found",
                   "check --images-root (the project folder that holds labeled-data/) or the "
                   "path", "image not found")
    try:
        width, height = image_size(source)
    except (OSError, ValueError) as err:
        raise bad_row(csv_path, line, 0, what, f"cannot read image '{source}' ({err})",
                   "replace the image", "unreadable image") from None
    image = LabeledImage(line, rel, source, width, height)
    for who in header.individuals:
        joints = np.full((len(header.joints), 2), np.nan)
        for j, (cx, cy) in enumerate(header.columns[who]):
            x, y = (_number(csv_path, line, c, cells[c], header) for c in (cx, cy))
            if (x is None) != (y is None):
                empty = cx if x is None else cy
                raise bad_row(csv_path, line, empty, header.column_names[empty], "empty while its "
                           "other coordinate is given", "give both x and y or leave both empty",
                           "half-labeled joint")
            if x is None:
                continue
            for c, v, size in ((cx, x, width), (cy, y, height)):
                if not -0.5 <= v <= size:
                    raise bad_row(csv_path, line, c, header.column_names[c], f"{v:g} lies outside "
                               f"the {width} x {height} image '{rel}'", "fix the label",
                               "joint outside the image")
            joints[j] = (x, y)
        if not np.isnan(joints).all():
            image.persons.append((who, joints))
    return image


def _number(csv_path: str, line: int, col: int, text: str, header: LabelHeader
            ) -> Optional[float]:
    """A coordinate cell -> float, or None when empty (pandas writes NaN as '' or 'NaN')."""
    if not text or text.lower() == "nan":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise bad_row(csv_path, line, col, header.column_names[col], f"{text!r} is not a number",
                   "write the coordinate in pixels, or leave the cell empty for a joint that is "
                   "not labeled", "non-numeric cell")
    return value


# ---------------------------------------------------------------------------------- COCO output

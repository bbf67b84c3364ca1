"""Random scene specs for the synthetic people generator (all random draws happen here).

A scene is a plain dict: image size, light direction, background recipe, people (body specs, drawn
far to near), occluders (convex polygons, many placed on a joint so that occlusion is frequent) and
camera effects. ``synthetic_render.render_scene`` turns it into pixels and annotations.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from semipose.data.synthetic_body import Draws, build_person, sample_person
from semipose.data.synthetic_render import TILE_SIZE
from semipose.errors import ConfigError

# Scene presets. "standard" is the default scene; "light" has smaller images (cheaper to decode,
# the same crops after resizing to a small network input), at most two people, fewer clutter
# shapes and distractor sticks, fewer occluders: a scene a CPU-sized model can learn in minutes.
PRESETS: Dict[str, Dict] = {
    "standard": {"min_size": (320, 240), "max_size": (640, 480),  # (width, height)
                 "people_p": (0.35, 0.3, 0.2, 0.15),  # 1..4 people
                 "shapes": (6, 22), "strokes": (1, 7), "occluders_p": (0.3, 0.35, 0.25, 0.1)},
    "light": {"min_size": (192, 144), "max_size": (320, 240),
              "people_p": (0.6, 0.4), "shapes": (2, 8), "strokes": (0, 2),
              "occluders_p": (0.6, 0.3, 0.1)},
}


def scene_preset(name: str) -> Dict:
    """The parameters of a scene preset; a clear error for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown synthetic scene preset {name!r}; use one of {sorted(PRESETS)}")
    return PRESETS[name]


_T = np.linspace(0, 2 * math.pi, 18, endpoint=False)
_CIRCLE = np.stack([np.cos(_T), np.sin(_T)], 1)


def _color(d: Draws, lo: float = 0, hi: float = 255) -> Tuple[int, int, int]:
    return int(d.u(lo, hi)), int(d.u(lo, hi)), int(d.u(lo, hi))


def _shape_points(d: Draws, cx: float, cy: float, size: float) -> np.ndarray:
    """A convex outline around (cx, cy): rotated rectangle, ellipse or random blob, [K, 2]."""
    kind = d.i(0, 3)
    if kind == 2:
        pts = np.array([[d.n(cx, size / 3.5), d.n(cy, size / 3.5)] for _ in range(7)], np.float32)
        return cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
    a = d.u(0, math.pi)
    if kind == 0:
        w, h = size * d.u(0.4, 1.0) / 2, size * d.u(0.4, 1.0) / 2
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    else:
        corners = _CIRCLE * [size * d.u(0.25, 0.5), size * d.u(0.25, 0.5)]
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return corners @ rot.T + [cx, cy]


def _background(d: Draws, w: int, h: int, preset: Dict) -> Dict:
    gh, gw = d.i(2, 9), d.i(2, 11)
    yy, xx = np.mgrid[0:gh, 0:gw]
    a = d.u(0, 2 * math.pi)
    ramp = (xx / max(gw - 1, 1) * math.cos(a) + yy / max(gh - 1, 1) * math.sin(a))[..., None]
    c0, c1 = np.array(_color(d), np.float64), np.array(_color(d), np.float64)
    low = c0 + (c1 - c0) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    low = (low + d.rng.normal(0, d.u(10, 50), (gh, gw, 3))).astype(np.float32)
    shapes = []
    for _ in range(d.i(*preset["shapes"])):
        kind = ("poly", "outline", "line")[d.pick((0.5, 0.2, 0.3))]
        size = min(w, h) * d.u(0.05, 0.5)
        cx, cy = d.u(-0.1, 1.1) * w, d.u(-0.1, 1.1) * h
        geom = (np.array([[cx, cy], [d.n(cx, size), d.n(cy, size)]])
                if kind == "line" else _shape_points(d, cx, cy, size))
        shapes.append((kind, geom, _color(d), d.i(1, 7)))
    strokes = []  # loose limb-like segments (warm/cool tints included) as hard negatives
    for _ in range(d.i(*preset["strokes"])):
        z = complex(d.u(0, w), d.u(0, h))
        seg = min(w, h) * d.u(0.06, 0.2)
        ang = d.u(0, 2 * math.pi)
        pts = [z]
        for _ in range(d.i(1, 3)):
            ang += d.u(-1.5, 1.5)
            pts.append(pts[-1] + seg * complex(math.cos(ang), math.sin(ang)))
        tint = d.i(0, 3)
        col = (_color(d, 120, 255) if tint == 0 else
               (int(d.u(0, 80)), int(d.u(60, 160)), int(d.u(170, 255))) if tint == 1
               else (int(d.u(170, 255)), int(d.u(80, 200)), int(d.u(0, 80))))
        ball = seg * d.u(0.25, 0.4) if d.u() < 0.3 else None
        strokes.append((pts, int(max(2, seg * d.u(0.15, 0.35))), col, ball))
    return {"low": low, "tile": d.i(0, 3), "amp": d.u(0.05, 0.5),
            "offset": (d.i(0, TILE_SIZE - w + 1), d.i(0, TILE_SIZE - h + 1)),
            "shapes": shapes, "strokes": strokes, "ball_color": _color(d, 60, 240)}


def _occluders(d: Draws, w: int, h: int, persons: List[Dict], preset: Dict,
               build: Callable[[Dict], tuple] = build_person) -> List[Dict]:
    """0..len(preset["occluders_p"]) - 1 convex occluders; ``build`` turns a body spec (with its
    size unit in pixels under "height") into (joints, ...) for the other body plans."""
    occs = []
    joints: Dict[int, np.ndarray] = {}
    for _ in range(d.pick(preset["occluders_p"])):
        if persons and d.u() < 0.7:  # centred near a joint of someone
            k = d.i(0, len(persons))
            hp = persons[k]["height"]
            if k not in joints:
                joints[k] = build(persons[k])[0]
            jx, jy = joints[k][d.i(0, len(joints[k]))]
            cx, cy, size = d.n(jx, 0.04 * hp), d.n(jy, 0.04 * hp), hp * d.u(0.1, 0.35)
        else:
            cx, cy, size = d.u(0, w), d.u(0, h), min(w, h) * d.u(0.1, 0.35)
        pts = _shape_points(d, cx, cy, size)
        chords = [(d.i(0, len(pts)), d.i(0, len(pts))) for _ in range(d.i(0, 6))]
        occs.append({"points": pts, "color": _color(d), "color2": _color(d), "color3": _color(d),
                     "inner": d.u(0.3, 0.8), "chords": chords, "chord_w": d.i(1, 4)})
    return occs


def sample_scene(rng: np.random.Generator, preset: str = "standard") -> Dict:
    """A random scene of a preset ("standard": 320x240 .. 640x480, 1-4 people, 0-3 occluders),
    with camera effects."""
    p = scene_preset(preset)
    d = Draws(rng)
    (w0, h0), (w1, h1) = p["min_size"], p["max_size"]
    w, h = d.i(w0, w1 + 1), d.i(h0, h1 + 1)
    bg = _background(d, w, h, p)
    persons = [sample_person(d, w, h) for _ in range(d.pick(p["people_p"]) + 1)]
    persons.sort(key=lambda s: s["height"])  # far (small) first, near people drawn over them
    return {
        "width": w, "height": h, "light": d.u(0, 2 * math.pi), "background": bg,
        "persons": persons, "occluders": _occluders(d, w, h, persons, p),
        "camera": {"gain": d.u(0.8, 1.15), "bias": d.u(-20, 20), "noise": d.u(0.02, 0.12),
                   "offset": (d.i(0, TILE_SIZE - w + 1), d.i(0, TILE_SIZE - h + 1)),
                   "blur": d.u(0.4, 1.1) if d.u() < 0.7 else 0.0},
    }

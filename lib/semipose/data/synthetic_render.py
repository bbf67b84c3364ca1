"""Rendering of one synthetic scene: background, people, occluders, camera noise.

Everything drawn for a person is also drawn into an integer label map (one id per person part,
occluders share one id), so a joint's visibility follows from what ends up on top of its pixel:
its own adjacent body part -> visible (COCO v=2), anything else -> occluded (v=1), outside the
image -> unlabeled (v=0). Scenes are plain dicts made by ``synthetic_scene.sample_scene``; rendering
draws no random numbers, so a scene can be edited (for tests) and rendered again identically.
"""
from __future__ import annotations

import cmath
import math
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from semipose.data.synthetic_body import JOINT_PART_OK, PARTS, build_person
from semipose.utils.streams import stream_rng

_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates are passed multiplied by 2**_SHIFT
_F = 1 << _SHIFT
_LABELS_PER_PERSON = 16
OCCLUDER_LABEL = 0xFFFF
_OCT = np.exp(1j * np.linspace(0, 2 * np.pi, 8, endpoint=False))  # cap outline directions
_UNIT = np.exp(1j * np.linspace(0, 2 * np.pi, 16, endpoint=False))  # ellipse outline samples
TILE_SIZE = 1024


@lru_cache(maxsize=1)
def noise_tiles() -> Tuple[np.ndarray, ...]:
    """Texture tiles [TILE_SIZE, TILE_SIZE, 3] uint8 centred on 128: fine grain, grain, blotches.

    Built once per process from a fixed seed; scenes crop them at random offsets (cheap slicing
    instead of drawing ~1M normals per image).
    """
    rng = stream_rng("synthetic_textures")
    base = rng.normal(0, 1, (TILE_SIZE, TILE_SIZE, 3)).astype(np.float32)
    tiles = []
    for sigma in (0, 1.5, 5.0):
        t = cv2.GaussianBlur(base, (0, 0), sigma) if sigma else base
        t = t / (t.std() + 1e-6) * 45 + 128
        tiles.append(np.clip(t, 0, 255).astype(np.uint8))
    return tuple(tiles)


def _pt(z: complex) -> Tuple[int, int]:
    return int(round(z.real * _F)), int(round(z.imag * _F))


def _pts(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a, np.float64) * _F).astype(np.int32).reshape(-1, 1, 2)


@lru_cache(maxsize=4096)
def _scaled(col, k: float, add: float = 0.0) -> Tuple[int, int, int]:
    return tuple(int(min(255.0, max(0.0, v * k + add))) for v in col)


def _ellipse_points(center: complex, axes, angle_deg: float, n: int = 16, t0: float = 0.0,
                    t1: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=t1 - t0 < 2 * math.pi - 1e-9)
    z = center + (axes[0] * np.cos(t) + 1j * axes[1] * np.sin(t)) * cmath.exp(1j * math.radians(angle_deg))
    return np.stack([z.real, z.imag], 1)


def draw_limb(img: np.ndarray, p0: complex, p1: complex, thick: int, col, light: complex) -> None:
    """A shaded cylinder: dark body, mid tone and highlight shifted towards the light."""
    d = p1 - p0
    n = (d / abs(d) * 1j) if abs(d) > 1e-6 else 1j
    off = n * (1 if (n.conjugate() * light).real > 0 else -1) * thick * 0.18
    cv2.line(img, _pt(p0), _pt(p1), _scaled(col, 0.55), thick, cv2.LINE_AA, _SHIFT)
    cv2.line(img, _pt(p0 + off), _pt(p1 + off), col, max(1, int(thick * 0.55)), cv2.LINE_AA, _SHIFT)
    if thick >= 4:
        cv2.line(img, _pt(p0 + 1.8 * off), _pt(p1 + 1.8 * off), _scaled(col, 0.6, 100),
                 max(1, int(thick * 0.18)), cv2.LINE_AA, _SHIFT)


def _draw_prim(img: np.ndarray, lab: np.ndarray | None, prim: tuple, label: int, light: complex) -> None:
    kind = prim[0]
    if kind == "limb":
        _, _, p0, p1, thick, col = prim
        draw_limb(img, p0, p1, thick, col, light)
        if lab is not None:
            cv2.line(lab, _pt(p0), _pt(p1), label, thick, cv2.LINE_8, _SHIFT)
    elif kind == "poly":
        _, _, pts, col, pad = prim
        pad = max(1, int(round(pad)))
        cv2.fillPoly(img, [_pts(pts)], _scaled(col, 0.6), cv2.LINE_AA, _SHIFT)
        cv2.polylines(img, [_pts(pts)], True, _scaled(col, 0.6), pad, cv2.LINE_AA, _SHIFT)
        ctr = pts.mean(0)
        shift = np.array([light.real, light.imag]) * pad * 0.3
        cv2.fillPoly(img, [_pts((pts - ctr) * 0.8 + ctr + shift)], col, cv2.LINE_AA, _SHIFT)
        if lab is not None:
            cv2.fillPoly(lab, [_pts(pts)], label, cv2.LINE_8, _SHIFT)
            cv2.polylines(lab, [_pts(pts)], True, label, pad, cv2.LINE_8, _SHIFT)
    elif kind == "ellipse":
        _, _, c, axes, ang, col = prim
        ax = (max(1, int(round(axes[0] * _F))), max(1, int(round(axes[1] * _F))))
        cv2.ellipse(img, _pt(c), ax, ang, 0, 360, _scaled(col, 0.7), -1, cv2.LINE_AA, _SHIFT)
        if min(axes) >= 3:
            inner = (int(ax[0] * 0.8), int(ax[1] * 0.8))
            cv2.ellipse(img, _pt(c + light * min(axes) * 0.15), inner, ang, 0, 360, col, -1,
                        cv2.LINE_AA, _SHIFT)
        if lab is not None:
            cv2.ellipse(lab, _pt(c), ax, ang, 0, 360, label, -1, cv2.LINE_8, _SHIFT)
    elif kind == "cap":  # hair: the top of the head ellipse above a chord through the forehead
        _, _, c, axes, ang, col = prim
        pts = _ellipse_points(c, axes, ang, 14, math.pi + 0.45, 2 * math.pi - 0.45)
        cv2.fillPoly(img, [_pts(pts)], col, cv2.LINE_AA, _SHIFT)


def _outline(prims: List[tuple]) -> np.ndarray:
    """Points [K, 2] float32 whose convex hull contains everything the labelled primitives paint."""
    centers, radii, ell = [], [], []
    for p in prims:
        if p[1] is None:
            continue
        if p[0] == "limb":
            centers += [p[2], p[3]]
            radii += [p[4] / 2, p[4] / 2]
        elif p[0] == "poly":
            centers += list(p[2][:, 0] + 1j * p[2][:, 1])
            radii += [max(1.0, p[4]) / 2] * len(p[2])
        else:
            ell.append((p[2], p[3][0], p[3][1], math.radians(p[4])))
    z = (np.array(centers)[:, None] + np.array(radii)[:, None] * _OCT[None]).ravel()
    if ell:
        c, ax, ay, ang = (np.array(v) for v in zip(*ell))
        local = ax[:, None] * _UNIT.real + 1j * ay[:, None] * _UNIT.imag
        ze = c[:, None] + local * np.exp(1j * ang)[:, None]
        z = np.concatenate([z, ze.ravel()])
    return np.stack([z.real, z.imag], 1).astype(np.float32)


def _draw_occluder(img: np.ndarray, lab: np.ndarray, occ: Dict) -> None:
    pts = occ["points"]
    cv2.fillPoly(img, [_pts(pts)], occ["color"], cv2.LINE_AA, _SHIFT)
    ctr = pts.mean(0)
    cv2.fillPoly(img, [_pts((pts - ctr) * occ["inner"] + ctr)], occ["color2"], cv2.LINE_AA, _SHIFT)
    for a, b in occ["chords"]:  # texture strokes between outline vertices stay inside (convex)
        cv2.line(img, _pt(complex(*pts[a])), _pt(complex(*pts[b])), occ["color3"], occ["chord_w"],
                 cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(lab, [_pts(pts)], OCCLUDER_LABEL, cv2.LINE_8, _SHIFT)


def render_background(bg: Dict, width: int, height: int, light: complex) -> np.ndarray:
    """Smooth colour field + cropped noise texture + random shapes + limb-like strokes, [H, W, 3]."""
    # Cubic up to 1/8 size then linear to full size: smooth, and far cheaper than one float cubic.
    small = cv2.resize(bg["low"], (max(2, width // 8), max(2, height // 8)), interpolation=cv2.INTER_CUBIC)
    small = np.clip(small, 0, 255).astype(np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    ox, oy = bg["offset"]
    tile = noise_tiles()[bg["tile"]][oy:oy + height, ox:ox + width]
    img = cv2.addWeighted(img, 1.0, tile, bg["amp"], -128.0 * bg["amp"])
    for kind, geom, col, thick in bg["shapes"]:
        if kind == "poly":
            cv2.fillPoly(img, [_pts(geom)], col, cv2.LINE_AA, _SHIFT)
        elif kind == "outline":
            cv2.polylines(img, [_pts(geom)], True, col, thick, cv2.LINE_AA, _SHIFT)
        else:  # "line"
            cv2.line(img, _pt(complex(*geom[0])), _pt(complex(*geom[1])), col, thick, cv2.LINE_AA, _SHIFT)
    for pts, thick, col, ball in bg["strokes"]:
        for a, b in zip(pts[:-1], pts[1:]):
            draw_limb(img, a, b, thick, col, light)
        if ball is not None:
            _draw_prim(img, None, ("ellipse", None, pts[0], (ball, ball * 1.2), 0.0, bg["ball_color"]),
                       0, light)
    return img


def render_scene(scene: Dict) -> Tuple[np.ndarray, List[Dict]]:
    """Image [H, W, 3] uint8 BGR and one dict per person, in drawing order.

    Person dict: "joints" float64 [24, 2] (UNION order, pixels, unclipped), "vis" int [24] in
    {0, 1, 2}, "hull" float [K, 2] (convex hull of the drawing clipped to the image; K = 0 when the
    person is outside), "area" float (hull area), "bbox" [x, y, w, h] (bounds of the clipped hull).
    """
    img, people, _ = render_bodies(scene, [build_person(spec) for spec in scene["persons"]],
                                   PARTS, JOINT_PART_OK)
    return img, people


def render_bodies(scene: Dict, built: Sequence[Tuple[np.ndarray, List[tuple], np.ndarray]],
                  parts: Sequence[str], joint_part_ok: np.ndarray
                  ) -> Tuple[np.ndarray, List[Dict], np.ndarray]:
    """Render a scene whose bodies are already built, of any body plan.

    ``built`` holds (joints [J, 2], primitives, forced visibility [J]) per body, far to near, as
    ``build_person`` returns them; ``parts`` names the body plan's parts (at most 16) and
    ``joint_part_ok`` [J, len(parts)] says which of its own parts may cover each joint. Returns
    the image, one dict per body (see ``render_scene``) and the label map [H, W] uint16 (0 =
    background, OCCLUDER_LABEL, else 1 + body * 16 + part index).
    """
    w, h = scene["width"], scene["height"]
    light = cmath.exp(1j * scene["light"])
    img = render_background(scene["background"], w, h, light)
    lab = np.zeros((h, w), np.uint16)
    for i, (_, prims, _) in enumerate(built):
        base = 1 + i * _LABELS_PER_PERSON
        for prim in prims:
            part = prim[1]
            _draw_prim(img, None if part is None else lab, prim,
                       0 if part is None else base + parts.index(part), light)
    for occ in scene["occluders"]:
        _draw_occluder(img, lab, occ)
    bodies = [_annotate(i, joints, prims, forced, lab, len(parts), joint_part_ok)
              for i, (joints, prims, forced) in enumerate(built)]
    return _camera(img, scene["camera"]), bodies, lab


def _annotate(index: int, joints: np.ndarray, prims: List[tuple], forced: np.ndarray,
              lab: np.ndarray, num_parts: int, joint_part_ok: np.ndarray) -> Dict:
    h, w = lab.shape
    x, y = joints[:, 0], joints[:, 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    ix = np.clip(np.rint(x), 0, w - 1).astype(np.int64)
    iy = np.clip(np.rint(y), 0, h - 1).astype(np.int64)
    top = lab[iy, ix].astype(np.int64) - 1
    own = (top >= 0) & (top // _LABELS_PER_PERSON == index) & (top != OCCLUDER_LABEL - 1)
    part = np.clip(top % _LABELS_PER_PERSON, 0, num_parts - 1)
    ok = own & joint_part_ok[np.arange(len(joints)), part]
    vis = np.where(inside, np.where(ok, 2, 1), 0)
    vis = np.where(forced == 0, 0, np.where((forced == 1) & inside, 1, vis))
    hull = cv2.convexHull(_outline(prims))
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    area, clipped = cv2.intersectConvexConvex(hull, frame)
    clipped = np.zeros((0, 2)) if clipped is None or area <= 0 else clipped.reshape(-1, 2).astype(np.float64)
    if len(clipped):
        lo, hi = clipped.min(0), clipped.max(0)
        bbox = [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    return {"joints": joints, "vis": vis.astype(np.int64), "hull": clipped, "area": float(max(area, 0.0)),
            "bbox": bbox}


def _camera(img: np.ndarray, cam: Dict) -> np.ndarray:
    """Exposure change, sensor noise and mild defocus blur."""
    img = cv2.convertScaleAbs(img, alpha=cam["gain"], beta=cam["bias"])
    h, w = img.shape[:2]
    ox, oy = cam["offset"]
    img = cv2.addWeighted(img, 1.0, noise_tiles()[0][oy:oy + h, ox:ox + w], cam["noise"],
                          -128.0 * cam["noise"])
    if cam["blur"] > 0:
        img = cv2.GaussianBlur(img, (5, 5), cam["blur"])
    return img

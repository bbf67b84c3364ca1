"""Second body plan of the synthetic generator: a four-legged animal seen from the side.

The joints are those of ``metas/quadruped.yaml`` (16: nose, eyes, ears, withers, tail base and
tip, knee and paw of each leg), in its order. Geometry is computed with complex numbers (x + 1j*y,
y pointing down) in a canonical frame whose unit is the animal's size (``spec["height"]``, pixels;
withers to tail base is about 0.8) and in which the animal heads towards +x. An animal heading
left is the mirror image of that frame.

Chirality: an animal heading right shows the camera its right side (its left side faces away), an
animal heading left its left side. The near-side legs, ear and eye are drawn in front of the body
in the coat colour, the far-side ones behind it and darker, so left and right follow from the
heading and the shading, and a horizontal mirror of a scene is the scene of the mirrored spec
(``mirror_spec``) with exactly the description's flip pairs swapped.

Scenes reuse the people generator's backgrounds, occluders and camera effects
(``synthetic_scene``) and its renderer (``synthetic_render.render_bodies``); one animal per image,
as in a single-animal DeepLabCut project.
"""
from __future__ import annotations

import cmath
import math
import os
from typing import Callable, Dict, List, Tuple

import numpy as np

from semipose.data.meta import METAS_DIR, DatasetMeta, dataset_meta
from semipose.data.synthetic_body import Draws, _clip, _hsv_to_bgr
from semipose.data.synthetic_render import TILE_SIZE, render_bodies
from semipose.data.synthetic_scene import _background, _occluders
from semipose.errors import ConfigError

DESCRIPTION = os.path.join(METAS_DIR, "quadruped.yaml")
META: DatasetMeta = dataset_meta(DESCRIPTION)
NAMES = META.names
_J = {n: i for i, n in enumerate(NAMES)}

# Body parts in the label map (at most 16). Sides are the animal's: "l" left, "r" right;
# legs "lf" left front, "rh" right hind, ...
PARTS = ("torso", "neck", "head", "tail", "l_ear", "r_ear", "lf_upper", "lf_lower", "rf_upper",
         "rf_lower", "lh_upper", "lh_lower", "rh_upper", "rh_lower")
_JOINT_PARTS = {"nose": ("head",), "left_eye": ("head",), "right_eye": ("head",),
                "left_ear": ("l_ear",), "right_ear": ("r_ear",), "withers": ("torso", "neck"),
                "tail_base": ("torso", "tail"), "tail_tip": ("tail",)}
for _s, _side in (("l", "left"), ("r", "right")):
    for _e, _end in (("f", "front"), ("h", "hind")):
        _JOINT_PARTS[f"{_side}_{_end}_knee"] = (f"{_s}{_e}_upper", f"{_s}{_e}_lower")
        _JOINT_PARTS[f"{_side}_{_end}_paw"] = (f"{_s}{_e}_lower",)
# JOINT_PART_OK[j, k]: part k of the same animal may cover joint j (the joint is then visible).
JOINT_PART_OK = np.zeros((len(NAMES), len(PARTS)), bool)
for _n, _parts in _JOINT_PARTS.items():
    for _p in _parts:
        JOINT_PART_OK[_J[_n], PARTS.index(_p)] = True

# Proportions in units of the animal's size (canonical frame, heading +x, y down).
_TORSO_C, _TORSO_AX = 0.15j, (0.56, 0.19)  # torso ellipse centre and semi-axes
_WITHERS, _TAIL_BASE, _NECK_BASE = 0.30 + 0.0j, -0.50 + 0.10j, 0.40 + 0.07j
_SHOULDER, _HIP = 0.34 + 0.22j, -0.36 + 0.20j
_FAR = 0.03 - 0.025j  # far-side legs attach a little forward and higher (seen past the body)
_NECK_LEN, _HEAD_AX, _SNOUT = 0.30, (0.12, 0.085), 0.21
_FRONT = (0.26, 0.27)  # upper, lower leg lengths
_HIND = (0.28, 0.27)
_THICK = {"neck": 0.15, "snout": 0.085, "tail": 0.05, "upper": 0.085, "lower": 0.055}
_FAR_SHADE = 0.62
FAR_EYE_YAW = 0.35  # a head turned at least this far towards the camera shows the far eye
SIDE = {"l": "left", "r": "right"}
# Walk gait (lateral sequence): phase offsets of the near hind, near front, far hind, far front.
_GAIT = {"nh": 0.0, "nf": 0.25, "fh": 0.5, "ff": 0.75}
LEG_LENGTH = 0.53  # shoulder to paw, about: what one stride moves the body by (render_clip)

# Scene presets (same names as the people's): image size, clutter and occluders. One animal each.
PRESETS: Dict[str, Dict] = {
    "standard": {"min_size": (320, 240), "max_size": (640, 480), "shapes": (6, 22),
                 "strokes": (1, 7), "occluders_p": (0.45, 0.35, 0.2)},
    "light": {"min_size": (192, 144), "max_size": (320, 240), "shapes": (2, 8), "strokes": (0, 2),
              "occluders_p": (0.7, 0.3)},
}


def scene_preset(name: str) -> Dict:
    if name not in PRESETS:
        raise ConfigError(f"unknown synthetic quadruped scene preset {name!r}; use one of "
                          f"{sorted(PRESETS)}")
    return PRESETS[name]


def walk_legs(phase: float, stride: float, lift: float) -> Dict[str, float]:
    """Leg angles of a walk at ``phase`` (cycles): swing (radians, forward > 0) and flex (>= 0,
    the lower leg folds while the leg swings forward), per leg nf / ff / nh / fh."""
    out = {}
    for leg, off in _GAIT.items():
        t = 2 * math.pi * (phase + off)
        out[leg + "_swing"] = stride * math.sin(t)
        out[leg + "_flex"] = lift * max(0.0, math.cos(t))
    return out


def sample_pose(d: Draws) -> Dict[str, float]:
    """Head, neck, tail and ear angles, and a leg pose: a walk at a random phase (70 %) or
    independent leg angles."""
    pose = {"neck": _clip(d.n(0, 0.2), -0.6, 0.7), "head": _clip(d.n(0.35, 0.25), -0.3, 1.1),
            "yaw": d.u(0.0, 0.9) if d.u() < 0.35 else 0.0, "ears": d.u(-0.3, 0.4),
            "tail": d.u(-0.7, 0.9), "curl": d.n(0, 0.5)}
    if d.u() < 0.7:
        pose.update(walk_legs(d.u(), d.u(0.15, 0.5), d.u(0.2, 0.9)))
    else:
        for leg in _GAIT:
            pose[leg + "_swing"] = _clip(d.n(0, 0.3), -0.8, 0.8)
            pose[leg + "_flex"] = d.u(0.0, 1.2)
    return pose


def sample_colors(d: Draws) -> Dict[str, Tuple[int, int, int]]:
    kind = d.pick((0.45, 0.3, 0.15, 0.1))  # brown / ginger, grey, dark, light coats
    if kind == 0:
        coat = _hsv_to_bgr(d.u(4, 24), d.u(90, 220), d.u(70, 215))
    elif kind == 1:
        coat = _hsv_to_bgr(d.u(0, 180), d.u(0, 30), d.u(80, 200))
    elif kind == 2:
        coat = _hsv_to_bgr(d.u(0, 180), d.u(0, 60), d.u(35, 75))
    else:
        coat = _hsv_to_bgr(d.u(0, 180), d.u(0, 45), d.u(200, 245))
    paw = tuple(int(_clip(v * d.u(0.55, 0.85), 0, 255)) for v in coat)
    return {"coat": coat, "paw": paw, "ear": tuple(int(v * 0.85) for v in coat),
            "nose": tuple(int(d.u(20, 60)) for _ in range(3))}


def sample_quadruped(d: Draws, width: int, height: int) -> Dict:
    """A quadruped spec: pose, size, placement in a width x height image, heading, colours."""
    size = min(width * math.exp(d.u(math.log(0.2), math.log(0.45))), 0.8 * height)
    if d.u() < 0.12:  # at an image border, partly out of frame
        x = (d.u(-0.05, 0.12) if d.u() < 0.5 else d.u(0.88, 1.05)) * width
    else:
        x = d.u(0.25, 0.75) * width
    top, bottom = 0.45 * size, height - 0.85 * size  # ear tips and paws inside, about
    y = d.u(top, bottom) if bottom > top else 0.5 * height
    rot = d.n(0, 0.12) if d.u() < 0.95 else d.u(-0.8, 0.8)
    return {"pose": sample_pose(d), "height": size, "anchor": (x, y), "rotation": rot,
            "facing": 1 if d.u() < 0.5 else -1,
            "scale": [d.u(0.9, 1.1) for _ in range(5)],  # body, legs, neck, head, tail
            "colors": sample_colors(d)}


def mirror_spec(spec: Dict, width: int) -> Dict:
    """The spec whose drawing is ``spec``'s mirrored about the vertical centre line of an image
    ``width`` pixels wide (x -> width - 1 - x): the other heading, the opposite rotation."""
    out = dict(spec)
    x, y = spec["anchor"]
    out.update(anchor=(width - 1 - x, y), rotation=-spec["rotation"], facing=-spec["facing"])
    return out


def build_quadruped(spec: Dict) -> Tuple[np.ndarray, List[tuple], np.ndarray]:
    """Joints [16, 2] (description order, pixels), drawing primitives and forced visibility [16].

    Primitives as ``synthetic_body.build_person`` makes them ("limb" and "ellipse", with part
    None for decorations: eyes and the nose tip). Forced visibility: -1 free, 0 unlabeled (the
    far eye of a head in profile, hidden behind it).
    """
    p = spec["pose"]
    k_body, k_leg, k_neck, k_head, k_tail = spec["scale"]
    size = spec["height"]
    rot = cmath.exp(1j * spec["rotation"])
    t0 = complex(*spec["anchor"])
    mirror = spec["facing"] < 0
    near, far = ("l", "r") if mirror else ("r", "l")

    def px(z: complex) -> complex:  # canonical -> image pixels
        return (-z.conjugate() if mirror else z) * rot * size + t0

    z: Dict[str, complex] = {"withers": _WITHERS * k_body, "tail_base": _TAIL_BASE * k_body}
    neck_dir = cmath.exp(-1j * (0.9 + p["neck"]))  # up and forward
    head_c = _NECK_BASE * k_body + neck_dir * _NECK_LEN * k_neck
    hd = cmath.exp(1j * p["head"])  # the snout's direction
    hu = -1j * hd  # the head's up
    z["nose"] = head_c + hd * _SNOUT * k_head
    s = math.sin(p["yaw"])  # the head turned towards the camera shows the far eye
    eye = head_c + (hd * 0.03 + hu * 0.035) * k_head
    z[SIDE[near] + "_eye"] = eye - hd * 0.02 * s * k_head
    z[SIDE[far] + "_eye"] = eye + (hd * 0.035 * s + hu * 0.005) * k_head
    ear_up = hu * cmath.exp(-1j * p["ears"])
    z[SIDE[near] + "_ear"] = head_c + (-hd * 0.05 + ear_up * 0.105) * k_head
    z[SIDE[far] + "_ear"] = head_c + (-hd * (0.09 - 0.03 * s) + ear_up * 0.095) * k_head
    tail_dir = -cmath.exp(1j * p["tail"])  # backwards, raised for tail > 0
    tail_mid = z["tail_base"] + tail_dir * 0.2 * k_tail
    z["tail_tip"] = tail_mid + tail_dir * cmath.exp(1j * p["curl"]) * 0.2 * k_tail
    legs = {}
    for side, leg in ((near, "n"), (far, "f")):
        off = _FAR if leg == "f" else 0j
        # front: upper leg from the shoulder, the lower leg folds backwards when flexed
        base = _SHOULDER * k_body + off
        d1 = 1j * cmath.exp(-1j * p[leg + "f_swing"])
        knee = base + d1 * _FRONT[0] * k_leg
        paw = knee + d1 * cmath.exp(1j * p[leg + "f_flex"]) * _FRONT[1] * k_leg
        legs[side + "f"] = (base, knee, paw)
        # hind: the upper leg slants back to the hock, the lower leg stands forward of it
        base = _HIP * k_body + off
        d1 = 1j * cmath.exp(-1j * (p[leg + "h_swing"] - 0.35))
        knee = base + d1 * _HIND[0] * k_leg
        paw = knee + d1 * cmath.exp(-1j * (0.45 - 0.9 * p[leg + "h_flex"])) * _HIND[1] * k_leg
        legs[side + "h"] = (base, knee, paw)
    for key, (_, knee, paw) in legs.items():
        name = SIDE[key[0]] + ("_front" if key[1] == "f" else "_hind")
        z[name + "_knee"], z[name + "_paw"] = knee, paw

    P = {k: px(v) for k, v in z.items()}
    joints = np.array([[P[n].real, P[n].imag] for n in NAMES], np.float64)
    forced = np.full(len(NAMES), -1, np.int8)
    far_eye = p["yaw"] >= FAR_EYE_YAW
    if not far_eye:
        forced[_J[SIDE[far] + "_eye"]] = 0
    geo = {"head_c": px(head_c), "hd": hd, "hu": hu, "ear_up": ear_up, "tail_mid": px(tail_mid),
           "legs": {k: tuple(px(v) for v in pts) for k, pts in legs.items()}}
    return joints, _primitives(P, geo, spec, near, far, far_eye, px), forced


def _primitives(P: Dict[str, complex], geo: Dict, spec: Dict, near: str, far: str,
                far_eye: bool, px: Callable[[complex], complex]) -> List[tuple]:
    """Drawing list, far to near: far legs and ear, tail, torso, neck, head, near ear, face,
    near legs."""
    c, size = spec["colors"], spec["height"]
    k_body, k_leg, k_neck, k_head, k_tail = spec["scale"]

    def th(kind: str, k: float = 1.0) -> int:
        return max(1, int(round(_THICK[kind] * k * size)))

    def shade(col: Tuple[int, int, int], k: float) -> Tuple[int, ...]:
        return tuple(int(v * k) for v in col)

    def angle(a: complex, b: complex) -> float:  # image angle (degrees) of the canonical a -> b
        d = px(b) - px(a)
        return math.degrees(math.atan2(d.imag, d.real))

    def leg(key: str, k: float) -> List[tuple]:
        base, knee, paw = geo["legs"][key]
        coat, paw_col = shade(c["coat"], k), shade(c["paw"], k)
        fwd = px(1.0) - px(0.0)
        fwd /= abs(fwd)
        foot = (0.05 * k_leg * size, 0.028 * k_leg * size)
        return [("limb", key + "_upper", base, knee, th("upper"), coat),
                ("limb", key + "_lower", knee, paw, th("lower"), coat),
                ("ellipse", key + "_lower", paw + fwd * 0.02 * size, foot,
                 math.degrees(math.atan2(fwd.imag, fwd.real)), paw_col)]

    def ear(side: str, k: float) -> tuple:
        axes = (0.06 * k_head * size, 0.032 * k_head * size)  # long along the ear's up
        return ("ellipse", side + "_ear", P[SIDE[side] + "_ear"], axes, angle(0j, geo["ear_up"]),
                shade(c["ear"], k))

    head_c = geo["head_c"]
    hd_ang = angle(0j, geo["hd"])
    ax = (_TORSO_AX[0] * k_body * size, _TORSO_AX[1] * k_body * size)
    far_parts = leg(far + "h", _FAR_SHADE) + leg(far + "f", _FAR_SHADE) + [ear(far, _FAR_SHADE)]
    body = [("limb", "tail", P["tail_base"], geo["tail_mid"], th("tail", k_tail), c["coat"]),
            ("limb", "tail", geo["tail_mid"], P["tail_tip"], th("tail", 0.7 * k_tail), c["coat"]),
            ("ellipse", "torso", px(_TORSO_C * k_body), ax, angle(0j, 1.0), c["coat"]),
            ("limb", "neck", px(_NECK_BASE * k_body), head_c, th("neck", k_neck), c["coat"]),
            ("ellipse", "head", head_c, (_HEAD_AX[0] * k_head * size, _HEAD_AX[1] * k_head * size),
             hd_ang, c["coat"]),
            ("limb", "head", head_c, P["nose"], th("snout", k_head), c["coat"])]
    eye_r = max(1.0, 0.018 * k_head * size)
    face = [ear(near, 1.0),
            ("ellipse", None, P["nose"], (1.3 * eye_r, eye_r), hd_ang, c["nose"]),
            ("ellipse", None, P[SIDE[near] + "_eye"], (eye_r, eye_r), 0.0, (20, 20, 20))]
    if far_eye:
        face.append(("ellipse", None, P[SIDE[far] + "_eye"], (0.8 * eye_r, eye_r), 0.0,
                     (20, 20, 20)))
    return far_parts + body + face + leg(near + "h", 1.0) + leg(near + "f", 1.0)


def sample_scene(rng: np.random.Generator, preset: str = "standard") -> Dict:
    """A random scene with one quadruped: background and occluders as in the people scenes."""
    p = scene_preset(preset)
    d = Draws(rng)
    (w0, h0), (w1, h1) = p["min_size"], p["max_size"]
    w, h = d.i(w0, w1 + 1), d.i(h0, h1 + 1)
    bg = _background(d, w, h, p)
    animals = [sample_quadruped(d, w, h)]
    return {
        "width": w, "height": h, "light": d.u(0, 2 * math.pi), "background": bg,
        "animals": animals, "occluders": _occluders(d, w, h, animals, p, build=build_quadruped),
        "camera": sample_camera(d, w, h),
    }


def sample_camera(d: Draws, w: int, h: int) -> Dict:
    """Exposure, sensor noise and defocus of one image (as the people scenes draw them)."""
    return {"gain": d.u(0.8, 1.15), "bias": d.u(-20, 20), "noise": d.u(0.02, 0.12),
            "offset": (d.i(0, TILE_SIZE - w + 1), d.i(0, TILE_SIZE - h + 1)),
            "blur": d.u(0.4, 1.1) if d.u() < 0.7 else 0.0}


def render_scene(scene: Dict) -> Tuple[np.ndarray, List[Dict], np.ndarray]:
    """Image, one dict per animal (as ``synthetic_render.render_scene`` gives per person, with
    joints [16, 2] in description order) and the label map."""
    built = [build_quadruped(spec) for spec in scene["animals"]]
    return render_bodies(scene, built, PARTS, JOINT_PART_OK)

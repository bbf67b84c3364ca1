"""Articulated 2D body model of the synthetic people generator.

Geometry is computed with Python complex numbers (x + 1j*y, image convention: y points down), in a
canonical body frame whose unit is the standing height of the person and in which the person's left
is +x for a person facing the camera (so, as in a photo, their left side appears on the image's
right). A person seen from the back is the mirror image of that frame; the face is then not drawn
and nose/eyes are unlabeled. This front/back chirality is what makes left and right learnable under
horizontal-flip augmentation; the warm (left) / cool (right) clothing tint is an extra, weaker cue.

``build_person(spec)`` returns the joints in the UNION order of ``semipose.data.keypoints`` (so COCO,
MPII and AIC views are plain index maps), the primitives to draw, and per-joint forced visibility.
"""
from __future__ import annotations

import cmath
import math
from typing import Dict, List, Tuple

import numpy as np

from semipose.data.keypoints import UNION

PARTS = ("torso", "neck", "head", "l_uarm", "l_farm", "r_uarm", "r_farm",
         "l_thigh", "l_shin", "r_thigh", "r_shin")
PART_ID = {p: i for i, p in enumerate(PARTS)}

# Which of its own parts may be on top of a joint's pixel for the joint to count as visible.
_JOINT_PARTS = {
    "root": ("torso", "l_thigh", "r_thigh"), "belly": ("torso",), "thorax": ("torso", "neck"),
    "neck": ("torso", "neck", "head"), "upper_neck": ("neck", "head"),
    "lhip": ("torso", "l_thigh"), "rhip": ("torso", "r_thigh"),
    "lkne": ("l_thigh", "l_shin"), "rkne": ("r_thigh", "r_shin"),
    "lank": ("l_shin",), "rank": ("r_shin",),
    "lsho": ("torso", "l_uarm"), "rsho": ("torso", "r_uarm"),
    "lelb": ("l_uarm", "l_farm"), "relb": ("r_uarm", "r_farm"),
    "lwri": ("l_farm",), "rwri": ("r_farm",),
}
# JOINT_PART_OK[j, k]: part k of the same person may cover union joint j. Head keypoints -> "head".
JOINT_PART_OK = np.zeros((UNION.num_joints, len(PARTS)), bool)
for _j, _name in enumerate(UNION.names):
    for _p in _JOINT_PARTS.get(_name, ("head",)):
        JOINT_PART_OK[_j, PART_ID[_p]] = True

_U = {n: i for i, n in enumerate(UNION.names)}

# Body proportions in units of the standing height.
_SPINE, _HIP_W, _SHO_W, _NECK_BASE, _NECK = 0.30, 0.085, 0.115, 0.025, 0.045
_HEAD_RH, _HEAD_RW = 0.066, 0.053
HEAD_ASPECT = _HEAD_RW / _HEAD_RH  # head ellipse width / height
_UARM, _FARM, _THIGH, _SHIN, _FOOT, _HAND = 0.165, 0.145, 0.235, 0.235, 0.055, 0.022
_THICK = {"torso": 0.035, "neck": 0.045, "l_uarm": 0.05, "l_farm": 0.042, "l_thigh": 0.068,
          "l_shin": 0.055}

# OpenCV hue (0..180) ranges of the side cue: warm left, cool right.
_WARM_HUES, _COOL_HUES = (-12, 22), (92, 128)
_SKIN = ((180, 200, 240), (140, 175, 225), (105, 140, 195), (70, 100, 150), (45, 65, 105))


def _hsv_to_bgr(h: float, s: float, v: float) -> Tuple[int, int, int]:
    """One OpenCV-convention HSV colour (h in 0..180) -> BGR ints, without an image round trip."""
    h6 = (h % 180.0) / 30.0
    i, f = int(h6) % 6, h6 - int(h6)
    s, v = s / 255.0, v
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]
    return int(b), int(g), int(r)


class Draws:
    """Uniform and normal numbers drawn from a numpy Generator in blocks.

    Scene sampling needs a few hundred scalars per image; one Generator call per scalar would cost
    more than the drawing itself. The sequence is still a pure function of the Generator's seed.
    """

    def __init__(self, rng: np.random.Generator, block: int = 256):
        self.rng, self.block = rng, block
        self._u: List[float] = []
        self._n: List[float] = []

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if not self._u:
            self._u = self.rng.random(self.block).tolist()
        return lo + (hi - lo) * self._u.pop()

    def n(self, mu: float = 0.0, sd: float = 1.0) -> float:
        if not self._n:
            self._n = self.rng.standard_normal(self.block).tolist()
        return mu + sd * self._n.pop()

    def i(self, lo: int, hi: int) -> int:
        """Integer in [lo, hi)."""
        return min(hi - 1, lo + int(self.u() * (hi - lo)))

    def pick(self, probs: Tuple[float, ...]) -> int:
        r, acc = self.u(), 0.0
        for k, p in enumerate(probs):
            acc += p
            if r < acc:
                return k
        return len(probs) - 1

    def sign(self) -> float:
        return 1.0 if self.u() < 0.5 else -1.0


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def sample_pose(d: Draws) -> Dict[str, float]:
    """Joint angles (radians) within anatomical limits: a natural mode and a wide uniform mode."""
    pose = {"lean": _clip(d.n(0, 0.12), -0.6, 0.6) if d.u() < 0.88 else d.u(-1.0, 1.0),
            "neck": _clip(d.n(0, 0.15), -0.5, 0.5), "yaw": d.u(-0.7, 0.7),
            "width": d.u(0.8, 1.0) if d.u() < 0.7 else d.u(0.4, 0.8)}
    for side in "lr":
        wide = d.u() < 0.35
        pose[side + "_sho"] = d.u(-0.5, 3.0) if wide else _clip(d.n(0.3, 0.3), -0.3, 1.2)
        pose[side + "_elb"] = (d.u(0, 2.5) if wide else min(abs(d.n(0, 0.6)), 2.5)) * d.sign()
        wide = d.u() < 0.25
        pose[side + "_hip"] = d.u(-0.35, 1.5) if wide else _clip(d.n(0.08, 0.12), -0.25, 0.5)
        pose[side + "_kne"] = (d.u(0, 2.2) if wide else min(abs(d.n(0, 0.3)), 2.2)) * d.sign()
        for seg in ("_ua", "_fa", "_th", "_sh"):  # out-of-plane foreshortening
            pose[side + seg] = _clip(1 - abs(d.n(0, 0.12)), 0.55, 1.0)
    return pose


def sample_person(d: Draws, width: int, height: int) -> Dict:
    """A person spec: pose, placement in a width x height image, proportions and colours."""
    h_px = height * math.exp(d.u(math.log(0.3), math.log(1.05)))
    if d.u() < 0.15:  # deliberately at an image border, partly out of frame
        x = (d.u(-0.1, 0.08) if d.u() < 0.5 else d.u(0.92, 1.1)) * width
    else:
        x = d.u(0.08, 0.92) * width
    y = d.u(0.3, 0.8) * height + d.n(0, 0.1) * h_px
    rot = d.n(0, 0.25) if d.u() < 0.93 else d.u(-math.pi, math.pi)
    skin = _SKIN[d.i(0, len(_SKIN))]
    return {
        "pose": sample_pose(d), "height": h_px, "pelvis": (x, y), "rotation": rot,
        "facing": 1 if d.u() < 0.75 else -1,
        "scale": [d.u(0.92, 1.08) for _ in range(5)],  # spine, arms, legs, head, width
        "colors": {
            "l_arm": _hsv_to_bgr(d.u(*_WARM_HUES), d.u(140, 255), d.u(140, 255)),
            "r_arm": _hsv_to_bgr(d.u(*_COOL_HUES), d.u(140, 255), d.u(140, 255)),
            "l_leg": _hsv_to_bgr(d.u(*_WARM_HUES), d.u(140, 255), d.u(110, 205)),
            "r_leg": _hsv_to_bgr(d.u(*_COOL_HUES), d.u(140, 255), d.u(110, 205)),
            "torso": _hsv_to_bgr(d.u(0, 180), d.u(0, 120), d.u(60, 230)),
            "pants": _hsv_to_bgr(d.u(0, 180), d.u(0, 90), d.u(30, 150)),
            "skin": tuple(int(_clip(v + d.n(0, 10), 0, 255)) for v in skin),
            "hair": tuple(int(d.u(10, 90)) for _ in range(3)),
        },
    }


def build_person(spec: Dict) -> Tuple[np.ndarray, List[tuple], np.ndarray]:
    """Joints [24, 2] (UNION order, pixels), drawing primitives and forced visibility [24].

    Primitives, in drawing order: ("limb", part, p0, p1, thickness_px, bgr), ("poly", part,
    points [K, 2], bgr, outline_px), ("ellipse", part, center, (ax, ay), angle_deg, bgr) and, with
    part None, decorations inside the head (face, "cap" of hair). Points are complex x + 1j*y.
    Forced visibility: -1 free, 0 unlabeled (face seen from the back), 1 occluded (hidden ear).
    """
    p = spec["pose"]
    k_sp, k_arm, k_leg, k_head, k_w = spec["scale"]
    rot = cmath.exp(1j * spec["rotation"])
    hpx = spec["height"]
    t0 = complex(*spec["pelvis"])
    mirror = spec["facing"] < 0
    w = p["width"] * k_w

    def px(z: complex) -> complex:  # canonical -> image pixels
        return (-z.conjugate() if mirror else z) * rot * hpx + t0

    up = cmath.exp(1j * p["lean"]) * -1j
    lat = up * 1j  # the person's left, canonical frame
    up_p = cmath.exp(1j * 0.3 * p["lean"]) * -1j
    j: Dict[str, complex] = {"root": 0j}
    j["lhip"], j["rhip"] = (s * up_p * 1j * _HIP_W * w - 0.02 * up_p for s in (1, -1))
    smid = up * _SPINE * k_sp
    j["thorax"], j["belly"] = smid - 0.01 * up, 0.5 * smid
    j["lsho"], j["rsho"] = (smid + s * lat * _SHO_W * w for s in (1, -1))
    j["neck"] = smid + up * _NECK_BASE
    up_n = up * cmath.exp(1j * p["neck"])
    lat_n = up_n * 1j
    rh, rw = _HEAD_RH * k_head, _HEAD_RW * k_head
    j["upper_neck"] = j["neck"] + up_n * _NECK
    j["head"] = j["upper_neck"] + up_n * rh
    j["head_top"] = j["head"] + up_n * rh
    f = math.sin(p["yaw"]) * rw * 0.55  # face shift towards where the head is turned
    for s, side in ((1, "l"), (-1, "r")):
        j[side + "eye"] = j["head"] + lat_n * (s * 0.4 * rw * math.cos(p["yaw"]) + f) + up_n * 0.12 * rh
        j[side + "ear"] = j["head"] + lat_n * s * 0.95 * rw * math.cos(p["yaw"])
        u_dir = -up * cmath.exp(-1j * s * p[side + "_sho"])
        j[side + "elb"] = j[side + "sho"] + u_dir * _UARM * k_arm * p[side + "_ua"]
        f_dir = u_dir * cmath.exp(1j * p[side + "_elb"])
        j[side + "wri"] = j[side + "elb"] + f_dir * _FARM * k_arm * p[side + "_fa"]
        t_dir = -up_p * cmath.exp(-1j * s * p[side + "_hip"])
        j[side + "kne"] = j[side + "hip"] + t_dir * _THIGH * k_leg * p[side + "_th"]
        s_dir = t_dir * cmath.exp(1j * p[side + "_kne"])
        j[side + "ank"] = j[side + "kne"] + s_dir * _SHIN * k_leg * p[side + "_sh"]
        j[side + "toe"] = j[side + "ank"] + s_dir * cmath.exp(-1j * s * 1.3) * _FOOT * k_leg
    j["nose"] = j["head"] + lat_n * 1.3 * f - up_n * 0.22 * rh
    j["mouth"] = j["head"] + lat_n * 1.1 * f - up_n * 0.55 * rh

    P = {k: px(v) for k, v in j.items()}
    joints = np.array([[P[n].real, P[n].imag] for n in UNION.names], np.float64)
    forced = np.full(UNION.num_joints, -1, np.int8)
    if mirror:
        forced[[_U["nose"], _U["leye"], _U["reye"]]] = 0
    elif abs(p["yaw"]) > 0.35:
        forced[_U["lear" if p["yaw"] > 0 else "rear"]] = 1
    return joints, _primitives(P, spec, rh * hpx, rw * hpx), forced


def _primitives(P: Dict[str, complex], spec: Dict, rh: float, rw: float) -> List[tuple]:
    """Drawing list for one person (pixels). Arms go in front of the torso when facing the camera."""
    c, hpx, mirror = spec["colors"], spec["height"], spec["facing"] < 0

    def th(part: str) -> int:
        return max(1, int(round(_THICK["l_" + part[2:] if part[:2] in ("l_", "r_") else part] * hpx)))

    def limb(part, a, b, col):
        return ("limb", part, P[a], P[b], th(part), col)

    legs = []
    for s in "lr":
        col = c[s + "_leg"]
        legs += [limb(s + "_thigh", s + "hip", s + "kne", col), limb(s + "_shin", s + "kne", s + "ank", col),
                 ("limb", s + "_shin", P[s + "ank"], P[s + "toe"], th(s + "_shin"), c["pants"])]
    arms = []
    for s in "lr":
        col = c[s + "_arm"]
        arms += [limb(s + "_uarm", s + "sho", s + "elb", col), limb(s + "_farm", s + "elb", s + "wri", col),
                 ("ellipse", s + "_farm", P[s + "wri"], (_HAND * hpx, _HAND * hpx), 0.0, c["skin"])]
    pad = _THICK["torso"] * hpx
    torso = [("poly", "torso", np.array([[z.real, z.imag] for z in (
        P["lsho"], P["rsho"], P["rhip"], P["lhip"])]), c["torso"], pad),
        ("limb", "torso", P["lhip"], P["rhip"], th("l_thigh"), c["pants"]),
        limb("neck", "neck", "upper_neck", c["skin"])]
    ang = math.degrees(math.atan2((P["head_top"] - P["head"]).imag, (P["head_top"] - P["head"]).real)) + 90
    head = [("ellipse", "head", P["head"], (rw, rh), ang, c["hair"] if mirror else c["skin"])]
    ears = [("ellipse", "head", P[e], (0.28 * rw, 0.4 * rh), ang, c["skin"]) for e in ("lear", "rear")]
    if mirror:
        face = []
    else:
        eye = max(1.0, 0.1 * rw)
        face = [("cap", None, P["head"], (rw, rh), ang, c["hair"]),
                ("ellipse", None, P["leye"], (eye, eye), 0.0, (25, 25, 25)),
                ("ellipse", None, P["reye"], (eye, eye), 0.0, (25, 25, 25)),
                ("ellipse", None, P["nose"], (eye, 1.3 * eye), ang, tuple(int(0.7 * v) for v in c["skin"])),
                ("ellipse", None, P["mouth"], (2.2 * eye, 0.7 * eye), ang, (60, 60, 150))]
        yaw = spec["pose"]["yaw"]
        if abs(yaw) > 0.35:  # the ear behind the turned head is not drawn
            ears = [ears[1] if yaw > 0 else ears[0]]
    head_all = ears + head + face
    return (arms + legs + torso + head_all) if mirror else (legs + torso + head_all + arms)

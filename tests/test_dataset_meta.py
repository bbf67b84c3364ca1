"""Dataset metadata as data (semipose.data.meta): the built-in description files reproduce the
joint tables the code held before bit for bit, bad files get one-line errors naming file and key,
and a joint set of one's own (a 5-joint toy) drives flips, half-body crops, drawing and the joint
space of a model."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from semipose.data.keypoints import (AIC, COCO, COCO_SKELETON, JOINT_SETS, MPII, UNION, JointSet,
                                     joint_space_problem, joint_space_without_dataset,
                                     model_joint_set, model_space_of_cfg, slots_in)
from semipose.data.meta import (BUILTIN_FILES, DEFAULT_PALETTE, METAS_DIR, DatasetMeta,
                                dataset_meta, guess_flip_pairs, register_dataset_meta)
from semipose.engine.visualize import draw_people, draw_pose, legend_colours
from semipose.errors import ConfigError, DataError, MissingFileError
from semipose.transforms.affine import flip_joints
from semipose.transforms.heatmap import flip_back
from semipose.transforms.sample import SampleTransform

# ------------------------------------------------------------------ the tables as they were
# The joint tables of data/keypoints.py before they became files, and the formulas that built them.
OLD_NAMES = {
    "union": ("root", "rhip", "rkne", "rank", "lhip", "lkne", "lank", "belly", "thorax", "neck",
              "upper_neck", "nose", "head", "head_top", "lsho", "lelb", "lwri", "rsho", "relb",
              "rwri", "reye", "leye", "rear", "lear"),
    "coco": ("nose", "leye", "reye", "lear", "rear", "lsho", "rsho", "lelb", "relb", "lwri",
             "rwri", "lhip", "rhip", "lkne", "rkne", "lank", "rank"),
    "mpii": ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "root", "thorax", "upper_neck",
             "head_top", "rwri", "relb", "rsho", "lsho", "lelb", "lwri"),
    "aic": ("rsho", "relb", "rwri", "lsho", "lelb", "lwri", "rhip", "rkne", "rank", "lhip", "lkne",
            "lank", "head_top", "neck"),
}
OLD_COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                            .87, .87, .89, .89]) / 10.0
OLD_AIC_SIGMAS = 2.0 * np.array([0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891,
                                 0.01402144, 0.03909642, 0.03686941, 0.01981803, 0.03843971,
                                 0.03412318, 0.02415081, 0.01291456, 0.01236173])
OLD_COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                     (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                     (3, 5), (4, 6))
OLD_LEFT, OLD_RIGHT, OLD_MID = (60, 120, 255), (255, 160, 40), (80, 230, 80)  # BGR


def old_flip_pairs(names):
    """'r<x>' pairs with 'l<x>', each pair and the list sorted (the old _joint_set)."""
    pairs = [(i, names.index("l" + n[1:])) for i, n in enumerate(names)
             if n.startswith("r") and ("l" + n[1:]) in names]
    return tuple(sorted(tuple(sorted(p)) for p in pairs))


def old_upper_body(names):
    """Union joints below 'belly' were the lower body; everything else the upper body."""
    lower = set(OLD_NAMES["union"][:OLD_NAMES["union"].index("belly")])
    return np.array([n not in lower for n in names])


def old_edges(meta):
    """The COCO skeleton in ``meta``'s indices, edges it lacks dropped (the old drawing)."""
    idx = slots_in(meta, COCO)
    return tuple((int(idx[a]), int(idx[b])) for a, b in OLD_COCO_SKELETON
                 if idx[a] >= 0 and idx[b] >= 0)


def old_side_colour(name):
    return OLD_LEFT if name[0] == "l" else OLD_RIGHT if name[0] == "r" else OLD_MID


BUILT_IN = {"union": UNION, "coco": COCO, "mpii": MPII, "aic": AIC}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_built_in_files_reproduce_the_old_tables(name):
    meta = BUILT_IN[name]
    assert isinstance(meta, DatasetMeta) and meta.name == name
    assert meta.names == OLD_NAMES[name]
    assert meta.flip_pairs == old_flip_pairs(OLD_NAMES[name])
    upper, lower = meta.body_masks()
    np.testing.assert_array_equal(upper, old_upper_body(meta.names))
    np.testing.assert_array_equal(lower, ~old_upper_body(meta.names))  # the halves partition
    assert meta.skeleton == old_edges(meta)
    # Every joint that is drawn (an end of an edge) and every limb keeps its old colour.
    bgr = lambda c: (c[2], c[1], c[0])  # noqa: E731
    for j in {j for e in meta.skeleton for j in e}:
        assert bgr(meta.joint_colors[j]) == old_side_colour(meta.names[j])
    for (a, _), c in zip(meta.skeleton, meta.limb_colors):
        assert bgr(c) == old_side_colour(meta.names[a])
    assert meta.joint_weights == (1.0,) * meta.num_joints
    assert meta.source == os.path.join(METAS_DIR, BUILTIN_FILES[name])


def test_the_unions_flip_pairs_keep_the_reference_order():
    assert UNION.flip_pairs == ((1, 4), (2, 5), (3, 6), (14, 17), (15, 18), (16, 19), (20, 21),
                                (22, 23))


def test_sigmas_are_bit_identical_to_the_old_formulas():
    for meta, old in ((COCO, OLD_COCO_SIGMAS), (AIC, OLD_AIC_SIGMAS)):
        new = np.asarray(meta.sigmas, np.float64)
        assert np.array_equal(new, old) and new.tobytes() == old.tobytes()
    assert MPII.sigmas == () and UNION.sigmas == ()
    # pycocotools' own table (what COCOeval used before it was handed the meta's sigmas)
    from pycocotools.cocoeval import Params
    assert Params("keypoints").kpt_oks_sigmas.tobytes() == np.asarray(COCO.sigmas).tobytes()


def test_coco_skeleton_and_the_old_names_still_work():
    assert COCO_SKELETON == OLD_COCO_SKELETON == COCO.skeleton
    assert JointSet is DatasetMeta
    assert JOINT_SETS == {"union": UNION, "coco": COCO, "mpii": MPII, "aic": AIC,
                          "ai_challenger": AIC}
    assert dataset_meta("ai_challenger") is AIC and dataset_meta("coco") is COCO


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_yaml_round_trip(name, tmp_path):
    meta = BUILT_IN[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(meta.to_yaml())
    again = DatasetMeta.from_yaml(str(path))
    assert again == meta and again.source == str(path)
    assert np.asarray(again.sigmas).tobytes() == np.asarray(meta.sigmas).tobytes()


# ------------------------------------------------------------------ errors in description files
GOOD = {"joints": ["head", "lhand", "rhand"], "flip_pairs": [["lhand", "rhand"]]}


def _write(tmp_path, content, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


@pytest.mark.parametrize("content, key, needle", [
    ("joints: [a, b\n", None, "not valid YAML"),
    ("- a\n- b\n", None, "expected a mapping"),
    ("joints: [a, b]\njoints: [c]\n", None, "'joints' appears twice"),
    (dict(GOOD, flip_pair=[["lhand", "rhand"]]), None, "unknown key 'flip_pair'"),
    ({"name": "x"}, "joints", "is missing"),
    ({"joints": "head"}, "joints", "non-empty list"),
    ({"joints": ["a", "b", "a"]}, "joints", "names 'a' again"),
    ({"joints": ["a", 3]}, "joints", "not a joint name"),
    (dict(GOOD, name=""), "name", "non-empty string"),
    (dict(GOOD, flip_pairs=[["lhand", "rhnd"]]), "flip_pairs", "unknown joint 'rhnd'"),
    (dict(GOOD, flip_pairs=[["lhand", "rhand", "head"]]), "flip_pairs", "pair of joints"),
    (dict(GOOD, flip_pairs=[["head", "head"]]), "flip_pairs", "with itself"),
    (dict(GOOD, flip_pairs=[["lhand", "rhand"], ["head", "lhand"]]), "flip_pairs",
     "'lhand' is already in entry 0"),
    (dict(GOOD, skeleton=[[0, 7]]), "skeleton", "index 7 is out of range 0..2"),
    (dict(GOOD, skeleton=[[0, True]]), "skeleton", "neither a joint name nor a joint index"),
    (dict(GOOD, upper_body=["head", "head"]), "upper_body", "lists joint 'head' twice"),
    (dict(GOOD, upper_body=["head", "lhand"], lower_body=["lhand"]), "lower_body",
     "'lhand' is in upper_body too"),
    (dict(GOOD, sigmas=[0.1, 0.2]), "sigmas", "has 2 values for 3 joints"),
    (dict(GOOD, sigmas=[0.1, 0.0, 0.2]), "sigmas", "must be a number > 0"),
    (dict(GOOD, sigmas=[0.1, "wide", 0.2]), "sigmas", "must be a number > 0"),
    (dict(GOOD, joint_weights=[1.0]), "joint_weights", "has 1 values for 3 joints"),
    (dict(GOOD, joint_weights=[1.0, -1.0, 1.0]), "joint_weights", "must be a number >= 0"),
    (dict(GOOD, palette={"red": [255, 0]}), "palette", "[r, g, b] with integers 0..255"),
    (dict(GOOD, joint_colors=["left", "right"]), "joint_colors", "has 2 colours for 3 joints"),
    (dict(GOOD, joint_colors=["left", "blue", "right"]), "joint_colors",
     "colour 'blue' is not in the palette"),
    (dict(GOOD, joint_colors=["left", [0, 0, 300], "right"]), "joint_colors", "integers 0..255"),
    (dict(GOOD, skeleton=[["head", "lhand"]], limb_colors=[]), "limb_colors",
     "has 0 colours for 1 skeleton edges"),
])
def test_bad_description_files_get_one_line_errors(tmp_path, content, key, needle):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as err:
        DatasetMeta.from_yaml(path)
    msg = str(err.value)
    assert msg.startswith(path + ": ") and needle in msg and "\n" not in msg
    if key is not None:
        assert f"key '{key}'" in msg


def test_a_missing_description_file_is_named(tmp_path):
    path = str(tmp_path / "nothere.yaml")
    with pytest.raises(MissingFileError, match="nothere.yaml' not found"):
        DatasetMeta.from_yaml(path)
    with pytest.raises(MissingFileError, match="nothere.yaml"):
        dataset_meta(path)


def test_an_unknown_joint_set_name_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        dataset_meta("cocoo", "DATASET.JOINT_SPACE")
    msg = str(err.value)
    assert msg.startswith("DATASET.JOINT_SPACE 'cocoo' is unknown")
    assert "'coco'" in msg and "'ai_challenger'" in msg and ".yaml" in msg


def test_numbers_yaml_reads_as_text_are_accepted(tmp_path):
    """YAML 1.1 reads 1e-3 (no dot) as a string; the loader takes it as the number it is."""
    path = _write(tmp_path, "joints: [a, b]\nsigmas: [1e-3, 0.5]\n")
    assert DatasetMeta.from_yaml(path).sigmas == (0.001, 0.5)


# ------------------------------------------------------------------ a 5-joint toy skeleton
TOY = """\
# A toy: a body with two hands and two feet.
name: toy
joints: [body, lhand, rhand, lfoot, rfoot]
flip_pairs: [[lhand, rhand], [lfoot, rfoot]]
upper_body: [body, lhand, rhand]
lower_body: [lfoot, rfoot]
skeleton: [[body, lhand], [body, rhand], [body, lfoot], [body, rfoot]]
palette: {red: [255, 0, 0], blue: [0, 0, 255], grey: [128, 128, 128]}
joint_colors: [grey, red, blue, red, blue]
limb_colors: [red, blue, [0, 255, 0], [0, 255, 0]]
sigmas: [0.1, 0.05, 0.05, 0.08, 0.08]
joint_weights: [1.0, 1.5, 1.5, 1.0, 1.0]
"""


@pytest.fixture()
def toy_path(tmp_path) -> str:
    return _write(tmp_path, TOY, "toy.yaml")


def test_toy_meta_reads_every_key(toy_path):
    toy = DatasetMeta.from_yaml(toy_path)
    assert toy.name == "toy" and toy.num_joints == 5
    assert toy.describe() == f"toy (5 joints, {toy_path})"
    assert toy.flip_pairs == ((1, 2), (3, 4))
    assert toy.upper_body == (0, 1, 2) and toy.lower_body == (3, 4) and toy.has_body_halves
    assert toy.skeleton == ((0, 1), (0, 2), (0, 3), (0, 4))
    assert toy.joint_colors == ((128, 128, 128), (255, 0, 0), (0, 0, 255), (255, 0, 0),
                                (0, 0, 255))
    assert toy.limb_colors == ((255, 0, 0), (0, 0, 255), (0, 255, 0), (0, 255, 0))
    assert toy.sigmas == (0.1, 0.05, 0.05, 0.08, 0.08)
    assert toy.joint_weights == (1.0, 1.5, 1.5, 1.0, 1.0)
    assert DatasetMeta.from_dict(yaml.safe_load(toy.to_yaml()), source=toy_path) == toy
    # the same file gives the same object; by name once registered
    assert dataset_meta(toy_path) is dataset_meta(toy_path)
    assert register_dataset_meta("toy_test", toy_path) == toy
    assert dataset_meta("toy_test") == toy


def test_default_colours_follow_the_flip_pairs():
    meta = DatasetMeta.from_dict({"joints": ["a", "b", "c"], "flip_pairs": [["b", "c"]],
                                  "skeleton": [["a", "b"], ["c", "a"]]})
    left, right, centre = (c for _, c in DEFAULT_PALETTE)
    assert meta.name == "custom" and meta.palette == DEFAULT_PALETTE
    assert meta.joint_colors == (centre, left, right)
    assert meta.limb_colors == (centre, right)  # each edge in its first joint's colour
    assert meta.joint_weights == (1.0, 1.0, 1.0) and meta.sigmas == ()
    assert not meta.has_body_halves


def test_toy_flip_pairs_drive_the_flips(toy_path):
    toy = DatasetMeta.from_yaml(toy_path)
    joints = np.arange(10, dtype=np.float32).reshape(5, 2)
    vis = np.array([1, 1, 0, 1, 1], np.float32)
    fj, fv = flip_joints(joints, vis, 100.0, toy.flip_pairs)
    perm = [0, 2, 1, 4, 3]  # the twins swap; invisible joints come out as (0, 0)
    mirrored = np.stack([100.0 - 1 - joints[:, 0], joints[:, 1]], axis=1)[perm]
    np.testing.assert_array_equal(fj, mirrored * vis[perm, None])
    np.testing.assert_array_equal(fv, vis[perm])
    hm = torch.arange(5 * 2 * 3, dtype=torch.float32).reshape(1, 5, 2, 3)
    back = flip_back(hm, toy.flip_pairs)
    assert torch.equal(back, hm.flip(3)[:, [0, 2, 1, 4, 3]])


def test_half_body_needs_the_halves(toy_path):
    toy = DatasetMeta.from_yaml(toy_path)
    args = ((64, 64), (16, 16), 1.0, toy.flip_pairs, True)
    t = SampleTransform(*args, prob_half_body=0.3, joint_set=toy)
    np.testing.assert_array_equal(t.upper_body, [True, True, True, False, False])
    np.testing.assert_array_equal(t.lower_body, [False, False, False, True, True])
    bare = DatasetMeta.from_dict({"joints": ["a", "b"]}, source="bare.yaml")
    with pytest.raises(ConfigError, match=r"PROB_HALF_BODY 0.3 needs the body halves .*bare.yaml"):
        SampleTransform(*args, prob_half_body=0.3, joint_set=bare)
    SampleTransform(*args, prob_half_body=0.0, joint_set=bare)  # no half-body crops: fine
    # the union's masks are the old rule's
    u = SampleTransform(*args[:3], UNION.flip_pairs, True, prob_half_body=0.3, joint_set=UNION)
    np.testing.assert_array_equal(u.upper_body, old_upper_body(UNION.names))
    np.testing.assert_array_equal(u.lower_body, ~old_upper_body(UNION.names))


def test_toy_drawing_uses_its_skeleton_and_colours(toy_path):
    toy = DatasetMeta.from_yaml(toy_path)
    img = np.zeros((60, 60, 3), np.uint8)
    kpts = np.array([[30, 30, 1], [10, 30, 1], [50, 30, 1], [30, 10, 1], [30, 50, 1]], np.float32)
    draw_pose(img, kpts, toy)
    assert tuple(img[30, 10]) == (0, 0, 255)  # lhand: red (RGB) drawn as BGR
    assert tuple(img[30, 50]) == (255, 0, 0)  # rhand: blue
    assert tuple(img[30, 30]) == (128, 128, 128)  # body: grey
    assert tuple(img[30, 20]) == (0, 0, 255)  # body-lhand limb: red
    assert tuple(img[20, 30]) == (0, 255, 0)  # body-lfoot limb: its own colour, green
    assert legend_colours(toy, sides_only=True) == [("red", (0, 0, 255)), ("blue", (255, 0, 0))]
    assert [n for n, _ in legend_colours(toy)] == ["red", "blue", "grey"]
    out = draw_people(np.zeros((100, 100, 3), np.uint8), kpts[None] + 20, [[25, 25, 50, 50]],
                      [0.9], toy)
    assert out.shape == (100, 100, 3) and out.any()


def test_built_in_legends_are_unchanged():
    """draw_people lists left and right, the prediction grid left, right and centre."""
    for meta in BUILT_IN.values():
        assert legend_colours(meta, sides_only=True) == [("left", OLD_LEFT), ("right", OLD_RIGHT)]
        assert legend_colours(meta) == [("left", OLD_LEFT), ("right", OLD_RIGHT),
                                        ("centre", OLD_MID)]


# ------------------------------------------------------------------ which joint space a model uses
def test_joint_space_key_names_the_space(toy_path):
    assert model_joint_set(24, COCO) is UNION and model_joint_set(17, COCO) is COCO
    assert model_joint_set(24, COCO, "union") is UNION
    assert model_joint_set(17, COCO, "coco") is COCO
    assert model_joint_set(24, MPII, os.path.join(METAS_DIR, "union.yaml")) == UNION
    with pytest.raises(ConfigError, match="JOINT_SPACE 'coco' has 17 joints but MODEL.NUM_JOINTS "
                                          "is 24: set MODEL.NUM_JOINTS 17"):
        model_joint_set(24, COCO, "coco")
    with pytest.raises(ConfigError, match=r"JOINT_SPACE 'coco' lacks the joints \['root', "):
        model_joint_set(17, MPII, "coco")
    with pytest.raises(KeyError, match="DATASET.JOINT_SPACE 'unoin' is unknown"):
        model_joint_set(24, COCO, "unoin")
    toy = dataset_meta(toy_path)
    assert model_joint_set(5, toy) is toy and model_joint_set(5, toy, toy_path) is toy
    with pytest.raises(ConfigError, match="NUM_JOINTS=24 does not match a joint space"):
        model_joint_set(24, toy)  # the toy's joints are not in the union


def test_a_24_joint_dataset_of_ones_own_is_not_the_union():
    own = DatasetMeta.from_dict({"joints": [f"p{k}" for k in range(24)]}, source="own24.yaml")
    assert model_joint_set(24, own) is own


def test_joint_space_problem_and_cfg_helpers(toy_path):
    assert joint_space_problem("", 24) is None and joint_space_problem("union", 24) is None
    assert "has 24 joints but MODEL.NUM_JOINTS is 17" in joint_space_problem("union", 17)
    assert "'nope' is unknown" in joint_space_problem("nope", 17)
    assert "not found" in joint_space_problem("missing/file.yaml", 17)
    cfg = lambda **d: SimpleNamespace(DATASET=SimpleNamespace(**d),  # noqa: E731
                                      MODEL=SimpleNamespace(NUM_JOINTS=d.pop("n", 24)))
    assert joint_space_without_dataset(cfg()) is UNION  # a config without the key
    assert joint_space_without_dataset(cfg(JOINT_SPACE="", n=17)) is COCO
    assert joint_space_without_dataset(cfg(JOINT_SPACE=toy_path, n=5)) is dataset_meta(toy_path)
    assert joint_space_without_dataset(cfg(JOINT_SPACE="", n=7)) is None
    assert model_space_of_cfg(cfg(TEST_DATASET="ai_challenger")) == (AIC, UNION)
    assert model_space_of_cfg(cfg(TEST_DATASET="coco", JOINT_SPACE="coco", n=17)) == (COCO, COCO)
    with pytest.raises(KeyError, match="DATASET.TEST_DATASET 'mine' is unknown"):
        model_space_of_cfg(cfg(TEST_DATASET="mine"))


# ------------------------------------------------------------------ converters, evaluation, export
def test_guess_flip_pairs():
    for name, meta in BUILT_IN.items():
        assert guess_flip_pairs(meta.names) == meta.flip_pairs, name
    names = ["nose", "Left_Wrist", "Right_Wrist", "paw_l", "paw_r", "ear.left", "ear.right",
             "tail"]
    assert guess_flip_pairs(names) == ((1, 2), (3, 4), (5, 6))


def test_coco_evaluation_needs_sigmas(tmp_path):
    from semipose.evaluation.coco_eval import evaluate_coco
    bare = DatasetMeta.from_dict({"joints": ["a", "b"]}, source="bare.yaml")
    boxes = {k: np.zeros((1, 2)) for k in ("center", "scale")}
    boxes.update(area=np.ones(1), score=np.ones(1), raw_box=np.zeros((1, 4)))
    with pytest.raises(DataError, match=r"custom \(2 joints, bare.yaml\) has no OKS sigmas"):
        evaluate_coco(np.zeros((1, 2, 3)), boxes, [1], "gt.json", "val2017", str(tmp_path), bare,
                      native=bare)


def test_export_stores_the_joint_space(tmp_path):
    pytest.importorskip("onnx")
    from semipose.engine.export import exported_joint_space
    from semipose.models.export import JOINT_SPACE_KEY, export_onnx
    path = str(tmp_path / "tiny.onnx")
    export_onnx(torch.nn.Conv2d(3, UNION.num_joints, 1), path, (32, 32),
                metadata={JOINT_SPACE_KEY: UNION.to_yaml()})
    space = exported_joint_space(path)
    assert space == UNION and space.source == path
    export_onnx(torch.nn.Conv2d(3, 2, 1), path, (32, 32))
    with pytest.raises(DataError, match="stores no joint space"):
        exported_joint_space(path)


def test_description_files_ship_with_the_package():
    """pyproject.toml's package data covers every built-in file (a non-editable install has
    them)."""
    import fnmatch
    import glob

    try:
        import tomllib
    except ImportError:  # Python < 3.11: the same parser as tomli (a pytest dependency there)
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["semipose.data"]
    package_dir = os.path.dirname(METAS_DIR)
    files = [os.path.relpath(p, package_dir).replace(os.sep, "/")
             for p in glob.glob(os.path.join(METAS_DIR, "*.yaml"))]
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []
    assert set(BUILTIN_FILES.values()) <= {os.path.basename(f) for f in files}

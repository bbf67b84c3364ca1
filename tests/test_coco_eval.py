"""COCO evaluation on the real val2017 fixture: GT as predictions, decoded heatmaps, NMS, tables."""
import json
import os

import numpy as np
import pytest

from semipose.data.keypoints import COCO, UNION, union_slots
from semipose.evaluation.coco_eval import METRIC_NAMES, evaluate_coco, result_file
from semipose.evaluation.table import format_table, write_table
from semipose.transforms.affine import (affine_points, box_to_center_scale, get_affine_transform,
                                        sanitize_box)
from semipose.transforms.heatmap import generate_target, get_final_preds

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "fixtures", "coco")
ANN_FILE = os.path.join(FIXTURE, "annotations", "person_keypoints_val2017.json")
IMAGE_SIZE, HEATMAP_SIZE = (192, 256), (48, 64)


def gt_people():
    """GT persons with keypoints from the fixture, with boxes as the dataset builds them.

    Returns dict: keypoints [N, 17, 3] (COCO order, v in {0, 1, 2}), center/scale [N, 2] from the
    sanitised box, area [N] ((s_w*200)*(s_h*200)), score [N] = 1, raw_box [N, 4], image_ids [N].
    """
    with open(ANN_FILE) as f:
        ann = json.load(f)
    sizes = {im["id"]: (im["width"], im["height"]) for im in ann["images"]}
    out = {k: [] for k in ("keypoints", "center", "scale", "raw_box", "image_ids")}
    for a in ann["annotations"]:
        if a["iscrowd"] or max(a["keypoints"]) == 0:
            continue
        box = sanitize_box(a["bbox"], *sizes[a["image_id"]], area=a["area"])
        c, s = box_to_center_scale(box, IMAGE_SIZE[0] / IMAGE_SIZE[1])
        out["keypoints"].append(np.asarray(a["keypoints"], np.float64).reshape(17, 3))
        out["center"].append(c)
        out["scale"].append(s)
        out["raw_box"].append(np.asarray(a["bbox"], np.float64))
        out["image_ids"].append(a["image_id"])
    people = {k: np.stack(v) if k != "image_ids" else v for k, v in out.items()}
    people["area"] = np.prod(people["scale"] * 200, axis=1).astype(np.float64)
    people["score"] = np.ones(len(people["image_ids"]))
    return people


def encode_people(people):
    """GT joints -> crop-space Gaussian heatmaps [N, 17, 64, 48] (what a perfect model outputs)."""
    maps = []
    for kp, c, s in zip(people["keypoints"], people["center"], people["scale"]):
        joints = affine_points(kp[:, :2], get_affine_transform(c, s, 0, IMAGE_SIZE))
        target, _ = generate_target(joints, np.minimum(kp[:, 2], 1), IMAGE_SIZE, HEATMAP_SIZE, 2)
        maps.append(target)
    return np.stack(maps).astype(np.float32)


def as_preds(people, offset=(0.0, 0.0)):
    preds = people["keypoints"].copy()
    preds[..., :2] += offset
    preds[..., 2] = 1.0
    return preds


@pytest.fixture(scope="module")
def people():
    return gt_people()


def _eval(preds, people, tmp_path, joint_set=COCO, **kw):
    return evaluate_coco(preds, people, people["image_ids"], ANN_FILE, "val2017", str(tmp_path),
                         joint_set, **kw)


def test_ground_truth_as_predictions_is_perfect(people, tmp_path):
    assert len(people["image_ids"]) == 12  # 14 persons, 2 without keypoints
    name_values, ap = _eval(as_preds(people), people, tmp_path, prefix="eval_1")
    assert list(name_values) == list(METRIC_NAMES)
    assert ap == name_values["AP"] == pytest.approx(1.0, abs=1e-9)
    assert name_values["AR"] == pytest.approx(1.0, abs=1e-9)

    path = result_file(str(tmp_path), "val2017", "eval_1")
    assert path.endswith(os.path.join("results", "person_keypoints_val2017_eval_1.json"))
    with open(path) as f:
        results = json.load(f)
    assert len(results) == 12
    assert not [p for p in os.listdir(os.path.dirname(path)) if p.startswith(".tmp")]
    r = results[0]
    assert set(r) == {"image_id", "category_id", "keypoints", "score", "center", "scale", "bbox"}
    assert r["image_id"] == 785 and r["category_id"] == 1 and len(r["keypoints"]) == 51
    np.testing.assert_allclose(r["bbox"], people["raw_box"][0])
    np.testing.assert_allclose(r["keypoints"][:3], people["keypoints"][0, 0, :2].tolist() + [1.0])


def test_union_space_predictions_are_reordered(people, tmp_path):
    union = np.full((12, UNION.num_joints, 3), 999.0)  # slots COCO lacks hold junk
    union[:, union_slots(COCO)] = as_preds(people)
    name_values, ap = _eval(union, people, tmp_path, joint_set=UNION, save_result=False)
    assert ap == pytest.approx(1.0, abs=1e-9)
    assert not os.path.exists(os.path.join(str(tmp_path), "results"))


def test_offset_predictions_score_much_lower(people, tmp_path):
    _, ap = _eval(as_preds(people, (25.0, -15.0)), people, tmp_path)
    assert ap < 0.2


def test_reference_box_rows_give_the_same_metrics(people, tmp_path):
    rows = np.concatenate([people["center"], people["scale"], people["area"][:, None],
                           people["score"][:, None], people["raw_box"]], axis=1)
    preds = as_preds(people, (1.5, -2.0))
    by_dict, _ = _eval(preds, people, tmp_path / "a")
    by_rows, _ = evaluate_coco(preds, rows, people["image_ids"], ANN_FILE, "val2017",
                               str(tmp_path / "b"), COCO)
    assert by_dict == by_rows
    assert 0.3 < by_dict["AP"] < 1.0


def test_rescoring_and_nms_on_duplicates(people, tmp_path):
    """A near-duplicate of every person (OKS > 0.9) is removed; scores follow the rescoring rule."""
    n = len(people["image_ids"])
    preds = as_preds(people)
    preds[..., 2] = np.linspace(0.1, 1.0, 17)  # joints 0, 1 at or below 0.2 do not count
    dup = preds.copy()
    dup[..., :2] += 0.5
    dup[..., 2] *= 0.5
    both = {k: np.concatenate([v, v]) for k, v in people.items() if k != "image_ids"}
    both["score"] = np.concatenate([np.full(n, 0.8), np.full(n, 0.9)])
    ids = people["image_ids"] * 2
    name_values, ap = evaluate_coco(np.concatenate([preds, dup]), both, ids, ANN_FILE, "val2017",
                                    str(tmp_path), COCO, in_vis_thre=0.2, oks_thre=0.9)
    with open(result_file(str(tmp_path), "val2017")) as f:
        results = json.load(f)
    assert len(results) == n  # each image keeps one of each pair
    expect = np.linspace(0.1, 1.0, 17)[2:].mean() * 0.8  # originals win: 0.8*m > 0.9*m/2
    np.testing.assert_allclose([r["score"] for r in results], expect, rtol=1e-12)
    assert ap == pytest.approx(1.0, abs=1e-9)
    # Without NMS (threshold above any OKS) every duplicate comes back.
    evaluate_coco(np.concatenate([preds, dup]), both, ids, ANN_FILE, "val2017", str(tmp_path),
                  COCO, prefix="all", oks_thre=1.01)
    with open(result_file(str(tmp_path), "val2017", "all")) as f:
        assert len(json.load(f)) == 2 * n


def test_detection_area_comes_from_the_bbox(people, tmp_path):
    """Results carry 'bbox', so an unmatched detection with a tiny box is ignored in the medium and
    large ranges even though its keypoints span a large person (BEHAVIOR section 10, row 15)."""
    preds = np.concatenate([as_preds(people), as_preds(people)[:1] + [200.0, 0.0, 0.0]])
    boxes = {k: np.concatenate([v, v[:1]]) for k, v in people.items() if k != "image_ids"}
    boxes["score"][:-1] = 0.9  # the false positive ranks first
    boxes["raw_box"][-1] = [0.0, 0.0, 10.0, 10.0]
    name_values, ap = evaluate_coco(preds, boxes, people["image_ids"] + people["image_ids"][:1],
                                    ANN_FILE, "val2017", str(tmp_path), COCO)
    assert ap < 0.95
    assert name_values["AP (L)"] == pytest.approx(1.0, abs=1e-9)
    assert name_values["AP (M)"] == pytest.approx(1.0, abs=1e-9)


def test_unscored_sets_return_null(people, tmp_path):
    out = evaluate_coco(as_preds(people), people, people["image_ids"], ANN_FILE,
                        "unlabeled2017", str(tmp_path), COCO)
    assert out == ({"Null": 0}, 0)
    assert os.path.isfile(result_file(str(tmp_path), "unlabeled2017"))


def test_bad_prediction_shape_names_the_joint_space(people, tmp_path):
    with pytest.raises(ValueError, match="coco"):
        _eval(np.zeros((12, 24, 3)), people, tmp_path)


def test_decoded_heatmaps_reach_full_ap(people, tmp_path):
    """GT -> 192x256 crop heatmaps -> get_final_preds -> COCOeval: decoding loses ~nothing."""
    hm = encode_people(people)
    coords, maxvals = get_final_preds(hm, people["center"], people["scale"],
                                      np.zeros(len(hm)), post_process=True, post_type="shift")
    preds = np.concatenate([coords, maxvals], axis=2)
    vis = people["keypoints"][..., 2] > 0
    err = np.linalg.norm(coords - people["keypoints"][..., :2], axis=-1)[vis]
    stride = people["scale"][:, 0] * 200 / HEATMAP_SIZE[0]  # image px per heatmap px
    assert err.max() <= stride.max() * np.sqrt(0.5) + 1e-6
    assert (maxvals[vis] == 1.0).all()
    _, ap = _eval(preds, people, tmp_path)
    assert ap >= 0.99


def test_format_and_write_table(tmp_path):
    values = {"AP": 0.123456, "Ap .5": 1.0, "AR (L)": 0.5}
    text = format_table(values, "pose_resnet_18")
    assert text.split("\n") == [
        "| Arch | AP | Ap .5 | AR (L) |",
        "|---|---|---|---|",
        "| pose_resnet_18 | 0.1235 | 1.0000 | 0.5000 |",
    ]
    path = tmp_path / "sub" / "table.md"
    write_table(str(path), text)
    assert path.read_text() == text + "\n"


def _per_image_reference(kpts, boxes, image_ids, in_vis_thre, oks_thre):
    """The reference's evaluation loop written out: per image, rescore, then the shrinking
    ``order`` loop of OKS-NMS with ``oks_iou`` against the remaining people."""
    from semipose.evaluation.nms import oks_iou, rescore
    scores = rescore(kpts, boxes["score"], in_vis_thre)
    groups = {}
    for i, img in enumerate(image_ids):
        groups.setdefault(img, []).append(i)
    out = []
    for img, mem in groups.items():
        mem = np.asarray(mem)
        order = scores[mem].argsort()[::-1]
        keep = []
        while order.size:
            i = order[0]
            keep.append(i)
            rest = order[1:]
            oks = oks_iou(kpts[mem[i]], kpts[mem[rest]], boxes["area"][mem[i]],
                          boxes["area"][mem[rest]], COCO.sigmas)
            order = rest[oks <= oks_thre]
        out += [(img, int(mem[k]), float(scores[mem[k]])) for k in keep]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_nms_matches_the_per_image_loop(seed):
    """Varying people per image, exact score ties (rounded maxvals, equal box scores) and
    near-duplicate detections: same survivors, same order, same scores, bit for bit."""
    from semipose.evaluation.coco_eval import build_results
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 30, size=60)
    n = int(counts.sum())
    ids = np.repeat(rng.permutation(1000)[:60], counts)
    ids = ids[rng.permutation(n)]        # images interleaved, as detections come in
    base = rng.uniform(0, 400, (n, 1, 2))
    centre = base[rng.integers(0, 5, n)]  # five places: each image has near-duplicates
    kpts = np.concatenate([centre + rng.normal(0, 4 + 4 * seed, (n, 17, 2)),
                           np.round(rng.uniform(0, 1, (n, 17, 1)), 1)], axis=-1)
    boxes = {"center": base[:, 0], "scale": rng.uniform(0.5, 2, (n, 2)),
             "area": rng.choice([2000.0, 8000.0], n), "score": np.round(rng.uniform(0, 1, n), 1),
             "raw_box": rng.uniform(0, 400, (n, 4))}
    got = build_results(kpts, boxes, ids, COCO.sigmas, 0.2, 0.5)
    want = _per_image_reference(kpts, boxes, ids.tolist(), 0.2, 0.5)
    assert len(want) < n                 # the threshold suppresses someone
    assert [(r["image_id"], r["score"]) for r in got] == [(w[0], w[2]) for w in want]
    for r, (_, j, _) in zip(got, want):
        assert r["keypoints"] == kpts[j].reshape(-1).tolist()
        assert r["bbox"] == boxes["raw_box"][j].tolist()
        assert r["center"] == boxes["center"][j].tolist()
        assert r["scale"] == boxes["scale"][j].tolist()
    assert build_results(kpts[:0], {k: v[:0] for k, v in boxes.items()}, ids[:0],
                         COCO.sigmas, 0.2, 0.5) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_result_building_restores_the_garbage_collector(enabled):
    """build_results pauses the cyclic collector while it builds the lists and puts back the
    caller's setting, also when the block raises; float32 keypoints come out as their exact
    float64 values."""
    import gc

    from semipose.evaluation.coco_eval import build_results, gc_paused

    rng = np.random.default_rng(0)
    n = 6
    kpts = np.concatenate([rng.uniform(0, 100, (n, 17, 2)), rng.uniform(0.3, 1, (n, 17, 1))],
                          axis=-1).astype(np.float32)
    boxes = {"center": rng.uniform(0, 100, (n, 2)), "scale": np.ones((n, 2)),
             "area": np.full(n, 5000.0), "score": np.ones(n), "raw_box": np.ones((n, 4))}
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        results = build_results(kpts, boxes, [1, 1, 2, 2, 3, 3], COCO.sigmas, 0.2, 0.9)
        assert gc.isenabled() == enabled
        with pytest.raises(RuntimeError):
            with gc_paused():
                assert not gc.isenabled()
                raise RuntimeError("inside")
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert [r["image_id"] for r in results] == [1, 1, 2, 2, 3, 3]  # far apart: no suppression
    got = {tuple(r["keypoints"]) for r in results}
    assert got == {tuple(k.astype(np.float64).ravel().tolist()) for k in kpts}

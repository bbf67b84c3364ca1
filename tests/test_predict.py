"""predict(): stand-in models over a default-collated loader; flip test, ensembles, shards."""
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from semipose.data.keypoints import COCO, UNION
from semipose.evaluation.coco_eval import evaluate_coco
from semipose.evaluation.predict import merge_results, predict
from semipose.transforms.heatmap import generate_target, get_final_preds
from test_coco_eval import ANN_FILE, HEATMAP_SIZE, IMAGE_SIZE, encode_people, gt_people


def make_samples(heatmaps, people):
    """CONTRACT-style samples whose image carries the sample index (read by the stand-ins)."""
    samples = []
    for i, hm in enumerate(heatmaps):
        samples.append({
            "image": torch.full((3, 8, 6), float(i)),
            "target": torch.from_numpy(hm),
            "target_weight": torch.ones(hm.shape[0], 1),
            "meta": {"image_id": people["image_ids"][i], "center": people["center"][i],
                     "scale": people["scale"][i], "rotation": 0.0, "score": 1.0,
                     "raw_box": people["raw_box"][i].astype(np.float32), "index": i},
        })
    return samples


class Lookup:
    """Returns the stored heatmaps of the samples in the batch (a perfect model), times ``gain``."""

    def __init__(self, heatmaps, gain=1.0):
        self.table = torch.from_numpy(heatmaps) * gain

    def __call__(self, images):
        return self.table[images[:, 0, 0, 0].round().long()]


@pytest.fixture(scope="module")
def fixture_case():
    people = gt_people()
    hm = encode_people(people)
    return people, hm, make_samples(hm, people)


def test_predict_returns_decoded_heatmaps_and_boxes(fixture_case, tmp_path):
    people, hm, samples = fixture_case
    loader = DataLoader(samples, batch_size=5, shuffle=False)
    out = predict({"net1": Lookup(hm)}, loader, "cpu", progress=False,
                  loss_fn=lambda o, t, w: 0.5 * ((o - t) * w[..., None]).pow(2).mean())
    coords, maxvals = get_final_preds(hm, people["center"], people["scale"], None)
    np.testing.assert_allclose(out["preds"]["net1"][..., :2], coords, atol=1e-4)
    np.testing.assert_array_equal(out["preds"]["net1"][..., 2:], maxvals)
    np.testing.assert_array_equal(out["index"], np.arange(len(hm)))
    assert out["image_ids"] == people["image_ids"]
    np.testing.assert_allclose(out["center"], people["center"])
    np.testing.assert_allclose(out["area"], people["area"], rtol=1e-6)
    np.testing.assert_allclose(out["raw_box"], people["raw_box"], rtol=1e-6)
    np.testing.assert_array_equal(out["score"], 1.0)
    assert out["loss"] == 0.0 and out["loss_n"] == len(hm)
    assert out["accuracy"] == 1.0

    # the predict() output doubles as the box dict of evaluate_coco
    _, ap = evaluate_coco(out["preds"]["net1"], out, out["image_ids"], ANN_FILE, "val2017",
                          str(tmp_path), COCO)
    assert ap == pytest.approx(1.0, abs=1e-9)


def test_averaged_outputs_cost_no_forward(fixture_case):
    people, hm, samples = fixture_case
    calls = []

    def counted(model):
        return lambda x: calls.append(1) or model(x)

    loader = DataLoader(samples, batch_size=4, shuffle=False)
    out = predict({"net1": counted(Lookup(hm)), "net2": counted(Lookup(hm, 0.5))}, loader, "cpu",
                  progress=False, averages={"ensemble": ["net1", "net2"]})
    assert len(calls) == 2 * len(loader)
    assert set(out["preds"]) == {"net1", "net2", "ensemble"}
    net1, ens = out["preds"]["net1"], out["preds"]["ensemble"]
    np.testing.assert_array_equal(ens[..., :2], net1[..., :2])
    np.testing.assert_allclose(ens[..., 2], net1[..., 2] * 0.75, atol=1e-7)
    assert out["loss"] is None  # no loss_fn given


def _union_maps(joints, pair_symmetric):
    """Union-space heatmaps [1, 24, 64, 48] for crop joints [24, 2] (optionally mirrored pairs)."""
    joints = joints.copy()
    if pair_symmetric:
        for a, b in UNION.flip_pairs:
            joints[b] = joints[a]
    target, _ = generate_target(joints, np.ones(24), IMAGE_SIZE, HEATMAP_SIZE, 2)
    return target[None].astype(np.float32)


def _flip_loader(hm):
    people = {"image_ids": [1], "center": np.array([[96.0, 128.0]], np.float32),
              "scale": np.array([[0.96, 1.28]], np.float32), "raw_box": np.zeros((1, 4))}
    samples = make_samples(hm, people)
    samples[0]["image"] = torch.from_numpy(hm[0])  # identity model: the image is the heatmap
    return DataLoader(samples, batch_size=1)


@pytest.mark.parametrize("mode,peak", [("shift", 0.5 * (1 + np.exp(-1 / 8))),
                                       ("grid", 0.5 * (1.25 + 0.75 * np.exp(-1 / 8)))])
def test_flip_test_with_a_mirror_symmetric_model(mode, peak):
    """An identity model on pair-symmetric maps is flip-equivariant: the flip test only adds the
    re-alignment shift, which moves each peak a quarter heatmap pixel to the right."""
    rng = np.random.default_rng(0)
    joints = np.stack([rng.integers(3, 44, 24), rng.integers(3, 60, 24)], 1) * 4.0
    hm = _union_maps(joints, pair_symmetric=True)
    plain = predict({"m": lambda x: x}, _flip_loader(hm), "cpu", progress=False)["preds"]["m"]
    flipped = predict({"m": lambda x: x}, _flip_loader(hm), "cpu", flip_test=True,
                      flip_pairs=UNION.flip_pairs, shift_mode=mode, progress=False)["preds"]["m"]
    stride = 0.96 * 200 / HEATMAP_SIZE[0]  # image px per heatmap px
    np.testing.assert_allclose(flipped[..., 0] - plain[..., 0], 0.25 * stride, atol=1e-4)
    # 'grid' resamples rows at i + ~2e-6 (float32), and the quarter-pixel refinement follows the
    # sign of that noise: y may move by a quarter heatmap pixel (4 image px per heatmap px here).
    y_tol = 1e-4 if mode == "shift" else 0.25 * 4.0 + 1e-4
    np.testing.assert_allclose(flipped[..., 1], plain[..., 1], atol=y_tol)
    np.testing.assert_allclose(flipped[..., 2], peak, atol=1e-5)


def test_flip_test_swaps_pairs_and_shifts_one_column():
    rng = np.random.default_rng(1)
    joints = np.stack([rng.integers(0, 48, 24), rng.integers(0, 64, 24)], 1) * 4.0
    hm = _union_maps(joints, pair_symmetric=False)
    perm = np.arange(24)
    for a, b in UNION.flip_pairs:
        perm[a], perm[b] = b, a
    swapped = hm[:, perm]
    shifted = np.concatenate([swapped[..., :1], swapped[..., :-1]], axis=-1)
    expect, expect_max = get_final_preds(0.5 * (hm + shifted), [[96.0, 128.0]], [[0.96, 1.28]])
    got = predict({"m": lambda x: x}, _flip_loader(hm), "cpu", flip_test=True,
                  flip_pairs=UNION.flip_pairs, progress=False)["preds"]["m"]
    np.testing.assert_allclose(got[..., :2], expect, atol=1e-4)
    np.testing.assert_allclose(got[..., 2:], expect_max, atol=1e-6)


def test_flip_test_needs_pairs_and_a_known_shift():
    loader = _flip_loader(_union_maps(np.full((24, 2), 50.0), False))
    with pytest.raises(ValueError, match="flip_pairs"):
        predict({"m": lambda x: x}, loader, "cpu", flip_test=True, progress=False)
    with pytest.raises(ValueError, match="shift_mode"):
        predict({"m": lambda x: x}, loader, "cpu", shift_mode="roll", progress=False)


def test_merge_results_restores_dataset_order(fixture_case):
    people, hm, samples = fixture_case
    model = {"net1": Lookup(hm)}
    full = predict(model, DataLoader(samples, batch_size=4), "cpu", progress=False)
    # two shards as a distributed sampler deals them: interleaved, the last one padded
    shard0 = [samples[i] for i in range(0, 12, 2)]
    shard1 = [samples[i] for i in range(1, 12, 2)] + [samples[0]]
    parts = [predict(model, DataLoader(s, batch_size=3), "cpu", progress=False)
             for s in (shard1, shard0)]
    merged = merge_results(parts)
    np.testing.assert_array_equal(merged["index"], np.arange(12))
    np.testing.assert_array_equal(merged["preds"]["net1"], full["preds"]["net1"])
    np.testing.assert_array_equal(merged["center"], full["center"])
    assert merged["image_ids"] == full["image_ids"]
    assert merged["accuracy"] == 1.0 and merged["accuracy_n"] == sum(p["accuracy_n"] for p in parts)


def test_real_coco_pipeline_round_trip(tmp_path):
    """Fixture COCO val through the dataset, sample transform and loader; a stand-in that answers
    each batch with that batch's own targets decodes back to the GT: AP 1 in both joint spaces."""
    from semipose.data.coco import CocoDataset
    from semipose.data.dataset import PoseDataset
    from semipose.transforms.sample import SampleTransform

    root = os.path.join(os.path.dirname(__file__), "data", "fixtures")
    for num_joints in (UNION.num_joints, COCO.num_joints):
        coco = CocoDataset(root, "val", num_joints, IMAGE_SIZE, is_train=False)
        transform = SampleTransform(IMAGE_SIZE, HEATMAP_SIZE, 2, coco.flip_pairs, is_train=False)
        loader = DataLoader(PoseDataset(coco.records, transform, is_train=False, source=coco),
                            batch_size=5, shuffle=False)
        answers = iter([batch["target"] for batch in loader])
        out = predict({"net1": lambda x: next(answers)}, loader, "cpu", progress=False)
        assert out["accuracy"] == 1.0
        _, ap = evaluate_coco(out["preds"]["net1"], out, out["image_ids"], coco.annotation_file,
                              coco.image_set, str(tmp_path), coco.joint_set)
        assert ap == pytest.approx(1.0, abs=1e-9)

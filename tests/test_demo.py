"""Inference on user images (pose_estimation/demo.py, semipose.inference): crops equal to valid.py's,
box sources, PoseDual nets, video, drawings and the one-line errors."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import make_synthetic
from entry_points import load_script
from semipose.config import load_cfg
from semipose.data.build import build_val_dataset
from semipose.data.imageio import read_image
from semipose.data.keypoints import COCO, model_joint_set, to_native
from semipose.data.loaders import build_loader
from semipose.engine.visualize import _LEFT, draw_pose
from semipose.evaluation.predict import predict
from semipose.inference import (PoseEstimator, image_id_of, load_method, read_annotation_boxes,
                                read_detections)
from semipose.methods import build_method
from semipose.models.build import build_net
from semipose.models.weights import nets_state_dict
from semipose.transforms.affine import box_to_center_scale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
TINY = ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.EXTRA.HEATMAP_SIZE", "[16, 16]",
        "MODEL.EXTRA.SIGMA", "1.0", "MODEL.EXTRA.NUM_DECONV_FILTERS", "[32, 32, 32]",
        "MODEL.EXTRA.BASE_WIDTH", "16", "TEST.BATCH_SIZE", "4", "WORKERS", "0",
        "SYNTHETIC.GENERATE_IF_MISSING", "False", "DEVICE", "cpu"]
demo = load_script("demo")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_demo", seed=5, num_train=1, num_val=3)


def _opts(root: str, out: str):
    return TINY + ["DATASET.ROOT", root, "OUTPUT_DIR", out]


def _model_file(cfg_path: str, root: str, tmp: str, seed: int = 0) -> str:
    """Random weights (fixed seed) saved in this project's checkpoint layout."""
    cfg = load_cfg(cfg_path, _opts(root, tmp))
    torch.manual_seed(seed)
    n = 2 if cfg.MODEL.NAME == "pose_dual" else 1
    nets = build_method(cfg, [build_net(cfg) for _ in range(n)]).nets
    path = os.path.join(tmp, f"{cfg.MODEL.NAME}.pth.tar")
    torch.save(nets_state_dict(nets), path)
    return path


@pytest.fixture(scope="module")
def sup_file(data_root, tmp_path_factory) -> str:
    return _model_file(SUPERVISED, data_root, str(tmp_path_factory.mktemp("sup")))


def _val(root: str) -> str:
    return os.path.join(root, "coco", "images", "val2017")


def _ann(root: str) -> str:
    return os.path.join(root, "coco", "annotations", "person_keypoints_val2017.json")


def _run(*args: str) -> int:
    return demo.main(["--no-progress", *args])


def test_annotation_boxes_reproduce_valid_predictions(data_root, sup_file, tmp_path):
    """The demo with the val set's GT boxes gives valid.py's keypoints, person by person."""
    out = str(tmp_path / "demo")
    code = _run("--cfg", SUPERVISED, "--model-file", sup_file, "--folder", _val(data_root),
                "--annotations", _ann(data_root), "--out", out, *_opts(data_root, out))
    assert code == 0
    with open(os.path.join(out, "keypoints_results.json")) as f:
        results = json.load(f)

    cfg = load_cfg(SUPERVISED, _opts(data_root, out))
    method, _ = load_method(cfg, sup_file, "cpu")
    val = build_val_dataset(cfg)
    ref = predict(method.eval_models(), build_loader(val, 4, 0, shuffle=False), "cpu",
                  progress=False)
    ref_kpts = to_native(ref["preds"]["net1"], model_joint_set(24, COCO), COCO)
    assert len(results) == len(val) > 0
    by_image = {}
    for k, iid in enumerate(ref["image_ids"]):
        by_image.setdefault(iid, []).append(ref_kpts[k])
    got = {}
    for r in results:
        got.setdefault(r["image_id"], []).append(np.asarray(r["keypoints"]).reshape(17, 3))
    assert sorted(got) == sorted(by_image)
    for iid, people in by_image.items():
        np.testing.assert_allclose(np.stack(got[iid]), np.stack(people), atol=2e-3)
    pngs = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    assert len(pngs) == len(os.listdir(_val(data_root)))


def test_whole_image_default_draws_one_person(data_root, sup_file, tmp_path, capsys):
    image = os.path.join(_val(data_root), sorted(os.listdir(_val(data_root)))[0])
    out = str(tmp_path / "one")
    assert _run("--cfg", SUPERVISED, "--model-file", sup_file, "--image", image, "--out", out,
                *_opts(data_root, out)) == 0
    assert "whole image" in capsys.readouterr().out
    with open(os.path.join(out, "keypoints_results.json")) as f:
        (person,) = json.load(f)
    src = read_image(image)
    kpts = np.asarray(person["keypoints"]).reshape(17, 3)
    assert person["image_id"] == image_id_of(image) and person["category_id"] == 1
    assert person["bbox"] == [0.0, 0.0, float(src.shape[1]), float(src.shape[0])]
    assert np.isfinite(kpts).all()
    # every joint lies in the crop of the whole-image box (aspect-fitted, padded 1.25)
    (cx, cy), (sw, sh) = box_to_center_scale(person["bbox"], 1.0)
    assert (np.abs(kpts[:, 0] - cx) <= sw * 100 + 1).all()
    assert (np.abs(kpts[:, 1] - cy) <= sh * 100 + 1).all()
    drawn = cv2.imread(os.path.join(out, os.path.splitext(os.path.basename(image))[0] + ".png"))
    assert drawn.shape == src.shape
    assert (np.abs(drawn.astype(int) - src.astype(int)).sum(axis=2) > 30).mean() > 0.001


def test_detection_boxes_by_image_id(data_root, sup_file, tmp_path):
    det_file = os.path.join(data_root, "coco", "person_detection_results",
                            "synthetic_val2017_detections.json")
    with open(det_file) as f:
        dets = json.load(f)
    thre = float(np.median([d["score"] for d in dets]))
    table = read_detections(det_file, thre)
    out = str(tmp_path / "det")
    assert _run("--cfg", SUPERVISED, "--model-file", sup_file, "--folder", _val(data_root),
                "--boxes", det_file, "--box-thre", str(thre), "--out", out,
                *_opts(data_root, out)) == 0
    with open(os.path.join(out, "keypoints_results.json")) as f:
        results = json.load(f)
    assert len(results) == sum(len(v) for v in table.values()) > 0
    assert {r["image_id"] for r in results} == set(table)
    for r in results:  # rescored: box score x mean confident-joint score, never above the box
        box_score = max(s for b, s in table[r["image_id"]]
                        if np.allclose(b, r["bbox"], atol=0.01))
        assert 0.0 <= r["score"] <= box_score * max(1.0, max(r["keypoints"][2::3])) + 1e-6


def test_posedual_ensemble_is_the_mean_of_both_nets(data_root, tmp_path):
    path = _model_file(POSEDUAL, data_root, str(tmp_path))
    cfg = load_cfg(POSEDUAL, _opts(data_root, str(tmp_path)))
    method, layout = load_method(cfg, path, "cpu")
    assert layout == "semipose"
    x = torch.randn(3, 3, 64, 64)
    maps = {n: PoseEstimator(method, cfg, "cpu", net=n).heatmaps(x)
            for n in ("net1", "net2", "ensemble")}
    np.testing.assert_allclose(maps["ensemble"], 0.5 * (maps["net1"] + maps["net2"]), atol=1e-6)
    assert np.abs(maps["net1"] - maps["net2"]).max() > 1e-4  # two different nets
    with pytest.raises(ValueError, match="offers"):
        PoseEstimator(method, cfg, "cpu", net="teacher")
    # flip test: batching changes nothing
    est = PoseEstimator(method, cfg, "cpu", net="ensemble", flip_test=True, batch_size=2)
    whole = PoseEstimator(method, cfg, "cpu", net="ensemble", flip_test=True, batch_size=8)
    np.testing.assert_allclose(est.heatmaps(x), whole.heatmaps(x), atol=1e-5)


def test_video_frames_become_an_annotated_video(data_root, sup_file, tmp_path):
    frames = [read_image(os.path.join(_val(data_root), f))
              for f in sorted(os.listdir(_val(data_root)))]
    h, w = frames[0].shape[:2]
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (w, h))
    for k in range(4):
        writer.write(cv2.resize(frames[k % len(frames)], (w, h)))
    writer.release()
    out = str(tmp_path / "vid")
    assert _run("--cfg", SUPERVISED, "--model-file", sup_file, "--video", video, "--out", out,
                *_opts(data_root, out)) == 0
    cap = cv2.VideoCapture(os.path.join(out, "clip_pose.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 4
    with open(os.path.join(out, "keypoints_results.json")) as f:
        assert [r["image_id"] for r in json.load(f)] == [0, 1, 2, 3]
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_draw_pose_fades_low_confidence_joints():
    img = np.zeros((40, 60, 3), np.uint8)
    # COCO: 5 lsho, 7 lelb (left, blue); the shoulder is confident, the elbow is not.
    kpts = np.zeros((17, 3), np.float32)
    kpts[5] = (10, 20, 0.9)
    kpts[7] = (45, 20, 0.05)
    draw_pose(img, kpts, COCO, thr=0.2, fade=False)
    assert img[20, 45].sum() == 0 and tuple(img[20, 10]) == _LEFT  # skipped / full colour
    img[:] = 0
    draw_pose(img, kpts, COCO, thr=0.2, fade=True)
    faded = img[20, 45].astype(int)
    assert tuple(img[20, 10]) == _LEFT
    assert 0 < faded.max() < max(_LEFT)  # drawn, at partial opacity
    assert img[20, 28].sum() > 0  # the limb between them, faded with its weak end


@pytest.mark.parametrize("case, needle", [
    ("no_model", "model file"), ("bad_boxes", "not valid JSON"), ("dict_boxes", "a list"),
    ("two_inputs", "exactly one"), ("no_detector_weights", "--detector-weights"),
    ("missing_detector_weights", "not found"), ("bad_net", "offers"),
    ("bad_video", "cannot open video")])
def test_user_errors_are_one_line(case, needle, data_root, sup_file, tmp_path, capsys):
    image = os.path.join(_val(data_root), sorted(os.listdir(_val(data_root)))[0])
    bad = tmp_path / "boxes.json"
    bad.write_text('{"image_id": 1}' if case == "dict_boxes" else "[{")
    bad_video = tmp_path / "clip.mp4"
    bad_video.write_bytes(b"not a video" * 10)
    args = {"no_model": ["--model-file", str(tmp_path / "none.pth"), "--image", image],
            "bad_boxes": ["--image", image, "--boxes", str(bad)],
            "dict_boxes": ["--image", image, "--boxes", str(bad)],
            "two_inputs": ["--image", image, "--folder", _val(data_root)],
            "no_detector_weights": ["--image", image, "--detector", "fasterrcnn_resnet50_fpn"],
            "missing_detector_weights": ["--image", image, "--detector",
                                         "fasterrcnn_resnet50_fpn", "--detector-weights",
                                         str(tmp_path / "det.pth")],
            "bad_net": ["--image", image, "--net", "net2"],
            "bad_video": ["--video", str(bad_video)]}[case]
    if "--model-file" not in args:
        args = ["--model-file", sup_file] + args
    code = _run("--cfg", SUPERVISED, "--out", str(tmp_path / "o"), *args,
                *_opts(data_root, str(tmp_path)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1
    assert needle in err
    if case in ("bad_boxes", "dict_boxes"):
        assert str(bad) in err
    if case == "bad_video":  # names the file; the unlabeled-folder advice is for training only
        assert str(bad_video) in err and "unlabeled" not in err


def test_annotation_and_id_helpers(data_root):
    boxes, names = read_annotation_boxes(_ann(data_root))
    assert set(boxes) <= set(names.values()) and len(boxes) > 0
    first = sorted(names)[0]
    assert image_id_of(os.path.join("x", first), names) == names[first]
    assert image_id_of("a/000000397133.jpg") == 397133
    assert image_id_of("a/holiday.jpg") == "holiday.jpg"


def test_onnx_export_round_trip(data_root, tmp_path, capsys):
    """PoseDual ensemble as one ONNX graph: dynamic batch, onnxruntime == PyTorch within 1e-4 on
    random and real validation crops."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = _model_file(POSEDUAL, data_root, str(tmp_path))
    out = str(tmp_path / "dual.onnx")
    export = load_script("export")
    assert export.main(["--cfg", POSEDUAL, "--model-file", path, "--net", "ensemble",
                        "--out", out, "--num-check", "3", *_opts(data_root, str(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "random crops" in printed and "validation crops" in printed
    cfg = load_cfg(POSEDUAL, _opts(data_root, str(tmp_path)))
    method, _ = load_method(cfg, path, "cpu")
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 64, 64)  # another batch size than the export's dummy input
    got = session.run(["heatmaps"], {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = 0.5 * (method.nets["net1"](x) + method.nets["net2"](x))
    assert got.shape == (5, 24, 16, 16)
    assert np.abs(got - ref.numpy()).max() <= 1e-4
    assert export.main(["--cfg", POSEDUAL, "--model-file", path, "--net", "teacher", "--out",
                        out, *_opts(data_root, str(tmp_path))]) == 2

"""The Python interface at the package root: load_cfg from a file or a mapping with overrides,
train and evaluate in this process, and PoseEstimator.from_checkpoint on an image array giving
the demo's keypoints."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

import semipose
from conftest import make_synthetic, script_env, synthetic_opts, tiny
from semipose.commands import main
from semipose.config import load_cfg as load_cfg_file, to_plain
from semipose.data.imageio import read_image
from semipose.errors import ConfigError, MissingFileError, UnknownKeyError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]")


def _yaml(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


# ------------------------------------------------------------------------------- the package
def test_import_stays_light_and_every_name_resolves():
    out = subprocess.run([sys.executable, "-c", "import sys, semipose; "
                          "print(sorted(semipose.__all__), 'torch' in sys.modules)"],
                         env=script_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split("] ")[1].strip() == "False"
    from semipose import api, inference
    from semipose.engine import trainer
    assert semipose.load_cfg is api.load_cfg and semipose.train is api.train
    assert semipose.evaluate is api.evaluate and semipose.TrainResult is api.TrainResult
    assert semipose.PoseEstimator is inference.PoseEstimator
    assert semipose.Trainer is trainer.Trainer
    assert set(semipose.__all__) == {"__version__", "load_cfg", "train", "evaluate",
                                     "TrainResult", "PoseEstimator", "Trainer"}
    assert set(semipose.__all__) <= set(dir(semipose))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        semipose.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------- load_cfg
def test_load_cfg_from_a_mapping_equals_the_file(tmp_path, monkeypatch):
    assert semipose.load_cfg(_yaml(SUPERVISED)).dump() == load_cfg_file(SUPERVISED).dump()
    assert semipose.load_cfg(SUPERVISED).dump() == load_cfg_file(SUPERVISED).dump()
    # a file over a _BASE_ file, and the same keys as a mapping (tuples for lists, a reference
    # key name, a partial MODEL.EXTRA)
    shutil.copy(SUPERVISED, tmp_path / "base.yaml")
    (tmp_path / "child.yaml").write_text(
        "_BASE_: base.yaml\nMASK_JOINT_NUM: 3\nTRAIN:\n  LR: 0.002\n"
        "MODEL:\n  IMAGE_SIZE: [128, 192]\n  EXTRA:\n    SIGMA: 3\n    HEATMAP_SIZE: [32, 48]\n")
    mapping = {"_BASE_": "base.yaml", "MASK_JOINT_NUM": 3, "TRAIN": {"LR": 0.002},
               "MODEL": {"IMAGE_SIZE": (128, 192),
                         "EXTRA": {"SIGMA": 3, "HEATMAP_SIZE": (32, 48)}}}
    from_file = load_cfg_file(str(tmp_path / "child.yaml"))
    from_dict = semipose.load_cfg(mapping, base_dir=str(tmp_path))
    assert from_dict.dump() == from_file.dump()
    assert from_dict.is_frozen() and from_dict.SSL.HARD.JOINT_CUTOUT == 3
    assert from_dict.MODEL.EXTRA.SIGMA == 3 and from_dict.MODEL.EXTRA.NUM_LAYERS == 18
    monkeypatch.chdir(tmp_path)  # _BASE_ of a mapping: relative to the current folder
    assert semipose.load_cfg(mapping).dump() == from_file.dump()
    # a loaded config is a mapping too
    assert semipose.load_cfg(from_file).dump() == from_file.dump()


def test_overrides_as_a_list_or_a_dict():
    flat = ["TRAIN.LR", "0.002", "MODEL.IMAGE_SIZE", "[128, 192]", "MODEL.EXTRA.HEATMAP_SIZE",
            "[32, 48]", "TEST.FLIP_TEST", "True"]
    expected = load_cfg_file(SUPERVISED, flat).dump()
    assert semipose.load_cfg(SUPERVISED, flat).dump() == expected
    as_dict = {"TRAIN.LR": 0.002, "MODEL.IMAGE_SIZE": [128, 192],
               "MODEL.EXTRA.HEATMAP_SIZE": (32, 48), "TEST.FLIP_TEST": True}
    assert semipose.load_cfg(SUPERVISED, as_dict).dump() == expected
    assert semipose.load_cfg(_yaml(SUPERVISED), as_dict).dump() == expected
    assert semipose.load_cfg(_yaml(SUPERVISED), flat).dump() == expected
    cfg = semipose.load_cfg(SUPERVISED, as_dict)
    assert (cfg.TRAIN.LR, cfg.MODEL.IMAGE_SIZE, cfg.TEST.FLIP_TEST) == (0.002, (128, 192), True)


def test_load_cfg_errors_name_the_key_and_where_it_came_from(tmp_path):
    with pytest.raises(UnknownKeyError, match=r"unknown config key TRAIN.LRR in the config "
                                              r"dict; did you mean TRAIN.LR\?"):
        semipose.load_cfg({"TRAIN": {"LRR": 0.1}})
    with pytest.raises(UnknownKeyError, match="unknown config key TRAIN.LRR in overrides"):
        semipose.load_cfg(SUPERVISED, {"TRAIN.LRR": 0.1})
    with pytest.raises(ConfigError, match="must be KEY VALUE pairs"):
        semipose.load_cfg(SUPERVISED, ["TRAIN.LR"])
    with pytest.raises(MissingFileError, match="_BASE_ file 'nope.yaml' not found"):
        semipose.load_cfg({"_BASE_": "nope.yaml"}, base_dir=str(tmp_path))
    with pytest.raises(TypeError, match="a YAML path or a mapping"):
        semipose.load_cfg(42)
    with pytest.raises(TypeError, match="not the string"):
        semipose.load_cfg(SUPERVISED, "TRAIN.LR 0.1")


# ------------------------------------------------------------------- train, evaluate, predict
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_api", seed=4, num_train=4, num_val=2)


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory):
    """One epoch trained from Python on a config made from a mapping."""
    out = str(tmp_path_factory.mktemp("api_out"))
    opts = synthetic_opts(data_root, out, TINY)
    result = semipose.train(_yaml(SUPERVISED), name="from_python", overrides=opts)
    return result, opts, out


def test_train_from_python_writes_a_run(run):
    result, opts, out = run
    experiment = os.path.join(out, "coco", "pose_resnet_18", "from_python")
    assert os.path.dirname(result.run_dir) == experiment
    assert os.path.realpath(os.path.join(experiment, "latest")) == result.run_dir
    with open(os.path.join(result.run_dir, "results.json")) as f:
        rows = json.load(f)["rows"]
    assert list(result.results) == list(rows) == ["net1"]
    metrics, main_metric = result.results["net1"]
    assert dict(metrics) == rows["net1"]["metrics"] and main_metric == rows["net1"]["main"]
    assert result.main_metrics == {"net1": rows["net1"]["main"]}
    assert os.path.isfile(result.model_file)
    # the run's config is the mapping with the overrides, as the file path gives it
    assert _yaml(os.path.join(result.run_dir, "config.yaml")) == \
        to_plain(load_cfg_file(SUPERVISED, opts))
    assert result.trainer.state.epoch == 1


def test_evaluate_scores_the_final_weights_as_training_did(run):
    result, opts, _ = run
    cfg = semipose.load_cfg(SUPERVISED, opts)
    again = semipose.evaluate(cfg, result.model_file, name="from_python")
    assert list(again) == ["net1"]
    assert dict(again["net1"][0]) == pytest.approx(dict(result.results["net1"][0]), abs=1e-9)
    # without a weights file: the latest run of the experiment named like the training's
    latest = semipose.evaluate(SUPERVISED, name="from_python", overrides=opts)
    assert dict(latest["net1"][0]) == pytest.approx(dict(again["net1"][0]), abs=1e-9)


def test_pose_estimator_on_an_array_equals_the_demo(run, data_root, tmp_path, capsys):
    result, opts, _ = run
    val = os.path.join(data_root, "coco", "images", "val2017")
    image_path = os.path.join(val, sorted(os.listdir(val))[0])
    demo_out = str(tmp_path / "demo")
    assert main(["demo", "--cfg", SUPERVISED, "--model-file", result.model_file, "--image",
                 image_path, "--out", demo_out, "--no-progress", *opts]) == 0
    with open(os.path.join(demo_out, "keypoints_results.json")) as f:
        (person,) = json.load(f)
    demo_kpts = np.asarray(person["keypoints"]).reshape(1, -1, 3)

    cfg = semipose.load_cfg(SUPERVISED, opts)
    pose = semipose.PoseEstimator.from_checkpoint(cfg, result.model_file)
    image = read_image(image_path)
    kpts = pose(image)  # the whole image as the box, as the demo's default
    assert kpts.shape == (1, 17, 3) and kpts.dtype == np.float32
    np.testing.assert_allclose(kpts, demo_kpts, atol=6e-4)  # the demo rounds to 3 decimals
    assert pose.layout and pose.joint_set.num_joints == 17
    # boxes given: the whole-image box gives the same, each box its own person
    h, w = image.shape[:2]
    two = pose(image, np.array([[0, 0, w, h], [w / 4, h / 4, w / 2, h / 2]]))
    assert two.shape == (2, 17, 3)
    # (a batch of two runs other convolution kernels than a batch of one: float rounding only)
    np.testing.assert_allclose(two[0], kpts[0], rtol=1e-5, atol=1e-6)
    # the config as a mapping or a path gives the same estimator
    from_mapping = semipose.PoseEstimator.from_checkpoint(to_plain(cfg), result.model_file)
    np.testing.assert_array_equal(from_mapping(image), kpts)
    # an RGB array (PIL, video readers) with channels='rgb' gives the BGR result exactly; the
    # same array read as BGR does not (the nets see swapped colours)
    rgb = semipose.PoseEstimator.from_checkpoint(cfg, result.model_file, channels="rgb")
    np.testing.assert_array_equal(rgb(np.ascontiguousarray(image[:, :, ::-1])), kpts)
    assert not np.array_equal(pose(np.ascontiguousarray(image[:, :, ::-1])), kpts)
    # nets trained on RGB crops (DATASET.COLOR_RGB True) get RGB from either input order
    cfg_rgb = semipose.load_cfg(SUPERVISED, opts + ["DATASET.COLOR_RGB", "True"])
    on_rgb = {c: semipose.PoseEstimator.from_checkpoint(cfg_rgb, result.model_file, channels=c)
              for c in ("bgr", "rgb")}
    assert (on_rgb["bgr"].swap_channels, on_rgb["rgb"].swap_channels, rgb.swap_channels,
            pose.swap_channels) == (True, False, True, False)
    np.testing.assert_array_equal(on_rgb["bgr"](image), rgb(image))
    with pytest.raises(ValueError, match="channels is 'gbr'"):
        semipose.PoseEstimator.from_checkpoint(cfg, result.model_file, channels="gbr")
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8 array .* dtype float32"):
        pose(image.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        pose(image[..., 0])

"""Config loading: every experiment file loads, reference values, EXTRA semantics, errors, helpers."""
import glob
import os

import pytest
import yaml

from semipose.config import (ConfigError, ConfigTypeError, UnknownKeyError, apply_dirs, dump_cfg,
                             experiment_dir, get_defaults, load_cfg, model_name)
from semipose.methods.parts import crop_scale_advice
from semipose.methods.registry import placeholder_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP = os.path.join(ROOT, "experiments")
ALL_YAMLS = sorted(glob.glob(os.path.join(EXP, "**", "*.yaml"), recursive=True))
COCO1K = os.path.join(EXP, "mix_coco_coco/res18/256x192_COCO1K_PoseDual.yaml")
HRNET = os.path.join(EXP, "mix_coco_coco/hrnet/w48_384x288_COCO_COCOunlabel_PoseDual_JointCut5.yaml")
REFERENCE_YAMLS = [
    "mix_coco_coco/res18/256x192_COCO1K_PoseCons.yaml",
    "mix_coco_coco/res18/256x192_COCO1K_PoseDual.yaml",
    "mix_coco_coco/res18/256x192_COCO1K_PoseDual_JointCutout.yaml",
    "mix_coco_coco/res18/256x192_COCO1K_PoseDual_RandAug.yaml",
    "mix_coco_coco/res18/256x192_COCO5K_PoseDual.yaml",
    "mix_coco_coco/res18/256x192_COCO10K_PoseDual.yaml",
    "mix_coco_coco/res50/256x192_COCO_COCOunlabel_PoseDual_JointCut.yaml",
    "mix_coco_coco/res101/256x192_COCO_COCOunlabel_PoseDual_JointCut.yaml",
    "mix_coco_coco/res152/256x192_COCO_COCOunlabel_PoseDual_JointCut.yaml",
    "mix_coco_coco/hrnet/w48_384x288_COCO_COCOunlabel_PoseDual_JointCut5.yaml",
    "mix_mpii_ai/res18/256x256_PoseDual_JointCut5.yaml",
]


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_reference_files_present():
    assert len(ALL_YAMLS) >= 18
    for rel in REFERENCE_YAMLS:
        assert os.path.isfile(os.path.join(EXP, rel)), rel


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: os.path.relpath(p, EXP))
def test_every_experiment_loads(path, tmp_path):
    opts = []
    with open(path) as f:
        custom = "mix_custom" in f.read() or os.path.relpath(path, EXP).startswith("custom")
    if custom:
        # Custom configs (the templates, the quadruped benchmark) read their joint count from
        # <DATASET.ROOT>/dataset.yaml: the benchmark's generated data are not in a fresh checkout.
        (tmp_path / "dataset.yaml").write_text("joints: [a, b, c]\n")
        opts = ["DATASET.ROOT", str(tmp_path)]
    cfg = load_cfg(path, opts)
    assert cfg.is_frozen()
    name, full = model_name(cfg)
    assert name.startswith(cfg.MODEL.NAME + "_")
    assert experiment_dir(cfg, path).endswith(os.path.splitext(os.path.basename(path))[0])
    # No shipped file draws boxes sized for 256x192 crops on a much smaller crop: each runs at
    # (or above) that size or scales its pixel-sized ops (SSL.HARD.CUTOUT_SCALE).
    assert crop_scale_advice(placeholder_method(cfg), cfg.MODEL.IMAGE_SIZE) is None


@pytest.mark.parametrize("rel", REFERENCE_YAMLS)
def test_reference_common_values(rel):
    cfg = load_cfg(os.path.join(EXP, rel))
    assert (cfg.OUTPUT_DIR, cfg.LOG_DIR, cfg.PRINT_FREQ) == ("output", "log", 100)
    assert cfg.CUDNN.BENCHMARK is True and cfg.DATASET.ROOT == "data/"
    assert cfg.DATASET.TEST_SET == "validation" and cfg.MODEL.NUM_JOINTS == 24
    assert cfg.TRAIN.OPTIMIZER == "adam" and cfg.TRAIN.LR == 0.001 and cfg.TRAIN.LR_FACTOR == 0.1
    assert cfg.MODEL.NAME in ("pose_dual", "pose_cons") and cfg.DEBUG.DEBUG is False
    if cfg.DATASET.TEST_DATASET == "coco":
        assert cfg.DATASET.TRAIN_DATASET == "mix_coco_coco" and cfg.TEST.USE_GT_BBOX is True
        assert (cfg.TEST.IN_VIS_THRE, cfg.TEST.OKS_THRE) == (0.2, 0.9)


def test_coco1k_posedual_values():
    cfg = load_cfg(COCO1K)
    assert cfg.TRAIN.END_EPOCH == 30 and tuple(cfg.TRAIN.LR_STEP) == (20, 25)
    assert tuple(cfg.MODEL.IMAGE_SIZE) == (192, 256)
    assert tuple(cfg.MODEL.EXTRA.HEATMAP_SIZE) == (48, 64)
    assert cfg.SSL.HARD.JOINT_CUTOUT == 0 and cfg.DATASET.TRAIN_LEN == 1000 and cfg.GPUS == "2"
    assert cfg.MODEL.EXTRA.SIGMA == 2.0 and cfg.MODEL.EXTRA.NUM_LAYERS == 18
    assert cfg.MODEL.PRETRAINED == "models/pytorch/imagenet/resnet18_5c_gluon_posedual.pth"
    assert cfg.TEST.MODEL_FILE == "models/pytorch/pose_dual/COCO_subset/COCO1K_PoseDual.pth.tar"
    assert model_name(cfg) == ("pose_dual_18", "256x192_pose_dual_18_d256d256d256")


def test_other_reference_values():
    cut = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[2]))
    assert (cut.SSL.HARD.JOINT_CUTOUT == 5 and cut.TRAIN.END_EPOCH == 70
            and tuple(cut.TRAIN.LR_STEP) == (50, 60))
    rand = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[3]))
    assert (rand.SSL.HARD.RAND_AUG is True and rand.SSL.HARD.RAND_MAGNITUDE == 20
            and rand.SSL.HARD.JOINT_CUTOUT == 0)
    k10 = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[5]))
    assert k10.DATASET.TRAIN_LEN == 10000 and tuple(k10.TRAIN.LR_STEP) == (70, 90)
    assert k10.TEST.SAVE_RESULT is False
    cons = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[0]))
    assert model_name(cons)[0] == "pose_cons_18"
    assert cons.TEST.COCO_BBOX_FILE.endswith("COCO_val2017_detections_AP_H_56_person.json")
    r50 = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[6]))
    assert (r50.TRAIN.END_EPOCH, tuple(r50.TRAIN.LR_STEP), r50.TRAIN.RESUME) == (400, (300, 350), True)
    assert r50.DATASET.TRAIN_UNSUP_SET == "unlabeled2017" and r50.DATASET.DATA_FORMAT == "zip"
    assert r50.WORKERS == 8 and model_name(r50)[0] == "pose_dual_50"
    mpii = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[10]))
    assert mpii.DATASET.TRAIN_DATASET == "mix_mpii_ai" and mpii.DATASET.TEST_DATASET == "mpii"
    assert tuple(mpii.MODEL.EXTRA.HEATMAP_SIZE) == (64, 64) and mpii.TEST.MODEL_FILE == ""


def test_hrnet_file_and_extra_replacement():
    cfg = load_cfg(HRNET)
    extra = cfg.MODEL.EXTRA
    assert cfg.MODEL.BACKBONE == "hrnet" and cfg.TRAIN.BATCH_SIZE == 8
    assert tuple(extra.STAGE4.NUM_CHANNELS) == (48, 96, 192, 384) and extra.SIGMA == 3.0
    assert (extra.STAGE3.NUM_MODULES, extra.STAGE4.NUM_MODULES) == (4, 3)
    assert extra.PRETRAINED_LAYERS[-1] == "stage4" and len(extra.PRETRAINED_LAYERS) == 11
    assert tuple(cfg.MODEL.IMAGE_SIZE) == (288, 384) and tuple(extra.HEATMAP_SIZE) == (72, 96)
    # EXTRA is replaced by the HRNet set: no ResNet keys survive from the defaults
    assert "NUM_LAYERS" not in extra and "NUM_DECONV_FILTERS" not in extra
    assert model_name(cfg) == ("pose_dual_48", "384x288_pose_dual_48_")
    # and a ResNet file's EXTRA has no HRNet keys
    assert "STAGE2" not in load_cfg(COCO1K).MODEL.EXTRA


def test_partial_extra_is_filled_from_template(tmp_path):
    path = write(tmp_path, "MODEL:\n  NAME: pose_hrnet\n  EXTRA:\n    SIGMA: 3\n")
    cfg = load_cfg(path)
    assert cfg.MODEL.EXTRA.SIGMA == 3.0 and tuple(cfg.MODEL.EXTRA.STAGE2.NUM_CHANNELS) == (32, 64)
    assert load_cfg(write(tmp_path, "MODEL:\n  NAME: pose_hrnet\n", "b.yaml")).MODEL.EXTRA.STAGE4.NUM_BRANCHES == 4
    with pytest.raises(ConfigError, match="HRNet"):
        load_cfg(write(tmp_path, "MODEL:\n  NAME: pose_resnet\n  EXTRA:\n    STAGE2: {NUM_MODULES: 1}\n", "c.yaml"))


def test_unknown_key_message(tmp_path):
    path = write(tmp_path, "TRAIN:\n  LRR: 0.1\n")
    with pytest.raises(UnknownKeyError) as err:
        load_cfg(path)
    msg = str(err.value)
    assert "TRAIN.LRR" in msg and path in msg and "TRAIN.LR" in msg
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownKeyError, match=r"MODEL\.EXTRA\.NUM_LAYER .*NUM_LAYERS"):
        load_cfg(write(tmp_path, "MODEL:\n  EXTRA:\n    NUM_LAYER: 18\n", "b.yaml"))
    with pytest.raises(UnknownKeyError, match="command line.*TEST.OKS_THRE"):
        load_cfg(COCO1K, ["TEST.OKS_THR", "0.5"])
    with pytest.raises(UnknownKeyError, match="MODEL.IMAGE_SIZE"):  # right name, wrong section
        load_cfg(write(tmp_path, "TRAIN:\n  IMAGE_SIZE: [1, 2]\n", "c.yaml"))


def test_bad_type_message(tmp_path):
    with pytest.raises(ConfigTypeError) as err:
        load_cfg(write(tmp_path, "TRAIN:\n  END_EPOCH: ten\n"))
    msg = str(err.value)
    assert "TRAIN.END_EPOCH" in msg and "'ten'" in msg and "int" in msg
    with pytest.raises(ConfigTypeError, match=r"TRAIN\.LR_STEP\[1\]"):
        load_cfg(write(tmp_path, "TRAIN:\n  LR_STEP: [1, x]\n", "b.yaml"))
    with pytest.raises(ConfigTypeError, match="MODEL.IMAGE_SIZE"):
        load_cfg(write(tmp_path, "MODEL:\n  IMAGE_SIZE: [1, 2, 3]\n", "c.yaml"))
    with pytest.raises(ConfigTypeError, match="FLIP_TEST"):
        load_cfg(COCO1K, ["TEST.FLIP_TEST", "3"])


def test_enumerated_values(tmp_path):
    with pytest.raises(ConfigError, match=r"MODEL\.NAME is 'pose_foo'.*pose_dual"):
        load_cfg(write(tmp_path, "MODEL:\n  NAME: pose_foo\n"))
    with pytest.raises(ConfigError, match="TEST.POST_TYPE"):
        load_cfg(COCO1K, ["TEST.POST_TYPE", "argmax"])
    with pytest.raises(ConfigError, match="DATASET.TRAIN_DATASET"):
        load_cfg(COCO1K, ["DATASET.TRAIN_DATASET", "coco17"])
    with pytest.raises(ConfigError, match="TRAIN.AMP"):
        load_cfg(COCO1K, ["TRAIN.AMP", "fp8"])
    with pytest.raises(ConfigError, match="NUM_DECONV_FILTERS"):
        load_cfg(COCO1K, ["MODEL.EXTRA.NUM_DECONV_FILTERS", "[64, 64]"])
    for path in (COCO1K, HRNET):  # the head kernel is checked for every backbone that has one
        with pytest.raises(ConfigError, match=r"FINAL_CONV_KERNEL is 2; choose one of \[1, 3\]"):
            load_cfg(path, ["MODEL.EXTRA.FINAL_CONV_KERNEL", "2"])


def test_conversions(tmp_path):
    cfg = load_cfg(write(tmp_path, "MODEL:\n  IMAGE_SIZE: 256\n  EXTRA:\n    HEATMAP_SIZE: 64\n"
                                   "TRAIN:\n  LR: 1e-3\n  LR_STEP: [3]\nGPUS: 0\n"))
    assert cfg.MODEL.IMAGE_SIZE == (256, 256) and cfg.MODEL.EXTRA.HEATMAP_SIZE == (64, 64)
    assert cfg.TRAIN.LR == 0.001 and isinstance(cfg.TRAIN.LR, float)
    assert cfg.TRAIN.LR_STEP == (3,) and cfg.GPUS == "0"
    assert load_cfg(write(tmp_path, "", "empty.yaml")) == load_cfg(write(tmp_path, "{}", "e2.yaml"))


def test_speed_switches(tmp_path):
    """TRAIN.COMPILE names a torch.compile mode; the former booleans still read (True = the
    'default' mode) from YAML, the command line and configs dumped before the change.
    TRAIN.ADAM_IMPL picks the Adam kernels."""
    assert load_cfg(COCO1K).TRAIN.COMPILE == "" and load_cfg(COCO1K).TRAIN.ADAM_IMPL == "auto"
    for text, mode in (("true", "default"), ("false", ""), ("reduce-overhead", "reduce-overhead"),
                       ("max-autotune", "max-autotune"), ("''", "")):
        path = write(tmp_path, f"TRAIN:\n  COMPILE: {text}\n")
        assert load_cfg(path).TRAIN.COMPILE == mode, text
    for text, mode in (("True", "default"), ("False", ""), ("default", "default")):
        assert load_cfg(COCO1K, ["TRAIN.COMPILE", text]).TRAIN.COMPILE == mode, text
    with pytest.raises(ConfigError, match=r"TRAIN.COMPILE is 'fast'.*reduce-overhead"):
        load_cfg(COCO1K, ["TRAIN.COMPILE", "fast"])
    assert load_cfg(COCO1K, ["TRAIN.ADAM_IMPL", "fused"]).TRAIN.ADAM_IMPL == "fused"
    with pytest.raises(ConfigError, match=r"TRAIN.ADAM_IMPL is 'apex'.*for_loop"):
        load_cfg(COCO1K, ["TRAIN.ADAM_IMPL", "apex"])
    assert load_cfg(COCO1K).SSL.HARD.CUTOUT_SCALE == 1.0
    with pytest.raises(ConfigError, match="CUTOUT_SCALE"):
        load_cfg(COCO1K, ["CUTOUT_SCALE", "0"])


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no_such_config.yaml"):
        load_cfg("experiments/no_such_config.yaml")


def test_frozen_and_defaults_fresh():
    cfg = load_cfg(COCO1K)
    with pytest.raises(AttributeError):
        cfg.TRAIN.LR = 0.1
    with pytest.raises(AttributeError):
        cfg.SEED = 1
    with pytest.raises(TypeError):  # sequences are tuples: frozen all the way down
        cfg.TRAIN.LR_STEP[0] = 1
    d1, d2 = get_defaults(), get_defaults()
    assert not d1.is_frozen()
    d1.TRAIN.LR = 0.5
    assert d2.TRAIN.LR == 0.001 and d2.SEED == 1314 and d2.MODEL.NUM_JOINTS == 16
    assert d2.MODEL.EXTRA.NUM_LAYERS == 50 and d2.DATASET.TEST_SET == "valid"


def test_opts_override():
    cfg = load_cfg(COCO1K, ["TRAIN.LR", "0.002", "TRAIN.LR_STEP", "[5, 8]", "MODEL.EXTRA.SIGMA", "3",
                            "DEVICE", "cpu", "TEST.FLIP_TEST", "True", "MODEL.IMAGE_SIZE", "[96,128]",
                            "MODEL.EXTRA.HEATMAP_SIZE", "[24,32]"])
    assert cfg.TRAIN.LR == 0.002 and cfg.TRAIN.LR_STEP == (5, 8) and cfg.MODEL.EXTRA.SIGMA == 3.0
    assert cfg.DEVICE == "cpu" and cfg.TEST.FLIP_TEST is True and cfg.MODEL.IMAGE_SIZE == (96, 128)
    with pytest.raises(ConfigError, match="KEY VALUE"):
        load_cfg(COCO1K, ["TRAIN.LR"])


def test_model_name_examples():
    cfg = get_defaults()
    cfg.MODEL.NAME, cfg.MODEL.IMAGE_SIZE, cfg.MODEL.EXTRA.NUM_LAYERS = "pose_dual", (192, 256), 18
    assert model_name(cfg) == ("pose_dual_18", "256x192_pose_dual_18_d256d256d256")
    cfg.MODEL.NAME = "pose_foo"
    with pytest.raises(ValueError):
        model_name(cfg)


def test_experiment_dir():
    cfg = load_cfg(COCO1K)
    assert experiment_dir(cfg, COCO1K) == os.path.join("output", "mix_coco_coco", "pose_dual_18",
                                                   "256x192_COCO1K_PoseDual")
    cfg2 = load_cfg(COCO1K, ["DATASET.HYBRID_JOINTS_TYPE", "thorax"])
    assert experiment_dir(cfg2, "x/y.yml") == os.path.join("output", "mix_coco_coco_thorax", "pose_dual_18", "y")


def test_apply_dirs():
    cfg = load_cfg(os.path.join(EXP, REFERENCE_YAMLS[10]))  # TEST.MODEL_FILE is ''
    out = apply_dirs(cfg, model_dir="runs", log_dir="tb", data_dir="/mnt")
    assert out.is_frozen() and cfg.OUTPUT_DIR == "output"  # input untouched
    assert out.OUTPUT_DIR == "/mnt/runs" and out.LOG_DIR == "tb" and out.DATA_DIR == "/mnt"
    assert out.DATASET.ROOT == "/mnt/data/"
    assert out.MODEL.PRETRAINED == "/mnt/models/pytorch/imagenet/resnet18-5c106cde.pth"
    assert out.TEST.MODEL_FILE == "" and out.TEST.COCO_BBOX_FILE == ""  # empty stays empty
    same = apply_dirs(cfg)
    assert same == cfg and same.is_frozen()


def test_dump_round_trip(tmp_path):
    for src in (COCO1K, HRNET):
        cfg = load_cfg(src, ["TRAIN.LR", "0.0005"])
        dst = str(tmp_path / "run" / "config.yaml")
        dump_cfg(cfg, dst)
        again = load_cfg(dst)
        assert again == cfg
        with open(dst) as f:
            plain = yaml.safe_load(f)
        assert plain["TRAIN"]["LR"] == 0.0005 and isinstance(plain["TRAIN"]["LR_STEP"], list)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["config.yaml"]  # no temp files left


def test_image_and_heatmap_sizes_must_match_the_network():
    from semipose.config import ConfigError
    path = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
    with pytest.raises(ConfigError, match="multiples of 32"):
        load_cfg(path, ["MODEL.IMAGE_SIZE", "[48, 64]", "MODEL.EXTRA.HEATMAP_SIZE", "[12, 16]"])
    with pytest.raises(ConfigError, match=r"use \[16, 24\]"):
        load_cfg(path, ["MODEL.EXTRA.HEATMAP_SIZE", "[48, 64]"])


def test_base_inheritance_merges_sections_and_resolves_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "MODEL:\n  NAME: pose_dual\n  EXTRA:\n    NUM_LAYERS: 50\n    BASE_WIDTH: 32\n"
          "TRAIN:\n  LR: 0.01\n  END_EPOCH: 7\n", "root.yaml")
    write(tmp_path, "_BASE_: ../root.yaml\nTRAIN:\n  LR: 0.02\n", "sub/mid.yaml")
    child = write(tmp_path, "_BASE_: mid.yaml\nMODEL:\n  EXTRA:\n    BASE_WIDTH: 16\n",
                  "sub/child.yaml")
    cfg = load_cfg(child, ["TRAIN.END_EPOCH", "9"])
    assert cfg.MODEL.NAME == "pose_dual"  # from the root, two levels up
    assert (cfg.MODEL.EXTRA.NUM_LAYERS, cfg.MODEL.EXTRA.BASE_WIDTH) == (50, 16)  # EXTRA merged
    assert cfg.TRAIN.LR == 0.02 and cfg.TRAIN.END_EPOCH == 9  # nearer file, then command line
    assert "_BASE_" not in cfg
    assert experiment_dir(cfg, child).endswith("child")
    # a list of bases merges in order, the later one winning
    write(tmp_path, "TRAIN:\n  LR: 0.5\n", "other.yaml")
    both = write(tmp_path, "_BASE_: [root.yaml, other.yaml]\n", "both.yaml")
    assert load_cfg(both).TRAIN.LR == 0.5 and load_cfg(both).TRAIN.END_EPOCH == 7


def test_base_errors_name_the_file(tmp_path):
    a = write(tmp_path, "_BASE_: b.yaml\n", "a.yaml")
    write(tmp_path, "_BASE_: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="cycle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_cfg(a)
    lost = write(tmp_path, "_BASE_: nowhere.yaml\n", "lost.yaml")
    with pytest.raises(FileNotFoundError, match="lost.yaml.*nowhere.yaml"):
        load_cfg(lost)
    write(tmp_path, "TRAIN:\n  LRR: 0.1\n", "typo.yaml")
    child = write(tmp_path, "_BASE_: typo.yaml\n", "child.yaml")
    with pytest.raises(UnknownKeyError, match="typo.yaml") as err:
        load_cfg(child)
    assert "TRAIN.LR" in str(err.value)
    bad = write(tmp_path, "_BASE_: 3\n", "bad.yaml")
    with pytest.raises(ConfigError, match="_BASE_ must be a file name"):
        load_cfg(bad)


def test_synthetic_configs_use_base_files():
    """The quick start is the benchmark's PoseDual cell by inheritance, not by copy."""
    quick = load_cfg(os.path.join(EXP, "synthetic", "posedual.yaml"))
    bench = load_cfg(os.path.join(EXP, "synthetic", "ssl_benchmark.yaml"))
    with open(os.path.join(EXP, "synthetic", "posedual.yaml")) as f:
        assert yaml.safe_load(f)["_BASE_"] == "ssl_benchmark.yaml"
    same = ("MODEL", "DATASET", "SYNTHETIC", "TEST")
    assert all(quick[k] == bench[k] for k in same)
    assert (quick.TRAIN.END_EPOCH, quick.TRAIN.LR, quick.SSL.HARD.JOINT_CUTOUT) == (26, 0.001, 0)
    assert tuple(quick.TRAIN.LR_STEP) == (17, 22)
    # everything else in TRAIN is the benchmark's: only the budget and RESUME differ
    differ = {k for k in bench.TRAIN if quick.TRAIN[k] != bench.TRAIN[k]}
    assert differ == {"END_EPOCH", "LR_STEP", "RESUME"}

"""Pieces added for the synthetic SSL benchmark: same-difficulty teacher views (collapse study),
theta algebra, the light scene preset, thin ResNets, and a tiny end-to-end benchmark run."""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import pytest
import torch

from semipose.config import ConfigError, load_cfg
from semipose.data.synthetic import generate
from semipose.data.synthetic_scene import PRESETS, sample_scene
from semipose.methods import PoseCons, PoseDual
from semipose.methods.parts import Consistency, HardView
from semipose.models.resnet import PoseResNet
from semipose.transforms.batch import (compose_theta, hard_affine_theta, invert_theta,
                                       max_preds_tensor, warp)

from entry_points import load_script
from test_methods import FixedNet, TinyNet, make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gaussians(points, h, w, s2=4.0):
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.exp(-((xx - points[:, 0, None, None]) ** 2 + (yy - points[:, 1, None, None]) ** 2)
                     / (2 * s2))


# ------------------------------------------------------------------------------ theta algebra
def test_compose_and_invert_theta():
    g = torch.Generator().manual_seed(0)
    a, b = hard_affine_theta(8, 0.25, 30, g, "cpu"), hard_affine_theta(8, 0.25, 30, g, "cpu")
    eye = torch.eye(2, 3).expand(8, 2, 3)
    torch.testing.assert_close(compose_theta(a, invert_theta(a)), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(compose_theta(invert_theta(a), a), eye, atol=1e-5, rtol=0)
    # warping by a then by b samples the source at a @ b @ p: the peak lands at the same place
    pts = torch.stack([torch.rand(8, generator=g) * 10 + 19, torch.rand(8, generator=g) * 14 + 25], -1)
    hm = gaussians(pts, 64, 48)[:, None]
    twice = warp(warp(hm, a), b)
    once = warp(hm, compose_theta(a, b))
    p_twice, _ = max_preds_tensor(twice)
    p_once, _ = max_preds_tensor(once)
    assert (p_twice - p_once).abs().max() <= 1.0
    assert float((twice - once).abs().max()) < 0.1  # only the double interpolation differs


def test_hard_teacher_target_is_realigned_to_student_frame():
    """teacher_view 'hard': a teacher that sees warp(x, theta_t) gives, after the warp by
    target_theta, the heatmap of the student's frame warp(x, theta) (checked with an
    equivariant 'net')."""
    method = PoseCons(TinyNet(), hard=HardView(teacher_view="hard", seed=3))
    g = torch.Generator().manual_seed(1)
    pts = torch.stack([torch.rand(6, generator=g) * 10 + 19, torch.rand(6, generator=g) * 14 + 25], -1)
    hm = gaussians(pts, 64, 48)[:, None]  # the "image" is its own heatmap
    x_t, theta_t = method.hard.teacher_input(hm)
    assert theta_t is not None and not torch.allclose(x_t, hm)
    theta = method.hard.draw_theta(6, torch.device("cpu"))
    target = method.hard.warp(x_t, method.hard.target_theta(theta, theta_t))
    p_target, _ = max_preds_tensor(target)
    p_student, _ = max_preds_tensor(warp(hm, theta))
    assert (p_target - p_student).abs().max() <= 1.0
    # the easy view is the reference behaviour: no teacher theta, plain warp of the teacher
    easy = PoseCons(TinyNet(), hard=HardView(seed=3))
    x_e, th = easy.hard.teacher_input(hm)
    assert th is None and x_e is hm
    torch.testing.assert_close(easy.hard.warp(hm, easy.hard.target_theta(theta, None)),
                               warp(hm, theta))


def test_hard_teacher_steps_and_rejects_cutout():
    for cls, nets in ((PoseCons, TinyNet()), (PoseDual, [TinyNet(seed=0), TinyNet(seed=1)])):
        m = cls(nets, hard=HardView(teacher_view="hard", seed=2))
        out = m.training_step(make_batch())
        assert all(torch.isfinite(v).all() for v in [*out.logged().values(), out.sup_heatmaps])
        assert out.terms["loss_cons"] > 0
    with pytest.raises(ValueError, match="MASK_JOINT_NUM 0"):
        PoseCons(TinyNet(), hard=HardView(ops=("cutout",), teacher_view="hard", joint_num=3))
    with pytest.raises(ValueError, match="CONS_TEACHER_VIEW"):
        PoseCons(TinyNet(), hard=HardView(teacher_view="medium"))
    cfg_path = os.path.join(ROOT, "experiments", "synthetic", "ssl_benchmark.yaml")
    with pytest.raises(ConfigError, match="CONS_TEACHER_VIEW 'hard'"):
        load_cfg(cfg_path, ["CONS_TEACHER_VIEW", "hard", "MASK_JOINT_NUM", "5"])
    assert load_cfg(cfg_path, ["CONS_TEACHER_VIEW", "hard"]).SSL.HARD.TEACHER_VIEW == "hard"


def test_hard_teacher_of_fixed_net_matches_relative_warp():
    """A net that ignores its input: the target is its heatmap warped by theta_t^-1 theta."""
    hm = gaussians(torch.tensor([[10.0, 12.0], [4.0, 20.0], [8.0, 8.0], [12.0, 3.0], [6.0, 14.0]]),
                   24, 16)  # [J=5, h, w]
    m = PoseCons(FixedNet(hm), hard=HardView(teacher_view="hard", seed=4))
    last = m.training_step(make_batch(n=2, h=96, w=64)).debug
    assert last["teacher_warped"].shape == (2, 5, 24, 16)
    # recompute: the hard-view generator drew theta_t, then the student's theta
    g = torch.Generator().manual_seed(4)
    theta_t = hard_affine_theta(2, 0.25, 30, g, "cpu")
    theta = hard_affine_theta(2, 0.25, 30, g, "cpu")
    torch.testing.assert_close(last["theta"], theta)
    expected = warp(hm.expand(2, 5, 24, 16), compose_theta(invert_theta(theta_t), theta))
    torch.testing.assert_close(last["teacher_warped"], expected)


# ------------------------------------------------------------------------------ light preset
def test_light_preset_scenes_and_files(tmp_path):
    lo, hi = PRESETS["light"]["min_size"], PRESETS["light"]["max_size"]
    for i in range(20):
        s = sample_scene(np.random.default_rng([0, i]), "light")
        assert lo[0] <= s["width"] <= hi[0] and lo[1] <= s["height"] <= hi[1]
        assert 1 <= len(s["persons"]) <= 2
        assert len(s["background"]["strokes"]) <= 1
    std = [len(sample_scene(np.random.default_rng([0, i]))["persons"]) for i in range(40)]
    assert max(std) > 2  # the standard preset keeps up to 4 people
    with pytest.raises(ValueError, match="preset 'huge'"):
        sample_scene(np.random.default_rng(0), "huge")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    for d in (a, b):
        generate(d, seed=2, num_train=3, num_val=2, num_unlabeled=0, show_progress=False,
                 preset="light")
    ann = "coco/annotations/person_keypoints_train2017.json"
    with open(os.path.join(a, ann)) as f:
        da = json.load(f)
    with open(os.path.join(b, ann)) as f:
        assert json.load(f) == da  # same seed, same preset: same annotations
    assert all(lo[0] <= im["width"] <= hi[0] for im in da["images"])
    with pytest.raises(ValueError, match="preset"):
        generate(str(tmp_path / "c"), num_train=1, num_val=0, num_unlabeled=0, preset="huge")


# ------------------------------------------------------------------------------ thin ResNet
def test_base_width_scales_channels_and_keeps_keys():
    full, thin = PoseResNet(18, 24, (32, 32, 32)), PoseResNet(18, 24, (32, 32, 32), base_width=16)
    assert list(full.state_dict()) == list(thin.state_dict())  # same layout, other shapes
    assert thin.conv1.out_channels == 16 and thin.layer4[-1].conv2.out_channels == 128
    assert full.layer4[-1].conv2.out_channels == 512
    out = thin(torch.zeros(2, 3, 96, 64))
    assert out.shape == (2, 24, 24, 16)
    n_full = sum(p.numel() for p in full.parameters())
    n_thin = sum(p.numel() for p in thin.parameters())
    assert 12 < n_full / n_thin < 17  # convs scale with width squared
    with pytest.raises(ValueError, match="BASE_WIDTH"):
        PoseResNet(18, 24, base_width=0)


# ------------------------------------------------------------------------------ benchmark
def _load_bench():
    return load_script("ssl_benchmark", "bench")


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_tiny_benchmark_end_to_end(tmp_path, monkeypatch):
    bench = _load_bench()
    argv = ["--labels", "4", "--seeds", "0", "--epochs", "1", "--num-train", "6", "--num-val", "3",
            "--num-test", "4",
            "--methods", "supervised", "posecons", "posecons_same", "--workers", "0",
            "--data-root", str(tmp_path / "data"), "--test-root", str(tmp_path / "test"),
            "--work-dir", str(tmp_path / "work"),
            "--out-dir", str(tmp_path / "out"),
            "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8", "MONITOR.NUM_SAMPLES", "4"]
    out = bench.main(argv)
    md = open(out["md"]).read()
    ap_table = md.split("Gain over the supervised arm")[0]
    rows = [line for line in ap_table.splitlines() if line.startswith("| Supervised") or
            line.startswith("| PoseCons |")]
    assert len(rows) == 2, md
    for row in rows:
        mean = float(row.split("|")[3].split("±")[0])
        assert math.isfinite(mean) and 0.0 <= mean <= 1.0
    assert "same-difficulty" in md and "Collapse study" in md
    # the report's command names the budget when it is not the size's own (full: 20 epochs)
    assert "`python bench/ssl_benchmark.py --device cpu --epochs 1`" in md
    w, h = _png_size(out["png"])
    assert w > 300 and h > 200
    _png_size(out["png"].replace(".png", "_collapse.png"))
    logs = os.listdir(out["md"].replace(".md", "_logs"))
    assert sorted(logs) == sorted(f"{m}_L4_s0.log" for m in ("supervised", "posecons", "posecons_same"))
    runs = json.load(open(out["md"].replace(".md", "_runs.json")))
    assert {r["method"] for r in runs} == {"supervised", "posecons", "posecons_same"}
    steps = {r["steps"] for r in runs}
    assert len(steps) == 1 and steps.pop() > 0  # the same optimizer-step budget for every arm
    for r in runs:
        assert all(math.isfinite(v) for v in r["ap"].values())
        assert len(r["collapse_frac"]) == 1 and 0.0 <= r["collapse_frac"][0] <= 1.0
    # every run is scored once more on the held-out test set (4 images of another seed)
    from semipose.evaluation.coco_eval import run_cocoeval
    for r in runs:
        assert set(r["test_ap"]) == set(r["ap"]) and 0.0 <= r["test_ap"]["net1"] <= 1.0
        found = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "work" / "test" /
                 f"{r['method']}_L4_s0") for f in fs if f.endswith("_eval_1.json")]
        assert len(found) == 1  # valid.py's results of net 1, re-scored here
        gt = tmp_path / "test" / "coco" / "annotations" / "person_keypoints_val2017.json"
        assert r["test_ap"]["net1"] == pytest.approx(run_cocoeval(str(gt), found[0])["AP"], abs=6e-5)
    assert "held-out test set" in md and "per-epoch val set" in md
    # the paired gain table: PoseCons minus Supervised at the same seed, with its sign count
    ap = {r["method"]: r["test_ap"]["net1"] for r in runs}
    gain_part = md.split("Gain over the supervised arm")[1].split("per-epoch val set")[0]
    gain_rows = [line for line in gain_part.splitlines()
                 if line.startswith("| PoseCons |")]
    assert len(gain_rows) == 1, md
    cell = gain_rows[0].split("|")[3]
    assert float(cell.split("±")[0]) == pytest.approx(ap["posecons"] - ap["supervised"], abs=6e-4)
    assert f"({int(ap['posecons'] > ap['supervised'])}/1 seeds > 0)" in cell
    assert bench.lr_milestones(20) == [13, 17] and bench.lr_milestones(30) == [20, 25]
    # a second start reuses the records and trains nothing
    monkeypatch.setattr(bench.subprocess, "call",
                        lambda *a, **k: pytest.fail("a recorded run was trained again"))
    again = bench.main(argv)
    assert open(again["md"]).read().split("(last invocation")[0] == md.split("(last invocation")[0]
    # a fresh work folder (a new checkout) takes the finished runs from the committed _runs.json
    fresh = [str(tmp_path / "work2") if v == str(tmp_path / "work") else v for v in argv]
    again = bench.main(fresh)
    assert open(again["md"]).read().split("(last invocation")[0] == md.split("(last invocation")[0]
    assert len(os.listdir(tmp_path / "work2" / "records")) == 3


def test_loader_workers_default_by_device():
    """No loader processes on a CPU (they would take the step's cores), some on a GPU; an
    explicit --workers wins."""
    bench = _load_bench()
    assert bench.parse_args([]).workers == 0
    assert bench.parse_args(["--device", "cuda"]).workers == 4
    assert bench.parse_args(["--device", "cpu", "--workers", "3"]).workers == 3


def test_start_size_is_the_quick_start_budget():
    """--size start: the three core methods, 5 seeds, 26 epochs with the LR drops at 2/3 and 5/6."""
    bench = _load_bench()
    a = bench.parse_args(["--size", "start"])
    assert (a.epochs, a.labels, a.seeds) == (26, [100], [0, 1, 2, 3, 4])
    assert a.methods == ["supervised", "posecons", "posedual"]
    assert bench.lr_milestones(a.epochs) == [17, 22]
    assert bench.report_stem(a).endswith("ssl_synthetic_cpu_start")
    # the quick start is this size's PoseDual cell: same epochs and LR drops
    quick = load_cfg(os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml"))
    assert quick.TRAIN.END_EPOCH == a.epochs
    assert list(quick.TRAIN.LR_STEP) == bench.lr_milestones(a.epochs)


def test_gain_tables_pair_runs_by_seed():
    """Paired gains: each row minus the base arm of the same seed and label count."""
    bench = _load_bench()
    ap = {("supervised", 0): {"net1": 0.20}, ("supervised", 1): {"net1": 0.10},
          ("posecons", 0): {"net1": 0.25}, ("posecons", 1): {"net1": 0.12},
          ("posedual", 0): {"net1": 0.24, "net2": 0.26, "ensemble": 0.30},
          ("posedual", 1): {"net1": 0.18, "net2": 0.20, "ensemble": 0.16}}
    records = [{"method": m, "labels": 100, "seed": s, "test_ap": v} for (m, s), v in ap.items()]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line.split("|")[3].strip()
            for line in bench.gain_table(records, [100], ["supervised", "posecons", "posedual"])
            .splitlines()[2:]}
    assert rows[("PoseCons", "net1")] == "+0.035 ± 0.021 (2/2 seeds > 0)"  # +0.05, +0.02
    assert rows[("PoseDual", "ensemble")] == "+0.080 ± 0.028 (2/2 seeds > 0)"  # +0.10, +0.06
    assert ("Supervised", "net1") not in rows
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line.split("|")[3].strip()
            for line in bench.gain_table(records, [100], ["posedual", "posecons"],
                                         base="posecons").splitlines()[2:]}
    assert rows[("PoseDual", "net1")] == "+0.025 ± 0.049 (1/2 seeds > 0)"  # -0.01, +0.06
    assert rows[("PoseDual", "ensemble")] == "+0.045 ± 0.007 (2/2 seeds > 0)"  # +0.05, +0.04
    assert len(rows) == 3  # PoseDual net1 / net2 / ensemble; the base arm has no row


@pytest.mark.skipif(sys.platform == "win32", reason="lanes need POSIX file locks")
def test_lanes_skip_a_run_in_training_and_reuse_a_finished_one(tmp_path, monkeypatch):
    """Two processes on one work folder: a run whose claim is held elsewhere is skipped without
    training; a record written meanwhile is returned; a free run is trained."""
    bench = _load_bench()
    args = argparse.Namespace(work_dir=str(tmp_path), epochs=3)
    trained = []
    monkeypatch.setattr(bench, "train_one", lambda *a: trained.append(a) or {"trained": True})
    claim = tmp_path / "claims" / (bench.run_name("posedual", 100, 0) + ".lock")
    with bench.exclusive(str(claim), wait=False) as mine:  # the other lane holds the run
        assert mine
        assert bench.run_one("posedual", 100, 0, args) is None
        with bench.exclusive(str(claim), wait=False) as second:
            assert not second
    assert trained == []
    record = {"method": "posedual", "labels": 100, "seed": 0, "epochs": 3, "test_ap": {"net1": .5}}
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "posedual_L100_s0.json").write_text(json.dumps(record))
    assert bench.run_one("posedual", 100, 0, args) == record  # the other lane finished it
    assert bench.run_one("posecons", 100, 0, args) == {"trained": True}  # free: this lane trains
    assert [a[:3] for a in trained] == [("posecons", 100, 0)]


def test_every_later_method_is_compared_with_posedual():
    """Each row after the paper (methods and their diagnostics) gets the 'minus PoseDual ensemble,
    same seed' table; the paper's rows and their diagnostics are the only others."""
    bench = _load_bench()
    paper = set(bench.TABLE_METHODS) | {"posecons_jc", "posedual_jc", "posecons_same",
                                        "posedual_sup1"}
    assert set(bench.METHODS) - paper == set(bench.AFTER_PAPER)
    assert not paper & set(bench.AFTER_PAPER)


def test_step_costs_fill_missing_methods_from_later_measurements(tmp_path, monkeypatch):
    """The main cost file wins; a later, smaller file only adds the methods it lacks."""
    bench = _load_bench()
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "method_cost_cpu.json").write_text(
        json.dumps({"methods": {"posedual": {"cost": 1.0}, "multi_path": {"cost": 0.64}}}))
    (results / "method_cost_cpu_sizes.json").write_text(
        json.dumps({"methods": {"posedual": {"cost": 1.0}, "multi_path": {"cost": 0.67},
                                "multi_path_s": {"cost": 0.67}}}))
    monkeypatch.setattr(bench, "ROOT", str(tmp_path))
    # a row that only reweights a loss runs the step of the row it reweights
    assert bench.step_costs("cpu") == {"posedual": 1.0, "multi_path": 0.64, "multi_path_s": 0.67,
                                       "multi_path_s_w05": 0.67}
    assert bench.step_costs("cuda:0") == {}

    def overrides(row):  # ["KEY", "value", ...] -> {KEY: value}
        opts = bench.METHODS[row][1]
        return dict(zip(opts[::2], opts[1::2]))

    for row, same in bench.SAME_STEP.items():  # each pair differs in the consistency weight only
        a, b = overrides(row), overrides(same)
        assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {"SSL.CONS.WEIGHT"}


def test_consistency_rampup_weight():
    m = PoseCons(TinyNet(), hard=HardView(seed=1), cons=Consistency(rampup_epochs=2.0))
    expected = {0.0: math.exp(-5), 1.0: math.exp(-5 * 0.25), 2.0: 1.0, 7.5: 1.0}
    for epochs, w in expected.items():
        m.set_progress(epochs)
        assert m.cons.scale == pytest.approx(w)
        out = m.training_step(make_batch()).logged()
        torch.testing.assert_close(out["loss"], out["loss_pose"] + w * out["loss_cons"])
    # default: the reference, weight 1
    ref = PoseDual([TinyNet(seed=0), TinyNet(seed=1)], hard=HardView(seed=1))
    ref.set_progress(0.0)
    out = ref.training_step(make_batch()).logged()
    torch.testing.assert_close(out["loss"], out["loss_pose"] + out["loss_cons"])
    with pytest.raises(ValueError, match="CONS_RAMPUP_EPOCHS"):
        PoseCons(TinyNet(), cons=Consistency(rampup_epochs=-1))


def test_label_count_plot_keeps_every_method_apart(tmp_path, monkeypatch):
    """The paper's rows and the later methods get a panel each, the later ones beside the
    Supervised and PoseDual references; within a panel no two legend entries look the same."""
    import semipose.engine.visualize as visualize
    bench = _load_bench()
    methods = list(bench.METHODS)
    records = [{"method": m, "labels": n, "seed": s, "test_ap": {"net1": 0.1 + 0.01 * i}}
               for i, m in enumerate(methods) for n in (100, 300) for s in (0, 1)]
    figures = []
    monkeypatch.setattr(visualize, "save_figure", lambda fig, path, dpi=90: figures.append(fig))
    bench.plot_ap(records, [100, 300], methods, str(tmp_path / "ap.png"))
    panels = []
    for ax in figures[0].axes:
        handles, names = ax.get_legend_handles_labels()
        looks = {(str(h.lines[0].get_color()), h.lines[0].get_marker(), h.lines[0].get_linestyle())
                 for h in handles}
        assert len(looks) == len(handles)
        panels.append([n.rsplit(", n=", 1)[0] for n in names])
    paper = [bench.METHODS[m][0] for m in bench.PAPER_ROWS]
    later = [bench.METHODS[m][0] for m in bench.AFTER_PAPER]
    assert panels[0] == paper
    assert panels[1] == [bench.METHODS["supervised"][0], bench.METHODS["posedual"][0]] + later
    # only the paper's rows: one panel
    figures.clear()
    bench.plot_ap(records, [100, 300], list(bench.TABLE_METHODS), str(tmp_path / "ap.png"))
    assert len(figures[0].axes) == 1


def test_every_benchmark_row_is_a_valid_config():
    """Each row's overrides load on the benchmark's base config (a typo in a key or value would
    otherwise surface only when the runner reaches that row, hours in), and no row draws boxes
    too large for the benchmark's crop except the rows kept to show that case."""
    from semipose.methods.parts import crop_scale_advice
    from semipose.methods.registry import placeholder_method
    bench = _load_bench()
    too_large = []
    for key, (_, overrides) in bench.METHODS.items():
        cfg = load_cfg(os.path.join(ROOT, bench.BASE_CFG), list(overrides))
        if crop_scale_advice(placeholder_method(cfg), cfg.MODEL.IMAGE_SIZE):
            too_large.append(key)
    assert sorted(too_large) == ["multi_path", "posecons_jc", "posedual_jc"]

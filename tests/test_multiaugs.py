"""MultiAugs as published (methods/multiaugs.py): one theta shared by every path, one loss per
path against the one target, the dual model's cross-centred views, the "mean" validation row,
replayable draws, and a train/validate/resume run of each method through the trainer."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from semipose.config import ConfigError, load_cfg
from semipose.engine.trainer import Trainer
from semipose.engine.validate import mean_rows
from semipose.losses import JointsMSELoss
from semipose.methods import MultiAugs, MultiAugsDual, PoseDual, build_method
from semipose.methods.multiaugs import path_names
from semipose.methods.parts import HardView, teacher_joints_px
from semipose.transforms.batch import hard_affine_theta, joint_cutout, warp
from semipose.transforms.multiaugs import jccm, joco, keypoint_cut_occlusion, random_cutout
from semipose.utils.dist import DistInfo
from conftest import make_synthetic, synthetic_cfg, tiny
from test_methods import (PoolNet, TinyNet, assert_cuts_centre_on_other_net, make_batch,
                          record_then_replay)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTH = os.path.join(ROOT, "experiments", "synthetic")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.LR_STEP", "[5]", "MONITOR.ENABLED", "False")
SCALE = 0.5  # the ops' pixel sizes halved: boxes of 10-19 px on the 64x48 test crops
MSE = JointsMSELoss()


def by_hand_views(x, teacher, mask, gen, paths, counts, mode="reference"):
    """The path op outputs of one teacher, computed with the transforms directly, drawing from
    ``gen`` in path order (the method's order)."""
    joints = teacher_joints_px(teacher, x)
    out = []
    for path in paths:
        if path == "jc":
            out.append(joint_cutout(x, joints, counts["jc"], gen, mode, mask, SCALE))
        elif path == "jo":
            out.append(keypoint_cut_occlusion(x, joints, gen, mode, counts["jo"], SCALE))
        elif path == "co":
            out.append(random_cutout(x, gen, mode, counts["co"], SCALE))
        elif path == "joco":
            out.append(joco(x, joints, gen, mode, counts["jo"], counts["co"], SCALE))
        elif path == "jccm":
            out.append(jccm(x, joints, gen, mode, counts["jc"], counts["jccm_cm"], mask, SCALE))
    return out


# ------------------------------------------------------------------------ single network
def test_single_one_theta_for_every_path_and_one_loss_per_path():
    net = TinyNet(seed=4)
    ref = copy.deepcopy(net)  # train mode: its outputs depend on the weights only
    method = MultiAugs(net, hard=HardView(seed=7, cutout_scale=SCALE))
    assert [p.ops for p in method.paths] == [("jc",), ("jo",), ("joco",), ("jccm",)]
    assert all(p.stream is method.hard.stream for p in method.paths)  # one random stream
    batch = make_batch(h=64, w=48)
    x_u, w_u = batch["unlabeled"]["image"], batch["unlabeled"]["target_weight"]
    out = method.training_step(batch)
    debug, terms = out.debug, out.terms

    t = ref(x_u)
    torch.testing.assert_close(debug["teacher_heatmaps"], t.detach())
    gen = torch.Generator().manual_seed(7)
    counts = {"jc": 5, "jo": 2, "co": 5, "jccm_cm": 2}  # the single network's JCCM: 2 holes
    ops = by_hand_views(x_u, t.detach(), w_u[..., 0] > 0, gen, ["jc", "jo", "joco", "jccm"],
                        counts)
    theta = hard_affine_theta(4, 0.25, 30.0, gen, "cpu")  # drawn once, after every path
    assert torch.equal(debug["theta"], theta)
    target = warp(t.detach(), theta)
    assert torch.equal(debug["teacher_warped"], target)  # the one target, warped once
    assert torch.equal(debug["hard_images"], warp(ops[0], theta))
    total = 0
    for name, op_out in zip(["jc", "jo", "joco", "jccm"], ops):
        assert not torch.equal(op_out, x_u), name  # every path's op changed the crop
        s = ref(warp(op_out, theta))  # one student pass per path
        expected = MSE(s, target, w_u)
        torch.testing.assert_close(terms[f"loss_cons_{name}"], expected.detach())
        total = total + expected.detach()
    assert len([k for k in terms if k.startswith("loss_cons_")]) == 4
    torch.testing.assert_close(terms["loss_cons"], total)
    torch.testing.assert_close(terms["loss_cons"], sum(terms[f"loss_cons_{p}"]
                                                       for p in ("jc", "jo", "joco", "jccm")))
    sup = ref(batch["labeled"]["image"])
    pose = MSE(sup, batch["labeled"]["target"], batch["labeled"]["target_weight"])
    torch.testing.assert_close(out.loss.detach(), (pose + total).detach())
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_concatenated_student_pass_is_a_switch():
    """Without BatchNorm, one pass over the concatenated paths gives the per-path numbers."""
    batch = make_batch(h=64, w=48)
    per_path = MultiAugs(PoolNet(), paths=["jc", "co+cm", "mu"], hard=HardView(seed=2))
    concat = MultiAugs(PoolNet(), paths=["jc", "co+cm", "mu"], hard=HardView(seed=2),
                       concat=True)
    a, b = per_path.training_step(batch), concat.training_step(batch)
    assert set(a.terms) == set(b.terms) == {"loss_pose", "loss_cons", "loss_cons_jc",
                                            "loss_cons_co_cm", "loss_cons_mu"}
    for k in a.terms:
        torch.testing.assert_close(a.terms[k], b.terms[k])


def test_path_checks_and_names():
    assert path_names([("jc",), ("jo", "co"), ("jc",)]) == ("jc", "jo_co", "jc_2")
    with pytest.raises(ConfigError, match="'cutmix' mixes the target.*'cm'"):
        MultiAugs(TinyNet(), paths=["jc+cutmix"])
    with pytest.raises(ConfigError, match="SSL.MULTIAUGS.PATHS entry 'jc\\+blur'"):
        MultiAugs(TinyNet(), paths=["jc+blur"])
    with pytest.raises(ConfigError, match="empty"):
        MultiAugs(TinyNet(), paths=[])
    with pytest.raises(ConfigError, match="JCCM_CM"):
        MultiAugs(TinyNet(), jccm_cm=-2)
    with pytest.raises(ConfigError, match="TEACHER_VIEW"):
        MultiAugs(TinyNet(), hard=HardView(teacher_view="hard"))


# ------------------------------------------------------------------------ dual network
def test_dual_cross_targets_and_per_path_terms_by_hand():
    nets = {"net1": TinyNet(seed=0), "net2": TinyNet(seed=1)}
    ref = {k: copy.deepcopy(v) for k, v in nets.items()}
    method = MultiAugsDual(nets, paths=["jc", "jccm"], hard=HardView(seed=9, cutout_scale=SCALE))
    assert [p.op_counts["cm"] for p in method.paths] == [2, 5]  # JCCM reads the CO count
    batch = make_batch(h=64, w=48)
    x_u, w_u = batch["unlabeled"]["image"], batch["unlabeled"]["target_weight"]
    out = method.training_step(batch)
    debug, terms = out.debug, out.terms
    t1, t2 = ref["net1"](x_u).detach(), ref["net2"](x_u).detach()
    gen = torch.Generator().manual_seed(9)
    counts = {"jc": 5, "jo": 2, "co": 5, "jccm_cm": 5}
    mask = w_u[..., 0] > 0
    h1 = by_hand_views(x_u, t2, mask, gen, ["jc", "jccm"], counts)  # net 1's, on net 2's joints
    h2 = by_hand_views(x_u, t1, mask, gen, ["jc", "jccm"], counts)
    theta = hard_affine_theta(4, 0.25, 30.0, gen, "cpu")  # one theta for all 2P views
    assert torch.equal(debug["theta"], theta)
    tw1, tw2 = warp(t1, theta), warp(t2, theta)
    assert torch.equal(debug["teacher_warped"], tw1) and torch.equal(debug["teacher_warped_2"], tw2)
    assert torch.equal(debug["hard_images"], warp(h1[0], theta))
    assert torch.equal(debug["hard_images_2"], warp(h2[0], theta))
    sums = {1: 0, 2: 0}
    for p, name in enumerate(["jc", "jccm"]):
        c1 = MSE(ref["net1"](warp(h1[p], theta)), tw2, w_u).detach()  # net 1 taught by net 2
        c2 = MSE(ref["net2"](warp(h2[p], theta)), tw1, w_u).detach()
        torch.testing.assert_close(terms[f"loss_cons_{name}"], c1 + c2)
        sums[1], sums[2] = sums[1] + c1, sums[2] + c2
    torch.testing.assert_close(terms["loss_cons_1"], sums[1])
    torch.testing.assert_close(terms["loss_cons_2"], sums[2])
    torch.testing.assert_close(terms["loss_cons"], sums[1] + sums[2])
    torch.testing.assert_close(terms["loss_pose"],
                               0.5 * (terms["loss_pose_1"] + terms["loss_pose_2"]))
    torch.testing.assert_close(out.loss.detach(), terms["loss_pose"] + terms["loss_cons"])


def test_dual_views_centre_on_the_other_nets_joints():
    assert_cuts_centre_on_other_net(
        lambda nets: MultiAugsDual(nets, paths=["jc"],
                                   hard=HardView(affine=False, op_counts={"jc": 3},
                                                 op_mode="corrected", seed=2)))


# ------------------------------------------------------------------------ the "mean" row
def test_mean_row_averages_the_two_nets_metrics():
    assert MultiAugsDual.eval_rows() == ("net1", "net2", "ensemble", "mean")
    assert MultiAugs.eval_rows() == ("net1",)
    assert PoseDual.eval_rows() == ("net1", "net2", "ensemble")  # unchanged
    results = {"net1": ({"AP": 0.4968, "AP .5": 0.70, "AR": 0.52}, 0.4968),
               "net2": ({"AP": 0.4977, "AP .5": 0.74, "AR": 0.50}, 0.4977),
               "ensemble": ({"AP": 0.51, "AP .5": 0.75, "AR": 0.55}, 0.51)}
    rows = mean_rows(results, MultiAugsDual.metric_means)
    assert list(rows) == ["mean"]
    metrics, main = rows["mean"]
    assert main == pytest.approx((0.4968 + 0.4977) / 2)  # the README's 49.7
    assert metrics == pytest.approx({"AP": 0.49725, "AP .5": 0.72, "AR": 0.51})
    assert mean_rows(results, {}) == {}
    with pytest.raises(KeyError, match="'net3'"):
        mean_rows(results, {"mean": ("net1", "net3")})


def test_best_metric_mean_only_for_the_dual_model():
    cfg = load_cfg(os.path.join(SYNTH, "multiaugs_dual.yaml"))
    assert cfg.TEST.BEST_METRIC == "mean"
    with pytest.raises(ConfigError, match="TEST.BEST_METRIC is 'mean'"):
        load_cfg(os.path.join(SYNTH, "multiaugs.yaml"), ["TEST.BEST_METRIC", "mean"])
    with pytest.raises(ConfigError, match="TEST.BEST_METRIC is 'mean'"):
        load_cfg(os.path.join(SYNTH, "posedual.yaml"), ["TEST.BEST_METRIC", "mean"])


# ------------------------------------------------------------------------ config
def test_options_from_the_config():
    single = build_method(load_cfg(os.path.join(SYNTH, "multiaugs.yaml")), TinyNet())
    assert isinstance(single, MultiAugs) and not single.concat
    assert [p.ops for p in single.paths] == [("jc",), ("jo",), ("joco",), ("jccm",)]
    assert single.hard.cutout_scale == 0.354 and single.hard.op_mode == "reference"
    assert [p.op_counts for p in single.paths][-1] == {"jc": 5, "jo": 2, "co": 5, "cm": 2}
    dual = build_method(load_cfg(os.path.join(SYNTH, "multiaugs_dual.yaml"),
                                 ["SSL.MULTIAUGS.CO", "4", "SSL.MULTIAUGS.OP_MODE", "corrected"]),
                        [TinyNet(), TinyNet()])
    assert dual.jccm_cm == 4 and dual.paths[-1].op_counts == {"jc": 5, "jo": 2, "co": 4, "cm": 4}
    assert all(p.op_mode == "corrected" for p in dual.paths)
    cfg = load_cfg(os.path.join(SYNTH, "multiaugs.yaml"),
                   ["SSL.MULTIAUGS.PATHS", "['co', 'jo+cm']", "SSL.MULTIAUGS.JCCM_CM", "3",
                    "SSL.MULTIAUGS.CONCAT", "True", "SEED", "11"])
    m = build_method(cfg, TinyNet())
    assert [p.ops for p in m.paths] == [("co",), ("jo", "cm")] and m.concat
    assert m.jccm_cm == 3 and m.hard.stream.seed == 11
    for key, value, match in (("SSL.MULTIAUGS.OP_MODE", "swapped", "'swapped' unknown"),
                              ("SSL.MULTIAUGS.JO", "-1", "op_counts\\['jo'\\]"),
                              ("SSL.MULTIAUGS.JCCM_CM", "-3", "JCCM_CM"),
                              ("SSL.MULTIAUGS.PATHS", "['jc+mixup']", "'mixup' mixes")):
        with pytest.raises(ConfigError, match=match):
            load_cfg(os.path.join(SYNTH, "multiaugs.yaml"), [key, value])


# ------------------------------------------------------------------------ replayed draws
@pytest.mark.parametrize("dual", [False, True])
def test_recorded_draws_replay_the_step(dual):
    """What the compiled step does (methods/compiled.py): the step's draws recorded once, then
    drawn again from a fresh generator and replayed from a tape, give the same step."""
    if dual:
        method = MultiAugsDual({"net1": TinyNet(seed=0), "net2": TinyNet(seed=1)},
                               hard=HardView(seed=5, cutout_scale=SCALE))
    else:
        method = MultiAugs(TinyNet(seed=0), hard=HardView(seed=5, cutout_scale=SCALE))
    a, b, recorder, gen, tape, draws = record_then_replay(method, make_batch(h=64, w=48), 5)
    # 4 paths per net, then one theta (randn, randn, rand): every draw goes through the stream
    assert len(recorder.specs) > 3 * (2 if dual else 1) * 4
    assert torch.equal(gen.get_state(), recorder.generator.get_state())  # same stream consumed
    assert tape.pos == len(draws)
    assert a.terms.keys() == b.terms.keys() and a.debug.keys() == b.debug.keys()
    for k in a.terms:
        assert torch.equal(a.terms[k], b.terms[k]), k
    for k in a.debug:
        assert torch.equal(a.debug[k], b.debug[k]), k
    assert torch.equal(a.loss, b.loss)


# ------------------------------------------------------------------ through the trainer
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_multiaugs", seed=6, num_train=4,
                          num_val=2)


def _cfg(name: str, root: str, out: str, *extra: str):
    return synthetic_cfg(os.path.join(SYNTH, name), root, out, TINY + list(extra))


@pytest.mark.parametrize("name,rows", [
    ("multiaugs.yaml", ["net1"]),
    ("multiaugs_dual.yaml", ["net1", "net2", "ensemble", "mean"]),
])
def test_multiaugs_trains_validates_and_resumes(name, rows, data_root, tmp_path):
    out = str(tmp_path / "out")
    extra = ["TRAIN.END_EPOCH", "1"]
    first = Trainer(_cfg(name, data_root, out, *extra), name, DistInfo(), progress=False)
    results = first.fit()
    assert list(results) == rows
    assert all(0.0 <= float(r[1]) <= 1.0 and "AP" in r[0] for r in results.values())
    if "mean" in results:
        assert float(results["mean"][1]) == pytest.approx(
            (float(results["net1"][1]) + float(results["net2"][1])) / 2)
        assert first.state.best_perf == pytest.approx(float(results["mean"][1]))  # selection
        with open(os.path.join(first.run_dir, "results.json")) as f:
            saved_rows = json.load(f)["rows"]
        assert saved_rows["mean"]["main"] == pytest.approx(float(results["mean"][1]))
    saved = {k: v.clone() for k, v in first.method.state_dict().items()}
    rng = first.method.rng_state()
    extra[1] = "2"
    resumed = Trainer(_cfg(name, data_root, out, *extra, "TRAIN.RESUME", "True"), name,
                      DistInfo(), progress=False)
    resumed.setup()  # builds the nets and resumes (fit would too)
    for k, v in resumed.method.state_dict().items():
        assert torch.equal(v, saved[k]), k
    back = resumed.method.rng_state()
    assert back.keys() == rng.keys() and all(torch.equal(back[k], rng[k]) for k in rng)
    assert list(resumed.fit()) == rows


def test_compiled_step_gives_the_eager_numbers(monkeypatch):
    """The whole step under torch.compile (aot_eager: the graph capture without code generation)
    replays the recorded draws: the same losses, gradients, debug tensors and generator state."""
    import semipose.methods.compiled as compiled_mod
    from torch._dynamo.utils import counters
    monkeypatch.setattr(compiled_mod, "DEFAULT_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    method = MultiAugsDual({"net1": TinyNet(seed=0), "net2": TinyNet(seed=1)},
                           paths=["jc", "joco", "jccm"], hard=HardView(seed=3, cutout_scale=SCALE))
    batches = [make_batch(h=64, w=48, seed=s) for s in range(3)]
    runs = []
    for compiled in (False, True):
        m = copy.deepcopy(method)
        if compiled:
            m.compile_step("default")
        rows = []
        for batch in batches:
            out = m(batch)
            out.loss.backward()
            rows.append(({k: v.detach().clone() for k, v in out.logged().items()},
                         [p.grad.clone() for p in m.parameters() if p.grad is not None],
                         {k: v.clone() for k, v in out.debug.items()}))
            m.zero_grad(set_to_none=True)
        runs.append((m, rows))
    (m0, eager), (m1, comp) = runs
    assert m1.compiled_step.eager_steps == 1  # the first step records, the next two replay
    assert not counters["graph_break"], dict(counters["graph_break"])
    for (out0, g0, d0), (out1, g1, d1) in zip(eager, comp):
        assert out0.keys() == out1.keys() and all(torch.equal(out0[k], out1[k]) for k in out0)
        assert len(g0) == len(g1) and all(torch.equal(a, b) for a, b in zip(g0, g1))
        assert all(torch.equal(d0[k], d1[k]) for k in d0)
    st0, st1 = m0.rng_state(), m1.rng_state()
    assert all(torch.equal(st0[k], st1[k]) for k in st0)
    torch._dynamo.reset()

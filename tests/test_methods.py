"""Training methods (Supervised, PoseCons, PoseDual) and the collapse monitor, with tiny nets."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semipose.config import ConfigError, get_defaults, load_cfg
from semipose.losses import JointsMSELoss
from semipose.methods import (CollapseMonitor, PoseCons, PoseDual, Supervised, build_method,
                              num_nets)
from semipose.methods.parts import HardView
from semipose.transforms.batch import warp
from semipose.transforms.draws import Recorder, Tape, draw_all

J = 5


class TinyNet(nn.Module):
    """Stand-in for the pose nets: two stride-2 convs -> heatmaps at 1/4 resolution."""

    def __init__(self, j=J, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, j, 3, 2, 1))

    def forward(self, x):
        return self.body(x)


class FixedNet(nn.Module):
    """Outputs a fixed heatmap [J, h, w] for every sample (one dummy parameter)."""

    def __init__(self, hm):
        super().__init__()
        self.register_buffer("hm", hm)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.hm.expand(x.shape[0], *self.hm.shape) + 0 * self.dummy


class PoolNet(nn.Module):
    """Equivariant stand-in: channel mean of the image pooled by 4, repeated over joints."""

    def __init__(self, j=J):
        super().__init__()
        self.j, self.dummy = j, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.avg_pool2d(x.mean(1, keepdim=True), 4).repeat(1, self.j, 1, 1) + 0 * self.dummy


def make_batch(n=4, h=32, w=24, aug=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.ones(n, J, 1)
    weight[:, -1] = 0  # one union slot the labeled set does not supervise
    lab = {"image": torch.randn(n, 3, h, w, generator=g),
           "target": torch.rand(n, J, h // 4, w // 4, generator=g), "target_weight": weight}
    batch = {"labeled": lab, "unlabeled": {"image": torch.randn(n, 3, h, w, generator=g),
                                           "target_weight": weight.clone()}}
    if aug:
        batch["unlabeled_aug"] = {"image": torch.randn(n, 3, h, w, generator=g)}
    return batch


def assert_grads(net):
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# ------------------------------------------------------------------------------- Supervised
def test_supervised_step():
    net = TinyNet()
    method = Supervised({"net1": net})
    batch = make_batch()
    out = method.training_step(batch)
    assert set(out.logged()) == {"loss", "loss_pose"}
    # the step hands the trainer net 1's labeled prediction (for the accuracy), detached
    torch.testing.assert_close(out.sup_heatmaps, net(batch["labeled"]["image"]).detach())
    assert not out.sup_heatmaps.requires_grad
    ref = copy.deepcopy(net)
    lab = batch["labeled"]
    expected = JointsMSELoss()(ref(lab["image"]), lab["target"], lab["target_weight"])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert_grads(net)
    assert not out.sup_heatmaps.requires_grad
    # plain (unpaired) batches work too, and forward == training_step
    assert torch.isfinite(method(batch["labeled"]).loss)
    assert set(method.eval_models()) == {"net1"}


# -------------------------------------------------------------------------------- PoseCons
@pytest.mark.parametrize("mode", ["reference", "corrected"])
def test_posecons_step(mode):
    net = TinyNet()
    method = PoseCons(net, hard=HardView(ops=("cutout",), joint_num=3, cutout_mode=mode, seed=1))
    batch = make_batch()
    step = method.training_step(batch)
    out = step.logged()
    assert set(out) == {"loss", "loss_pose", "loss_cons"}
    assert step.sup_heatmaps.shape == (4, J, 8, 6) and not step.sup_heatmaps.requires_grad
    assert all(torch.isfinite(v).all() for v in [*out.values(), step.sup_heatmaps])
    torch.testing.assert_close(out["loss"], out["loss_pose"] + out["loss_cons"])
    step.loss.backward()
    assert_grads(net)
    last = step.debug
    for key in ("teacher_heatmaps", "teacher_warped", "hard_images", "student_heatmaps", "theta"):
        assert not last[key].requires_grad, key
    assert last["theta"].shape == (4, 2, 3)
    # the consistency target is the teacher warped by the step's theta
    torch.testing.assert_close(last["teacher_warped"], warp(last["teacher_heatmaps"], last["theta"]))
    expected = JointsMSELoss()(last["student_heatmaps"], last["teacher_warped"],
                               batch["unlabeled"]["target_weight"])
    torch.testing.assert_close(out["loss_cons"], expected)


def test_posecons_identity_view_and_rand_aug():
    net = TinyNet()
    batch = make_batch(aug=True)
    plain = PoseCons(net, hard=HardView(affine=False, joint_num=0))
    out = plain.training_step(batch)
    # same images, BatchNorm in train mode: student == teacher, no consistency error
    assert out.terms["loss_cons"].item() == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(out.debug["theta"], torch.eye(2, 3).expand(4, 2, 3))
    aug = PoseCons(net, hard=HardView(affine=False, rand_aug=True))
    out = aug.training_step(batch)
    torch.testing.assert_close(out.debug["hard_images"], batch["unlabeled_aug"]["image"])
    assert aug.training_step(batch).terms["loss_cons"] > 0
    del batch["unlabeled_aug"]
    with pytest.raises(KeyError, match="CONS_RAND_AUG"):
        aug.training_step(batch)


def test_same_seed_same_hard_view():
    net = TinyNet()
    batch = make_batch()
    a = PoseCons(copy.deepcopy(net), hard=HardView(ops=("cutout",), joint_num=2, seed=5))
    b = PoseCons(copy.deepcopy(net), hard=HardView(ops=("cutout",), joint_num=2, seed=5))
    la, lb = a.training_step(batch), b.training_step(batch)
    torch.testing.assert_close(la.loss, lb.loss)
    torch.testing.assert_close(la.debug["hard_images"], lb.debug["hard_images"])
    c = PoseCons(copy.deepcopy(net), hard=HardView(ops=("cutout",), joint_num=2, seed=6))
    lc = c.training_step(batch)
    assert not torch.equal(la.debug["theta"], lc.debug["theta"])


def test_corrected_cutout_skips_samples_without_supervised_joints():
    batch = make_batch(n=2, h=64, w=48)
    batch["unlabeled"]["target_weight"][1] = 0
    method = PoseCons(TinyNet(), hard=HardView(ops=("cutout",), joint_num=4, affine=False,
                                               cutout_mode="corrected"))
    hard, easy = method.training_step(batch).debug["hard_images"], batch["unlabeled"]["image"]
    assert torch.equal(hard[1], easy[1])
    assert (hard[0] == 0).sum() > 0 and torch.equal(hard[0][hard[0] != 0], easy[0][hard[0] != 0])
    # a fixed joint mask given to the constructor overrides the per-sample weights
    fixed = PoseCons(TinyNet(), hard=HardView(ops=("cutout",), joint_num=4, affine=False,
                                              cutout_mode="corrected",
                                              joint_mask=torch.zeros(J, dtype=torch.bool)))
    assert torch.equal(fixed.training_step(batch).debug["hard_images"], easy)


# -------------------------------------------------------------------------------- PoseDual
def test_posedual_step():
    f1, f2 = TinyNet(seed=0), TinyNet(seed=1)
    method = PoseDual({"net1": f1, "net2": f2},
                      hard=HardView(ops=("cutout",), joint_num=2, seed=0))
    batch = make_batch()
    step = method.training_step(batch)
    out = step.logged()
    assert {"loss", "loss_pose", "loss_cons"} <= set(out)
    assert step.sup_heatmaps.shape == (4, J, 8, 6)
    assert all(torch.isfinite(v).all() for v in [*out.values(), step.sup_heatmaps])
    torch.testing.assert_close(out["loss_pose"], 0.5 * out["loss_pose_1"] + 0.5 * out["loss_pose_2"])
    torch.testing.assert_close(out["loss_cons"], out["loss_cons_1"] + out["loss_cons_2"])
    step.loss.backward()
    assert_grads(f1)
    assert_grads(f2)
    for key in ("teacher_heatmaps", "teacher_heatmaps_2", "teacher_warped", "teacher_warped_2",
                "hard_images", "hard_images_2"):
        assert not step.debug[key].requires_grad, key
    # cross targets: s1 is regressed to T2 and s2 to T1
    w = batch["unlabeled"]["target_weight"]
    last = step.debug
    torch.testing.assert_close(out["loss_cons_1"],
                               JointsMSELoss()(last["student_heatmaps"], last["teacher_warped_2"], w))
    torch.testing.assert_close(out["loss_cons_2"],
                               JointsMSELoss()(last["student_heatmaps_2"], last["teacher_warped"], w))


@pytest.mark.parametrize("real", ["net1", "net2"])
def test_posedual_cross_supervision(real):
    """With one net fixed at C, the other is taught C: loss_cons = MSE(f(x), C) + MSE(C, f(x))."""
    const = torch.rand(J, 8, 6, generator=torch.Generator().manual_seed(3))
    nets = {"net1": FixedNet(const), "net2": FixedNet(const)}
    nets[real] = TinyNet()
    reference = copy.deepcopy(nets[real])
    method = PoseDual(nets, hard=HardView(affine=False, joint_num=0))
    batch = make_batch()
    batch["labeled"]["target_weight"].zero_()  # isolate the consistency term
    out = method.training_step(batch)
    x_u, w_u = batch["unlabeled"]["image"], batch["unlabeled"]["target_weight"]
    pred = reference(x_u)
    mse = JointsMSELoss()(pred, const.expand_as(pred), w_u)
    torch.testing.assert_close(out.terms["loss_cons"], 2 * mse.detach())
    out.loss.backward()
    mse.backward()  # only the student copy regressed to C carries gradient
    for p, q in zip(method.nets[real].parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def assert_cuts_centre_on_other_net(build):
    """``build(nets)`` makes a two-net method with one joint cut per view; each student's cut must
    sit where the *other* net sees the joints. Stride-2 stand-ins on 128x96 images give 64x48
    heatmaps, so a hard-coded stride of 4 would put net 1's joint (48, 56)*4 outside the image."""
    hm1, hm2 = torch.zeros(J, 64, 48), torch.zeros(J, 64, 48)
    hm1[:, 10, 8] = 1  # net1's joints at pixel (16, 20)
    hm2[:, 56, 40] = 1  # net2's joints at pixel (80, 112)
    method = build({"net1": FixedNet(hm1), "net2": FixedNet(hm2)})
    batch = make_batch(n=3, h=128, w=96)
    batch["unlabeled"]["image"] = torch.ones(3, 3, 128, 96)
    batch["labeled"]["target"] = torch.zeros(3, J, 64, 48)
    debug = method.training_step(batch).debug

    def centroid(img):
        yx = (img[:, 0] == 0).nonzero()[:, 1:].float()
        return yx.mean(0).flip(0)  # (x, y)

    c1, c2 = centroid(debug["hard_images"]), centroid(debug["hard_images_2"])
    assert (c1 - torch.tensor([80.0, 112.0])).norm() < 25  # student 1 cut where net2 sees joints
    assert (c2 - torch.tensor([16.0, 20.0])).norm() < 25


def test_posedual_cutout_centres_on_other_net_with_derived_stride():
    assert_cuts_centre_on_other_net(
        lambda nets: PoseDual(nets, hard=HardView(ops=("cutout",), joint_num=3, affine=False,
                                                  cutout_mode="corrected", seed=2)))


def test_posedual_sup_weight_scales_supervised_terms_only():
    """DUAL_SUP_WEIGHT w: loss = w (pose1 + pose2) + cons1 + cons2 (0.5 = reference)."""
    batch = make_batch()
    outs = {}
    for w in (0.5, 1.0):
        method = PoseDual({"net1": TinyNet(seed=0), "net2": TinyNet(seed=1)}, sup_weight=w,
                          hard=HardView(seed=0))
        outs[w] = method.training_step(batch).logged()
    ref, one = outs[0.5], outs[1.0]
    for key in ("loss_pose_1", "loss_pose_2", "loss_cons"):  # same draws, same terms
        torch.testing.assert_close(ref[key], one[key])
    torch.testing.assert_close(one["loss_pose"], one["loss_pose_1"] + one["loss_pose_2"])
    torch.testing.assert_close(one["loss"] - ref["loss"],
                               0.5 * (ref["loss_pose_1"] + ref["loss_pose_2"]))
    with pytest.raises(ValueError, match="DUAL_SUP_WEIGHT"):
        PoseDual({"net1": TinyNet(), "net2": TinyNet()}, sup_weight=0.0)


def test_posedual_sup_weight_from_cfg():
    cfg_path = os.path.join(os.path.dirname(__file__), "..", "experiments", "synthetic",
                            "ssl_benchmark.yaml")
    nets = {"net1": TinyNet(), "net2": TinyNet()}
    assert PoseDual.from_cfg(load_cfg(cfg_path), nets).sup_weight == 0.5
    cfg = load_cfg(cfg_path, ["DUAL_SUP_WEIGHT", "1.0"])
    assert PoseDual.from_cfg(cfg, nets).sup_weight == 1.0
    with pytest.raises(ConfigError, match="DUAL_SUP_WEIGHT"):
        load_cfg(cfg_path, ["DUAL_SUP_WEIGHT", "0"])


def test_posedual_eval_models():
    f1, f2 = TinyNet(seed=0), TinyNet(seed=1)
    method = PoseDual([f1, f2]).eval()
    x = torch.randn(2, 3, 32, 24)
    models = method.eval_models()
    assert set(models) == {"net1", "net2", "ensemble"}
    with torch.no_grad():
        torch.testing.assert_close(models["ensemble"](x), 0.5 * (f1(x) + f2(x)))
        pred = method.predict(x)
        for name, fn in models.items():
            torch.testing.assert_close(pred[name], fn(x))


# ------------------------------------------------------------------------------- from_cfg
def _cfg(name):
    cfg = get_defaults().clone()
    cfg.defrost()
    cfg.MODEL.NAME = name
    cfg.DATASET.SCALE_FACTOR, cfg.DATASET.ROT_FACTOR = 0.3, 40
    cfg.LOSS.USE_TARGET_WEIGHT = True
    hard = cfg.SSL.HARD
    hard.AFFINE, hard.RAND_AUG, hard.JOINT_CUTOUT = True, False, 5
    hard.CUTOUT_MODE, hard.ALIGN_CORNERS, cfg.SEED = "corrected", True, 7
    cfg.MONITOR.LOW_MAX_THRE, cfg.MONITOR.WARN_RISE = 0.15, 0.3
    return cfg


def test_build_method_from_cfg():
    dual = build_method(_cfg("pose_dual"), [TinyNet(), TinyNet(seed=1)], seed=9)
    assert isinstance(dual, PoseDual) and num_nets(_cfg("pose_dual")) == 2
    assert (dual.hard.scale_factor, dual.hard.rot_factor, dual.hard.joint_num) == (0.3, 40.0, 5)
    assert dual.hard.cutout_mode == "corrected" and dual.hard.align_corners
    assert dual.hard.stream.seed == 9
    assert dual.hard.cutout_scale == 1.0  # the key at its default: the reference's pixel sizes
    cfg = _cfg("pose_cons")
    cfg.SSL.HARD.CUTOUT_SCALE = 0.354
    cons = build_method(cfg, TinyNet())
    assert isinstance(cons, PoseCons) and cons.hard.cutout_scale == 0.354
    with pytest.raises(ValueError, match=r"CUTOUT_SCALE \(CUTOUT_SCALE\) must be > 0"):
        PoseCons(TinyNet(), hard=HardView(cutout_scale=0.0))
    assert isinstance(build_method(_cfg("pose_hrnet"), TinyNet()), Supervised)
    assert num_nets(_cfg("pose_resnet")) == 1
    with pytest.raises(ValueError, match="MODEL.NAME"):
        build_method(_cfg("pose_foo"), TinyNet())
    with pytest.raises(ValueError, match="net1"):
        PoseDual([TinyNet()])
    mon = CollapseMonitor.from_cfg(_cfg("pose_dual"))
    assert (mon.threshold, mon.warn_rise, mon.align_corners) == (0.15, 0.3, True)


def test_build_method_from_project_defaults():
    try:
        from semipose.config import get_defaults
    except ImportError:
        pytest.skip("semipose.config not available")
    cfg = get_defaults().clone()
    cfg.defrost()
    cfg.MODEL.NAME = "pose_dual"
    method = build_method(cfg, [TinyNet(), TinyNet(seed=1)])
    assert method.hard.cutout_mode == cfg.SSL.HARD.CUTOUT_MODE
    assert method.hard.stream.seed == cfg.SEED
    assert torch.isfinite(method.training_step(make_batch()).loss)


# -------------------------------------------------------------------------------- monitor
def test_monitor_collapsed_and_peaked_nets():
    peaks = torch.zeros(J, 8, 6)
    peaks[:, 3, 2] = 0.9
    peaks[-1] = 0  # unsupervised slot: flat, must not count
    method = PoseDual({"net1": FixedNet(torch.zeros(J, 8, 6)), "net2": FixedNet(peaks)})
    mask = torch.tensor([True] * (J - 1) + [False])
    stats = CollapseMonitor(threshold=0.1).measure(method, torch.randn(4, 3, 32, 24), mask)
    assert stats["net1/collapse_frac"] == 1.0 and stats["net1/max_mean"] == 0.0
    assert stats["net2/collapse_frac"] == 0.0
    assert stats["net2/max_mean"] == pytest.approx(0.9) and stats["net2/max_q10"] == pytest.approx(0.9)
    assert stats["net1/agree_px"] != stats["net1/agree_px"]  # NaN: no confident joint
    assert stats["net1_net2_px"] == pytest.approx(((3 ** 2 + 2 ** 2) ** 0.5))


def test_monitor_agreement_restores_mode_and_bn_stats():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    centres = torch.rand(6, 2, generator=g) * torch.tensor([16.0, 24.0]) + torch.tensor([16.0, 20.0])
    blob = torch.exp(-((xx - centres[:, :1, None]) ** 2 + (yy - centres[:, 1:, None]) ** 2) / 50)
    images = blob[:, None].expand(6, 3, 64, 48)
    method = PoseCons(PoolNet())
    stats = CollapseMonitor(threshold=0.1).measure(method, images)
    assert stats["net1/collapse_frac"] == 0.0
    assert 0 <= stats["net1/agree_px"] <= 1.5  # equivariant net: warped views agree
    assert "net1_net2_px" not in stats

    net = TinyNet()
    cons = PoseCons(net).train()
    before = copy.deepcopy(net.body[1].running_mean)
    CollapseMonitor().measure(cons, torch.randn(4, 3, 32, 24))
    assert net.training and torch.equal(net.body[1].running_mean, before)


def test_monitor_warns_on_sharp_rise():
    mon = CollapseMonitor(warn_rise=0.2)
    assert mon.update({"net1/collapse_frac": 0.05, "net2/collapse_frac": 0.1}) == []
    warnings = mon.update({"net1/collapse_frac": 0.5, "net2/collapse_frac": 0.2})
    assert len(warnings) == 1 and warnings[0].startswith("net1") and "0.500" in warnings[0]
    assert mon.update({"net1/collapse_frac": 0.6, "net2/collapse_frac": 0.25}) == []


def test_monitor_warns_when_already_collapsed():
    mon = CollapseMonitor(warn_rise=0.2)
    first = mon.update({"net1/collapse_frac": 0.95, "net2/collapse_frac": 0.3})
    assert len(first) == 1 and first[0].startswith("net1") and "95.0%" in first[0]
    # Still collapsed and not recovering: warn again; recovering below 0.9: quiet.
    assert len(mon.update({"net1/collapse_frac": 1.0, "net2/collapse_frac": 0.3})) == 1
    assert mon.update({"net1/collapse_frac": 0.5, "net2/collapse_frac": 0.3}) == []


def record_then_replay(method, batch, seed):
    """The compiled step's draw handling by hand (methods/compiled.py): one step of ``method``
    with its draws recorded, the same draws taken again from a fresh generator of ``seed``, and
    one step of a copy of the method made before the first step, replaying them from a tape.
    Returns (recorded step, replayed step, recorder, fresh generator, tape, draws)."""
    replay = copy.deepcopy(method)
    stream = method.hard.stream
    recorder = Recorder(stream.generator(torch.device("cpu")))
    stream.source = recorder
    try:
        a = method.training_step(batch)
    finally:
        stream.source = None
    gen = torch.Generator().manual_seed(seed)
    draws = draw_all(gen, recorder.specs)
    tape = Tape(draws)
    replay.hard.stream.source = tape
    try:
        b = replay.training_step(batch)
    finally:
        replay.hard.stream.source = None
    return a, b, recorder, gen, tape, draws

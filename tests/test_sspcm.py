"""SSPCM (methods/sspcm.py): the per-joint choice of the time correction by hand, the score and
distance filters' weights, cross-teaching teachers and a student taught by their ensemble, the
previous-epoch snapshots (taken at the epoch boundary, restored from extra_state), replayable
draws, and a train/validate/resume run through the trainer."""
from __future__ import annotations

import io
import os

import pytest
import torch

from semipose.config import ConfigError, load_cfg
from semipose.engine.trainer import Trainer
from semipose.losses import JointsMSELoss
from semipose.methods import SSPCM, build_method
from semipose.methods.parts import HardView
from semipose.methods.sspcm import JointFilter, time_corrected_ensemble
from semipose.utils.dist import DistInfo
from conftest import make_synthetic, synthetic_cfg, tiny
from test_methods import J, FixedNet, TinyNet, make_batch, record_then_replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTH = os.path.join(ROOT, "experiments", "synthetic")
MSE = JointsMSELoss()


def peaks(points, value, h=4, w=3):
    """Heatmaps [1, len(points), h, w]: channel j is ``value`` at (x, y) = points[j], else 0."""
    hm = torch.zeros(1, len(points), h, w)
    for j, (x, y) in enumerate(points):
        hm[0, j, y, x] = value
    return hm


# ------------------------------------------------------------------------ time correction
def test_time_correction_chooses_the_closest_pair_per_joint_by_hand():
    #            joint 0  joint 1  joint 2  joint 3  joint 4 (tie)
    a = peaks([(0, 0), (0, 0), (0, 0), (0, 0), (0, 0)], 0.8)
    b = peaks([(0, 0), (2, 3), (2, 3), (2, 3), (1, 0)], 0.6)
    a_prev = peaks([(2, 3), (2, 2), (2, 3), (1, 1), (2, 0)], 0.4)
    b_prev = peaks([(1, 1), (0, 0), (1, 1), (1, 2), (2, 2)], 0.2)
    ens, choice = time_corrected_ensemble(a, b, a_prev, b_prev)
    # squared distances of (A,B), (A',B), (A,B'), (A',B'):
    # joint 0: 0, 4+0=4 -> (A,B) | joint 1: 13, 0+1=1, 0 -> (A,B') | joint 2: 13, 0 -> (A',B)
    # joint 3: 13, 1+4=5, 1+4=5, 0+1=1 -> (A',B') | joint 4: 1, 1 (tie: the first) -> (A,B)
    assert choice.tolist() == [[0, 2, 1, 3, 0]]
    expected = torch.zeros(1, 5, 4, 3)
    expected[0, 0, 0, 0] = (0.8 + 0.6) / 2                        # A and B on the same pixel
    expected[0, 1, 0, 0] = (0.8 + 0.2) / 2                        # A and B' on the same pixel
    expected[0, 2, 3, 2] = (0.4 + 0.6) / 2                        # A' and B at (2, 3)
    expected[0, 3, 1, 1], expected[0, 3, 2, 1] = 0.4 / 2, 0.2 / 2  # A' (1, 1), B' (1, 2)
    expected[0, 4, 0, 0], expected[0, 4, 0, 1] = 0.8 / 2, 0.6 / 2  # A (0, 0), B (1, 0)
    torch.testing.assert_close(ens, expected, rtol=0, atol=1e-7)


# ------------------------------------------------------------------------ joint filters
def test_score_filter_weights_by_hand():
    m_a = [0.3, 0.05, 0.1, 0.15, 0.9]
    m_b = [0.2, 0.1, 0.1, 0.06, 0.9]   # means 0.25, 0.075, 0.1 (not above), 0.105, 0.9
    t_a = torch.stack([peaks([(0, 0)], v)[0, 0] for v in m_a])[None]
    t_b = torch.stack([peaks([(2, 3)], v)[0, 0] for v in m_b])[None]  # far apart: no effect
    w_u = torch.ones(1, 5, 1)
    w_u[0, 4] = 0  # a joint the unlabeled set does not supervise stays at 0
    w_ab, w_s = JointFilter()(t_a, t_b, w_u)  # released: score filter on, distance off
    assert w_ab.flatten().tolist() == [1, 0, 0, 1, 0]
    assert torch.equal(w_s, w_ab)
    w_ab, _ = JointFilter(score_thre=0.07)(t_a, t_b, w_u)
    assert w_ab.flatten().tolist() == [1, 1, 1, 1, 0]
    w_ab, _ = JointFilter(score_filter=False)(t_a, t_b, None)
    assert w_ab.flatten().tolist() == [1, 1, 1, 1, 1]
    # score reweighting: clip(1 - |m_A - m_B|, 0, 1) on the kept joints
    w_ab, _ = JointFilter(score_reweight=True)(t_a, t_b, w_u)
    torch.testing.assert_close(w_ab.flatten(), torch.tensor([0.9, 0, 0, 0.91, 0]))


def test_distance_filter_when_enabled_by_hand():
    # 64 x 48 heatmaps: diagonal D = 80; joint 0 same place, joint 1 40 px apart (u = 0.5),
    # joint 2 50 px apart (u = 0.625), joint 3 78.6 px apart (u = 0.98), all scores high
    pa = [(0, 0), (0, 0), (0, 0), (0, 0)]
    pb = [(0, 0), (24, 32), (30, 40), (47, 63)]
    t_a, t_b = peaks(pa, 0.5, 64, 48), peaks(pb, 0.5, 64, 48)
    w_ab, w_s = JointFilter(dist_filter=True)(t_a, t_b, torch.ones(1, 4, 1))
    assert w_ab.flatten().tolist() == [1, 1, 1, 1]  # the teachers' terms: score filter only
    assert w_s.flatten().tolist() == [1, 1, 0, 0]   # the student's: u < 0.6
    _, w_s = JointFilter(dist_filter=True, dist_thre=0.7, dist_reweight=True)(
        t_a, t_b, torch.ones(1, 4, 1))
    torch.testing.assert_close(w_s.flatten(), torch.tensor([1.0, 0.5, 0.375, 0.0]))
    _, w_s = JointFilter()(t_a, t_b, None)  # off by default, as released
    assert w_s.flatten().tolist() == [1, 1, 1, 1]
    # both_satisfy: kept if EITHER filter keeps it, the same weights for all three terms
    # joint 0 sure and near; joints 1-3 unsure (mean score 0.05), joint 1 near, 2 and 3 far
    t_a2 = torch.cat([peaks(pa[:1], 0.5, 64, 48), peaks(pa[1:], 0.05, 64, 48)], 1)
    t_b2 = torch.cat([peaks(pb[:1], 0.5, 64, 48), peaks(pb[1:], 0.05, 64, 48)], 1)
    both = JointFilter(dist_filter=True, both=True)
    w_ab, w_s = both(t_a2, t_b2, torch.ones(1, 4, 1))
    assert w_ab.flatten().tolist() == [1, 1, 0, 0] and torch.equal(w_ab, w_s)
    w_ab, w_s = JointFilter(dist_filter=True)(t_a2, t_b2, torch.ones(1, 4, 1))
    assert w_ab.flatten().tolist() == [1, 0, 0, 0] and w_s.flatten().tolist() == [1, 0, 0, 0]
    with pytest.raises(ConfigError, match="BOTH_SATISFY"):
        JointFilter(both=True)


# ------------------------------------------------------------------------ the step
def fixed_method(hm_s, hm_a, hm_b, **kw):
    hard = kw.pop("hard", HardView(affine=False, seed=1))
    return SSPCM({"net1": FixedNet(hm_s.clone()), "teacher1": FixedNet(hm_a.clone()),
                  "teacher2": FixedNet(hm_b.clone())}, hard=hard, **kw)


def one_peak_maps(x, y, value):
    hm = torch.zeros(J, 64, 48)
    hm[:, y, x] = value
    return hm


def test_teachers_cross_teach_and_the_student_learns_their_ensemble():
    hm_a, hm_b, hm_s = one_peak_maps(4, 5, 0.6), one_peak_maps(40, 56, 1.0), torch.zeros(J, 64, 48)
    method = fixed_method(hm_s, hm_a, hm_b, joint_filter=JointFilter(score_filter=False))
    batch = make_batch(n=3, h=256, w=192)
    w_u = batch["unlabeled"]["target_weight"]
    method.set_progress(0.0)  # epoch 0: the correction waits (E = (t_A + t_B) / 2)
    out = method.training_step(batch)
    a, b = hm_a.expand(3, -1, -1, -1), hm_b.expand(3, -1, -1, -1)
    ens = (a + b) / 2
    torch.testing.assert_close(out.debug["teacher_warped"], ens)  # no affine: T_E = E
    torch.testing.assert_close(out.terms["loss_cons_teacher1"], MSE(a, b, w_u))  # A <- B
    torch.testing.assert_close(out.terms["loss_cons_teacher2"], MSE(b, a, w_u))  # B <- A
    torch.testing.assert_close(out.terms["loss_cons_net1"], MSE(hm_s.expand(3, -1, -1, -1),
                                                                ens, w_u))
    assert float(out.terms["pcm_current"]) == 1.0
    lab = batch["labeled"]
    pose = sum(MSE(h.expand(3, -1, -1, -1), lab["target"], lab["target_weight"])
               for h in (hm_s, hm_a, hm_b))
    torch.testing.assert_close(out.terms["loss_pose"], 0.5 * pose)
    torch.testing.assert_close(out.loss.detach(), out.terms["loss_pose"] + out.terms["loss_cons"])


def test_hard_views_centre_on_the_teaching_nets_joints():
    # Joint Cutout (JO 0) in true geometry: where each view is cut says whose joints placed it
    hm_a, hm_b = one_peak_maps(4, 5, 0.6), one_peak_maps(40, 56, 1.0)  # pixels (16,20), (160,224)
    hard = HardView(("cutout",), 3, cutout_mode="corrected", affine=False, seed=2)
    method = fixed_method(torch.zeros(J, 64, 48), hm_a, hm_b, hard=hard)
    batch = make_batch(n=3, h=256, w=192)
    batch["unlabeled"]["image"] = torch.ones(3, 3, 256, 192)
    debug = method.training_step(batch).debug

    def centroid(img):
        return (img[:, 0] == 0).nonzero()[:, 1:].float().mean(0).flip(0)  # (x, y)

    def near(img, xy):
        return (centroid(img) - torch.tensor(xy)).norm() < 25

    assert near(debug["hard_images_a"], [160.0, 224.0])  # A is cut where B sees joints
    assert near(debug["hard_images_b"], [16.0, 20.0])    # B where A does
    assert near(debug["hard_images"], [160.0, 224.0])    # S where E peaks (B's 1.0 > A's 0.6)


def test_snapshot_at_the_epoch_boundary_feeds_the_correction():
    hm_a0 = one_peak_maps(10, 10, 0.5)
    hm_b = one_peak_maps(30, 30, 0.5)
    method = fixed_method(torch.zeros(J, 64, 48), hm_a0, hm_b)
    method.set_progress(0.0)  # the run starts: A' = A as it is
    assert torch.equal(method.previous["teacher1"].hm, hm_a0)
    hm_a1 = one_peak_maps(29, 30, 0.5)  # "training" moves A next to B during epoch 0
    method.nets["teacher1"].hm.copy_(hm_a1)
    method.set_progress(0.99)  # same epoch: no new snapshot
    assert torch.equal(method.previous["teacher1"].hm, hm_a0)
    method.set_progress(1.0)  # epoch 1 starts: A' = A as epoch 0 left it
    assert method.snapshot_epoch == 1 and method.correction_active()
    assert torch.equal(method.previous["teacher1"].hm, hm_a1)
    assert torch.equal(method.previous["teacher2"].hm, hm_b)
    assert not any("previous" in k for k in method.state_dict())  # not in the module tree
    method.eval()
    assert not any(m.training for m in method.previous.values())
    method.train()
    assert all(m.training for m in method.previous.values())
    method.nets["teacher1"].hm.copy_(hm_a0)  # A jumps back far away during epoch 1
    batch = make_batch(n=2, h=256, w=192)
    out = method.training_step(batch)
    # per joint: (A,B) 800 apart, (A',B) 1 apart -> E = (A' + B) / 2
    torch.testing.assert_close(out.debug["teacher_heatmaps"],
                               ((hm_a1 + hm_b) / 2).expand(2, -1, -1, -1))
    assert float(out.terms["pcm_current"]) == 0.0
    off = fixed_method(torch.zeros(J, 64, 48), hm_a0, hm_b, time_correction=False)
    off.set_progress(1.0)
    torch.testing.assert_close(off.training_step(batch).debug["teacher_heatmaps"],
                               ((hm_a0 + hm_b) / 2).expand(2, -1, -1, -1))


def tiny_method(seed=0):
    return SSPCM({"net1": TinyNet(seed=seed), "teacher1": TinyNet(seed=seed + 1),
                  "teacher2": TinyNet(seed=seed + 2)},
                 hard=HardView(("jo",), seed=5, cutout_scale=0.5))


def test_extra_state_restores_the_snapshot_exactly():
    method = tiny_method()
    method.set_progress(0.0)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.1)
    method.training_step(make_batch(h=64, w=48))  # train-mode passes move the BN buffers
    method.set_progress(1.0)
    method.training_step(make_batch(h=64, w=48, seed=1))  # and the snapshot's own
    buf = io.BytesIO()
    torch.save({"method_state": method.extra_state(), "nets": method.state_dict(),
                "rng": method.rng_state()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    fresh = tiny_method(seed=7)
    fresh.load_state_dict(saved["nets"])
    fresh.load_extra_state(saved["method_state"])
    fresh.set_rng_state(saved["rng"])
    assert fresh.snapshot_epoch == 1
    for name in ("teacher1", "teacher2"):
        a, b = method.previous[name].state_dict(), fresh.previous[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    fresh.set_progress(1.5)  # mid-epoch: the restored snapshot stays
    method.set_progress(1.5)
    batch = make_batch(h=64, w=48, seed=2)
    x, y = method.training_step(batch), fresh.training_step(batch)
    assert all(torch.equal(x.terms[k], y.terms[k]) for k in x.terms)
    assert torch.equal(x.loss, y.loss)
    assert SSPCM.load_extra_state(tiny_method(), {}) is None  # an old checkpoint: no snapshot


def test_recorded_draws_replay_the_step():
    method = tiny_method()
    method.set_progress(1.0)  # the correction active: all five teacher passes
    a, b, recorder, gen, tape, draws = record_then_replay(method, make_batch(h=64, w=48), 5)
    assert len(recorder.specs) > 3 * 3  # three JO views, then one theta
    assert torch.equal(gen.get_state(), recorder.generator.get_state())
    assert tape.pos == len(draws)
    assert a.terms.keys() == b.terms.keys() and a.debug.keys() == b.debug.keys()
    assert all(torch.equal(a.terms[k], b.terms[k]) for k in a.terms)
    assert all(torch.equal(a.debug[k], b.debug[k]) for k in a.debug)
    assert torch.equal(a.loss, b.loss)


# ------------------------------------------------------------------------ config
def test_options_from_the_config():
    assert SSPCM([TinyNet(), TinyNet(), TinyNet()]).hard.ops == ("jo",)  # the released view
    base = os.path.join(SYNTH, "posedual.yaml")
    cfg = load_cfg(base, ["MODEL.NAME", "sspcm", "TEST.BEST_METRIC", "net1"])
    m = build_method(cfg, [TinyNet(), TinyNet(), TinyNet()])
    assert isinstance(m, SSPCM) and m.hard.ops == ("jo",) and m.hard.op_counts["jo"] == 2
    assert m.hard.op_mode == "reference" and m.time_correction and m.warmup_epoch == 0
    f = m.joint_filter
    assert (f.score_filter, f.score_thre, f.dist_filter, f.dist_thre) == (True, 0.1, False, 0.6)
    assert SSPCM.eval_rows() == ("net1", "teacher1", "teacher2", "teacher_ensemble")
    m = build_method(load_cfg(base, ["MODEL.NAME", "sspcm", "TEST.BEST_METRIC", "teacher1",
                                     "SSL.SSPCM.JO", "0", "SSL.HARD.JOINT_CUTOUT", "3"]),
                     [TinyNet(), TinyNet(), TinyNet()])
    assert m.hard.ops == ("cutout",) and m.hard.joint_num == 3
    for key, value, match in (("SSL.SSPCM.JO", "-1", "SSL.SSPCM.JO"),
                              ("SSL.SSPCM.BOTH_SATISFY", "True", "BOTH_SATISFY"),
                              ("SSL.SSPCM.DIST_THRE", "150", "DIST_THRE"),
                              ("SSL.SSPCM.OP_MODE", "swapped", "'swapped' unknown")):
        with pytest.raises(ConfigError, match=match):
            load_cfg(base, ["MODEL.NAME", "sspcm", "TEST.BEST_METRIC", "net1", key, value])


# ------------------------------------------------------------------ through the trainer
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_sspcm", seed=6, num_train=4, num_val=2)


def _cfg(root: str, out: str, *extra: str):
    return synthetic_cfg(os.path.join(SYNTH, "posedual.yaml"), root, out,
                         tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.LR_STEP", "[5]",
                              "MONITOR.ENABLED", "False", "MODEL.NAME", "sspcm",
                              "TEST.BEST_METRIC", "net1", *extra))


def test_sspcm_trains_validates_and_resumes_with_the_snapshot(data_root, tmp_path):
    out = str(tmp_path / "out")
    rows = ["net1", "teacher1", "teacher2", "teacher_ensemble"]
    first = Trainer(_cfg(data_root, out, "TRAIN.END_EPOCH", "1"), "sspcm", DistInfo(),
                    progress=False)
    results = first.fit()
    assert list(results) == rows
    assert all(0.0 <= float(r[1]) <= 1.0 and "AP" in r[0] for r in results.values())
    assert first.method.snapshot_epoch == 0  # the nets the run started with
    prev = {n: {k: v.clone() for k, v in m.state_dict().items()}
            for n, m in first.method.previous.items()}
    teachers = {n: {k: v.clone() for k, v in first.method.nets[n].state_dict().items()}
                for n in ("teacher1", "teacher2")}
    assert any(not torch.equal(prev["teacher1"][k], teachers["teacher1"][k])
               for k in teachers["teacher1"])  # the teachers trained; the snapshot did not
    resumed = Trainer(_cfg(data_root, out, "TRAIN.END_EPOCH", "2", "TRAIN.RESUME", "True"),
                      "sspcm", DistInfo(), progress=False)
    resumed.setup()
    assert resumed.method.snapshot_epoch == 0
    for n in prev:  # the previous-epoch teachers come back from the checkpoint exactly
        back = resumed.method.previous[n].state_dict()
        assert all(torch.equal(back[k], prev[n][k]) for k in prev[n]), n
    assert list(resumed.fit()) == rows
    # epoch 1 started from a snapshot of the teachers as epoch 0 left them
    assert resumed.method.snapshot_epoch == 1
    for n in teachers:
        snap = resumed.method.previous[n].state_dict()
        assert all(torch.equal(snap[k], teachers[n][k]) for k in teachers[n]
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))), n

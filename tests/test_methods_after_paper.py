"""Methods after the paper: PoseDual with EMA teachers, multi-path consistency (MultiAugs) and
its mixing ops, and the confidence mask of the consistency losses."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from semipose.config import ConfigError, load_cfg
from semipose.engine.trainer import Trainer
from semipose.losses import JointsMSELoss
from semipose.methods import MultiPath, PoseCons, PoseDual, PoseDualMeanTeacher
from semipose.methods.multi_path import parse_paths
from semipose.methods.parts import Consistency, HardView
from semipose.transforms.batch import (cutmix, joint_cut_occlusion, joint_cutout_mask, mixup,
                                       random_partner, warp)
from semipose.utils.dist import DistInfo
from conftest import make_synthetic, synthetic_cfg, tiny
from test_methods import J, TinyNet, make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTH = os.path.join(ROOT, "experiments", "synthetic")
# the shared tiny run, with a narrow backbone and no collapse monitor
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.LR_STEP", "[5]", "MONITOR.ENABLED", "False")


def scalars(out):
    """The logged scalars of a step (every entry of the StepOutput but its tensors)."""
    return out.logged()


# ------------------------------------------------------------------------ PoseDual + EMA
def test_posedual_mt_trains_students_only_with_cross_ema_targets():
    nets = {"net1": TinyNet(seed=0), "net2": TinyNet(seed=1), "teacher1": TinyNet(seed=2),
            "teacher2": TinyNet(seed=3)}
    method = PoseDualMeanTeacher(nets, ema_decay=0.9,
                                 hard=HardView(ops=("cutout",), joint_num=2, seed=0))
    for t, s in (("teacher1", "net1"), ("teacher2", "net2")):  # teachers start as copies
        for a, b in zip(method.nets[t].state_dict().values(), method.nets[s].state_dict().values()):
            assert torch.equal(a, b)
    batch = make_batch()
    out = method.training_step(batch)
    assert all(torch.isfinite(v) for v in scalars(out).values())
    out.loss.backward()
    for name in ("net1", "net2"):
        assert all(p.grad is not None for p in method.nets[name].parameters()), name
    for name in ("teacher1", "teacher2"):
        assert all(p.grad is None and not p.requires_grad
                   for p in method.nets[name].parameters()), name
    # the targets come from the teachers (in train mode, as the students' teacher pass)
    x_u, last = batch["unlabeled"]["image"], out.debug
    t1 = copy.deepcopy(method.nets["teacher1"])(x_u)
    torch.testing.assert_close(last["teacher_heatmaps"], t1.detach())
    w = batch["unlabeled"]["target_weight"]
    torch.testing.assert_close(out.terms["loss_cons_1"], JointsMSELoss()(
        last["student_heatmaps"], last["teacher_warped_2"], w))
    # EMA after an optimizer step: k = 0 copies, k = 1 uses d = min(0.9, 1/2)
    params = [p for n in ("net1", "net2") for p in method.nets[n].parameters()]
    opt = torch.optim.SGD(params, lr=0.5)
    opt.step()
    method.after_step()
    for t, s in (("teacher1", "net1"), ("teacher2", "net2")):
        for a, b in zip(method.nets[t].parameters(), method.nets[s].parameters()):
            assert torch.equal(a, b)
    opt.zero_grad()
    method.training_step(batch).loss.backward()
    before = [p.detach().clone() for p in method.nets["teacher2"].parameters()]
    opt.step()
    method.after_step()
    for t0, t1_, s1 in zip(before, method.nets["teacher2"].parameters(),
                           method.nets["net2"].parameters()):
        assert torch.allclose(t1_, 0.5 * t0 + 0.5 * s1, atol=1e-6)
    assert method.eval_rows() == ("net1", "net2", "teacher1", "teacher2", "ensemble",
                                  "teacher_ensemble")
    images = batch["labeled"]["image"]
    with torch.no_grad():
        pred = method.predict(images)
        torch.testing.assert_close(pred["teacher_ensemble"],
                                   (pred["teacher1"] + pred["teacher2"]) / 2)


# -------------------------------------------------------------------------- mixing ops
def test_random_partner_never_pairs_a_crop_with_itself():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 7, 16):
        for _ in range(20):
            perm = random_partner(n, g, "cpu")
            assert sorted(perm.tolist()) == list(range(n))
            assert (perm != torch.arange(n)).all()
    assert random_partner(1, g, "cpu").tolist() == [0]


def test_cutmix_pastes_the_same_box_into_image_and_target():
    g = torch.Generator().manual_seed(1)
    n, h, w = 6, 64, 48
    img = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()
    hm = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, J, h // 4, w // 4).clone()
    perm = random_partner(n, g, "cpu")
    out_img, out_hm = cutmix(img, hm, perm, g)
    for i in range(n):  # each pixel is the crop's own value or its partner's
        own_img = out_img[i] == i
        assert (own_img | (out_img[i] == perm[i])).all()
        own_hm = out_hm[i] == i
        assert (own_hm | (out_hm[i] == perm[i])).all()
        # the pasted share agrees between the two resolutions (same fractional box)
        assert abs(float((~own_img).float().mean()) - float((~own_hm).float().mean())) < 0.1
    assert (out_img != img).any()


def test_mixup_blends_image_and_target_with_one_weight_in_half_to_one():
    g = torch.Generator().manual_seed(2)
    n = 8
    img, hm = torch.randn(n, 3, 16, 12), torch.rand(n, J, 4, 3)
    perm = random_partner(n, g, "cpu")
    out_img, out_hm = mixup(img, hm, perm, g)
    # recover lam per sample from the image and check the target uses the same one
    lam = ((out_img - img[perm]) / (img - img[perm])).flatten(1).median(1).values
    assert ((lam >= 0.5 - 1e-5) & (lam <= 1 + 1e-5)).all()
    torch.testing.assert_close(out_hm, lam.view(n, 1, 1, 1) * hm
                               + (1 - lam.view(n, 1, 1, 1)) * hm[perm], atol=1e-4, rtol=1e-4)


def test_joint_cut_occlusion_fills_the_cutout_boxes_from_the_partner():
    n, h, w = 4, 64, 48
    img = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone() + 1
    joints = torch.tensor([[24.0, 32.0]]).expand(n, J, 2)
    perm = torch.tensor([1, 2, 3, 0])
    out = joint_cut_occlusion(img, joints, 3, torch.Generator().manual_seed(4), perm=perm)
    mask = joint_cutout_mask(img, joints, 3, torch.Generator().manual_seed(4), "corrected")
    assert mask.any()
    for i in range(n):
        torch.testing.assert_close(out[i][:, mask[i]], img[perm[i]][:, mask[i]])
        torch.testing.assert_close(out[i][:, ~mask[i]], img[i][:, ~mask[i]])


# ------------------------------------------------------------------------ multi-path
def test_multi_path_step_one_loss_per_path_against_its_own_target():
    net = TinyNet()
    method = MultiPath(net, paths=["cutout", "occlusion+mixup", "none"], path_joint_num=3,
                       hard=HardView(seed=2))
    batch = make_batch()
    step = method.training_step(batch)
    out = scalars(step)
    assert {"loss_cons_1", "loss_cons_2", "loss_cons_3"} <= set(out)
    assert all(torch.isfinite(v) for v in out.values())
    torch.testing.assert_close(out["loss_cons"],
                               out["loss_cons_1"] + out["loss_cons_2"] + out["loss_cons_3"])
    torch.testing.assert_close(out["loss"], out["loss_pose"] + out["loss_cons"])
    step.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    # path 1 (cutout): the target is the teacher under the path's hard affine only
    last = step.debug
    torch.testing.assert_close(last["teacher_warped"], warp(last["teacher_heatmaps"],
                                                            last["theta"]))
    assert (last["hard_images"] == 0).any()  # the cutout boxes


def test_multi_path_same_seed_same_views_and_paths_are_checked():
    batch = make_batch()
    a = MultiPath(TinyNet(), paths=["cutmix", "mixup+occlusion"], hard=HardView(seed=3))
    b = MultiPath(TinyNet(), paths=["cutmix", "mixup+occlusion"], hard=HardView(seed=3))
    out_a, out_b = a.training_step(batch), b.training_step(batch)
    torch.testing.assert_close(out_a.loss, out_b.loss)
    torch.testing.assert_close(out_a.debug["hard_images"], out_b.debug["hard_images"])
    assert parse_paths(["occlusion + cutout", "none"]) == (("occlusion", "cutout"), ("none",))
    with pytest.raises(ValueError, match="'blur'"):
        parse_paths(["cutout+blur"])
    with pytest.raises(ValueError, match="empty"):
        parse_paths([])


def test_multi_path_bad_config_names_the_key():
    cfg_path = os.path.join(SYNTH, "multi_path.yaml")
    with pytest.raises(ConfigError, match="MULTI.PATHS entry 'cutout\\+rotate'"):
        load_cfg(cfg_path, ["MULTI.PATHS", "['cutout+rotate']"])
    with pytest.raises(ConfigError, match="TEST.BEST_METRIC is 'ensemble'"):
        load_cfg(cfg_path, ["TEST.BEST_METRIC", "ensemble"])  # one net: no ensemble row
    cfg = load_cfg(os.path.join(SYNTH, "posedual_mt.yaml"), ["TEST.BEST_METRIC",
                                                             "teacher_ensemble"])
    assert cfg.TEST.BEST_METRIC == "teacher_ensemble"


# ---------------------------------------------------------------------- confidence mask
def test_confidence_mask_zeroes_joints_with_weak_targets():
    const = torch.zeros(J, 8, 6)
    const[0, 4, 3], const[1, 4, 3], const[2, 2, 2] = 0.9, 0.3, 0.05  # joints 3, 4 flat

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return const.expand(x.shape[0], *const.shape) + 0 * self.w

    batch = make_batch()
    plain = PoseCons(Fixed(), hard=HardView(affine=False))
    masked = PoseCons(Fixed(), hard=HardView(affine=False), cons=Consistency(conf_thre=0.2))
    w = masked.cons.joint_weight(const.expand(4, *const.shape), batch["unlabeled"]["target_weight"])
    assert w[:, :, 0].tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]] * 4
    assert "cons_kept" not in plain.training_step(batch).logged()
    out = masked.training_step(batch).logged()
    assert float(out["cons_kept"]) == pytest.approx(2 / 5)
    # PoseDual masks each student's term by its own (the other net's) target
    dual = PoseDual({"net1": Fixed(), "net2": Fixed()}, hard=HardView(affine=False),
                    cons=Consistency(conf_thre=0.5))
    assert float(dual.training_step(batch).terms["cons_kept"]) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="CONS_CONF_THRE"):
        PoseCons(Fixed(), cons=Consistency(conf_thre=1.5))


# ------------------------------------------------------------------ through the trainer
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_after_paper", seed=5, num_train=4,
                          num_val=2)


def _cfg(name: str, root: str, out: str, *extra: str):
    return synthetic_cfg(os.path.join(SYNTH, name), root, out, TINY + list(extra))


@pytest.mark.parametrize("name,rows", [
    ("posedual_mt.yaml", ["net1", "net2", "teacher1", "teacher2", "ensemble",
                          "teacher_ensemble"]),
    ("multi_path.yaml", ["net1"]),
])
def test_new_methods_train_validate_and_resume(name, rows, data_root, tmp_path):
    out = str(tmp_path / "out")
    extra = ["TRAIN.END_EPOCH", "1", "CONS_CONF_THRE", "0.01", "MT_EMA_DECAY", "0.5"]
    first = Trainer(_cfg(name, data_root, out, *extra), name, DistInfo(), progress=False)
    results = first.fit()
    assert list(results) == rows
    assert all(0.0 <= float(r[1]) <= 1.0 and "AP" in r[0] for r in results.values())
    saved = {k: v.clone() for k, v in first.method.state_dict().items()}
    extra[1] = "2"
    resumed = Trainer(_cfg(name, data_root, out, *extra, "TRAIN.RESUME", "True"), name,
                      DistInfo(), progress=False)
    resumed.setup()  # builds the nets and resumes (fit would too)
    for k, v in resumed.method.state_dict().items():
        assert torch.equal(v, saved[k]), k  # every net (teachers too) restored
    assert resumed.method.extra_state() == first.method.extra_state()
    resumed.fit()

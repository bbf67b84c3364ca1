"""Extending a semi-supervised method from one file: a new hard-view op (registered with
``register_hard_op``) and a new consistency weighting (a ``Consistency`` subclass)."""
from __future__ import annotations

import os

import pytest
import torch

from semipose.config import get_defaults, load_cfg
from semipose.losses import JointsMSELoss
from semipose.methods import MultiPath, PoseCons, build_method
from semipose.methods.parts import (Consistency, HardView, View, crop_scale_advice,
                                    register_hard_op)
from semipose.transforms.batch import warp
from semipose.transforms.draws import Source
from test_methods import J, TinyNet, make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MULTI_PATH = os.path.join(ROOT, "experiments", "synthetic", "multi_path.yaml")


# ------------------------------------------------------------------------ a new hard-view op
@register_hard_op("invert_image")
def invert_image(view: View, hv: HardView, gen: Source) -> View:
    """The negated image (a photometric op: the joints stay where they are, so does the target)."""
    view.image = -view.image
    return view


def test_registered_op_in_posecons_hard_view():
    batch = make_batch()
    x_u = batch["unlabeled"]["image"]
    # affine off: the hard view is the op's output exactly
    plain = PoseCons(TinyNet(), hard=HardView(ops=("invert_image",), affine=False))
    out = plain.training_step(batch)
    assert torch.equal(out.debug["hard_images"], -x_u)
    assert torch.equal(out.debug["teacher_warped"], out.debug["teacher_heatmaps"])
    # affine on: the op's output warped by the step's theta, the target by the same theta
    method = PoseCons(TinyNet(), hard=HardView(ops=("invert_image",), seed=4))
    out = method.training_step(batch)
    theta = out.debug["theta"]
    torch.testing.assert_close(out.debug["hard_images"], warp(-x_u, theta))
    torch.testing.assert_close(out.debug["teacher_warped"],
                               warp(out.debug["teacher_heatmaps"], theta))
    # the op draws nothing: theta is the stream's first draw, as without any op
    torch.testing.assert_close(theta, HardView(seed=4).draw_theta(4, torch.device("cpu")))
    expected = JointsMSELoss()(out.debug["student_heatmaps"], out.debug["teacher_warped"],
                               batch["unlabeled"]["target_weight"])
    torch.testing.assert_close(out.terms["loss_cons"], expected)


def test_registered_op_in_a_multi_path():
    batch = make_batch()
    x_u, w_u = batch["unlabeled"]["image"], batch["unlabeled"]["target_weight"]
    plain = MultiPath(TinyNet(), paths=["invert_image", "cutout"], path_joint_num=2,
                      hard=HardView(affine=False))
    assert plain.paths[0].ops == ("invert_image",)
    assert torch.equal(plain.training_step(batch).debug["hard_images"], -x_u)
    method = MultiPath(TinyNet(), paths=["invert_image", "cutout"], path_joint_num=2,
                       hard=HardView(seed=3))
    out = method.training_step(batch)
    debug = out.debug  # the first path's tensors
    torch.testing.assert_close(debug["hard_images"], warp(-x_u, debug["theta"]))
    torch.testing.assert_close(debug["teacher_warped"],
                               warp(debug["teacher_heatmaps"], debug["theta"]))
    torch.testing.assert_close(out.terms["loss_cons_1"], JointsMSELoss()(
        debug["student_heatmaps"], debug["teacher_warped"], w_u))
    # the config check and build_method know the op by its name
    cfg = load_cfg(MULTI_PATH, ["SSL.MULTI.PATHS", "['invert_image', 'occlusion+invert_image']",
                                "MODEL.NUM_JOINTS", str(J)])
    built = build_method(cfg, TinyNet())
    assert [p.ops for p in built.paths] == [("invert_image",), ("occlusion", "invert_image")]
    with pytest.raises(ValueError, match="already registered"):
        register_hard_op("invert_image")(lambda view, hv, gen: view)


# --------------------------------------------------------------- a new consistency weighting
class LinearRamp(Consistency):
    """The consistency factor rises linearly from 0 to the weight over the ramp-up epochs."""

    def set_progress(self, epochs: float) -> None:
        if self.rampup_epochs > 0:
            self.scale = self.weight * min(max(epochs / self.rampup_epochs, 0.0), 1.0)


def test_consistency_subclass_sets_the_step_factor():
    method = PoseCons(TinyNet(), hard=HardView(seed=1), cons=LinearRamp(weight=2.0,
                                                                        rampup_epochs=4.0))
    assert method.cons.scale == 0.0  # before any progress: no consistency term
    batch = make_batch()
    for epochs, factor in ((1.0, 0.5), (3.0, 1.5), (4.0, 2.0), (9.0, 2.0)):
        method.set_progress(epochs)  # what the trainer calls before each step
        assert method.cons.scale == factor
        out = method.training_step(batch).logged()
        assert float(out["loss_cons"]) > 0
        torch.testing.assert_close(out["loss"], out["loss_pose"] + factor * out["loss_cons"])
    # from_cfg builds the subclass from the SSL section like the base class
    cfg = get_defaults().clone()
    cfg.defrost()
    cfg.SSL.CONS.RAMPUP_EPOCHS = 8.0
    ramp = LinearRamp.from_cfg(cfg)
    ramp.set_progress(2.0)
    assert isinstance(ramp, LinearRamp) and ramp.scale == 0.25


# ------------------------------------------------- ops that change the target, in PoseCons
def test_mixing_op_mixes_the_consistency_target_and_weights_too():
    """A hard view with mixup blends the teacher target and the joint weights with the same
    partner and factor as the image: the student is taught the mixed target."""
    batch = make_batch()
    x_u, w_u = batch["unlabeled"]["image"], batch["unlabeled"]["target_weight"]
    method = PoseCons(TinyNet(), hard=HardView(ops=("mixup",), affine=False, seed=5))
    out = method.training_step(batch)
    t = out.debug["teacher_heatmaps"]
    # the same draws again from a view with the same seed
    img, target, weight = HardView(ops=("mixup",), affine=False, seed=5).apply_ops(
        x_u, t, w_u, None)
    assert torch.equal(out.debug["hard_images"], img) and not torch.equal(img, x_u)
    assert torch.equal(out.debug["teacher_warped"], target) and not torch.equal(target, t)
    expected = JointsMSELoss()(out.debug["student_heatmaps"], target, weight)
    torch.testing.assert_close(out.terms["loss_cons"], expected)


# ------------------------------------------------------------------ pixel sizes against the crop
# An op declared pixel-sized (what it draws does not matter to the advice).
register_hard_op("pixel_box", pixel_sizes=True)(lambda view, hv, gen: view)


def test_crop_scale_advice_warns_for_boxes_sized_for_a_larger_crop():
    from torch import nn
    views = nn.ModuleList([HardView(("cutout",), 5), HardView(("cutmix",))])
    msg = crop_scale_advice(views, [64, 96])
    assert msg is not None
    # sqrt(64 * 96 / (192 * 256)) = 0.354; at scale 1 the boxes take (1 / 0.354)^2 = 8x the share
    for part in ("is 1 on a 96x64 crop", "['cutout']", "8.0x", "SSL.HARD.CUTOUT_SCALE 0.354"):
        assert part in msg, (part, msg)
    assert crop_scale_advice(views, [192, 256]) is None  # the reference crop
    assert crop_scale_advice(views, [288, 384]) is None  # a larger crop: smaller boxes, no warning
    # the tolerance: 1.5 x 0.354 = 0.530
    assert crop_scale_advice(nn.ModuleList([HardView(("cutout",), 5, cutout_scale=0.52)]),
                             [64, 96]) is None
    assert crop_scale_advice(nn.ModuleList([HardView(("cutout",), 5, cutout_scale=0.54)]),
                             [64, 96]) is not None
    # no boxes drawn (0 joints), only fractional ops, or a registered pixel-sized op
    assert crop_scale_advice(nn.ModuleList([HardView(("cutout",), 0)]), [64, 96]) is None
    assert crop_scale_advice(nn.ModuleList([HardView(("cutmix", "mixup", "invert_image"))]),
                             [64, 96]) is None
    msg = crop_scale_advice(nn.ModuleList([HardView(("invert_image", "pixel_box"))]), [64, 64])
    assert msg is not None and "['pixel_box']" in msg and "CUTOUT_SCALE 0.289" in msg
    # the multi-path config at scale 1: the case the warning is for (docs/benchmarks.md)
    cfg = load_cfg(MULTI_PATH, ["SSL.HARD.CUTOUT_SCALE", "1.0"])
    msg = crop_scale_advice(build_method(cfg, [TinyNet()]), cfg.MODEL.IMAGE_SIZE)
    assert msg is not None and "['cutout', 'occlusion']" in msg
    assert crop_scale_advice(build_method(load_cfg(MULTI_PATH), [TinyNet()]), [64, 96]) is None


def test_trainer_logs_the_crop_scale_warning(caplog):
    import logging
    from semipose.engine.model_setup import build_method_for
    from semipose.utils.dist import DistInfo
    cfg = load_cfg(MULTI_PATH, ["SSL.HARD.CUTOUT_SCALE", "1.0", "MODEL.EXTRA.NUM_LAYERS", "18"])
    with caplog.at_level(logging.WARNING, logger="crop_scale"):
        build_method_for(cfg, DistInfo(), logging.getLogger("crop_scale"))
    assert [r.levelno for r in caplog.records if "CUTOUT_SCALE 0.354" in r.message] == \
        [logging.WARNING]

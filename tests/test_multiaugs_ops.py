"""The MultiAugs / SSPCM augmentation ops (transforms/multiaugs.py) against hand-computed cases,
with their draws fed from a Tape so that every box is known, and as hard-view ops."""
from __future__ import annotations

import copy

import pytest
import torch

from semipose.config import ConfigError
from semipose.methods import PoseCons
from semipose.methods.parts import DEFAULT_OP_COUNTS, HARD_OPS, HardView, teacher_joints_px
from semipose.transforms.batch import joint_cutout
from semipose.transforms.draws import Recorder, Tape, draw_all
from semipose.transforms.multiaugs import (beta_draw, cutmix_holes, hole_mask, jccm, joco,
                                           keypoint_cut_occlusion, mixup_batch, random_cutout)
from test_methods import TinyNet, make_batch


def numbered(n: int, height: int, width: int, c: int = 3) -> torch.Tensor:
    """Images whose every pixel is distinct and nonzero: 1 + 1000 n + 200 c + 10 row + col."""
    nn_, cc, rr, ww = torch.meshgrid(torch.arange(n), torch.arange(c), torch.arange(height),
                                     torch.arange(width), indexing="ij")
    return (1 + 1000 * nn_ + 200 * cc + 10 * rr + ww).float()


def jo_tape(half, partner, own, other, jitter=None) -> Tape:
    """The draws of keypoint_cut_occlusion: randn jitter (x10), half sizes, partner, channels."""
    half = torch.as_tensor(half, dtype=torch.long)
    jitter = torch.zeros(half.shape) if jitter is None else torch.as_tensor(jitter).float()
    return Tape([jitter, half, torch.as_tensor(partner), torch.as_tensor(own),
                 torch.as_tensor(other)])


# ------------------------------------------------------------------ JO: geometry and quirk
def test_jo_box_geometry_and_transposed_quirk():
    # one 12 x 8 crop (taller than wide, like 256 x 192), its own partner, one paste of the box
    # of joint 1 onto joint 0, half sizes 1 (boxes 2 x 2, end-exclusive)
    img = numbered(1, 12, 8)
    joints = torch.tensor([[[2.0, 4.0], [5.0, 3.0]]])  # (x, y)
    draws = dict(half=[[[1, 1], [1, 1]]], partner=[0], own=[[0]], other=[[1]])
    # corrected: joint 0 at row 4, col 2; joint 1's box rows [2, 4), cols [4, 6)
    # -> destination rows [3, 5), cols [1, 3)
    out = keypoint_cut_occlusion(img, joints, jo_tape(**draws), "corrected", k=1)
    expected = img.clone()
    expected[0, :, 3:5, 1:3] = img[0, :, 2:4, 4:6]
    assert torch.equal(out, expected)
    # reference: x is the row: joint 0 at row 2, col 4; joint 1's box rows [4, 6), cols [2, 4)
    # -> destination rows [1, 3), cols [3, 5): the transposed position of the same paste
    out = keypoint_cut_occlusion(img, joints, jo_tape(**draws), "reference", k=1)
    expected = img.clone()
    expected[0, :, 1:3, 3:5] = img[0, :, 4:6, 2:4]
    assert torch.equal(out, expected)


def test_jo_jitter_truncates_and_partner_is_read_from_the_batch_at_entry():
    img = numbered(2, 12, 8)
    joints = torch.tensor([[[3.0, 5.0], [1.0, 1.0]], [[4.0, 6.0], [2.0, 9.0]]])
    # jitter 10 * 0.17 = 1.7 on sample 0 joint 0's x: trunc(4.7) = 4; -0.17 on y: trunc(4.3) = 4
    jitter = torch.zeros(2, 2, 2)
    jitter[0, 0] = torch.tensor([0.17, -0.07])  # corrected swaps (x, y): (row, col) draws
    half = [[[1, 1], [1, 1]], [[1, 1], [1, 1]]]
    out = keypoint_cut_occlusion(img, joints, jo_tape(half, [1, 1], [[0], [1]], [[1], [0]],
                                                      jitter), "corrected", k=1)
    expected = img.clone()
    # sample 0: own joint 0 at (row trunc(5 + 1.7) = 6, col trunc(3 - 0.7) = 2); partner 1's
    # joint 1 at (row 9, col 2): box rows [8, 10), cols [1, 3) -> destination rows [5, 7),
    # cols [1, 3), read from sample 1 as it was at entry
    expected[0, :, 5:7, 1:3] = img[1, :, 8:10, 1:3]
    # sample 1 pastes its own joint 0 (row 6, col 4; box rows [5, 7), cols [3, 5)) onto its
    # joint 1 (row 9, col 2): rows [8, 10), cols [1, 3), the region sample 0 copied from
    expected[1, :, 8:10, 1:3] = img[1, :, 5:7, 3:5]
    assert torch.equal(out, expected)


def test_jo_k_pastes_read_the_entry_batch_not_the_previous_paste():
    img = numbered(1, 10, 10)
    joints = torch.tensor([[[2.0, 2.0], [6.0, 6.0]]])
    # k = 0: joint 1's box onto joint 0; k = 1: joint 0's box (now pasted over) onto joint 1
    out = keypoint_cut_occlusion(img, joints, jo_tape([[[1, 1], [1, 1]]], [0], [[0, 1]],
                                                      [[1, 0]]), "corrected", k=2)
    expected = img.clone()
    expected[0, :, 1:3, 1:3] = img[0, :, 5:7, 5:7]
    expected[0, :, 5:7, 5:7] = img[0, :, 1:3, 1:3]  # the original pixels, not the first paste
    assert torch.equal(out, expected)


def test_jo_corrected_is_reference_on_swapped_joints_for_a_square_crop():
    img = torch.randn(3, 3, 16, 16)
    joints = torch.rand(3, 4, 2) * 16
    g = torch.Generator().manual_seed(2)
    rec = Recorder(g)
    a = keypoint_cut_occlusion(img, joints, rec, "corrected", k=2, scale=0.3)
    draws = draw_all(torch.Generator().manual_seed(2), rec.specs)
    b = keypoint_cut_occlusion(img, joints.flip(-1), Tape(draws), "reference", k=2, scale=0.3)
    assert torch.equal(a, b) and not torch.equal(a, img)


# ------------------------------------------------------------------ JO: borders, degenerate draws
def test_jo_border_reconciliation_at_zero_and_at_the_max_edge():
    # corrected, 12 x 8; the partner box (self, joint 1 at row 6, col 4) has half sizes
    # (row 1, col 2): rows [5, 7), cols [2, 6)
    img = numbered(2, 12, 8)
    joints = torch.tensor([[[0.0, 5.0], [4.0, 6.0]], [[7.0, 5.0], [4.0, 6.0]]])
    half = [[[1, 1], [1, 2]], [[1, 1], [1, 2]]]
    out = keypoint_cut_occlusion(img, joints, jo_tape(half, [0, 1], [[0], [0]], [[1], [1]]),
                                 "corrected", k=1)
    expected = img.clone()
    # sample 0, own joint at col 0: destination cols [-2, 2) -> [0, 2), start clamped at 0:
    # the source start moves by d = 4 - 2: source cols [4, 6) (the half that lines up)
    expected[0, :, 4:6, 0:2] = img[0, :, 5:7, 4:6]
    # sample 1, own joint at col 7 = W - 1: destination cols [5, 9) -> [5, 7), end clamped at
    # the maximum: the source end moves by -2: source cols [2, 4); the last column stays
    expected[1, :, 4:6, 5:7] = img[1, :, 5:7, 2:4]
    assert torch.equal(out, expected)
    assert torch.equal(out[..., 7], img[..., 7])


def test_jo_empty_destination_leaves_the_image_untouched():
    img = numbered(2, 12, 8)
    # own joints off the crop: col -10 (destination cols [-12, -8) -> [0, 0)) and col 20
    # (-> [7, 7)); corrected never cuts a slice, so nothing changes
    joints = torch.tensor([[[-10.0, 5.0], [4.0, 6.0]], [[20.0, 5.0], [4.0, 6.0]]])
    half = [[[1, 1], [1, 2]], [[1, 1], [1, 2]]]
    out = keypoint_cut_occlusion(img, joints, jo_tape(half, [0, 1], [[0], [0]], [[1], [1]]),
                                 "corrected", k=1)
    assert torch.equal(out, img)


def test_jo_reference_zero_fills_a_source_cut_at_the_image_edge():
    # reference on 12 x 8: the column is y, clamped to H - 1 = 11, so a partner box at
    # y = 9 has cols [8, 10), which the 8-column slice cuts to nothing: the destination
    # (non-empty, inside the crop) becomes zero
    img = numbered(2, 12, 8)
    joints = torch.tensor([[[3.0, 5.0], [1.0, 1.0]], [[4.0, 6.0], [2.0, 9.0]]])
    half = [[[1, 1], [1, 1]], [[1, 1], [1, 1]]]
    out = keypoint_cut_occlusion(img, joints, jo_tape(half, [1, 1], [[0], [0]], [[1], [0]]),
                                 "reference", k=1)
    expected = img.clone()
    expected[0, :, 2:4, 4:6] = 0  # own (row 3, col 5); partner cols [8, 10) cut to [8, 8)
    expected[1, :, 3:5, 5:7] = img[1, :, 3:5, 5:7]  # self onto self: unchanged
    assert torch.equal(out, expected)
    # partly cut: partner y = 8 -> cols [7, 9) cut to [7, 8), one column for a 2-column
    # destination: a mismatch, zero-filled too
    joints[1, 1, 1] = 8.0
    out = keypoint_cut_occlusion(img, joints, jo_tape(half, [1, 1], [[0], [0]], [[1], [0]]),
                                 "reference", k=1)
    assert (out[0, :, 2:4, 4:6] == 0).all()
    # a destination cut at the right border (own y = 8: cols [7, 9) -> [7, 8)) against a
    # 2-column source: the narrow box is zero-filled
    joints = torch.tensor([[[3.0, 8.0], [4.0, 4.0]]])
    out = keypoint_cut_occlusion(img[:1], joints, jo_tape([[[1, 1], [1, 1]]], [0], [[0]],
                                                          [[1]]), "reference", k=1)
    expected = img[:1].clone()
    expected[0, :, 2:4, 7:8] = 0
    assert torch.equal(out, expected)


def test_jo_outcome_shares_on_a_256x192_crop():
    # corrected never zero-fills (its clamps stay inside the crop); reference does
    g = torch.Generator().manual_seed(0)
    n, j = 64, 24
    joints = torch.stack([torch.rand(n, j, generator=g) * 192,
                          torch.rand(n, j, generator=g) * 256], -1)
    img = torch.ones(n, 1, 256, 192)
    for mode, zero_fills in (("corrected", False), ("reference", True)):
        out = keypoint_cut_occlusion(img, joints, torch.Generator().manual_seed(1), mode, k=2)
        assert bool((out == 0).any()) is zero_fills


def test_jo_draw_order_and_k_zero():
    rec = Recorder(torch.Generator().manual_seed(0))
    keypoint_cut_occlusion(torch.zeros(3, 3, 8, 6), torch.zeros(3, 4, 2), rec, k=2)
    assert [(s.kind, s.size, s.low, s.high) for s in rec.specs] == [
        ("randn", (3, 4, 2), 0, 0), ("randint", (3, 4, 2), 10, 20), ("randint", (3,), 0, 3),
        ("randint", (3, 2), 0, 4), ("randint", (3, 2), 0, 4)]
    img = torch.randn(2, 3, 8, 6)
    out = keypoint_cut_occlusion(img, torch.zeros(2, 4, 2), None, k=0)
    assert torch.equal(out, img) and out is not img
    with pytest.raises(ConfigError, match="'sideways' unknown"):
        keypoint_cut_occlusion(img, torch.zeros(2, 4, 2), None, "sideways")


# ------------------------------------------------------------------ CO
def co_tape(cy, cx, half) -> Tape:
    return Tape([torch.as_tensor(cy), torch.as_tensor(cx), torch.as_tensor(half)])


def test_co_swapped_geometry_golden():
    img = numbered(1, 6, 4)
    # one hole: row centre 3, column centre 1, half sizes (row 2, col 1): rows [1, 5),
    # cols [0, 2); 'reference' clamps the rows to W = 4 (row 4 survives), 'corrected' to H = 6
    ref = random_cutout(img, co_tape([[3]], [[1]], [[[2, 1]]]), "reference", holes=1)
    cor = random_cutout(img, co_tape([[3]], [[1]], [[[2, 1]]]), "corrected", holes=1)
    exp_ref, exp_cor = img.clone(), img.clone()
    exp_ref[0, :, 1:4, 0:2] = 0
    exp_cor[0, :, 1:5, 0:2] = 0
    assert torch.equal(ref, exp_ref) and torch.equal(cor, exp_cor)
    # 'reference' columns: centre 5 (drawn in [0, H)), half 2 -> [3, 6) clamped to H, cut at
    # W = 4: column 3 only
    ref = random_cutout(img, co_tape([[1]], [[5]], [[[1, 2]]]), "reference", holes=1)
    exp_ref = img.clone()
    exp_ref[0, :, 0:2, 3:4] = 0
    assert torch.equal(ref, exp_ref)
    rec = Recorder(torch.Generator().manual_seed(0))
    hole_mask(2, 6, 4, 5, rec, "cpu", "reference")
    assert [(s.kind, s.size, s.high) for s in rec.specs] == [
        ("randint", (2, 5), 4), ("randint", (2, 5), 6), ("randint", (2, 5, 2), 20)]


def test_co_reference_never_cuts_rows_past_the_width_of_a_256x192_crop():
    g = torch.Generator().manual_seed(0)
    ref = hole_mask(500, 256, 192, 5, g, "cpu", "reference")
    cor = hole_mask(500, 256, 192, 5, torch.Generator().manual_seed(0), "cpu", "corrected")
    assert not ref[:, 192:].any() and cor[:, 192:].any()
    # a hole whose columns start at >= 192 vanishes: about a fifth of the single holes
    one = hole_mask(4000, 256, 192, 1, torch.Generator().manual_seed(1), "cpu", "reference")
    gone = (~one.flatten(1).any(1)).float().mean().item()
    assert 0.15 < gone < 0.25
    img = torch.ones(500, 1, 256, 192)
    out = random_cutout(img, torch.Generator().manual_seed(0), "reference", holes=5)
    assert torch.equal(out == 0, ref.unsqueeze(1))


# ------------------------------------------------------------------ CM
def test_cm_fills_from_the_batch_at_op_entry():
    img = numbered(2, 6, 6)
    # swap the two crops; both holes at rows [1, 3), cols [2, 4) (corrected geometry)
    tape = Tape([torch.tensor([1, 0]), torch.tensor([[2], [2]]), torch.tensor([[3], [3]]),
                 torch.tensor([[[1, 1]], [[1, 1]]])])
    out = cutmix_holes(img, tape, "corrected", holes=1)
    expected = img.clone()
    expected[0, :, 1:3, 2:4] = img[1, :, 1:3, 2:4]
    # crop 1 gets crop 0's original pixels, not crop 0's hole (its own pixels) back
    expected[1, :, 1:3, 2:4] = img[0, :, 1:3, 2:4]
    assert torch.equal(out, expected)
    rec = Recorder(torch.Generator().manual_seed(0))
    cutmix_holes(img, rec, "reference", holes=2)
    assert [(s.kind, s.size) for s in rec.specs] == [
        ("randperm", (2,)), ("randint", (2, 2)), ("randint", (2, 2)), ("randint", (2, 2, 2))]


# ------------------------------------------------------------------ MU
def test_beta_draw_johnk_golden_and_rejection():
    # U = V = 0.5: X = Y = 0.5 ** 5, accepted, ratio 0.5
    u = torch.full((2, 16), 0.5)
    assert beta_draw(Tape([u]), 0.2, 0.2, "cpu").item() == pytest.approx(0.5)
    # the first pair is rejected (0.99 ** 5 * 2 > 1), the second gives X / (X + Y)
    u = torch.full((2, 16), 0.5)
    u[:, 0] = 0.99
    u[0, 1], u[1, 1] = 0.6, 0.3
    x, y = 0.6 ** 5, 0.3 ** 5
    assert beta_draw(Tape([u]), 0.2, 0.2, "cpu").item() == pytest.approx(x / (x + y), rel=1e-5)


def test_beta_draw_distribution():
    g = torch.Generator().manual_seed(0)
    b = torch.stack([beta_draw(g, 0.2, 0.2, "cpu") for _ in range(3000)])
    assert (b >= 0).all() and (b <= 1).all()
    # Beta(0.2, 0.2): mean 0.5, variance 0.04 / (0.16 * 1.4) = 0.1786 (U-shaped)
    assert abs(b.mean().item() - 0.5) < 0.03
    assert abs(b.var().item() - 0.1786) < 0.015


def test_mixup_batch_golden_and_lambda_range():
    img = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    tape = Tape([torch.full((2, 16), 0.5), torch.tensor([1, 0])])
    out = mixup_batch(img, tape)  # Beta draw 0.5 -> lambda 1 - 0.25 * 0.5 = 0.875
    torch.testing.assert_close(out[0], torch.full((3, 4, 4), 0.125))
    torch.testing.assert_close(out[1], torch.full((3, 4, 4), 0.875))
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        mixed = mixup_batch(img, g)
        lam = mixed[1, 0, 0, 0].item()  # lam * 1 + (1 - lam) * x[perm]: lam or 1
        assert 0.75 <= lam <= 1.0
        assert torch.equal(mixed[0], 1 - mixed[1])


# ------------------------------------------------------------------ composites
def test_composites_equal_the_manual_sequence():
    img = torch.randn(4, 3, 32, 24)
    joints = torch.rand(4, 5, 2) * torch.tensor([24.0, 32.0])
    mask = torch.tensor([True, True, False, True, True])
    for mode in ("reference", "corrected"):
        a = joco(img, joints, torch.Generator().manual_seed(4), mode, jo=2, co=5, scale=0.4)
        g = torch.Generator().manual_seed(4)
        b = random_cutout(keypoint_cut_occlusion(img, joints, g, mode, 2, 0.4), g, mode, 5, 0.4)
        assert torch.equal(a, b)
        a = jccm(img, joints, torch.Generator().manual_seed(5), mode, jc=5, cm=5,
                 joint_mask=mask, scale=0.4)
        g = torch.Generator().manual_seed(5)
        b = cutmix_holes(joint_cutout(img, joints, 5, g, mode, mask, 0.4), g, mode, 5, 0.4)
        assert torch.equal(a, b) and not torch.equal(a, img)


# ------------------------------------------------------------------ as hard-view ops
def test_hard_view_op_counts_and_mode():
    assert {"jc", "jo", "co", "cm", "mu", "joco", "jccm"} <= set(HARD_OPS)
    hv = HardView(ops=("joco",), seed=2)
    assert hv.op_counts == DEFAULT_OP_COUNTS == {"jc": 5, "jo": 2, "co": 5, "cm": 2}
    assert hv.op_mode == "reference"
    hv = HardView(op_counts={"cm": 5}, op_mode="corrected", seed=2)
    assert hv.op_counts == {"jc": 5, "jo": 2, "co": 5, "cm": 5}
    other = hv.with_ops(("jccm",), 3)
    assert other.op_counts == hv.op_counts and other.op_mode == "corrected"
    assert other.stream is hv.stream and other.ops == ("jccm",)
    with pytest.raises(ConfigError, match="'jx' unknown"):
        HardView(op_counts={"jx": 1})
    with pytest.raises(ConfigError, match=r"op_counts\['co'\] must be >= 0"):
        HardView(op_counts={"co": -1})
    with pytest.raises(ConfigError, match="'upright' unknown"):
        HardView(op_mode="upright")


def test_hard_view_ops_match_the_functions_and_keep_target_and_weight():
    batch = make_batch(seed=1)
    x_u = batch["unlabeled"]["image"]
    teacher = torch.rand(4, 5, 8, 6, generator=torch.Generator().manual_seed(0))
    weight = batch["unlabeled"]["target_weight"]
    joints = teacher_joints_px(teacher, x_u)
    counts = {"jc": 3, "jo": 1, "co": 2, "cm": 3}
    expected = {
        "jo": lambda g: keypoint_cut_occlusion(x_u, joints, g, "corrected", 1, 0.5),
        "co": lambda g: random_cutout(x_u, g, "corrected", 2, 0.5),
        "cm": lambda g: cutmix_holes(x_u, g, "corrected", 3, 0.5),
        "mu": lambda g: mixup_batch(x_u, g),
        "jc": lambda g: joint_cutout(x_u, joints, 3, g, "corrected", None, 0.5),
        "joco": lambda g: joco(x_u, joints, g, "corrected", 1, 2, 0.5),
        "jccm": lambda g: jccm(x_u, joints, g, "corrected", 3, 3, None, 0.5),
    }
    for name, fn in expected.items():
        hv = HardView(ops=(name,), op_counts=counts, op_mode="corrected", cutout_scale=0.5,
                      seed=7)
        img, target, w = hv.apply_ops(x_u, teacher, weight, None)
        assert torch.equal(img, fn(torch.Generator().manual_seed(7))), name
        assert target is teacher and w is weight, name  # targets and weights never mixed


def test_joco_in_posecons_replays_from_a_tape():
    batch = make_batch(seed=2)
    method = PoseCons(TinyNet(seed=0), hard=HardView(ops=("joco",), cutout_scale=0.3, seed=3))
    plain = copy.deepcopy(method).training_step(batch).debug["hard_images"]
    recorded = copy.deepcopy(method)
    stream = recorded.hard.stream
    stream.source = Recorder(stream.generator(torch.device("cpu")))
    out = recorded.training_step(batch).debug["hard_images"]
    specs = stream.source.specs
    # JO (5 draws), CO (3), then the hard affine (3)
    assert [s.kind for s in specs] == ["randn", "randint", "randint", "randint", "randint",
                                       "randint", "randint", "randint", "randn", "randn", "rand"]
    replayed = copy.deepcopy(method)
    stream = replayed.hard.stream
    draws = draw_all(stream.generator(torch.device("cpu")), specs)
    stream.source = Tape(draws)
    again = replayed.training_step(batch).debug["hard_images"]
    assert stream.source.pos == len(draws)
    assert torch.equal(plain, out) and torch.equal(out, again)
    no_ops = PoseCons(TinyNet(seed=0), hard=HardView(seed=3)).training_step(batch)
    assert not torch.equal(no_ops.debug["hard_images"], again)

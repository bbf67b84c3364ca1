"""The one scale/rotation draw: the values and generator consumption of the three draws it replaced
(paired geometry, per-sample crop, hard view), written out for fixed seeds."""
import numpy as np
import pytest
import torch

from semipose.data.keypoints import UNION
from semipose.transforms.batch import hard_affine_theta, theta_from
from semipose.transforms.draws import (HARD_VIEW_ORDER, PAIRED_ORDER, SAMPLE_ORDER,
                                       SAMPLE_ROT_PROB, NumpyDraws, Recorder, Tape, TorchDraws,
                                       draw_all, draw_scale_rotation)
from semipose.transforms.sample import SampleTransform, draw_geometry

# (scale, rotation) of four draws in a row, then the generator's next random(), as the code
# before the single draw gave them (sf 0.25, rf 30, rotation probability 0.6).
PAIRED = {0: ([(0.9669737841771745, 0.0), (0.8660826567097223, 3.147003514591191), (1.25, 0.0),
               (0.8240661910482519, 0.0)], 0.9350724237877682),
          5: ([(0.75, 0.0), (1.25, 12.613357141965643), (0.8038049111639304, -16.579419616086973),
               (1.0681921939611805, 49.04349128875732)], 0.23451020166982395)}
SAMPLE = {0: ([(1.0314325552733483, 19.21267951329846), (1.02622502928826, 0.0),
               (1.090398763727371, 0.0), (1.2367702407823105, -37.96264413138157)],
              0.8158535541215322),
          5: ([(0.7995171436866382, 0.0), (0.9379095944761878, 34.08139597468928),
               (1.0274265998304521, -23.54341066032835), (1.1871864426836478, 0.0)],
              0.6523691115879877)}
# Hard view, torch.Generator seed 11, n 6: scale, rotation, then the generator's next rand().
HARD = ([1.184407353401184, 1.25, 0.8251146078109741, 0.75, 0.8716844320297241,
         0.9325951337814331],
        [0.0, 14.5177583694458, 13.512533187866211, -28.705001831054688, 45.03563690185547,
         -9.407209396362305], 0.8775078654289246)
# The same with sf 0.3, rf 45, rotation probability 0.5.
HARD_P5 = ([1.221288800239563, 1.2999999523162842, 0.790137529373169, 0.699999988079071,
            0.846021294593811, 0.9191141128540039],
           [0.0, 21.77663803100586, 20.268800735473633, -43.05750274658203, 67.55345916748047,
            0.0])


@pytest.mark.parametrize("order, golden", [(PAIRED_ORDER, PAIRED), (SAMPLE_ORDER, SAMPLE)])
@pytest.mark.parametrize("seed", [0, 5])
def test_numpy_draws(order, golden, seed):
    rng = np.random.default_rng(seed)
    draws = [draw_scale_rotation(NumpyDraws(rng), 0.25, 30.0, SAMPLE_ROT_PROB, order)
             for _ in range(4)]
    values, after = golden[seed]
    assert draws == values and rng.random() == after  # same values, same consumption
    assert all(type(s) is float and type(r) is float for s, r in draws)


def test_paths_use_it():
    rng = np.random.default_rng(0)
    geos = [draw_geometry(rng, 0.25, 30.0) for _ in range(4)]
    assert [(g.rotation, g.scale_factor, g.flip) for g in geos] == [
        (0.0, 0.9669737841771745, True), (-16.070081194833328, 1.090398763727371, False),
        (0.0, 0.8240661910482519, False), (0.0, 1.010331494836811, False)]
    # draw_geometry = the paired draw, then a flip draw
    rng, ref = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        geo = draw_geometry(rng, 0.25, 30.0)
        sf, rot = draw_scale_rotation(NumpyDraws(ref), 0.25, 30.0, 0.6, PAIRED_ORDER)
        assert (geo.scale_factor, geo.rotation, geo.flip) == (sf, rot, bool(ref.random() <= 0.5))
    # SampleTransform.geometry = the sample draw, then a flip draw (no half-body draw here)
    t = SampleTransform((192, 256), (48, 64), 2, UNION.flip_pairs, True, joint_set=UNION,
                        scale_factor=0.35, rot_factor=40.0)
    rec = {"center": np.array([100.0, 80.0], np.float32), "scale": np.array([1.0, 1.3], np.float32),
           "joints_vis": np.zeros(24, np.float32), "joints": np.zeros((24, 2), np.float32)}
    rng = np.random.default_rng(3)
    geos = [t.geometry(rec, rng, None, None, None)[2] for _ in range(2)]
    assert [(g.rotation, g.scale_factor, g.flip) for g in geos] == [
        (16.723953869031153, 1.35, False), (-80.0, 0.8415727477613439, True)]


def test_overrides_draw_nothing_for_their_part():
    t = SampleTransform((192, 256), (48, 64), 2, UNION.flip_pairs, True, joint_set=UNION,
                        scale_factor=0.35, rot_factor=40.0)
    rec = {"center": np.array([100.0, 80.0], np.float32), "scale": np.array([1.0, 1.3], np.float32),
           "joints_vis": np.zeros(24, np.float32), "joints": np.zeros((24, 2), np.float32)}
    rng = np.random.default_rng(3)
    overrides = [(None, 1.1, None), (5.0, None, None), (None, None, True), (None, None, None)]
    got = [t.geometry(rec, rng, *ov)[2] for ov in overrides]
    assert [(g.rotation, g.scale_factor, g.flip) for g in got] == [
        (-80.0, 1.1, False), (5.0, 0.8012806378552246, True),
        (-9.277295105767578, 0.9245409929185819, True),
        (9.031464529116871, 0.6971754233037704, False)]
    assert rng.random() == 0.4306280204141778
    # both given: nothing drawn at all
    rng = np.random.default_rng(3)
    given = draw_scale_rotation(NumpyDraws(rng), 0.25, 30.0, 0.6, SAMPLE_ORDER, 1.2, -3.0)
    assert given == (1.2, -3.0)
    assert rng.random() == np.random.default_rng(3).random()


def test_closed_gate_before_the_rotation_draws_no_normal():
    # seed 0: the first paired draw has a closed gate (rotation 0) -> one uniform + one normal
    rng, ref = np.random.default_rng(0), np.random.default_rng(0)
    draw_scale_rotation(NumpyDraws(rng), 0.25, 30.0, 0.6, PAIRED_ORDER)
    assert ref.random() > 0.6
    ref.standard_normal()
    assert rng.random() == ref.random()


def test_torch_draws():
    g = torch.Generator().manual_seed(11)
    s, r = draw_scale_rotation(TorchDraws(g, 6, "cpu"), 0.25, 30.0, 0.8, HARD_VIEW_ORDER)
    assert s.dtype == r.dtype == torch.float32 and s.shape == r.shape == (6,)
    assert s.tolist() == HARD[0] and r.tolist() == HARD[1]
    assert torch.rand(1, generator=g).item() == HARD[2]
    g = torch.Generator().manual_seed(11)
    s, r = draw_scale_rotation(TorchDraws(g, 6, "cpu"), 0.3, 45.0, 0.5, HARD_VIEW_ORDER)
    assert s.tolist() == HARD_P5[0] and r.tolist() == HARD_P5[1]
    # hard_affine_theta is this draw made into matrices
    theta = hard_affine_theta(6, 0.25, 30.0, torch.Generator().manual_seed(11), "cpu")
    assert torch.equal(theta, theta_from(torch.tensor(HARD[1]), torch.tensor(HARD[0])))


def test_torch_draws_replay_from_a_tape():
    rec = Recorder(torch.Generator().manual_seed(11))
    s, r = draw_scale_rotation(TorchDraws(rec, 6, None), 0.25, 30.0, 0.8, HARD_VIEW_ORDER)
    assert [spec.kind for spec in rec.specs] == ["randn", "randn", "rand"]
    tape = Tape(draw_all(torch.Generator().manual_seed(11), rec.specs))
    s2, r2 = draw_scale_rotation(TorchDraws(tape, 6, None), 0.25, 30.0, 0.8, HARD_VIEW_ORDER)
    assert torch.equal(s, s2) and torch.equal(r, r2) and s.tolist() == HARD[0]


def test_order_must_name_the_three_draws():
    with pytest.raises(ValueError, match="permutation"):
        draw_scale_rotation(NumpyDraws(np.random.default_rng(0)), 0.25, 30, 0.6, ("scale", "gate"))
    with pytest.raises(ValueError, match="permutation"):
        draw_scale_rotation(NumpyDraws(np.random.default_rng(0)), 0.25, 30, 0.6,
                            ("scale", "gate", "gate"))

"""RandAugment: magnitude mapping (BEHAVIOR section 9), each op, seeding."""
import numpy as np
import pytest
from PIL import Image, ImageOps

from semipose.transforms.randaugment import (CUTOUT_FILL, OPS, RandAugment, apply_op,
                                             op_parameters)


def _image(h=64, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run(arr, name, m, **kw):
    return np.asarray(apply_op(Image.fromarray(arr), name, m, **kw))


@pytest.mark.parametrize("m,bits,thr,add,lo,hi,cut", [
    (20, 4, 85.33333, 73.33333, 0.4, 1.6, 53.33333),
    (10, 5, 170.66667, 36.66667, 0.7, 1.3, 26.66667)])
def test_effective_values(m, bits, thr, add, lo, hi, cut):
    p = op_parameters(m)
    assert p["Posterize"] == bits
    assert p["Solarize"] == pytest.approx(thr, abs=1e-4)
    assert p["SolarizeAdd"] == pytest.approx(add, abs=1e-4)
    for name in ("Color", "Contrast", "Brightness", "Sharpness"):
        assert p[name] == pytest.approx((lo, hi), abs=1e-6)
    assert p["CutoutAbs"] == pytest.approx(cut, abs=1e-4)
    assert [o[0] for o in OPS] == ["AutoContrast", "Equalize", "Invert", "Posterize", "Solarize",
                                   "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness",
                                   "CutoutAbs"]


def test_pixel_ops_values():
    x = _image()
    xi = x.astype(np.int64)
    np.testing.assert_array_equal(_run(x, "Invert", 20), 255 - x)
    np.testing.assert_array_equal(_run(x, "Posterize", 20), x & 0xF0)
    np.testing.assert_array_equal(_run(x, "Posterize", 10), x & 0xF8)
    np.testing.assert_array_equal(_run(x, "Solarize", 20), np.where(x >= 86, 255 - x, x))
    added = np.clip(xi + 73.333333, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(_run(x, "SolarizeAdd", 20),
                                  np.where(added >= 128, 255 - added, added))
    bright = _run(x, "Brightness", 20, sign=-1).astype(np.int64)
    assert np.abs(bright - xi * 0.4).max() <= 1
    low = np.full((8, 8, 3), 50, np.uint8)
    low[0, 0] = 150
    auto = _run(low, "AutoContrast", 20)
    assert auto.min() == 0 and auto.max() == 255 and (auto[1:] == 0).all()
    np.testing.assert_array_equal(_run(x, "Equalize", 20),
                                  np.asarray(ImageOps.equalize(Image.fromarray(x))))


def test_enhancers_fixed_points():
    grey = np.repeat(_image(seed=1)[..., :1], 3, axis=2)
    for sign in (1, -1):
        np.testing.assert_array_equal(_run(grey, "Color", 20, sign=sign), grey)
    flat = np.full((16, 16, 3), 77, np.uint8)
    for name in ("Contrast", "Sharpness"):
        np.testing.assert_array_equal(_run(flat, name, 20, sign=1), flat)
    assert not np.array_equal(_run(_image(), "Contrast", 20, sign=1), _image())


def test_cutout_square_fill_and_channel_order():
    x = _image()
    out = _run(x, "CutoutAbs", 20, rng=np.random.default_rng(4))
    changed = np.any(out != x, axis=2)
    filled = np.all(out == np.array(CUTOUT_FILL, np.uint8), axis=2)
    assert changed.any() and not (changed & ~filled).any()
    rows, cols = np.nonzero(filled)
    box = filled[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # one axis-aligned rectangle
    # side = 53.33 px, inclusive rectangle corners, cut at the image border
    assert box.shape[0] <= 55 and box.shape[1] <= 55
    assert max(box.shape) >= 27  # the centre is in (1, size], so at least half the side shows
    # The BGR array is handed to PIL as RGB: channel 0 receives 125.
    assert out[rows[0], cols[0], 0] == 125 and out[rows[0], cols[0], 2] == 114
    with pytest.raises(ValueError):
        _run(x, "CutoutAbs", 20)


def test_seeding_and_shapes():
    ra = RandAugment(2, 20)
    x = _image()
    a, b = ra(x, np.random.default_rng(11)), ra(x, 11)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == x.shape
    outs = [ra(x, s) for s in range(8)]
    assert len({o.tobytes() for o in outs}) > 4
    np.testing.assert_array_equal(x, _image())  # input untouched


def test_draw_uniform_ops_and_magnitude_range():
    rng = np.random.default_rng(0)
    draws = [d for _ in range(2000) for d in RandAugment(2, [5, 9]).draw(rng)]
    names = [d[0] for d in draws]
    counts = np.array([names.count(o[0]) for o in OPS]) / len(names)
    assert np.abs(counts - 1 / len(OPS)).max() < 0.02
    assert {d[1] for d in draws} == {5.0, 6.0, 7.0, 8.0, 9.0}
    assert {d[2] for d in draws} == {1, -1}


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        RandAugment()(np.zeros((4, 4, 3), np.float32), 0)
    with pytest.raises(ValueError, match="RAND_MAGNITUDE"):
        RandAugment(2, [1, 2, 3])

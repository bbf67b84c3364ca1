"""JointsMSELoss against the reference's golden values (BEHAVIOR G7)."""
import pytest
import torch

from semipose.losses import JointsMSELoss


@pytest.mark.parametrize("weight,use_w,expected", [
    ([1.0, 1.0], True, 0.5), ([1.0, 0.0], True, 0.25), ([1.0, 0.0], False, 0.5)])
def test_constant_case(weight, use_w, expected):
    pred, gt = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    w = torch.tensor(weight).reshape(1, 2, 1)
    assert JointsMSELoss(use_w)(pred, gt, w).item() == pytest.approx(expected, abs=1e-7)


def test_random_case_golden_and_weight_shapes():
    torch.manual_seed(0)
    out, tgt = torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4, 5)
    w = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss = JointsMSELoss(True)
    assert loss(out, tgt, w[..., None]).item() == pytest.approx(0.0573257, abs=1e-6)
    assert loss(out, tgt, w).item() == pytest.approx(0.0573257, abs=1e-6)
    manual = 0.5 * ((w[..., None, None] * (out - tgt)) ** 2).mean()
    torch.testing.assert_close(loss(out, tgt, w), manual)


def test_gradient_and_reduced_precision():
    out = torch.rand(2, 3, 4, 5, requires_grad=True)
    tgt = torch.rand(2, 3, 4, 5)
    w = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    JointsMSELoss()(out, tgt, w).backward()
    # masked joints get no gradient; others d/dx 0.5 mean(d^2) = d / numel
    assert (out.grad[0, 1] == 0).all() and (out.grad[1, 2] == 0).all()
    torch.testing.assert_close(out.grad[0, 0], (out - tgt).detach()[0, 0] / out.numel())
    half = JointsMSELoss()(out.detach().bfloat16(), tgt.bfloat16(), w)
    assert half.dtype == torch.float32


def test_missing_weight_is_an_actionable_error():
    with pytest.raises(ValueError, match="USE_TARGET_WEIGHT"):
        JointsMSELoss(True)(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))

"""Optimiser construction (TRAIN.ADAM_IMPL), the closed-form LR schedule and the non-finite guard
of the optimizer step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from semipose.config import get_defaults
from semipose.engine.optim import (NonFiniteGuard, adam_impl, build_optimizer, lr_at_epoch,
                                   nonfinite_grads)


def _cfg(impl: str = "auto", optimizer: str = "adam"):
    cfg = get_defaults()
    cfg.TRAIN.ADAM_IMPL, cfg.TRAIN.OPTIMIZER, cfg.TRAIN.LR = impl, optimizer, 1e-3
    return cfg


def _net() -> nn.Module:
    torch.manual_seed(0)
    # no bias before the BatchNorm (as in the pose nets): its gradient would be rounding noise
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1))


def _train(impl: str, steps: int = 5) -> nn.Module:
    net = _net()
    opt = build_optimizer(_cfg(impl), net.parameters())
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        target = torch.randn(4, 4, 8, 8, generator=gen)
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(net(x), target).backward()
        opt.step()
    return net


def test_adam_impl_choices():
    assert adam_impl("auto", torch.device("cuda", 0)) == "fused"
    assert adam_impl("auto", torch.device("cpu")) == "for_loop"
    assert adam_impl("foreach", torch.device("cpu")) == "foreach"
    flags = {impl: build_optimizer(_cfg(impl), _net().parameters()).param_groups[0]
             for impl in ("auto", "for_loop", "foreach", "fused")}
    assert (flags["auto"]["foreach"], flags["auto"]["fused"]) == (False, False)  # CPU
    assert (flags["for_loop"]["foreach"], flags["for_loop"]["fused"]) == (False, False)
    assert (flags["foreach"]["foreach"], flags["foreach"]["fused"]) == (True, False)
    assert flags["fused"]["fused"] is True
    sgd = build_optimizer(_cfg(optimizer="sgd"), _net().parameters())
    assert isinstance(sgd, torch.optim.SGD)


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_adam_kernels_give_the_for_loop_weights(impl):
    """Five Adam steps (lr 1e-3, weights move by ~5e-3): foreach and fused end within 1e-7
    (absolute) of the reference's for-loop weights (measured: foreach identical, fused 2e-9)."""
    reference, other, start = _train("for_loop"), _train(impl), _net()
    for (name, a), b, s in zip(reference.named_parameters(), other.parameters(),
                               start.parameters()):
        assert (a - s).abs().max() > 1e-3, name  # trained
        torch.testing.assert_close(b, a, rtol=0, atol=1e-7, msg=name)


def _step_on(impl: str, poison: bool, scaler_on: bool = False):
    """One guarded step of a fresh Adam after one normal step; returns (weights before, after,
    Adam state before, after, the skip flag)."""
    net = _net()
    opt = build_optimizer(_cfg(impl), net.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_on)
    guard = NonFiniteGuard(opt, scaler, distributed=False)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))

    def step(nan: bool):
        loss = net(x).square().mean()
        terms = torch.stack([loss.detach(), torch.tensor(float("nan") if nan else 1.0)])
        opt.zero_grad(set_to_none=True)
        scaler.scale(guard.arm(loss, terms)).backward()
        return guard.step(opt)

    assert not bool(step(False))
    weights = [p.detach().clone() for p in net.parameters()]
    state = {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()}
    flag = step(poison)
    after = {i: s for i, s in opt.state_dict()["state"].items()}
    return weights, [p.detach() for p in net.parameters()], state, after, flag


@pytest.mark.parametrize("impl, scaler_on", [("for_loop", False), ("foreach", False),
                                             ("fused", False), ("for_loop", True)],
                         ids=["for_loop", "foreach", "fused", "fp16-scaler"])
def test_guard_skips_a_step_whose_logged_term_is_nan(impl, scaler_on):
    """Only a logged term is NaN (the gradients are finite): the step is skipped all the same,
    weights and Adam state (moments, step count) untouched; the flag says so. A finite step
    changes them."""
    before, after, state, new_state, flag = _step_on(impl, True, scaler_on)
    assert bool(flag)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    for i, st in state.items():
        for k, v in st.items():
            assert torch.equal(new_state[i][k], v), (i, k)
    before, after, state, new_state, flag = _step_on(impl, False, scaler_on)
    assert not bool(flag)
    assert not any(torch.equal(a, b) for a, b in zip(before, after))
    assert all(int(new_state[i]["step"]) == int(st["step"]) + 1 for i, st in state.items())


def test_nonfinite_grads_checks_without_changing_them():
    net = _net()
    net(torch.ones(1, 3, 4, 4)).sum().backward()
    opt = torch.optim.Adam(net.parameters())
    grads = [p.grad.clone() for p in net.parameters()]
    assert not bool(nonfinite_grads(opt, torch.device("cpu")))
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))
    list(net.parameters())[-1].grad[0] = float("inf")
    assert bool(nonfinite_grads(opt, torch.device("cpu")))


def test_lr_at_epoch():
    assert lr_at_epoch(1e-3, (90, 110), 0.1, 0) == 1e-3
    assert lr_at_epoch(1e-3, (90, 110), 0.1, 90) == pytest.approx(1e-4)
    assert lr_at_epoch(1e-3, (90, 110), 0.1, 120) == pytest.approx(1e-5)

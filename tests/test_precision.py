"""Precision and speed switches on CPU: TRAIN.AMP bf16 / fp16, TRAIN.CHANNELS_LAST, TRAIN.COMPILE.
Each trains a couple of steps and checks finite losses and changed weights."""
from __future__ import annotations

import functools
import math
import os

import pytest
import torch

from semipose.config import load_cfg
from semipose.engine.hooks import StopSignals
from semipose.engine.trainer import Trainer
from semipose.utils.dist import DistInfo

from conftest import make_synthetic, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MONITOR.ENABLED", "False", "MASK_JOINT_NUM", "2")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, num_train=4, num_val=2)


def _train_steps(path: str, root: str, out: str, *extra: str, steps: int = 2) -> Trainer:
    """A trainer on the tiny set, ``steps`` training steps of epoch 0 (no validation); its
    ``last_step`` is the last step's StepOutput."""
    cfg = load_cfg(path, TINY + ["DATASET.ROOT", root, "OUTPUT_DIR", out,
                              "LOG_DIR", os.path.join(out, "tb"), *extra])
    trainer = Trainer(cfg, path, DistInfo(), progress=False)
    trainer.setup()  # run folder, data, nets and method (what fit does first)
    before = {k: v.detach().clone() for k, v in trainer.method.nets.state_dict().items()}
    calls = {"n": 0}
    original = trainer.method.forward
    signals = trainer.hook(StopSignals)

    def limited(batch):  # stop cleanly after ``steps`` steps, as a signal would
        calls["n"] += 1  # (around forward: a compiled step then does not trace this counter)
        if calls["n"] == steps:
            signals.signum = 0
        trainer.last_step = original(batch)
        return trainer.last_step
    trainer.method.forward = limited
    try:
        trainer.train_one_epoch(0)
    finally:
        signals.close(trainer)  # the signal handlers setup installed (fit's end removes them)
    trainer.before = before
    return trainer


def _check_trained(trainer: Trainer, steps: int = 2) -> None:
    losses = [v for _, v in trainer.scalars.history["train/loss"]]
    assert len(losses) == steps and all(math.isfinite(v) and v > 0 for v in losses)
    after = trainer.method.nets.state_dict()
    changed = [k for k, v in trainer.before.items()
               if v.is_floating_point() and not torch.equal(v, after[k])]
    assert len(changed) > 0.5 * sum(v.is_floating_point() for v in trainer.before.values())
    for k, v in after.items():
        assert v.dtype == trainer.before[k].dtype, k  # master weights stay fp32
        if v.is_floating_point():
            assert bool(torch.isfinite(v).all()), k


def test_bf16_posedual(data_root, tmp_path):
    """bf16 autocast through the whole PoseDual step: supervised, teacher, hard view, students."""
    # 32x32 crops, 2 per batch: CPUs without native bf16 kernels emulate them, slowly
    t = _train_steps(POSEDUAL, data_root, str(tmp_path), "TRAIN.AMP", "bf16", "MODEL.IMAGE_SIZE",
                     "[32, 32]", "MODEL.EXTRA.HEATMAP_SIZE", "[8, 8]", "TRAIN.BATCH_SIZE", "2")
    _check_trained(t)
    # the nets ran in bf16 (the loss reduces in fp32); no loss scaling
    assert t.last_step.sup_heatmaps.dtype == torch.bfloat16
    assert t.last_step.debug["student_heatmaps_2"].dtype == torch.bfloat16
    assert not t.run.scaler.is_enabled()


def test_fp16_with_grad_scaler(data_root, tmp_path):
    t = _train_steps(SUPERVISED, data_root, str(tmp_path), "TRAIN.AMP", "fp16")
    _check_trained(t)
    assert t.last_step.sup_heatmaps.dtype == torch.float16
    assert t.run.scaler.is_enabled() and t.run.scaler.get_scale() > 1.0  # the loss was scaled


def test_channels_last(data_root, tmp_path):
    t = _train_steps(SUPERVISED, data_root, str(tmp_path), "TRAIN.CHANNELS_LAST", "True")
    _check_trained(t)
    conv = t.method.nets["net1"].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert t.last_step.sup_heatmaps.is_contiguous(memory_format=torch.channels_last)


def test_compile(data_root, tmp_path, monkeypatch):
    """TRAIN.COMPILE compiles every net in place (checkpoint keys unchanged). The default
    inductor backend needs a C++ toolchain and about a minute of code generation on 2 cores;
    the test traces with dynamo + AOT autograd ('aot_eager'), which exercises the same
    graph capture without the code generation."""
    try:
        probe = torch.nn.Linear(2, 2)
        probe.compile(backend="aot_eager")
        probe(torch.zeros(1, 2)).sum().backward()
    except Exception as exc:  # pragma: no cover - depends on the machine's torch build
        pytest.skip(f"torch.compile does not work here: {type(exc).__name__}: {exc}")
    monkeypatch.setattr(torch.nn.Module, "compile", functools.partialmethod(
        torch.nn.Module.compile, backend="aot_eager"))
    torch._dynamo.reset()
    t = _train_steps(SUPERVISED, data_root, str(tmp_path), "TRAIN.COMPILE", "True")
    _check_trained(t)
    net = t.method.nets["net1"]
    assert net._compiled_call_impl is not None
    assert not any("_orig_mod" in k for k in net.state_dict())
    torch._dynamo.reset()


def test_compile_mode_default_gives_the_eager_heatmaps(data_root, tmp_path):
    """TRAIN.COMPILE True is the 'default' mode: every net compiled in place with inductor gives
    the eager heatmaps (within 1e-4 of their largest value: fresh nets output ~1e-9). Inductor's code generation takes ~15-45 s on 2 cores (an
    eval-mode forward only; the training step through the compiled net is test_compile's)."""
    import logging

    from semipose.engine.model_setup import build_method_for

    try:
        probe = torch.nn.Linear(2, 2)
        probe.compile()
        probe(torch.zeros(1, 2))
    except Exception as exc:  # pragma: no cover - depends on the machine's C++ toolchain
        pytest.skip(f"torch.compile (inductor) does not work here: {type(exc).__name__}: {exc}")
    cfg = load_cfg(SUPERVISED, TINY + ["DATASET.ROOT", data_root, "OUTPUT_DIR", str(tmp_path),
                                       "TRAIN.COMPILE", "True"])
    assert cfg.TRAIN.COMPILE == "default"
    torch._dynamo.reset()
    method, _ = build_method_for(cfg, DistInfo(), logging.getLogger("test"))
    net = method.nets["net1"].eval()
    assert net._compiled_call_impl is not None
    x = torch.randn(2, 3, *cfg.MODEL.IMAGE_SIZE[::-1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager, compiled = net.forward(x), net(x)
    scale = float(eager.abs().max())
    assert scale > 0 and eager.std() > 0.01 * scale  # not a constant map
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4 * scale)
    torch._dynamo.reset()

"""TRAIN.COMPILE_SCOPE 'step': the whole method step under torch.compile, its random draws
replayed from the method's own generator (methods/compiled.py, transforms/draws.py).

The compiled steps trace with dynamo + AOT autograd ('aot_eager'): the same graph capture and
autograd as inductor, without its code generation (minutes on 2 cores), and the same kernels as
eager, so a compiled step must give the eager step's numbers exactly."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from torch._dynamo.utils import counters

from semipose.config import ConfigError, load_cfg
from semipose.methods import MultiPath, PoseCons, PoseDual, PoseDualMeanTeacher, Supervised
from semipose.methods import compiled as compiled_mod
from semipose.methods.parts import Consistency, HardView
from semipose.transforms.batch import hard_affine_theta, joint_cutout, random_partner
from semipose.transforms.draws import DrawSpec, Recorder, Tape, draw_all

from test_methods import J, TinyNet, make_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled_mod, "DEFAULT_BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# ------------------------------------------------------------------ draw sources
def test_recorder_draws_like_the_generator_and_draw_all_replays_them():
    joints = torch.rand(4, J, 2) * 20
    images = torch.randn(4, 3, 32, 24)

    def ops(source):
        return (hard_affine_theta(4, 0.25, 30.0, source, "cpu"),
                joint_cutout(images, joints, 3, source, "corrected",
                             torch.tensor([True, True, False, True, True])),
                random_partner(4, source, "cpu"))

    plain = ops(torch.Generator().manual_seed(5))
    recorder = Recorder(torch.Generator().manual_seed(5))
    recorded = ops(recorder)
    for a, b in zip(plain, recorded):
        assert torch.equal(a, b)
    # theta: randn, randn, rand; cutout: randn jitter, randint half sizes, rand ranks;
    # partner: randperm, randint shift
    assert [s.kind for s in recorder.specs] == ["randn", "randn", "rand", "randn", "randint",
                                                "rand", "randperm", "randint"]
    assert recorder.specs[4] == DrawSpec("randint", (4, J, 2), 10, 20)
    gen = torch.Generator().manual_seed(5)
    draws = draw_all(gen, recorder.specs)
    assert torch.equal(gen.get_state(), recorder.generator.get_state())  # same stream consumed
    replayed = ops(Tape(draws))
    for a, b in zip(plain, replayed):
        assert torch.equal(a, b)


def test_tape_refuses_draws_it_does_not_have():
    tape = Tape([torch.zeros(3)])
    with pytest.raises(RuntimeError, match=r"shape \(3,\).*asked for \(4,\)"):
        hard_affine_theta(4, 0.25, 30.0, tape, "cpu")
    tape = Tape([torch.zeros(4)])  # the theta draws three times
    with pytest.raises(RuntimeError, match="more random draws than the 1 recorded"):
        hard_affine_theta(4, 0.25, 30.0, tape, "cpu")


# ------------------------------------------------------------------ compiled == eager
def _steps(method, batches, compiled: bool, mode: str = "default", backend=None):
    """Run the batches through ``method`` (a copy), with backward; returns the copy and per step
    (the logged scalars and supervised heatmaps, grads, the debug tensors)."""
    m = copy.deepcopy(method)
    if compiled:
        m.compile_step(mode, backend)
    rows = []
    for i, batch in enumerate(batches):
        if compiled and mode == "reduce-overhead":  # as the trainer does
            torch.compiler.cudagraph_mark_step_begin()
        m.set_progress(0.25 * i)  # a changing ramp-up weight must not recompile
        out = m(batch)
        out.loss.backward()
        grads = [p.grad.clone() for p in m.parameters() if p.grad is not None]
        values = {**out.logged(), "sup_heatmaps": out.sup_heatmaps}
        rows.append(({k: v.detach().clone() for k, v in values.items()}, grads,
                     {k: v.clone() for k, v in out.debug.items()}))
        m.zero_grad(set_to_none=True)
    return m, rows


METHODS = {
    "posedual_jc": lambda: PoseDual({"net1": TinyNet(seed=0), "net2": TinyNet(seed=1)},
                                    hard=HardView(ops=("cutout",), joint_num=3, seed=3),
                                    cons=Consistency(rampup_epochs=2.0)),
    "posecons_corrected_hard_teacher": lambda: PoseCons(
        TinyNet(seed=0), hard=HardView(teacher_view="hard", seed=4),
        cons=Consistency(rampup_epochs=2.0, conf_thre=0.01)),
    "posecons_jc_corrected_randaug": lambda: PoseCons(
        TinyNet(seed=0), hard=HardView(ops=("cutout",), joint_num=2, cutout_mode="corrected",
                                       rand_aug=True, seed=4)),
    "multi_path": lambda: MultiPath(TinyNet(seed=2), paths=["cutout", "occlusion+mixup", "cutmix"],
                                    path_joint_num=3, hard=HardView(seed=2)),
    "posedual_mean_teacher": lambda: PoseDualMeanTeacher(
        {"net1": TinyNet(seed=0), "net2": TinyNet(seed=1), "teacher1": TinyNet(seed=0),
         "teacher2": TinyNet(seed=1)}, ema_decay=0.9,
        hard=HardView(ops=("cutout",), joint_num=2, seed=0)),
    "supervised": lambda: Supervised(TinyNet(seed=0)),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_compiled_step_gives_the_eager_numbers(name):
    method = METHODS[name]()
    aug = "randaug" in name
    # two "epochs" of 2-3 steps of batch 4 and a last, smaller batch of 3, then 2 steps of
    # batch 2 (the data changing size for good)
    b4 = [make_batch(seed=s, aug=aug) for s in range(5)]
    b3 = [make_batch(n=3, seed=s, aug=aug) for s in (7, 8)]
    b2 = [make_batch(n=2, seed=s, aug=aug) for s in (5, 6)]
    batches = b4[:3] + b3[:1] + b4[3:] + b3[1:] + b2
    m0, eager = _steps(method, batches, compiled=False)
    m1, comp = _steps(method, batches, compiled=True)
    step = m1.compiled_step
    # eager: the first step of each shape and every batch of 3, which never comes twice in a row
    assert step.eager_steps == 4
    assert len(step.specs) == 3 and len(step.steady) == 2
    if name != "supervised":
        assert all(len(s) > 0 for s in step.specs.values())  # the hard view draws
    for (out0, g0, last0), (out1, g1, last1) in zip(eager, comp):
        assert out0.keys() == out1.keys() and last0.keys() == last1.keys()
        for k in out0:
            assert torch.equal(out0[k], out1[k]), k
        assert len(g0) == len(g1) and all(torch.equal(a, b) for a, b in zip(g0, g1))
        for k in last0:
            assert torch.equal(last0[k], last1[k]), k
    sd0, sd1 = m0.state_dict(), m1.state_dict()  # BatchNorm statistics of every pass
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    # the generators were consumed exactly as by the eager steps
    st0, st1 = m0.rng_state(), m1.rng_state()
    assert st0.keys() == st1.keys() and all(torch.equal(st0[k], st1[k]) for k in st0)
    # one graph per batch shape, none broken, and the float weight is not a guard
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 2  # batch 4 and batch 2
    if hasattr(m1, "cons"):  # a float again after the step, the eager value
        assert isinstance(m1.cons.scale, float) and m1.cons.scale == m0.cons.scale


def test_compiled_step_inside_ddp(tmp_path):
    """The trainer wraps the method in DistributedDataParallel, whose forward calls the compiled
    step and whose gradient hooks fire from the compiled backward: one gloo process gives the
    eager step's gradients."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    method = METHODS["posedual_jc"]()
    batches = [make_batch(seed=s) for s in range(3)]
    _, eager = _steps(method, batches, compiled=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        m = copy.deepcopy(method)
        m.compile_step("default")
        ddp = DistributedDataParallel(m)
        for i, (batch, (out0, g0, _)) in enumerate(zip(batches, eager)):
            m.set_progress(0.25 * i)  # as _steps does
            out = ddp(batch)
            out.loss.backward()
            assert torch.equal(out.loss.detach(), out0["loss"])
            grads = [p.grad for p in m.parameters() if p.grad is not None]
            assert len(grads) == len(g0) and all(torch.equal(a, b) for a, b in zip(g0, grads))
            m.zero_grad(set_to_none=True)
    finally:
        dist.destroy_process_group()
    assert m.compiled_step.eager_steps == 1 and not counters["graph_break"]


def test_compiled_step_under_ddp_style_forward_and_eval_untouched():
    """forward (what DDP calls) runs the compiled step; the nets themselves stay plain modules,
    so validation and state-dict keys are those of an eager run."""
    method = METHODS["posedual_jc"]()
    keys = list(method.state_dict())
    method.compile_step("default")
    batch = make_batch()
    method(batch)
    method(batch)
    assert method.compiled_step.eager_steps == 1 and counters["stats"]["unique_graphs"] == 1
    assert list(method.state_dict()) == keys
    assert all(n._compiled_call_impl is None for n in method.nets.values())


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("device, mode", [("cpu", "default"),
                                          pytest.param("cuda", "default", marks=CUDA),
                                          pytest.param("cuda", "reduce-overhead", marks=CUDA)])
def test_compiled_step_inductor(device, mode):
    """With inductor's generated kernels (on a GPU also with CUDA graphs): the eager numbers and
    hard views within float tolerance, and the generator consumed exactly as by the eager steps.
    (The CPU case compiles C++ for about a minute on 2 cores.)"""
    from semipose.engine.device import move_batch

    dev = torch.device(device)
    method = METHODS["posedual_jc"]().to(dev)
    batches = [move_batch(make_batch(seed=s), dev) for s in range(5)]
    m0, eager = _steps(method, batches, compiled=False)
    m1, comp = _steps(method, batches, compiled=True, mode=mode, backend="inductor")
    for (out0, g0, last0), (out1, g1, last1) in zip(eager, comp):
        for k in out0:
            torch.testing.assert_close(out1[k], out0[k], rtol=1e-3, atol=1e-6)
        for a, b in zip(g0, g1):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)
        # the same boxes and warp; inductor's fused grid arithmetic rounds differently from the
        # eager kernels, which moved warped pixels by up to 1e-5 on the CPU (boxes identical), so
        # the images are equal to float tolerance, not bit for bit
        torch.testing.assert_close(last1["hard_images"], last0["hard_images"], rtol=1e-3,
                                   atol=1e-4)
    st0, st1 = m0.rng_state(), m1.rng_state()
    assert all(torch.equal(st0[k], st1[k]) for k in st0)


@CUDA
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_step_never_waits_for_the_device(compiled):
    """The PoseDual + Joint Cutout step and its backward, eager or compiled with the draws
    replayed, only queue work: CUDA's sync debug mode raises at any copy back to the host or
    stream synchronisation (e.g. linalg.inv's error check, a tensor made from a host list)."""
    from semipose.engine.device import move_batch

    dev = torch.device("cuda")
    method = METHODS["posedual_jc"]().to(dev)
    if compiled:
        method.compile_step("default", "inductor")
    batches = [move_batch(make_batch(seed=s), dev) for s in range(5)]
    for b in batches[:2]:  # set-up outside the check: the recorded step, the compile, cuDNN
        method(b).loss.backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in batches[2:]:
            method.set_progress(1.0)
            method(b).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


# ------------------------------------------------------------------ config and trainer
def test_compile_scope_key():
    coco = os.path.join(ROOT, "experiments", "mix_coco_coco", "res18",
                        "256x192_COCO1K_PoseDual.yaml")
    assert load_cfg(coco).TRAIN.COMPILE_SCOPE == "nets"
    assert load_cfg(coco, ["TRAIN.COMPILE_SCOPE", "step"]).TRAIN.COMPILE_SCOPE == "step"
    with pytest.raises(ConfigError, match=r"TRAIN.COMPILE_SCOPE is 'all'.*step"):
        load_cfg(coco, ["TRAIN.COMPILE_SCOPE", "all"])


def test_trainer_with_compiled_step(tmp_path_factory, tmp_path):
    """A PoseDual + Joint Cutout run with TRAIN.COMPILE_SCOPE step: three steps (the first eager,
    recording the draws; two compiled) train finite losses and change the weights."""
    from conftest import make_synthetic
    from test_precision import POSEDUAL, _check_trained, _train_steps

    root = make_synthetic(tmp_path_factory, num_train=6, num_val=2)
    t = _train_steps(POSEDUAL, root, str(tmp_path), "TRAIN.COMPILE", "default",
                     "TRAIN.COMPILE_SCOPE", "step", "TRAIN.BATCH_SIZE", "2", steps=3)
    _check_trained(t, steps=3)
    step = t.method.compiled_step
    assert step is not None and step.eager_steps == 1
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert all(n._compiled_call_impl is None for n in t.method.nets.values())


def test_compiled_step_refuses_value_dependent_draws():
    """A step whose number of draws depends on values cannot be replayed: a clear error, never a
    silently different random stream."""
    class Moody(PoseCons):
        def training_step(self, batch):
            out = super().training_step(batch)
            if float(batch["labeled"]["image"].mean()) > 0:  # value-dependent: one more draw
                self.hard.draw_theta(2, batch["labeled"]["image"].device)
            return out

    method = Moody(TinyNet(seed=0), hard=HardView(seed=1))
    method.compile_step("default")
    up, down = make_batch(seed=0), make_batch(seed=0)
    up["labeled"]["image"] = up["labeled"]["image"].abs()
    down["labeled"]["image"] = -down["labeled"]["image"].abs()
    method(up)  # eager, records the extra draw
    with pytest.raises(RuntimeError, match="used 3 of the 6 random draws"):
        method(down)

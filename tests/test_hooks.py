"""The trainer's hooks: a user hook in one file (here a weight-EMA of net 1), the hook registry,
the call points, and a trainer whose construction touches nothing on disk."""
from __future__ import annotations

import copy
import os

import pytest
import torch

from semipose.engine.hooks import HOOKS, Hook, Validation, register_hook
from semipose.engine.trainer import Trainer
from semipose.errors import UserError
from semipose.utils.dist import DistInfo
from conftest import make_synthetic, synthetic_cfg, tiny

SUPERVISED = os.path.join(os.path.dirname(__file__), "..", "experiments", "synthetic",
                          "supervised.yaml")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_hooks", seed=3, num_train=4, num_val=2)


class WeightEMA(Hook):
    """An exponential moving average of net 1's weights, saved at the end as ema.pth: the whole
    feature in this class, with no change to the trainer."""

    def __init__(self, decay: float = 0.5):
        self.decay, self.ema, self.calls = decay, None, []

    def setup(self, t):
        self.calls.append("setup")

    def before_run(self, t):
        self.calls.append("before_run")
        self.ema = copy.deepcopy(t.run.method.nets["net1"].state_dict())

    @torch.no_grad()
    def after_step(self, t, i, batch, out):
        self.calls.append(("after_step", i, float(out.loss)))
        for k, v in t.run.method.nets["net1"].state_dict().items():
            if v.is_floating_point():
                self.ema[k].mul_(self.decay).add_(v, alpha=1 - self.decay)
            else:
                self.ema[k].copy_(v)

    def end_of_epoch(self, t, epoch):
        self.calls.append(("end_of_epoch", epoch))

    def end_of_run(self, t):
        self.calls.append("end_of_run")
        torch.save(self.ema, os.path.join(t.run_dir, "ema.pth"))

    def close(self, t):
        self.calls.append("close")


@register_hook("count_steps")
class CountSteps(Hook):
    def __init__(self):
        self.steps = 0

    def after_step(self, t, i, batch, out):
        self.steps += 1


def _cfg(root, out, *extra):
    return synthetic_cfg(SUPERVISED, root, out, tiny("TRAIN.END_EPOCH", "2", *extra))


def test_construction_has_no_side_effects(data_root, tmp_path):
    out = tmp_path / "out"
    trainer = Trainer(_cfg(data_root, str(out)), SUPERVISED, DistInfo(), progress=False)
    assert not out.exists() and trainer.run is None and trainer.run_dir == ""
    trainer.setup()  # the folder, its lock and the built parts come here
    assert os.path.isdir(trainer.run_dir) and trainer.run is not None
    assert os.path.exists(os.path.join(trainer.run_dir, "config.yaml"))


def test_a_user_hook_in_one_file(data_root, tmp_path):
    ema = WeightEMA(decay=0.0)  # decay 0: the average is the last weights exactly
    trainer = Trainer(_cfg(data_root, str(tmp_path / "out")), SUPERVISED, DistInfo(),
                      progress=False, hooks=[ema])
    trainer.fit()
    steps = trainer.state.global_step
    assert steps == 2 * len(trainer.run.train_loader) >= 2
    # called at the fixed points, in order: setup, start, each step, each epoch, the end, close
    assert ema.calls[:2] == ["setup", "before_run"] and ema.calls[-2:] == ["end_of_run", "close"]
    assert [c[1] for c in ema.calls if c[0] == "end_of_epoch"] == [0, 1]
    step_calls = [c for c in ema.calls if c[0] == "after_step"]
    assert len(step_calls) == steps and all(torch.isfinite(torch.tensor(c[2])) for c in step_calls)
    saved = torch.load(os.path.join(trainer.run_dir, "ema.pth"), weights_only=True)
    final = torch.load(os.path.join(trainer.run_dir, "final_state.pth.tar"), weights_only=True)
    net1 = {k[len("net1."):]: v for k, v in final.items() if k.startswith("net1.")} or final
    assert saved.keys() == net1.keys()
    assert all(torch.equal(saved[k], net1[k]) for k in saved)
    # the default hooks ran too: validation results are what fit returned
    assert trainer.hook(Validation).results == trainer.last_results != {}


def test_registered_hook_from_config(data_root, tmp_path):
    assert HOOKS["count_steps"] is CountSteps
    trainer = Trainer(_cfg(data_root, str(tmp_path / "out"), "TRAIN.HOOKS", "['count_steps']"),
                      SUPERVISED, DistInfo(), progress=False)
    trainer.fit()
    assert trainer.hook(CountSteps).steps == trainer.state.global_step > 0
    with pytest.raises(UserError, match="TRAIN.HOOKS: no hook named 'nope'"):
        Trainer(_cfg(data_root, str(tmp_path / "x"), "TRAIN.HOOKS", "['nope']"), SUPERVISED,
                DistInfo(), progress=False)

"""Extensions in one place: a method defined in one file (here, this test) and registered by one
decorator trains, validates, checkpoints and resumes with no other file touched; the same for a
backbone; Mean Teacher."""
from __future__ import annotations

import os

import pytest
import torch

from semipose.config import ConfigError, load_cfg
from semipose.config.describe import format_key_docs
from semipose.engine.checkpoint import load_resume_state
from semipose.engine.trainer import Trainer
from semipose.methods import MeanTeacher, build_method, num_nets, register_method
from semipose.methods.base import Batch, Method, labeled_part
from semipose.models.build import build_net
from semipose.models.registry import register_backbone
from semipose.types import StepOutput
from semipose.utils.dist import DistInfo
from conftest import make_synthetic, synthetic_cfg, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
MEAN_TEACHER = os.path.join(ROOT, "experiments", "synthetic", "mean_teacher.yaml")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.LR_STEP", "[5]", "MONITOR.ENABLED", "False")


@register_method("toy_method", backbone="resnet")
class ToyMethod(Method):
    """Supervised loss; counts its optimizer steps (extra state); scores net1 and an 'average'."""

    net_names = ("net1",)
    averages = {"average": ("net1",)}

    def __init__(self, nets, loss=None):
        super().__init__(nets, loss)
        self.steps = 0

    @classmethod
    def from_cfg(cls, cfg, nets, **_):
        return cls(nets)

    def training_step(self, batch: Batch) -> StepOutput:
        lab = labeled_part(batch)
        out = self.nets["net1"](lab["image"])
        loss = self.loss(out, lab["target"], lab.get("target_weight"))
        return StepOutput(loss=loss, terms={"loss_pose": loss.detach()}, sup_heatmaps=out.detach())

    def after_step(self) -> None:
        self.steps += 1

    def extra_state(self):
        return {"steps": self.steps}

    def load_extra_state(self, state):
        self.steps = int(state.get("steps", 0))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_ext", seed=3, num_train=4, num_val=2)


def _cfg(path: str, root: str, out: str, *extra: str):
    return synthetic_cfg(path, root, out, TINY + list(extra))


def test_a_method_in_one_file_trains_validates_and_resumes(data_root, tmp_path):
    out = str(tmp_path / "out")
    cfg = _cfg(SUPERVISED, data_root, out, "MODEL.NAME", "toy_method", "TRAIN.END_EPOCH", "1")
    first = Trainer(cfg, SUPERVISED, DistInfo(), progress=False)
    results = first.fit()
    steps = len(first.run.train_loader)
    assert first.method.steps == steps >= 2  # the after-step hook ran once per optimizer step
    assert list(results) == ["net1", "average"]  # the method's rows, nothing hard-coded
    assert results["average"][0] == pytest.approx(results["net1"][0])
    assert load_resume_state(first.out_dir)["method_state"] == {"steps": steps}
    assert first.out_dir.endswith(os.path.join("toy_method_18", "supervised",
                                               os.path.basename(first.out_dir)))
    resumed = Trainer(_cfg(SUPERVISED, data_root, out, "MODEL.NAME", "toy_method",
                           "TRAIN.END_EPOCH", "2", "TRAIN.RESUME", "True"),
                      SUPERVISED, DistInfo(), progress=False)
    resumed.setup()  # run folder, nets and method, then the resume (fit would too)
    assert resumed.out_dir == first.out_dir and resumed.method.steps == steps  # extra state back
    resumed.fit()
    assert resumed.method.steps == 2 * steps


def test_unregistered_names_are_rejected_with_the_registered_list(tmp_path):
    with pytest.raises(ConfigError, match="toy_method"):
        load_cfg(SUPERVISED, ["MODEL.NAME", "no_such_method"])


def _mean_teacher(decay: float = 0.9):
    cfg = load_cfg(MEAN_TEACHER, TINY + ["MT_EMA_DECAY", str(decay)])
    torch.manual_seed(0)
    return build_method(cfg, [build_net(cfg) for _ in range(num_nets(cfg))]), cfg


def _batch(n: int = 2, size: int = 64, joints: int = 24) -> Batch:
    g = torch.Generator().manual_seed(1)
    target = torch.rand(n, joints, size // 4, size // 4, generator=g)
    w = torch.ones(n, joints, 1)
    return {"labeled": {"image": torch.randn(n, 3, size, size, generator=g), "target": target,
                        "target_weight": w},
            "unlabeled": {"image": torch.randn(n, 3, size, size, generator=g),
                          "target_weight": w}}


def test_mean_teacher_step_trains_the_student_only_and_updates_the_ema_exactly():
    method, _ = _mean_teacher(decay=0.9)
    assert isinstance(method, MeanTeacher) and list(method.nets) == ["net1", "teacher"]
    student, teacher = method.nets["net1"], method.nets["teacher"]
    for a, b in zip(student.state_dict().values(), teacher.state_dict().values()):
        assert torch.equal(a, b)  # the teacher starts as the student
    step = method.training_step(_batch())
    losses = step.logged()
    assert all(torch.isfinite(v).all() for v in losses.values()) and float(losses["loss_cons"]) > 0
    step.loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    # the decay warms up as min(0.9, 1 - 1/(k + 1)): 0 (a copy), 1/2, 2/3, ..., 0.9 from k = 9
    for k, d in enumerate([0.0] + [i / (i + 1) for i in range(1, 9)] + [0.9, 0.9]):
        if k:
            method.training_step(_batch()).loss.backward()
        before = [p.detach().clone() for p in teacher.parameters()]
        stats = [b.clone() for b in teacher.buffers()]
        opt.step()
        opt.zero_grad()
        method.after_step()
        for t0, t1, s1 in zip(before, teacher.parameters(), student.parameters()):
            assert torch.allclose(t1, d * t0 + (1 - d) * s1, atol=1e-6), k
        # BatchNorm statistics stay the teacher's own (from its train-mode pass in the step)
        for b0, bt in zip(stats, teacher.buffers()):
            assert torch.equal(b0, bt)
    bn_t = [m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    bn_s = [m for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not torch.equal(bn_t.running_mean, bn_s.running_mean)
    assert method.extra_state() == {"ema_steps": 11}
    assert sorted(method.eval_models()) == ["net1", "teacher"]


def test_mean_teacher_short_run_scores_both_and_resumes_the_teacher(data_root, tmp_path):
    out = str(tmp_path / "out")
    cfg = _cfg(MEAN_TEACHER, data_root, out, "TRAIN.END_EPOCH", "1", "MT_EMA_DECAY", "0.5")
    trainer = Trainer(cfg, MEAN_TEACHER, DistInfo(), progress=False)
    results = trainer.fit()
    assert list(results) == ["net1", "teacher"]
    teacher = {k: v.clone() for k, v in trainer.method.nets["teacher"].state_dict().items()}
    student = trainer.method.nets["net1"].state_dict()
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)  # it lags the student
    resumed = Trainer(_cfg(MEAN_TEACHER, data_root, out, "TRAIN.END_EPOCH", "2", "MT_EMA_DECAY",
                           "0.5", "TRAIN.RESUME", "True"), MEAN_TEACHER, DistInfo(),
                      progress=False)
    resumed.setup()
    for k, v in resumed.method.nets["teacher"].state_dict().items():
        assert torch.equal(v, teacher[k]), k  # restored from the checkpoint, not re-copied


# ---------------------------------------------------------------- a backbone in one file
def _toy_extra():
    from yacs.config import CfgNode as CN
    e = CN()
    e.TOY_WIDTH = 8  # the marker: only this backbone's MODEL.EXTRA has it
    e.TARGET_TYPE = "gaussian"
    e.HEATMAP_SIZE = (16, 16)
    e.SIGMA = 1.0
    return e


class ToyNet(torch.nn.Module):
    """Two strided convs (stride 4) and a heatmap conv: the smallest PoseNet."""

    head_modules = ("final_layer",)

    def __init__(self, width: int, joints: int):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, 2, 1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(width, width, 3, 2, 1), torch.nn.ReLU())
        self.final_layer = torch.nn.Conv2d(width, joints, 1)

    def forward(self, x):
        return self.final_layer(self.body(x))

    def reference_init(self, std: float = 0.001) -> None:
        torch.nn.init.normal_(self.final_layer.weight, std=std)

    def imagenet_only_key(self, key: str) -> bool:
        return False


@register_backbone("toy", title="Toy", template=_toy_extra, marker="TOY_WIDTH",
                   check=lambda e: None if e.TOY_WIDTH > 0 else
                   f"MODEL.EXTRA.TOY_WIDTH is {e.TOY_WIDTH}; it must be > 0",
                   stride=lambda e: 4, run_name=lambda e: (f"w{e.TOY_WIDTH}", ""))
def build_toy(cfg):
    return ToyNet(int(cfg.MODEL.EXTRA.TOY_WIDTH), int(cfg.MODEL.NUM_JOINTS))


register_method("toy_any_backbone")(ToyMethod)  # the same method, MODEL.BACKBONE picks the net


def _toy_yaml(tmp_path, width: int = 6) -> str:
    import yaml
    with open(SUPERVISED) as f:
        data = yaml.safe_load(f)
    data["MODEL"].update(NAME="toy_any_backbone", BACKBONE="toy",
                         EXTRA={"TOY_WIDTH": width, "HEATMAP_SIZE": [16, 16], "SIGMA": 1.0})
    path = str(tmp_path / f"toy_w{width}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def test_a_backbone_in_one_file_is_checked_named_built_and_trained(data_root, tmp_path):
    """A backbone registered by one decorator (here, in this test): its YAML EXTRA merges into its
    template, its check and stride guard the config, its tag names the run folder, and the trainer
    trains and scores it, with no other file touched."""
    from conftest import synthetic_opts
    from semipose.models.registry import backbones

    assert "toy" in backbones() and {"resnet", "hrnet"} <= set(backbones())
    path = _toy_yaml(tmp_path)
    small = ["MODEL.IMAGE_SIZE", "[64, 64]", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8",
             "WORKERS", "0", "PRINT_FREQ", "1", "DATASET.TRAIN_LEN", "8",
             "SYNTHETIC.GENERATE_IF_MISSING", "False", "DEVICE", "cpu", "TRAIN.END_EPOCH", "1",
             "TRAIN.LR_STEP", "[5]", "MONITOR.ENABLED", "False"]
    opts = synthetic_opts(data_root, str(tmp_path / "out"), small)
    cfg = load_cfg(path, opts)
    assert cfg.MODEL.EXTRA.TOY_WIDTH == 6 and cfg.MODEL.EXTRA.TARGET_TYPE == "gaussian"
    assert "NUM_LAYERS" not in cfg.MODEL.EXTRA  # merged into the toy template, not ResNet's
    net = build_net(cfg)
    assert isinstance(net, ToyNet) and net(torch.zeros(1, 3, 64, 64)).shape == (1, 24, 16, 16)
    trainer = Trainer(cfg, path, DistInfo(), progress=False)
    results = trainer.fit()
    table, metric = results["net1"]  # the scored COCO table of the toy net and its AP
    assert set(results) == {"net1", "average"} and table["AP"] == metric and 0.0 <= metric <= 1.0
    assert f"toy_any_backbone_w6{os.sep}toy_w6{os.sep}" in trainer.out_dir + os.sep
    # its own check, its stride, and the marker check all name the key
    with pytest.raises(ConfigError, match="TOY_WIDTH is 0"):
        load_cfg(_toy_yaml(tmp_path, 0), opts)
    with pytest.raises(ConfigError, match=r"HEATMAP_SIZE \[16, 16\] .*stride 4.*\[8, 8\]"):
        load_cfg(path, opts + ["MODEL.IMAGE_SIZE", "[32, 32]"])
    with pytest.raises(ConfigError, match="selects the Toy backbone but MODEL.EXTRA holds ResNet"):
        load_cfg(SUPERVISED, ["MODEL.NAME", "toy_any_backbone", "MODEL.BACKBONE", "toy"])
    with pytest.raises(ConfigError, match=r"MODEL.BACKBONE is 'no_such'.*'toy'"):
        load_cfg(SUPERVISED, ["MODEL.NAME", "toy_any_backbone", "MODEL.BACKBONE", "no_such"])
    # --list-keys shows its template with the defaults, the built-in ones stay documented once
    listing = format_key_docs().splitlines()
    toy_rows = [line.split() for line in listing if "(Toy backbone)" in line]
    assert ["MODEL.EXTRA.TOY_WIDTH", "8", "#", "(Toy", "backbone)"] in toy_rows
    assert len(toy_rows) == len(_toy_extra()) and sum("NUM_LAYERS " in s for s in listing) == 1

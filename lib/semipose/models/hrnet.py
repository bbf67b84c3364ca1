"""HRNet pose network (W32 / W48): parallel multi-resolution branches with repeated fusion.

Module names give the key layout of released checkpoints: ``conv1``, ``bn1``, ``conv2``, ``bn2``,
``layer1``, ``transition{1,2,3}``, ``stage{2,3,4}.<module>.branches`` / ``.fuse_layers``,
``final_layer``. Only the highest-resolution branch feeds the final 1x1 conv.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..config.defaults import hrnet_extra
from ..errors import ConfigError
from .registry import extra_value, register_backbone
from .resnet import BasicBlock, Bottleneck, init_like_reference, make_layer

BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


@dataclass(frozen=True)
class StageSpec:
    """One of STAGE2/3/4 in MODEL.EXTRA."""

    num_modules: int
    num_branches: int
    num_blocks: Sequence[int]
    num_channels: Sequence[int]
    block: str = "BASIC"
    fuse_method: str = "SUM"


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Branches of residual blocks followed by all-to-all fusion.

    Input/output: a list of [N, C_b, H / 2**b, W / 2**b] tensors, one per branch b (only branch 0
    when ``multi_scale_output`` is False).
    """

    def __init__(self, in_channels: Sequence[int], spec: StageSpec,
                 multi_scale_output: bool = True) -> None:
        super().__init__()
        if spec.fuse_method != "SUM":
            raise ConfigError(f"FUSE_METHOD must be 'SUM', got {spec.fuse_method!r}")
        block = BLOCKS[spec.block]
        nb = spec.num_branches
        for name, seq in (("NUM_BLOCKS", spec.num_blocks), ("NUM_CHANNELS", spec.num_channels)):
            if len(seq) != nb:
                raise ConfigError(f"NUM_BRANCHES({nb}) != len({name}) ({len(seq)})")
        branches = []
        self.out_channels = list(in_channels)
        for b in range(nb):
            branch, self.out_channels[b] = make_layer(block, in_channels[b], spec.num_channels[b],
                                                      spec.num_blocks[b])
            branches.append(branch)
        self.branches = nn.ModuleList(branches)
        self.relu = nn.ReLU(inplace=True)
        self.fuse_layers = self._make_fuse(self.out_channels, multi_scale_output) if nb > 1 else None

    @staticmethod
    def _make_fuse(ch: Sequence[int], multi_scale_output: bool) -> nn.ModuleList:
        fuse = []
        for i in range(len(ch) if multi_scale_output else 1):
            row: List[Optional[nn.Module]] = []
            for j in range(len(ch)):
                if j > i:  # lower resolution source: 1x1 conv then nearest upsampling
                    row.append(nn.Sequential(
                        nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False), nn.BatchNorm2d(ch[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:  # higher resolution source: a chain of stride-2 3x3 convs
                    steps = [_conv_bn(ch[j], ch[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(ch[j], ch[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        return nn.ModuleList(fuse)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


class PoseHighResolutionNet(nn.Module):
    """HRNet for heatmaps: [N, 3, H, W] -> [N, num_joints, H/4, W/4] (branch-0 resolution)."""

    head_modules = ("final_layer",)
    # Tensors of the ImageNet classification HRNet that the pose variant does not have.
    imagenet_extra_modules = ("incre_modules", "downsamp_modules", "final_layer", "classifier")

    def __init__(self, num_joints: int, stages: Sequence[StageSpec],
                 final_conv_kernel: int = 1) -> None:
        super().__init__()
        if len(stages) != 3:
            raise ConfigError(f"HRNet needs STAGE2, STAGE3 and STAGE4, got {len(stages)} stages")
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, ch = make_layer(Bottleneck, 64, 64, 4)

        prev = [ch]
        for s, spec in enumerate(stages):
            cur = [c * BLOCKS[spec.block].expansion for c in spec.num_channels]
            self.add_module(f"transition{s + 1}", self._make_transition(prev, cur))
            last = s == len(stages) - 1
            modules = []
            for m in range(spec.num_modules):
                module = HighResolutionModule(cur, spec, not (last and m == spec.num_modules - 1))
                modules.append(module)
                cur = module.out_channels
            self.add_module(f"stage{s + 2}", nn.Sequential(*modules))
            prev = cur
        self.last_stage = f"stage{len(stages) + 1}.{stages[-1].num_modules - 1}"
        self.final_layer = nn.Conv2d(prev[0], num_joints, final_conv_kernel, 1,
                                     1 if final_conv_kernel == 3 else 0)

    @staticmethod
    def _make_transition(prev: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers: List[Optional[nn.Module]] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(_conv_bn(prev[i], c, 3, 1, relu=True) if prev[i] != c else None)
            else:  # new lower-resolution branch, reached from the lowest existing one
                steps = [_conv_bn(prev[-1], prev[-1], 3, 2, relu=True)
                         for _ in range(i - len(prev))]
                steps.append(_conv_bn(prev[-1], c, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _transit(transition: nn.ModuleList, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for i, t in enumerate(transition):
            src = xs[i] if i < len(xs) else xs[-1]
            out.append(src if t is None else t(src))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        xs = [x]
        for s in (1, 2, 3):
            xs = getattr(self, f"stage{s + 1}")(self._transit(getattr(self, f"transition{s}"), xs))
        return self.final_layer(xs[0])

    def reference_init(self, std: float = 0.001) -> None:
        """Reference HRNet initialisation: every conv N(0, std) with bias 0, every BN (1, 0)."""
        init_like_reference(self.modules(), std)

    def imagenet_only_key(self, key: str) -> bool:
        """True for ImageNet-file tensors without a counterpart here: the classification heads and
        the lower-resolution outputs of the last module (which the pose variant does not fuse)."""
        if key.split(".", 1)[0] in self.imagenet_extra_modules:
            return True
        prefix = f"{self.last_stage}.fuse_layers."
        return key.startswith(prefix) and key[len(prefix):].split(".", 1)[0] != "0"


# ----------------------------------------------------------------------------- registration
STAGES = ("STAGE2", "STAGE3", "STAGE4")


def _check_extra(extra) -> Optional[str]:
    """The first problem of an HRNet MODEL.EXTRA, or None."""
    for i, stage_name in enumerate(STAGES):
        stage, key = extra[stage_name], f"MODEL.EXTRA.{stage_name}"
        if stage.NUM_BRANCHES != i + 2:
            return f"{key}.NUM_BRANCHES is {stage.NUM_BRANCHES}; HRNet {stage_name} has {i + 2} branches"
        if not len(stage.NUM_BLOCKS) == len(stage.NUM_CHANNELS) == stage.NUM_BRANCHES:
            return (f"{key}.NUM_BLOCKS {list(stage.NUM_BLOCKS)} and NUM_CHANNELS "
                    f"{list(stage.NUM_CHANNELS)} need NUM_BRANCHES = {stage.NUM_BRANCHES} entries each")
        if stage.NUM_MODULES < 1:
            return f"{key}.NUM_MODULES must be >= 1"
        if stage.BLOCK not in BLOCKS:
            return f"{key}.BLOCK is {stage.BLOCK!r}; choose one of {tuple(BLOCKS)}"
        if stage.FUSE_METHOD != "SUM":
            return f"{key}.FUSE_METHOD is {stage.FUSE_METHOD!r}; only 'SUM' exists"
    return None


def _stage(cfg, key: str) -> StageSpec:
    s = extra_value(cfg, key)
    return StageSpec(num_modules=int(s.NUM_MODULES), num_branches=int(s.NUM_BRANCHES),
                     num_blocks=tuple(s.NUM_BLOCKS), num_channels=tuple(s.NUM_CHANNELS),
                     block=s.get("BLOCK", "BASIC"), fuse_method=s.get("FUSE_METHOD", "SUM"))


@register_backbone(
    "hrnet", title="HRNet", template=hrnet_extra, marker="STAGE2", check=_check_extra,
    stride=lambda extra: 4,  # the highest-resolution branch, at 1/4 of the image, makes the heatmaps
    run_name=lambda extra: (str(extra.STAGE2.NUM_CHANNELS[0]), ""))
def build_pose_hrnet(cfg) -> PoseHighResolutionNet:
    """PoseHighResolutionNet of MODEL.NUM_JOINTS and MODEL.EXTRA (STAGE2..4, FINAL_CONV_KERNEL)."""
    return PoseHighResolutionNet(int(cfg.MODEL.NUM_JOINTS), [_stage(cfg, k) for k in STAGES],
                                 int(cfg.MODEL.EXTRA.get("FINAL_CONV_KERNEL", 1)))

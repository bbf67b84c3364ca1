"""SimpleBaseline pose network: a torchvision-layout ResNet backbone followed by a deconv head.

Attribute names follow the torchvision ResNet (``conv1``, ``bn1``, ``layer1..4`` with
``downsample.0/.1``) and the reference head (``deconv_layers.{0,1,3,4,6,7}``, ``final_layer``),
so ImageNet files and released checkpoints map onto this module key for key.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

from ..config.defaults import resnet_extra
from ..errors import ConfigError
from .registry import extra_value, register_backbone

# Blocks per stage and block type for each supported depth.
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STYLES = ("pytorch", "caffe")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut. ``style`` is accepted for a uniform signature: with
    no 1x1 conv in the block, 'pytorch' and 'caffe' both put the stride on the first 3x3."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, style: str = "pytorch",
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ConfigError("BasicBlock (ResNet-18/34) supports only GROUPS=1, "
                              "WIDTH_PER_GROUP=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4) with a residual shortcut.

    style 'pytorch' (torchvision v1.5) strides the 3x3 conv; 'caffe' strides the first 1x1 conv.
    ``groups``/``width_per_group`` give the ResNeXt-style inner width
    ``int(planes * width_per_group / 64) * groups``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, style: str = "pytorch",
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        if style not in STYLES:
            raise ConfigError(f"MODEL.STYLE must be one of {STYLES}, got {style!r}")
        width = int(planes * (width_per_group / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if style == "caffe" else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


def make_layer(block: Block, inplanes: int, planes: int, blocks: int, stride: int = 1,
               **block_kwargs) -> Tuple[nn.Sequential, int]:
    """One ResNet stage; returns (stage, output channels). Shared with the HRNet stem."""
    downsample = None
    out_planes = planes * block.expansion
    if stride != 1 or inplanes != out_planes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )
    layers = [block(inplanes, planes, stride, downsample, **block_kwargs)]
    layers += [block(out_planes, planes, **block_kwargs) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_planes


def deconv_padding(kernel: int) -> Tuple[int, int]:
    """(padding, output_padding) that make a stride-2 transposed conv exactly double the size."""
    table = {4: (1, 0), 3: (1, 1), 2: (0, 0)}
    if kernel not in table:
        raise ConfigError(f"MODEL.EXTRA.NUM_DECONV_KERNELS entries must be 2, 3 or 4, got {kernel}")
    return table[kernel]


def init_like_reference(modules, std: float = 0.001) -> None:
    """The reference's init: (transposed) convs N(0, std) with bias 0, BatchNorm weight 1 bias 0."""
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class PoseResNet(nn.Module):
    """ResNet backbone + deconv head.

    Input images [N, 3, H, W]; output heatmaps [N, num_joints, H / 32 * 2**num_deconv,
    W / 32 * 2**num_deconv] (the default three deconvs give stride 4: 256x192 -> 64x48).
    """

    head_modules = ("deconv_layers", "final_layer")  # randomly initialised, never from ImageNet

    def __init__(self, depth: int, num_joints: int,
                 deconv_filters: Sequence[int] = (256, 256, 256),
                 deconv_kernels: Sequence[int] = (4, 4, 4), deconv_with_bias: bool = False,
                 final_conv_kernel: int = 1, style: str = "pytorch", groups: int = 1,
                 width_per_group: int = 64, base_width: int = 64) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ConfigError(f"MODEL.EXTRA.NUM_LAYERS must be one of {sorted(RESNET_SPECS)}, "
                              f"got {depth}")
        if len(deconv_filters) != len(deconv_kernels):
            raise ConfigError("NUM_DECONV_FILTERS and NUM_DECONV_KERNELS must have one entry per "
                              f"deconv layer, got {list(deconv_filters)} and "
                              f"{list(deconv_kernels)}")
        if final_conv_kernel not in (1, 3):
            raise ConfigError(f"MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, "
                              f"got {final_conv_kernel}")
        if base_width < 1:
            raise ConfigError(f"MODEL.EXTRA.BASE_WIDTH must be a positive channel count, "
                              f"got {base_width}")
        kind, blocks = RESNET_SPECS[depth]
        block: Block = BasicBlock if kind == "basic" else Bottleneck
        kw = dict(style=style, groups=groups, width_per_group=width_per_group)
        self.depth = depth

        # base_width 64 is the torchvision/ImageNet network; smaller values give a thinner net of
        # the same shape (for CPU-sized runs; ImageNet files then no longer fit).
        w = int(base_width)
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = w
        for i, (planes, n, stride) in enumerate(zip((w, 2 * w, 4 * w, 8 * w), blocks, (1, 2, 2, 2))):
            layer, channels = make_layer(block, channels, planes, n, stride, **kw)
            self.add_module(f"layer{i + 1}", layer)

        self.deconv_layers = self._make_deconv(channels, deconv_filters, deconv_kernels,
                                               deconv_with_bias)
        head_in = deconv_filters[-1] if len(deconv_filters) else channels
        self.final_layer = nn.Conv2d(head_in, num_joints, final_conv_kernel, stride=1,
                                     padding=1 if final_conv_kernel == 3 else 0)

    @staticmethod
    def _make_deconv(in_ch: int, filters: Sequence[int], kernels: Sequence[int],
                     bias: bool) -> nn.Sequential:
        layers: List[nn.Module] = []
        for out_ch, k in zip(filters, kernels):
            pad, out_pad = deconv_padding(k)
            layers += [nn.ConvTranspose2d(in_ch, out_ch, k, stride=2, padding=pad,
                                          output_padding=out_pad, bias=bias),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, J, H/4, W/4] (with the default head)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_layer(self.deconv_layers(x))

    def reference_init(self, std: float = 0.001) -> None:
        """Initialisation of the reference before loading ImageNet weights: deconvs and final conv N(0, std), bias 0; head
        BN weight 1, bias 0. The backbone keeps whatever it has (ImageNet or PyTorch default)."""
        init_like_reference(list(self.deconv_layers.modules()) + [self.final_layer], std)

    def imagenet_only_key(self, key: str) -> bool:
        """True for ImageNet-file tensors that have no counterpart here (the classifier)."""
        return key.split(".", 1)[0] == "fc"


# ----------------------------------------------------------------------------- registration
def _check_extra(extra) -> Optional[str]:
    """The first problem of a ResNet MODEL.EXTRA, or None."""
    if extra.NUM_LAYERS not in RESNET_SPECS:
        return f"MODEL.EXTRA.NUM_LAYERS is {extra.NUM_LAYERS}; choose one of {tuple(RESNET_SPECS)}"
    n = extra.NUM_DECONV_LAYERS
    if len(extra.NUM_DECONV_FILTERS) != n or len(extra.NUM_DECONV_KERNELS) != n:
        return (f"MODEL.EXTRA.NUM_DECONV_FILTERS {list(extra.NUM_DECONV_FILTERS)} and "
                f"NUM_DECONV_KERNELS {list(extra.NUM_DECONV_KERNELS)} need NUM_DECONV_LAYERS = "
                f"{n} entries each")
    bad = [k for k in extra.NUM_DECONV_KERNELS if k not in (2, 3, 4)]
    if bad:
        return f"MODEL.EXTRA.NUM_DECONV_KERNELS has {bad}; each kernel must be 2, 3 or 4"
    return None


@register_backbone(
    "resnet", title="ResNet", template=resnet_extra, marker="NUM_LAYERS", check=_check_extra,
    # the backbone downsamples by 32 and each deconv upsamples by 2
    stride=lambda extra: 32 // 2 ** extra.NUM_DECONV_LAYERS,
    run_name=lambda extra: (str(extra.NUM_LAYERS),
                            "".join(f"d{f}" for f in extra.NUM_DECONV_FILTERS)))
def build_pose_resnet(cfg) -> PoseResNet:
    """PoseResNet of MODEL.NUM_JOINTS, MODEL.EXTRA (depth, deconv head) and MODEL.STYLE /
    GROUPS / WIDTH_PER_GROUP."""
    depth = int(extra_value(cfg, "NUM_LAYERS"))
    extra_value(cfg, "NUM_DECONV_LAYERS")
    filters = list(extra_value(cfg, "NUM_DECONV_FILTERS"))
    kernels = list(extra_value(cfg, "NUM_DECONV_KERNELS"))
    problem = _check_extra(cfg.MODEL.EXTRA)  # the config check again: configs built in code skip it
    if problem:
        raise ConfigError(problem)
    return PoseResNet(
        depth=depth, num_joints=int(cfg.MODEL.NUM_JOINTS),
        deconv_filters=filters, deconv_kernels=kernels,
        deconv_with_bias=bool(extra_value(cfg, "DECONV_WITH_BIAS")),
        final_conv_kernel=int(extra_value(cfg, "FINAL_CONV_KERNEL")),
        style=cfg.MODEL.get("STYLE", "pytorch"), groups=int(cfg.MODEL.get("GROUPS", 1)),
        width_per_group=int(cfg.MODEL.get("WIDTH_PER_GROUP", 64)),
        base_width=int(cfg.MODEL.EXTRA.get("BASE_WIDTH", 64)))

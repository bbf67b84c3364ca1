"""Pose nets: shapes, parameter counts, reference key layouts, checkpoint and ImageNet loading."""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from yacs.config import CfgNode as CN

from semipose.models.build import build_net, init_nets, init_weights
from semipose.models.weights import load_checkpoint, nets_state_dict, to_reference_state_dict

KEY_DIR = Path(__file__).parent / "data" / "state_dict_keys"


# ---------------------------------------------------------------- config helpers
def resnet_cfg(name="pose_cons", depth=18, joints=24, style="pytorch", groups=1, wpg=64,
               filters=(256, 256, 256), kernels=(4, 4, 4), final_kernel=1) -> CN:
    c = CN()
    c.MODEL = CN()
    c.MODEL.NAME, c.MODEL.BACKBONE, c.MODEL.NUM_JOINTS = name, "resnet", joints
    c.MODEL.STYLE, c.MODEL.GROUPS, c.MODEL.WIDTH_PER_GROUP, c.MODEL.PRM = style, groups, wpg, False
    c.MODEL.EXTRA = CN()
    e = c.MODEL.EXTRA
    e.NUM_LAYERS, e.DECONV_WITH_BIAS, e.NUM_DECONV_LAYERS = depth, False, len(filters)
    e.NUM_DECONV_FILTERS, e.NUM_DECONV_KERNELS = list(filters), list(kernels)
    e.FINAL_CONV_KERNEL = final_kernel
    return c


def hrnet_cfg(name="pose_dual", width=48, modules=(1, 4, 3), joints=24, final_kernel=1) -> CN:
    c = CN()
    c.MODEL = CN()
    c.MODEL.NAME, c.MODEL.BACKBONE, c.MODEL.NUM_JOINTS, c.MODEL.PRM = name, "hrnet", joints, False
    c.MODEL.EXTRA = CN()
    c.MODEL.EXTRA.FINAL_CONV_KERNEL = final_kernel
    for s, m in zip((2, 3, 4), modules):
        st = CN()
        st.NUM_MODULES, st.NUM_BRANCHES, st.NUM_BLOCKS = m, s, [4] * s
        st.NUM_CHANNELS = [width * 2 ** i for i in range(s)]
        st.BLOCK, st.FUSE_METHOD = "BASIC", "SUM"
        c.MODEL.EXTRA[f"STAGE{s}"] = st
    return c


# Each reference key file: (config, net names of the method, model name, detected layout).
LAYOUTS = {
    "pose_cons_r18": (lambda: resnet_cfg("pose_cons", 18), ["net1"], "pose_cons", "pose_cons"),
    "pose_dual_r18": (lambda: resnet_cfg("pose_dual", 18), ["net1", "net2"], "pose_dual",
                      "pose_dual"),
    "pose_dual_r50": (lambda: resnet_cfg("pose_dual", 50), ["net1", "net2"], "pose_dual",
                      "pose_dual"),
    "pose_resnet_r50": (lambda: resnet_cfg("pose_resnet", 50), ["net1"], "pose_resnet", "single"),
    "pose_dual_hrnet_w48": (lambda: hrnet_cfg("pose_dual", 48), ["net1", "net2"], "pose_dual",
                            "pose_dual"),
}


def read_keys(stem: str) -> "OrderedDict[str, tuple]":
    out = OrderedDict()
    for line in (KEY_DIR / f"{stem}.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        out[name] = tuple(int(d) for d in re.findall(r"\d+", shape))
    return out


def fake_state(keys) -> "OrderedDict[str, torch.Tensor]":
    """Tensor i holds the constant i + 1 (expanded views: no memory even for HRNet-W48)."""
    out = OrderedDict()
    for i, (k, shape) in enumerate(keys.items()):
        dtype = torch.long if k.endswith("num_batches_tracked") else torch.float32
        out[k] = torch.tensor(i + 1, dtype=dtype).expand(shape)
    return out


def nets_for(stem: str):
    make_cfg, names = LAYOUTS[stem][:2]
    cfg = make_cfg()
    return {n: build_net(cfg) for n in names}


def expected_target(key: str):
    """Reference key -> (net, net-local key), written out independently of the loader."""
    net, local = ("net1", key)
    for prefix, name in (("resnet2.", "net2"), ("resnet.", "net1")):
        if key.startswith(prefix):
            net, local = name, key[len(prefix):]
            break
    return net, local.replace("final_layer_1.", "final_layer.")


# ---------------------------------------------------------------- shapes and counts
def test_resnet18_output_shape():
    net = build_net(resnet_cfg("pose_cons", 18)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 256, 192))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 24, 64, 48)


@pytest.mark.parametrize("final_kernel", [1, 3])
def test_small_hrnet_output_shape(final_kernel):
    net = build_net(hrnet_cfg("pose_hrnet", width=8, modules=(1, 1, 2), joints=17,
                              final_kernel=final_kernel)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 128, 96))  # HRNet needs sides divisible by 32
    assert out.shape == (2, 17, 32, 24)


@pytest.mark.parametrize("kernels,final", [((4, 4, 4), 1), ((3, 2, 4), 3)])
def test_deconv_kernel_padding_rule_keeps_stride_4(kernels, final):
    net = build_net(resnet_cfg("pose_resnet", 18, joints=16, kernels=kernels, final_kernel=final))
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 16, 16, 16)


# BEHAVIOR 4.4 counts are trainable parameters (BN running stats / counters excluded).
@pytest.mark.parametrize("make_cfg,n_nets,expected", [
    (lambda: resnet_cfg("pose_cons", 18), 1, 15_378_520),
    (lambda: resnet_cfg("pose_resnet", 50), 1, 34_001_496),
    (lambda: resnet_cfg("pose_dual", 18), 2, 30_757_040),
    (lambda: resnet_cfg("pose_dual", 50), 2, 68_002_992),
    (lambda: hrnet_cfg("pose_dual", 48), 2, 127_192_176),
])
def test_parameter_counts_match_reference(make_cfg, n_nets, expected):
    with torch.device("meta"):  # shapes only: fast even for HRNet-W48
        net = build_net(make_cfg())
    params = n_nets * sum(p.numel() for p in net.parameters())
    state = n_nets * sum(v.numel() for v in net.state_dict().values())
    assert params == expected
    assert state > expected  # the state-dict total (with buffers) is not what the counts mean


def test_caffe_style_moves_stride_to_first_1x1():
    pt = build_net(resnet_cfg("pose_cons", 50, style="pytorch"))
    cf = build_net(resnet_cfg("pose_cons", 50, style="caffe"))
    assert pt.layer2[0].conv1.stride == (1, 1) and pt.layer2[0].conv2.stride == (2, 2)
    assert cf.layer2[0].conv1.stride == (2, 2) and cf.layer2[0].conv2.stride == (1, 1)
    assert [(k, v.shape) for k, v in pt.state_dict().items()] == \
           [(k, v.shape) for k, v in cf.state_dict().items()]
    with torch.no_grad():
        assert cf.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 24, 16, 16)
    # BasicBlock has no 1x1: caffe style is the same network
    assert build_net(resnet_cfg("pose_cons", 18, style="caffe")).layer2[0].conv1.stride == (2, 2)


def test_resnext_groups():
    with torch.device("meta"):
        net = build_net(resnet_cfg("pose_resnet", 50, groups=32, wpg=4))
    assert net.layer1[0].conv2.groups == 32 and net.layer1[0].conv2.out_channels == 128
    assert net.layer4[0].conv3.out_channels == 2048


def test_build_net_errors():
    bad = resnet_cfg()
    bad.MODEL.NAME = "pose_unknown"
    with pytest.raises(ValueError, match="pose_unknown"):
        build_net(bad)
    bad = resnet_cfg()
    del bad.MODEL.EXTRA["NUM_LAYERS"]
    with pytest.raises(KeyError, match="MODEL.EXTRA.NUM_LAYERS"):
        build_net(bad)
    bad = resnet_cfg()
    bad.MODEL.EXTRA.NUM_DECONV_LAYERS = 2
    with pytest.raises(ValueError, match="need NUM_DECONV_LAYERS = 2 entries each"):
        build_net(bad)
    bad = resnet_cfg(depth=42)
    with pytest.raises(ValueError, match="42"):
        build_net(bad)
    # BACKBONE only matters for pose_cons / pose_dual
    cfg = resnet_cfg("pose_resnet", 18)
    cfg.MODEL.BACKBONE = "hrnet"
    assert hasattr(build_net(cfg), "deconv_layers")


# ---------------------------------------------------------------- reference checkpoints
@pytest.mark.parametrize("stem", sorted(LAYOUTS))
def test_reference_checkpoint_loads_strictly(stem):
    keys = read_keys(stem)
    nets = nets_for(stem)
    model_name, layout = LAYOUTS[stem][2:]
    assert load_checkpoint(fake_state(keys), nets) == layout
    owned = {n: net.state_dict() for n, net in nets.items()}
    filled = set()
    for i, key in enumerate(keys):
        net, local = expected_target(key)
        t = owned[net][local]
        assert t.reshape(-1)[0].item() == i + 1 and t.min() == t.max(), key
        filled.add((net, local))
    assert filled == {(n, k) for n, sd in owned.items() for k in sd}
    # writing back gives exactly the reference key list, order and values
    ref = to_reference_state_dict(nets, model_name)
    assert list(ref) == list(keys)
    assert all(tuple(ref[k].shape) == keys[k] and ref[k].reshape(-1)[0].item() == i + 1
               for i, k in enumerate(keys))


@pytest.mark.parametrize("stem", ["pose_cons_r18", "pose_dual_r18"])
def test_missing_or_renamed_key_is_named(stem):
    state = fake_state(read_keys(stem))
    victim = next(k for k in state if k.endswith("layer2.0.conv2.weight"))
    dropped = OrderedDict((k, v) for k, v in state.items() if k != victim)
    with pytest.raises(ValueError, match=re.escape(expected_target(victim)[1])) as err:
        load_checkpoint(dropped, nets_for(stem))
    assert "missing 1 " in str(err.value) and "unexpected 0 " in str(err.value)
    renamed = OrderedDict((k.replace("conv", "kon") if k == victim else k, v)
                          for k, v in state.items())
    with pytest.raises(ValueError) as err:
        load_checkpoint(renamed, nets_for(stem))
    msg = str(err.value)
    assert victim.replace("conv", "kon") in msg and expected_target(victim)[1] in msg


def test_shape_mismatch_names_tensor_and_shapes(tmp_path):
    keys = read_keys("pose_cons_r18")
    keys["resnet.final_layer.weight"] = (17, 256, 1, 1)
    path = tmp_path / "cons17.pth"
    torch.save({k: v.clone() for k, v in fake_state(keys).items()}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(str(path), nets_for("pose_cons_r18"))
    msg = str(err.value)
    assert "final_layer.weight" in msg and "(17, 256, 1, 1)" in msg and "(24, 256, 1, 1)" in msg
    assert str(path) in msg


def test_own_checkpoint_round_trip_with_wrappers(tmp_path):
    src = nets_for("pose_dual_r18")
    for net in src.values():
        net.reference_init()
        with torch.no_grad():
            for v in net.state_dict().values():
                v.copy_(torch.rand(v.shape) * 10) if v.is_floating_point() else v.fill_(7)
    state = nets_state_dict(src)
    assert list(state)[0] == "net1.conv1.weight" and list(state)[-1] == "net2.final_layer.bias"
    wrapped = {"epoch": 3, "state_dict": OrderedDict(("module." + k, v) for k, v in state.items())}
    path = tmp_path / "ckpt.pth.tar"
    torch.save(wrapped, path)
    dst = torch.nn.ModuleDict(nets_for("pose_dual_r18"))  # what methods hold
    assert load_checkpoint(str(path), dst) == "semipose"
    for k, v in nets_state_dict(dst).items():
        assert torch.equal(v, state[k]), k
    # the reference layout round trips too
    dst2 = nets_for("pose_dual_r18")
    assert load_checkpoint(to_reference_state_dict(src, "pose_dual"), dst2) == "pose_dual"
    assert all(torch.equal(v, state[k]) for k, v in nets_state_dict(dst2).items())


def test_single_net_checkpoint_into_two_nets():
    state = fake_state(read_keys("pose_cons_r18"))
    with pytest.raises(ValueError, match="allow_single=True"):
        load_checkpoint(state, nets_for("pose_dual_r18"))
    nets = nets_for("pose_dual_r18")
    before = nets["net2"].conv1.weight.clone()
    load_checkpoint(state, nets, allow_single=True)
    assert nets["net1"].conv1.weight.min() == 1 and torch.equal(nets["net2"].conv1.weight, before)
    with pytest.raises(ValueError, match="two nets"):  # and the other way round
        load_checkpoint(fake_state(read_keys("pose_dual_r18")), nets_for("pose_cons_r18"))


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(str(tmp_path / "nope.pth"), nets_for("pose_cons_r18"))


# ---------------------------------------------------------------- ImageNet initialisation
@pytest.fixture(scope="module")
def tv_r18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def assert_head_initialised(net):
    for conv in (net.deconv_layers[0], net.deconv_layers[3], net.final_layer):
        assert abs(conv.weight.std().item() - 0.001) < 1e-4
    assert torch.all(net.final_layer.bias == 0)
    for bn in (net.deconv_layers[1], net.deconv_layers[4], net.deconv_layers[7]):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("drop_counters", [False, True])  # old torchvision files lack them
def test_imagenet_file_loads_backbone_and_inits_head(tmp_path, tv_r18, drop_counters):
    state = {k: v for k, v in tv_r18.items()
             if not (drop_counters and k.endswith("num_batches_tracked"))}
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(state, path)
    net = build_net(resnet_cfg("pose_cons", 18))
    loaded = init_weights(net, str(path))
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    own = net.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in loaded)
    assert_head_initialised(net)


def test_imagenet_file_errors(tmp_path, tv_r18):
    net = build_net(resnet_cfg("pose_cons", 18))
    missing = tmp_path / "none.pth"
    with pytest.raises(FileNotFoundError) as err:
        init_weights(net, str(missing))
    assert str(missing) in str(err.value) and "models/pytorch/imagenet/" in str(err.value)

    def save(state, name):
        torch.save(state, tmp_path / name)
        return str(tmp_path / name)

    no_bn = {k: v for k, v in tv_r18.items() if k != "layer3.1.bn2.running_var"}
    with pytest.raises(ValueError, match=r"missing 1 \[layer3.1.bn2.running_var\]"):
        init_weights(net, save(no_bn, "a.pth"))
    extra = dict(tv_r18, **{"layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected 1 \[layer5.0.conv1.weight\]"):
        init_weights(net, save(extra, "b.pth"))
    wrong = dict(tv_r18, **{"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(ValueError, match=r"layer1.0.conv1.weight.*\(64, 64, 1, 1\).*\(64, 64, 3, 3\)"):
        init_weights(net, save(wrong, "c.pth"))
    with pytest.raises(ValueError, match="missing"):  # an R18 file for an R50 net
        init_weights(build_net(resnet_cfg("pose_cons", 50)), save(tv_r18, "d.pth"))


def test_empty_path_is_random_init():
    net = build_net(resnet_cfg("pose_cons", 18))
    assert init_weights(net, "") == []
    assert_head_initialised(net)


def test_init_nets_plain_and_dual_files(tmp_path, tv_r18):
    torch.manual_seed(1)
    other = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(tv_r18, tmp_path / "plain.pth")
    nets = [build_net(resnet_cfg("pose_dual", 18)) for _ in range(2)]
    init_nets(nets, str(tmp_path / "plain.pth"))
    assert torch.equal(nets[0].layer2[0].conv1.weight, tv_r18["layer2.0.conv1.weight"])
    assert torch.equal(nets[1].layer2[0].conv1.weight, tv_r18["layer2.0.conv1.weight"])
    assert not torch.equal(nets[0].final_layer.weight, nets[1].final_layer.weight)

    dual = OrderedDict([("resnet." + k, v) for k, v in tv_r18.items()] +
                       [("resnet2." + k, v) for k, v in other.items()])
    torch.save(dual, tmp_path / "dual.pth")
    nets = [build_net(resnet_cfg("pose_dual", 18)) for _ in range(2)]
    loaded = init_nets(nets, str(tmp_path / "dual.pth"))
    assert len(loaded[0]) == len(loaded[1]) == len([k for k in other if not k.startswith("fc.")])
    assert torch.equal(nets[0].layer4[1].bn2.running_mean, tv_r18["layer4.1.bn2.running_mean"])
    assert torch.equal(nets[1].layer4[1].bn2.running_mean, other["layer4.1.bn2.running_mean"])
    for net in nets:
        assert_head_initialised(net)


def test_hrnet_init_loads_only_pretrained_layers(tmp_path):
    cfg = hrnet_cfg("pose_dual", width=8, modules=(1, 1, 2))
    source = build_net(cfg).state_dict()
    # the ImageNet HRNet also has classification heads and multi-scale outputs of stage 4
    extra = {"incre_modules.0.0.conv1.weight": torch.zeros(3), "classifier.weight": torch.zeros(2),
             "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
             "stage4.1.fuse_layers.1.0.0.0.weight": torch.zeros(8, 8, 3, 3)}
    torch.save(dict(source, **extra), tmp_path / "hrnet_tiny.pth")
    net = build_net(cfg)
    layers = ["conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2"]
    loaded = init_weights(net, str(tmp_path / "hrnet_tiny.pth"), layers)
    assert loaded and {k.split(".")[0] for k in loaded} == set(layers)
    assert torch.equal(net.stage2[0].branches[1][0].conv1.weight,
                       source["stage2.0.branches.1.0.conv1.weight"])
    w = torch.cat([net.stage4[0].branches[0][0].conv1.weight.reshape(-1),
                   net.final_layer.weight.reshape(-1), net.transition3[3][0][0].weight.reshape(-1)])
    assert abs(w.std().item() - 0.001) < 1e-4 and torch.all(net.stage3[0].branches[0][0].bn1.weight == 1)
    init_weights(build_net(cfg), str(tmp_path / "hrnet_tiny.pth"))  # '*' takes everything
    with pytest.raises(ValueError, match="PRETRAINED_LAYERS is empty"):
        init_weights(net, str(tmp_path / "hrnet_tiny.pth"), [])

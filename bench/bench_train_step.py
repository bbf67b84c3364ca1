"""Time one training step (forward + backward + Adam) on synthetic tensors.

    python bench/bench_train_step.py --cfg experiments/.../256x192_COCO1K_PoseDual.yaml --batch 32
    python bench/bench_train_step.py --depth 18 --image-size 192 256 --batch 8 --device cpu
    python bench/bench_train_step.py --method posedual --batch 8 --amp bf16 --channels-last --compile

``--method net`` (default) times a single pose net with a plain weighted MSE. ``--method
supervised|posecons|posedual`` times the full method ``training_step`` as the trainer runs it
(autocast, the method's teacher / hard view / student passes, GradScaler, Adam) on a synthetic
paired batch, in items per second (an item is a labeled + unlabeled pair for the semi-supervised
methods). With any of --amp / --channels-last / --compile, a plain fp32 baseline of the same step
is measured first in the same process and the speed ratio is printed.

Prints the median step time, items/s and peak memory (CUDA: max_memory_allocated; CPU: growth of
the process's peak resident set size during the run, from getrusage).
"""
from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
from yacs.config import CfgNode as CN

from semipose.engine.optim import ADAM_KERNELS, adam_impl
from semipose.models.build import build_net

_METHOD_MODEL = {"posecons": "pose_cons", "posedual": "pose_dual"}


def fallback_cfg(depth: int, num_joints: int, image_size=(192, 256), method: str = "net") -> CN:
    """A config for a ResNet SimpleBaseline (and its method) when no YAML is given."""
    from semipose.config import get_defaults
    cfg = get_defaults()
    cfg.MODEL.NAME = _METHOD_MODEL.get(method, "pose_resnet")
    cfg.MODEL.NUM_JOINTS = num_joints
    cfg.MODEL.IMAGE_SIZE = tuple(image_size)
    e = cfg.MODEL.EXTRA
    e.NUM_LAYERS, e.DECONV_WITH_BIAS, e.NUM_DECONV_LAYERS = depth, False, 3
    e.NUM_DECONV_FILTERS, e.NUM_DECONV_KERNELS, e.FINAL_CONV_KERNEL = [256] * 3, [4] * 3, 1
    e.HEATMAP_SIZE = (image_size[0] // 4, image_size[1] // 4)
    return cfg


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="", help="experiment YAML (MODEL.*, method keys) to use")
    p.add_argument("--method", choices=["net", "supervised", "posecons", "posedual"],
                   default="net", help="'net': one net + MSE; else the method's training_step")
    p.add_argument("--depth", type=int, default=18, help="ResNet depth when no --cfg")
    p.add_argument("--image-size", type=int, nargs=2, default=[192, 256], metavar=("W", "H"),
                   help="input size when no --cfg")
    p.add_argument("--joints", type=int, default=24, help="heatmap channels when no --cfg")
    p.add_argument("--mask-joints", type=int, default=None,
                   help="MASK_JOINT_NUM (Joint Cutout draws) for posecons/posedual")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile happens here)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", choices=["", "bf16", "fp16"], default="")
    p.add_argument("--compile", nargs="?", const="default", default="",
                   choices=["default", "reduce-overhead", "max-autotune"],
                   help="torch.compile with this mode (TRAIN.COMPILE; bare flag: "
                        "'default'; 'reduce-overhead' captures CUDA graphs)")
    p.add_argument("--compile-scope", choices=["nets", "step"], default="nets",
                   help="TRAIN.COMPILE_SCOPE: compile each net, or the whole method step "
                        "(hard view and losses included) as one graph")
    p.add_argument("--adam", default="auto", choices=["auto", "for_loop", "foreach", "fused"],
                   help="Adam kernels (TRAIN.ADAM_IMPL; auto: fused on CUDA, as the trainer)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the fp32 baseline measured before a variant")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    return p.parse_args()


def load_model_cfg(args: argparse.Namespace) -> Tuple[CN, Tuple[int, int]]:
    if not args.cfg:
        cfg = fallback_cfg(args.depth, args.joints, args.image_size, args.method)
    else:
        from semipose.config import load_cfg  # only needed with a YAML
        cfg = load_cfg(args.cfg).clone()
        cfg.defrost()
        if args.method in _METHOD_MODEL:
            cfg.MODEL.NAME = _METHOD_MODEL[args.method]
        elif args.method == "supervised" and cfg.MODEL.NAME in _METHOD_MODEL.values():
            cfg.MODEL.NAME = "pose_hrnet" if cfg.MODEL.BACKBONE == "hrnet" else "pose_resnet"
    if args.mask_joints is not None:
        cfg.SSL.HARD.JOINT_CUTOUT = args.mask_joints
    return cfg, tuple(int(v) for v in cfg.MODEL.IMAGE_SIZE)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(cfg: CN, n: int, hm_shape, gen: torch.Generator) -> Dict[str, dict]:
    """Paired batch: labeled {image, target, target_weight}, unlabeled {image, target_weight}."""
    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    joints, hh, hw = hm_shape

    def sample(with_target: bool) -> dict:
        s = {"image": torch.randn(n, 3, h, w, generator=gen),
             "target_weight": (torch.rand(n, joints, 1, generator=gen) > 0.3).float()}
        if with_target:
            s["target"] = torch.rand(n, joints, hh, hw, generator=gen)
        return s
    batch = {"labeled": sample(True), "unlabeled": sample(False)}
    if cfg.SSL.HARD.RAND_AUG:
        batch["unlabeled_aug"] = sample(False)
    return batch


def make_step(args: argparse.Namespace, cfg: CN, device: torch.device, amp: str,
              channels_last: bool, compile_: str) -> Tuple[Callable[[], float], str]:
    """A closure running one training step; returns it and a description of the model."""
    from semipose.engine.device import compile_method, move_batch
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    if args.method == "net":
        net = build_net(cfg).to(device).train().to(memory_format=fmt)
        if compile_:
            net.compile(mode=compile_)
        module, params = net, net.parameters()
        name = type(net).__name__ + (f"-{net.depth}" if hasattr(net, "depth") else "")
    else:
        from semipose.methods import build_method, num_nets
        nets = [build_net(cfg) for _ in range(num_nets(cfg))]
        module = build_method(cfg, nets, seed=0).to(device).train().to(memory_format=fmt)
        compile_method(module, compile_, args.compile_scope)
        params = module.parameters()
        name = f"{type(module).__name__}({len(nets)} x {type(nets[0]).__name__}" + \
            (f"-{nets[0].depth})" if hasattr(nets[0], "depth") else ")")
    opt = torch.optim.Adam(params, lr=1e-3, **ADAM_KERNELS[adam_impl(args.adam, device)])
    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    probe = build_net(cfg).eval()
    with torch.no_grad():
        hm_shape = tuple(probe(torch.zeros(1, 3, h, w)).shape[1:])
    batch = move_batch(synthetic_batch(cfg, args.batch, hm_shape, gen), device, channels_last)

    def step() -> float:
        if compile_ == "reduce-overhead":  # as the trainer: graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            if args.method == "net":
                lab = batch["labeled"]
                out = module(lab["image"])
                # JointsMSE with target weights: 0.5 * mean((w * (out - target))^2)
                loss = 0.5 * ((lab["target_weight"][..., None] * (out.float() - lab["target"]))
                              ** 2).mean()
            else:
                loss = module(batch).loss  # the StepOutput's total loss
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return float(loss.detach())
    return step, f"{name}, heatmaps {hm_shape}"


def run(args: argparse.Namespace, cfg: CN, device: torch.device, amp: str, channels_last: bool,
        compile_: str) -> Dict[str, float]:
    scope = f" ({args.compile_scope})" if compile_ and args.method != "net" else ""
    label = (f"amp={amp or 'off'}, channels_last={channels_last}, "
             f"compile={compile_ or 'off'}{scope}, adam={adam_impl(args.adam, device)}")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, desc = make_step(args, cfg, device, amp, channels_last, compile_)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warm = time.perf_counter() - t0
    times: List[float] = []
    loss = float("nan")
    for _ in range(args.steps):
        sync(device)
        t = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (CUDA max allocated)"
    else:
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = f"+{(rss1 - rss0) / 1024:.0f} MiB peak RSS (total {rss1 / 1024:.0f} MiB)"
    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    unit = "pairs/s" if args.method in _METHOD_MODEL else "samples/s"
    print(f"[{label}] {args.method}: {desc}; {w}x{h} batch {args.batch} on {device} "
          f"({torch.get_num_threads()} threads)")
    print(f"  median step {med * 1000:.1f} ms (min {min(times) * 1000:.1f}, max "
          f"{max(times) * 1000:.1f}, {len(times)} steps; warm-up {warm:.1f} s for {args.warmup}), "
          f"{args.batch / med:.2f} {unit}, peak memory {peak}; last loss {loss:.3e}", flush=True)
    return {"median_s": med, "rate": args.batch / med}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg, _ = load_model_cfg(args)
    variant = bool(args.amp or args.channels_last or args.compile)
    base = None
    if variant and not args.no_baseline:
        base = run(args, cfg, device, "", False, "")
    res = run(args, cfg, device, args.amp, args.channels_last, args.compile)
    if base is not None:
        print(f"speed vs fp32 baseline: {res['rate'] / base['rate']:.2f}x "
              f"({res['median_s'] * 1000:.0f} ms vs {base['median_s'] * 1000:.0f} ms per step)")


if __name__ == "__main__":
    main()

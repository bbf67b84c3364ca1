"""Time one training step (forward + backward + Adam) of a single pose net on synthetic tensors.

    python bench/bench_train_step.py --cfg experiments/.../256x192_COCO1K_PoseDual.yaml --batch 32
    python bench/bench_train_step.py --depth 18 --image-size 192 256 --batch 8 --device cpu

Prints the median step time, samples/s and peak memory (CUDA: max_memory_allocated; CPU: growth
of the process's peak resident set size during the run, from getrusage).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from yacs.config import CfgNode as CN

from semipose.models.build import build_net


def fallback_cfg(depth: int, num_joints: int) -> CN:
    """Minimal MODEL section for a ResNet SimpleBaseline when no YAML is given."""
    cfg = CN()
    cfg.MODEL = CN()
    cfg.MODEL.NAME, cfg.MODEL.NUM_JOINTS = "pose_resnet", num_joints
    cfg.MODEL.EXTRA = CN()
    e = cfg.MODEL.EXTRA
    e.NUM_LAYERS, e.DECONV_WITH_BIAS, e.NUM_DECONV_LAYERS = depth, False, 3
    e.NUM_DECONV_FILTERS, e.NUM_DECONV_KERNELS, e.FINAL_CONV_KERNEL = [256] * 3, [4] * 3, 1
    return cfg


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default="", help="experiment YAML (MODEL.* and MODEL.IMAGE_SIZE used)")
    p.add_argument("--depth", type=int, default=18, help="ResNet depth when no --cfg")
    p.add_argument("--image-size", type=int, nargs=2, default=[192, 256], metavar=("W", "H"),
                   help="input size when no --cfg")
    p.add_argument("--joints", type=int, default=24, help="heatmap channels when no --cfg")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--amp", choices=["", "bf16", "fp16"], default="")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    return p.parse_args()


def load_model_cfg(args: argparse.Namespace):
    if not args.cfg:
        return fallback_cfg(args.depth, args.joints), tuple(args.image_size)
    from semipose.config import load_cfg  # only needed with a YAML

    cfg = load_cfg(args.cfg)
    return cfg, tuple(int(v) for v in cfg.MODEL.IMAGE_SIZE)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg, (w, h) = load_model_cfg(args)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    net = build_net(cfg).to(device).train()
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, h, w, generator=gen).to(device, memory_format=fmt)
    with torch.no_grad():
        out_shape = net(images[:1]).shape
    target = torch.rand(args.batch, *out_shape[1:], generator=gen).to(device)
    weight = (torch.rand(args.batch, out_shape[1], 1, 1, generator=gen) > 0.3).float().to(device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    times = []
    for step in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = net(images)
        # JointsMSE with target weights: 0.5 * mean((w * (out - target))^2)
        loss = 0.5 * ((weight * (out.float() - target)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sync(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)

    med = statistics.median(times)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (CUDA max allocated)"
    else:
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = f"{(rss1 - rss0) / 1024:.0f} MiB (peak RSS growth; peak RSS {rss1 / 1024:.0f} MiB)"
    name = type(net).__name__ + (f"-{net.depth}" if hasattr(net, "depth") else "")
    print(f"{name} {w}x{h} batch {args.batch} on {device} ({torch.get_num_threads()} threads, "
          f"amp={args.amp or 'off'}, channels_last={args.channels_last}); heatmaps {tuple(out_shape[1:])}")
    print(f"median step {med * 1000:.1f} ms (min {min(times) * 1000:.1f}, max "
          f"{max(times) * 1000:.1f}, {len(times)} steps), {args.batch / med:.1f} samples/s, "
          f"peak memory {peak}; final loss {loss.item():.3e}")


if __name__ == "__main__":
    main()

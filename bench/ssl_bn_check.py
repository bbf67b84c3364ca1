"""Does BatchNorm in the teacher/hard-view passes hurt a semi-supervised run's validation AP?

    python bench/ssl_bn_check.py RUN_FOLDER [RUN_FOLDER ...] [--batches 60]

A PoseCons/PoseDual net updates its BatchNorm running statistics on three kinds of batches per
step (labeled crops, easy unlabeled crops, hard views with cutout and black warp borders); a
supervised net sees labeled crops only. For each finished run folder (holding config.yaml and
final_state.pth.tar) this scores the final weights twice on the val set: with the running
statistics as trained, and after re-estimating them (cumulative average, weights untouched) on
``--batches`` batches of plain labeled training crops. A large gain would mean the hard-view
passes pollute the statistics; no gain means the weights themselves decide the AP.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
from typing import Dict

import torch

from semipose.config import load_cfg
from semipose.data.build import build_train_dataset, build_val_dataset
from semipose.data.loaders import build_loader
from semipose.engine.validate import run_validation
from semipose.engine.model_setup import build_nets
from semipose.methods import build_method
from semipose.models.weights import load_checkpoint
from semipose.utils.dist import DistInfo


@torch.no_grad()
def recalibrate(method: torch.nn.Module, loader, batches: int) -> None:
    """Re-estimate every BatchNorm's running mean/var on ``batches`` labeled batches."""
    bns = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    method.nets.train()
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        images = batch["labeled"]["image"] if "labeled" in batch else batch["image"]
        for name in method.net_names:
            method.nets[name](images)
    method.nets.eval()


def check(run: str, batches: int) -> Dict[str, Dict[str, float]]:
    cfg = load_cfg(os.path.join(run, "config.yaml"), ["WORKERS", "0"])
    info = DistInfo()
    log = logging.getLogger("bn_check")
    method = build_method(cfg, build_nets(cfg, init=False, log=log))
    load_checkpoint(os.path.join(run, "final_state.pth.tar"), method.nets)
    val_set = build_val_dataset(cfg)
    val_loader = build_loader(val_set, cfg.TEST.BATCH_SIZE, 0, shuffle=False)
    train_loader = build_loader(build_train_dataset(cfg), cfg.TRAIN.BATCH_SIZE, 0, shuffle=True,
                                seed=cfg.SEED)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("as trained", "recalibrated"):
            if label == "recalibrated":
                recalibrate(method, train_loader, batches)
            results, _ = run_validation(cfg, method, val_set, val_loader, info, tmp, "check",
                                        progress=False)
            out[label] = {net: float(r[1]) for net, r in results.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders (config.yaml + final_state.pth.tar)")
    p.add_argument("--batches", type=int, default=60, help="labeled batches for re-estimation")
    a = p.parse_args()
    for run in a.runs:
        res = check(run, a.batches)
        print(f"{run}: " + "; ".join(f"{k}: " + ", ".join(f"{n} {v:.4f}" for n, v in r.items())
                                     for k, r in res.items()), flush=True)


if __name__ == "__main__":
    main()

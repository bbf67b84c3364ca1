"""Validation: predict with every network of a method, then score per dataset (COCO AP, MPII PCKh,
AIC). Sharded across ranks under DDP and gathered on rank 0, where scoring happens."""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from yacs.config import CfgNode

from ..errors import DataError, MissingFileError
from ..evaluation.predict import merge_results, predict
from ..evaluation.registry import evaluator_for
from ..evaluation.table import format_table, write_table
from ..utils.dist import DistInfo, all_gather_objects, broadcast_buffers
from ..transforms.codec import Codec
from ..utils.io import atomic_write_text
from .debug_images import DebugImages

logger = logging.getLogger("semipose")

Results = Dict[str, Tuple[Mapping[str, float], float]]


def score(cfg: CfgNode, val_set: Any, pred: Dict[str, Any], output_dir: str) -> Results:
    """Score each validation row's predictions with the evaluator of DATASET.TEST_DATASET
    (evaluation/registry.py): name -> (OrderedDict of metrics, main metric)."""
    evaluate = evaluator_for(cfg.DATASET.TEST_DATASET)
    return OrderedDict((net, evaluate(cfg, val_set, net, kpts, pred, output_dir))
                       for net, kpts in pred["preds"].items())


def mean_rows(results: Results, means: Mapping[str, Tuple[str, ...]]) -> Results:
    """Rows averaging scored rows (``Method.metric_means``): row -> members; each metric of a
    mean row is the mean of its members' values of that metric (the metrics all members
    report), its main metric the mean of theirs."""
    out: Results = OrderedDict()
    for row, members in means.items():
        missing = [m for m in members if m not in results]
        if missing:
            raise KeyError(f"validation row {row!r} averages {missing[0]!r}, which was not scored")
        names = [k for k in results[members[0]][0] if all(k in results[m][0] for m in members)]
        metrics = OrderedDict((k, sum(float(results[m][0][k]) for m in members) / len(members))
                              for k in names)
        out[row] = (metrics, sum(float(results[m][1]) for m in members) / len(members))
    return out


def run_validation(cfg: CfgNode, method: torch.nn.Module, val_set: Any, loader: Any,
                   info: DistInfo, output_dir: str, arch_name: str, progress: bool = True,
                   debug: Optional[DebugImages] = None, provenance: str = "",
                   codec: Optional[Codec] = None) -> Tuple[Results, Dict[str, Any]]:
    """Predict on this rank's shard, gather, score on rank 0 (other ranks get an empty dict).

    Returns (results, merged predictions). The method's nets are put in eval mode and restored.
    ``debug`` writes the DEBUG pictures of every PRINT_FREQ-th batch (rank 0 only);
    ``provenance`` (which weights, epoch and settings) heads results.md; results.json holds the
    same numbers: {"provenance", "rows": {row: {"metrics": {name: value}, "main": value}}}.
    ``codec`` decodes the heatmaps (default ``Codec.from_cfg(cfg)``).
    """
    codec = Codec.from_cfg(cfg) if codec is None else codec
    method = getattr(method, "module", method)
    broadcast_buffers(method, info)  # rank 0's BatchNorm statistics, the ones it saves
    modes = [(m, m.training) for m in method.modules()]
    method.eval()
    models, averages = method.eval_spec()  # the method says what is scored
    hook = None
    if debug is not None and debug.enabled and info.is_main:
        hook = lambda i, batch, hm: debug.due(i) and debug.val_batch(i, batch, hm)  # noqa: E731
    try:
        part = predict(models, loader, info.device, codec=codec,
                       flip_pairs=val_set.joint_set.flip_pairs,
                       progress=progress and info.is_main, averages=averages,
                       loss_fn=method.loss, batch_hook=hook)
    finally:
        for m, mode in modes:
            m.train(mode)
    parts = all_gather_objects(part, info)
    if not info.is_main:
        return OrderedDict(), {}
    pred = merge_results(parts)
    if len(pred["index"]) != len(val_set):
        raise DataError(
            f"validation gathered {len(pred['index'])} of {len(val_set)} samples; with "
            f"DATASET.SKIP_BAD_IMAGES an unreadable validation image leaves its persons without a "
            f"prediction: replace or remove those images (see the warnings above)")
    np.save(os.path.join(output_dir, "all_preds.npy"), pred["preds"]["net1"])
    results = score(cfg, val_set, pred, output_dir)
    results.update(mean_rows(results, getattr(method, "metric_means", {})))  # e.g. (AP1 + AP2) / 2
    tables = []
    for net, (metrics, _) in results.items():
        table = format_table(metrics, f"{arch_name} [{net}]")
        logger.info("%s results:\n%s", net, table)
        tables.append(f"### {net}\n\n{table}\n")
    head = f"{provenance}\n\n" if provenance else ""
    write_table(os.path.join(output_dir, "results.md"), head + "\n".join(tables))
    # the same numbers for scripts (e.g. the SSL benchmark): row -> metrics and main metric
    atomic_write_text(json.dumps({"provenance": provenance, "rows": {
        net: {"metrics": {k: float(v) for k, v in metrics.items()}, "main": float(main)}
        for net, (metrics, main) in results.items()}}, indent=1), os.path.join(output_dir,
                                                                              "results.json"))
    return results, pred


def settings_line(cfg: CfgNode, codec: Optional[Codec] = None) -> str:
    """The test settings that change the numbers, for results.md (``codec``: the decode
    settings, default ``Codec.from_cfg(cfg)``)."""
    codec = Codec.from_cfg(cfg) if codec is None else codec
    boxes = ("ground-truth boxes" if cfg.TEST.USE_GT_BBOX else
             f"detection boxes {cfg.TEST.COCO_BBOX_FILE}")
    return (f"{codec.describe()}, {boxes} (DATASET.TEST_DATASET "
            f"{cfg.DATASET.TEST_DATASET}, TEST_SET {cfg.DATASET.TEST_SET})")


def valid_folder(cfg: CfgNode, experiment: str, model_file: str,
                 codec: Optional[Codec] = None) -> str:
    """valid.py's own output folder, named after the checkpoint and the flags that change the
    numbers: <experiment>/valid/<run or parent folder>_<file stem>[_flip][_det][_dark][_noref]
    [_noshift] (``codec``: the decode settings, default ``Codec.from_cfg(cfg)``)."""
    codec = Codec.from_cfg(cfg) if codec is None else codec
    parent = os.path.basename(os.path.dirname(os.path.abspath(model_file)))
    stem = os.path.basename(model_file).split(".")[0]
    tags = [t for t, on in (("flip", codec.flip_test), ("det", not cfg.TEST.USE_GT_BBOX),
                            ("dark", codec.post_process and codec.post_type == "dark"),
                            ("noref", not codec.post_process),
                            ("noshift", codec.flip_test and not codec.shift_heatmap)) if on]
    return os.path.join(experiment, "valid", "_".join([parent, stem] + tags))


def evaluate_checkpoint(cfg: CfgNode, cfg_path: str, info: DistInfo, progress: bool = True,
                        allow_single: bool = False) -> Results:
    """valid.py: load TEST.MODEL_FILE (or the latest run's final_state.pth.tar) and score it.

    Outputs go to their own folder (see ``valid_folder``), never into the training run's files.
    """
    import time

    from ..config import experiment_dir, model_name
    from ..data.build import build_val_dataset
    from ..inference import load_method
    from .data_setup import run_loader
    from .log import setup_logger
    from .runs import find_model_file

    t0 = time.time()
    experiment = experiment_dir(cfg, cfg_path)
    path = find_model_file(cfg, cfg_path)
    if not os.path.isfile(path):
        raise MissingFileError(
            f"model file {path} not found: pass --model-file PATH (or TEST.MODEL_FILE), or train "
            f"{cfg_path} first so that its latest run has {os.path.basename(path)}")
    codec = Codec.from_cfg(cfg)  # decode settings, once for the folder name, results.md, predict
    out_dir = valid_folder(cfg, experiment, path, codec)
    name = os.path.splitext(os.path.basename(cfg_path))[0]
    log = setup_logger(out_dir, name, "valid", info.is_main)
    val_set = build_val_dataset(cfg)
    loader = run_loader(cfg, val_set, info, train=False)
    method, layout = load_method(cfg, path, info.device, allow_single=allow_single)
    log.info("loaded %s (%s layout) into %s", path, layout, model_name(cfg)[0])
    provenance = (f"valid.py: {cfg_path}, weights {os.path.abspath(path)} ({layout} layout); "
                  f"{settings_line(cfg, codec)}")
    results, _ = run_validation(cfg, method, val_set, loader, info, out_dir, model_name(cfg)[1],
                                progress, debug=DebugImages(cfg, out_dir), provenance=provenance,
                                codec=codec)
    if info.is_main:
        summary = ", ".join(f"{net} {m:.4f}" for net, (_, m) in results.items())
        log.info("done in %.0f s: %s; outputs in %s (results.md/.json, results/, all_preds.npy, log)",
                 time.time() - t0, summary, out_dir)
    return results

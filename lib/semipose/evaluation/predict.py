"""Run pose models over a validation loader and decode keypoints in original-image pixels.

One pass over the loader serves every model: each batch goes through all models (optionally with
the flip test), heatmaps come back to the host once, and the codec's ``decode`` maps them through
the inverse crop affine. Box arrays (center, scale, area, score, raw_box) and image ids are gathered
from the batch meta in loader order, together with each sample's dataset ``index`` so that shards
of a distributed evaluation can be merged back into dataset order (:func:`merge_results`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from semipose.transforms.affine import PIXEL_STD
from semipose.evaluation.accuracy import accuracy
from semipose.transforms.codec import Codec

logger = logging.getLogger(__name__)

Model = Callable[[torch.Tensor], torch.Tensor]
BOX_ARRAYS = ("center", "scale", "rotation", "area", "score", "raw_box", "index")


def _to_numpy(x: Any, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _ids(x: Any) -> List[Any]:
    """Image ids from a collated meta field: int tensor (COCO) or list of strings (MPII, AIC)."""
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return list(x)


def forward_heatmaps(model: Model, images: torch.Tensor, codec: Codec,
                     flip_pairs: Optional[Sequence[Sequence[int]]]) -> torch.Tensor:
    """Heatmaps [B, J, h, w] float32; with the codec's flip test, the mean of the plain pass and
    the flipped pass put back in the plain frame (``Codec.merge_flip``)."""
    out = model(images).float()
    if codec.flip_test:
        flipped = model(torch.flip(images, dims=[3])).float()
        out = codec.merge_flip(out, flipped, flip_pairs)
    return out


def predict(models: Mapping[str, Model], loader: Any, device: torch.device | str,
            flip_test: Optional[bool] = None,
            flip_pairs: Optional[Sequence[Sequence[int]]] = None,
            shift_mode: Optional[str] = None, post_process: Optional[bool] = None,
            post_type: Optional[str] = None, progress: bool = True,
            averages: Optional[Mapping[str, Sequence[str]]] = None,
            loss_fn: Optional[Callable[..., torch.Tensor]] = None,
            batch_hook: Optional[Callable[[int, Any, torch.Tensor], None]] = None,
            codec: Optional[Codec] = None) -> Dict[str, Any]:
    """Predict keypoints for every sample of ``loader`` with every model.

    Args:
        models: name -> callable mapping an image batch [B, 3, H, W] to heatmaps [B, J, h, w]
            (nets in eval mode; the caller decides).
        loader: iterable of default-collated sample dicts {"image", "meta", optional "target",
            "target_weight"}; meta holds image_id, center [B, 2], scale [B, 2], rotation [B],
            score [B], raw_box [B, 4], index [B].
        device: where the models run.
        codec: the decode settings (``Codec.from_cfg(cfg)``); default ``Codec()``, the
            reference's (no flip test, 'shift' refinement).
        flip_test, shift_mode, post_process, post_type: replace the codec's setting when given.
            flip_test: also run on horizontally flipped images and average (needs
            ``flip_pairs``, the model joint space's left/right pairs); shift_mode: 'shift'
            (1 px) or 'grid' (0.75 px) for flipped maps; post_type: 'shift' or 'dark'.
        progress: show a tqdm bar.
        averages: extra outputs whose heatmaps are the mean of named models' heatmaps, e.g.
            {"ensemble": ["net1", "net2"]}; costs no extra forward pass.
        loss_fn: optional ``loss_fn(output, target, target_weight)`` for the validation loss of the
            first model (needs targets in the batch).
        batch_hook: optional ``batch_hook(i, batch, heatmaps)`` after each batch ``i`` with the
            first model's heatmaps [B, J, h, w] (e.g. the DEBUG pictures).
    Returns:
        {"preds": {name: float32 [N, J, 3] (x, y, maxval) in image pixels},
         "center" [N, 2], "scale" [N, 2], "rotation" [N], "area" [N] ((s_w*200)*(s_h*200)),
         "score" [N], "raw_box" [N, 4], "index" [N] int64, "image_ids" list[N],
         "loss", "loss_n", "accuracy", "accuracy_n"} -- loss/accuracy of the first model
        (None when the batches carry no targets; accuracy is the heatmap PCK of the log line).
    """
    if shift_mode not in (None, "shift", "grid"):
        raise ValueError(f"shift_mode must be 'shift' or 'grid', got '{shift_mode}'")
    codec = (Codec() if codec is None else codec).with_overrides(
        flip_test=flip_test, post_process=post_process, post_type=post_type,
        shift_heatmap=None if shift_mode is None else shift_mode == "shift")
    if codec.flip_test and flip_pairs is None:
        raise ValueError("flip_test needs flip_pairs (the model joint space's left/right pairs, "
                         "e.g. dataset.flip_pairs)")
    averages = dict(averages or {})
    unknown = [m for members in averages.values() for m in members if m not in models]
    if unknown:
        raise KeyError(f"averages name models {unknown} that are not in {list(models)}")
    for name, m in models.items():
        if isinstance(m, nn.Module) and m.training:
            logger.warning("model '%s' is in training mode during prediction (BatchNorm uses "
                           "batch statistics); call .eval() first", name)
    names = list(models) + list(averages)
    first = next(iter(models))

    preds: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    boxes: Dict[str, List[np.ndarray]] = {k: [] for k in BOX_ARRAYS}
    image_ids: List[Any] = []
    loss_sum = acc_sum = 0.0
    loss_n = acc_n = 0
    total = len(loader) if hasattr(loader, "__len__") else None
    with torch.no_grad():
        for i, batch in enumerate(tqdm(loader, total=total, desc="predict",
                                       disable=not progress, leave=False)):
            meta = batch["meta"]
            images = batch["image"].to(device, non_blocking=True)
            center = _to_numpy(meta["center"], np.float32).reshape(-1, 2)
            scale = _to_numpy(meta["scale"], np.float32).reshape(-1, 2)
            rotation = _to_numpy(meta["rotation"], np.float32).reshape(-1)
            heatmaps = {n: forward_heatmaps(m, images, codec, flip_pairs)
                        for n, m in models.items()}
            for n, members in averages.items():
                heatmaps[n] = sum(heatmaps[m] for m in members) / float(len(members))

            if batch_hook is not None:
                batch_hook(i, batch, heatmaps[first])
            host = {n: heatmaps[n].cpu().numpy() for n in names}  # one device->host copy each
            for n in names:
                coords, maxvals = codec.decode(host[n], center, scale, rotation)
                preds[n].append(np.concatenate([coords, maxvals], axis=2).astype(np.float32))

            target = batch.get("target")
            if isinstance(target, torch.Tensor):
                b = target.shape[0]
                if loss_fn is not None:
                    loss = loss_fn(heatmaps[first], target.to(device),
                                   batch["target_weight"].to(device))
                    loss_sum += float(loss) * b
                    loss_n += b
                _, avg, cnt, _ = accuracy(host[first], target.cpu().numpy())
                acc_sum += float(avg) * int(cnt)
                acc_n += int(cnt)

            boxes["center"].append(center)
            boxes["scale"].append(scale)
            boxes["rotation"].append(rotation)
            # float32 product as in the reference's all_boxes column 4
            boxes["area"].append(np.prod(scale * PIXEL_STD, axis=1).astype(np.float64))
            boxes["score"].append(_to_numpy(meta["score"], np.float64).reshape(-1))
            boxes["raw_box"].append(_to_numpy(meta["raw_box"], np.float64).reshape(-1, 4))
            boxes["index"].append(_to_numpy(meta["index"], np.int64).reshape(-1))
            image_ids.extend(_ids(meta["image_id"]))

    result: Dict[str, Any] = {k: _concat(v, k) for k, v in boxes.items()}
    result["preds"] = {n: _concat(v, "preds") for n, v in preds.items()}
    result["image_ids"] = image_ids
    result["loss"] = loss_sum / loss_n if loss_n else None
    result["loss_n"] = loss_n
    result["accuracy"] = acc_sum / acc_n if acc_n else None
    result["accuracy_n"] = acc_n
    return result


_EMPTY_SHAPES = {"center": (0, 2), "scale": (0, 2), "raw_box": (0, 4), "preds": (0, 0, 3)}


def _concat(parts: List[np.ndarray], key: str) -> np.ndarray:
    if parts:
        return np.concatenate(parts, axis=0)
    return np.zeros(_EMPTY_SHAPES.get(key, (0,)),
                    dtype=np.int64 if key == "index" else np.float32)


def merge_results(parts: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Merge per-rank :func:`predict` outputs into dataset order.

    Samples are sorted by their dataset ``index``; repeated indices (the padding a distributed
    sampler adds to even out shards) are kept once. Loss and accuracy are re-weighted by counts.
    """
    index = np.concatenate([np.asarray(p["index"], np.int64) for p in parts])
    _, first = np.unique(index, return_index=True)  # sorted by index, first occurrence
    merged: Dict[str, Any] = {
        k: np.concatenate([np.asarray(p[k]) for p in parts])[first] for k in BOX_ARRAYS}
    merged["preds"] = {n: np.concatenate([p["preds"][n] for p in parts])[first]
                       for n in parts[0]["preds"]}
    ids = [i for p in parts for i in p["image_ids"]]
    merged["image_ids"] = [ids[j] for j in first]
    for key in ("loss", "accuracy"):
        n = sum(int(p[key + "_n"]) for p in parts)
        total = sum(float(p[key]) * int(p[key + "_n"]) for p in parts if p[key] is not None)
        merged[key] = total / n if n else None
        merged[key + "_n"] = n
    return merged

"""Training crops with the pixel work on the run's device (DATASET.DEVICE_PIPELINE True).

Host side, in the DataLoader workers (``PlanTransform``): read the JPEG bytes (no decode), draw
the geometry with the same generator calls in the same order as ``SampleTransform`` (it is the
same code, ``SampleTransform.place``), and compute the warp matrix, the crop-space joints and the
meta exactly as the CPU path does. A training sample is then a *plan*::

    {"encoded": bytes, "path": str, "affine": float64 [2, 3] (image px -> crop px, cv2's
     convention), "joints": float32 [J, 2] (crop px), "joints_vis": float32 [J], "meta": dict}

plus "target_weight" [J, 1] where the paired set imposes one (the unlabeled mask); it replaces
the encoder's weight, as on the CPU path.

Device side (``DeviceStage``), on the collated batch: all plans of the batch (labeled and
unlabeled) go through one ``torchvision.io.decode_jpeg`` call (batched by nvJPEG on CUDA, a loop
on the CPU) and one ``grid_sample``. Images have different sizes, so they are zero-padded to the
batch's largest height and width at the bottom and right: pixel coordinates stay put and the
padding is exactly cv2's constant-0 border, at the cost of memory for the padded batch. The warp
is bilinear with align_corners False, the cv2 matrix converted to affine_grid's normalised theta
(``affine_theta``); the result is rounded to uint8 levels as cv2 does, put in BGR order unless
DATASET.COLOR_RGB, and normalised with the transform's mean/std. Targets and weights come from
the transform's codec (``Codec.encode_batch``: ``heatmap.gaussian_targets``, a vectorised port of
``generate_target`` that gathers from the same patch).
The output batch has the CPU path's keys and shapes ({"image", "target", "target_weight",
"meta"} per group).

Agreement with the CPU path (tests/test_device_pipeline.py): geometry draws, joints, meta,
targets and target weights are identical; JPEG decoding on the CPU is bit-identical to OpenCV's;
crops differ by at most one uint8 level on about 0.01-0.05% of their values (bilinear weights in
float32 versus cv2's fixed point), asserted as max |diff| <= 1.5 levels and mean |diff| < 0.01
levels. nvJPEG may differ from libjpeg by a level or two more (to be measured on a GPU).

RandAugment twins (CONS_RAND_AUG) run on the device too: ``pair`` draws the ops (and cutout
squares) on the host with the CPU path's generator calls, the twin plan carries only that table
({"color_ops" [n, 6], "meta"}), and the stage applies the ops to the unlabeled crop's uint8
levels before normalising (transforms/randaugment_device.py, equal to PIL's output). A crop
augment other than RandAugment falls back to the CPU pair. Validation and flip test stay on the
CPU path.

Bad files: DATASET.SKIP_BAD_IMAGES still skips what the host can reject (missing, empty or
truncated files, no JPEG frame header); a file only the decoder rejects stops the run with an
error naming it, and a non-JPEG file is always an error naming the key to turn off.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from semipose.data.imageio import ImageReadError, check_complete, jpeg_size, read_bytes
from semipose.transforms.heatmap import gaussian_targets  # noqa: F401 (re-exported)
from semipose.transforms.randaugment import RandAugment
from semipose.transforms.randaugment_device import apply_color_plan, color_plan
from semipose.transforms.sample import CropAugment, SampleTransform
from semipose.utils.tensors import to_device

PLAN_KEY, TWIN_KEY = "encoded", "color_ops"
# Twin groups of a paired batch and the group whose crops they recolour (types.PairedBatch).
TWIN_OF = {"unlabeled_aug": "unlabeled"}


def is_plan(group: Any) -> bool:
    """Whether a sample (or a collated group of samples) is a plan still to be finished."""
    return isinstance(group, dict) and (PLAN_KEY in group or TWIN_KEY in group)


class PlanTransform(SampleTransform):
    """A SampleTransform whose samples are plans: no decode, no warp, no targets on the host."""

    def __call__(self, record: Dict[str, Any], rng: np.random.Generator, index: int = 0,
                 rotation: Optional[float] = None, scale_factor: Optional[float] = None,
                 flip: Optional[bool] = None, augment_crop: Optional[CropAugment] = None
                 ) -> Dict[str, Any]:
        """The plan of one crop; with ``augment_crop`` (a numpy op on pixels) the CPU sample."""
        if augment_crop is not None:
            return super().__call__(record, rng, index, rotation, scale_factor, flip,
                                    augment_crop)
        path = record["image"]
        data = read_bytes(path)
        check_complete(data, path)
        width, _ = jpeg_size(data, path)
        matrix, joints, vis, meta = self.place(record, rng, width, index, rotation,
                                               scale_factor, flip)
        return {PLAN_KEY: data, "path": path, "affine": torch.from_numpy(matrix),
                "joints": torch.from_numpy(joints), "joints_vis": torch.from_numpy(vis),
                "meta": dict(meta, joints=joints, joints_vis=vis)}

    def pair(self, record: Dict[str, Any], rng: np.random.Generator, augment_crop: CropAugment,
             index: int = 0, rotation: Optional[float] = None,
             scale_factor: Optional[float] = None, flip: Optional[bool] = None
             ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """(plan, twin plan): the twin holds only RandAugment's drawn ops ({"color_ops" [n, 6],
        "meta"}) and is finished from the plain crop. Another ``augment_crop`` falls back to
        the CPU pair."""
        if not isinstance(augment_crop, RandAugment):
            return super().pair(record, rng, augment_crop, index, rotation, scale_factor, flip)
        plain = self(record, rng, index, rotation, scale_factor, flip)
        twin = {TWIN_KEY: color_plan(augment_crop, rng, self.image_size),
                "meta": dict(plain["meta"])}
        return plain, twin


def affine_theta(matrix: torch.Tensor, src_size: Sequence[int], dst_size: Sequence[int]
                 ) -> torch.Tensor:
    """cv2.warpAffine matrices -> affine_grid thetas (align_corners False), in float64.

    Args:
        matrix: [N, 2, 3] mapping source pixels to destination pixels (pixel centres at
            integers), as cv2.warpAffine takes it without WARP_INVERSE_MAP.
        src_size, dst_size: (width, height) of the sampled tensor and of the output.
    Returns:
        [N, 2, 3] theta mapping output normalised coordinates to input normalised ones.
    """
    m = matrix.to(torch.float64)
    n = m.shape[0]
    last = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 3)
    inverse = torch.linalg.inv(torch.cat([m, last], 1))  # destination px -> source px
    (sw, sh), (dw, dh) = (float(v) for v in src_size[:2]), (float(v) for v in dst_size[:2])
    # normalised u = (2 x + 1) / W - 1, so x = W / 2 u + (W - 1) / 2
    to_norm = torch.tensor([[2 / sw, 0, 1 / sw - 1], [0, 2 / sh, 1 / sh - 1], [0, 0, 1]],
                           dtype=torch.float64)
    from_norm = torch.tensor([[dw / 2, 0, (dw - 1) / 2], [0, dh / 2, (dh - 1) / 2], [0, 0, 1]],
                             dtype=torch.float64)
    return (to_norm @ inverse @ from_norm)[:, :2]


def warp_crops(images: List[torch.Tensor], matrix: torch.Tensor, size: Sequence[int]
               ) -> torch.Tensor:
    """Warp decoded images like cv2.warpAffine (INTER_LINEAR, constant-0 border), in one call.

    Args:
        images: N uint8 [3, h_i, w_i] tensors on one device (sizes may differ).
        matrix: [N, 2, 3] cv2 matrices (image px -> crop px).
        size: crop (width, height).
    Returns:
        float32 [N, 3, H, W] holding whole uint8 levels (rounded half up, as cv2).
    """
    n, device = len(images), images[0].device
    height = max(int(img.shape[1]) for img in images)
    width = max(int(img.shape[2]) for img in images)
    canvas = torch.zeros(n, 3, height, width, dtype=torch.float32, device=device)
    for i, img in enumerate(images):  # the decoder hands back a list: one copy per image
        canvas[i, :, :img.shape[1], :img.shape[2]] = img
    theta = to_device(affine_theta(matrix.cpu(), (width, height), size), device, torch.float32)
    out_w, out_h = int(size[0]), int(size[1])
    # affine_grid's grid, written out elementwise: a matmul could run in TF32 on a GPU where
    # that is enabled, which would move samples by a fraction of a pixel.
    xs = (torch.arange(out_w, device=device, dtype=torch.float32) * 2 + 1) / out_w - 1
    ys = (torch.arange(out_h, device=device, dtype=torch.float32) * 2 + 1) / out_h - 1
    t = theta.view(n, 1, 1, 2, 3)
    xs, ys = xs.view(1, 1, out_w, 1), ys.view(1, out_h, 1, 1)
    grid = t[..., 0] * xs + t[..., 1] * ys + t[..., 2]  # [N, H, W, 2] (x, y)
    out = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.add_(0.5).floor_().clamp_(0, 255)


class DeviceStage:
    """Finish the plans of a collated batch on a device (see the module docstring).

    Built from the training set's PlanTransform (its codec for crop size and targets, channel
    order, normalisation). ``stage(batch, device)`` accepts a plain batch or a paired one;
    groups that are already finished (e.g. made on the CPU under RAW_INPUT) pass through
    unchanged.
    """

    def __init__(self, transform: SampleTransform) -> None:
        self.codec, self.color_rgb = transform.codec, transform.color_rgb
        self.image_size = self.codec.image_size
        self.patch = torch.from_numpy(self.codec.target_patch())
        # The CPU path's folded float32 constants, so normalised values match bit for bit.
        self.offset = torch.from_numpy(transform._offset.copy()).view(1, 3, 1, 1)
        self.gain = torch.from_numpy(transform._gain.copy()).view(1, 3, 1, 1)
        self._on_device: Dict[torch.device, Tuple[torch.Tensor, ...]] = {}

    def constants(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(offset, gain, Gaussian patch) on ``device``, copied there once and then reused."""
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = tuple(to_device(t, device)
                                            for t in (self.offset, self.gain, self.patch))
        return self._on_device[device]

    def __call__(self, batch: Any, device: torch.device) -> Any:
        if is_plan(batch):
            return self.finish({"": batch}, device)[""]
        if isinstance(batch, dict) and any(is_plan(v) for v in batch.values()):
            return dict(batch, **self.finish({k: v for k, v in batch.items() if is_plan(v)},
                                             device))
        return batch

    def finish(self, groups: Dict[str, Dict[str, Any]], device: torch.device
               ) -> Dict[str, Dict[str, Any]]:
        """Collated plan groups -> sample groups {"image" [N, 3, H, W], "target" [N, J, h, w],
        "target_weight" [N, J, 1], "meta"} on ``device``: one decode and one warp for all;
        twin groups recolour their base group's crops (RandAugment on uint8 levels)."""
        twins = {k: v for k, v in groups.items() if TWIN_KEY in v}
        names = [k for k in groups if k not in twins]
        for name in twins:
            if TWIN_OF.get(name) not in names:
                raise KeyError(f"twin group '{name}' has no plan group to recolour; known "
                               f"pairs: {TWIN_OF}")
        sizes = [len(groups[k][PLAN_KEY]) for k in names]
        encoded = [b for k in names for b in groups[k][PLAN_KEY]]
        paths = [p for k in names for p in groups[k]["path"]]
        images = decode_batch(encoded, paths, device)
        matrix = torch.cat([groups[k]["affine"] for k in names])
        crops = warp_crops(images, matrix, self.image_size)
        if not self.color_rgb:  # the decoder gives RGB; the CPU path's crops are BGR
            crops = crops.flip(1)
        offset, gain, patch = self.constants(device)
        levels, crops = crops, (crops - offset) * gain
        joints = to_device(torch.cat([groups[k]["joints"] for k in names]), device)
        vis = to_device(torch.cat([groups[k]["joints_vis"] for k in names]), device)
        target, weight = self.codec.encode_batch(joints, vis, patch)
        out, start = {}, 0
        for name, n in zip(names, sizes):
            part = slice(start, start + n)
            start += n
            group = groups[name]
            imposed = group.get("target_weight")
            out[name] = {"image": crops[part], "target": target[part],
                         "target_weight": (weight[part] if imposed is None
                                           else to_device(imposed, device, torch.float32)),
                         "meta": group["meta"]}
        for name, twin in twins.items():
            base = TWIN_OF[name]
            first, n = sum(sizes[:names.index(base)]), sizes[names.index(base)]
            recoloured = apply_color_plan(levels[first:first + n], twin[TWIN_KEY])
            imposed = twin.get("target_weight")
            out[name] = dict(out[base], image=(recoloured - offset) * gain, meta=twin["meta"],
                             target_weight=(out[base]["target_weight"] if imposed is None
                                            else to_device(imposed, device, torch.float32)))
        return out


def decode_batch(encoded: List[bytes], paths: List[str], device: torch.device
                 ) -> List[torch.Tensor]:
    """JPEG bytes -> uint8 RGB [3, h, w] tensors on ``device`` (EXIF orientation ignored, as the
    CPU path's OpenCV flags). A file the decoder rejects raises ImageReadError naming it.

    torchvision 0.29 deprecates its image codecs in favour of TorchCodec; only this function
    calls them."""
    with warnings.catch_warnings():  # read-only views of the bytes; the decoder only reads
        warnings.simplefilter("ignore", UserWarning)
        data = [torch.frombuffer(b, dtype=torch.uint8) for b in encoded]
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        for d, path in zip(data, paths):  # find the culprit to name it
            try:
                decode_jpeg(d, mode=ImageReadMode.RGB, device=device)
            except RuntimeError as exc:
                raise ImageReadError(path, f"JPEG decode on {device} failed ({exc}); replace "
                                           "the file or set DATASET.DEVICE_PIPELINE False") from exc
        raise


def device_stage_for(dataset: Any) -> Optional[DeviceStage]:
    """The stage finishing ``dataset``'s plans (a PoseDataset or a PairedDataset), or None when
    its transforms make whole samples (DATASET.DEVICE_PIPELINE False)."""
    for part in (dataset, getattr(dataset, "labeled", None), getattr(dataset, "unlabeled", None)):
        transform = getattr(part, "transform", None)
        if isinstance(transform, PlanTransform):
            return DeviceStage(transform)
    return None


def finished_images(samples: List[Dict[str, Any]], stage: Optional[DeviceStage]) -> torch.Tensor:
    """Images [N, 3, H, W] of a list of samples, finishing plans on the CPU with ``stage``."""
    if samples and is_plan(samples[0]):
        if stage is None:
            raise ValueError("plan samples (DATASET.DEVICE_PIPELINE) need a DeviceStage")
        return stage(default_collate(samples), torch.device("cpu"))["image"]
    return torch.stack([s["image"] for s in samples])

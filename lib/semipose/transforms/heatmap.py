"""Gaussian heatmap targets (encode), argmax decoding with sub-pixel refinement, flip-test helpers.

Shapes: N samples, J joints, heatmaps of h rows and w columns. Sizes are always given as (w, h).
Encode and decode follow the reference implementation's integer rounding exactly (see
``generate_target``), vectorised over joints and samples; ``gaussian_targets`` is the batched
torch encoder of the device data path, with the same numbers. Callers go through
``transforms.codec.Codec``, which holds the settings (sizes, sigma, refinement, flip test).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .affine import flip_permutation, transform_preds
from ..utils.tensors import device_vector, to_device

Array = Union[np.ndarray, torch.Tensor]


def generate_target(joints, vis, image_size: Sequence[int], heatmap_size: Sequence[int],
                    sigma: float) -> Tuple[np.ndarray, np.ndarray]:
    """Unnormalised Gaussian heatmaps (peak 1) for one person.

    Args:
        joints: [J, 2] crop pixels (x, y); vis: [J] (or [J, k], column 0 used).
        image_size, heatmap_size: (w, h); sigma: Gaussian std in heatmap pixels (may be a float).
    Returns:
        target [J, h, w] float32, weight [J, 1] float32 (= vis, 0 for rejected joints).

    Per joint: mu = int(x / stride + 0.5) (truncation toward zero), a patch of ceil(6 sigma + 1)
    samples whose centre index is (6 sigma + 1) // 2 is anchored at ul = int(mu - 3 sigma) and
    clipped to [ul, int(mu + 3 sigma + 1)) and to the map. A joint whose window lies fully
    right/below the map, or whose window end is negative, gets weight 0; a window ending exactly at
    0 is kept (weight 1, empty map), as in the reference. Non-finite joints get weight 0. Patches are
    written only where weight > 0.5.
    """
    joints = np.asarray(joints, dtype=np.float64).reshape(-1, 2)
    vis = np.asarray(vis, dtype=np.float32)
    vis = vis[:, 0] if vis.ndim == 2 else vis.reshape(-1)
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.asarray(image_size, np.float64)[:2] / np.array([w, h], np.float64)
    tmp = sigma * 3
    patch = gaussian_patch(sigma)
    n_patch = patch.shape[0] - 1

    with np.errstate(invalid="ignore", over="ignore"):
        mu = np.trunc(joints / stride + 0.5)  # [J, 2]
        ul = np.trunc(mu - tmp)
        br = np.trunc(mu + tmp + 1)
        inside = (np.isfinite(mu).all(axis=1) & (ul[:, 0] < w) & (ul[:, 1] < h)
                  & (br[:, 0] >= 0) & (br[:, 1] >= 0))
    weight = np.where(inside, vis, np.float32(0)).astype(np.float32)

    # Each written joint gets its window clipped to the map, one slice copy per joint: for 24
    # joints ~3x faster than gathering every map pixel from the patch (equal outputs).
    target = np.zeros((len(weight), h, w), np.float32)
    write = np.flatnonzero(weight > 0.5)  # patches are written only for weight > 0.5
    if write.size:
        lo = ul[write].astype(np.int64)  # window start (x, y), may be negative
        stop = np.minimum(np.minimum(br[write], lo + n_patch), [w, h]).astype(np.int64)
        start = np.maximum(lo, 0)
        for j, (x0, y0), (xa, ya), (xb, yb) in zip(write.tolist(), lo.tolist(),
                                                    start.tolist(), stop.tolist()):
            if xa < xb and ya < yb:
                target[j, ya:yb, xa:xb] = patch[ya - y0:yb - y0, xa - x0:xb - x0]
    return target, weight[:, None]


def gaussian_patch(sigma: float) -> np.ndarray:
    """The Gaussian patch of ``generate_target``: float32 [n + 1, n + 1], n = ceil(6 sigma + 1)
    samples per axis, peak 1 at index (6 sigma + 1) // 2, computed with the same float32
    operations as the per-joint reference loop, plus one zero row and column (the device
    pipeline's gather points every pixel outside a joint's window at them)."""
    size = 2 * sigma * 3 + 1
    grid = np.arange(0, size, 1, np.float32)
    n_patch, centre = len(grid), size // 2
    patch = np.zeros((n_patch + 1, n_patch + 1), np.float32)
    patch[:n_patch, :n_patch] = np.exp(-((grid - centre) ** 2 + (grid[:, None] - centre) ** 2)
                                       / np.float32(2 * sigma ** 2))
    return patch


def gaussian_targets(joints: torch.Tensor, vis: torch.Tensor, image_size: Sequence[int],
                     heatmap_size: Sequence[int], sigma: float,
                     patch: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``generate_target`` for a batch, on the joints' device, with the same numbers.

    Args:
        joints: [N, J, 2] crop pixels (x, y); vis: [N, J].
        image_size, heatmap_size: (w, h); sigma: Gaussian std in heatmap pixels.
        patch: ``gaussian_patch(sigma)`` as a tensor (made here when None).
    Returns:
        target float32 [N, J, h, w], weight float32 [N, J, 1]; the rounding, the rejection of
        out-of-map and non-finite joints and the weight > 0.5 rule are ``generate_target``'s.
    Window arithmetic runs in float64 like the numpy encoder (devices without float64, such as
    MPS, are not supported).
    """
    device = joints.device
    if patch is None:
        patch = torch.from_numpy(gaussian_patch(sigma))
    patch = to_device(patch, device)
    n_patch = patch.shape[0] - 1
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    stride = device_vector([image_size[0] / w, image_size[1] / h], torch.float64, device)
    tmp = sigma * 3
    mu = torch.trunc(joints.to(torch.float64) / stride + 0.5)  # [N, J, 2]
    ul, br = torch.trunc(mu - tmp), torch.trunc(mu + tmp + 1)
    inside = (torch.isfinite(mu).all(-1) & (ul[..., 0] < w) & (ul[..., 1] < h)
              & (br[..., 0] >= 0) & (br[..., 1] >= 0))
    weight = torch.where(inside, vis.to(torch.float32), torch.zeros((), device=device))

    def axis_index(length: int, k: int, keep: torch.Tensor) -> torch.Tensor:
        """Patch index [N, J, length] of every map pixel along one axis (n_patch = outside)."""
        pix = torch.arange(length, dtype=torch.float64, device=device)
        idx = pix - ul[..., k:k + 1]
        ok = (idx >= 0) & (idx < n_patch) & (pix < br[..., k:k + 1]) & keep.unsqueeze(-1)
        return torch.where(ok, torch.nan_to_num(idx), float(n_patch)).long()

    ix = axis_index(w, 0, torch.ones_like(inside))
    iy = axis_index(h, 1, weight > 0.5)  # patches are written only for weight > 0.5
    target = patch.reshape(-1)[iy.unsqueeze(-1) * (n_patch + 1) + ix.unsqueeze(-2)]
    return target, weight.unsqueeze(-1)


def get_max_preds(hm: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel argmax (first maximal index).

    Args:
        hm: [N, J, h, w].
    Returns:
        coords [N, J, 2] float32 (x, y), (0, 0) where the max is <= 0; maxvals [N, J, 1].
    """
    hm = np.asarray(hm)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must be [N, J, h, w], got shape {hm.shape}")
    n, j, _, w = hm.shape
    flat = hm.reshape(n, j, -1)
    idx = np.argmax(flat, axis=2)[..., None]  # [N, J, 1]
    maxvals = np.take_along_axis(flat, idx, axis=2)
    coords = np.concatenate([idx % w, idx // w], axis=2).astype(np.float32)
    coords *= (maxvals > 0).astype(np.float32)
    return coords, maxvals


def _gather(hm: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """hm[n, j, ys[n, j], xs[n, j]] for hm [N, J, h, w] and int index arrays [N, J]."""
    n, j = ys.shape
    return hm[np.arange(n)[:, None], np.arange(j)[None, :], ys, xs]


def _shift_refine(hm: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Quarter-pixel step towards the higher neighbour, per axis. coords [N, J, 2] float32."""
    h, w = hm.shape[2:]
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    ok = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    px, py = np.clip(px, 1, max(w - 2, 1)), np.clip(py, 1, max(h - 2, 1))
    diff = np.stack([_gather(hm, py, px + 1) - _gather(hm, py, px - 1),
                     _gather(hm, py + 1, px) - _gather(hm, py - 1, px)], axis=-1)
    return coords + np.where(ok[..., None], np.sign(diff) * 0.25, 0).astype(coords.dtype)


def _blur(hm: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian blur of zero-padded maps (sigma from the kernel size, as OpenCV picks it), each map
    rescaled to keep its original maximum. hm [N, J, h, w] float -> same shape and dtype.

    Blurring the zero-padded map and cropping equals multiplying by banded (Toeplitz) matrices on
    both sides, which batches over all maps in float64.
    """
    import cv2  # only the DARK path needs it

    k = cv2.getGaussianKernel(kernel, 0, cv2.CV_64F)[:, 0]
    b = (kernel - 1) // 2

    def band(n: int) -> np.ndarray:
        d = np.arange(n)[:, None] - np.arange(n)[None, :]
        return np.where(np.abs(d) <= b, k[np.clip(d + b, 0, kernel - 1)], 0.0)

    h, w = hm.shape[2:]
    out = (band(h) @ (hm.astype(np.float64) @ band(w))).astype(hm.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = hm.max(axis=(2, 3)) / out.max(axis=(2, 3))
    return out * ratio[..., None, None]


def _dark_refine(hm: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """DARK: Newton step on the log of the blurred heatmap at the integer argmax."""
    h, w = hm.shape[2:]
    px = np.trunc(coords[..., 0]).astype(np.int64)
    py = np.trunc(coords[..., 1]).astype(np.int64)
    ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    if not ok.any():
        return coords
    dtype = np.result_type(hm.dtype, np.float32)
    blurred = _blur(hm.astype(dtype), kernel)
    px, py = np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)

    def v(dy: int, dx: int) -> np.ndarray:
        """log(max(blurred, 1e-10)) at the argmax offset by (dy, dx), [N, J]."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(np.maximum(_gather(blurred, py + dy, px + dx), dtype.type(1e-10)))

    dx = 0.5 * (v(0, 1) - v(0, -1))
    dy = 0.5 * (v(1, 0) - v(-1, 0))
    dxx = 0.25 * (v(0, 2) - 2 * v(0, 0) + v(0, -2))
    dxy = 0.25 * (v(1, 1) - v(-1, 1) - v(1, -1) + v(-1, -1))
    dyy = 0.25 * (v(2, 0) - 2 * v(0, 0) + v(-2, 0))
    with np.errstate(invalid="ignore", over="ignore"):
        ok &= (dxx * dyy - dxy ** 2) != 0
    if not ok.any():
        return coords
    hess = np.stack([np.stack([dxx, dxy], -1), np.stack([dxy, dyy], -1)], -2)[ok]  # [K, 2, 2]
    grad = np.stack([dx, dy], -1)[ok][..., None]  # [K, 2, 1]
    try:
        inv = np.linalg.inv(hess)
    except np.linalg.LinAlgError:  # numerically singular despite a non-zero determinant
        det = hess[:, 0, 0] * hess[:, 1, 1] - hess[:, 0, 1] ** 2
        adj = np.stack([np.stack([hess[:, 1, 1], -hess[:, 0, 1]], -1),
                        np.stack([-hess[:, 0, 1], hess[:, 0, 0]], -1)], -2)
        inv = adj / det[:, None, None]
    out = coords.copy()
    out[ok] += np.matmul(-inv, grad)[..., 0].astype(coords.dtype)
    return out


def get_final_preds(hm, center, scale, rotation=None, post_process: bool = True,
                    post_type: str = "shift", blur_kernel: int = 11
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Decode heatmaps into image-pixel keypoints.

    Args:
        hm: [N, J, h, w] numpy heatmaps (not modified).
        center, scale: [N, 2] crop boxes; rotation: [N] degrees or None (= 0).
        post_process: refine the argmax; post_type: 'shift' (quarter pixel towards the higher
            neighbour) or 'dark' (Taylor step on the log of the blurred map, ``blur_kernel``).
    Returns:
        preds [N, J, 2] float32 image pixels, maxvals [N, J, 1].
    """
    hm = np.asarray(hm)
    coords, maxvals = get_max_preds(hm)
    if post_process:
        if post_type == "shift":
            coords = _shift_refine(hm, coords)
        elif post_type == "dark":
            coords = _dark_refine(hm, coords, blur_kernel)
        else:
            raise ConfigError(f"TEST.POST_TYPE must be 'shift' or 'dark', got {post_type!r}")
    h, w = hm.shape[2:]
    n = hm.shape[0]
    rot = np.zeros(n) if rotation is None else np.asarray(rotation, np.float64).reshape(n)
    preds = transform_preds(coords, np.asarray(center).reshape(n, 2),
                            np.asarray(scale).reshape(n, 2), rot, (w, h))
    return preds.astype(np.float32), maxvals


def flip_back(hm: Array, flip_pairs: Sequence[Sequence[int]]) -> Array:
    """Undo a horizontal input flip on heatmaps [N, J, h, w]: mirror the width, swap left/right
    channels. Works on torch tensors (any device) and numpy arrays; returns a new tensor/array."""
    perm = flip_permutation(hm.shape[1], flip_pairs)
    if isinstance(hm, torch.Tensor):
        return hm.flip(-1)[:, torch.as_tensor(perm, device=hm.device)]
    return np.ascontiguousarray(np.asarray(hm)[:, perm, :, ::-1])


def shift_flipped(hm: Array, mode: str = "shift", align_corners: bool = False) -> Array:
    """Re-align flipped-back heatmaps [N, J, h, w] with the unflipped ones.

    'shift': column k takes column k-1 (column 0 kept, i.e. duplicated), a 1-px right shift.
    'grid': bilinear resampling with theta = [[1, 0, -1.5/w], [0, 1, 0]] (0.75 px right under
    align_corners=False). Torch in, torch out; numpy in, numpy out.
    """
    if isinstance(hm, np.ndarray):
        return shift_flipped(torch.from_numpy(hm), mode, align_corners).numpy()
    if mode == "shift":
        return torch.cat([hm[..., :1], hm[..., :-1]], dim=-1)
    if mode == "grid":
        n, w = hm.shape[0], hm.shape[-1]
        theta = torch.tensor([[1.0, 0.0, -1.5 / w], [0.0, 1.0, 0.0]], dtype=hm.dtype,
                             device=hm.device).expand(n, 2, 3)
        grid = F.affine_grid(theta, list(hm.shape), align_corners=align_corners)
        return F.grid_sample(hm, grid, align_corners=align_corners)
    raise ValueError(f"shift mode must be 'shift' or 'grid', got {mode!r}")

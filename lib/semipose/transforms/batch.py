"""Device-agnostic batch operations on tensors for the hard (student) view.

Everything here runs on whatever device its inputs live on, draws randomness from an explicit
``torch.Generator`` on that device (or a recorder / tape of its draws, see ``draws``), and avoids
host-device synchronisation and Python loops over samples or joints, so it can sit inside the
training step of PoseCons / PoseDual.

Coordinates are (x, y) in pixels of the tensor they refer to; tensors are N x C x H x W.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..utils.tensors import device_vector
from .draws import HARD_VIEW_ORDER, Source, TorchDraws, draw, draw_scale_rotation

Number = Union[float, torch.Tensor]

CUTOUT_MODES = ("reference", "corrected")


def theta_from(rot_deg: Number, scale: Number) -> torch.Tensor:
    """Affine matrices of a rotation about the centre (degrees) and an isotropic scale.

    theta = [[s cos r, s sin r, 0], [-s sin r, s cos r, 0]], the layout of a rotation matrix about
    the origin, applied in the normalised [-1, 1] coordinates of ``affine_grid``.
    Args: rot_deg, scale: floats or tensors of shape [N]. Returns float32 [N, 2, 3] ([1, 2, 3] for floats).
    """
    r = torch.as_tensor(rot_deg, dtype=torch.float32).reshape(-1)
    s = torch.as_tensor(scale, dtype=torch.float32, device=r.device).reshape(-1)
    r, s = torch.broadcast_tensors(r, s)
    rad = r * (math.pi / 180.0)
    c, sn = s * torch.cos(rad), s * torch.sin(rad)
    zero = torch.zeros_like(c)
    return torch.stack([torch.stack([c, sn, zero], -1), torch.stack([-sn, c, zero], -1)], 1)


def hard_affine_theta(n: int, scale_factor: float, rot_factor: float,
                      generator: Source = None,
                      device: Union[str, torch.device, None] = None,
                      rot_prob: float = 0.8) -> torch.Tensor:
    """Random per-sample theta of the hard view (no translation, no flip).

    s = clip(randn * sf + 1, 1 - sf, 1 + sf); r = clip(randn * rf, -2 rf, 2 rf) with probability
    ``rot_prob`` (0.8, unlike the 0.6 of the dataset augmentation) else 0: the dataset's draw
    (``draws.draw_scale_rotation``) in batch form, drawn scale, rotation, then the rand gate.
    Returns float32 [n, 2, 3] on ``device`` (which must match the generator's device).
    """
    if generator is not None and device is None:
        device = generator.device
    s, r = draw_scale_rotation(TorchDraws(generator, n, device), scale_factor, rot_factor,
                               rot_prob, HARD_VIEW_ORDER)
    return theta_from(r, s)


def _homogeneous(theta: torch.Tensor) -> torch.Tensor:
    last = torch.zeros_like(theta[:, :1])
    last[:, 0, 2] = 1
    return torch.cat([theta, last], 1)


def compose_theta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N, 2, 3] theta of ``p -> a @ (b @ p)``: warping by it equals warping by ``a`` then ``b``."""
    return (_homogeneous(a.float()) @ _homogeneous(b.float()))[:, :2]


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """Inverse [N, 2, 3] of affine thetas (in normalised coordinates)."""
    # inv_ex: linalg.inv's kernel without its error check, which waits for the GPU to read the
    # status back (these matrices have scale > 0, never singular)
    return torch.linalg.inv_ex(_homogeneous(theta.float())).inverse[:, :2]


def warp(x: torch.Tensor, theta: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Warp a batch [N, C, H, W] with theta [N, 2, 3]: bilinear sampling, zero padding.

    Output normalised position p samples the input at theta @ p. The grid and the sampling run in
    float32 even under autocast, so reduced-precision inputs do not perturb theta; the result keeps
    the input dtype.
    """
    grid = F.affine_grid(theta.float(), list(x.shape), align_corners=align_corners)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=align_corners)
    return out.to(x.dtype)


def warp_points(points: torch.Tensor, theta: torch.Tensor, width: int, height: int,
                align_corners: bool = False) -> torch.Tensor:
    """Where pixel points [N, J, 2] (x, y) of an input land after ``warp`` with theta [N, 2, 3].

    The warp samples the input at A @ p, so an input point q appears at A^-1 @ q (normalised).
    Returns float [N, J, 2] in output pixels (same width/height as the input).
    """
    size = device_vector([width, height], torch.float32, points.device)
    if align_corners:
        q = points.float() * 2 / (size - 1) - 1
    else:
        q = (points.float() * 2 + 1) / size - 1
    a_inv = torch.linalg.inv_ex(theta[:, :, :2].float()).inverse  # no host-side error check
    p = torch.einsum("nij,nkj->nki", a_inv, q - theta[:, None, :, 2].float())
    if align_corners:
        return (p + 1) * (size - 1) / 2
    return ((p + 1) * size - 1) / 2


def max_preds_tensor(hm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flat argmax of heatmaps [N, J, h, w] -> (coords float [N, J, 2] (x, y), maxvals [N, J, 1]).

    Unlike the evaluation decoder, negative maxima are not masked: the cutout centres of the
    reference use the raw argmax.
    """
    n, j, _, w = hm.shape
    maxvals, idx = hm.reshape(n, j, -1).max(dim=2)
    coords = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], -1)
    return coords.to(torch.float32), maxvals.unsqueeze(-1)


def cutout_boxes(joints: torch.Tensor, jitter: torch.Tensor, half_sizes: torch.Tensor,
                 chosen: torch.Tensor, height: int, width: int, mode: str = "reference",
                 valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Union of the Joint Cutout boxes as a mask [N, H, W] (True = pixel to zero).

    Args:
        joints: [N, J, 2] centres (x, y) in image pixels.
        jitter: [N, J, 2] pixel offsets added before truncation toward zero.
        half_sizes: [N, J, 2] integer half widths/heights (x, y).
        chosen: [N, K] joint indices; ``valid`` [N, K] bool drops draws (samples with no joint).
        height, width: image size. mode: 'reference' clamps x to [0, height] and y to [0, width]
            (the reference swaps the two, so rows >= width are never masked); 'corrected' clamps
            to the true bounds.
    Box of a chosen joint: x in [cx - hx, cx + hx), y in [cy - hy, cy + hy) after clamping.
    """
    if mode not in CUTOUT_MODES:
        raise ConfigError(f"cutout mode {mode!r} unknown; CUTOUT_MODE must be one of "
                          f"{CUTOUT_MODES}")
    idx = chosen.long().unsqueeze(-1).expand(-1, -1, 2)
    centre = torch.trunc(joints.float() + jitter.float()).long().gather(1, idx)  # [N, K, 2]
    half = half_sizes.long().gather(1, idx)
    lo, hi = centre - half, centre + half
    # Python-int bounds: no host-to-device copy inside the step.
    x_max, y_max = (height, width) if mode == "reference" else (width, height)
    x0, x1 = lo[..., :1].clamp(0, x_max), hi[..., :1].clamp(0, x_max)
    y0, y1 = lo[..., 1:].clamp(0, y_max), hi[..., 1:].clamp(0, y_max)
    cols = torch.arange(width, device=joints.device)
    rows = torch.arange(height, device=joints.device)
    in_x = (cols >= x0) & (cols < x1)  # [N, K, W]
    in_y = (rows >= y0) & (rows < y1)  # [N, K, H]
    if valid is not None:
        in_y = in_y & valid.unsqueeze(-1)
    # Union over the K boxes: count of boxes covering each pixel via one batched product.
    return torch.bmm(in_y.transpose(1, 2).float(), in_x.float()) > 0


def choose_joints(n: int, k: int, num_joints: int, generator: Source,
                  device: Union[str, torch.device], joint_mask: Optional[torch.Tensor] = None,
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw k joint indices per sample, with replacement -> (chosen [n, k] long, valid [n, k] bool).

    Without ``joint_mask`` the draw is uniform over all ``num_joints`` channels. With a mask
    ([J] or [n, J] bool) it is uniform over the True joints of each sample; samples without any
    True joint get ``valid`` False. Sync-free: a uniform rank is mapped to the joint index by
    searching the running count of allowed joints.
    """
    if joint_mask is None:
        chosen = draw(generator, "randint", (n, k), device, 0, num_joints)
        return chosen, torch.ones(n, k, dtype=torch.bool, device=device)
    mask = joint_mask.to(device=device, dtype=torch.bool).expand(n, num_joints)
    counts = mask.long().cumsum(1)  # [n, J], non-decreasing
    total = counts[:, -1:]
    u = draw(generator, "rand", (n, k), device)
    rank = (u * total).long().clamp(max=(total - 1).clamp(min=0)) + 1
    chosen = torch.searchsorted(counts, rank).clamp(max=num_joints - 1)
    return chosen, (total > 0).expand(n, k)


def joint_cutout_mask(images: torch.Tensor, joints_px: torch.Tensor, k: int,
                      generator: Source = None, mode: str = "reference",
                      joint_mask: Optional[torch.Tensor] = None,
                      scale: float = 1.0) -> torch.Tensor:
    """The pixels Joint Cutout covers, [N, H, W] bool (see ``joint_cutout`` for the arguments).

    Draw order: jitter 10 * randn [N, J, 2], half sizes randint(10, 20) [N, J, 2], then joints.
    """
    if mode not in CUTOUT_MODES:
        raise ConfigError(f"cutout mode {mode!r} unknown; CUTOUT_MODE must be one of "
                          f"{CUTOUT_MODES}")
    n, _, height, width = images.shape
    num_joints, device = joints_px.shape[1], images.device
    jitter = 10.0 * draw(generator, "randn", (n, num_joints, 2), device)
    half = draw(generator, "randint", (n, num_joints, 2), device, 10, 20)
    if scale != 1.0:  # the pixel sizes are made for 256x192 crops: the same draws, rescaled
        jitter = jitter * scale
        half = torch.round(half * scale).long().clamp(min=1)
    chosen, valid = choose_joints(n, k, num_joints, generator, device,
                                  joint_mask if mode == "corrected" else None)
    return cutout_boxes(joints_px, jitter, half, chosen, height, width, mode, valid)


def joint_cutout(images: torch.Tensor, joints_px: torch.Tensor, k: int,
                 generator: Source = None, mode: str = "reference",
                 joint_mask: Optional[torch.Tensor] = None, scale: float = 1.0) -> torch.Tensor:
    """Joint Cutout: zero k boxes centred near predicted joints; returns a new [N, C, H, W] tensor.

    Args:
        images: [N, C, H, W] normalised images (zero = the mean colour).
        joints_px: [N, J, 2] joint centres (x, y) in image pixels (teacher argmax x stride).
        k: number of draws per sample, with replacement (0 returns a copy).
        generator: torch generator on the images' device.
        mode: 'reference' draws among all J channels and keeps the reference's swapped clamp;
            'corrected' draws among ``joint_mask`` joints ([J] or [N, J] bool) and clamps to the
            true image bounds.
        scale: multiplies the jitter and the half sizes (rounded, at least 1 pixel): the
            reference's pixel sizes (1.0) are made for 256x192 crops, where five boxes cover
            about 6% of the crop; at 96x64 the same boxes cover about 30% and 0.354 (the crop
            size ratio) brings that back (CUTOUT_SCALE).
    Draw order: jitter 10 * randn [N, J, 2], half sizes randint(10, 20) [N, J, 2], then joints.
    """
    if mode not in CUTOUT_MODES:
        raise ConfigError(f"cutout mode {mode!r} unknown; CUTOUT_MODE must be one of "
                          f"{CUTOUT_MODES}")
    if k <= 0:
        return images.clone()
    mask = joint_cutout_mask(images, joints_px, k, generator, mode, joint_mask, scale)
    return images.masked_fill(mask.unsqueeze(1), 0)


# ------------------------------------------------------------------ mixing between crops
# Used by the multi-path method (methods/multi_path.py). Each op takes the batch of hard-view
# images and the teacher heatmaps in the same (easy-view) frame and returns both transformed, so
# the target stays pixel-aligned with the image. ``perm`` [N] pairs every crop with another one.

def random_partner(n: int, generator: Source,
                   device: Union[str, torch.device]) -> torch.Tensor:
    """perm [n] with perm[i] != i for n > 1 (a random cyclic shift of a random order)."""
    if n < 2:
        return torch.zeros(n, dtype=torch.long, device=device)
    order = draw(generator, "randperm", (n,), device)
    shift = draw(generator, "randint", (1,), device, 1, n)
    partner = torch.empty_like(order)
    partner[order] = order[(torch.arange(n, device=device) + shift) % n]
    return partner


def joint_cut_occlusion(images: torch.Tensor, joints_px: torch.Tensor, k: int,
                        generator: Source = None,
                        joint_mask: Optional[torch.Tensor] = None,
                        perm: Optional[torch.Tensor] = None, scale: float = 1.0) -> torch.Tensor:
    """Joint cut-occlusion: the Joint Cutout boxes (true bounds, ``joint_mask`` joints) filled
    with the same pixels of a partner crop instead of zeros, so the occluder looks like image
    content (often another person's limb). Targets are unchanged: the joint is still there."""
    if k <= 0:
        return images.clone()
    mask = joint_cutout_mask(images, joints_px, k, generator, "corrected", joint_mask, scale)
    if perm is None:
        perm = random_partner(images.shape[0], generator, images.device)
    return torch.where(mask.unsqueeze(1), images[perm], images)


def random_box(n: int, area: torch.Tensor, generator: Source,
               device: Union[str, torch.device]
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random boxes covering a share ``area`` [n] of the frame (CutMix's box): returns the box
    corners as fractions (x0, y0, x1, y1), each [n, 1, 1], so the same box can be drawn at any
    resolution with ``fraction_box``."""
    side = area.clamp(0, 1).sqrt()
    cx = draw(generator, "rand", (n,), device)
    cy = draw(generator, "rand", (n,), device)
    x0, x1 = (cx - side / 2).clamp(0, 1), (cx + side / 2).clamp(0, 1)
    y0, y1 = (cy - side / 2).clamp(0, 1), (cy + side / 2).clamp(0, 1)
    return tuple(v.view(n, 1, 1) for v in (x0, y0, x1, y1))  # type: ignore[return-value]


def fraction_box(box, height: int, width: int) -> torch.Tensor:
    """[n, H, W] bool of the pixels whose centres fall inside the fractional box."""
    x0, y0, x1, y1 = box
    xs = (torch.arange(width, device=x0.device) + 0.5) / width
    ys = (torch.arange(height, device=x0.device) + 0.5) / height
    in_x = (xs >= x0) & (xs < x1)  # [n, 1, W]
    in_y = (ys.view(-1, 1) >= y0) & (ys.view(-1, 1) < y1)  # [n, H, 1]
    return in_y & in_x


def cutmix(images: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor,
           generator: Source = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """CutMix between crops: a box covering a uniform(0, 1) share of the frame is pasted from
    the partner crop into both the image [N, C, H, W] and the target heatmaps [N, J, h, w]
    (the same fractional box at both resolutions)."""
    n = images.shape[0]
    area = draw(generator, "rand", (n,), images.device)
    box = random_box(n, area, generator, images.device)
    m_img = fraction_box(box, images.shape[2], images.shape[3]).unsqueeze(1)
    m_hm = fraction_box(box, targets.shape[2], targets.shape[3]).unsqueeze(1)
    return (torch.where(m_img, images[perm], images), torch.where(m_hm, targets[perm], targets))


def mixup(images: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor,
          generator: Source = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """MixUp between crops: x = lam x + (1 - lam) x[perm] and the same blend of the target
    heatmaps, lam ~ uniform(0.5, 1) per sample so the crop itself always dominates."""
    n = images.shape[0]
    lam = 0.5 + 0.5 * draw(generator, "rand", (n,), images.device)
    li, lt = lam.view(n, 1, 1, 1).to(images.dtype), lam.view(n, 1, 1, 1).to(targets.dtype)
    return (li * images + (1 - li) * images[perm], lt * targets + (1 - lt) * targets[perm])

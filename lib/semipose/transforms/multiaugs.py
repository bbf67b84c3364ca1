"""The augmentation ops of MultiAugs and SSPCM, as their released code computes them.

- ``keypoint_cut_occlusion`` (JO; SSPCM's "SSCO"): a patch cut around a random joint of a random
  partner crop, pasted centred on one of one's own joints.
- ``random_cutout`` (CO): holes with uniform centres, set to zero.
- ``cutmix_holes`` (CM): holes as CO, filled with a partner crop's pixels at the same place.
- ``mixup_batch`` (MU): one blend weight per batch, close to 1.
- ``joco`` (JO then CO) and ``jccm`` (Joint Cutout then CM): the composites.

Each op takes the images [N, 3, H, W] (and the joint centres [N, J, 2] (x, y) in image pixels
where it needs them), a draw source (a generator, a ``draws.Recorder`` or a ``draws.Tape``) and
its counts, and returns new images: the targets and joint weights are never changed (these ops
occlude, they do not move joints, and the released code does not mix targets). Every random
draw goes through ``draws.draw`` with sizes that depend on shapes only, so a compiled step can
replay them; there is no host-device synchronisation and no Python loop over samples (the
loops are over the K draws of a sample).

``mode``: 'reference' (the default) reproduces the released code, its axis quirks included;
'corrected' places the same boxes in true image geometry. The quirks:

- JO reads a joint's x as a row and its y as a column, for the own and the partner box alike,
  so the patch lands at the transposed position; the boxes are clamped to the bounds of the
  axes x and y name (W-1, H-1) and the slices cut at the image's size ('corrected' swaps
  each joint's (x, y) on input, the clamps following the axes: true geometry).
- CO and CM take the height for the width: row centres are drawn in [0, W) and clamped to
  [0, W], column centres in [0, H) and clamped to [0, H], then cut at the image's W columns;
  on a 256x192 crop rows >= 192 are never cut and about a fifth of the holes vanish.

All pixel sizes (10 px jitter, half sizes 10..19) are made for 256x192 crops; ``scale``
multiplies the jitter and the half sizes (rounded, at least 1 pixel) like Joint Cutout's
CUTOUT_SCALE; 1.0 is the released code.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from ..errors import ConfigError
from .batch import CUTOUT_MODES, joint_cutout
from .draws import Source, draw

Device = Union[str, torch.device]

# The released sizes: half sizes drawn in [HALF_LOW, HALF_HIGH) per axis, centre jitter sigma.
HALF_LOW, HALF_HIGH = 10, 20
JITTER = 10.0
# MixUp: lambda = 1 - MIXUP_SPREAD * Beta(MIXUP_ALPHA, MIXUP_ALPHA), in (0.75, 1].
MIXUP_ALPHA, MIXUP_SPREAD = 0.2, 0.25
# Candidate pairs of the Beta draw (see ``beta_draw``): all rejected with probability about
# 0.05 ** 16 ~ 1e-21 for Beta(0.2, 0.2).
BETA_CANDIDATES = 16


def check_mode(mode: str) -> None:
    if mode not in CUTOUT_MODES:
        raise ConfigError(f"augmentation op mode {mode!r} unknown; use one of {CUTOUT_MODES} "
                          "(the hard view's op_mode)")


def _scaled_half(half: torch.Tensor, scale: float) -> torch.Tensor:
    """Half sizes times ``scale``, rounded, at least one pixel (Joint Cutout's rule)."""
    if scale == 1.0:
        return half
    return torch.round(half * scale).long().clamp(min=1)


def _clamp_rc(t: torch.Tensor, row_max: int, col_max: int) -> torch.Tensor:
    """[..., 2] (row, column) values clamped to [0, row_max] and [0, col_max] (Python-int
    bounds: no host-to-device copy inside the step)."""
    return torch.stack([t[..., 0].clamp(0, row_max), t[..., 1].clamp(0, col_max)], -1)


def _span(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """[N, size] bool of the indices in [lo, hi) (lo, hi: [N]), an end-exclusive slice."""
    idx = torch.arange(size, device=lo.device)
    return (idx >= lo.unsqueeze(-1)) & (idx < hi.unsqueeze(-1))


# ------------------------------------------------------------------ JO: keypoint cut-occlusion
def keypoint_cut_occlusion(images: torch.Tensor, joints_px: torch.Tensor,
                           generator: Source = None, mode: str = "reference", k: int = 2,
                           scale: float = 1.0) -> torch.Tensor:
    """JO: K patches of random partners' joints pasted on one's own joints; new [N, C, H, W].

    1. Box of every (n, j): centre c = trunc(P + 10 N(0, I)), half sizes in {10..19} per axis;
       box = c -+ half, x clamped to [0, W-1] and y to [0, H-1].
    2. Per sample n: one partner m uniform over the batch (n itself allowed), K own channels
       j_k and K partner channels j'_k, uniform over all J channels, with replacement.
    3. Per k, in order: the destination extends from the own, unclamped centre c[n, j_k] by the
       partner box's clamped extents (c[m, j'_k] to each clamped edge), then is clamped like a
       box. Slices are end-exclusive: the last row and column are never touched.
    4. Border reconciliation per axis: d = |source length - destination length|; a destination
       start clamped at 0 moves the source start by +d, a destination end clamped at the
       maximum moves the source end by -d.
    5. Empty destination: nothing. Reconciled source empty or of another shape than the
       destination: the destination is set to 0. Otherwise it gets the partner's source box,
       read from the batch as it was when the op started (a patch pasted at k = 0 is never
       the source of k = 1, nor of another sample).
    6. 'reference': x indexes the rows and y the columns (the released code), own and partner
       boxes alike, with the clamps of step 1; slices past the image's own size are cut there
       (Python slicing), so on a crop taller than wide a column box at y >~ W is narrow at the
       right border or gone, and a source and destination cut differently zero-fill.
       'corrected': y indexes the rows and x the columns, each clamped to its own axis, i.e.
       the same routine with (x, y) swapped on input and the clamps following the axes (on a
       square crop exactly the swapped input); nothing is ever cut, so it never zero-fills.

    Args:
        images: [N, C, H, W]; joints_px: [N, J, 2] (x, y) centres in image pixels.
        generator: draw source. mode: 'reference' (x is the row, y the column: the released
            code) or 'corrected' (true geometry), see step 6.
        k: pastes per sample (0 returns a copy). scale: multiplies the jitter and half sizes.
    Draw order: jitter randn [N, J, 2], half sizes randint(10, 20) [N, J, 2] (both indexed
    (row, column) after the mode's swap), partner randint(0, N) [N], own channels
    randint(0, J) [N, K], partner channels randint(0, J) [N, K].
    """
    check_mode(mode)
    if k <= 0:
        return images.clone()
    n, _, height, width = images.shape
    num_joints, device = joints_px.shape[1], images.device
    jitter = JITTER * draw(generator, "randn", (n, num_joints, 2), device)
    half = draw(generator, "randint", (n, num_joints, 2), device, HALF_LOW, HALF_HIGH)
    partner = draw(generator, "randint", (n,), device, 0, n)
    own = draw(generator, "randint", (n, k), device, 0, num_joints)
    other = draw(generator, "randint", (n, k), device, 0, num_joints)
    if scale != 1.0:
        jitter = jitter * scale
    half = _scaled_half(half, scale)

    # (row, column) of each joint and the bounds its box is clamped to. The released code
    # clamps x to [0, W-1] and y to [0, H-1], the bounds of the axes they name, but indexes
    # the rows with x and the columns with y (the quirk); 'corrected' indexes the rows with y.
    if mode == "reference":
        points, row_max, col_max = joints_px.float(), width - 1, height - 1
    else:
        points, row_max, col_max = joints_px.float().flip(-1), height - 1, width - 1
    centre = torch.trunc(points + jitter).long()  # [N, J, 2]
    box_lo = _clamp_rc(centre - half, row_max, col_max)
    box_hi = _clamp_rc(centre + half, row_max, col_max)

    source = images[partner]  # the partners' crops at op entry (never the pasted output)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    zero = torch.zeros((), dtype=torch.long, device=device)
    out = images
    for i in range(k):
        c_own = centre.gather(1, own[:, i].view(n, 1, 1).expand(n, 1, 2)).squeeze(1)  # [N, 2]
        c_p, lo_p, hi_p = (t[partner, other[:, i]] for t in (centre, box_lo, box_hi))
        start = c_own - (c_p - lo_p)  # unclamped destination, the partner box's extents
        end = c_own + (hi_p - c_p)
        dst_lo = _clamp_rc(start, row_max, col_max)
        dst_hi = _clamp_rc(end, row_max, col_max)
        # Border reconciliation on the clamped numbers. The unclamped destination is as long as
        # the clamped source box, which is at most the bound: its start and end are never both
        # clamped, so the moved source matches the clamped destination.
        delta = ((hi_p - lo_p) - (dst_hi - dst_lo)).abs()
        src_lo = lo_p + torch.where(start < dst_lo, delta, zero)  # start clamped at 0
        src_hi = hi_p - torch.where(end > dst_hi, delta, zero)  # end clamped at the bound
        # The slices themselves stop at the image's own size: in 'reference' the columns
        # (indexed by y, clamped to H-1) run past W on a crop taller than wide, so the source
        # and destination slices can be cut differently. That mismatch, or an empty source,
        # is the released code's zero-fill; an empty destination is its skip. ('corrected'
        # clamps inside the image: nothing is cut, every drawn box pastes or is skipped.)
        dst_lo, dst_hi, src_lo, src_hi = (_clamp_rc(t, height, width)
                                          for t in (dst_lo, dst_hi, src_lo, src_hi))
        dst_len = dst_hi - dst_lo  # >= 0: clamping keeps start <= end
        src_len = (src_hi - src_lo).clamp(min=0)  # a slice with end < start is empty
        filled = (dst_len > 0).all(-1)  # an empty destination (either axis) changes nothing
        copy = filled & (src_len == dst_len).all(-1)
        box = _span(dst_lo[:, 0], dst_hi[:, 0], height)[:, :, None] \
            & _span(dst_lo[:, 1], dst_hi[:, 1], width)[:, None, :]  # [N, H, W]
        # the partner's pixels shifted so that the source box lands on the destination box
        shift = src_lo - dst_lo  # [N, 2]
        r_idx = (rows + shift[:, :1]).clamp(0, height - 1)  # [N, H]
        c_idx = (cols + shift[:, 1:]).clamp(0, width - 1)  # [N, W]
        patch = source.gather(2, r_idx[:, None, :, None].expand_as(source))
        patch = patch.gather(3, c_idx[:, None, None, :].expand_as(source))
        out = torch.where((box & copy.view(n, 1, 1)).unsqueeze(1), patch, out)
        out = out.masked_fill((box & (filled & ~copy).view(n, 1, 1)).unsqueeze(1), 0)
    return out


# ------------------------------------------------------------------ CO / CM: random holes
def hole_mask(n: int, height: int, width: int, holes: int, generator: Source,
              device: Device, mode: str = "reference", scale: float = 1.0) -> torch.Tensor:
    """Union of ``holes`` random holes per sample, [N, H, W] bool (True = in a hole).

    Per hole: centre (row, column) uniform, half sizes in {10..19} per axis; rows
    [cy - hy, cy + hy) and columns [cx - hx, cx + hx) clamped to the bounds, end-exclusive.
    'reference' swaps the bounds as the released code does: row centres in [0, W) clamped to
    [0, W], column centres in [0, H) clamped to [0, H]; the mask then keeps the image's H rows
    and W columns (a hole starting at column >= W vanishes). 'corrected': [0, H) / [0, H] for
    rows, [0, W) / [0, W] for columns.
    Draw order: row centres randint(0, row bound) [N, holes], column centres
    randint(0, column bound) [N, holes], half sizes randint(10, 20) [N, holes, 2] (row, column).
    """
    check_mode(mode)
    row_max, col_max = (width, height) if mode == "reference" else (height, width)
    cy = draw(generator, "randint", (n, holes), device, 0, row_max)
    cx = draw(generator, "randint", (n, holes), device, 0, col_max)
    half = _scaled_half(draw(generator, "randint", (n, holes, 2), device, HALF_LOW, HALF_HIGH),
                        scale)
    y0, y1 = (cy - half[..., 0]).clamp(0, row_max), (cy + half[..., 0]).clamp(0, row_max)
    x0, x1 = (cx - half[..., 1]).clamp(0, col_max), (cx + half[..., 1]).clamp(0, col_max)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_y = (rows >= y0.unsqueeze(-1)) & (rows < y1.unsqueeze(-1))  # [N, holes, H]
    in_x = (cols >= x0.unsqueeze(-1)) & (cols < x1.unsqueeze(-1))  # [N, holes, W]
    # union over the holes: the count of holes covering each pixel, one batched product
    return torch.bmm(in_y.transpose(1, 2).float(), in_x.float()) > 0


def random_cutout(images: torch.Tensor, generator: Source = None, mode: str = "reference",
                  holes: int = 5, scale: float = 1.0) -> torch.Tensor:
    """CO: ``holes`` random holes per sample set to 0 (the mean colour); new [N, C, H, W].
    Geometry and draw order: ``hole_mask``. 0 holes returns a copy."""
    check_mode(mode)
    if holes <= 0:
        return images.clone()
    n, _, height, width = images.shape
    mask = hole_mask(n, height, width, holes, generator, images.device, mode, scale)
    return images.masked_fill(mask.unsqueeze(1), 0)


def cutmix_holes(images: torch.Tensor, generator: Source = None, mode: str = "reference",
                 holes: int = 2, scale: float = 1.0) -> torch.Tensor:
    """CM: holes as CO, filled with a partner crop's pixels at the same place; new [N, C, H, W].

    Partner = one random permutation of the batch (a crop may be its own partner: its holes
    then change nothing). The pixels come from the batch at op entry, so a partner's own holes
    do not carry over within one op. Targets and joint weights are not mixed (unlike
    ``batch.cutmix``). Draw order: permutation randperm(N), then ``hole_mask``'s draws.
    0 holes returns a copy and draws nothing.
    """
    check_mode(mode)
    if holes <= 0:
        return images.clone()
    n, _, height, width = images.shape
    perm = draw(generator, "randperm", (n,), images.device)
    mask = hole_mask(n, height, width, holes, generator, images.device, mode, scale)
    return torch.where(mask.unsqueeze(1), images[perm], images)


# ------------------------------------------------------------------ MU: mixup
def beta_draw(generator: Source, a: float, b: float, device: Device,
              candidates: int = BETA_CANDIDATES) -> torch.Tensor:
    """One Beta(a, b) value (a 0-d float32 tensor) from uniform draws only, so that it replays.

    Johnk's method (for a, b <= 1): with U, V uniform, X = U^(1/a), Y = V^(1/b); given
    X + Y <= 1, X / (X + Y) ~ Beta(a, b). A rejection loop would make the number of draws
    depend on values, so ``candidates`` pairs are drawn at once (rand [2, candidates]) and the
    first accepted one is used. A pair is accepted with probability
    Gamma(a+1) Gamma(b+1) / Gamma(a+b+1) (0.95 for a = b = 0.2), so all 16 are rejected with
    probability about 1e-21; then the first candidate's ratio is used. Computed in logs:
    U^5 underflows float32 for small U.
    """
    if not (0 < a <= 1 and 0 < b <= 1):
        raise ValueError(f"beta_draw needs 0 < a, b <= 1 (Johnk's method), got {a}, {b}")
    u = draw(generator, "rand", (2, candidates), device)
    logs = u.clamp(min=torch.finfo(u.dtype).tiny).log()  # rand can return exactly 0
    lx, ly = logs[0] / a, logs[1] / b
    total = torch.logaddexp(lx, ly)  # log(X + Y)
    accept = total <= 0
    # argmax returns the first maximal index: the first accepted candidate (0 if none is)
    first = accept.to(torch.uint8).argmax()
    return (lx - total)[first].exp()


def mixup_batch(images: torch.Tensor, generator: Source = None, alpha: float = MIXUP_ALPHA,
                spread: float = MIXUP_SPREAD) -> torch.Tensor:
    """MU: x <- lam x + (1 - lam) x[perm] with one lam = 1 - spread * Beta(alpha, alpha) for the
    whole batch (in (0.75, 1] as released) and perm one random permutation; new [N, C, H, W].
    Targets are not mixed (unlike ``batch.mixup``). No mode: the released MU has no axis quirk.
    Draw order: ``beta_draw`` (rand [2, 16]), then randperm(N).
    """
    lam = 1.0 - spread * beta_draw(generator, alpha, alpha, images.device)
    perm = draw(generator, "randperm", (images.shape[0],), images.device)
    lam = lam.to(images.dtype)
    return lam * images + (1 - lam) * images[perm]


# ------------------------------------------------------------------ composites
def joco(images: torch.Tensor, joints_px: torch.Tensor, generator: Source = None,
         mode: str = "reference", jo: int = 2, co: int = 5, scale: float = 1.0) -> torch.Tensor:
    """JOCO: ``keypoint_cut_occlusion`` (``jo`` pastes), then ``random_cutout`` (``co`` holes)
    on its output; draws in that order."""
    out = keypoint_cut_occlusion(images, joints_px, generator, mode, jo, scale)
    return random_cutout(out, generator, mode, co, scale)


def jccm(images: torch.Tensor, joints_px: torch.Tensor, generator: Source = None,
         mode: str = "reference", jc: int = 5, cm: int = 2,
         joint_mask: Optional[torch.Tensor] = None, scale: float = 1.0) -> torch.Tensor:
    """JCCM: Joint Cutout (``batch.joint_cutout``, ``jc`` boxes, same mode; ``joint_mask`` only
    in 'corrected'), then ``cutmix_holes`` (``cm`` holes: 2 in the single-network code, 5 in the
    dual-network code) on its output, so the partners carry their own Joint Cutout boxes."""
    out = joint_cutout(images, joints_px, jc, generator, mode, joint_mask, scale)
    return cutmix_holes(out, generator, mode, cm, scale)


__all__: Tuple[str, ...] = ("keypoint_cut_occlusion", "hole_mask", "random_cutout",
                            "cutmix_holes", "beta_draw", "mixup_batch", "joco", "jccm",
                            "check_mode")

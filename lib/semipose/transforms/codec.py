"""The heatmap codec: joints -> Gaussian targets (encode), heatmaps -> image-pixel keypoints
(decode), with the settings of both built once from the config.

Encoding settings come from MODEL.* (crop and heatmap size, sigma, target type) and
LOSS.USE_TARGET_WEIGHT; decoding settings from TEST.* (flip test, flipped-heatmap shift,
sub-pixel refinement). ``Codec.from_cfg`` is the one place that reads the MODEL.* target keys and
the TEST.* decode keys; everything else takes a ``Codec`` and asks it. The arithmetic lives in
``transforms/heatmap.py`` (encode, argmax, quarter-offset shift, DARK, flip back,
back-projection); the codec only chooses and delegates, so each formula exists once and the
numbers are those of the functions it calls.

Shapes: N samples, J joints, heatmaps of h rows and w columns; sizes are (w, h).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from semipose.errors import ConfigError
from semipose.transforms.heatmap import (Array, flip_back, gaussian_patch, gaussian_targets,
                                         generate_target, get_final_preds, shift_flipped)

Size = Tuple[int, int]
POST_TYPES = ("shift", "dark")
TARGET_TYPES = ("gaussian",)


def _size(value: Optional[Sequence[int]], name: str) -> Optional[Size]:
    if value is None:
        return None
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"{name} must be [width, height] with positive values, got "
                          f"{list(value)}")
    return size  # type: ignore[return-value]


@dataclass(frozen=True)
class Codec:
    """Heatmap encoding and decoding settings, and the operations that use them.

    Encoding (needed by ``encode`` / ``encode_batch`` only; None in a decode-only codec):
        image_size: crop (w, h) in pixels (MODEL.IMAGE_SIZE).
        heatmap_size: heatmap (w, h) (MODEL.EXTRA.HEATMAP_SIZE).
        sigma: Gaussian std in heatmap pixels (MODEL.EXTRA.SIGMA).
        target_type: 'gaussian', the only kind (MODEL.EXTRA.TARGET_TYPE).
        use_target_weight: the loss weighs joints by the target weight (LOSS.USE_TARGET_WEIGHT);
            carried for the loss, the encoder always returns the weight.
    Decoding (the defaults are the reference's):
        flip_test: average with the flipped image's heatmaps (TEST.FLIP_TEST).
        shift_heatmap: re-align flipped heatmaps by 1 px ('shift'), else 0.75 px by bilinear
            resampling ('grid') (TEST.SHIFT_HEATMAP).
        post_process: refine the argmax (TEST.POST_PROCESS).
        post_type: 'shift' (a quarter pixel towards the higher neighbour) or 'dark' (Taylor step
            on the log of the blurred map) (TEST.POST_TYPE).
        blur_kernel: DARK's Gaussian blur kernel (no config key; 11 as in DARK).
    """

    image_size: Optional[Size] = None
    heatmap_size: Optional[Size] = None
    sigma: Optional[float] = None
    target_type: str = "gaussian"
    use_target_weight: bool = True
    flip_test: bool = False
    shift_heatmap: bool = True
    post_process: bool = True
    post_type: str = "shift"
    blur_kernel: int = 11

    def __post_init__(self) -> None:
        # Normalise in place (frozen: object.__setattr__) so that equal settings compare equal
        # whether sizes came as lists, tuples or config tuples.
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("image_size", _size(self.image_size, "MODEL.IMAGE_SIZE"))
        set_("heatmap_size", _size(self.heatmap_size, "MODEL.EXTRA.HEATMAP_SIZE"))
        if self.sigma is not None:
            set_("sigma", float(self.sigma))
        for key in ("use_target_weight", "flip_test", "shift_heatmap", "post_process"):
            set_(key, bool(getattr(self, key)))
        set_("blur_kernel", int(self.blur_kernel))
        if self.target_type not in TARGET_TYPES:
            raise ConfigError(f"MODEL.EXTRA.TARGET_TYPE is {self.target_type!r}; only "
                              f"{' or '.join(map(repr, TARGET_TYPES))} targets exist")
        if self.post_type not in POST_TYPES:
            raise ConfigError(f"TEST.POST_TYPE must be 'shift' or 'dark', got "
                              f"{self.post_type!r}")

    @classmethod
    def from_cfg(cls, cfg: Any) -> "Codec":
        """The codec of a config: MODEL.IMAGE_SIZE, MODEL.EXTRA.HEATMAP_SIZE / SIGMA /
        TARGET_TYPE, LOSS.USE_TARGET_WEIGHT and TEST.FLIP_TEST / SHIFT_HEATMAP / POST_PROCESS /
        POST_TYPE. Build it once (dataset construction, validation, inference) and pass it on."""
        return cls(image_size=cfg.MODEL.IMAGE_SIZE, heatmap_size=cfg.MODEL.EXTRA.HEATMAP_SIZE,
                   sigma=cfg.MODEL.EXTRA.SIGMA, target_type=cfg.MODEL.EXTRA.TARGET_TYPE,
                   use_target_weight=cfg.LOSS.USE_TARGET_WEIGHT,
                   flip_test=cfg.TEST.FLIP_TEST, shift_heatmap=cfg.TEST.SHIFT_HEATMAP,
                   post_process=cfg.TEST.POST_PROCESS, post_type=cfg.TEST.POST_TYPE)

    def with_overrides(self, **changes: Any) -> "Codec":
        """A copy with the given settings replaced; None values keep the current setting (so a
        command-line flag left unset keeps the config's value)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    # ------------------------------------------------------------------------------ encode
    def encoding_settings(self) -> Tuple[Size, Size, float]:
        """(image_size, heatmap_size, sigma); a ValueError for a decode-only codec."""
        if self.image_size is None or self.heatmap_size is None or self.sigma is None:
            # a programming error (the caller built the codec without sizes): keep the traceback
            raise ValueError("this codec has no image_size / heatmap_size / sigma (built for "
                             "decoding only); build it with Codec.from_cfg(cfg) to encode targets")
        return self.image_size, self.heatmap_size, self.sigma

    def encode(self, joints: np.ndarray, joints_vis: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Targets of one person: joints [J, 2] crop pixels, joints_vis [J] (or [J, k]) ->
        (target float32 [J, h, w] with peak 1, target_weight float32 [J, 1]); see
        ``heatmap.generate_target`` for the rounding and the rejected joints."""
        image_size, heatmap_size, sigma = self.encoding_settings()
        return generate_target(joints, joints_vis, image_size, heatmap_size, sigma)

    def encode_batch(self, joints: torch.Tensor, joints_vis: torch.Tensor,
                     patch: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode`` for a batch on the joints' device: joints [N, J, 2], joints_vis [N, J] ->
        (target [N, J, h, w], target_weight [N, J, 1]), the same numbers. ``patch``: this
        codec's ``target_patch()`` as a tensor, to reuse one copy on the device."""
        image_size, heatmap_size, sigma = self.encoding_settings()
        return gaussian_targets(joints, joints_vis, image_size, heatmap_size, sigma, patch)

    def target_patch(self) -> np.ndarray:
        """The Gaussian patch every target is cut from (``heatmap.gaussian_patch``)."""
        return gaussian_patch(self.encoding_settings()[2])

    # ------------------------------------------------------------------------------ decode
    @property
    def shift_mode(self) -> str:
        """How flipped heatmaps are re-aligned: 'shift' (1 px) or 'grid' (0.75 px)."""
        return "shift" if self.shift_heatmap else "grid"

    def decode(self, heatmaps: np.ndarray, center: Any, scale: Any, rotation: Any = None
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Heatmaps [N, J, h, w] (numpy) of crops with boxes center/scale [N, 2] (rotation [N]
        degrees or None) -> (keypoints float32 [N, J, 2] in image pixels, maxvals [N, J, 1]):
        argmax, the refinement of ``post_process``/``post_type``, then the inverse crop affine."""
        return get_final_preds(heatmaps, center, scale, rotation, post_process=self.post_process,
                               post_type=self.post_type, blur_kernel=self.blur_kernel)

    @staticmethod
    def flip_back(heatmaps: Array, flip_pairs: Sequence[Sequence[int]]) -> Array:
        """Mirror the width and swap left/right channels of heatmaps [N, J, h, w] (numpy or
        torch); applying it twice gives the input back."""
        return flip_back(heatmaps, flip_pairs)

    def unflip(self, flipped: Array, flip_pairs: Sequence[Sequence[int]]) -> Array:
        """The heatmaps of a horizontally flipped input, put back in the unflipped frame:
        ``flip_back``, then the ``shift_mode`` re-alignment (mirrored heatmaps sit 0.75 px left
        of the plain ones under the pixel-centre convention)."""
        return shift_flipped(flip_back(flipped, flip_pairs), self.shift_mode)

    def merge_flip(self, plain: torch.Tensor, flipped: torch.Tensor,
                   flip_pairs: Sequence[Sequence[int]]) -> torch.Tensor:
        """The flip test's heatmaps: the mean of the plain ones and the unflipped flipped ones."""
        return (plain + self.unflip(flipped, flip_pairs)) * 0.5

    def describe(self) -> str:
        """The decode settings that change the numbers, for results.md and log lines."""
        on = lambda v: "on" if v else "off"  # noqa: E731
        refine = self.post_type if self.post_process else "off"
        return (f"flip test {on(self.flip_test)}, shift heatmap {on(self.shift_heatmap)}, "
                f"sub-pixel refinement {refine}")

"""Image repairs tried on a region where a code is likely but the plain read failed.

Each one answers a way a gate camera fails, and each was kept because it rescued codes
on the labelled set that nothing cheaper did (``bench/camera.py`` prints which try read
what):

* ``unsharp``, then ``deblur`` (stronger, wider): a fixed-focus lens and a pass held
  too close -- defocus blur;
* ``local_contrast``: glare from a lamp, or dusk -- CLAHE after a light denoise;
* ``upscale``: a pass held far away, modules of two pixels or less;
* ``stretch``: a dark, noisy frame -- smooth, then stretch the 1st..99th percentile to full range.

Light-on-dark codes (a phone in dark mode) need no repair: the backends try the inverted
image themselves.  Repairs work on a region of interest, never on the whole frame, so a
try costs a fraction of a millisecond to a few.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DEFAULT_TRIES", "TRIES", "Try"]


@dataclass(frozen=True, slots=True)
class Try:
    name: str
    apply: Callable[[np.ndarray], np.ndarray]
    scale: float = 1.0
    """How much larger the repaired image is than the region, to map positions back."""
    max_side: int | None = None
    """Skip regions whose longer side exceeds this (upscaling a large region costs much and helps little)."""


def _unsharp(region: np.ndarray) -> np.ndarray:
    sigma = max(1.5, min(region.shape[:2]) / 90)
    return cv2.addWeighted(region, 2.5, cv2.GaussianBlur(region, (0, 0), sigma), -1.5, 0)


def _deblur(region: np.ndarray) -> np.ndarray:
    sigma = max(2.0, min(region.shape[:2]) / 60)
    return cv2.addWeighted(region, 3.0, cv2.GaussianBlur(region, (0, 0), sigma), -2.0, 0)


def _local_contrast(region: np.ndarray) -> np.ndarray:
    # A CLAHE object keeps scratch buffers: one per call keeps decoders on several threads apart.
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4))
    return clahe.apply(cv2.GaussianBlur(region, (0, 0), 1.0))


def _upscale(region: np.ndarray) -> np.ndarray:
    return cv2.resize(region, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)


def _stretch(region: np.ndarray) -> np.ndarray:
    smooth = cv2.GaussianBlur(region, (0, 0), 1.2)
    lo, hi = np.percentile(smooth, (1, 99))
    span = max(float(hi - lo), 1.0)
    return cv2.convertScaleAbs(smooth, alpha=255.0 / span, beta=-float(lo) * 255.0 / span)


TRIES = {
    t.name: t
    for t in (
        Try("unsharp", _unsharp),
        Try("deblur", _deblur),
        Try("local_contrast", _local_contrast),
        Try("upscale", _upscale, 2.0, max_side=480),
        Try("stretch", _stretch),
    )
}

DEFAULT_TRIES = ("unsharp", "local_contrast", "upscale", "stretch", "deblur")
"""In order of how many codes each rescued on the labelled set, cheapest first among equals."""

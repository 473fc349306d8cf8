"""A labelled set of camera frames, the same for a given seed, for measuring QR decoders.

Every frame carries what is in it (the exact payload bytes of each pass), the condition
it was drawn in, and whether a person could still read it.  A decoder is then judged on
two numbers per condition: how many of the passes in view it read (detection rate), and
how many payloads it reported that were not there (false reads, which must be zero).

Payloads are a mix of what a gate sees: 12-digit codes (QR version 1), signed passes of
40 to 300 digits in numeric mode (versions 2 to 8), and now and then a binary byte-mode
payload, to keep every decoder honest about bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.camera import CONDITIONS, Scene, SceneRenderer, scene_for

__all__ = ["LabelledFrame", "generate", "random_payload"]

DEFAULT_SEED = 20240605
POOL = 64


@dataclass(frozen=True, slots=True)
class LabelledFrame:
    image: np.ndarray
    """BGR uint8, as a camera delivers it."""
    condition: str
    payloads: tuple[bytes, ...]
    """Exactly the bytes of every pass in view (empty for an empty scene)."""
    readable: bool
    """Whether a person could still read every pass in it (false only for ``beyond``)."""
    scene: Scene


def random_payload(rng: random.Random) -> bytes:
    """A pass payload: usually digits of a typical length, sometimes binary."""
    roll = rng.random()
    if roll < 0.3:
        return str(rng.randrange(10**11, 10**12)).encode()
    if roll < 0.92:
        digits = rng.choice((40, 80, 140, 300))
        return "".join(rng.choice("0123456789") for _ in range(digits)).encode()
    return bytes(rng.randrange(256) for _ in range(rng.randrange(16, 64)))


def generate(
    per_condition: int = 24,
    *,
    seed: int = DEFAULT_SEED,
    width: int = 640,
    height: int = 480,
    conditions: Sequence[str] = (*CONDITIONS, "beyond"),
) -> Iterator[LabelledFrame]:
    """``per_condition`` frames in each condition, drawn in order; the same for the same arguments."""
    renderer = SceneRenderer(width, height, seed=seed)
    # A pool of passes, reused across frames: encoding a symbol (segno scores all eight
    # masks) costs more than drawing the frame it is in.
    pool_rng = random.Random(seed)
    pool = [random_payload(pool_rng) for _ in range(POOL)]
    for index, condition in enumerate(conditions):
        rng = random.Random(f"{seed}:{condition}")
        noise = np.random.default_rng([seed, index])
        for _ in range(per_condition):
            payloads = (rng.choice(pool), rng.choice(pool))
            if payloads[0] == payloads[1]:  # two identical passes in one frame are one scan
                payloads = (payloads[0],)
            scene, readable = scene_for(condition, payloads, rng)
            shown = tuple(code.payload for code in scene.codes)
            yield LabelledFrame(renderer.render(scene, noise), condition, shown, readable, scene)

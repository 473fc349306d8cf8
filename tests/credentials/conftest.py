"""Card lists for the credential tests: deterministic, varied, cheap to build."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from protocol.credentials import CardEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_cards(n: int, seed: int = 1, *, tag: str = "") -> list[CardEntry]:
    rng = random.Random(seed)
    cards = []
    for i in range(n):
        windowed = i % 3 == 0
        cards.append(
            CardEntry(
                credential=f"wiegand26:{i % 256}:{i}" if i % 2 else f"em4100:{i:010X}",
                holder=f"Holder {rng.randrange(10**6)}{tag}",
                unit=f"B{rng.randrange(40)}-{rng.randrange(3000)}",
                valid_from=T0 + timedelta(days=rng.randrange(100)),
                valid_until=T0 + timedelta(days=400 + rng.randrange(300)),
                window_start=360 if windowed else None,
                window_end=1320 if windowed else None,
                zones=rng.randrange(1, 256),
                photo_digest=f"{rng.getrandbits(128):032x}" if i % 4 else None,
            )
        )
    return cards


@pytest.fixture
def cards() -> Callable[..., list[CardEntry]]:
    """``cards(n, seed=1, tag="")``: a deterministic list of ``n`` varied cards."""
    return make_cards

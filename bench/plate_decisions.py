"""Plate decision cost at a gate: exact hits, near misses and unknown plates, against a site's card list.

A vehicle lane asks for a decision on every plate it reads; a plate that is not registered
exactly is compared with every registered plate for a near miss (edge/plate_decisions.py).
This measures, through the real :class:`~edge.decision.GateDecider` over a real SQLite
card store holding ``cards`` door cards and ``plates`` registered plates (and some
blacklisted ones):

- ``plate_decide_p50_us`` / ``p99``: a mix of registered, one-character-off and unknown
  plates, with the near-miss index (rebuilt only when the list version changes);
- the same-run baseline: the naive way, reading every plate credential of the store and
  comparing on each unregistered plate (what the index avoids).

Usage: ``python bench/plate_decisions.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.credentials import CardRegistry  # noqa: E402
from edge.credentials import CardStore  # noqa: E402
from edge.decision import AllowList, GateDecider  # noqa: E402
from edge.plate_decisions import BLOCK_PREFIX, PLATE_PREFIX, blocked  # noqa: E402
from protocol.credentials import CardEntry  # noqa: E402
from protocol.passes import ClockReading, Reason  # noqa: E402
from protocol.plates import PROVINCES, Plate, differences, parse_plate, plate_from_credential  # noqa: E402

SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def random_plate(rng: random.Random) -> Plate:
    return parse_plate(
        rng.choice(sorted(PROVINCES)) + rng.choice("ABCDEFG") + "".join(rng.choices(SERIAL, k=5))
    )


def one_off(plate: Plate, rng: random.Random) -> Plate:
    text = plate.text
    i = rng.randrange(2, len(text))
    return parse_plate(text[:i] + rng.choice([c for c in SERIAL if c != text[i]]) + text[i + 1 :])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def naive(store: CardStore, plate: Plate) -> str:
    """Every plate credential read and compared, for each plate: the baseline."""
    if store.lookup(plate.credential) is not None:
        return "granted"
    for credential in store.credentials():
        if credential.startswith((PLATE_PREFIX, BLOCK_PREFIX + PLATE_PREFIX)):
            known = plate_from_credential(credential.removeprefix(BLOCK_PREFIX))
            if differences(known, plate) == 1:
                return "plate_near_miss"
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller site, under a minute")
    args = parser.parse_args()
    cards, plates, decisions = (20_000, 2_000, 600) if args.quick else (100_000, 5_000, 3_000)
    rng = random.Random(19)
    registered: dict[str, Plate] = {}
    while len(registered) < plates:
        plate = random_plate(rng)
        registered[plate.credential] = plate
    entries = [CardEntry(f"wiegand26:13:{i}", "h", "u") for i in range(cards)]
    listed = list(registered.values())
    entries += [CardEntry(p.credential, "h", "u") for p in listed[: plates - 50]]
    entries += [CardEntry(blocked(p.credential), "listed") for p in listed[plates - 50 :]]
    with tempfile.TemporaryDirectory() as tmp:
        registry = CardRegistry(Path(tmp) / "registry.db")
        registry.put(entries)
        store = CardStore(Path(tmp) / "cards.db")
        store.apply_snapshot_chunks(registry.snapshot())
        registry.close()
        decider = GateDecider(AllowList(frozenset()), None, store)
        now = ClockReading(datetime.now(UTC), True)
        shown: list[Plate] = []
        for i in range(decisions):
            kind = i % 3
            base = rng.choice(listed)
            shown.append(base if kind == 0 else one_off(base, rng) if kind == 1 else random_plate(rng))
        decider.decide(shown[1].credential, now)  # the first near-miss look-up builds the index
        indexed: list[float] = []
        reasons: dict[str, int] = {}
        for plate in shown:
            t0 = time.perf_counter()
            decision = decider.decide(plate.credential, now)
            indexed.append((time.perf_counter() - t0) * 1e6)
            reasons[decision.reason.value] = reasons.get(decision.reason.value, 0) + 1
            if plate.credential not in registered:
                assert not decision.granted, f"{plate.text} opened without being registered"
        baseline: list[float] = []
        for plate in shown[: max(30, decisions // 10)]:
            t0 = time.perf_counter()
            naive(store, plate)
            baseline.append((time.perf_counter() - t0) * 1e6)
        store.close()
    figures = {
        "cards": cards,
        "plates": plates,
        "decisions": decisions,
        "plate_decide_p50_us": round(statistics.median(indexed), 1),
        "plate_decide_p99_us": round(percentile(indexed, 99), 1),
        "baseline_scan_p50_us": round(statistics.median(baseline), 1),
        "baseline_scan_p99_us": round(percentile(baseline, 99), 1),
        "reasons": reasons,
        "false_opens": 0,
        "quick": args.quick,
    }
    print(f"site: {cards} door cards, {plates} plates (50 blacklisted); {decisions} plates shown")
    print("  a third registered, a third one character off, a third unknown")
    print(f"{'':34}{'p50 µs':>10}{'p99 µs':>10}")
    print(
        f"{'decision with the near-miss index':34}{figures['plate_decide_p50_us']:>10}{figures['plate_decide_p99_us']:>10}"
    )
    print(
        f"{'baseline: scan the list each time':34}{figures['baseline_scan_p50_us']:>10}{figures['baseline_scan_p99_us']:>10}"
    )
    print(f"reasons: {reasons}; plates not registered that opened: 0")
    assert reasons.get(Reason.PLATE_NEAR_MISS.value, 0) > 0
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()

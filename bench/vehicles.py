"""Vehicle lane benchmark: plate reading, false opens, loop-to-barrier latency and an idle lane's CPU.

Everything runs through the real code: the packaged PP-OCRv4 models (rapidocr-onnxruntime),
drivers/plate_reader.py, the real :class:`~edge.decision.GateDecider` over a real card
store holding the registered plates, and for the latency the whole
:class:`~edge.agent.GateAgent` with a lane on gpiozero's mock pins, a realtime synthetic
lane camera at 10 fps and the simulated loop detector.

1. ``plate_read_rate``: the synthetic set (simulator/plates.py: blue, yellow and green
   plates under plain, perspective, blur, glare and night conditions, plus empty lanes),
   each frame read alone (a single frame, no merge across frames: stricter than the lane,
   which wants two agreeing frames), cropped to the lane's region; exact plate or not.
2. ``plate_false_open``: every reading the decider would grant although it is not the
   plate in the picture (a misread turning into a registered plate), or a grant on an
   empty lane.  Half the set's plates are registered, with 200 other plates.
3. ``vehicle_to_relay_p95_ms``: the loop detector's "present" edge to the open relay's
   pulse, for registered cars arriving one after another (confirm = 2 agreeing frames).
4. ``idle_lane_cpu_cores``: CPU time of the whole agent process per second of wall time
   with an empty lane at 10 fps (gated: the model is never run).
5. Same-run baseline: recognition on every full frame, with neither gating nor cropping --
   its read rate and time per frame on the set, and its CPU on the same empty lane.

Usage: ``python bench/vehicles.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simulator  # noqa: F401  (registers sim:// cameras)
from drivers.plate_reader import LaneRecogniser, PlateRecogniser, VehicleReadings, candidates
from edge.agent import GateAgent
from edge.config import EdgeConfig
from edge.credentials import CardStore
from edge.decision import AllowList, CardPolicy, GateDecider
from protocol.credentials import CardEntry, encode_snapshot
from protocol.plates import parse_plate
from simulator.plates import LANE_REGION, LoopDetector, PlateCamera, plate_set, random_plate


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decider_with(registered: list[str], folder: Path) -> GateDecider:
    store = CardStore(folder / "cards.db")
    entries = [
        CardEntry(parse_plate(p).credential, holder=f"car {i}", unit=f"{i % 30}-{i % 7}")
        for i, p in enumerate(registered)
    ]
    store.apply_snapshot_chunks(encode_snapshot(1, entries))
    return GateDecider(AllowList(frozenset()), None, store, CardPolicy(UTC))


def read_set(
    recogniser: PlateRecogniser, frames: list, *, crop: bool
) -> tuple[list[str | None], list[float]]:
    x, y, w, h = LANE_REGION
    texts: list[str | None] = []
    times: list[float] = []
    for frame in frames:
        grey = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        if crop:
            grey = grey[y : y + h, x : x + w]
        started = time.perf_counter()
        merged = VehicleReadings(confirm=1).add(candidates(recogniser.texts(grey)))
        times.append(time.perf_counter() - started)
        texts.append(merged[0].text if merged else None)
    return texts, times


def judge(frames: list, texts: list[str | None], decider: GateDecider) -> dict[str, Any]:
    reading = _Now(datetime.now(UTC))
    by_condition: dict[str, list[int]] = {}
    misreads = false_open = 0
    for frame, text in zip(frames, texts, strict=True):
        counts = by_condition.setdefault(frame.condition, [0, 0])
        counts[1] += 1
        counts[0] += text == frame.plate
        if text is not None and text != frame.plate:
            misreads += 1
        if text is not None:
            decision = decider.decide(parse_plate(text).credential, reading, "in")
            if decision.granted and text != frame.plate:
                false_open += 1
    plates = [f for f in frames if f.plate is not None]
    read = sum(1 for f, t in zip(frames, texts, strict=True) if f.plate is not None and t == f.plate)
    return {
        "rate": read / len(plates),
        "by_condition": {c: round(ok / n, 3) for c, (ok, n) in by_condition.items()},
        "misreads": misreads,
        "false_open": false_open,
    }


class _Now:
    """A trusted clock reading for the decider (the shape edge.clock gives it)."""

    def __init__(self, wall: Any) -> None:
        self.wall = wall
        self.trusted = True
        self.error_s = 0.0


def lane_config(folder: Path, residents: list[str], camera: dict[str, Any]) -> EdgeConfig:
    decider_with(residents, folder).cards.close()  # the gate's card list, as the console's sync leaves it
    return EdgeConfig.model_validate(
        {
            "site": "bench",
            "gate": "carpark",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(folder / "outbox.db")},
            "access": {"repeat_s": 0.5},
            "cards": {"store": str(folder / "cards.db")},
            "clock": {"trust": "trusted"},
            "metrics": {"listen": ""},
            "lane": [
                {
                    "name": "car-in",
                    "direction": "in",
                    "barrier": {"open": "GPIO5", "close": "GPIO6", "loop": "GPIO13", "pulse_s": 0.2},
                    "camera": {"source": "sim://plates?fps=10", **camera},
                }
            ],
        }
    )


def latency(folder: Path, cars: int) -> tuple[list[float], int]:
    """Loop present → open pulse, in ms, for ``cars`` registered cars; and how many were opened."""
    from gpiozero.pins.mock import MockFactory

    rng = random.Random(3)
    plates = [random_plate(rng) for _ in range(cars)]
    factory = MockFactory()
    agent = GateAgent(lane_config(folder, plates, {"region": list(LANE_REGION)}), pin_factory=factory)
    lane = agent.lanes["car-in"]
    camera = agent.vehicles.recognisers["car-in"].camera._sim
    present_at: list[int] = []
    pulses: list[int] = []
    lane.presence_listeners.insert(0, lambda present, at: present and present_at.append(at))
    pulse = lane.hardware.pulse_open

    def timed_pulse() -> bool:
        pulses.append(time.monotonic_ns())
        return pulse()

    lane.hardware.pulse_open = timed_pulse  # type: ignore[method-assign]
    loop = LoopDetector(camera, factory.pin("GPIO13"))
    agent.start()
    loop.start()
    try:
        time.sleep(1.0)
        for plate in plates:
            camera.arrive(plate, dwell_s=2.5)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and (
                camera.vehicle_at(camera.now_s()) is not None or len(pulses) < len(present_at)
            ):
                time.sleep(0.05)
            time.sleep(0.3)
    finally:
        loop.stop()
        agent.stop(drain_s=0)
    opened = min(len(pulses), len(present_at))
    return [(pulses[i] - present_at[i]) / 1e6 for i in range(opened)], opened


def idle_cpu(folder: Path, seconds: float, camera: dict[str, Any]) -> tuple[float, int]:
    """CPU cores used by the agent process with an empty lane; and frames the model read."""
    from gpiozero.pins.mock import MockFactory

    agent = GateAgent(lane_config(folder, [], camera), pin_factory=MockFactory())
    recogniser: LaneRecogniser = agent.vehicles.recognisers["car-in"]
    agent.start()
    try:
        time.sleep(1.5)  # start-up (model already loaded in the constructor) out of the measurement
        start_cpu, start_wall, frames0 = cpu_s(), time.monotonic(), recogniser.frames_recognised
        time.sleep(seconds)
        used = (cpu_s() - start_cpu) / (time.monotonic() - start_wall)
        frames = recogniser.frames_recognised - frames0
    finally:
        agent.stop(drain_s=0)
    return used, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller set and fewer cars (under a minute)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    per_condition, cars, idle_s = (8, 6, 3.0) if args.quick else (40, 30, 15.0)

    frames = plate_set(per_condition, seed=2026, empty=2 * per_condition)
    rng = random.Random(1)
    plated = [f.plate for f in frames if f.plate is not None]
    registered = plated[::2] + [random_plate(rng) for _ in range(200)]
    recogniser = PlateRecogniser()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        decider = decider_with(registered, folder)
        texts, times = read_set(recogniser, frames, crop=True)
        gated = judge(frames, texts, decider)
        full_texts, full_times = read_set(recogniser, frames, crop=False)
        full = judge(frames, full_texts, decider)
        decider.cards.close()
        (folder / "lat").mkdir()
        delays, opened = latency(folder / "lat", cars)
        (folder / "idle").mkdir()
        idle, idle_frames = idle_cpu(folder / "idle", idle_s, {"region": list(LANE_REGION)})
        every, every_frames = every_frame_cpu(recogniser, idle_s)

    p95 = (
        statistics.quantiles(delays, n=20)[18]
        if len(delays) >= 2
        else (delays[0] if delays else float("nan"))
    )
    rows = [
        ("frames in the set (plates + empty)", f"{len(plated)} + {len(frames) - len(plated)}"),
        ("plate read rate, gated + cropped", f"{gated['rate']:.3f}"),
        ("  by condition", json.dumps(gated["by_condition"], ensure_ascii=False)),
        ("  misreads / false opens", f"{gated['misreads']} / {gated['false_open']}"),
        ("  model time per frame, median", f"{1000 * statistics.median(times):.0f} ms"),
        ("baseline: full frame, read rate", f"{full['rate']:.3f}"),
        ("  misreads / false opens", f"{full['misreads']} / {full['false_open']}"),
        ("  model time per frame, median", f"{1000 * statistics.median(full_times):.0f} ms"),
        ("loop present -> open pulse, cars opened", f"{opened} of {cars}"),
        ("  median / p95", f"{statistics.median(delays):.0f} / {p95:.0f} ms" if delays else "-"),
        ("idle lane at 10 fps, gated: CPU cores", f"{idle:.3f} ({idle_frames} frames read)"),
        ("baseline: every full frame read: CPU cores", f"{every:.3f} ({every_frames} frames read)"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    result = {
        "plate_read_rate": round(gated["rate"], 4),
        "plate_misreads_opening": gated["false_open"],
        "plate_false_open": gated["false_open"],
        "plate_read_rate_by_condition": gated["by_condition"],
        "vehicle_to_relay_p95_ms": round(p95, 1),
        "vehicle_to_relay_median_ms": round(statistics.median(delays), 1) if delays else None,
        "cars_opened": opened,
        "cars": cars,
        "idle_lane_cpu_cores": round(idle, 4),
        "idle_lane_frames_recognised": idle_frames,
        "baseline_full_frame_read_rate": round(full["rate"], 4),
        "baseline_full_frame_false_open": full["false_open"],
        "baseline_full_frame_ms": round(1000 * statistics.median(full_times), 1),
        "cropped_frame_ms": round(1000 * statistics.median(times), 1),
        "baseline_ungated_cpu_cores": round(every, 4),
        "quick": args.quick,
    }
    print(json.dumps(result, ensure_ascii=False))


def every_frame_cpu(recogniser: PlateRecogniser, seconds: float) -> tuple[float, int]:
    """The baseline lane: recognition on every full frame (no gate, no region), an empty lane at 10 fps.

    The recogniser alone, without an agent around it: if anything, that flatters the baseline.
    """
    camera = PlateCamera(fps=10, realtime=True)
    lane = LaneRecogniser(
        camera,
        on_reading=lambda r: None,
        on_reject=lambda r: None,
        gate="none",
        recogniser=recogniser,
        max_frames=10**9,  # never give up: an ungated lane reads every frame for ever
    )
    lane.start()
    try:
        time.sleep(1.0)
        start_cpu, start_wall, frames0 = cpu_s(), time.monotonic(), lane.frames_recognised
        time.sleep(seconds)
        used = (cpu_s() - start_cpu) / (time.monotonic() - start_wall)
        frames = lane.frames_recognised - frames0
    finally:
        lane.close()
    return used, frames


if __name__ == "__main__":
    main()

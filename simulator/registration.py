"""The simulator's devices, registered with :mod:`drivers.devices` when the simulator is imported.

Production code never names the simulator; it looks these up by scheme.  The heavy modules
(OpenCV rendering, the door model) load only when a configuration actually asks for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers import devices


def _sim_camera(url: str) -> devices.ReopenableSource:
    from urllib.parse import urlsplit

    if urlsplit(url).netloc == "plates":  # sim://plates?...: a vehicle lane's camera
        from simulator.plates import plate_camera_from_url

        return plate_camera_from_url(url)
    from simulator.camera import camera_from_url

    return camera_from_url(url)


def _door_people(
    pin_factory: Any, pins: Any, d0: int | str, d1: int | str, settings: Mapping[str, Any]
) -> devices.SimulatedPeople:
    from simulator.door_scenario import DoorPeople, DoorScenario

    return DoorScenario(
        pin_factory,
        pins,
        d0,
        d1,
        list(settings["cards"]),
        DoorPeople(
            settings["people_per_min"],
            settings["unknown_share"],
            settings["exit_share"],
            settings["hold_open_share"],
            settings["force_share"],
        ),
        seed=settings.get("seed"),
    )


def _lane_loop(camera: Any, pin: Any) -> devices.SimulatedPeople:
    from simulator.plates import LoopDetector

    class _Loop:
        def __init__(self) -> None:
            self.detector = LoopDetector(camera, pin)

        def start(self) -> None:
            self.detector.start()

        def stop(self) -> None:
            self.detector.stop()

    return _Loop()


def register() -> None:
    devices.register_camera_scheme("sim", _sim_camera)
    devices.register_door_people(_door_people)
    devices.register_lane_loop(_lane_loop)

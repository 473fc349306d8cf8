"""Devices a configuration can name that production code must never import: the simulator's.

pyserial opens ``spy://`` or ``socket://`` through handlers a program adds to
``serial.protocol_handler_packages``; the library itself names none of them.  gatepost
does the same here: ``sim://`` cameras and the simulated people at a door exist only once
something has registered them, and the simulator does that when it is itself imported
(the demo, the tests, ``gatepost sim-gate``).  A gate installed from the wheel therefore
never loads the simulator, and a ``sim://`` source on such a gate is a typed error that
says what is missing, not a synthetic camera quietly standing in for the real one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from protocol.errors import GatepostError

__all__ = [
    "DeviceNotRegisteredError",
    "DoorPeopleFactory",
    "ReopenableSource",
    "SimulatedPeople",
    "camera_scheme",
    "door_people",
    "lane_loop",
    "register_camera_scheme",
    "register_door_people",
    "register_lane_loop",
]


class DeviceNotRegisteredError(GatepostError, LookupError):
    """A configuration names a device kind that nothing in this process has registered."""


class ReopenableSource(Protocol):
    """A camera source that survives reconnects: each ``reopen`` gives a capture of the same device."""

    def reopen(self) -> Any: ...


class SimulatedPeople(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


CameraOpener = Callable[[str], ReopenableSource]
"""Builds the device a camera URL names; raises ValueError for a malformed URL."""

DoorPeopleFactory = Callable[[Any, Any, "int | str", "int | str", Mapping[str, Any]], SimulatedPeople]
"""``(pin_factory, door_pins, d0, d1, settings)``: people who use a door on the agent's own pins."""

LaneLoopFactory = Callable[[Any, Any], SimulatedPeople]
"""``(simulated lane camera, loop pin)``: a loop detector that follows the cars the camera shows."""

_lock = threading.Lock()
_camera_schemes: dict[str, CameraOpener] = {}
_door_people: list[DoorPeopleFactory] = []
_lane_loop: list[LaneLoopFactory] = []

_HINT = "the simulator's devices are registered by importing simulator (gatepost demo, gatepost sim-gate)"


def register_camera_scheme(scheme: str, opener: CameraOpener) -> None:
    """Let camera sources ``<scheme>://…`` open through ``opener``; the last registration wins."""
    with _lock:
        _camera_schemes[scheme.lower()] = opener


def camera_scheme(scheme: str) -> CameraOpener:
    """The opener registered for ``scheme``; :class:`DeviceNotRegisteredError` if there is none."""
    with _lock:
        opener = _camera_schemes.get(scheme.lower())
    if opener is None:
        raise DeviceNotRegisteredError(f"no camera is registered for {scheme}:// in this process; {_HINT}")
    return opener


def register_door_people(factory: DoorPeopleFactory) -> None:
    with _lock:
        _door_people[:] = [factory]


def door_people() -> DoorPeopleFactory:
    """What ``[simulation]`` starts at a door; :class:`DeviceNotRegisteredError` if nothing registered it."""
    with _lock:
        factory = _door_people[0] if _door_people else None
    if factory is None:
        raise DeviceNotRegisteredError(f"[simulation] needs simulated people at the door; {_HINT}")
    return factory


def register_lane_loop(factory: LaneLoopFactory) -> None:
    with _lock:
        _lane_loop[:] = [factory]


def lane_loop() -> LaneLoopFactory:
    """The loop detector a simulated lane camera drives; :class:`DeviceNotRegisteredError` if none."""
    with _lock:
        factory = _lane_loop[0] if _lane_loop else None
    if factory is None:
        raise DeviceNotRegisteredError(f"a simulated lane needs the simulated loop detector; {_HINT}")
    return factory

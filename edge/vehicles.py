"""The gate agent's vehicle lanes: lanes, their recognisers and the LPR endpoint, wired to ``present()``.

Kept out of edge/agent.py so that the agent only asks for them: every plate, read by the
lane's own camera or pushed by an LPR camera, becomes one
``Presented(credential=plate.credential, kind="plate", reader=<lane>, direction=<lane's>)``
through the agent's one :meth:`~edge.agent.GateAgent.present` path, and the agent then
calls :meth:`edge.lane.Lane.access` with the decision.  A vehicle that leaves unread and a
refused push are events (``lane.plate_unread``, ``lpr.rejected``); refused pushes are
folded per camera and reason so that a misconfigured or hostile sender cannot fill the
outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.lane import Lane
from protocol import events as ev

if TYPE_CHECKING:
    from drivers.lpr_http import LprPush, LprRejected, LprServer
    from drivers.plate_reader import LaneRecogniser, PlateReading, PlateRejected
    from edge.agent import GateAgent

log = logging.getLogger("gatepost.edge.vehicles")

FOLD_S = 10.0
"""Refused pushes of one camera and reason within this long are one event (with a count)."""


class RejectionFolder:
    """At most one event per key per ``window_s``; the ones in between are counted into the next."""

    def __init__(self, record: Callable[[dict[str, Any]], None], window_s: float = FOLD_S) -> None:
        self._record = record
        self._window_ns = int(window_s * 1e9)
        self._last: dict[tuple[str, str], int] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], data: dict[str, Any], now_ns: int | None = None) -> bool:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            last = self._last.get(key)
            if last is not None and now_ns - last < self._window_ns:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now_ns
            suppressed = self._suppressed.pop(key, 0)
        self._record({**data, "suppressed": suppressed})
        return True


class VehicleLanes:
    """Everything of ``[[lane]]`` and ``[lpr]`` for one agent."""

    def __init__(self, agent: GateAgent) -> None:
        from drivers.barrier import BarrierHardware

        self.agent = agent
        self.lanes: dict[str, Lane] = {}
        self.recognisers: dict[str, LaneRecogniser] = {}
        self.server: LprServer | None = None
        self.simulated: list[Any] = []
        """Simulated loop detectors of sim:// lane cameras (started and stopped with the lanes)."""
        self.folder = RejectionFolder(lambda data: agent.record(ev.LPR_REJECTED, data))
        config = agent.config
        for lane_config in config.lane:
            hardware = BarrierHardware(lane_config.barrier, pin_factory=agent.pin_factory)
            try:
                lane = Lane(
                    lane_config.name,
                    lane_config.direction,
                    lane_config.behaviour,
                    hardware,
                    lambda type_, data: agent.record(type_, data),
                )
            except BaseException:
                hardware.close()
                raise
            self.lanes[lane.name] = lane
            if lane_config.camera is not None:
                self._build_recogniser(lane, lane_config.camera)
        if config.lpr is not None and config.lpr.cameras:
            self._build_server(config.lpr)

    def _build_recogniser(self, lane: Lane, camera: Any) -> None:
        from drivers.plate_reader import LaneRecogniser, PlateRecogniser

        recogniser = LaneRecogniser(
            camera.source,
            on_reading=lambda reading, name=lane.name: self._on_reading(name, reading),
            on_reject=lambda rejected, name=lane.name: self._on_unread(name, rejected),
            on_state=lambda state, detail, name=lane.name: self.agent._on_state(name, state, detail),
            on_presence=lane.vehicle_present if camera.gate == "change" else None,
            region=camera.region,
            gate=camera.gate,
            confirm=camera.confirm,
            min_confidence=camera.min_confidence,
            max_frames=camera.max_frames,
            recogniser=PlateRecogniser(threads=camera.threads),
            name=lane.name,
            width=camera.width,
            height=camera.height,
            fps=camera.fps,
        )
        if camera.gate == "loop":
            lane.presence_listeners.append(recogniser.vehicle_present)
        self.recognisers[lane.name] = recogniser
        simulated = getattr(recogniser.camera, "_sim", None)
        loop_pin = lane.hardware.pins.loop
        if simulated is not None and loop_pin is not None and _mock(self.agent.pin_factory):
            # A sim:// lane camera on mock pins (the demo, the tests): its loop detector follows
            # the cars it shows.  A real gate has neither, and the simulator is never imported.
            from drivers import devices

            try:
                self.simulated.append(devices.lane_loop()(simulated, self.agent.pin_factory.pin(loop_pin)))
            except devices.DeviceNotRegisteredError as exc:
                log.warning("lane %s: %s", lane.name, exc)

    def _build_server(self, lpr: Any) -> None:
        from drivers.lpr_http import LprCamera, LprServer

        cameras = {
            camera.name: LprCamera(
                camera.name,
                camera.lane,
                camera.format,
                camera.username,
                camera.password(),
                camera.min_confidence,
            )
            for camera in lpr.cameras
        }
        self.server = LprServer(
            lpr.listen,
            cameras,
            on_push=self._on_push,
            on_reject=self._on_push_rejected,
            max_body=lpr.max_body,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def devices(self) -> list[Any]:
        """What the agent starts and closes with its readers: plate sources first, so that they stop
        before the lanes whose arms they open (a lane's close lowers nothing: relays off, arm as it is)."""
        found: list[Any] = [*self.recognisers.values()]
        if self.server is not None:
            found.append(self.server)
        return [*found, *self.lanes.values(), *(_Simulated(loop) for loop in self.simulated)]

    # -- plates into present() -----------------------------------------------------------

    def present(
        self, lane_name: str, plate: Any, at_ns: int, image: bytes | None, confidence: float | None
    ) -> Any:
        from edge.agent import Presented

        lane = self.lanes[lane_name]
        return self.agent.present(
            Presented(
                credential=plate.credential,
                kind="plate",
                reader=lane_name,
                at_ns=at_ns,
                code=plate.text,
                direction=lane.direction,  # type: ignore[arg-type]
                image=image,
                confidence=confidence,
            )
        )

    def _on_reading(self, lane_name: str, reading: PlateReading) -> None:
        self.present(lane_name, reading.plate, reading.at_ns, reading.crop, round(reading.confidence, 3))

    def _on_unread(self, lane_name: str, rejected: PlateRejected) -> None:
        self.agent.record(
            ev.LANE_PLATE_UNREAD,
            {
                "lane": lane_name,
                "reason": str(rejected.reason),
                "detail": rejected.detail,
                "best": rejected.best,
            },
        )

    def _on_push(self, push: LprPush) -> None:
        from drivers.plate_reader import crop_jpeg

        image = push.image
        if image is not None and len(image) > 12 * 1024:
            image = _shrink(image, crop_jpeg)
        self.present(push.lane, push.plate, push.at_ns, image, push.confidence)

    def _on_push_rejected(self, rejected: LprRejected) -> None:
        camera = rejected.camera or ""
        self.folder.add(
            (camera, str(rejected.reason)),
            {
                "camera": camera,
                "reason": str(rejected.reason),
                "detail": rejected.detail,
                "remote": rejected.remote,
            },
        )


def _mock(factory: Any) -> bool:
    from gpiozero.pins.mock import MockFactory

    return isinstance(factory, MockFactory)


class _Simulated:
    """A simulated device with start/stop, as the agent's device list wants start/close."""

    def __init__(self, device: Any) -> None:
        self.device = device

    def start(self) -> None:
        self.device.start()

    def close(self) -> None:
        self.device.stop()


def _shrink(image: bytes, crop_jpeg: Callable[..., bytes | None]) -> bytes | None:
    """A camera's picture re-encoded to fit the event's 12 KB (None if it is not a picture at all)."""
    import cv2
    import numpy as np

    decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        return None
    return crop_jpeg(decoded, None)

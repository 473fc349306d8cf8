"""The ``[[lane]]`` and ``[lpr]`` sections of the gate configuration (docs/vehicles.md).

Kept apart from edge/config.py so that the vehicle lane's keys are read in one place; the
gate configuration only lists the sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from drivers.barrier import BarrierPins
from edge.lane import LaneSettings
from protocol import ProtocolError, validate_name


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except ProtocolError as exc:
        raise ValueError(exc.detail) from None


Name = Annotated[str, AfterValidator(_name)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LaneCameraConfig(_Section):
    """The lane's own camera, read by the packaged plate model (drivers/plate_reader.py)."""

    source: str = Field(title="Device index, /dev/video* path, RTSP/HTTP URL, video file or sim:// source")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    fps: float = Field(10.0, gt=0, le=60, title="Frame-rate cap")
    region: tuple[int, int, int, int] | None = Field(
        None, title="x, y, width, height of where plates stop in front of the arm: only this is read"
    )
    gate: Literal["loop", "change"] = Field(
        "loop",
        title="Read only while the loop reports a vehicle (loop), or while the region changes (change)",
    )
    confirm: int = Field(2, ge=1, le=10, title="Frames that must agree on a plate before it is presented")
    min_confidence: float = Field(0.8, ge=0, le=1, title="Readings below this confidence are not counted")
    max_frames: int = Field(50, ge=1, le=1000, title="Give up on a vehicle after this many frames read")
    threads: int = Field(1, ge=1, le=8, title="ONNX Runtime threads for the plate model")

    @model_validator(mode="after")
    def _region(self) -> LaneCameraConfig:
        if self.region is not None and (self.region[2] < 32 or self.region[3] < 16 or min(self.region) < 0):
            raise ValueError("region is x, y, width, height with width >= 32 and height >= 16")
        return self


class LaneConfig(_Section):
    """A vehicle lane: a barrier arm, its loop detector, and where its plates come from."""

    name: Name = Field(title="The lane's name: the reader name of its presentations")
    direction: Literal["in", "out"] = Field(title="Which way vehicles pass this lane")
    barrier: BarrierPins
    behaviour: LaneSettings = Field(default_factory=LaneSettings)
    camera: LaneCameraConfig | None = None

    @model_validator(mode="after")
    def _gated(self) -> LaneConfig:
        if self.camera is not None and self.camera.gate == "loop" and self.barrier.loop is None:
            raise ValueError(
                'camera.gate = "loop" needs barrier.loop (the loop detector input), or use "change"'
            )
        return self


class LprCameraConfig(_Section):
    """An LPR camera allowed to push plates to ``/lpr/<name>`` with HTTP Basic credentials."""

    name: Name
    lane: Name = Field(title="The [[lane]] whose barrier this camera's plates open")
    format: Literal["hikvision", "generic"] = Field(title="hikvision (ISAPI ANPR alert) or generic (JSON)")
    username: str = Field(min_length=1, max_length=64, pattern=r"^[^:\s]+$")
    password_file: Path = Field(title="A file holding the camera's password (never inline)")
    min_confidence: float = Field(0.0, ge=0, le=1, title="Pushes below this confidence are refused")

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()


class LprConfig(_Section):
    """The endpoint LPR cameras push to (drivers/lpr_http.py)."""

    listen: str = Field("127.0.0.1:8089", pattern=r"^[^\s:]+:\d{1,5}$", title="host:port to serve on")
    max_body: int = Field(
        2 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024, title="Largest push accepted, in bytes"
    )
    cameras: list[LprCameraConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> LprConfig:
        names = [camera.name for camera in self.cameras]
        if len(names) != len(set(names)):
            raise ValueError("LPR camera names must be unique")
        return self

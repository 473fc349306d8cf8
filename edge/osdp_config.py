"""``[[osdp]]``: OSDP buses and the readers on them (docs/door.md, "OSDP readers").

One table per RS-485 line, with one ``[[osdp.readers]]`` table per reader on it::

    [[osdp]]
    name = "front-bus"
    url = "/dev/serial/by-id/usb-FTDI_…-if00-port0"   # anything pyserial opens
    baudrate = 115200
    key_dir = "/var/lib/gatepost/osdp-keys"

    [[osdp.readers]]
    name = "front-in"
    address = 1
    direction = "in"

Keys are never written in the file: each reader's secure channel key is a file in the
gate's key store (``key_dir/<reader>.key``, or ``key_file``), which install mode fills.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol import ProtocolError, validate_name

OSDP_BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400)
"""The rates SIA OSDP 2.2 lists for osdp_COMSET; readers ship at 9600, most run 115200."""


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except ProtocolError as exc:
        raise ValueError(exc.detail) from None


Name = Annotated[str, AfterValidator(_name)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OsdpReaderConfig(_Section):
    name: Name
    address: int = Field(ge=0, le=126, title="The reader's OSDP address, 0..126 (127 is broadcast)")
    direction: Literal["in", "out"] | None = Field(
        None, title="Which way a person passes this reader: in or out"
    )
    key_file: Path | None = Field(
        None, title="The reader's secure channel key file (default: key_dir/<name>.key)"
    )
    install: bool | None = Field(None, title="Install mode for this reader only (default: the bus's)")


class OsdpBusConfig(_Section):
    """One RS-485 line with OSDP readers; the gate is its control panel."""

    name: Name = "osdp"
    url: str = Field(title="Serial port: /dev/serial/by-id/..., /dev/ttyUSB0, socket://host:port")
    baudrate: int = Field(115200, title="Line speed; every reader on the bus must use the same")
    secure: bool = Field(True, title="Secure channel (AES-128) on, and enforced, for every reader")
    install: bool = Field(
        False,
        title="Install mode: give each reader that has no key yet a new one, once, and keep it in key_dir",
    )
    key_dir: Path = Field(Path("/var/lib/gatepost/osdp-keys"), title="The gate's key store for OSDP readers")
    offline_after_s: float = Field(
        2.0, ge=0.5, le=60, title="A reader silent this long is offline (the alarm for a cut cable)"
    )
    readers: list[OsdpReaderConfig] = Field(min_length=1, max_length=126)

    @field_validator("baudrate")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value not in OSDP_BAUD_RATES:
            rates = ", ".join(str(rate) for rate in OSDP_BAUD_RATES)
            raise ValueError(f"{value} is no rate OSDP uses ({rates})")
        return value

    @field_validator("readers")
    @classmethod
    def _addresses(cls, readers: list[OsdpReaderConfig]) -> list[OsdpReaderConfig]:
        seen: dict[int, str] = {}
        for reader in readers:
            if reader.address in seen:
                raise ValueError(
                    f"readers {seen[reader.address]} and {reader.name} share address {reader.address}:"
                    " every reader on a bus needs its own"
                )
            seen[reader.address] = reader.name
        return readers

    @model_validator(mode="after")
    def _install_needs_secure(self) -> OsdpBusConfig:
        if not self.secure and (self.install or any(reader.install for reader in self.readers)):
            raise ValueError("install mode sets secure channel keys: it needs secure = true")
        return self

    def key_path(self, reader: OsdpReaderConfig) -> Path:
        return reader.key_file if reader.key_file is not None else self.key_dir / f"{reader.name}.key"

    def installing(self, reader: OsdpReaderConfig) -> bool:
        return self.install if reader.install is None else reader.install

    def resolve_paths(self, base: Path) -> None:
        if not self.key_dir.is_absolute():
            self.key_dir = base / self.key_dir
        for reader in self.readers:
            if reader.key_file is not None and not reader.key_file.is_absolute():
                reader.key_file = base / reader.key_file

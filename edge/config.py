"""The gate agent's configuration: one TOML file, validated before anything starts.

Unknown keys are errors (a misspelt ``capacty`` must not silently fall back to a
default at a gate nobody watches), and every error names the file, line and key — see
``gatepost edge check-config FILE``.  Secrets are never inline: the MQTT password comes
from a file, or from systemd's ``$CREDENTIALS_DIRECTORY`` so it never sits in the unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.door_io import DoorPins
from edge.clock import ClockTrust
from edge.door import DoorSettings
from edge.feedback import FeedbackPins
from edge.lane_config import LaneConfig, LprConfig
from edge.osdp_config import OsdpBusConfig
from protocol import ProtocolError, validate_name
from protocol.configfile import ConfigIssue, key_lines, line_of, load_toml_model
from protocol.mqtt import MqttSettings
from protocol.passes.decision import StalePolicy, UntrustedClockPolicy


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except ProtocolError as exc:
        raise ValueError(exc.detail) from None


Name = Annotated[str, AfterValidator(_name)]


Direction = Literal["in", "out"]
"""Which way a reader lets people through; the console counts entries and exits by it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(MqttSettings):
    """How this gate reaches the broker.  Its username is provisioned by ``gatepost broker add-gate``."""

    window: int = Field(500, ge=1, le=10_000, title="Events in flight before the console acknowledges")
    resend_after_s: float = Field(
        15.0, gt=0, le=300, title="Resend an unacknowledged event after this long (doubling per resend)"
    )
    resend_overtaken_s: float = Field(
        2.0,
        gt=0,
        le=60,
        title="Resend an event this long after the console acknowledged one sent later (a lost event)",
    )


USB_LINK_DIR = "/dev/gatepost"
"""Where the installer's udev rules link each USB reader, by the reader's name (docs/install.md)."""


class _UsbSerialReader(_Section):
    """A reader on a USB serial port, pinned to its device so two readers can never swap.

    ``usb_serial`` (the device's serial number) or ``usb_path`` (the USB port it is plugged
    into, as the kernel names it: ``1-1.2``) makes ``gatepost install`` write a udev rule
    that links the device to ``/dev/gatepost/<name>``, and ``url`` must then be that link.
    ``gatepost edge list-devices`` prints both for every attached USB serial device.
    """

    name: Name
    url: str
    usb_serial: str | None = Field(
        None,
        pattern=r'^[^"\\*?\[\]|\s\x00-\x1f\x7f]{1,126}$',
        title="USB serial number of the reader (gatepost edge list-devices); no quotes, spaces or * ? [ ] |",
    )
    usb_path: str | None = Field(
        None,
        pattern=r"^[0-9]+-[0-9]+(\.[0-9]+)*(:[0-9]+\.[0-9]+)?$",
        title="USB port path of the reader, as the kernel names it: 1-1.2 (gatepost edge list-devices)",
    )

    @model_validator(mode="after")
    def _link(self) -> _UsbSerialReader:
        if self.usb_serial is not None and self.usb_path is not None:
            raise ValueError("give usb_serial or usb_path, not both")
        if self.usb_serial is not None or self.usb_path is not None:
            link = f"{USB_LINK_DIR}/{self.name}"
            if self.url != link:
                raise ValueError(f"with usb_serial or usb_path the url must be the udev link {link!r}")
        return self


class ScannerConfig(_UsbSerialReader):
    """A serial pass scanner.  ``url`` is anything pyserial opens: a tty path, ``socket://``, ``spy://``."""

    name: Name = "scanner"
    baudrate: int = Field(9600, gt=0)
    max_length: int = Field(512, ge=8, le=4096)
    direction: Direction | None = Field(None, title="Which way a person passes this reader: in or out")


class CameraConfig(_Section):
    """A camera reading passes held up to it (see docs/camera.md)."""

    name: Name = "camera"
    source: str = Field(title="Device index, /dev/video* path, RTSP/HTTP URL, video file or sim:// source")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0, title="Frame-rate cap")
    decoder: str = Field(
        "zxing", pattern=r"^(zxing|pyzbar)$", title="QR decoder backend: zxing (default) or pyzbar"
    )
    hold_off_s: float = Field(2.0, ge=0, le=60, title="The same code again within this time is one scan")
    direction: Direction | None = Field(None, title="Which way a person passes this reader: in or out")


class GpioConfig(_Section):
    """Which gpiozero pin factory drives the pins: ``lgpio`` on a Pi 5, ``mock`` in the simulator."""

    pin_factory: str | None = Field(None, title="mock, lgpio, rpigpio or native (default: gpiozero's choice)")


class DoorConfig(_Section):
    """A door driven by this gate: lock relay, contact, exit button, tamper, lights, buzzer."""

    pins: DoorPins
    behaviour: DoorSettings = Field(default_factory=DoorSettings)


class WiegandConfig(_Section):
    name: Name = "wiegand"
    d0: int | str
    d1: int | str
    min_silence_ms: float = Field(25.0, gt=0, le=1000, title="Shortest silence that ends a frame")
    silence_periods: int = Field(3, ge=2, le=20, title="A frame ends after this many bit periods of silence")
    direction: Direction | None = Field(None, title="Which way a person passes this reader: in or out")


class Rdm6300Config(_UsbSerialReader):
    name: Name = "rfid"
    baudrate: int = Field(9600, gt=0)
    direction: Direction | None = Field(None, title="Which way a person passes this reader: in or out")


class KeyboardReaderConfig(_Section):
    """A USB reader or scanner that types like a keyboard (needs the optional evdev package)."""

    name: Name = "keyboard"
    path: str = Field(title="/dev/input/by-id/... event device")
    grab: bool = True
    direction: Direction | None = Field(None, title="Which way a person passes this reader: in or out")


class SimulationConfig(_Section):
    """Simulated people at this gate's door; only with ``[gpio] pin_factory = "mock"``."""

    people_per_min: float = Field(6.0, gt=0)
    cards: list[str] = Field(default_factory=list, title="Wiegand 26-bit cards as facility:card")
    unknown_share: float = Field(0.1, ge=0, le=1)
    exit_share: float = Field(0.3, ge=0, le=1, title="Share of people leaving by the exit button")
    hold_open_share: float = Field(0.02, ge=0, le=1)
    force_share: float = Field(0.01, ge=0, le=1)
    seed: int | None = None


class OutboxConfig(_Section):
    """The durable outbox, and what the gate does when its disk refuses writes (docs/storage.md)."""

    path: Path = Path("/var/lib/gatepost/outbox.db")
    capacity: int = Field(200_000, ge=100, title="Events kept while the console is unreachable")
    journal_capacity: int = Field(
        10_000, ge=10, le=1_000_000, title="Events held in memory while the disk refuses writes"
    )
    retry_min_s: float = Field(1.0, gt=0, le=600, title="First retry of a refusing disk after this long")
    retry_max_s: float = Field(60.0, gt=0, le=3600, title="Retries back off up to this interval")
    held_records: list[Path] = Field(
        default_factory=list,
        title="More copies of the record of held events' numbers (e.g. /run/gatepost/outbox.held)",
    )

    @model_validator(mode="after")
    def _retry_order(self) -> OutboxConfig:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class AccessConfig(_Section):
    """The interim decision: pass codes allowed in.  The signed-pass issue replaces it."""

    allow: list[str] = Field(
        default_factory=list, title="Pass codes and card credentials (e.g. wiegand26:13:13067)"
    )
    allow_file: Path | None = Field(None, title="A file with one allowed code per line")
    repeat_s: float = Field(2.5, ge=0, le=60, title="The same credential again within this time is ignored")

    def codes(self) -> frozenset[str]:
        codes = set(self.allow)
        if self.allow_file is not None:
            for line in self.allow_file.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    codes.add(line)
        return frozenset(codes)


class PassesConfig(_Section):
    """Signed passes (docs/passes.md): the site's pinned root key and the documents it signs.

    Only public material lives on a gate: the root's public key, the signed trust bundle
    of signing keys, the signed revocation list, and — for phone passes with a dynamic
    code — the site secret that derives each pass's code key.
    """

    root_key: Path = Field(title="The site root's public key file (pinned: bundles must be signed by it)")
    trust_bundle: Path = Field(title="The signed trust bundle; a newer one replaces it, never an older")
    revocation_list: Path | None = Field(None, title="The signed revocation list, kept across restarts")
    site_secret_file: Path | None = Field(None, title="Site secret for dynamic phone passes")
    zone: int = Field(0, ge=0, le=63, title="The zone this gate guards")
    passback_s: float = Field(0.0, ge=0, title="The same pass again within this time is refused (0: off)")
    anti_passback: bool = Field(False, title="Refuse a pass going in twice (or out twice) in a row")
    revocation_max_age_h: float = Field(24.0, gt=0, title="A revocation list older than this is stale")
    stale_revocation: StalePolicy = Field(
        StalePolicy.GRANT_AND_FLAG, title="deny, or grant and flag for review"
    )
    untrusted_clock: UntrustedClockPolicy = Field(UntrustedClockPolicy.GRANT_AND_FLAG)
    untrusted_dynamic_window_s: float = Field(
        3600.0,
        ge=0,
        le=86400,
        title="With no trusted time since boot: phone codes up to this long after the gate's lower bound"
        " are accepted (flagged) under grant_and_flag; later ones are refused (docs/clock.md)",
    )


class CardsConfig(_Section):
    """Door cards from the console's credential list (docs/cards.md), kept in a local store."""

    store: Path = Field(Path("/var/lib/gatepost/cards.db"), title="The gate's card store (SQLite)")
    timezone: str = Field("UTC", title="Local time zone for daily time windows, e.g. Asia/Shanghai")
    zone: int | None = Field(None, ge=0, le=63, title="The zone this door guards")
    untrusted_clock: UntrustedClockPolicy = Field(UntrustedClockPolicy.GRANT_AND_FLAG)


class PhotosConfig(_Section):
    """Holder thumbnails the console sends (retained, by photo digest) for the guard screen."""

    dir: Path = Field(Path("/var/lib/gatepost/photos"), title="Folder of <digest>.jpg thumbnails")


class ClockConfig(_Section):
    trust: ClockTrust = ClockTrust.AUTO


class GuardScreenConfig(_Section):
    """The guard screen the agent serves to the gate's own display (docs/guard-screen.md).

    Off by default; it is local (loopback) so it keeps working with the network down.
    Guard actions (manual let-through, visitor registration) need the per-gate guard PIN,
    stored only as a scrypt hash made by ``gatepost edge hash-pin``.
    """

    enabled: bool = False
    listen: str = Field("127.0.0.1:8088", pattern=r"^[^\s:]+:\d{1,5}$", title="host:port to serve on")
    idle_s: float = Field(8.0, gt=0, le=600, title="Back to the idle screen this long after a decision")
    photo_dir: Path | None = Field(None, title="Folder of <photo_digest_hex>.jpg thumbnails")
    pin_hash: str | None = Field(None, title="scrypt hash of the guard PIN (gatepost edge hash-pin)")
    pin_attempts: int = Field(
        5, ge=1, le=20, title="Wrong PINs in a row from one source before its guard actions pause"
    )
    pin_lockout_s: float = Field(
        60.0, ge=1, le=3600, title="The first pause; each further wrong PIN doubles it"
    )
    pin_lockout_max_s: float = Field(
        86400.0, ge=60, le=604800, title="The longest pause (docs/guard-screen.md: the brute-force figure)"
    )
    visitor_db: Path = Field(
        Path("/var/lib/gatepost/visitors.db"), title="The gate's visitor passes (SQLite)"
    )
    visitor_pass_hours: float = Field(4.0, gt=0, le=72, title="A visitor pass expires this long after issue")
    manual_unlock_s: float | None = Field(
        None, gt=0, le=600, title="Unlock time of a manual let-through (default: the door's unlock_s)"
    )

    @field_validator("pin_hash")
    @classmethod
    def _pin_hash_usable(cls, value: str | None) -> str | None:
        from edge.guard.pin import parse_hash

        if value:
            parse_hash(value)  # PinFormatError is a ValueError: reported with file, line and key
        return value

    @model_validator(mode="after")
    def _pin_when_enabled(self) -> GuardScreenConfig:
        if self.enabled and not self.pin_hash:
            raise ValueError("an enabled guard screen needs pin_hash (make one: gatepost edge hash-pin)")
        if int(self.listen.rpartition(":")[2]) > 65535:
            raise ValueError(f"listen port out of range: {self.listen}")
        return self


class MetricsConfig(_Section):
    """Prometheus metrics on a listener of their own (docs/monitoring.md).

    On loopback by default: the gate's numbers are for whoever scrapes it through the
    compound's own network, which the operator exposes on purpose (``0.0.0.0:9108``,
    or a reverse proxy or SSH tunnel), never by accident.  ``listen = ""`` turns it off.
    """

    listen: str = Field(
        "127.0.0.1:9108", pattern=r"^([^\s:]+:\d{1,5})?$", title="host:port for /metrics, or empty for none"
    )


class HealthConfig(_Section):
    """The retained health message on ``gatepost/v1/<site>/<gate>/health`` (docs/protocol.md)."""

    interval_s: float = Field(60.0, ge=1, le=3600, title="Publish at least this often (and on every change)")


class LogConfig(_Section):
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class EdgeConfig(_Section):
    site: Name
    gate: Name
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    scanners: list[ScannerConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)
    wiegand: list[WiegandConfig] = Field(default_factory=list)
    rdm6300: list[Rdm6300Config] = Field(default_factory=list)
    keyboards: list[KeyboardReaderConfig] = Field(default_factory=list)
    osdp: list[OsdpBusConfig] = Field(default_factory=list)
    lane: list[LaneConfig] = Field(default_factory=list, title="Vehicle lanes (docs/vehicles.md)")
    lpr: LprConfig | None = None
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    door: DoorConfig | None = None
    feedback: FeedbackPins | None = None
    simulation: SimulationConfig | None = None
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    passes: PassesConfig | None = None
    cards: CardsConfig | None = None
    photos: PhotosConfig | None = None
    clock: ClockConfig = Field(default_factory=ClockConfig)
    guard_screen: GuardScreenConfig = Field(default_factory=GuardScreenConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _unique_readers(self) -> EdgeConfig:
        readers = [*self.scanners, *self.cameras, *self.wiegand, *self.rdm6300, *self.keyboards]
        names = [reader.name for reader in readers] + [r.name for bus in self.osdp for r in bus.readers]
        if len(names) != len(set(names)):
            raise ValueError(f"reader names must be unique across all readers: {', '.join(sorted(names))}")
        buses = [bus.name for bus in self.osdp]
        if len(buses) != len(set(buses)):
            raise ValueError(f"[[osdp]] bus names must be unique: {', '.join(sorted(buses))}")
        _check_lanes(self, names)
        if self.simulation is not None:
            if self.gpio.pin_factory != "mock":
                raise ValueError('[simulation] drives mock pins: it needs [gpio] pin_factory = "mock"')
            if self.door is None or not self.wiegand or not self.simulation.cards:
                raise ValueError("[simulation] needs a [door], a [[wiegand]] reader and some cards")
        return self


def _check_lanes(config: EdgeConfig, reader_names: list[str]) -> None:
    """Lanes are readers too (their name is the reader of their plates), and pins are never shared."""
    lanes = [lane.name for lane in config.lane]
    if len(lanes) != len(set(lanes)) or set(lanes) & set(reader_names):
        raise ValueError("lane names must be unique and differ from every reader's name")
    used: list[str] = [str(p).upper() for lane in config.lane for p in lane.barrier.used()]
    if config.door is not None:
        pins = config.door.pins
        used += [
            str(p).upper()
            for p in (pins.relay, pins.contact, pins.exit_button, pins.tamper, pins.fire_alarm)
            if p is not None
        ]
    if len(used) != len(set(used)):
        raise ValueError("a GPIO pin is used by two lanes, or by a lane and the door")
    if config.lpr is not None:
        for camera in config.lpr.cameras:
            if camera.lane not in lanes:
                raise ValueError(
                    f"LPR camera {camera.name!r} names lane {camera.lane!r}, which is not a [[lane]]"
                )


def config_warnings(path: Path | str, config: EdgeConfig) -> list[ConfigIssue]:
    """What in a valid configuration still needs the installer's attention, by file, line and key.

    A guard PIN hashed before PINs had to have six digits does not record its length: the
    gate runs, but a PIN shorter than six digits no longer opens guard actions.
    """
    from edge.guard.pin import MIN_PIN_DIGITS, parse_hash

    path = Path(path)
    issues: list[ConfigIssue] = []
    guard = config.guard_screen
    if guard.pin_hash is not None and parse_hash(guard.pin_hash).digits is None:
        try:
            lines = key_lines(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            lines = {}
        issues.append(
            ConfigIssue(
                path,
                line_of(lines, ("guard_screen", "pin_hash")) if lines else None,
                "guard_screen.pin_hash",
                f"warning: made before guard PINs had at least {MIN_PIN_DIGITS} digits, so its length"
                f" is unknown; a shorter PIN no longer works for guard actions — make a new hash with"
                f" gatepost edge hash-pin",
            )
        )
    return issues


def load_config(path: Path | str) -> EdgeConfig:
    """Parse and validate ``path``; raise ConfigError naming each bad line and key.

    Relative paths inside the file are taken relative to the file's own folder, so a
    configuration and its secrets can be moved together.
    """
    path = Path(path)
    config = load_toml_model(path, EdgeConfig)
    assert isinstance(config, EdgeConfig)
    base = path.resolve().parent
    config.outbox.path = _resolve(base, config.outbox.path)
    config.outbox.held_records = [_resolve(base, path) for path in config.outbox.held_records]
    config.mqtt.resolve_paths(base)
    if config.access.allow_file is not None:
        config.access.allow_file = _resolve(base, config.access.allow_file)
    if config.cards is not None:
        config.cards.store = _resolve(base, config.cards.store)
    guard = config.guard_screen
    guard.visitor_db = _resolve(base, guard.visitor_db)
    if guard.photo_dir is not None:
        guard.photo_dir = _resolve(base, guard.photo_dir)
    if config.photos is not None:
        config.photos.dir = _resolve(base, config.photos.dir)
    for bus in config.osdp:
        bus.resolve_paths(base)
    if config.lpr is not None:
        for camera in config.lpr.cameras:
            camera.password_file = _resolve(base, camera.password_file)
    if config.passes is not None:
        for key in ("root_key", "trust_bundle", "revocation_list", "site_secret_file"):
            value = getattr(config.passes, key)
            if value is not None:
                setattr(config.passes, key, _resolve(base, value))
    return config


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value

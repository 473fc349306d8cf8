"""The console's configuration: one TOML file, checked whole before anything starts.

Unknown keys are errors and every error names file, line and key
(``gatepost console check-config FILE``).  The broker password is never inline: it comes
from ``password_file`` or from a systemd credential (``credential = "NAME"`` reads
``$CREDENTIALS_DIRECTORY/NAME``), so it never appears in the unit or in ``ps``.

::

    name = "console"            # broker user console.<name>, MQTT client id console-<name>
    site = "+"                  # one site name, or "+" for every site

    [mqtt]
    host = "127.0.0.1"
    port = 1883
    username = "console.console"
    password_file = "secrets/console.secret"   # relative to this file

    [store]
    path = "/var/lib/gatepost/console/events.db"   # or: url = "postgresql://gatepost@db/gatepost"
    retain_days = 400

    [ingest]
    workers = 1                 # >1: processes sharing a $share subscription (docs/storage.md)

    [integrity]                 # what a gate may make the console believe (docs/console.md)
    gap_alarm_after_s = 60

    [homeassistant]             # MQTT discovery for a site's Home Assistant (docs/homeassistant.md)
    enabled = false

    [roster]                    # duty sheets and the understaffed alarm (docs/roster.md)
    understaffed_after_minutes = 15

    [backup]                    # scheduled store backups (docs/console.md "Backups")
    directory = "/var/lib/gatepost/backups"
    interval_hours = 24
    keep = 7
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from console.district.config import DistrictConfig
from protocol import validate_name
from protocol.configfile import ConfigError, load_toml_model
from protocol.homeassistant import PREFIX_PATTERN
from protocol.identity import MAX_INGEST_WORKERS
from protocol.mqtt import MqttSettings

if TYPE_CHECKING:
    from console.integrity import IntegrityLimits

__all__ = ["ConfigError", "ConsoleConfig", "load_config"]


def _name(value: str) -> str:
    validate_name(value)
    return value


def _console_user(value: str) -> str:
    from console.users import check_name

    return check_name(value)


def _site(value: str) -> str:
    return value if value == "+" else _name(value)


Name = Annotated[str, AfterValidator(_name)]
Site = Annotated[str, AfterValidator(_site)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(MqttSettings):
    """How the console reaches the broker.  Its user is provisioned by ``gatepost broker add-console``."""


class StoreConfig(_Section):
    """Where events live (docs/storage.md): an SQLite file, or PostgreSQL when ``url`` is set."""

    path: Path = Field(Path("/var/lib/gatepost/console/events.db"), title="SQLite event store")
    url: str | None = Field(
        None,
        pattern=r"^(postgresql|postgres)://\S+$",
        title="postgresql://user@host:port/db; when set, ``path`` is not used",
    )
    retain_days: int = Field(400, ge=0, le=36_500, title="Delete events older than this (0: keep for ever)")
    retain_rejections_days: int = Field(
        30, ge=0, le=36_500, title="Delete rejected-message records older than this (0: keep)"
    )
    prune_batch: int = Field(5000, ge=100, le=1_000_000, title="Rows deleted per short transaction")

    @property
    def target(self) -> str | Path:
        """What ``EventStore`` / ``Database`` open."""
        return self.url if self.url is not None else self.path


class IngestConfig(_Section):
    batch_max: int = Field(500, ge=1, le=10_000, title="Most messages committed in one transaction")
    batch_wait_s: float = Field(
        0.0, ge=0, le=1, title="How long a batch waits to fill (0: take what is queued)"
    )
    workers: int = Field(
        1,
        ge=1,
        le=MAX_INGEST_WORKERS,
        title="Ingest processes sharing the gates' events ($share subscription)",
    )


class IntegrityConfig(_Section):
    """Bounds on what one gate's credentials can make the console believe (console/integrity.py,
    console/gaps.py, docs/console.md "A lying gate")."""

    gap_alarm_after_s: float = Field(
        60.0,
        ge=1,
        le=86_400,
        title="A hole in a gate's sequence numbers open this long raises seq.gap "
        "(four resend periods of a gate's default resend_after_s = 15 s)",
    )
    gap_check_s: float = Field(5.0, gt=0, le=3600, title="How often the gap watch reads new sequence numbers")
    clock_skew_s: float = Field(
        300.0,
        ge=1,
        le=86_400,
        title="Events dated further than this after their receipt are quarantined; "
        "further than this before an event their gate numbered earlier, flagged back-dated",
    )
    seq_jump_max: int = Field(
        200_000,
        ge=1,
        title="A seq further than this above a gate's highest stored one is refused "
        "(no gate's outbox holds more: its [outbox] capacity)",
    )
    flood_per_min: int = Field(
        600,
        ge=1,
        le=1_000_000,
        title="Events of one gate dated in one minute beyond this are flagged as a flood",
    )
    status_window_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        title="A gate status older than the believed one of the same run by this is refused",
    )

    def limits(self) -> IntegrityLimits:
        from console.integrity import IntegrityLimits

        return IntegrityLimits(
            clock_skew_s=self.clock_skew_s,
            seq_jump_max=self.seq_jump_max,
            flood_per_min=self.flood_per_min,
            status_window_s=self.status_window_s,
        )


class LogConfig(_Section):
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone like Asia/Shanghai") from None
    return value


class FlowConfig(_Section):
    """Flow analytics and staffing advice (``console/flow.py``, docs/flow-and-staffing.md)."""

    timezone: Annotated[str, AfterValidator(_timezone)] = Field("Asia/Shanghai", title="Site-local time zone")
    capacity_per_guard: int = Field(120, ge=1, le=10_000, title="Persons one guard handles per hour")
    min_guards: int = Field(1, ge=0, le=100, title="Never fewer guards at a post than this")
    baseline_guards: int = Field(1, ge=0, le=100, title="Guards per post today; advice is relative to it")
    percentile: float = Field(80.0, ge=0, le=100, title="Percentile of past days' load that sets the roster")
    days: int = Field(20, ge=1, le=366, title="How many past days of the same kind (weekday/weekend)")
    bucket_minutes: Literal[15, 30, 60] = Field(30, title="Length of a staffing slot")
    peak_fraction: float = Field(0.8, gt=0, le=1, title="A bar within this fraction of the maximum is a peak")
    open_on: Literal["today", "last_full_day"] = Field(
        "today", title="The day the flow page shows when none is asked for (last_full_day: yesterday, whole)"
    )


class RosterConfig(_Section):
    """The duty roster on duty (docs/roster.md): duty sheets to the gates and the understaffed alarm."""

    understaffed_after_minutes: float = Field(
        15.0,
        gt=0,
        le=24 * 60,
        title="A rostered post below the staffing advice this long raises post.understaffed",
    )
    sheet_hours: int = Field(36, ge=24, le=72, title="How far ahead a gate's duty sheet reaches")
    sheet_every_minutes: float = Field(
        60.0, ge=1, le=60, title="A duty sheet is sent again at least this often (and on every roster change)"
    )


class CardsConfig(_Section):
    """The site's door-card list and holder thumbnails, published to its gates (docs/cards.md)."""

    site: Name = Field(title="The site whose gates receive this list")
    registry: Path = Field(Path("/var/lib/gatepost/console/cards.db"), title="Card registry (SQLite)")
    thumbnails: Path = Field(
        Path("/var/lib/gatepost/console/thumbnails"), title="Folder of <photo digest>.jpg thumbnails"
    )
    snapshot_every_s: float = Field(60.0, ge=1, le=86_400, title="Most often the retained snapshot is redone")


def _proxy(value: str) -> str:
    """A proxy's address or network; never ``*``, which would let any client name its own address."""
    import ipaddress

    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network") from None
    return value


class WebConfig(_Section):
    """The web console (``console/web/``, docs/web-console.md), served by ``console run``."""

    enabled: bool = Field(True, title="Serve the web console")
    listen: str = Field(
        "127.0.0.1:8080", pattern=r"^[^\s:]+:[0-9]{1,5}$", title="host:port; put TLS in front for other hosts"
    )
    secure_cookies: bool = Field(False, title="Mark cookies Secure (set when served over HTTPS)")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, title="A login ends this long after it began")
    idle_minutes: float = Field(
        30.0, gt=0, le=24 * 60, title="A login ends after this long without a request"
    )
    office: Path | None = Field(None, title="The site office folder (console/passes) for the passes pages")
    alarm_denials: int = Field(5, ge=2, le=1000, title="Denied credentials at one gate that raise an alarm")
    alarm_window_s: float = Field(60.0, gt=0, le=3600, title="... within this many seconds")
    unlock_seconds: float = Field(5.0, gt=0, le=600, title="How long a remote unlock holds the door")
    trusted_proxies: list[Annotated[str, AfterValidator(_proxy)]] = Field(
        [],
        max_length=32,
        title="Reverse proxies whose X-Forwarded-For names the client (failed logins are counted per client address)",
    )


class MetricsConfig(_Section):
    """Prometheus metrics on a listener of their own, beside the web console (docs/monitoring.md).

    Separate so that scraping needs no web login and the web console's authentication is
    untouched; on loopback by default.  ``listen = ""`` turns it off.
    """

    listen: str = Field(
        "127.0.0.1:9109", pattern=r"^([^\s:]+:\d{1,5})?$", title="host:port for /metrics, or empty for none"
    )


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery (console/homeassistant.py, docs/homeassistant.md); off unless enabled."""

    enabled: bool = Field(
        False, title="Publish discovery and states for Home Assistant and take its commands"
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=PREFIX_PATTERN, title="Home Assistant's discovery_prefix (its MQTT settings)"
    )
    user: Annotated[str, AfterValidator(_console_user)] = Field(
        "homeassistant",
        title="The console user whose grants Home Assistant's commands carry (`console user grant NAME unlock SITE`)",
    )
    unlock_seconds: float = Field(
        5.0, gt=0, le=600, title="How long an unlock from Home Assistant holds the door"
    )


class BackupConfig(_Section):
    """Scheduled backups of the event store (console/store_backup.py, docs/console.md "Backups")."""

    directory: Path | None = Field(None, title="Where backups go; none: no scheduled backups")
    interval_hours: float = Field(24.0, gt=0, le=24 * 366, title="Time between scheduled backups")
    keep: int = Field(7, ge=1, le=10_000, title="Newest backups kept; older ones are deleted")


class ConsoleConfig(_Section):
    name: Name = "console"
    site: Site = "+"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    cards: CardsConfig | None = None
    roster: RosterConfig = Field(default_factory=RosterConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    district: DistrictConfig | None = None
    """The district export (console/district/, docs/district.md); none without the section."""


def load_config(path: Path | str) -> ConsoleConfig:
    """Parse and validate ``path``; raise ConfigError naming each bad line and key.

    Relative paths inside the file are taken relative to the file's folder, so a
    configuration moves together with its store and secrets.
    """
    path = Path(path)
    config = load_toml_model(path, ConsoleConfig)
    base = path.resolve().parent
    config.store.path = _resolve(base, config.store.path)
    config.mqtt.resolve_paths(base)
    if config.cards is not None:
        config.cards.registry = _resolve(base, config.cards.registry)
        config.cards.thumbnails = _resolve(base, config.cards.thumbnails)
    if config.web.office is not None:
        config.web.office = _resolve(base, config.web.office)
    if config.backup.directory is not None:
        config.backup.directory = _resolve(base, config.backup.directory)
    if config.district is not None:
        config.district.resolve_paths(base)
    return config


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value

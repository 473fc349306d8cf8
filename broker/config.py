"""The broker's configuration file, rendered from one template for production and tests alike.

Tests start mosquitto from exactly the file an installer would write, differing only in
paths, port and the unprivileged user, so what the tests prove about authentication,
ACLs, queues and persistence holds for the real site.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from protocol.messages import MAX_MESSAGE_BYTES

TEMPLATE = "templates/mosquitto.conf.template"

PRODUCTION_CONFIG_DIR = Path("/etc/gatepost/broker")
PRODUCTION_DATA_DIR = Path("/var/lib/gatepost/broker")
PRODUCTION_PORT = 1883
"""The plain listener's port: loopback only, for the admin tooling and a console on the broker's host."""
PRODUCTION_TLS_PORT = 8883
PRODUCTION_BIND = "0.0.0.0"
PLAIN_BIND = "127.0.0.1"
PRODUCTION_USER = "mosquitto"

DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
PRODUCTION_DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu") / DYNSEC_PLUGIN
"""Where Debian's mosquitto package puts the plugin on amd64; ``gatepost broker init`` and
the launcher look for it (:func:`find_dynsec_plugin`), since mosquitto 2.0.11 loads a
plugin by path only and the path has the architecture in it (``aarch64-linux-gnu`` on a
64-bit Raspberry Pi OS)."""
DYNSEC_FILE = "dynamic-security.json"
_PLUGIN_GLOBS = (
    f"/usr/lib/*-linux-gnu*/{DYNSEC_PLUGIN}",
    f"/usr/lib/{DYNSEC_PLUGIN}",
    f"/usr/local/lib/{DYNSEC_PLUGIN}",
    f"/usr/local/lib/*/{DYNSEC_PLUGIN}",
)

AUTOSAVE_INTERVAL_S = 10
"""Short because the broker's memory (sessions, queued acks and commands, retained
status) otherwise survives a power cut only as of the last snapshot; 10 s costs one small
file write per 10 s while the console keeps up, since the queue is then nearly empty."""

MAX_INFLIGHT_MESSAGES = 100
"""Matches ``make_client(max_inflight=100)``; mosquitto's default of 20 throttles the
console to 20 round trips' worth of events while it drains a backlog."""

CONNECTION_HEADROOM = 64
"""Connections beyond the gates': the console's (ingest workers, health, commands, web), the
administrator's, and a gate's replacement logging in while its old session still closes."""

PERSISTENT_CLIENT_EXPIRATION = "14d"
"""A backstop above ``protocol.mqtt.SESSION_EXPIRY_S`` for clients that ask for none."""


@dataclass(frozen=True, slots=True)
class QueueSizing:
    """How much one client's queue must hold to ride out a console outage at full flow.

    The console's session receives every gate's events, so its queue is the one that
    fills: ``gates × peak events per second per gate × outage × headroom`` messages.
    The byte limit is the same count at a generous mean message size, so that the count,
    not the bytes, is the limit that binds for ordinary events.
    """

    gates: int = 16
    peak_events_per_s: float = 2.0
    outage_s: int = 3600
    headroom: float = 2.0
    mean_message_bytes: int = 1024

    def __post_init__(self) -> None:
        if self.gates < 1 or self.peak_events_per_s <= 0 or self.outage_s < 1 or self.headroom < 1:
            raise ValueError(
                "queue sizing needs at least one gate, a positive rate and outage, headroom >= 1"
            )

    @property
    def messages(self) -> int:
        return math.ceil(self.gates * self.peak_events_per_s * self.outage_s * self.headroom)

    @property
    def bytes(self) -> int:
        return self.messages * self.mean_message_bytes

    @property
    def connections(self) -> int:
        """``max_connections``: every gate and a quarter more, plus :data:`CONNECTION_HEADROOM`.

        A bound, not a target: past it mosquitto refuses the connection, so a runaway
        client (or a thousand reconnecting at once after a restart) cannot use up the file
        descriptors the real gates need.  Each connection costs mosquitto one descriptor;
        the unit's ``LimitNOFILE`` must exceed this (docs/broker.md, systemd/).
        """
        return math.ceil(self.gates * 1.25) + CONNECTION_HEADROOM

    def explain(self) -> str:
        return (
            f"{self.gates} gates x {self.peak_events_per_s:g} events/s x {self.outage_s} s x "
            f"{self.headroom:g} headroom = {self.messages} messages, x {self.mean_message_bytes} B = {self.bytes} B"
        )


def find_dynsec_plugin() -> Path:
    """This machine's dynamic-security plugin; without it no gatepost broker starts.

    Raises FileNotFoundError naming the package to install.
    """
    for pattern in _PLUGIN_GLOBS:
        for found in sorted(glob.glob(pattern)):
            return Path(found)
    raise FileNotFoundError(
        f"{DYNSEC_PLUGIN} not found in /usr/lib or /usr/local/lib; install the mosquitto package (2.0 or later)"
    )


def configured_dynsec_file(config_path: Path) -> Path | None:
    """The plugin file a written ``mosquitto.conf`` names, so provisioning writes where the broker reads."""
    return _option(config_path, "plugin_opt_config_file", lambda value: Path(value))


def configured_listener(config_path: Path) -> tuple[str, int] | None:
    """Where a written ``mosquitto.conf`` listens, as an address to connect to (``0.0.0.0`` is loopback)."""

    def parse(value: str) -> tuple[str, int]:
        port, _, bind = value.partition(" ")
        bind = bind.strip()
        return ("127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind, int(port))

    return _option(config_path, "listener", parse)


def _option(config_path: Path, name: str, parse: Any) -> Any:
    try:
        lines = Path(config_path).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.strip().partition(" ")
        if key == name and value.strip():
            try:
                return parse(value.strip())
            except ValueError:
                return None
    return None


def render_config(
    *,
    config_dir: Path = PRODUCTION_CONFIG_DIR,
    data_dir: Path = PRODUCTION_DATA_DIR,
    port: int | None = PRODUCTION_PORT,
    tls_port: int = PRODUCTION_TLS_PORT,
    bind: str = PRODUCTION_BIND,
    user: str = PRODUCTION_USER,
    plugin: Path = PRODUCTION_DYNSEC_PLUGIN,
    sizing: QueueSizing | None = None,
    max_queued_messages: int | None = None,
    autosave_interval: int = AUTOSAVE_INTERVAL_S,
    max_inflight_messages: int = MAX_INFLIGHT_MESSAGES,
    persistent_client_expiration: str = PERSISTENT_CLIENT_EXPIRATION,
) -> str:
    """The text of ``mosquitto.conf``; with no arguments, the production file.

    ``port`` is the plain listener's, always on loopback; ``None`` leaves it out, and
    then every connection, the admin's included, is TLS with a certificate.

    ``max_queued_messages`` overrides the sizing's count (tests use a small queue to
    show what overflow does) and the byte limit follows it.
    """
    sizing = sizing or QueueSizing()
    queued = sizing.messages if max_queued_messages is None else max_queued_messages
    for number in (tls_port, port):
        if number is not None and not 0 < number < 65536:
            raise ValueError(f"port {number} is not a TCP port")
    if queued < 1 or autosave_interval < 1 or max_inflight_messages < 1:
        raise ValueError("queue, autosave interval and inflight limit must be positive")
    template = resources.files("broker").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return template.format(
        config_dir=Path(config_dir).as_posix(),
        data_dir=Path(data_dir).as_posix(),
        plain_listener=_plain_listener(port),
        tls_port=tls_port,
        pki_dir=(Path(config_dir) / "pki").as_posix(),
        bind=bind,
        user=user,
        plugin=Path(plugin).as_posix(),
        dynsec_file=(Path(data_dir) / DYNSEC_FILE).as_posix(),
        autosave_interval=autosave_interval,
        queue_sizing_comment=sizing.explain()
        if max_queued_messages is None
        else f"{queued} messages (override)",
        max_queued_messages=queued,
        max_queued_bytes=queued * sizing.mean_message_bytes,
        max_inflight_messages=max_inflight_messages,
        max_connections=sizing.connections,
        connections_comment=f"{sizing.gates} gates x 1.25 + {CONNECTION_HEADROOM}",
        message_size_limit=MAX_MESSAGE_BYTES,
        persistent_client_expiration=persistent_client_expiration,
    )


def _plain_listener(port: int | None) -> str:
    if port is None:
        return "# No plain listener: every connection, the administrator's too, is TLS (below).\n"
    return (
        "# Plain MQTT on loopback only, with the plugin's passwords: the administrator's tooling\n"
        "# and a console on this host.  Nothing off this host can reach it.\n"
        f"listener {port} {PLAIN_BIND}\n"
    )


def configured_tls_listener(config_path: Path) -> tuple[str, int] | None:
    """Where a written ``mosquitto.conf``'s TLS listener is (the listener followed by ``cafile``)."""
    try:
        lines = [line.strip() for line in Path(config_path).read_text(encoding="utf-8").splitlines()]
    except (FileNotFoundError, PermissionError, UnicodeDecodeError):
        return None
    listener: str | None = None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "listener":
            listener = value.strip()
        elif key == "cafile" and listener:
            port, _, bind = listener.partition(" ")
            bind = bind.strip()
            return ("127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind, int(port))
    return None


def committed_example() -> Path:
    """The production file shipped in the package; a test keeps it equal to ``render_config()``."""
    return Path(str(resources.files("broker").joinpath("mosquitto.conf")))

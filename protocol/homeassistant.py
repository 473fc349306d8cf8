"""The topics between the console and a site's Home Assistant: one place for the console and the broker's ACL.

::

    gatepost/v1/<site>/$console/ha/<gate>/state          console -> HA  retained JSON: door, lock, tamper, …
    gatepost/v1/<site>/$console/ha/<gate>/availability   console -> HA  retained "online" / "offline"
    gatepost/v1/<site>/$console/ha/<gate>/reader/<r>     console -> HA  one JSON message per reader event
    gatepost/v1/<site>/$console/ha/<gate>/command        HA -> console  "LOCK" / "UNLOCK"
    <prefix>/<component>/gatepost_<site>/<object>/config console -> HA  retained discovery config

Home Assistant never writes a gate's topic: its command goes to the console, which checks
it and sends its own signed command, exactly as for an operator's unlock on the web
console.  Everything lives in the console's ``$console`` node, which no gate may write.

The discovery topic follows Home Assistant's ``<discovery_prefix>/<component>/[<node_id>/]
<object_id>/config`` (https://www.home-assistant.io/integrations/mqtt/#discovery-topic);
node and object ids may hold only ``[a-zA-Z0-9_-]``, which site and gate names already
satisfy, and the node is one per site so a site's Home Assistant account can be fenced
to its own site's configs.
"""

from __future__ import annotations

import hashlib
import re

from protocol.errors import ProtocolError, RejectReason
from protocol.topics import CONSOLE_NODE, ROOT, validate_name

HA_NODE = "ha"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
PREFIX_PATTERN = r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$"
_PREFIX = re.compile(PREFIX_PATTERN)
_OBJECT = re.compile(r"[^a-z0-9_-]")

LOCK_PAYLOAD = "LOCK"
UNLOCK_PAYLOAD = "UNLOCK"
AVAILABLE = "online"
NOT_AVAILABLE = "offline"

COMPONENTS = ("lock", "binary_sensor", "sensor", "event")


def validate_prefix(prefix: str) -> str:
    """A discovery prefix: topic levels of ``[A-Za-z0-9_-]``, so never a wildcard or ``$`` topic."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ProtocolError(
            RejectReason.BAD_TOPIC,
            f"discovery prefix {str(prefix)[:70]!r} must be 1-4 levels of A-Z, a-z, 0-9, '_' or '-'",
        )
    return prefix


def ha_base(site: str) -> str:
    """The console's Home Assistant subtree of one site (``+`` for every site)."""
    return f"{ROOT}/{site if site == '+' else validate_name(site, 'site')}/{CONSOLE_NODE}/{HA_NODE}"


def ha_gate_base(site: str, gate: str) -> str:
    return f"{ha_base(site)}/{validate_name(gate, 'gate')}"


def state_topic(site: str, gate: str) -> str:
    return f"{ha_gate_base(site, gate)}/state"


def availability_topic(site: str, gate: str) -> str:
    return f"{ha_gate_base(site, gate)}/availability"


def command_topic(site: str, gate: str) -> str:
    return f"{ha_gate_base(site, gate)}/command"


def reader_topic(site: str, gate: str, reader: str) -> str:
    return f"{ha_gate_base(site, gate)}/reader/{reader_slug(reader)}"


def command_filter(site: str = "+") -> str:
    """Every gate's command topic of ``site`` (``+``: of every site)."""
    return f"{ha_base(site)}/+/command"


def state_filter(site: str = "+") -> str:
    return f"{ha_base(site)}/+/state"


def availability_filter(site: str = "+") -> str:
    return f"{ha_base(site)}/+/availability"


def reader_filter(site: str = "+") -> str:
    return f"{ha_base(site)}/+/reader/+"


def gate_of_command_topic(topic: str) -> tuple[str, str] | None:
    """``(site, gate)`` of a command topic, or ``None`` when ``topic`` is not one."""
    parts = topic.split("/")
    if len(parts) != 7 or f"{parts[0]}/{parts[1]}" != ROOT or parts[3:5] != [CONSOLE_NODE, HA_NODE]:
        return None
    if parts[6] != "command":
        return None
    try:
        return validate_name(parts[2], "site"), validate_name(parts[5], "gate")
    except ProtocolError:
        return None


def reader_slug(reader: str) -> str:
    """A reader's name as one topic level and object id: ``[a-z0-9_-]``; changed names get a digest suffix
    so that two readers whose names differ only in other characters cannot share a topic."""
    text = str(reader)[:32]
    slug = _OBJECT.sub("_", text.lower())[:32] or "reader"
    if slug != text:
        slug = f"{slug[:23]}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return slug


def discovery_node(site: str) -> str:
    """The discovery topic's node id for a site's gates: ``gatepost_<site>``."""
    return f"gatepost_{validate_name(site, 'site')}"


def discovery_topic(prefix: str, component: str, site: str, object_id: str) -> str:
    if component not in COMPONENTS:
        raise ValueError(f"unknown Home Assistant component {component!r}")
    return f"{validate_prefix(prefix)}/{component}/{discovery_node(site)}/{object_id}/config"


def discovery_site_filter(prefix: str, site: str) -> str:
    """Every config the console publishes for ``site``'s gates (what its Home Assistant may read)."""
    return f"{validate_prefix(prefix)}/+/{discovery_node(site)}/+/config"


def discovery_write_filter(prefix: str) -> str:
    """Every config topic the console may write (any site's node)."""
    return f"{validate_prefix(prefix)}/+/+/+/config"


def ha_status_topic(prefix: str) -> str:
    """Where Home Assistant publishes its birth and last-will messages ("online"/"offline")."""
    return f"{validate_prefix(prefix)}/status"

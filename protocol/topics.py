"""The topic tree: one subtree per gate, so that the broker's ACL can fence each gate in.

::

    gatepost/v1/<site>/<gate>/event      gate -> console   event envelopes, QoS 1
    gatepost/v1/<site>/<gate>/status     gate -> all       retained GateStatus (online/degraded/stopped/offline)
    gatepost/v1/<site>/<gate>/health     gate -> console   retained GateHealth: load, memory, disk, backlog, …
    gatepost/v1/<site>/<gate>/response   gate -> console   CommandResponse
    gatepost/v1/<site>/<gate>/command    console -> gate   Command
    gatepost/v1/<site>/<gate>/ack        console -> gate   Ack: "these sequence numbers are committed"
    gatepost/v1/<site>/$console/status   console -> all    retained ConsoleStatus
    gatepost/v1/<site>/$console/trust    console -> gates  retained sealed trust bundle (signed passes)
    gatepost/v1/<site>/$console/revocation  console -> gates  retained sealed revocation list
    gatepost/v1/<site>/$console/cards/snapshot/<i>  console -> gates  retained door-card list chunks
    gatepost/v1/<site>/$console/cards/delta  console -> gates  door-card list changes (chunks)
    gatepost/v1/<site>/$console/photo/<hex>  console -> gates  retained holder thumbnail (JPEG)
    gatepost/v1/<site>/<gate>/cards          console -> gate   card-list chunks answering a request
    gatepost/v1/<site>/<gate>/cards_request  gate -> console  "my list is (version, hash); send an update"
    gatepost/v1/<site>/<gate>/duty           console -> gate   retained duty sheet: who is rostered here, staff PINs

A gate may write the first four of its own subtree, read the next two, and read its
site's console documents; that is the whole of its ACL.  Site and gate names are restricted to a small alphabet so that they
can never contain MQTT wildcards or separators, and ``$console`` cannot collide with a
gate because ``$`` is not in that alphabet.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import ProtocolError, RejectReason

ROOT = "gatepost/v1"
CONSOLE_NODE = "$console"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_NAME = re.compile(NAME_PATTERN)


class TopicKind(StrEnum):
    EVENT = "event"
    STATUS = "status"
    RESPONSE = "response"
    COMMAND = "command"
    ACK = "ack"
    CARDS = "cards"
    CARDS_REQUEST = "cards_request"
    HEALTH = "health"
    DUTY = "duty"


def validate_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a legal site or gate name, else raise ProtocolError.

    Lower-case letters, digits, ``-`` and ``_``, 1–32 characters, starting with a letter
    or digit: safe in topics, file names, usernames and ACL lines alike.
    """
    if not isinstance(value, str) or not _NAME.match(value):
        raise ProtocolError(
            RejectReason.BAD_TOPIC,
            f"{what} {value!r} must be 1-32 characters of a-z, 0-9, '-' or '_', starting with a-z or 0-9",
        )
    return value


@dataclass(frozen=True, slots=True)
class GateTopics:
    """Every topic of one gate, built once from its site and gate names."""

    site: str
    gate: str

    def __post_init__(self) -> None:
        validate_name(self.site, "site")
        validate_name(self.gate, "gate")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.site}/{self.gate}"

    def topic(self, kind: TopicKind) -> str:
        return f"{self.base}/{kind.value}"

    @property
    def event(self) -> str:
        return self.topic(TopicKind.EVENT)

    @property
    def status(self) -> str:
        return self.topic(TopicKind.STATUS)

    @property
    def response(self) -> str:
        return self.topic(TopicKind.RESPONSE)

    @property
    def command(self) -> str:
        return self.topic(TopicKind.COMMAND)

    @property
    def ack(self) -> str:
        return self.topic(TopicKind.ACK)

    @property
    def cards(self) -> str:
        return self.topic(TopicKind.CARDS)

    @property
    def cards_request(self) -> str:
        return self.topic(TopicKind.CARDS_REQUEST)

    @property
    def health(self) -> str:
        return self.topic(TopicKind.HEALTH)

    @property
    def duty(self) -> str:
        """The gate's duty sheet (protocol/duty.py): retained, console -> this gate only."""
        return self.topic(TopicKind.DUTY)


def site_filter(site: str, kind: TopicKind) -> str:
    """Subscription filter for one kind of topic of every gate of a site."""
    return f"{ROOT}/{validate_name(site, 'site')}/+/{kind.value}"


def all_sites_filter(kind: TopicKind) -> str:
    """Subscription filter for one kind of topic of every gate of every site."""
    return f"{ROOT}/+/+/{kind.value}"


def console_status_topic(site: str) -> str:
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/status"


class SiteDocument(StrEnum):
    """Signed documents the console publishes, retained, to every gate of a site.

    Each is verified by the gate itself (signatures under the site's pinned root key),
    so the broker and the console's connection need not be trusted with their integrity.
    """

    TRUST = "trust"
    REVOCATION = "revocation"


def site_document_topic(site: str, document: SiteDocument) -> str:
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/{document.value}"


def card_snapshot_topic(site: str, index: int) -> str:
    """One retained chunk of the site's door-card snapshot; a gate that subscribes gets them all."""
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/cards/snapshot/{index}"


def card_snapshot_filter(site: str) -> str:
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/cards/snapshot/+"


def card_delta_topic(site: str) -> str:
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/cards/delta"


_DIGEST = re.compile(r"^[0-9a-f]{32}$")


def photo_topic(site: str, digest_hex: str) -> str:
    """A holder's thumbnail, retained, named by the 16-byte photo digest its pass or card carries."""
    if not _DIGEST.match(digest_hex):
        raise ProtocolError(RejectReason.BAD_TOPIC, f"photo digest {digest_hex[:40]!r} is not 32 hex digits")
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/photo/{digest_hex}"


def photo_filter(site: str) -> str:
    return f"{ROOT}/{validate_name(site, 'site')}/{CONSOLE_NODE}/photo/+"


def photo_digest_of_topic(topic: str) -> str | None:
    """The digest a photo topic names, or ``None`` when the last level is not a digest."""
    last = topic.rsplit("/", 1)[-1]
    return last if _DIGEST.match(last) else None


@dataclass(frozen=True, slots=True)
class TopicRef:
    """What a concrete topic names: whose subtree, and which kind of message."""

    site: str
    gate: str
    kind: TopicKind


@functools.lru_cache(maxsize=4096)
def parse_topic(topic: str) -> TopicRef:
    """Split a gate topic into its parts, or raise ProtocolError(BAD_TOPIC).

    Cached: a console sees the same few topics (one per gate) thousands of times a second.
    A refused topic raises every time (``lru_cache`` does not keep exceptions).
    """
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise ProtocolError(
            RejectReason.BAD_TOPIC, f"topic {topic[:120]!r} is not under {ROOT}/<site>/<gate>/"
        )
    site, gate, kind = parts[2], parts[3], parts[4]
    validate_name(site, "site")
    validate_name(gate, "gate")
    try:
        return TopicRef(site, gate, TopicKind(kind))
    except ValueError:
        raise ProtocolError(RejectReason.BAD_TOPIC, f"unknown topic kind {kind[:40]!r}") from None

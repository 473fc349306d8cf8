"""Who may read and write which topics: the ACL that fences each gate into its own subtree.

A gate's credentials live on a device in a public place, so they are assumed stolen
sooner or later.  With these rules a stolen gate password can only speak as that one
gate and hear only its own commands; it cannot forge another gate's events, read
another gate's commands, join the console's ``$share`` group, or command anyone.  The
console may read every gate and command every gate.  Topics are built from
:mod:`protocol.topics`, never retyped.

The rules are written once here and become dynamic-security role ACLs
(:func:`dynsec_acls`): a ``read`` rule is the right to subscribe to (and unsubscribe from)
the filter and to receive what matches it, a ``write`` rule the right to publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from protocol import homeassistant as ha
from protocol.topics import (
    CONSOLE_NODE,
    ROOT,
    GateTopics,
    SiteDocument,
    TopicKind,
    all_sites_filter,
    card_delta_topic,
    card_snapshot_filter,
    console_status_topic,
    photo_filter,
    site_document_topic,
)

SHARE_PREFIX = "$share"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"
    SUBSCRIBE = "subscribe"
    """Subscribe to the filter only; what is delivered through it is still checked
    against the read rules (a ``$share/<group>/…`` filter names the topics it reads)."""


@dataclass(frozen=True, slots=True)
class Rule:
    access: Access
    topic: str


class AclType(StrEnum):
    """dynamic-security ACL types (mosquitto plugins/dynamic-security/dynamic_security.h)."""

    PUBLISH_SEND = "publishClientSend"
    PUBLISH_RECEIVE = "publishClientReceive"
    SUBSCRIBE = "subscribePattern"
    UNSUBSCRIBE = "unsubscribePattern"


_ACL_TYPES = {
    Access.READ: (AclType.SUBSCRIBE, AclType.UNSUBSCRIBE, AclType.PUBLISH_RECEIVE),
    Access.WRITE: (AclType.PUBLISH_SEND,),
    Access.READWRITE: (AclType.SUBSCRIBE, AclType.UNSUBSCRIBE, AclType.PUBLISH_RECEIVE, AclType.PUBLISH_SEND),
    Access.SUBSCRIBE: (AclType.SUBSCRIBE, AclType.UNSUBSCRIBE),
}


def dynsec_acls(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """A role's ``acls`` list: every rule an ``allow``; nothing else is allowed, since the
    plugin's default access is denied for every type (broker.dynsec).

    Subscriptions use ``subscribePattern``, which matches a filter against the rule level
    by level with ``+``/``#`` in the rule as wildcards (mosquitto
    plugins/dynamic-security/sub_matches_sub.c), so a rule ``gatepost/v1/+/+/event`` grants
    a console's per-site filter as well, and a gate's exact rules grant no wildcard.
    """
    return [
        {"acltype": acltype.value, "topic": rule.topic, "priority": 0, "allow": True}
        for rule in rules
        for acltype in _ACL_TYPES[rule.access]
    ]


def gate_rules(site: str, gate: str) -> list[Rule]:
    """A gate writes its events, status, responses and health; reads its commands, acks and its site's console status."""
    topics = GateTopics(site, gate)
    return [
        Rule(Access.WRITE, topics.event),
        Rule(Access.WRITE, topics.status),
        Rule(Access.WRITE, topics.response),
        Rule(Access.WRITE, topics.health),
        Rule(Access.READ, topics.command),
        Rule(Access.READ, topics.ack),
        Rule(Access.READ, console_status_topic(site)),
        *(Rule(Access.READ, site_document_topic(site, document)) for document in SiteDocument),
        # The door-card list and holder thumbnails: the whole site's, retained, plus
        # answers meant for this gate alone, which it asks for on its own request topic.
        Rule(Access.READ, card_snapshot_filter(site)),
        Rule(Access.READ, card_delta_topic(site)),
        Rule(Access.READ, photo_filter(site)),
        Rule(Access.READ, topics.cards),
        Rule(Access.WRITE, topics.cards_request),
        # Who is rostered at this post and their PIN hashes: this gate's alone.
        Rule(Access.READ, topics.duty),
    ]


def console_rules() -> list[Rule]:
    """The console hears every gate of every site and may command and acknowledge each."""
    return [
        Rule(Access.READ, all_sites_filter(TopicKind.EVENT)),
        # Several ingest workers share the events through a $share group; only the
        # console may join one, so no gate can take a share of another gate's events.
        Rule(Access.SUBSCRIBE, f"{SHARE_PREFIX}/+/{all_sites_filter(TopicKind.EVENT)}"),
        Rule(Access.READ, all_sites_filter(TopicKind.STATUS)),
        Rule(Access.READ, all_sites_filter(TopicKind.RESPONSE)),
        Rule(Access.READ, all_sites_filter(TopicKind.HEALTH)),
        Rule(Access.WRITE, all_sites_filter(TopicKind.COMMAND)),
        Rule(Access.WRITE, all_sites_filter(TopicKind.ACK)),
        Rule(Access.READWRITE, f"{ROOT}/+/{CONSOLE_NODE}/status"),
        *(Rule(Access.WRITE, f"{ROOT}/+/{CONSOLE_NODE}/{document.value}") for document in SiteDocument),
        Rule(Access.WRITE, f"{ROOT}/+/{CONSOLE_NODE}/cards/#"),
        Rule(Access.WRITE, f"{ROOT}/+/{CONSOLE_NODE}/photo/+"),
        Rule(Access.WRITE, all_sites_filter(TopicKind.CARDS)),
        Rule(Access.READ, all_sites_filter(TopicKind.CARDS_REQUEST)),
        Rule(Access.WRITE, all_sites_filter(TopicKind.DUTY)),
    ]


def console_homeassistant_rules(prefixes: Iterable[str]) -> list[Rule]:
    """The console's Home Assistant bridge: its own subtree, and discovery configs under each prefix.

    It reads back its retained states (so a restart keeps what it knew) and Home Assistant's
    commands; it writes states, availability, reader events and configs.
    """
    rules = [Rule(Access.READWRITE, f"{ha.ha_base('+')}/#")]
    rules += [Rule(Access.WRITE, ha.discovery_write_filter(prefix)) for prefix in sorted(set(prefixes))]
    return rules


def homeassistant_rules(site: str, prefix: str) -> list[Rule]:
    """A site's Home Assistant: read what the console publishes for that site, write only its command topic.

    Home Assistant subscribes to ``<prefix>/#`` for discovery, so that filter is granted as a
    subscription only (:attr:`Access.SUBSCRIBE`): what it then receives is still fenced by the
    read rules, which name this site's configs alone.  It publishes its birth and will on
    ``<prefix>/status``.  No gate topic is readable or writable: a stolen Home Assistant
    password can ask the console for what the console's own user grants allow, nothing more.
    """
    return [
        Rule(Access.SUBSCRIBE, f"{ha.validate_prefix(prefix)}/#"),
        Rule(Access.READ, ha.discovery_site_filter(prefix, site)),
        Rule(Access.READWRITE, ha.ha_status_topic(prefix)),
        Rule(Access.READ, ha.state_filter(site)),
        Rule(Access.READ, ha.availability_filter(site)),
        Rule(Access.READ, ha.reader_filter(site)),
        Rule(Access.READ, console_status_topic(site)),
        Rule(Access.READ, console_status_topic("all")),
        Rule(Access.WRITE, ha.command_filter(site)),
    ]

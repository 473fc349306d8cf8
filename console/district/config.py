"""The ``[district]`` section of the console's configuration: where the feed goes and what it may say.

::

    [district]
    name = "compound-7"              # this console at the district: the records' ``console`` and topic level
    select = ["access", "alarms"]    # or ["all"]; "flow" adds the hourly flow records
    batch = 500

    [district.privacy]               # data fields dropped before anything leaves the console
    drop = ["holder", "credential"]  # every site
    [district.privacy.sites.north]   # one site's own list, instead of the one above
    drop = ["holder"]

    [district.mqtt]                  # MQTT 5 over TLS to the district broker, QoS 1
    host = "district.example"
    port = 8883
    tls_ca = "district-ca.crt"
    tls_cert = "district.crt"
    tls_key = "district.key"
    topic_prefix = "district/v1"

The pull API (``/api/v1/events``) needs no section: it is served by the web console to
whoever holds a token an admin made (``gatepost console district-token create``); the
privacy lists apply to it as well.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from protocol import validate_name
from protocol.mqtt import MqttSettings

__all__ = ["DistrictConfig", "DistrictMqttConfig", "PrivacyConfig", "Subset"]

_FIELD = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_TOPIC = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


def _name(value: str) -> str:
    validate_name(value)
    return value


class Subset(StrEnum):
    """What the push feed forwards (docs/district.md "Subsets")."""

    ALL = "all"
    ACCESS = "access"
    ALARMS = "alarms"
    FLOW = "flow"
    ATTENDANCE = "attendance"
    """Staff check-ins and check-outs at their posts, and refused ones (``duty.*``, protocol/duty.py)."""
    PATROLS = "patrols"
    """Patrol guards' station check-ins (``patrol.checkin``)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SitePrivacy(_Section):
    drop: list[Annotated[str, Field(pattern=_FIELD)]] = Field(
        default_factory=list, max_length=64, title="Data fields this site never sends"
    )


class PrivacyConfig(_Section):
    """Per-field filtering: a site decides what of its residents' data leaves the compound."""

    drop: list[Annotated[str, Field(pattern=_FIELD)]] = Field(
        default_factory=lambda: ["holder"],
        max_length=64,
        title="Data fields dropped from every record (default: the holder's name)",
    )
    sites: dict[Annotated[str, AfterValidator(_name)], SitePrivacy] = Field(
        default_factory=dict, title="A site's own list, used instead of ``drop`` for that site"
    )

    def dropped(self, site: str) -> frozenset[str]:
        own = self.sites.get(site)
        return frozenset(own.drop if own is not None else self.drop)


class DistrictMqttConfig(MqttSettings):
    """The district broker: MQTT 5, QoS 1, TLS unless on loopback (the password rule of ``[mqtt]``)."""

    topic_prefix: str = Field(
        "district/v1", pattern=_TOPIC, max_length=200, title="Records go to PREFIX/CONSOLE/SITE/KIND"
    )
    inflight: int = Field(500, ge=1, le=65_535, title="Publishes awaiting the broker's PUBACK at once")
    ack_timeout_s: float = Field(
        30.0, gt=0, le=600, title="A batch not acknowledged in this time is sent again"
    )


class DistrictConfig(_Section):
    name: Annotated[str, AfterValidator(_name)] = Field(title="This console's name at the district")
    select: list[Subset] = Field(
        default_factory=lambda: [Subset.ALL], min_length=1, title="What the feed forwards"
    )
    sites: list[Annotated[str, AfterValidator(_name)]] | None = Field(
        None, title="Only these sites' records (default: every site this console stores)"
    )
    batch: int = Field(500, ge=1, le=10_000, title="Events read and sent per round")
    records_per_message: int = Field(
        50, ge=1, le=1000, title="Records joined as JSON lines in one MQTT message (1: a message each)"
    )
    poll_s: float = Field(0.5, gt=0, le=60, title="How often the store is read when nothing wakes the feed")
    replay_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        title="On each new connection, send again what was acknowledged this recently "
        "(at least the district broker's autosave_interval)",
    )
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    mqtt: DistrictMqttConfig | None = None

    def resolve_paths(self, base: Path) -> None:
        if self.mqtt is not None:
            self.mqtt.resolve_paths(base)

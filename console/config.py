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
    path = "/var/lib/gatepost/console/events.db"
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from protocol import validate_name
from protocol.configfile import ConfigError, load_toml_model
from protocol.mqtt import MqttSettings

__all__ = ["ConfigError", "ConsoleConfig", "load_config"]


def _name(value: str) -> str:
    validate_name(value)
    return value


def _site(value: str) -> str:
    return value if value == "+" else _name(value)


Name = Annotated[str, AfterValidator(_name)]
Site = Annotated[str, AfterValidator(_site)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(MqttSettings):
    """How the console reaches the broker.  Its user is provisioned by ``gatepost broker add-console``."""


class StoreConfig(_Section):
    path: Path = Field(Path("/var/lib/gatepost/console/events.db"), title="SQLite event store")


class IngestConfig(_Section):
    batch_max: int = Field(500, ge=1, le=10_000, title="Most messages committed in one transaction")
    batch_wait_s: float = Field(
        0.0, ge=0, le=1, title="How long a batch waits to fill (0: take what is queued)"
    )


class LogConfig(_Section):
    level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class ConsoleConfig(_Section):
    name: Name = "console"
    site: Site = "+"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def load_config(path: Path | str) -> ConsoleConfig:
    """Parse and validate ``path``; raise ConfigError naming each bad line and key.

    Relative paths inside the file are taken relative to the file's folder, so a
    configuration moves together with its store and secrets.
    """
    path = Path(path)
    config = load_toml_model(path, ConsoleConfig)
    base = path.resolve().parent
    config.store.path = _resolve(base, config.store.path)
    if config.mqtt.password_file is not None:
        config.mqtt.password_file = _resolve(base, config.mqtt.password_file)
    if config.mqtt.tls_ca is not None:
        config.mqtt.tls_ca = _resolve(base, config.mqtt.tls_ca)
    return config


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else base / value

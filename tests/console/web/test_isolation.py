"""The web fixtures never reach the broker that runs on this machine (127.0.0.1:1883).

A revocation published there by a test would land on a real site's retained topic, and a
test that passes only because a broker happens to run is not a test.  Every fixture that
builds a console configuration points its MQTT at a port nobody listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from console.config import ConsoleConfig
from tests.console.web.pages_support import web_console
from tests.console.web.web_support import Web


def _refused(config: ConsoleConfig) -> bool:
    endpoint = config.mqtt
    if endpoint.port == 1883:
        return False
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=1.0):
            return False
    except OSError:
        return True


def test_web_factory_points_mqtt_at_a_closed_port(web_factory: Callable[..., Web]) -> None:
    web = web_factory(watch=False)
    assert _refused(web.ctx.config)


def test_pages_console_points_mqtt_at_a_closed_port(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        assert _refused(console.ctx.config)

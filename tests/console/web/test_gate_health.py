"""A gate's health message reaches the console through a real broker and shows on the gate's page.

The gate is a real agent publishing its retained health; the console is the real web app,
whose lifespan starts the health listener (its own MQTT connection) exactly as ``console
run`` does.  The page is read as a browser reads it, in both languages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.launcher import Broker
from edge.agent import GateAgent
from edge.config import EdgeConfig
from protocol import GateHealth, GateState, GateTopics, encode
from tests.conftest import ClientFactory
from tests.console.web.web_support import Web, login, post_form
from tests.waiting import wait_until


@pytest.fixture
def gate(tmp_path: Path, broker: Broker, unique_name: str) -> Iterator[GateAgent]:
    creds = broker.add_gate("s1", unique_name)
    secret = tmp_path / "gate.secret"
    secret.write_text(creds.password)
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": unique_name,
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "metrics": {"listen": ""},
            "health": {"interval_s": 1},
        }
    )
    agent = GateAgent(config, version="9.9.9")
    agent.start()
    try:
        assert agent.link.wait_connected(10)
        yield agent
    finally:
        agent.stop(drain_s=0)


def test_the_gate_page_shows_the_health_the_gate_sent(
    web_factory: Callable[..., Web], broker: Broker, gate: GateAgent
):
    web = web_factory(endpoint=broker.endpoint(broker.add_console("console")))
    web.add_user("ana")
    name = gate.config.gate
    with web.client() as client:
        login(client, "ana")
        listener = web.ctx.health
        assert listener is not None and listener.wait_connected(10)
        report = wait_until(lambda: listener.board.get("s1", name), timeout=15)
        assert report, "the retained health message arrived"
        health = report.health
        assert (health.version, health.state, health.degraded) == ("9.9.9", GateState.ONLINE, False)
        assert (
            health.backlog == gate.outbox.backlog or health.backlog >= 1
        )  # agent.started is owed: no ingest here

        page = client.get(f"/gates/s1/{name}")
        assert page.status_code == 200, page.text
        assert 'id="health"' in page.text and "online" in page.text and "9.9.9" in page.text
        assert f'data-field="backlog">{health.backlog}<' in page.text
        assert "MiB of" in page.text  # disk and memory
        post_form(client, "/lang", {"lang": "zh", "next": "/"})
        assert "运行状况" in client.get(f"/gates/s1/{name}").text

        assert client.get("/gates/s1/no-such-gate").status_code == 404
        assert client.get("/gates/s1/BAD").status_code == 404


def test_a_health_message_naming_another_gate_is_refused(
    web_factory: Callable[..., Web], broker: Broker, mqtt_client_factory: ClientFactory, unique_name: str
):
    web = web_factory(endpoint=broker.endpoint(broker.add_console("console")))
    impostor = mqtt_client_factory(broker.add_gate("s1", unique_name))
    forged = GateHealth(
        site="s1", gate="victim", boot="b" * 32, time=__import__("datetime").datetime.now(__import__("datetime").UTC),
        state=GateState.ONLINE, backlog=0, resends=0, clock_trusted=True, degraded=False,
    )  # fmt: skip
    with web.client():
        listener = web.ctx.health
        assert listener is not None and listener.wait_connected(10)
        impostor.publish(GateTopics("s1", unique_name).health, encode(forged), retain=True)
        impostor.publish(GateTopics("s1", unique_name).health, b"not json", retain=False)
        assert wait_until(lambda: listener.rejected == 2, timeout=10)
        assert listener.board.get("s1", "victim") is None and listener.board.get("s1", unique_name) is None

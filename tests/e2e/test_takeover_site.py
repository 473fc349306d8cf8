"""The takeover attack of issue 12 against a running site, while every gate streams scans.

Real ``gatepost edge run`` and ``gatepost console run`` processes and mosquitto from
``broker/``'s configuration; an attacker holding every gate's and the console's
credentials tries each under every other client id, round after round, for as long as
the gates are scanning.  With a password file this closed the real clients, raised false
``gate.offline`` alarms and left events behind; now every attempt is refused, each real
client stays on its first connection, and the console holds every scan exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.identity import account_connections
from simulator.site import SimulatedSite
from tests.broker.test_takeover import NOT_AUTHORIZED, attempt
from tests.e2e.test_faults import Typist, assert_exactly_once, wait_started

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GATES = ["g1", "g2", "g3"]


def test_every_credential_under_every_other_id_during_a_stream_changes_nothing(tmp_path: Path):
    site = SimulatedSite(
        tmp_path / "site",
        gates=GATES,
        residents=10,
        baudrate=115200,
        pace=False,
        resend_after_s=2.0,
        log_level="WARNING",
    )
    try:
        site.start()
        for gate in GATES:
            wait_started(site, gate)
        assert site.console_username is not None
        ids = [f"gate.{site.site}.{gate}" for gate in GATES] + account_connections(site.console_username)
        typists = {
            gate: Typist(site, gate, 100_000 * n, 800, per_s=200).start() for n, gate in enumerate(GATES)
        }
        attempts = 0
        while attempts == 0 or any(t.thread.is_alive() for t in typists.values()):
            for username, creds in site.credentials.items():
                for client_id in ids:
                    if client_id != username:
                        reason, _ = attempt(site.broker, username, creds.password, client_id)
                        assert reason == NOT_AUTHORIZED, f"{username} connected as {client_id}"
                        attempts += 1
        for gate, typist in typists.items():
            assert_exactly_once(site, gate, typist.join(), all_typed_taken=True)
        log = site.broker.log_path.read_text(errors="replace")
        assert "already connected, closing old connection" not in log
        for username in [*(f"gate.{site.site}.{gate}" for gate in GATES), site.console_username]:
            # MQTT 5 ("p5"): the launcher's own login check after provisioning is MQTT 3.1.1.
            assert log.count(f" as {username} (p5,") == 1, f"{username} was disconnected and came back"
        assert log.count("Client <unknown> disconnected, not authorised.") >= attempts
        offline = site.console_rows("SELECT COUNT(*) FROM events WHERE type = 'gate.offline'")
        assert offline in ([], [(0,)]), "no false offline alarm"
    finally:
        site.stop()

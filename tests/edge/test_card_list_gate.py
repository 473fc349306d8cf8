"""Cards judged from the synced credential list: holder, validity and window, offline."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console.credentials import CardRegistry
from edge.agent import GateAgent, Presented
from edge.config import EdgeConfig
from edge.credentials import CardStore
from protocol import decode_event
from protocol.credentials import CardEntry

NOW = datetime.now(UTC)


def test_cards_from_the_synced_list_are_granted_or_refused_with_a_reason(tmp_path: Path):
    registry = CardRegistry(tmp_path / "registry.db")
    registry.put(
        [
            CardEntry(
                "wiegand26:13:1001", holder="李华", unit="5-1-302", valid_until=NOW + timedelta(days=30)
            ),
            CardEntry(
                "wiegand26:13:1002", holder="张伟", unit="5-1-303", valid_until=NOW - timedelta(days=1)
            ),
        ]
    )
    store = CardStore(tmp_path / "cards.db")
    store.apply_snapshot_chunks(registry.snapshot())
    store.close()
    config = EdgeConfig.model_validate(
        {
            "site": "s1",
            "gate": "building-5",
            "mqtt": {"host": "127.0.0.1", "port": 9},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "clock": {"trust": "trusted"},
            "cards": {"store": str(tmp_path / "cards.db"), "timezone": "Asia/Shanghai"},
        }
    )
    agent = GateAgent(config)
    agent.start()
    try:
        for credential in ("wiegand26:13:1001", "wiegand26:13:1002", "wiegand26:13:9999"):
            agent.present(Presented(credential, "card", "reader", time.monotonic_ns(), credential))
        events = [decode_event(row.body) for row in agent.outbox.pending(limit=100)]
        scans = [e.data for e in events if e.type == "access.scan"]
        assert [(s["code"], s["granted"], s["reason"]) for s in scans] == [
            ("wiegand26:13:1001", True, "granted"),
            ("wiegand26:13:1002", False, "expired"),
            ("wiegand26:13:9999", False, "unknown"),
        ]
        assert (scans[0]["holder"], scans[0]["unit"]) == ("李华", "5-1-302")
    finally:
        agent.stop(drain_s=0)

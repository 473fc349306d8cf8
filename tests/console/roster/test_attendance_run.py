"""``gatepost console run`` as a real process sends a gate its duty sheet, and a new one after a roster change."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.duty_pins import hash_duty_pin
from console.roster.model import Person, Team
from console.roster.plan import week_start
from console.roster.store import RosterStore
from console.store import EventStore
from protocol import GateTopics
from protocol.duty import decode_sheet
from tests.console.roster.attendance_support import ZONE
from tests.console.test_cli import gatepost, processes  # noqa: F401 - the process fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
WAIT_S = 30.0  # the publisher looks at the roster every 15 s


def test_the_running_console_publishes_duty_sheets(
    tmp_path: Path,
    broker,
    unique_name: str,
    mqtt_client_factory,
    processes,  # noqa: F811
):
    site = unique_name
    post = f"{site}/north"
    db = tmp_path / "store" / "events.db"
    db.parent.mkdir()
    now = datetime.now(UTC).astimezone(ZONE)
    week = week_start(now.date())
    hour = now.weekday() * 24 + now.hour
    with EventStore(db) as store:
        roster = RosterStore(store.db)
        people = [
            Person(p, p.upper(), Team.GUARD, frozenset({post}), frozenset(range(168)), trained=True)
            for p in ("g0", "g1")
        ]
        roster.put_people(people)
        roster.replace_week(
            week,
            {("g0", post): frozenset(range(max(0, hour - 1), min(168, hour + 2)))},
            status="draft",
            made_by="t",
            summary={},
        )
        roster.set_pin("g0", hash_duty_pin("135790"), "t")
    creds = broker.add_console("console")
    (tmp_path / "console.secret").write_text(creds.password)
    config = tmp_path / "console.toml"
    config.write_text(
        f'site = "{site}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{creds.username}"\n'
        f'password_file = "console.secret"\n[store]\npath = "{db}"\n[web]\nenabled = false\n'
        '[metrics]\nlisten = ""\n[roster]\nunderstaffed_after_minutes = 30\n'
    )
    gate = mqtt_client_factory(broker.add_gate(site, "north"))
    assert not gate.subscribe(GateTopics(site, "north").duty).is_failure
    console = gatepost("console", "run", "--config", str(config))
    processes.append(console)

    message = gate.get(WAIT_S)
    assert message is not None, "no duty sheet from the running console"
    sheet = decode_sheet(message.payload)
    assert [s.person for s in sheet.on_shift(datetime.now(UTC))] == ["g0"]
    assert [p.person for p in sheet.pins] == ["g0"]

    with EventStore(db) as store:  # the office adds g1 beside g0, from another process
        RosterStore(store.db).replace_week(
            week,
            {
                ("g0", post): frozenset(range(max(0, hour - 1), min(168, hour + 2))),
                ("g1", post): frozenset(range(max(0, hour - 1), min(168, hour + 2))),
            },
            status="edited",
            made_by="t",
            summary={},
        )
    message = gate.get(WAIT_S)
    assert message is not None
    assert sorted(s.person for s in decode_sheet(message.payload).shifts) == ["g0", "g1"]
    console.send_signal(signal.SIGTERM)
    assert console.wait(WAIT_S) == 0

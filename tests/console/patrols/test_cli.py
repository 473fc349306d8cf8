"""``gatepost console patrols import`` and ``rounds``: the same checks and round records as the pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from console.store import EventStore
from gatepost.cli import main
from protocol import Event
from protocol.duty import PATROL_CHECKIN, PatrolCheck


def test_import_refuses_each_mistake_then_rounds_print(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "console.toml"
    config.write_text(
        f'name = "main"\n[store]\npath = "{tmp_path / "events.db"}"\n[flow]\ntimezone = "Asia/Shanghai"\n'
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("route,site,gate,offset,first\nr,longtan,north,x,9am\n", encoding="utf-8")
    assert main(["console", "patrols", "import", "-c", str(config), str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 2, column offset: bad_number" in err and "line 2, column first: bad_time" in err

    good = tmp_path / "routes.csv"
    good.write_text("route,site,gate,reader,offset,first,last\nloop,longtan,north,card,0,09:00,09:00\n")
    assert main(["console", "patrols", "import", "-c", str(config), str(good)]) == 0
    assert "1 routes imported" in capsys.readouterr().out

    start = datetime(2026, 12, 7, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    with EventStore(tmp_path / "events.db") as store:
        data = PatrolCheck(person="pg-1", reader="card").model_dump(mode="json")
        event = Event(
            id=uuid.uuid4().hex,
            site="longtan",
            gate="north",
            boot="5" * 32,
            seq=1,
            time=start + timedelta(minutes=8),
            clock_trusted=True,
            type=PATROL_CHECKIN,
            data=data,
        )
        store.commit([event])
    assert main(["console", "patrols", "rounds", "-c", str(config), "--date", "2026-12-07"]) == 0
    out = capsys.readouterr().out
    assert "longtan/loop  2026-12-07 09:00" in out and "09:08:00 pg-1" in out and "late +8 min" in out

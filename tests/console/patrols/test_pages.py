"""The patrol pages: a route added and edited (refusals named), a CSV import with its mistakes by line and
column, a round's record on screen and printed in both languages, CSV and JSON exports, all audited;
and the late alarm raised by the running console's patrol watcher."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from console.alarms import AlarmKind
from console.patrols.importer import read_routes
from console.patrols.store import PatrolStore
from console.web.middleware import SESSION_COOKIE
from protocol import Event
from protocol.duty import PATROL_CHECKIN, PatrolCheck
from tests.console.web.pages_support import PASSWORD, audit_actions, csrf_of, web_console
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
ZONE = ZoneInfo("Asia/Shanghai")
DAY = "2026-12-07"
ROUTES_CSV = (
    "route,site,gate,reader,offset,tolerance,first,last,every\n"
    "east loop,longtan,north,card,0,5,09:00,10:00,60\n"
    "east loop,longtan,building-3,,20,5,,,\n"
    "west loop,longtan,east,,0,5,,,\n"
)


def _checkin(gate: str, seq: int, at: datetime, reader: str) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        site="longtan",
        gate=gate,
        boot="2" * 32,
        seq=seq,
        time=at,
        clock_trusted=True,
        type=PATROL_CHECKIN,
        data=PatrolCheck(person="p-1", name="王巡", reader=reader).model_dump(mode="json"),
    )


def _post(client: TestClient, path: str, data: dict[str, str], page: str = "/patrols", **kwargs: object):
    return client.post(path, data={"csrf_token": csrf_of(client, page), **data}, **kwargs)  # type: ignore[arg-type]


def test_routes_rounds_print_and_exports(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        client = console.client("operator")
        assert client.get("/patrols").status_code == 200

        # A CSV with mistakes imports nothing and names each by line and column.
        bad = "route,site,gate,offset,tolerance\nr,longtan,north,x,5\nr,longtan,north,58,5\n"
        answer = _post(
            client, "/patrols/import", {}, files={"file": ("routes.csv", bad.encode(), "text/csv")}
        )
        assert answer.status_code == 400
        assert "line 2, column offset" in answer.text and "line 2, column offset" in answer.text
        assert "offset_outside_round" in answer.text
        assert PatrolStore(console.ctx.db).routes() == []

        answer = _post(
            client, "/patrols/import", {}, files={"file": ("routes.csv", ROUTES_CSV.encode(), "text/csv")}
        )
        assert answer.status_code == 303
        routes = {r.name: r for r in PatrolStore(console.ctx.db).routes()}
        east = routes["east loop"]
        assert [s.label for s in east.stations] == ["north/card", "building-3"]

        # A form that breaks a rule is refused with the rule named; a good one is stored.
        refused = _post(
            client,
            "/patrols",
            {"site": "longtan", "name": "night", "stations": "north, 70, 5", "every": "60"},
        )
        assert refused.status_code == 400 and 'class="error"' in refused.text
        added = _post(
            client, "/patrols", {"site": "longtan", "name": "night", "stations": "north/card, 0, 5\neast, 30"}
        )
        assert added.status_code == 303
        night = {r.name: r for r in PatrolStore(console.ctx.db).routes()}["night"]
        edited = _post(
            client,
            f"/patrols/routes/{night.id}",
            {"site": "longtan", "name": "night", "stations": "north/card, 0, 5", "active": "no"},
            page=f"/patrols/routes/{night.id}",
        )
        assert edited.status_code == 303
        assert not PatrolStore(console.ctx.db).route(night.id).active  # type: ignore[union-attr]

        # Check-ins of the 09:00 round: on time at north, 12 minutes late at building-3.
        start = datetime(2026, 12, 7, 9, 0, tzinfo=ZONE).astimezone(UTC)
        console.ctx.store.commit(
            [
                _checkin("north", 1, start + timedelta(minutes=2), "card"),
                _checkin("building-3", 1, start + timedelta(minutes=32), "card"),
            ]
        )
        rounds = client.get(f"/patrols/rounds?date={DAY}").text
        round_id = f"{east.id}-20261207T0900"
        assert f'id="round-{round_id}"' in rounds
        page = client.get(f"/patrols/rounds/{round_id}").text
        assert "王巡" in page and "(+12 min)" in page and "on time" in page
        printed = client.get(f"/patrols/rounds/{round_id}/print").text
        assert "迟到" in printed and "late" in printed and "准时" in printed and "（迟 12 分钟）" in printed

        exported = client.get(f"/patrols/export.csv?from={DAY}&to={DAY}")
        rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
        mine = [r for r in rows if r["round"] == round_id]
        assert [(r["station"], r["state"], r["late_min"]) for r in mine] == [
            ("1", "on_time", "0"),
            ("2", "late", "12"),
        ]
        lines = client.get(f"/patrols/export.json?from={DAY}&to={DAY}").text.splitlines()
        assert {json.loads(line)["round"] for line in lines} >= {round_id, f"{east.id}-20261207T1000"}
        assert client.get(f"/patrols/export.csv?from={DAY}&to=2027-03-01").status_code == 400
        assert client.get("/patrols/rounds/99-20261207T0900").status_code == 404

        actions = audit_actions(console)
        for action in ("patrol.routes_import", "patrol.route_add", "patrol.route_edit", "export"):
            assert action in actions


def test_the_running_watcher_raises_a_late_station_once(tmp_path: Path) -> None:
    """A route whose first station fell due a few minutes ago: the console's own watcher raises ``patrol.late``."""
    with web_console(tmp_path) as console:
        now_local = datetime.now(ZONE).replace(second=0, microsecond=0)
        first = now_local - timedelta(minutes=10)
        csv_text = (
            "route,site,gate,offset,tolerance,first,last,every\n"
            f"now,longtan,north,0,1,{first:%H:%M},{first:%H:%M},60\n"
            "now,longtan,east,50,5,,,\n"
        )
        PatrolStore(console.ctx.db).put_routes(read_routes(csv_text.encode()), "t")
        from console.web.app import create_app

        app = create_app(console.ctx, watch=True)
        app.state.patrol_watcher.interval_s = 0.2
        with TestClient(app):
            late = lambda: [a for a in console.ctx.alarms.list() if a.kind == AlarmKind.PATROL_LATE.value]  # noqa: E731
            assert wait_until(lambda: len(late()) == 1, timeout=10)
            passes = app.state.patrol_watcher.passes
            assert wait_until(lambda: app.state.patrol_watcher.passes >= passes + 3, timeout=10)
        (alarm,) = late()
        assert (alarm.site, alarm.gate, alarm.count) == ("longtan", "north", 1)
        assert alarm.detail["route"] == "now" and alarm.detail["station"] == 1
        assert not [a for a in console.ctx.alarms.list() if a.kind == AlarmKind.PATROL_MISSED.value]


def test_a_user_limited_to_a_site_sees_and_edits_only_its_routes(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        store = PatrolStore(console.ctx.db)
        (theirs,) = [
            store.save(r, "t") for r in read_routes(ROUTES_CSV.replace("longtan", "other").encode())[:1]
        ]
        console.ctx.users.add("nearby", PASSWORD, "operator", sites="longtan")
        client = console.client(None)
        client.cookies.set(SESSION_COOKIE, console.ctx.users.login("nearby", PASSWORD).token)
        assert "east loop" not in client.get("/patrols").text
        assert client.get(f"/patrols/routes/{theirs.id}").status_code == 404
        assert client.get(f"/patrols/rounds/{theirs.id}-20261207T0900/print").status_code == 404
        assert theirs.name not in client.get(f"/patrols/rounds?date={DAY}").text
        assert "other" not in client.get(f"/patrols/export.csv?from={DAY}&to={DAY}").text
        refused = _post(client, "/patrols", {"site": "other", "name": "mine now", "stations": "north, 0, 5"})
        assert refused.status_code == 403 and 'class="error"' in refused.text
        other = ROUTES_CSV.replace("longtan", "other").encode()
        refused = _post(client, "/patrols/import", {}, files={"file": ("r.csv", other, "text/csv")})
        assert refused.status_code == 403
        assert [r.name for r in store.routes()] == ["east loop"]

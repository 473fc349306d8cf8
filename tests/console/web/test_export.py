"""Exports of events and flow: formats, filters, CSV safety, and the audit entry."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from tests.console.web.web_support import Web, login, make_event

T0 = datetime(2026, 11, 29, 7, 30, tzinfo=UTC)


def _fill(web: Web) -> None:
    events = [
        make_event("s1", "north", 1, at=T0, granted=True, reason="granted", holder="Li Wei", code="1"),
        make_event(
            "s1",
            "north",
            2,
            at=T0 + timedelta(minutes=40),
            granted=True,
            reason="granted",
            holder="Wang Fang",
            direction="out",
        ),
        make_event(
            "s1",
            "north",
            3,
            at=T0 + timedelta(minutes=45),
            granted=False,
            reason="unknown",
            code='=HYPERLINK("http://x")',
        ),
        make_event(
            "s1", "south", 1, at=T0 + timedelta(hours=1), granted=True, reason="granted", holder="Li Wei"
        ),
        make_event("s1", "south", 2, "door.forced", at=T0 + timedelta(hours=2)),
    ]
    web.store.commit(events)


def test_events_export_as_csv_with_filters_and_no_formula_injection(web: Web):
    web.add_user("ana")
    _fill(web)
    with web.client() as client:
        login(client, "ana")
        response = client.get("/export/events.csv?gate=north")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["seq"] for r in rows] == ["3", "2", "1"]  # newest first, like the list
        assert rows[0]["code"].startswith("'=")  # a spreadsheet shows it, does not run it
        holder = list(csv.DictReader(io.StringIO(client.get("/export/events.csv?holder=Li%20Wei").text)))
        assert [(r["gate"], r["holder"]) for r in holder] == [("south", "Li Wei"), ("north", "Li Wei")]
        assert (
            holder[0]["time"] == "2026-11-29T08:30:00.000000Z"
        )  # exports keep UTC, whatever the site's zone
        # the holder is matched by the exact name: what an index serves at a million events
        assert client.get("/export/events.json?holder=li%20wei").json() == []
    assert any(e.action == "export" and e.target == "events.csv" for e in web.ctx.audit.entries())


def test_events_export_as_json_streams_every_event_in_order(web: Web):
    web.add_user("ana")
    _fill(web)
    with web.client() as client:
        login(client, "ana")
        body = client.get("/export/events.json?type=access.scan&start=2026-11-29&end=2026-11-29").json()
        assert [(e["gate"], e["seq"]) for e in body] == [
            ("south", 1),
            ("north", 3),
            ("north", 2),
            ("north", 1),
        ]
        assert body[-1]["data"]["holder"] == "Li Wei"
        assert client.get("/export/events.json?start=2026-12-01").json() == []
        bad = client.get("/export/events.csv?start=yesterday&gate=NOT%20A%20GATE")
        assert bad.status_code == 400
        assert "not a date" in bad.text and "not a gate name" in bad.text
        assert client.get("/export/events.xml").status_code == 404


def test_a_large_export_is_complete(web: Web):
    web.add_user("ana")
    web.store.commit(
        [make_event("s1", "north", seq, granted=True, reason="granted") for seq in range(1, 5001)]
    )
    with web.client() as client:
        login(client, "ana")
        rows = list(csv.reader(io.StringIO(client.get("/export/events.csv").text)))
        assert len(rows) == 5001 and rows[1][5] == "5000" and rows[-1][5] == "1"


def test_flow_export_counts_entries_exits_and_denials_per_hour(web: Web):
    web.add_user("ana")
    _fill(web)
    with web.client() as client:
        login(client, "ana")
        rows = client.get("/export/flow.json?start=2026-11-29&end=2026-11-29").json()
        table = {(r["gate"], r["hour"][:13]): (r["entries"], r["exits"], r["denied"]) for r in rows}
        assert table[("north", "2026-11-29T07")] == (1, 0, 0)
        assert table[("north", "2026-11-29T08")] == (0, 1, 1)
        assert table[("south", "2026-11-29T08")] == (1, 0, 0)
        text = client.get("/export/flow.csv?gate=south&start=2026-11-29&end=2026-11-29").text
        lines = list(csv.reader(io.StringIO(text)))
        assert lines[0] == ["site", "gate", "hour", "entries", "exits", "denied"]
        assert all(line[:2] == ["s1", "south"] for line in lines[1:])
        assert text.splitlines()[1].startswith('"s1","south",')  # every field quoted (OWASP)
        assert client.get("/export/flow.csv?start=2020-01-01&end=2026-01-01").status_code == 400


def test_the_event_list_filters_pages_and_shows_details(web: Web):
    web.add_user("ana")
    _fill(web)
    with web.client() as client:
        login(client, "ana")
        page = client.get("/events?reason=unknown")
        assert page.status_code == 200
        assert page.text.count('data-row="') == 1
        event_id = json.loads(client.get("/export/events.json?type=door.forced").text)[0]["id"]
        detail = client.get(f"/events/{event_id}")
        assert detail.status_code == 200 and "door.forced" in detail.text
        assert client.get("/events/" + "0" * 32).status_code == 404
        assert client.get("/events/not-an-id").status_code == 404
        hostile = client.get("/events?holder=%3Cscript%3E")
        assert "<script>" not in hostile.text.split("<main>")[1].replace(
            '<script type="application/json"', ""
        )

"""/cards: list, search, add, edit, remove and import door cards in the real registry."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from protocol.credentials import CardEntry
from tests.console.web.pages_support import Console, audit_actions, csrf_of, web_console

CARD = "wiegand26:13:13067"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with web_console(tmp_path, cards=True) as c:
        yield c


def _add(client, csrf: str, **fields: str):
    data = {"csrf_token": csrf, "credential": CARD, "holder": "王小明", "unit": "3-2-501", **fields}
    return client.post("/cards/new", data=data)


def _events(client, url: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", url) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def test_add_search_edit_remove(console: Console) -> None:
    registry = console.ctx.cards
    assert registry is not None
    client = console.client("operator")
    csrf = csrf_of(client, "/cards")
    photo = io.BytesIO()
    Image.new("RGB", (240, 320), (90, 120, 180)).save(photo, "PNG")
    response = client.post(
        "/cards/new",
        data={
            "csrf_token": csrf,
            "credential": CARD,
            "holder": "王小明",
            "unit": "3-2-501",
            "from": "2026-12-01",
            "until": "2027-11-30",
            "window": "06:00-22:00",
            "zones": "0,2",
        },
        files={"photo": ("me.png", photo.getvalue(), "image/png")},
    )
    assert response.status_code == 303, response.text
    entry = registry.get(CARD)
    assert entry is not None and entry.holder == "王小明" and entry.zones == 0b101
    assert (entry.window_start, entry.window_end) == (360, 1320)
    assert entry.valid_from == datetime(2026, 11, 30, 16, tzinfo=UTC)  # local midnight, Asia/Shanghai
    assert entry.valid_until == datetime(2027, 11, 30, 16, tzinfo=UTC)  # through the end of 2027-11-30
    assert entry.photo_digest and (console.tmp / "thumbnails" / f"{entry.photo_digest}.jpg").is_file()
    registry.put([CardEntry("em4100:01000734E0", "李华", "3-2-502")])
    page = client.get("/cards")
    state = registry.state
    assert f"version {state.version}, 2 cards" in page.text and state.hash[:16] in page.text
    for query, expected in (
        ("李", ["em4100:01000734E0"]),
        ("wiegand26:13:130", [CARD]),  # a credential by its beginning (the registry's search)
        ("13067", []),
        ("3-2-50", [CARD, "em4100:01000734E0"]),
    ):
        found = client.get("/cards", params={"q": query}).text
        assert sorted(c for c in (CARD, "em4100:01000734E0") if f'data-credential="{c}"' in found) == sorted(
            expected
        )
    edit = client.get(f"/cards/{CARD}/edit")
    assert (
        edit.status_code == 200 and 'value="2027-11-30"' in edit.text and 'value="06:00-22:00"' in edit.text
    )
    changed = client.post(
        f"/cards/{CARD}/edit",
        data={"csrf_token": csrf, "holder": "王小明", "unit": "3-2-601", "until": "2027-11-30", "zones": "0"},
    )
    assert changed.status_code == 303
    entry = registry.get(CARD)
    assert entry is not None and entry.unit == "3-2-601" and entry.photo_digest  # the photo is kept
    assert client.post(f"/cards/{CARD}/remove", data={"csrf_token": csrf}).status_code == 400
    assert (
        client.post(f"/cards/{CARD}/remove", data={"csrf_token": csrf, "confirm": "yes"}).status_code == 303
    )
    assert registry.get(CARD) is None
    assert client.get(f"/cards/{CARD}/edit").status_code == 404
    assert audit_actions(console).count("card.add") == 1
    assert {"card.edit", "card.remove"} <= set(audit_actions(console))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"credential": ""}, "Enter the card"),
        ({"credential": "no colon"}, "credential has the wrong form"),
        ({"until": "31/12/2027"}, "is not a day like"),
        ({"from": "2027-01-02", "until": "2027-01-01"}, "end before it starts"),
        ({"window": "9-5pm"}, "is not a window like"),
        ({"zones": "64"}, "zone numbers 0-63"),
        ({"unit": "u" * 100}, "unit of"),
    ],
)
def test_bad_input_is_a_clear_message(console: Console, fields: dict[str, str], message: str) -> None:
    client = console.client("operator")
    response = _add(client, csrf_of(client, "/cards"), **fields)
    assert response.status_code == 400 and message in response.text, response.text[-800:]
    assert console.ctx.cards is not None and console.ctx.cards.state.count == 0


def test_duplicates_and_bad_photos(console: Console) -> None:
    client = console.client("operator")
    csrf = csrf_of(client, "/cards")
    assert _add(client, csrf).status_code == 303
    again = _add(client, csrf)
    assert again.status_code == 400 and "already in the list" in again.text
    bad = client.post(
        "/cards/new",
        data={"csrf_token": csrf, "credential": "em4100:00000000AA"},
        files={"photo": ("x.png", b"GIF89a-not-really", "image/png")},
    )
    assert bad.status_code == 400 and "not an image" in bad.text


@pytest.mark.parametrize(
    "size",
    [(4500, 4000), (7000, 7000), (20000, 20000)],
    ids=["over our 16 Mpx", "over Pillow's cap, twice ours", "a Pillow bomb"],
)
def test_a_photo_of_too_many_pixels_is_refused_before_it_is_decoded(
    console: Console, size: tuple[int, int]
) -> None:
    client = console.client("operator")
    bomb = io.BytesIO()
    Image.new("1", size).save(bomb, "PNG")  # a few tens of kilobytes that decode to gigabytes
    response = client.post(
        "/cards/new",
        data={"csrf_token": csrf_of(client, "/cards"), "credential": CARD},
        files={"photo": ("face.png", bomb.getvalue(), "image/png")},
    )
    assert response.status_code == 400 and "too large to decode safely" in response.text
    assert console.ctx.cards is not None and console.ctx.cards.get(CARD) is None


def test_roles_and_csrf(console: Console) -> None:
    assert console.client(None).get("/cards").status_code == 303
    operator = console.client("operator")
    assert operator.post("/cards/new", data={"credential": CARD}).status_code == 403  # no CSRF token
    assert operator.get("/cards/import").status_code == 403
    assert console.ctx.cards is not None and console.ctx.cards.state.count == 0


def test_import_merge_and_replace_with_progress(console: Console) -> None:
    registry = console.ctx.cards
    assert registry is not None
    registry.put([CardEntry("em4100:00000000FF", "Old Card")])
    admin = console.client("admin")
    csrf = csrf_of(admin, "/cards/import")
    rows = ["credential,holder,unit,from,until,window,zones,photo_digest"]
    rows += [f"wiegand26:13:{10000 + i},Resident {i},3-2-{i},,2027-12-31,,0," for i in range(500)]
    rows.insert(4, "bogus,Bad Row,1,,,,,")
    upload = {"file": ("cards.csv", "\n".join(rows).encode(), "text/csv")}
    started = admin.post("/cards/import", data={"csrf_token": csrf}, files=upload)
    assert started.status_code == 303, started.text
    events = _events(admin, started.headers["location"] + "/events")
    name, final = events[-1]
    assert name == "done" and final["error"] is None
    assert final["imported"] == 500 and final["problem_count"] == 1 and final["problems"][0]["line"] == 5
    assert registry.state.count == 501  # merged beside the old card
    # replacing with a file that has bad rows changes nothing
    refused = admin.post("/cards/import", data={"csrf_token": csrf, "replace": "1"}, files=upload)
    assert refused.status_code == 400 and "Tick the second box" in refused.text
    started = admin.post(
        "/cards/import", data={"csrf_token": csrf, "replace": "1", "confirm_replace": "yes"}, files=upload
    )
    _name, final = _events(admin, started.headers["location"] + "/events")[-1]
    assert final["error"] == "cards.error.replace_with_problems" and registry.state.count == 501
    page = admin.get(started.headers["location"])
    assert "Nothing was changed" in page.text
    good = {"file": ("cards.csv", "\n".join(r for r in rows if "bogus" not in r).encode(), "text/csv")}
    started = admin.post(
        "/cards/import", data={"csrf_token": csrf, "replace": "1", "confirm_replace": "yes"}, files=good
    )
    _name, final = _events(admin, started.headers["location"] + "/events")[-1]
    assert (
        final["error"] is None and registry.state.count == 500 and registry.get("em4100:00000000FF") is None
    )
    assert audit_actions(console).count("card.import") == 3


def test_bad_uploads_are_refused_clearly(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = console.client("admin")
    csrf = csrf_of(admin, "/cards/import")
    missing = admin.post("/cards/import", data={"csrf_token": csrf})
    assert missing.status_code == 400 and "Choose a CSV file" in missing.text
    latin1 = {"file": ("x.csv", "credential,holder\nem4100:00000000AA,José".encode("latin-1"), "text/csv")}
    refused = admin.post("/cards/import", data={"csrf_token": csrf}, files=latin1)
    assert refused.status_code == 400 and "UTF-8" in refused.text
    monkeypatch.setattr("console.web.routes.cards.MAX_CSV_BYTES", 1024 * 1024)
    large = {"file": ("x.csv", b"credential\n" + b"em4100:00000000AA\n" * 70_000, "text/csv")}
    refused = admin.post("/cards/import", data={"csrf_token": csrf}, files=large)
    assert refused.status_code == 400 and "larger than 1 MB" in refused.text
    assert admin.get("/cards/import/nope").status_code == 404
    assert admin.get("/cards/import/nope/events").json() == {"error": "unknown_job"}
    assert console.ctx.cards is not None and console.ctx.cards.state.count == 0
    assert "card.import" not in audit_actions(console)


def test_no_registry_and_chinese(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        page = console.client("operator").get("/cards")
        assert page.status_code == 503 and "[cards] registry" in page.text
    with web_console(tmp_path / "zh", cards=True) as console:
        assert "门禁卡" in console.client("operator", lang="zh").get("/cards").text

"""/passes: issue, show, print, search, revoke and import through the real app and a real site office."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from console.passes.office import Office
from console.web.imports import ImportJob, jobs_of
from tests.console.web.pages_support import Console, audit_actions, csrf_of, web_console
from tests.offices import create_office


@pytest.fixture
def office_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "office"
    create_office(directory, site="longtan", site_id=7).close()
    return directory


@pytest.fixture
def console(tmp_path: Path, office_dir: Path) -> Iterator[Console]:
    with web_console(tmp_path, office=office_dir, cards=True) as c:
        yield c


def _issue(client, csrf: str, **fields: str) -> object:
    data = {
        "csrf_token": csrf,
        "holder": "王小明",
        "unit": "3-2-501",
        "role": "resident",
        "zones": "0",
        **fields,
    }
    return client.post("/passes/new", data=data)


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 400), (180, 120, 90)).save(out, "JPEG")
    return out.getvalue()


def test_issue_show_print_and_search(console: Console) -> None:
    client = console.client("operator")
    csrf = csrf_of(client, "/passes/new")
    response = client.post(
        "/passes/new",
        data={"csrf_token": csrf, "holder": "王小明", "unit": "3-2-501", "role": "resident", "days": "30"},
        files={"photo": ("face.jpg", _photo(), "image/jpeg")},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/passes/1?issued=1"
    page = client.get("/passes/1?issued=1")
    assert page.status_code == 200
    assert "王小明" in page.text and "3-2-501" in page.text and 'id="issued-notice"' in page.text
    png = client.get("/passes/1/card.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    pdf = client.get("/passes/1/card.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "attachment" in pdf.headers["content-disposition"]
    assert client.get("/passes/1/card.png", params={"generation": "3"}).json() == {"error": "not_printed"}
    assert client.get("/passes/1/phone.json").json() == {"error": "not_a_dynamic_pass"}
    # the guard screens get the holder's face, named by the digest the pass carries
    assert len(list((console.tmp / "thumbnails").glob("*.jpg"))) == 1
    _issue(client, csrf, holder="李华", unit="ABC Cleaning", role="service_worker", window="06:00-09:00")
    for query, expected in (
        ("3-2-501", ["1"]),
        ("李", ["2"]),
        ("ABC", ["2"]),
        ("1", ["1"]),
        ("", ["2", "1"]),
        ("nobody", []),
    ):
        listing = client.get("/passes", params={"q": query})
        assert listing.status_code == 200
        serials = [s for s in ("1", "2") if f'data-serial="{s}"' in listing.text]
        assert sorted(serials) == sorted(expected), query
    assert audit_actions(console).count("pass.issue") == 2
    assert "pass.print" in audit_actions(console)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"role": "king"}, "bad_role"),
        ({"holder": ""}, "missing"),
        ({"days": "0"}, "days must be 1-36500"),
        ({"days": "3", "until": "2030-01-01"}, "not both"),
        ({"until": "2020-01-01"}, "already past"),
        ({"window": "25:00-26:00"}, "bad_window"),
        ({"zones": "x"}, "bad_zones"),
        ({"holder": "名" * 40}, "holder"),
    ],
)
def test_bad_input_is_a_clear_message_not_a_500(
    console: Console, fields: dict[str, str], message: str
) -> None:
    client = console.client("operator")
    response = _issue(client, csrf_of(client, "/passes/new"), **fields)
    assert response.status_code == 400, response.text
    assert 'id="page-error"' in response.text and message in response.text
    assert Office.open(console.ctx.office_dir).registered(1) == []


def test_a_photo_that_is_not_an_image_is_refused(console: Console) -> None:
    client = console.client("operator")
    response = client.post(
        "/passes/new",
        data={"csrf_token": csrf_of(client, "/passes/new"), "holder": "A", "unit": "1", "role": "visitor"},
        files={"photo": ("face.jpg", b"not a jpeg at all", "image/jpeg")},
    )
    assert response.status_code == 400 and "bad_photo" in response.text


def test_a_bad_photo_is_named_as_uploaded_not_by_the_servers_temporary_copy(console: Console) -> None:
    client = console.client("operator")
    response = client.post(
        "/passes/new",
        data={"csrf_token": csrf_of(client, "/passes/new"), "holder": "A", "unit": "1", "role": "visitor"},
        files={"photo": ("my face.jpg", b"not a jpeg at all", "image/jpeg")},
    )
    assert response.status_code == 400 and "my face.jpg is not a readable image" in response.text
    assert "gatepost-upload-" not in response.text and tempfile.gettempdir() not in response.text


def test_revoke_needs_confirmation_and_reason_then_publishes(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.web.routes.passes.PUBLISH_TIMEOUT_S", 0.5)  # no broker listens here
    client = console.client("operator")
    csrf = csrf_of(client, "/passes/new")
    assert _issue(client, csrf).status_code == 303
    confirm = client.get("/passes/1/revoke")
    assert confirm.status_code == 200 and 'id="revoke-question"' in confirm.text
    refused = client.post("/passes/1/revoke", data={"csrf_token": csrf, "reason": "lost"})
    assert refused.status_code == 400 and "passes.error" not in refused.text  # translated, not a raw key
    refused = client.post("/passes/1/revoke", data={"csrf_token": csrf, "confirm": "yes", "reason": " "})
    assert refused.status_code == 400
    done = client.post("/passes/1/revoke", data={"csrf_token": csrf, "confirm": "yes", "reason": "card lost"})
    assert done.status_code == 303
    # no broker in this test: the revocation is recorded, and the page says it was not delivered
    assert "unpublished=1" in done.headers["location"]
    page = client.get(done.headers["location"])
    assert 'id="revoked-notice"' in page.text and "revoked" in page.text
    with Office.open(console.ctx.office_dir) as office:
        listed = office.db.execute("SELECT serial FROM revocations").fetchall()
    assert listed == [(1,)]
    entry = next(e for e in console.ctx.audit.entries() if e.action == "pass.revoke")
    assert entry.detail["reason"] == "card lost" and entry.detail["published"] is False
    unknown = client.post("/passes/99/revoke", data={"csrf_token": csrf, "confirm": "yes", "reason": "x"})
    assert unknown.status_code == 409 and "unknown_serial" in unknown.text


def test_revoke_publishes_the_list_to_a_real_broker(
    tmp_path: Path, office_dir: Path, broker, mqtt_client_factory
) -> None:
    from console.config import ConsoleConfig
    from console.store import EventStore
    from console.web.app import build_context, create_app
    from protocol.topics import SiteDocument, site_document_topic
    from tests.console.web.pages_support import Console

    creds = broker.add_console("web")
    secret = tmp_path / "console.secret"
    secret.write_text(creds.password)
    config = ConsoleConfig.model_validate(
        {
            "name": "web",
            "store": {"path": str(tmp_path / "events.db")},
            "web": {"office": str(office_dir)},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": creds.username,
                "password_file": str(secret),
            },
        }
    )
    with EventStore(config.store.path) as store:
        ctx = build_context(config, store)
        console = Console(ctx, create_app(ctx, watch=False), tmp_path)
        client = console.client("operator")
        csrf = csrf_of(client, "/passes/new")
        assert _issue(client, csrf).status_code == 303
        done = client.post(
            "/passes/1/revoke", data={"csrf_token": csrf, "confirm": "yes", "reason": "moved out"}
        )
        assert done.status_code == 303 and "unpublished" not in done.headers["location"]
        ctx.db.close()
    # a gate of the site finds the new list retained on its revocation topic
    gate = mqtt_client_factory(broker.add_gate("longtan", "north"))
    assert not gate.subscribe(site_document_topic("longtan", SiteDocument.REVOCATION)).is_failure
    message = gate.get()
    assert message is not None and message.retain
    assert message.payload == (office_dir / "public" / "revocations").read_bytes()


def test_roles_and_csrf(console: Console) -> None:
    anonymous = console.client(None)
    assert anonymous.get("/passes").status_code == 303  # to the login page
    operator = console.client("operator")
    assert operator.get("/passes/import").status_code == 403
    assert (
        operator.post("/passes/new", data={"holder": "x", "unit": "1", "role": "visitor"}).status_code == 403
    )
    assert Office.open(console.ctx.office_dir).registered(1) == []
    assert console.client("admin").get("/passes/import").status_code == 200


def test_bulk_import_with_progress_over_sse(console: Console) -> None:
    admin = console.client("admin")
    csrf = csrf_of(admin, "/passes/import")
    rows = ["holder,unit,role,days,until,zones,window,photo"]
    rows += [f"Resident {i},3-2-{500 + i},resident,30,,0,," for i in range(6)]
    rows.insert(3, "Broken,1-1-1,emperor,,,,,")
    response = admin.post(
        "/passes/import",
        data={"csrf_token": csrf},
        files={"file": ("residents.csv", "\n".join(rows).encode(), "text/csv")},
    )
    assert response.status_code == 303, response.text
    job_url = response.headers["location"]
    events = []
    with admin.stream("GET", job_url + "/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][0] == "done"
    final = events[-1][1]
    assert final["imported"] == 6 and final["problem_count"] == 1 and final["done"] == final["total"] == 7
    assert final["problems"][0]["line"] == 4 and final["problems"][0]["column"] == "role"
    page = admin.get(job_url)
    assert page.status_code == 200 and 'id="import-progress"' in page.text
    state = admin.get(job_url + "/state.json").json()
    assert state["imported"] == 6 and state["finished"]
    assert admin.get("/passes/import/nope").status_code == 404
    assert admin.get("/passes/import/nope/state.json").json() == {"error": "unknown_job"}
    cards_url = job_url.replace("/passes/", "/cards/")  # a passes job is no cards job
    assert admin.get(cards_url).status_code == 404 and admin.get(cards_url + "/events").status_code == 404
    assert "pass.import" in audit_actions(console)
    assert len(Office.open(console.ctx.office_dir).registered(6)) == 1


def test_a_bulk_import_appends_each_serial_rather_than_copying_the_list(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies: list[int] = []
    update = ImportJob.update

    def watched(job: ImportJob, **values: object) -> None:
        if "imported" in values:
            copies.append(len(job.imported))
        update(job, **values)

    monkeypatch.setattr(ImportJob, "update", watched)
    admin = console.client("admin")
    rows = ["holder,unit,role,days", *(f"Resident {i},3-2-{500 + i},resident,30" for i in range(3))]
    response = admin.post(
        "/passes/import",
        data={"csrf_token": csrf_of(admin, "/passes/import")},
        files={"file": ("residents.csv", "\n".join(rows).encode(), "text/csv")},
    )
    assert response.status_code == 303, response.text
    job = jobs_of(console.app).get(response.headers["location"].rsplit("/", 1)[1])
    assert job is not None
    while not job.finished:
        job.wait_change(job.version, 5)
    state = job.snapshot()
    assert (state["imported"], state["first"], state["last"], state["error"]) == (3, "1", "3", None)
    assert copies == []  # each row an append, not a copy of every serial before it


def test_bad_uploads_are_refused_clearly(console: Console) -> None:
    admin = console.client("admin")
    csrf = csrf_of(admin, "/passes/import")
    latin1 = admin.post(
        "/passes/import",
        data={"csrf_token": csrf},
        files={"file": ("x.csv", "holder,unit,role\nJosé,1,visitor".encode("latin-1"), "text/csv")},
    )
    assert latin1.status_code == 400 and "UTF-8" in latin1.text
    missing = admin.post("/passes/import", data={"csrf_token": csrf})
    assert missing.status_code == 400


def test_chinese_pages(console: Console) -> None:
    client = console.client("operator", lang="zh")
    assert "签发通行证" in client.get("/passes").text
    assert "持证人" in client.get("/passes/new").text


def test_no_office_configured(tmp_path: Path) -> None:
    with web_console(tmp_path) as console:
        page = console.client("operator").get("/passes")
        assert page.status_code == 503 and "office" in page.text


def test_issue_and_revoke_in_a_browser(
    console: Console, browser_page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator issues a pass with the form, sees the printed card, revokes it after confirming."""
    from tests.console.web.pages_support import SHOTS, browser_login, served

    monkeypatch.setattr("console.web.routes.passes.PUBLISH_TIMEOUT_S", 0.5)  # no broker listens here
    page = browser_page
    with served(console) as base:
        browser_login(page, base, console)
        page.goto(f"{base}/passes/new")
        page.fill("input[name=holder]", "王小明")
        page.fill("input[name=unit]", "3-2-501")
        page.select_option("select[name=role]", "resident")
        page.fill("input[name=days]", "30")
        page.fill("input[name=window]", "06:00-23:00")
        page.click("#issue-submit")
        page.wait_for_url(f"{base}/passes/1?issued=1")
        assert page.locator("#issued-notice").is_visible()
        assert page.locator("img[src^='/passes/1/card.png']").evaluate("img => img.naturalWidth") > 500
        page.click("#revoke-link")
        page.fill("#revoke-reason", "card lost")
        page.click("#revoke-submit")  # the confirmation box is required: the browser refuses
        assert page.url.endswith("/passes/1/revoke")
        page.check("#revoke-confirm")
        page.click("#revoke-submit")
        page.wait_for_url(f"{base}/passes/1?revoked=*")
        assert "revoked" in page.locator("#pass-status").inner_text()
        _issue_more(console)
        page.goto(f"{base}/passes")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "console-passes.png"), full_page=True)
        assert {"pass.issue", "pass.revoke"} <= set(audit_actions(console))
        page.context.close()  # ends the live-event stream, so the server stops at once


def _issue_more(console: Console) -> None:
    from console.passes.office import PassRequest, parse_window
    from protocol.passes import Role

    with Office.open(console.ctx.office_dir) as office:
        office.issue(
            PassRequest(
                "李华", "保洁公司", Role.SERVICE_WORKER, days=90, daily_window=parse_window("06:00-09:00")
            )
        )
        office.issue(PassRequest("Zhang Wei", "5-1-302", Role.VISITOR))

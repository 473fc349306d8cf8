"""The district's pull API: tokens (hashed, read-only, per site), cursor pages, privacy, its OpenAPI document."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from console.config import ConsoleConfig
from console.district.tokens import TokenStore
from console.store import EventStore
from console.web.app import build_context, create_app, routes
from protocol import Event
from tests.console.district.test_records import VALIDATOR

pytestmark = pytest.mark.timeout(60)
START = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def scans(site: str, gate: str, count: int) -> list[Event]:
    boot = uuid.uuid4().hex
    return [
        Event(
            id=uuid.uuid4().hex,
            site=site,
            gate=gate,
            boot=boot,
            seq=seq,
            time=START + timedelta(minutes=seq),
            clock_trusted=True,
            type="access.scan",
            data={"holder": "Li Lei", "unit": "5-302", "granted": True},
        )
        for seq in range(1, count + 1)
    ]


class Api:
    def __init__(self, tmp_path: Path, district: dict | None = None) -> None:
        settings: dict = {"store": {"path": str(tmp_path / "events.db")}, "metrics": {"listen": ""}}
        if district is not None:
            settings["district"] = district
        config = ConsoleConfig.model_validate(settings)
        self.store = EventStore(config.store.path)
        self.ctx = build_context(config, self.store)
        self.app = create_app(self.ctx, watch=False)
        self.tokens = TokenStore(self.ctx.db)
        self.client = TestClient(self.app, base_url="http://testserver")

    def get(self, url: str, token: str | None, **params: object):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.client.get(url, params=params, headers=headers)

    def close(self) -> None:
        self.ctx.db.close()
        self.store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    instance = Api(tmp_path, {"name": "compound", "privacy": {"drop": ["holder"]}})
    yield instance
    instance.close()


def test_pages_by_cursor_reach_every_event_once_with_privacy(api):
    api.store.commit(scans("north", "g1", 120) + scans("south", "g1", 80))
    _, plain = api.tokens.create("district", "*", by="test")
    seen: list[str] = []
    after = 0
    while True:
        page = api.get("/api/v1/events", plain, after=after, limit=50).json()
        seen += [r["id"] for r in page["records"]]
        after = page["next_after"]
        if not page["more"]:
            break
    assert len(seen) == len(set(seen)) == 200
    record = api.get("/api/v1/events", plain, limit=1).json()["records"][0]
    VALIDATOR.validate(record)
    assert record["schema_version"] == 1 and record["console"] == "compound"
    assert "holder" not in record["data"] and record["data"]["unit"] == "5-302"
    assert record["dropped"] == ["holder"]


def test_a_token_sees_only_its_sites_and_is_stored_hashed(api):
    api.store.commit(scans("north", "g1", 30) + scans("south", "g1", 20))
    token, plain = api.tokens.create("south office", "south", by="test")
    page = api.get("/api/v1/events", plain, limit=1000).json()
    assert {r["site"] for r in page["records"]} == {"south"} and len(page["records"]) == 20
    assert api.get("/api/v1/events", plain, site="north").status_code == 403
    stored = api.ctx.db.query("SELECT token_hash FROM district_tokens WHERE token_id = ?", (token.token_id,))
    assert stored[0][0] == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in str(api.ctx.db.query("SELECT * FROM district_tokens"))


def test_refusals_are_typed_json(api):
    _, plain = api.tokens.create("district", "*", by="test")
    missing = api.get("/api/v1/events", None)
    assert missing.status_code == 401 and "Bearer" in missing.headers["www-authenticate"]
    assert api.get("/api/v1/events", "gpd_000000000000_" + "x" * 43).status_code == 401
    assert api.get("/api/v1/events", "nonsense").json()["error"]
    for bad in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "100000"}, {"after": "9" * 40}):
        answer = api.get("/api/v1/events", plain, **bad)
        assert answer.status_code == 400 and answer.json()["error"], bad
    assert api.get("/api/v1/flow", plain).status_code == 400
    assert api.get("/api/v1/flow", plain, start="yesterday").status_code == 400
    assert api.get("/api/v1/flow", plain, start="2026-11-29T00:00:00Z", after="a/b").status_code == 400


def test_a_revoked_token_is_refused_at_once(api):
    token, plain = api.tokens.create("district", "*", by="test")
    assert api.get("/api/v1/events", plain).status_code == 200
    assert api.tokens.revoke(token.token_id)
    assert api.get("/api/v1/events", plain).status_code == 401


def test_a_browser_login_grants_nothing_on_the_api(api):
    api.ctx.users.add("admin", "correct horse battery", "admin")
    result = api.ctx.users.login("admin", "correct horse battery")
    api.client.cookies.set("gp_session", result.token)
    assert api.get("/api/v1/events", None).status_code == 401


def test_flow_pages_cover_every_hour_once(api):
    api.store.commit(scans("north", "g1", 300) + scans("north", "g2", 120))
    _, plain = api.tokens.create("district", "north", by="test")
    records: list[dict] = []
    after = None
    while True:
        params = {"start": "2026-11-29T00:00:00Z", "end": "2026-12-01T00:00:00Z", "limit": 2}
        if after:
            params["after"] = after
        page = api.get("/api/v1/flow", plain, **params).json()
        records += page["records"]
        after = page["next_after"]
        if not page["more"]:
            break
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        VALIDATOR.validate(record)
    assert sum(r["entries"] for r in records) == 420
    assert {r["gate"] for r in records} == {"g1", "g2"}


def test_the_openapi_document_matches_the_routes(api):
    _, plain = api.tokens.create("district", "*", by="test")
    doc = api.get("/api/v1/openapi.json", None).json()
    assert doc["openapi"].startswith("3.1")
    documented = set(doc["paths"])
    served = {r.path for r in routes() if isinstance(r, Route) and r.path.startswith("/api/")}
    assert documented == served
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            params = {
                p["name"]: "2026-11-29T00:00:00Z"
                for p in operation.get("parameters", [])
                if p.get("required")
            }
            answer = api.client.request(
                method.upper(), path, params=params, headers={"authorization": f"Bearer {plain}"}
            )
            assert answer.status_code == 200, (path, answer.text)
            assert set(answer.json()) >= set(
                operation["responses"]["200"]["content"]["application/json"]
                .get("schema", {})
                .get("required", [])
            )


def test_an_admin_makes_and_revokes_a_token_on_the_page_and_an_operator_cannot(api):
    from tests.console.web.web_support import PASSWORD, csrf_of, login

    api.ctx.users.add("boss", PASSWORD, "admin")
    api.ctx.users.add("guard", PASSWORD, "operator")
    client = TestClient(api.app, base_url="http://testserver", headers={"accept": "text/html"})
    assert login(client, "boss").status_code == 303
    page = client.get("/district/tokens")
    assert page.status_code == 200 and "/district/tokens" in page.text
    made = client.post(
        "/district/tokens",
        data={
            "action": "create",
            "label": "district platform",
            "sites": "north",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert made.status_code == 200
    plain = re.search(r"<code>(gpd_[^<]+)</code>", made.text).group(1)
    assert api.get("/api/v1/events", plain).status_code == 200
    listed = client.get("/district/tokens").text
    assert plain not in listed and "district platform" in listed
    token_id = plain.split("_")[1]
    revoked = client.post(
        "/district/tokens",
        data={"action": "revoke", "token_id": token_id, "csrf_token": csrf_of(listed)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303 and api.get("/api/v1/events", plain).status_code == 401
    actions = [a for (a,) in api.ctx.db.query("SELECT action FROM audit_log")]
    assert "district.token_create" in actions and "district.token_revoke" in actions
    refused = client.post(
        "/district/tokens", data={"action": "create", "label": "", "csrf_token": csrf_of(listed)}
    )
    assert refused.status_code == 400
    guard = TestClient(api.app, base_url="http://testserver", headers={"accept": "text/html"})
    login(guard, "guard")
    assert guard.get("/district/tokens").status_code == 403

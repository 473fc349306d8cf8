"""Attacks on the web console (issue 13, items 3 and 8): one real attempt per row, and its refusal.

Everything is real: the console's app (``build_context`` + ``create_app``) over SQLite
stores in ``tmp_path``, a site office and a card registry on disk, users logged in
through the login form or ``UserStore.login``, uvicorn on a free loopback port where an
address or a browser matters (the attacker on ``127.0.0.2``, the admin on ``127.0.0.1``:
all of 127.0.0.0/8 is loopback), Debian's Chromium for the stale cookie, a real
mosquitto for the unlock that must not be sent.

Rows:

- operators: unlock without the permission (403, audit entry, no command on the broker);
  an operator of site A against every route that reads or acts on a site of B;
- logins: five wrong passwords lock the attacker's address, not the admin; an unknown
  name is answered exactly as a real one, locked or not; a login flood gets one hash at a
  time at a bounded rate and the rest "busy"; an over-long password costs no hash;
- photos: a 36-Mpx, 48 KB PNG is refused before decoding; parallel uploads decode two at
  a time;
- a passes CSV import's ``photo`` column reaches only files uploaded with it;
- a phone pass's secret (and a printed card) only to those who issue passes, audited;
- CSV exports escaped per OWASP, every export;
- a stale session cookie does not make the first login fail.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.testclient import TestClient

import console.photos
import console.users
from broker.launcher import Broker
from console.passes.office import Office
from console.throttle import BURST, RATE
from console.users import LOCK_AFTER
from console.web.imports import jobs_of
from console.web.middleware import SESSION_COOKIE
from protocol import GateTopics
from protocol.passes.format import photo_digest
from tests.console.web.pages_support import PASSWORD, Console, served, web_console
from tests.console.web.web_support import make_event
from tests.offices import create_office
from tests.waiting import wait_until

A = "tuanjiehu"
"""The site the operator works for."""
B = "longtan"
"""Another compound of the same subdistrict: the office and the card registry are B's."""
ADMIN = "127.0.0.1"
ATTACKER = "127.0.0.2"
_CSRF = 'csrf_token" value="'


def csrf_in(html: str) -> str:
    start = html.index(_CSRF) + len(_CSRF)
    return html[start : html.index('"', start)]


# -- a district of two compounds ----------------------------------------------------------------


@dataclass
class District:
    console: Console
    event_a: str
    event_b: str
    alarm_a: int
    alarm_b: int

    @property
    def ctx(self) -> Any:
        return self.console.ctx

    def user(self, name: str, *, sites: str = "*", grants: tuple[tuple[str, str], ...] = ()) -> str:
        self.ctx.users.add(name, PASSWORD, "operator", sites=sites)
        for permission, scope in grants:
            self.ctx.users.grant(name, permission, scope)
        return name

    def client(self, name: str) -> TestClient:
        client = TestClient(self.console.app, base_url="http://127.0.0.1", follow_redirects=False)
        client.headers["accept"] = "text/html"
        client.cookies.set(SESSION_COOKIE, self.ctx.users.login(name, PASSWORD).token)
        return client

    def denied(self, action: str, user: str) -> list[Any]:
        return [e for e in self.ctx.audit.entries() if e.action == f"{action}.denied" and e.user == user]


@pytest.fixture
def district(tmp_path: Path) -> Iterator[District]:
    office = tmp_path / "office"
    create_office(office, site=B, site_id=7).close()
    with web_console(tmp_path, office=office, cards=True) as console:
        ctx = console.ctx
        now = datetime.now(UTC) - timedelta(minutes=5)
        events = [
            make_event(A, "north", 1, at=now, granted=True, reason="granted", holder="Holder Of A"),
            make_event(B, "north", 1, at=now, granted=True, reason="granted", holder="Holder Of B"),
            make_event(A, "north", 2, "door.forced", at=now),
            make_event(B, "north", 2, "door.forced", at=now),
        ]
        ctx.store.commit(events)
        alarms = {a.site: a.row_id for a in ctx.alarms.observe_events(ctx.store.events_after(0))}
        console.app.state.board.apply_events(ctx.store.events_after(0))
        # B's office issues a dynamic pass (a phone key beside its card), as its issuer would
        ctx.users.add("issuer", PASSWORD, "operator", sites=B)
        ctx.users.grant("issuer", "passes", B)
        d = District(console, events[0].id, events[1].id, alarms[A], alarms[B])
        issuer = d.client("issuer")
        issued = issuer.post(
            "/passes/new",
            data={
                "csrf_token": csrf_in(issuer.get("/passes/new").text),
                "holder": "Phone Holder",
                "unit": "1-1-101",
                "role": "resident",
                "dynamic": "on",
            },
        )
        assert issued.status_code == 303, issued.text
        yield d


# -- operators: unlock is granted ---------------------------------------------------------------


def test_an_operator_without_unlock_gets_403_an_audit_entry_and_no_command_is_sent(
    tmp_path: Path, broker: Broker, mqtt_client_factory: Callable[..., Any]
) -> None:
    gate_side = mqtt_client_factory(broker.add_gate("s1", "north"))
    assert not gate_side.subscribe(GateTopics("s1", "north").command).is_failure
    with _console_with_commands(tmp_path, broker.endpoint(broker.add_console("console"))) as console:
        ctx = console.ctx
        assert ctx.commands is not None and ctx.commands.wait_connected(10)
        ctx.users.add("eve", PASSWORD, "operator")
        ctx.users.grant("eve", "unlock", "s1/south")  # another gate of the same site: not this one
        client = TestClient(console.app, base_url="http://127.0.0.1", follow_redirects=False)
        client.headers["accept"] = "text/html"
        client.cookies.set(SESSION_COOKIE, ctx.users.login("eve", PASSWORD).token)
        assert client.get("/gates/s1/north/unlock").status_code == 403  # no form to confirm
        token = csrf_in(client.get("/").text)
        refused = client.post("/gates/s1/north/unlock", data={"csrf_token": token, "confirm": "yes"})
        assert refused.status_code == 403 and "not been granted unlock" in refused.text
        (entry,) = [e for e in ctx.audit.entries() if e.action == "unlock.denied"]
        assert (entry.user, entry.target, entry.detail) == ("eve", "s1/north", {"reason": "no_permission"})
        assert [e for e in ctx.audit.entries() if e.action == "unlock"] == []
        assert 'href="/gates/s1/north/unlock"' not in client.get("/").text
    assert gate_side.get(timeout=1.0) is None  # the gate was never asked to open


@contextmanager
def _console_with_commands(tmp_path: Path, endpoint: Any) -> Iterator[Console]:
    from console.config import ConsoleConfig
    from console.store import EventStore
    from console.web.app import build_context, create_app

    config = ConsoleConfig.model_validate({"store": {"path": str(tmp_path / "events.db")}})
    with EventStore(config.store.path) as store:
        ctx = build_context(config, store, endpoint=endpoint)
        app = create_app(ctx, watch=False)
        with TestClient(app):  # the lifespan starts the command connection
            try:
                yield Console(ctx, app, tmp_path)
            finally:
                ctx.db.close()


# -- operators: an operator of site A against site B, route by route -----------------------------


def _ana(d: District) -> TestClient:
    """An operator of A who holds every permission everywhere: only the site limit stands in the way."""
    return d.client(d.user("ana", sites=A, grants=(("unlock", "*"), ("passes", "*"))))


def _post(client: TestClient, url: str, data: dict[str, str]) -> httpx.Response:
    return client.post(url, data={**data, "csrf_token": csrf_in(client.get("/").text)})


def test_site_a_overview_and_event_list_show_no_gate_or_event_of_b(district: District) -> None:
    ana = _ana(district)
    overview = ana.get("/").text
    assert f"{A}/north" in overview and f"{B}/north" not in overview
    events = ana.get("/events").text
    assert "Holder Of A" in events and "Holder Of B" not in events
    assert f'<option value="{B}/north"' not in events and f"{B}/north" not in events


def test_site_a_cannot_filter_events_by_b_nor_open_an_event_of_b(district: District) -> None:
    ana = _ana(district)
    assert ana.get(f"/events?site={B}").status_code == 403
    assert ana.get(f"/events/{district.event_b}").status_code == 404
    assert ana.get(f"/events/{district.event_a}").status_code == 200


def test_site_a_alarm_list_and_badge_count_a_alone(district: District) -> None:
    ana = _ana(district)
    page = ana.get("/alarms?show=all").text
    assert f'id="alarm-{district.alarm_a}"' in page and f'id="alarm-{district.alarm_b}"' not in page
    assert 'id="alarm-badge" data-count="1"' in page  # two open in the console, one of them A's


def test_site_a_cannot_acknowledge_an_alarm_of_b(district: District) -> None:
    ana = _ana(district)
    refused = _post(ana, f"/alarms/{district.alarm_b}/ack", {"note": "not mine"})
    assert refused.status_code == 403
    assert district.ctx.alarms.get(district.alarm_b).acked_at is None
    assert [e.target for e in district.denied("alarm.ack", "ana")] == [f"#{district.alarm_b}"]


def test_site_a_event_exports_hold_a_alone(district: District) -> None:
    ana = _ana(district)
    rows = list(csv.DictReader(io.StringIO(ana.get("/export/events.csv").text)))
    assert {r["site"] for r in rows} == {A}
    assert {e["site"] for e in ana.get("/export/events.json").json()} == {A}
    assert ana.get(f"/export/events.csv?site={B}").status_code == 403


def test_site_a_flow_exports_hold_a_alone(district: District) -> None:
    ana = _ana(district)
    day = _site_day()
    rows = ana.get(f"/export/flow.json?start={day}&end={day}").json()
    assert rows and {r["site"] for r in rows} == {A}
    assert ana.get(f"/export/flow.csv?site={B}").status_code == 403


def test_site_a_flow_page_and_its_exports_refuse_a_post_of_b(district: District) -> None:
    ana = _ana(district)
    assert ana.get(f"/flow?post={B}/north").status_code == 403
    assert ana.get("/flow?post=north").status_code == 403  # a bare gate name means that gate at every site
    assert ana.get(f"/flow/export.json?post={B}/north").status_code == 403
    assert ana.get(f"/flow/export.csv?post={B}/north").status_code == 403
    page = ana.get("/flow")  # "all posts" would sum B's gates too: A's first post instead
    assert page.status_code == 200 and f"{B}/north" not in page.text
    assert ana.get("/flow/export.json").json()["post"] == f"{A}/north"


def test_site_a_live_stream_carries_nothing_of_b(district: District) -> None:
    district.user("ana", sites=A)
    hub = district.ctx.hub
    with served(district.console) as base, httpx.Client(base_url=base, timeout=10) as client:
        _form_login(client, "ana")
        with client.stream("GET", "/stream?kinds=event,gate,alarm") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            b_rows = [e for e in district.ctx.store.events_after(0) if e.site == B]
            a_last = [e for e in district.ctx.store.events_after(0) if e.site == A][-1]
            from console.web.hub import event_summary

            for event in b_rows:
                hub.publish("event", event_summary(event))
            hub.publish("gate", {"site": B, "gate": "north", "state": "online"})
            hub.publish("alarm", {"site": B, "gate": "north", "kind": "door.forced", "row_id": 99})
            hub.publish("event", event_summary(a_last))
            seen = []
            for line in lines:
                seen.append(line)
                if a_last.id in line:
                    break
    assert not any(B in line for line in seen), seen


def test_site_a_sees_none_of_b_office(district: District) -> None:
    ana = _ana(district)
    assert ana.get("/passes").status_code == 403
    assert ana.get("/passes/1").status_code == 403
    assert ana.get("/passes/new").status_code == 403
    phone = ana.get("/passes/1/phone.json")
    assert phone.status_code == 403 and "key" not in phone.text
    card = ana.get("/passes/1/card.png")
    assert card.status_code == 403 and not card.content.startswith(b"\x89PNG")
    assert [e.action for e in district.ctx.audit.entries()].count("pass.phone_key.denied") == 1


def test_site_a_cannot_issue_or_revoke_passes_of_b(district: District) -> None:
    ana = _ana(district)
    issue = _post(ana, "/passes/new", {"holder": "Intruder", "unit": "0", "role": "visitor"})
    revoke = _post(ana, "/passes/1/revoke", {"reason": "mischief", "confirm": "yes"})
    publish = _post(ana, "/passes/publish", {})
    assert (issue.status_code, revoke.status_code, publish.status_code) == (403, 403, 403)
    with Office.open(district.console.tmp / "office") as office:
        assert [r.holder for r in office.search("", 10)] == ["Phone Holder"]
        assert not office.search("1", 10, serial_only=True)[0].revoked
    assert {e.action for e in district.ctx.audit.entries() if e.user == "ana"} == {
        "pass.issue.denied",
        "pass.revoke.denied",
        "pass.publish.denied",
    }


def test_site_a_sees_and_changes_none_of_b_cards(district: District) -> None:
    ana = _ana(district)
    registry = district.ctx.cards
    assert ana.get("/cards").status_code == 403
    added = _post(ana, "/cards/new", {"credential": "wiegand26:13:13067", "holder": "Intruder"})
    assert added.status_code == 403 and registry.state.count == 0
    assert len(district.denied("card", "ana")) == 1


def test_site_a_cannot_unlock_a_gate_of_b_even_with_unlock_granted_everywhere(district: District) -> None:
    ana = _ana(district)
    assert ana.get(f"/gates/{B}/north/unlock").status_code == 404
    refused = _post(ana, f"/gates/{B}/north/unlock", {"confirm": "yes"})
    assert refused.status_code == 403
    (entry,) = district.denied("unlock", "ana")
    assert (entry.target, entry.detail) == (f"{B}/north", {"reason": "not_your_site"})


# -- logins --------------------------------------------------------------------------------------


@contextmanager
def from_address(base: str, address: str) -> Iterator[httpx.Client]:
    """A browser on ``address`` (any of 127.0.0.0/8 is this machine)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=base, transport=transport, timeout=30, headers={"accept": "text/html"}) as c:
        yield c


def _form_login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_in(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Console]:
    with web_console(tmp_path) as console:
        console.ctx.users.add("root", PASSWORD, "admin")
        yield console


def test_wrong_passwords_from_an_attacker_lock_the_attackers_address_not_the_admin(plain: Console) -> None:
    with served(plain) as base:
        with from_address(base, ATTACKER) as attacker:
            codes = [
                _form_login(attacker, "root", "wrong password!").status_code for _ in range(LOCK_AFTER + 1)
            ]
            assert codes == [401] * (LOCK_AFTER - 1) + [429, 429]
        with from_address(base, ADMIN) as admin:
            answer = _form_login(admin, "root")
            assert answer.status_code == 303, answer.text[:300]
            assert admin.get("/", follow_redirects=False).status_code == 200


@pytest.mark.parametrize("trusted", [False, True], ids=["no proxy configured", "the proxy is trusted"])
def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(plain: Console, trusted: bool) -> None:
    """Failures are counted per client address: a header naming another address must not dodge the lock."""
    plain.ctx.config.web.trusted_proxies = [ATTACKER] if trusted else []
    with served(plain) as base, from_address(base, ATTACKER) as client:
        client.headers["x-forwarded-for"] = "10.9.8.7"
        _form_login(client, "root", "wrong password!")
        (entry,) = [e for e in plain.ctx.audit.entries() if e.action == "login.failed"]
    assert entry.address == ("10.9.8.7" if trusted else ATTACKER)


def test_an_unknown_name_is_answered_exactly_as_a_real_one_locked_or_not(plain: Console) -> None:
    answers: dict[str, list[tuple[int, str]]] = {}
    with served(plain) as base:
        for name, address in (("root", "127.0.0.3"), ("nobody", "127.0.0.4")):
            with from_address(base, address) as client:
                runs = [_form_login(client, name, "wrong password!") for _ in range(LOCK_AFTER + 2)]
                answers[name] = [(r.status_code, _message(r.text)) for r in runs]
    assert answers["root"] == answers["nobody"]
    assert [code for code, _ in answers["root"]] == [401] * (LOCK_AFTER - 1) + [429] * 3


def _message(html: str) -> str:
    start = html.index('role="alert">') + len('role="alert">')
    return html[start : html.index("</p>", start)]


@dataclass
class HashWatch:
    started: list[float]
    most_at_once: int


@pytest.fixture
def hash_watch(monkeypatch: pytest.MonkeyPatch) -> HashWatch:
    """Every scrypt the console runs for a login: when it started, and how many ran at once."""
    watch = HashWatch([], 0)
    running = 0
    lock = threading.Lock()
    real = console.users.hash_password

    def watched(password: str, salt: bytes) -> bytes:
        nonlocal running
        with lock:
            running += 1
            watch.started.append(time.monotonic())
            watch.most_at_once = max(watch.most_at_once, running)
        try:
            return real(password, salt)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(console.users, "hash_password", watched)
    return watch


@pytest.mark.slow
def test_a_login_flood_gets_one_hash_at_a_time_at_a_bounded_rate_and_busy_answers(
    plain: Console, hash_watch: HashWatch
) -> None:
    attempts = 40
    with served(plain) as base:
        tokens = {}
        for i in range(attempts):  # forty machines, each with its login page open
            with from_address(base, f"127.0.1.{i + 1}") as client:
                tokens[i] = (csrf_in(client.get("/login").text), dict(client.cookies))

        def attempt(i: int) -> int:
            with from_address(base, f"127.0.1.{i + 1}") as client:
                client.cookies.update(tokens[i][1])
                data = {"name": f"guess{i}", "password": "p" * 1000, "csrf_token": tokens[i][0]}
                return client.post("/login", data=data).status_code

        start = time.monotonic()
        with ThreadPoolExecutor(attempts) as pool:
            codes = list(pool.map(attempt, range(attempts)))
        elapsed = time.monotonic() - start
    assert hash_watch.most_at_once == 1
    assert len(hash_watch.started) <= BURST + RATE * elapsed + 1, (len(hash_watch.started), elapsed)
    assert codes.count(401) == len(hash_watch.started)  # each hashed guess answered "wrong"
    assert codes.count(429) == attempts - len(hash_watch.started)  # the rest "busy", before any hash
    assert set(codes) == {401, 429}


def test_an_over_long_password_is_refused_without_a_hash(plain: Console, hash_watch: HashWatch) -> None:
    with served(plain) as base, from_address(base, ATTACKER) as attacker:
        answer = _form_login(attacker, "root", "p" * 60_000)
    assert answer.status_code == 401
    assert hash_watch.started == []


# -- photos --------------------------------------------------------------------------------------


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 200).save(out, "PNG", optimize=True)
    return out.getvalue()


@pytest.fixture
def issuing(tmp_path: Path) -> Iterator[Console]:
    office = tmp_path / "office"
    create_office(office, site=B, site_id=7).close()
    with web_console(tmp_path, office=office, cards=True) as console:
        for i in range(12):
            console.ctx.users.add(f"op{i}", PASSWORD, "operator")
            console.ctx.users.grant(f"op{i}", "passes", B)
        yield console


def test_a_36_megapixel_png_of_48_kb_is_refused_before_it_is_decoded(
    issuing: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _png((6000, 6000))
    assert len(bomb) < 50_000
    decoded: list[tuple[int, int]] = []
    real = console.photos._reduce

    def reduce(image: Any, side: int) -> Any:  # runs right after the pixels are decoded
        decoded.append(image.size)
        return real(image, side)

    monkeypatch.setattr(console.photos, "_reduce", reduce)
    client = TestClient(issuing.app, base_url="http://127.0.0.1", follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, issuing.ctx.users.login("op0", PASSWORD).token)
    token = csrf_in(client.get("/passes/new").text)
    answer = client.post(
        "/passes/new",
        data={"csrf_token": token, "holder": "Big Face", "unit": "1", "role": "resident"},
        files={"photo": ("face.png", bomb, "image/png")},
    )
    assert answer.status_code == 400 and "36000000 pixels" in answer.text
    assert decoded == []
    with Office.open(issuing.tmp / "office") as office:
        assert office.search("", 10) == []  # refused before a serial was spent


@pytest.mark.slow
def test_parallel_photo_uploads_are_decoded_two_at_a_time(
    issuing: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = most = 0
    lock = threading.Lock()
    real = console.photos._reduce

    def slow_reduce(image: Any, side: int) -> Any:  # inside the decode turn, right after the pixels load
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.1)
            return real(image, side)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(console.photos, "_reduce", slow_reduce)
    photo = _png((4000, 3000))  # a 12-Mpx photo, which the console accepts
    with served(issuing) as base:
        clients = []
        for i in range(12):
            client = httpx.Client(base_url=base, timeout=60, headers={"accept": "text/html"})
            assert _form_login(client, f"op{i}").status_code == 303
            clients.append(client)
        barrier = threading.Barrier(12)

        def upload(i: int) -> int:
            token = csrf_in(clients[i].get("/passes/new").text)
            barrier.wait()
            return (
                clients[i]
                .post(
                    "/passes/new",
                    data={"csrf_token": token, "holder": f"Holder {i}", "unit": "1", "role": "resident"},
                    files={"photo": ("face.png", photo, "image/png")},
                )
                .status_code
            )

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(upload, range(12)))
        for client in clients:
            client.close()
    assert codes == [303] * 12
    assert most == console.photos.DECODERS


# -- a passes CSV import takes photos only from its own upload -----------------------------------


def test_a_passes_import_reads_no_server_file_only_photos_uploaded_with_it(
    issuing: Console, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "someone-else.jpg"  # a real photo on the server, outside the upload
    Image.new("RGB", (300, 400), (10, 20, 30)).save(elsewhere, "JPEG")
    own = io.BytesIO()
    Image.new("RGB", (300, 400), (200, 100, 50)).save(own, "JPEG")
    rows = [
        "holder,unit,role,days,photo",
        "Shadow,1,resident,30,/etc/shadow",
        "Hostname,1,resident,30,/etc/hostname",
        f"Elsewhere,1,resident,30,{elsewhere}",
        "Climber,1,resident,30,../someone-else.jpg",
        "Own,1,resident,30,own.jpg",
    ]
    issuing.ctx.users.add("root", PASSWORD, "admin")
    admin = TestClient(issuing.app, base_url="http://127.0.0.1", follow_redirects=False)
    admin.cookies.set(SESSION_COOKIE, issuing.ctx.users.login("root", PASSWORD).token)
    answer = admin.post(
        "/passes/import",
        data={"csrf_token": csrf_in(admin.get("/passes/import").text)},
        files=[
            ("file", ("passes.csv", "\n".join(rows).encode(), "text/csv")),
            ("photos", ("own.jpg", own.getvalue(), "image/jpeg")),
        ],
    )
    assert answer.status_code == 303, answer.text[:500]
    job = jobs_of(issuing.app).get(answer.headers["location"].rsplit("/", 1)[1])
    assert job is not None and wait_until(lambda: job.finished, timeout=30)
    refused = {(p.line, p.column, p.detail) for p in job.problems}
    assert {line for line, _, _ in refused} == {2, 3, 4, 5}
    assert all(col == "photo" and "not among the uploaded photos" in why for _, col, why in refused)
    with Office.open(issuing.tmp / "office") as office:
        (issued,) = office.search("", 10)
    own_digest = photo_digest(own.getvalue()).hex()
    assert (issued.holder, issued.photo_digest) == ("Own", own_digest)


# -- a phone pass's secret, only to those who issue passes ----------------------------------------


def test_a_phone_key_and_a_printed_card_go_only_to_issuers_and_every_attempt_is_audited(
    district: District,
) -> None:
    watcher = district.client(district.user("watcher", sites=B))  # sees B, issues nothing
    assert watcher.get("/passes/1").status_code == 200  # the pass's details, yes
    assert watcher.get("/passes/1/phone.json").status_code == 403
    assert watcher.get("/passes/1/card.png").status_code == 403
    assert 'href="/passes/1/phone.json"' not in watcher.get("/passes/1").text
    assert {e.action for e in district.ctx.audit.entries() if e.user == "watcher"} == {
        "pass.phone_key.denied",
        "pass.print.denied",
    }
    issuer = district.client("issuer")
    key = issuer.get("/passes/1/phone.json")
    assert key.status_code == 200 and "key" in key.json()
    assert [e.user for e in district.ctx.audit.entries() if e.action == "pass.phone_key"] == ["issuer"]


# -- CSV exports, escaped per OWASP ---------------------------------------------------------------

HOSTILE = [
    "=1+2",
    " =1+2",
    "\u3000=1+2",
    "\u200b=1+2",
    "＝1+2",
    "＋1",
    "－1",
    "＠SUM(A1)",
    "@SUM(A1)",
    "-2+3",
    "+1",
    "\t=1",
    "\r=1",
    "=cmd|' /C calc'!A0",
    "a|b",
]


def test_every_exported_cell_a_spreadsheet_could_run_is_made_text(plain: Console) -> None:
    plain.ctx.store.commit(
        [
            make_event(A, "south", seq, granted=False, reason="unknown", holder=v)
            for seq, v in enumerate(HOSTILE, 1)
        ]
    )
    admin = TestClient(plain.app, base_url="http://127.0.0.1", follow_redirects=False)
    admin.cookies.set(SESSION_COOKIE, plain.ctx.users.login("root", PASSWORD).token)
    rows = list(csv.DictReader(io.StringIO(admin.get("/export/events.csv").text)))
    exported = {int(r["seq"]): r["holder"] for r in rows}
    assert [exported[seq] for seq in range(1, len(HOSTILE) + 1)] == ["'" + v for v in HOSTILE]
    harmless = ["王小明", "Li Wei", "3-2-501", "O'Brien"]
    plain.ctx.store.commit(
        [make_event(A, "west", s, granted=True, holder=v) for s, v in enumerate(harmless, 1)]
    )
    rows = list(csv.DictReader(io.StringIO(admin.get("/export/events.csv?gate=west").text)))
    assert sorted(r["holder"] for r in rows) == sorted(harmless)  # nothing else is touched


def test_every_csv_export_quotes_every_field_so_no_separator_starts_a_cell(plain: Console) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    plain.ctx.store.commit(
        [make_event(A, "north", 1, at=at, granted=True, reason="ok", holder='a;=1+2,"x"', direction="in")]
    )
    admin = TestClient(plain.app, base_url="http://127.0.0.1", follow_redirects=False)
    admin.cookies.set(SESSION_COOKIE, plain.ctx.users.login("root", PASSWORD).token)
    day = _site_day()
    exports = {
        "events": admin.get("/export/events.csv").text,
        "flow": admin.get(f"/export/flow.csv?start={day}&end={day}").text,
        "flow page": admin.get(f"/flow/export.csv?post={A}/north").text,
    }
    for name, text in exports.items():
        lines = [line for line in text.splitlines() if line]
        assert len(lines) > 1, name
        for row, line in zip(csv.reader(io.StringIO(text)), lines, strict=False):
            assert line == ",".join('"' + cell.replace('"', '""') + '"' for cell in row), (name, line)
    assert '"a;=1+2,""x"""' in exports["events"]


def _site_day() -> str:
    """Today where the site stands (the export's days are the site's, Asia/Shanghai by default)."""
    from zoneinfo import ZoneInfo

    return (datetime.now(UTC) - timedelta(minutes=5)).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


# -- a stale session cookie ------------------------------------------------------------------------


def test_a_login_sent_with_a_stale_session_cookie_logs_in_at_the_first_try(plain: Console) -> None:
    with served(plain) as base, from_address(base, ADMIN) as browser:
        form = csrf_in(browser.get("/login").text)  # a login page open in one tab …
        assert _form_login(browser, "root").status_code == 303  # … a login in another …
        plain.ctx.db.execute(
            "DELETE FROM web_sessions"
        )  # … that has ended since (restart, idle, another device)
        assert browser.cookies.get(SESSION_COOKIE)  # the browser still sends its cookie
        answer = browser.post("/login", data={"name": "root", "password": PASSWORD, "csrf_token": form})
        assert answer.status_code == 303
        sessions = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
        assert len(sessions) == 1 and "Max-Age=0" not in sessions[0], sessions
        assert browser.get("/", follow_redirects=False).status_code == 200  # logged in at the first try


@pytest.mark.slow
def test_a_login_sent_with_a_stale_session_cookie_works_in_chromium(
    plain: Console, browser_page: Any
) -> None:
    page = browser_page
    with served(plain) as base:
        page.goto(f"{base}/login")  # the login page is open …
        other = page.context.new_page()
        _chromium_login(other, base)  # … the user logs in from another tab …
        assert other.url == f"{base}/"
        other.close()
        plain.ctx.db.execute("DELETE FROM web_sessions")  # … that session ends; the cookie stays
        page.fill("#name", "root")
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("#login")
        assert page.url == f"{base}/"  # not sent back to /login?next=%2F
        assert page.locator("#logout").count() == 1


def _chromium_login(page: Any, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", "root")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("#login")

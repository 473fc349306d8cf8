"""Bad input gets a 4xx that says why from every route of the web console: never a 500, never a traceback.

The routes are the app's own table (:func:`console.web.app.routes`), so a new route is
covered without touching this file; a new path parameter needs a sample (``samples``),
a new admin page a line in ``ADMIN_ONLY``.  The console is real: SQLite stores, a site
office with one pass, a card registry with one card, one stored event and one alarm,
users logged in through ``UserStore.login``.

The clients here answer a server error with the 500 a browser would get rather than
raising it, so one test names every bad input of its route at once; the traceback is in
the captured log.  Which query parameters a route reads is learned by watching it read
them (:func:`parameters_read`), so each one gets every bad value on its own and a
refusal of one cannot hide a crash on another.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from markupsafe import escape
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.testclient import TestClient

from console import documents
from console.passes.office import PassRequest
from console.roster.model import Person, Team
from console.roster.store import RosterStore
from console.web import middleware
from console.web.app import create_app, routes
from console.web.i18n import translator
from console.web.imports import jobs_of
from console.web.middleware import SESSION_COOKIE
from protocol.credentials import CardEntry
from protocol.passes import Role
from tests.console.web.pages_support import PASSWORD, Console, csrf_of, web_console
from tests.console.web.web_support import make_event
from tests.offices import create_office

PUBLIC = frozenset(
    {
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/logout"),
        ("POST", "/lang"),
        ("GET", "/healthz"),
        # volunteers sign up from a printed link, without an account (console/web/routes/join.py)
        ("GET", "/join/{link}"),
        ("POST", "/join/{link}"),
        ("GET", "/join/{link}/me/{secret}"),
        ("POST", "/join/{link}/me/{secret}"),
    }
)
TOKEN_ONLY = frozenset({("GET", "/api/v1/events"), ("GET", "/api/v1/flow"), ("GET", "/api/v1/openapi.json")})
"""The district's pull API: a bearer token, never a login (tests/console/district/test_api.py)."""
ADMIN_ONLY = frozenset(
    {
        ("GET", "/audit"),
        ("GET", "/users"),
        ("POST", "/users"),
        ("GET", "/district/tokens"),
        ("POST", "/district/tokens"),
        ("GET", "/passes/import"),
        ("POST", "/passes/import"),
        ("GET", "/passes/import/{job:str}"),
        ("GET", "/passes/import/{job:str}/events"),
        ("GET", "/passes/import/{job:str}/state.json"),
        ("GET", "/cards/import"),
        ("POST", "/cards/import"),
        ("GET", "/cards/import/{job:str}"),
        ("GET", "/cards/import/{job:str}/events"),
        ("GET", "/vehicles/import"),
        ("POST", "/vehicles/import"),
        ("GET", "/vehicles/import/{job:str}"),
        ("GET", "/vehicles/import/{job:str}/events"),
        # a person's duty credentials (the card list) and personal PIN (console/web/routes/attendance.py)
        ("POST", "/roster/people/duty"),
        ("POST", "/roster/people/pin"),
    }
)
ENDPOINTS = sorted(
    (method, route.path)
    for route in routes()
    if isinstance(route, Route)
    for method in route.methods or ()
    if method != "HEAD"
)
PROTECTED = [endpoint for endpoint in ENDPOINTS if endpoint not in PUBLIC | TOKEN_ONLY]
GETS = [path for method, path in ENDPOINTS if method == "GET"]
POSTS = [path for method, path in ENDPOINTS if method == "POST"]
MORE_GETS = ["/passes/{serial:int}/card.png", "/export/events.json", "/export/flow.json"]
"""Routes whose sample ``fmt`` (csv) stops before the query is read."""

CARD = "wiegand26:13:13067"
NOT_UTF8 = "%FF%FE%C3%28"
QUERY_VALUES = (
    "",
    "abc",
    "-1",
    "9" * 30,
    "x" * 2000,
    "%00%1B%5B2J",
    NOT_UTF8,
    "0001-01-01",
    "9999-12-31",
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00%2B14:00",
    "2026-02-30",
    "%C2%B2",
    "%D9%A1%D9%A2",
    "1%0A",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "..%2F..%2Fetc%2Fpasswd",
)
"""As they appear in a URL: ``%FF%FE`` is bytes that are not UTF-8 once unquoted."""
UNREAD_PARAMETERS = ("page", "limit", "hour", "hours", "from", "to", "lang", "day", "month", "sort")
"""Parameters a link might carry that no route reads; sent all at once with each bad value."""

FORM_FIELDS = (
    "name", "password", "next", "lang", "action", "role", "note", "confirm", "holder", "unit", "days",
    "until", "zones", "window", "dynamic", "reason", "replace", "confirm_replace", "credential", "from",
    "photo_digest", "remove_photo", "photo", "file",
)  # fmt: skip
"""Every field a console form sends."""
FORM_VALUES = (
    "",
    " ",
    "abc",
    "-1",
    "9" * 30,
    "x" * 100_000,
    "\x00",
    "0001-01-01",
    "9999-12-31",
    "中文",
    "<b>",
)
BASELINES: dict[str, dict[str, str]] = {
    "/login": {"name": "nobody", "password": "not this one", "next": "/"},
    "/lang": {"lang": "zh", "next": "/events"},
    "/users": {"action": "add", "name": "newcomer", "password": PASSWORD, "role": "operator"},
    "/alarms/{row_id:int}/ack": {"note": "checked the door"},
    "/gates/{site}/{gate}/unlock": {"confirm": "yes"},
    "/cards/new": {
        "credential": "wiegand26:13:1",
        "holder": "王小明",
        "unit": "3-2-501",
        "from": "2026-12-01",
        "until": "2027-11-30",
        "window": "06:00-22:00",
        "zones": "0,2",
    },
    "/cards/{credential:str}/edit": {"holder": "王小明", "until": "2027-11-30", "window": "06:00-22:00"},
    "/cards/{credential:str}/remove": {"confirm": "no"},
    "/passes/new": {"holder": "张伟", "unit": "5-1-302", "role": "resident", "days": "30", "zones": "0"},
    "/passes/{serial:int}/revoke": {"reason": "lost", "confirm": "no"},
}
"""A form each route accepts (or refuses for one reason), so that one bad field at a time reaches its check.

Kept from doing lasting harm to the shared console: the login is for a user that does
not exist (the admin must not be locked out), and removal and revocation are not confirmed.
"""
UPLOADS = (
    ("photo", "face.jpg", b"\xff\xd8\xff\xe0 not a JPEG after all"),
    ("photo", "face.exe", b"MZ\x90\x00"),
    ("photo", "face.png", b""),
    ("file", "people.csv", b"credential,holder\n\xff\xfe\x00\n"),
    ("file", "people.csv", b""),
    ("file", "", b"credential\nwiegand26:13:2\n"),
)
"""Files a form may be sent instead of a photo or a CSV: (field, file name, bytes)."""
UNKNOWN_NAME = "nonexistent"
PATH_VALUES = {
    "str": (
        UNKNOWN_NAME,
        "north%0A",
        "x" * 300,
        "%00",
        NOT_UTF8,
        "..%2F..",
        "%3Cscript%3E",
        quote("中文"),
        "-1",
    ),
    "int": ("0", "9" * 30, "-1", "abc", "1.5"),
}


# -- the console under test ---------------------------------------------------------------------


@dataclass
class Site:
    console: Console
    samples: dict[str, str]
    """A real value for each path parameter: ``row_id`` is the alarm, ``serial`` the pass."""


def _unreachable_broker(*_args: object, **_kwargs: object) -> None:
    """What publishing to the fixture's closed port comes to, without the second of retries each time."""
    raise documents.PublishError("cannot connect to the broker: refused")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("bad-input")
    patch = pytest.MonkeyPatch()
    patch.setattr(documents, "publish_documents", _unreachable_broker)
    office_dir = tmp / "office"
    with create_office(office_dir, site="longtan", site_id=7) as office:
        serial = office.issue(PassRequest("王小明", "3-2-501", Role.RESIDENT, days=30)).pass_.serial
    with web_console(tmp, office=office_dir, cards=True) as console:
        ctx = console.ctx
        assert ctx.cards is not None
        ctx.cards.put([CardEntry(CARD, "李华", "1-1-101")])
        event = make_event("s1", "north", 1, "door.forced")
        ctx.store.commit([event])
        (alarm,) = ctx.alarms.observe_events([event])
        roster = RosterStore(ctx.db)
        link = roster.make_link("s1", "test")
        volunteer = Person("v-1", "志愿者", Team.VOLUNTEER, frozenset({"s1/north"}), frozenset(range(168)))
        secret = roster.sign_up(volunteer, link)
        roster.decide("v-1", approve=True)
        samples = {
            "link": link,
            "secret": secret,
            "site": "s1",
            "gate": "north",
            "event_id": event.id,
            "fmt": "csv",
            "row_id": str(alarm.row_id),
            "job": "0123456789abcdef",
            "serial": str(serial),
            "credential": CARD,
        }
        yield Site(console, samples)
    patch.undo()


@contextmanager
def browser(site: Site, role: str | None, lang: str = "en") -> Iterator[TestClient]:
    """A browser logged in as ``role`` (None: not logged in) that sees a server error as its 500."""
    cookies = {"gp_lang": lang}
    ctx = site.console.ctx
    if role is not None:
        name = f"{role}1"
        if ctx.users.get(name) is None:
            ctx.users.add(name, PASSWORD, role)
            # an operator holding what operators can be granted, so every route is entered
            if role == "operator":
                for permission in ("unlock", "passes"):
                    ctx.users.grant(name, permission, "*")
        cookies[SESSION_COOKIE] = ctx.users.login(name, PASSWORD, lang=lang).token
    with TestClient(
        site.console.app,
        base_url="http://127.0.0.1",
        follow_redirects=False,
        raise_server_exceptions=False,
        headers={"accept": "text/html"},
        cookies=cookies,
    ) as client:
        yield client


def concrete(template: str, samples: Mapping[str, str]) -> str:
    """``/passes/{serial:int}/revoke`` as ``/passes/1/revoke``: each path parameter replaced by its value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in samples, f"{template}: give the path parameter {name!r} a sample in the site fixture"
        return samples[name]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, template)


# -- asking and judging -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    request: str
    status: int
    content_type: str
    location: str
    body: str

    def problems(self) -> list[str]:
        """What is wrong with this answer to bad input: a server error, a traceback, a refusal without a reason.

        502 and 503 are the designed answers when the broker or the site office cannot be
        reached; like every refusal, they must say so.
        """
        found = []
        if self.status >= 500 and self.status not in (502, 503):
            found.append(f"status {self.status}")
        if "Traceback" in self.body:
            found.append("a traceback in the page")
        if self.status >= 400 and not self.says_why():
            found.append(f"status {self.status} without a reason: {self.body[:120]!r}")
        return [f"{self.request[:200]} -> {problem}" for problem in found]

    def says_why(self) -> bool:
        if self.content_type.startswith("text/html"):
            return 'class="error"' in self.body
        if self.content_type.startswith("application/json"):
            return "error" in json.loads(self.body)
        return bool(self.body.strip())


def send(client: TestClient, method: str, url: str, **kwargs: Any) -> Answer:
    """One request; a live event stream is judged by its headers (it would never end)."""
    with client.stream(method, url, **kwargs) as response:
        content_type = response.headers.get("content-type", "")
        live = content_type.startswith("text/event-stream") and response.status_code == 200
        body = "" if live else response.read().decode("utf-8", "replace")
    described = f"{method} {url} {_describe(kwargs)}".strip()
    return Answer(described, response.status_code, content_type, response.headers.get("location", ""), body)


def _describe(kwargs: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k != "data"}
    data = kwargs.get("data")
    if isinstance(data, Mapping):
        shown["data"] = {
            k: v[:40] + ("…" if len(v) > 40 else "") for k, v in data.items() if k != "csrf_token"
        }
    if isinstance(shown.get("content"), bytes):
        shown["content"] = shown["content"][:120]
    return repr(shown) if shown else ""


def parameters_read(client: TestClient, url: str) -> set[str]:
    """The query parameters a route (and its template) looks at, learned by watching one request."""
    read: set[str] = set()

    class Watched(QueryParams):
        def __getitem__(self, key: Any) -> str:
            read.add(str(key))
            return super().__getitem__(key)

        def __contains__(self, key: Any) -> bool:
            read.add(str(key))
            return super().__contains__(key)

        def getlist(self, key: Any) -> list[str]:
            read.add(str(key))
            return super().getlist(key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            HTTPConnection, "query_params", property(lambda self: Watched(self.scope["query_string"]))
        )
        send(client, "GET", url)
    return read


def csrf(client: TestClient) -> str:
    return csrf_of(client, "/login" if SESSION_COOKIE not in client.cookies else "/alarms")


# -- the route table and who may call it --------------------------------------------------------


def test_the_lists_here_name_routes_of_the_app(site: Site) -> None:
    real = sorted(
        (method, route.path)
        for route in create_app(site.console.ctx, watch=False).routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    )
    assert real == ENDPOINTS
    assert set(PUBLIC) <= set(ENDPOINTS) and set(ADMIN_ONLY) <= set(ENDPOINTS)
    assert set(BASELINES) <= set(POSTS)
    for _method, template in ENDPOINTS:
        concrete(template, site.samples)


@pytest.mark.parametrize(("method", "template"), PROTECTED, ids=[" ".join(e) for e in PROTECTED])
def test_without_a_session_a_page_goes_to_login_and_a_script_gets_401(
    site: Site, method: str, template: str
) -> None:
    url = concrete(template, site.samples)
    with browser(site, None) as client:
        if method == "GET":
            page = send(client, "GET", url)
            assert page.status == 303 and page.location.startswith("/login?next=%2F"), page
            script = send(client, "GET", url, headers={"accept": "text/event-stream"})
            assert script.status == 401 and script.says_why(), script
        else:
            unsigned = send(client, "POST", url, data={"note": "x"})
            assert unsigned.status == 403 and "CSRF" in unsigned.body, unsigned
            signed = send(client, "POST", url, data={"csrf_token": csrf(client)})
            assert signed.status == 401 and signed.says_why(), signed


OPERATOR_CHECKS = [e for e in PROTECTED if e in ADMIN_ONLY or e[0] == "GET"]


@pytest.mark.parametrize(("method", "template"), OPERATOR_CHECKS, ids=[" ".join(e) for e in OPERATOR_CHECKS])
def test_an_operator_gets_403_on_admin_routes_and_only_there(site: Site, method: str, template: str) -> None:
    url = concrete(template, site.samples)
    with browser(site, "operator") as client:
        if method == "GET":
            answer = send(client, "GET", url)
        else:
            answer = send(client, "POST", url, data={"csrf_token": csrf(client)})
    if (method, template) in ADMIN_ONLY:
        assert answer.status == 403 and answer.says_why(), answer
    else:
        assert answer.status != 403, f"{answer}: add it to ADMIN_ONLY if it is an admin's page"


# -- bad input, logged in as admin --------------------------------------------------------------


KNOWN_500S: dict[str, str] = {}
"""Routes known to answer some bad input with a 500, each with the input: strict xfail, so a fix must remove it."""
QUERY_TARGETS = [
    pytest.param(t, marks=pytest.mark.xfail(reason=KNOWN_500S[t], strict=True)) if t in KNOWN_500S else t
    for t in GETS + MORE_GETS
]


@pytest.mark.parametrize("template", QUERY_TARGETS)
def test_bad_query_parameters_get_a_refusal_that_says_why(site: Site, template: str) -> None:
    url = concrete(template, site.samples)
    found: list[str] = []
    with browser(site, "admin") as client:
        read = parameters_read(client, url)
        for name in sorted(read):
            for value in QUERY_VALUES:
                found += send(client, "GET", f"{url}?{name}={value}").problems()
            found += send(client, "GET", f"{url}?{name}=1&{name}=2").problems()
        for value in QUERY_VALUES:
            everything = "&".join(f"{name}={value}" for name in sorted(read | set(UNREAD_PARAMETERS)))
            found += send(client, "GET", f"{url}?{everything}").problems()
    assert not found, "\n".join(found)


ANY_WELL_FORMED_NAME = {"/gates/{site}/{gate}/unlock"}
"""Pages that take a name the console has not heard of: a gate that never reported can still be asked to open."""
PARAMETRIZED = [(m, p) for m, p in ENDPOINTS if "{" in p]


@pytest.mark.parametrize(("method", "template"), PARAMETRIZED, ids=[" ".join(e) for e in PARAMETRIZED])
def test_unknown_path_parameters_get_404_or_400(site: Site, method: str, template: str) -> None:
    found: list[str] = []
    with browser(site, "admin") as client:
        token = csrf(client)
        for match in re.finditer(r"\{(\w+)(?::(\w+))?\}", template):
            name, kind = match.group(1), match.group(2) or "str"
            for value in PATH_VALUES["int" if kind == "int" else "str"]:
                url = concrete(template, {**site.samples, name: value})
                if method == "GET":
                    answer = send(client, "GET", url)
                else:
                    answer = send(
                        client, "POST", url, data={**BASELINES.get(template, {}), "csrf_token": token}
                    )
                found += answer.problems()
                well_formed = template in ANY_WELL_FORMED_NAME and value == UNKNOWN_NAME
                if answer.status < 400 and not well_formed:
                    found.append(f"{answer.request} -> {answer.status} for a thing that does not exist")
    assert not found, "\n".join(found)


def test_unknown_paths_get_the_not_found_page(site: Site) -> None:
    with browser(site, "admin") as client:
        for url in (
            "/nope",
            "/events/x/y",
            "/static/..%2F..%2Fapp.py",
            "/static/" + "x" * 300,
            f"/{NOT_UTF8}",
        ):
            answer = send(client, "GET", url)
            assert answer.status == 404 and not answer.problems(), answer


def test_a_method_a_route_does_not_take_gets_405(site: Site) -> None:
    with browser(site, "admin") as client:
        token = csrf(client)
        for template in sorted({path for _method, path in ENDPOINTS}):
            url = concrete(template, site.samples)
            taken = {method for method, path in ENDPOINTS if path == template}
            for method in sorted({"GET", "POST", "PUT", "DELETE"} - taken):
                answer = send(client, method, url, headers={"x-csrf-token": token})
                assert answer.status == 405 and not answer.problems(), answer


def _post_cases(token: str, baseline: Mapping[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(why, request keywords): every malformed way to post a form."""
    yield "no token", {"data": dict(baseline)}
    yield "wrong token", {"data": {**baseline, "csrf_token": "A" * 43}}
    yield "non-ASCII token", {"data": {**baseline, "csrf_token": "令牌" * 20}}
    yield (
        "foreign origin",
        {"data": {**baseline, "csrf_token": token}, "headers": {"origin": "http://evil.example"}},
    )
    yield (
        "json body",
        {
            "content": json.dumps(baseline),
            "headers": {"content-type": "application/json", "x-csrf-token": token},
        },
    )
    yield "no content type", {"content": b"\xff\xfe garbage", "headers": {"x-csrf-token": token}}
    raw = b"&".join(f"{field}=".encode() + b"\xff\xfe%FF%FE" for field in FORM_FIELDS)
    yield (
        "urlencoded, not UTF-8",
        {
            "content": b"csrf_token=" + token.encode() + b"&" + raw,
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    )
    yield (
        "multipart, files everywhere",
        {
            "data": {"csrf_token": token},
            "files": {f: ("x.jpg", b"\xff\xd8\xff\x00garbage", "image/jpeg") for f in FORM_FIELDS},
        },
    )
    yield (
        "multipart, text not UTF-8",
        {"headers": {"x-csrf-token": token}, "files": {f: (None, b"\xff\xfe%FF") for f in FORM_FIELDS}},
    )
    for field, name, content in UPLOADS:
        upload = {field: (name, content, "application/octet-stream")}
        yield (
            f"{field} {name!r} {content[:6]!r}",
            {"data": {**baseline, "csrf_token": token}, "files": upload},
        )
    yield (
        "too many fields",
        {
            "content": "&".join([f"csrf_token={token}", *(f"f{i}=1" for i in range(3000))]),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    )
    for value in FORM_VALUES:
        yield (
            f"every field {value[:10]!r}",
            {"data": {**{f: value for f in FORM_FIELDS}, "csrf_token": token}},
        )
    for field in baseline:
        for value in FORM_VALUES:
            yield f"{field}={value[:10]!r}", {"data": {**baseline, field: value, "csrf_token": token}}


REFUSED_BY_THE_MIDDLEWARE = ("no token", "wrong token", "non-ASCII token", "foreign origin")


@pytest.mark.parametrize("template", POSTS)
def test_malformed_form_posts_get_a_refusal_that_says_why(
    site: Site, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = concrete(template, site.samples)
    found: list[str] = []
    with browser(site, "admin") as client:
        for why, kwargs in _post_cases(csrf(client), BASELINES.get(template, {})):
            caplog.clear()
            answer = send(client, "POST", url, **kwargs)
            found += [f"[{why}] {problem}" for problem in answer.problems()]
            if why in REFUSED_BY_THE_MIDDLEWARE:
                logged = any(m.startswith(f"refused POST {url} ") for m in caplog.messages)
                if answer.status != 403 or not logged:
                    found.append(f"[{why}] {answer.request} -> {answer.status}, logged: {caplog.messages}")
    assert not found, "\n".join(found)


def test_a_body_over_the_limit_is_refused_before_any_route_reads_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(middleware, "MAX_BODY_BYTES", 10_000)
    with browser(site, "admin") as client:
        token = csrf(client)
        for url in POSTS:
            answer = send(
                client, "POST", concrete(url, site.samples), data={"csrf_token": token, "note": "x" * 20_000}
            )
            assert answer.status == 413 and "too large" in answer.body and not answer.problems(), answer
            # the same body with the token in the header instead of the form
            answer = send(
                client,
                "POST",
                concrete(url, site.samples),
                data={"note": "x" * 20_000},
                headers={"x-csrf-token": token},
            )
            assert answer.status == 413 and "too large" in answer.body, answer


JUNK_CSVS = {
    "header only": "credential,holder,unit\n",
    "unknown columns": "who,what\n1,2\n",
    "formula cells": "credential,holder,unit,role\n=cmd|' /C calc'!A0,@SUM(1),+1,-1\n",
    "ragged rows": 'credential,holder\nwiegand26:13:1,a,b,c\n"unterminated\n',
    "NUL bytes": "credential,holder\n\x00,\x00\n",
    "a huge cell": "credential,holder\n" + "9" * 200_000 + ",x\n",
}


@pytest.mark.parametrize("kind", ["cards", "passes"])
def test_a_junk_csv_import_ends_and_its_pages_say_how(site: Site, kind: str) -> None:
    jobs = jobs_of(site.console.app)
    found: list[str] = []
    with browser(site, "admin") as client:
        token = csrf(client)
        for why, text in JUNK_CSVS.items():
            files = {"file": ("junk.csv", text.encode(), "text/csv")}
            started = send(client, "POST", f"/{kind}/import", data={"csrf_token": token}, files=files)
            assert started.status == 303, f"{why}: {started}"
            job = jobs.get(started.location.rsplit("/", 1)[-1])
            assert job is not None
            deadline = time.monotonic() + 60
            while not job.finished and time.monotonic() < deadline:
                time.sleep(0.05)
            assert job.finished, f"{why}: the import never ended"
            for url in (started.location, f"{started.location}/events", f"{started.location}/state.json"):
                answer = send(client, "GET", url)
                found += [f"[{why}] {problem}" for problem in answer.problems()]
                page = answer.status == 200 and answer.content_type.startswith("text/html")
                if page and job.error and str(escape(job.error)) not in answer.body:
                    found.append(f"[{why}] {url} does not show the job's error {job.error!r}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("url", "key", "value"),
    [
        ("/events?start=9999-12-31", "events.bad_start", None),
        ("/events?end=0001-01-01T00:00:00%2B14:00", "events.bad_end", None),
        ("/export/flow.csv?start=0001-01-01", "events.bad_start", None),
        ("/flow?date=2026-02-30", "flow.error.bad_date", "2026-02-30"),
    ],
)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_refusal_speaks_the_users_language(
    site: Site, url: str, key: str, value: str | None, lang: str
) -> None:
    with browser(site, "admin", lang) as client:
        answer = send(client, "GET", url)
    assert not answer.problems(), answer
    assert str(escape(translator(lang)(key, value=value))) in answer.body, answer.body[:2000]


@pytest.mark.parametrize(
    "headers",
    [
        {"cookie": b"gp_session=" + b"\xff" * 10},
        {"cookie": "gp_session=" + "a" * 5000},
        {"cookie": 'gp_session="unterminated; gp_lang=xx; ;;=;'},
        {"cookie": "gp_csrf=" + "x" * 5000},
        {"accept-language": "zh;q=NaN, en;q=-1, ;q=, " + ",xx" * 1000},
        {"accept-language": "zh;q=1e309"},
        {"accept": "\x01"},
        {"x-csrf-token": b"\xff\xfe"},
    ],
    ids=lambda headers: next(iter(headers)),
)
def test_malformed_headers_make_an_anonymous_visitor(site: Site, headers: dict[str, Any]) -> None:
    with browser(site, None) as client:
        for method, url in (("GET", "/"), ("GET", "/login"), ("GET", "/events"), ("POST", "/login")):
            answer = send(client, method, url, headers=headers)
            assert answer.status in (200, 303, 401, 403) and not answer.problems(), answer

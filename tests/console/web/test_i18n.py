"""Both languages complete: same keys, every key used exists, no raw keys on rendered pages."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from enum import StrEnum
from pathlib import Path

import pytest

from console.web.i18n import LANGUAGES, catalogues, load_catalogues, negotiate
from tests.console.web.web_support import Web, login, make_event, post_form

WEB = Path(__file__).resolve().parents[3] / "console" / "web"
_LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)["']""")
_PREFIX_KEY = re.compile(r"""\bt\(\s*["']([a-z][a-z0-9_.]*\.)["']\s*~""")
_PY_KEY = re.compile(r"""["']((?:events|error|login|unlock|alarms|users|gates)\.[a-z_]+(?:\.[a-z_]+)*)["']""")


def _sources() -> list[Path]:
    return sorted([*WEB.rglob("*.html"), *WEB.rglob("*.py")])


def test_both_languages_have_the_same_keys():
    tables = load_catalogues()
    assert set(tables) == set(LANGUAGES)
    missing_zh = set(tables["en"]) - set(tables["zh"])
    missing_en = set(tables["zh"]) - set(tables["en"])
    assert not missing_zh, f"keys without Chinese: {sorted(missing_zh)}"
    assert not missing_en, f"keys without English: {sorted(missing_en)}"
    assert all(text.strip() for table in tables.values() for text in table.values())


def test_every_key_used_in_templates_and_python_exists():
    known = set(catalogues()["en"])
    used: dict[str, Path] = {}
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for key in _LITERAL_KEY.findall(text):
            used.setdefault(key, path)
        if path.suffix == ".py":
            for key in _PY_KEY.findall(text):
                if not key.endswith((".html", ".csv", ".json")) and key.count(".") >= 1:
                    used.setdefault(key, path)
        for prefix in _PREFIX_KEY.findall(text):  # t("state." ~ g.state): some key must start so
            assert any(k.startswith(prefix) for k in known), f"{path.name}: no key starts with {prefix!r}"
    unknown = {key: path.name for key, path in used.items() if key not in known and not _is_not_a_key(key)}
    assert not unknown, f"keys used but not defined: {unknown}"


def _is_not_a_key(key: str) -> bool:
    """Dotted strings in Python that are not translation keys (audit actions, event types)."""
    return key in {"alarm.ack", "login.failed", "login.refused", "events.json", "events.csv"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_rendered_pages_contain_no_raw_keys(web: Web, lang: str):
    web.add_user("root", "admin")
    web.store.commit(
        [make_event("s1", "north", 1, "door.forced"), make_event("s1", "north", 2, granted=False)]
    )
    web.ctx.alarms.observe_events(web.store.events_after(0))
    event_id = web.store.events_after(0)[0].id
    keys = set(catalogues()["en"])
    with web.client() as client:
        client.cookies.set("gp_lang", lang)
        pages = {"/login": client.get("/login").text}
        login(client, "root")
        web.app.state.board.apply_events(web.store.events_after(0))
        for path in (
            "/",
            "/events",
            f"/events/{event_id}",
            "/alarms",
            "/alarms?show=all",
            "/audit",
            "/users",
            "/gates/s1/north/unlock",
            "/gates/s1/north",
            "/no-such-page",
        ):
            pages[path] = client.get(path).text
    for path, html in pages.items():
        visible = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
        visible = re.sub(r"<[^>]+>", " ", visible)
        raw = sorted(key for key in keys if re.search(rf"(?<![\w./]){re.escape(key)}(?![\w.])", visible))
        raw = [
            key for key in raw if key not in {"door.forced", "door.tamper", "door.held_open"}
        ]  # event types
        assert not raw, f"{lang} {path} shows raw keys {raw}"
        if lang == "zh":
            assert "登录" in html or "退出登录" in html


def test_language_follows_accept_language_and_the_users_choice(web: Web):
    assert negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert negotiate("fr, en;q=0.5") == "en"
    assert negotiate("de") == "en"
    assert negotiate("en;q=0.2, zh;q=0.9") == "zh"
    assert negotiate(";;;,q=,zh-;q=abc") == "en"
    web.add_user("ana")
    with web.client() as client:
        assert "用户名" in client.get("/login", headers={"accept-language": "zh-CN,zh;q=0.9"}).text
        login(client, "ana")
        response = post_form(client, "/lang", {"lang": "zh", "next": "/events"})
        assert response.status_code == 303 and response.headers["location"] == "/events"
        client.cookies.clear()  # the session remembers, not only the cookie
        client.cookies.set("gp_session", _session_token(response, client))
        assert "事件" in client.get("/events", headers={"accept-language": "en"}).text


def _session_token(response, client) -> str:  # type: ignore[no-untyped-def]
    return response.request.headers["cookie"].split("gp_session=")[1].split(";")[0]


def test_every_alarm_kind_has_a_label_in_both_languages():
    """The alarms page shows ``alarm.<kind>``: a kind added without a label shows its raw code."""
    from console.alarms import AlarmKind

    tables = load_catalogues()
    for lang in LANGUAGES:
        missing = [kind.value for kind in AlarmKind if f"alarm.{kind.value}" not in tables[lang]]
        assert not missing, f"alarm kinds without a {lang} label: {missing}"


# -- the codes gates send: every one has words in both languages ---------------------------------

_CODE_PACKAGES = ("protocol", "edge", "drivers")
_REASON_SUFFIXES = ("Reason", "Refusal", "Cause")
"""Enums whose values a gate writes as an event's ``reason`` (or a door's ``cause``), by name."""


def _code_enums() -> dict[str, list[type[StrEnum]]]:
    """Every StrEnum of event types (``*EventType``) and reasons in protocol/, edge/ and drivers/.

    Found by walking the packages rather than listed, so that an enum another part adds
    (vehicle lanes, OSDP readers, district export) is checked without touching this test.
    """
    found: dict[str, list[type[StrEnum]]] = {"event_type": [], "reason": [], "flag": []}
    for package in _CODE_PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.endswith(".__main__"):
                continue
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # an optional extra that is not installed (drivers.keyboard)
                continue
            for name, value in vars(module).items():
                if (
                    not (isinstance(value, type) and issubclass(value, StrEnum))
                    or value.__module__ != module.__name__
                ):
                    continue
                if name.endswith("EventType"):
                    found["event_type"].append(value)
                elif name.endswith(_REASON_SUFFIXES):
                    found["reason"].append(value)
    from protocol.passes.decision import Flag

    found["flag"].append(Flag)
    from protocol.duty import DutyMethod, DutyRole  # how and as what staff check in (issue 18)

    found["duty_method"] = [DutyMethod]
    found["duty_role"] = [DutyRole]
    return found


def _event_type_constants() -> set[str]:
    """``protocol/events.py`` names its event types as module constants, not as an enum."""
    import protocol.duty as duty
    import protocol.events as events

    return {
        value
        for name, value in vars(events).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", value)
    } | set(duty.EVENT_TYPES)


def missing_code_labels(
    enums: dict[str, list[type[StrEnum]]], event_types: set[str], tables: dict[str, dict[str, str]]
) -> dict[str, list[str]]:
    """``{lang: [key, ...]}`` of the codes that have no label."""
    keys = {f"event_type.{code}" for code in event_types}
    keys |= {
        f"{prefix}.{member.value}" for prefix, found in enums.items() for enum in found for member in enum
    }
    return {lang: sorted(k for k in keys if k not in tables[lang]) for lang in LANGUAGES}


def test_every_event_type_reason_and_flag_has_a_label_in_both_languages():
    enums = _code_enums()
    assert len(enums["reason"]) >= 10 and enums["event_type"]  # the walk found the enums at all
    events = _event_type_constants()
    assert {"access.scan", "scanner.rejected", "clock.untrusted", "duty.check_in", "patrol.checkin"} <= events
    assert "not_valid_now" in {m.value for enum in enums["reason"] for m in enum}  # protocol.duty's reasons
    missing = missing_code_labels(enums, events, load_catalogues())
    assert missing == {lang: [] for lang in LANGUAGES}, f"codes without a label: {missing}"


def test_a_new_enum_member_without_a_label_is_caught():
    """The check itself: a reason enum someone adds tomorrow, and an event type constant."""
    NewReason = StrEnum("NewReason", {"LANE_BLOCKED": "lane_blocked", "GRANTED": "granted"})
    missing = missing_code_labels({"reason": [NewReason]}, {"vehicle.entered"}, load_catalogues())
    assert missing == {lang: ["event_type.vehicle.entered", "reason.lane_blocked"] for lang in LANGUAGES}


@pytest.mark.parametrize(
    ("lang", "type_label", "reason_label", "flag_label"),
    [
        ("en", "Pass or card presented", "revoked", "gate clock not trusted"),
        ("zh", "出示通行证或门卡", "已吊销", "门岗时钟不可信"),
    ],
)
def test_events_pages_show_labels_not_codes(
    web: Web, lang: str, type_label: str, reason_label: str, flag_label: str
):
    web.add_user("root", "admin")
    web.store.commit(
        [
            make_event(
                "s1",
                "north",
                1,
                granted=False,
                reason="revoked",
                credential="pass",
                flags=["clock_untrusted"],
            ),
            make_event("s1", "north", 2, "door.locked", cause="opened"),
        ]
    )
    event_id = web.store.events_after(0)[0].id
    with web.client() as client:
        client.cookies.set("gp_lang", lang)
        login(client, "root")
        listing = client.get("/events").text
        detail = client.get(f"/events/{event_id}").text
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", listing)
    assert type_label in cells and reason_label in cells
    assert "access.scan" not in cells and "door.locked" not in cells and "opened" not in cells
    if lang == "zh":
        assert "revoked" not in cells
    assert 'title="access.scan"' in listing  # the code stays at hand, for the filter and the docs
    assert type_label in detail and reason_label in detail and flag_label in detail
    labels = re.search(r'<script type="application/json" id="code-labels">(.*?)</script>', listing, re.S)
    assert labels and json.loads(labels.group(1))["reason.revoked"] == reason_label  # for live rows

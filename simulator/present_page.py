"""The demo's "present a pass" page: a resident's hand, holding a pass up to a simulated gate.

A newcomer who issued a pass in the web console has no phone or paper in front of a real
scanner, so this page stands in for the hand: it types the pass's code into a gate's
simulated QR scanner (the same pseudo-terminal the simulated residents use), the gate's
agent decides by itself as it would on a Raspberry Pi, and the event travels to the
console like every other.  The page then waits for that event in the console's store and
says what the gate answered, with a link to the event in the web console.

Demo-only machinery: it lives in the simulator, binds to the loopback address, and knows
nothing of the console beyond the store rows and the callbacks ``gatepost demo`` hands it
(the office's newest passes, and a label for a reason in the page's language).
"""

from __future__ import annotations

import html
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from simulator.scenario import Keyboard

MAX_CODE_CHARS = 4096
"""Longer than any pass (a phone pass is under 600 digits); a pasted essay is cut, not typed."""
MAX_FORM_BYTES = 64 * 1024
SHOW_AGAIN_AFTER_S = 3.0
"""A gate takes the same code again within ``[access] repeat_s`` (2.5 s by default) as one person
still holding it up, and records nothing; the page waits this long before showing it again."""
WAIT_S = 10.0
"""How long the page waits for the gate's event to reach the console before saying it has not yet."""

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Simulated gates: present a pass",
        "intro": "Demo only. This page holds a pass up to a gate's simulated QR scanner, as a resident"
        " would: it types the pass's code into the scanner, the gate decides by itself, and the event"
        " reaches the console like any other. Watch it arrive on the console's Events page.",
        "gate": "Gate",
        "office": "Passes from the site office (newest first)",
        "serial": "Serial",
        "holder": "Holder",
        "unit": "Unit",
        "state": "State",
        "valid": "valid",
        "revoked": "revoked",
        "present": "Present at the gate",
        "none": "The office has issued no passes yet.",
        "or_type": "Or type any code (what a scanner would read)",
        "present_typed": "Present this code",
        "granted": "{gate}: granted",
        "denied": "{gate}: refused, {reason}",
        "no_event": "{gate}: the code was typed; no decision reached the console within {seconds} s"
        " (is the gate running? see its log)",
        "see_event": "See this event in the web console",
        "console": "Web console",
        "no_code": "Choose a pass or type a code.",
        "unknown_gate": "There is no simulated scanner gate {gate}.",
        "language": "中文",
    },
    "zh": {
        "title": "模拟门岗：出示通行证",
        "intro": "仅用于演示。本页替居民把通行证举到门岗的模拟扫码器前：把通行证的码输入扫码器，"
        "门岗自行判定，事件和其他事件一样送到控制台。可在控制台的“事件”页看到它到达。",
        "gate": "门岗",
        "office": "物业办公室签发的通行证（最新在前）",
        "serial": "编号",
        "holder": "持证人",
        "unit": "房号",
        "state": "状态",
        "valid": "有效",
        "revoked": "已吊销",
        "present": "在门岗出示",
        "none": "物业办公室尚未签发通行证。",
        "or_type": "或输入任意码（扫码器读到的内容）",
        "present_typed": "出示此码",
        "granted": "{gate}：通过",
        "denied": "{gate}：拒绝，{reason}",
        "no_event": "{gate}：码已输入；{seconds} 秒内控制台未收到判定（门岗是否在运行？请查看其日志）",
        "see_event": "在控制台查看此事件",
        "console": "控制台",
        "no_code": "请选择通行证或输入一个码。",
        "unknown_gate": "没有名为 {gate} 的模拟扫码门岗。",
        "language": "English",
    },
}


@dataclass(frozen=True, slots=True)
class OfferedPass:
    """A pass the office issued, with the code a holder would show now."""

    serial: int
    generation: int
    holder: str
    unit: str
    code: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the gate decided, as the console stored it."""

    event_id: str
    granted: bool
    reason: str
    holder: str = ""


class Rows(Protocol):
    def __call__(self, sql: str, params: Sequence[object] = ...) -> list[tuple[Any, ...]]: ...


class PresentPage:
    """A small HTTP server on the loopback address; ``start()`` returns its URL."""

    def __init__(
        self,
        scanners: dict[str, Keyboard],
        console_rows: Rows,
        *,
        passes: Callable[[], list[OfferedPass]],
        reason_label: Callable[[str, str], str] = lambda _lang, reason: reason,
        console_url: str | None = None,
        wait_s: float = WAIT_S,
    ) -> None:
        self.scanners = scanners
        self.console_rows = console_rows
        self.passes = passes
        self.reason_label = reason_label
        self.console_url = console_url
        self.wait_s = wait_s
        self.presented: list[tuple[str, str, Outcome | None]] = []
        """(gate, code, outcome) in the order presented."""
        self._server: ThreadingHTTPServer | None = None
        self._shown: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # -- serving -------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # the demo's terminal shows the live tail
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/healthz":
                    self._send(HTTPStatus.OK, "ok", "text/plain")
                    return
                if url.path != "/":
                    self._send(HTTPStatus.NOT_FOUND, "not found", "text/plain")
                    return
                lang = page.language(url.query, self.headers.get("accept-language"))
                self._send(HTTPStatus.OK, page.render(lang), "text/html")

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                if url.path != "/present" or not 0 <= length <= MAX_FORM_BYTES:
                    self._send(HTTPStatus.BAD_REQUEST, "bad request", "text/plain")
                    return
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
                lang = page.language(url.query, self.headers.get("accept-language"))
                status, body = page.present_form({k: v[0] for k, v in form.items()}, lang)
                self._send(status, body, "text/html")

            def _send(self, status: HTTPStatus, body: str, kind: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", f"{kind}; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="present-page", daemon=True).start()
        return f"http://{host}:{self._server.server_address[1]}/"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- presenting ------------------------------------------------------------------------------

    def present(self, gate: str, code: str) -> Outcome | None:
        """Type ``code`` at ``gate``'s scanner and wait for the console to store the gate's decision."""
        code = "".join(ch for ch in code if ch.isprintable())[:MAX_CODE_CHARS]
        serial = _serial_of(code)
        with self._lock:  # one hand per page: a second click waits its turn
            last = self._shown.get((gate, code))
            if last is not None:
                time.sleep(max(0.0, last + SHOW_AGAIN_AFTER_S - time.monotonic()))
            after = self._last_row()
            self.scanners[gate].type(code)
            self._shown[gate, code] = time.monotonic()
        deadline = time.monotonic() + self.wait_s
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            time.sleep(0.2)
            outcome = self._find(gate, after, serial, code)
        self.presented.append((gate, code, outcome))
        return outcome

    def _last_row(self) -> int:
        rows = self.console_rows("SELECT max(row_id) FROM events")
        return int(rows[0][0] or 0) if rows else 0

    def _find(self, gate: str, after: int, serial: int | None, code: str) -> Outcome | None:
        rows = self.console_rows(
            "SELECT id, data FROM events WHERE row_id > ? AND gate = ? AND type = 'access.scan'"
            " ORDER BY row_id",
            (after, gate),
        )
        for event_id, data in rows:
            body = json.loads(data)
            if (serial is not None and body.get("serial") == serial) or body.get("code") == code:
                holder = str(body.get("holder") or "")
                return Outcome(event_id, bool(body.get("granted")), str(body.get("reason", "")), holder)
        return None

    def present_form(self, form: dict[str, str], lang: str) -> tuple[HTTPStatus, str]:
        t = TEXT[lang]
        gate = form.get("gate", "")
        if gate not in self.scanners:
            return HTTPStatus.BAD_REQUEST, self.render(lang, message=t["unknown_gate"].format(gate=gate))
        code = form.get("code", "").strip()
        if form.get("serial"):
            offered = {str(p.serial): p for p in self.passes()}.get(form["serial"])
            code = offered.code if offered is not None else ""
        if not code:
            return HTTPStatus.BAD_REQUEST, self.render(lang, message=t["no_code"], gate=gate)
        outcome = self.present(gate, code)
        return HTTPStatus.OK, self.render(lang, gate=gate, outcome=outcome, presented=True)

    # -- the page --------------------------------------------------------------------------------

    @staticmethod
    def language(query: str, accept: str | None) -> str:
        asked = urllib.parse.parse_qs(query).get("lang", [""])[0]
        if asked in TEXT:
            return asked
        return "zh" if (accept or "").strip().lower().startswith("zh") else "en"

    def render(
        self,
        lang: str,
        *,
        gate: str | None = None,
        outcome: Outcome | None = None,
        message: str = "",
        presented: bool = False,
    ) -> str:
        t = TEXT[lang]
        esc = html.escape
        gate = gate if gate in self.scanners else next(iter(self.scanners), "")
        other = "zh" if lang == "en" else "en"
        parts = [
            f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">',
            f"<title>{esc(t['title'])}</title>",
            "<style>body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}"
            "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ccc;text-align:left}"
            "#result{padding:.6rem;margin:1rem 0;font-size:1.3rem}.granted{background:#d8f5d8}"
            ".denied{background:#fbd9d9}.pending{background:#eee}.muted{color:#555}</style></head><body>",
            f'<p style="float:right"><a id="language" href="/?lang={other}">{esc(t["language"])}</a>'
            + (
                f' · <a href="{esc(self.console_url)}events">{esc(t["console"])}</a>'
                if self.console_url
                else ""
            )
            + "</p>",
            f"<h1>{esc(t['title'])}</h1><p class='muted'>{esc(t['intro'])}</p>",
        ]
        if message:
            parts.append(f'<p id="result" class="pending">{esc(message)}</p>')
        elif presented and outcome is not None:
            if outcome.granted:
                text, kind = t["granted"].format(gate=gate), "granted"
            else:
                label = self.reason_label(lang, outcome.reason)
                text, kind = t["denied"].format(gate=gate, reason=label), "denied"
            if outcome.holder:
                text += f" ({outcome.holder})"
            link = (
                f' <a id="event-link" href="{esc(self.console_url)}events/{esc(outcome.event_id)}">'
                f"{esc(t['see_event'])}</a>"
                if self.console_url
                else ""
            )
            parts.append(
                f'<p id="result" class="{kind}" data-reason="{esc(outcome.reason)}">{esc(text)}{link}</p>'
            )
        elif presented:
            text = t["no_event"].format(gate=gate, seconds=f"{self.wait_s:g}")
            parts.append(f'<p id="result" class="pending">{esc(text)}</p>')
        options = "".join(
            f'<option value="{esc(g)}"{" selected" if g == gate else ""}>{esc(g)}</option>'
            for g in self.scanners
        )
        parts.append(
            f'<form method="post" action="/present?lang={lang}">'
            f'<p><label>{esc(t["gate"])} <select name="gate" id="gate">{options}</select></label></p>'
            f"<h2>{esc(t['office'])}</h2>"
        )
        offered = self.passes()
        if offered:
            parts.append(
                f"<table id='passes'><tr><th>{esc(t['serial'])}</th><th>{esc(t['holder'])}</th>"
                f"<th>{esc(t['unit'])}</th><th>{esc(t['state'])}</th><th></th></tr>"
            )
            for p in offered:
                state = t["revoked"] if p.revoked else t["valid"]
                parts.append(
                    f"<tr><td>{p.serial}</td><td>{esc(p.holder)}</td><td>{esc(p.unit)}</td><td>{esc(state)}</td>"
                    f'<td><button name="serial" value="{p.serial}" id="present-{p.serial}">'
                    f"{esc(t['present'])}</button></td></tr>"
                )
            parts.append("</table>")
        else:
            parts.append(f"<p>{esc(t['none'])}</p>")
        parts.append(
            f"<h2>{esc(t['or_type'])}</h2>"
            f'<p><textarea name="code" id="code" rows="3" cols="80" maxlength="{MAX_CODE_CHARS}"></textarea></p>'
            f'<p><button id="present-code">{esc(t["present_typed"])}</button></p></form></body></html>'
        )
        return "".join(parts)


def _serial_of(code: str) -> int | None:
    """The serial a pass code names (signature unchecked), to find the gate's event for it."""
    from protocol.passes import PassError
    from protocol.passes.codec import decode_text

    try:
        return decode_text(code).signed.pass_.serial
    except PassError:
        return None

"""The guard screen's HTTP side: one page, one event stream, the guard actions, photos and plate crops.

Everything is served from the agent (templates, script, style, locales; no CDN, no web
fonts), so the kiosk browser at ``http://127.0.0.1:8088/`` works with the network down.
Guard actions take JSON only: a form on some other page cannot post JSON here without a
CORS preflight this server never answers, which keeps a stray page in the kiosk from
acting for the guard even before the PIN is checked.  Every request must also name this
server in its ``Host`` header — an IP address, ``localhost``, the gate's host name or the
configured listen host: a page that rebinds its own DNS name to 127.0.0.1 would otherwise
be same-origin with the screen and could read ``/events`` (names, units, photos); with
its own name as the Host it gets 400.  IP literals are always accepted, so a screen
listening on 0.0.0.0 is still reachable by the gate's address from the guard booth.

Every response, errors included, carries :data:`SECURITY_HEADERS`: a Content-Security-Policy
that allows the page's own script, style, images and event stream and nothing else (no
inline script or style: the locales travel in a JSON data block, which is not executed),
no framing (clickjacking the PIN form), no MIME sniffing, no referrer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.guard.server import parse_listen
from edge.guard.texts import LANGUAGES, MANUAL_REASONS
from edge.guard.vehicle_panel import OPEN_REASONS, REFUSE_REASONS
from edge.guard.views import DIGEST_RE

if TYPE_CHECKING:
    from edge.guard.screen import GuardScreen

log = logging.getLogger("gatepost.edge.guard")

HERE = Path(__file__).resolve().parent
MAX_BODY = 8192
KEEPALIVE_S = 15.0
"""A comment line this often keeps idle proxies and the browser from closing the stream."""


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """Whether a ``Host`` header names this server: an IP address (no DNS to rebind) or one of ``names``."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in names
    return True


class HostCheck:
    """Refuse (400) a request whose ``Host`` is a name this server does not go by."""

    def __init__(self, app: ASGIApp, names: Iterable[str]) -> None:
        self.app = app
        self.names = frozenset(n.lower() for n in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host", "")
            if not host_allowed(host, self.names):
                log.warning("refused a request for host %r (DNS rebinding?)", host[:100])
                await PlainTextResponse("unknown host", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""On every response.  ``frame-ancestors`` and ``X-Frame-Options`` both: older kiosk
browsers know only the second.  ``Cross-Origin-Resource-Policy`` keeps other sites'
pages from embedding the holders' photos."""


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` to every HTTP response, whatever produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self._headers if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _error(code: str, status: int, detail: str = "") -> JSONResponse:
    body = {"error": code, "field": None, "problem": None, "detail": detail, "seconds": None}
    return JSONResponse(body, status_code=status)


async def _json_body(request: Request) -> dict[str, Any] | JSONResponse:
    """The request's JSON object, or the response that says why there is none."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error("bad_request", 415, "send application/json")
    try:
        length = int(request.headers.get("content-length", "0"))
    except ValueError:
        return _error("bad_request", 400, "bad content-length")
    if length > MAX_BODY:
        return _error("bad_request", 413, f"body over {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error("bad_request", 413, f"body over {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _error("bad_request", 400, "not JSON")
    if not isinstance(body, dict):
        return _error("bad_request", 400, "not a JSON object")
    return body


def create_app(screen: GuardScreen) -> ASGIApp:
    from edge.guard.screen import GuardActionError

    templates = Jinja2Templates(directory=str(HERE / "templates"))

    async def index(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "index.html",
            {
                "site": screen.site,
                "gate": screen.gate,
                "languages": LANGUAGES,
                "texts": screen.texts,
                "manual_reasons": MANUAL_REASONS,
                "open_reasons": OPEN_REASONS,
                "refuse_reasons": REFUSE_REASONS,
                "idle_s": screen.config.idle_s,
                "duty": screen.duty_panel(),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def events(request: Request) -> Response:
        sub = screen.live.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                yield _sse("state", screen.state())
                while True:
                    try:
                        message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if message is None:
                        return
                    yield _sse("show", message)
            finally:
                screen.live.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def photo(request: Request) -> Response:
        name = request.path_params["name"]
        digest = name.removesuffix(".jpg")
        if not name.endswith(".jpg") or not DIGEST_RE.match(digest) or screen.photo_dir is None:
            return _error("not_found", 404)
        path = screen.photo_dir / f"{digest}.jpg"
        if not path.is_file():
            return _error("not_found", 404)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def crop(request: Request) -> Response:
        name = request.path_params["name"]
        data = screen.vehicles.crop(name.removesuffix(".jpg")) if name.endswith(".jpg") else None
        if data is None:
            return _error("not_found", 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def action(
        run: Callable[[dict[str, Any], str], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await _json_body(request)
            if isinstance(body, JSONResponse):
                return body
            # The peer's address, never a header: wrong PINs are counted per source (edge/guard/pin.py).
            address = request.client.host if request.client is not None else ""
            try:
                result = await run_in_threadpool(run, body, address)
            except GuardActionError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            except Exception:
                log.exception("guard action %s failed", request.url.path)
                return _error("unavailable", 503)
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    async def duty(request: Request) -> Response:
        panel = await run_in_threadpool(screen.duty_panel)
        return JSONResponse(panel, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "listeners": screen.live.listeners})

    listen_host, _port = parse_listen(screen.config.listen)
    hostname = socket.gethostname()
    names = (listen_host, "localhost", hostname, f"{hostname}.local")
    app = Starlette(
        middleware=[Middleware(HostCheck, names=names)],
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/photo/{name}", photo),
            Route("/api/manual", action(screen.let_through), methods=["POST"]),
            Route("/api/visitors", action(screen.register_visitor), methods=["POST"]),
            Route("/crop/{name}", crop),
            Route("/api/vehicles/correct", action(screen.vehicles.correct), methods=["POST"]),
            Route("/api/vehicles/register", action(screen.vehicles.register), methods=["POST"]),
            Route("/api/vehicles/open", action(screen.vehicles.open), methods=["POST"]),
            Route("/api/vehicles/refuse", action(screen.vehicles.refuse), methods=["POST"]),
            Route("/api/duty", duty),
            Route("/api/duty/pin", action(screen.duty_pin), methods=["POST"]),
            Route("/healthz", health),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
    )
    return SecurityHeaders(app)  # outside Starlette's own error handler: its 500s get them too

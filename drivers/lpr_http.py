"""Plates pushed over HTTP by LPR cameras that recognise them themselves (the usual ANPR set-up).

An ANPR camera at a lane reads the plate and POSTs the result to a configured server; the
gate agent is that server.  It is a small ``http.server`` on its own thread (one short
request per car: no framework, nothing more to keep alive on a Pi), and each camera
posts to ``/lpr/<camera name>`` with HTTP Basic credentials of its own, compared in
constant time.  Two payloads are understood:

* ``hikvision`` -- Hikvision ISAPI ``EventNotificationAlert`` with ``eventType`` ANPR, as
  its cameras send it to an "HTTP listening" / alarm host: the XML alone, or
  ``multipart/form-data`` with the XML part and JPEG parts (the plate picture is
  ``licensePlatePicture.jpg``).  The plate is ``ANPR/licensePlate``, its confidence
  ``ANPR/confidenceLevel`` (0..100), the direction ``ANPR/direction`` (Hikvision,
  "Intelligent Security API (ANPR) Developer Guide", chapter "Alarm or Event Receiving";
  the XML message is documented as ``XML_EventNotificationAlert_ANPR`` in the Device
  Network SDK (Traffic) developer guide).  Other event types (heartbeats such as
  ``videoloss`` with ``eventState`` inactive) are answered 200 and ignored;
* ``generic`` -- JSON ``{"plate": "京A12345", "confidence": 0.93, "image": "<base64 JPEG>",
  "direction": "in"}``; only ``plate`` is required; a confidence above 1 is read as percent.

Anything else is a typed :class:`LprRejected` with an HTTP status that says why --
wrong method or path (405/404), no or wrong credentials (401), unknown camera (404), too
large (413, refused before the body is read), unsupported content type (415), malformed
(400), not a plate or below the camera's confidence floor (422) -- and never a traceback.
This module knows no MQTT and no policy: it calls ``on_push`` and ``on_reject``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.etree import ElementTree

from protocol.errors import Rejection
from protocol.plates import Plate, PlateError, parse_plate

__all__ = [
    "LprCamera",
    "LprPush",
    "LprRejectReason",
    "LprRejected",
    "LprServer",
    "RawPush",
    "parse_generic",
    "parse_hikvision",
]

log = logging.getLogger("gatepost.drivers.lpr_http")

MAX_BODY = 2 * 1024 * 1024
"""A push with its pictures; more is refused before it is read."""
MAX_IMAGE = 512 * 1024
READ_TIMEOUT_S = 5.0


class LprRejectReason(StrEnum):
    """Why a push was refused.  Stable strings: they appear in ``lpr.rejected`` events."""

    BAD_PATH = "bad_path"
    BAD_METHOD = "bad_method"
    BAD_AUTH = "bad_auth"
    UNKNOWN_CAMERA = "unknown_camera"
    TOO_LARGE = "too_large"
    NO_LENGTH = "no_length"
    UNSUPPORTED_TYPE = "unsupported_type"
    MALFORMED = "malformed"
    NOT_A_PLATE = "not_a_plate"
    LOW_CONFIDENCE = "low_confidence"


_STATUS = {
    LprRejectReason.BAD_PATH: HTTPStatus.NOT_FOUND,
    LprRejectReason.BAD_METHOD: HTTPStatus.METHOD_NOT_ALLOWED,
    LprRejectReason.BAD_AUTH: HTTPStatus.UNAUTHORIZED,
    LprRejectReason.UNKNOWN_CAMERA: HTTPStatus.NOT_FOUND,
    LprRejectReason.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    LprRejectReason.NO_LENGTH: HTTPStatus.LENGTH_REQUIRED,
    LprRejectReason.UNSUPPORTED_TYPE: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    LprRejectReason.MALFORMED: HTTPStatus.BAD_REQUEST,
    LprRejectReason.NOT_A_PLATE: HTTPStatus.UNPROCESSABLE_ENTITY,
    LprRejectReason.LOW_CONFIDENCE: HTTPStatus.UNPROCESSABLE_ENTITY,
}


class LprRejected(Rejection[LprRejectReason]):
    """A refused push: which camera it named (if any) and where it came from."""

    def __init__(
        self, reason: LprRejectReason, detail: str, *, camera: str | None = None, remote: str = ""
    ) -> None:
        super().__init__(reason, detail)
        self.camera = camera
        self.remote = remote

    @property
    def status(self) -> int:
        return int(_STATUS[self.reason])


@dataclass(frozen=True, slots=True)
class LprCamera:
    """One camera allowed to push: its name (the path), its lane, format and credentials."""

    name: str
    lane: str
    format: str  # "hikvision" or "generic"
    username: str
    password: str
    min_confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class RawPush:
    """What a payload said, before the plate is checked."""

    text: str
    confidence: float | None
    image: bytes | None
    direction: str | None


@dataclass(frozen=True, slots=True)
class LprPush:
    """A plate a camera pushed, checked: the lane it belongs to and when it arrived."""

    camera: str
    lane: str
    plate: Plate
    confidence: float | None
    image: bytes | None
    direction: str | None
    at_ns: int


def _malformed(detail: str) -> LprRejected:
    return LprRejected(LprRejectReason.MALFORMED, detail)


def _confidence(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _malformed(f"confidence {str(value)[:20]!r} is not a number") from None
    if not 0 <= number <= 100:
        raise _malformed(f"confidence {number} out of range")
    return number / 100 if number > 1 else number


def parse_generic(body: bytes, content_type: str) -> RawPush:
    """The generic JSON push; :class:`LprRejected` if it is not one."""
    if content_type.split(";")[0].strip().lower() not in ("application/json", "text/json"):
        raise LprRejected(
            LprRejectReason.UNSUPPORTED_TYPE, f"expected application/json, got {content_type[:60]!r}"
        )
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(document, dict):
        raise _malformed("the JSON is not an object")
    text = document.get("plate")
    if not isinstance(text, str):
        raise _malformed('no "plate" string')
    image = document.get("image")
    picture: bytes | None = None
    if image is not None:
        if not isinstance(image, str) or len(image) > MAX_IMAGE * 4 // 3 + 4:
            raise _malformed('"image" is not a base64 JPEG of at most 512 KiB')
        try:
            picture = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed('"image" is not valid base64') from None
    direction = document.get("direction")
    if direction is not None and direction not in ("in", "out"):
        raise _malformed('"direction" must be "in" or "out"')
    return RawPush(text, _confidence(document.get("confidence")), picture, direction)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ElementTree.Element, *path: str) -> str | None:
    node: ElementTree.Element | None = element
    for name in path:
        node = (
            next((child for child in list(node) if _local(child.tag) == name), None)
            if node is not None
            else None
        )
    return None if node is None or node.text is None else node.text.strip()


def parse_hikvision(body: bytes, content_type: str) -> RawPush | None:
    """A Hikvision ISAPI ANPR alert; ``None`` for another event type (a heartbeat), rejected if malformed."""
    kind = content_type.split(";")[0].strip().lower()
    image: bytes | None = None
    if kind == "multipart/form-data":
        xml, image = _multipart(body, content_type)
    elif kind in ("application/xml", "text/xml"):
        xml = body
    else:
        raise LprRejected(
            LprRejectReason.UNSUPPORTED_TYPE, f"expected XML or multipart/form-data, got {kind[:60]!r}"
        )
    if b"<!DOCTYPE" in xml.upper() or b"<!ENTITY" in xml.upper():
        raise _malformed("XML with a DOCTYPE or entity declaration")  # no entity expansion, ever
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise _malformed(f"not XML: {exc}") from None
    if _local(root.tag) != "EventNotificationAlert":
        raise _malformed(f"root element {_local(root.tag)!r} is not EventNotificationAlert")
    event_type = (_child_text(root, "eventType") or "").upper()
    if event_type != "ANPR":
        return None
    text = _child_text(root, "ANPR", "licensePlate")
    if text is None:
        raise _malformed("an ANPR alert without ANPR/licensePlate")
    direction = {"forward": "in", "reverse": "out"}.get(
        (_child_text(root, "ANPR", "direction") or "").lower()
    )
    return RawPush(text, _confidence(_child_text(root, "ANPR", "confidenceLevel")), image, direction)


def _multipart(body: bytes, content_type: str) -> tuple[bytes, bytes | None]:
    """The XML part and the plate picture of a multipart push (email's MIME parser: the standard library)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise _malformed("multipart/form-data without parts")
    xml: bytes | None = None
    picture: bytes | None = None
    for part in message.iter_parts():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True) or b""
        name = (part.get_filename() or part.get_param("name", header="content-disposition") or "").lower()
        ctype = part.get_content_type()
        if xml is None and (ctype in ("application/xml", "text/xml") or name.endswith(".xml")):
            xml = payload
        elif (
            ctype == "image/jpeg"
            and ("licenseplate" in name or picture is None)
            and len(payload) <= MAX_IMAGE
        ):
            picture = payload
    if xml is None:
        raise _malformed("no XML part in the multipart push")
    return xml, picture


PARSERS: Mapping[str, Callable[[bytes, str], RawPush | None]] = {
    "hikvision": parse_hikvision,
    "generic": parse_generic,
}


def judge(camera: LprCamera, raw: RawPush, at_ns: int) -> LprPush:
    """The plate a push names, checked as a plate and against the camera's confidence floor."""
    try:
        plate = parse_plate(raw.text)
    except PlateError as exc:
        raise LprRejected(
            LprRejectReason.NOT_A_PLATE, f"{raw.text[:20]!r}: {exc.reason}", camera=camera.name
        ) from None
    if raw.confidence is not None and raw.confidence < camera.min_confidence:
        raise LprRejected(
            LprRejectReason.LOW_CONFIDENCE,
            f"{plate.text} at {raw.confidence:.2f} < {camera.min_confidence}",
            camera=camera.name,
        )
    return LprPush(camera.name, camera.lane, plate, raw.confidence, raw.image, raw.direction, at_ns)


PushCallback = Callable[[LprPush], None]
RejectCallback = Callable[[LprRejected], None]


class LprServer:
    """The push endpoint on ``host:port``, serving on its own thread until :meth:`close`."""

    def __init__(
        self,
        listen: str,
        cameras: Mapping[str, LprCamera],
        *,
        on_push: PushCallback,
        on_reject: RejectCallback,
        max_body: int = MAX_BODY,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.cameras = dict(cameras)
        self.on_push = on_push
        self.on_reject = on_reject
        self.max_body = max_body
        self.accepted = 0
        self.rejected = 0
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def alive(self) -> bool:
        return self._thread is None or self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lpr-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2)
        self._server.server_close()

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], read: Callable[[int], bytes], remote: str
    ) -> tuple[int, dict[str, Any]]:
        """One request, as status and JSON answer; every refusal is reported through ``on_reject``."""
        camera_name: str | None = None
        try:
            parts = path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 2 or parts[0] != "lpr" or not parts[1]:
                raise LprRejected(LprRejectReason.BAD_PATH, f"{path[:80]!r} is not /lpr/<camera>")
            camera_name = parts[1][:64]
            if method != "POST":
                raise LprRejected(LprRejectReason.BAD_METHOD, f"{method} instead of POST")
            camera = self.cameras.get(camera_name)
            if not _authorised(camera, headers.get("Authorization")):
                # An unknown camera and a wrong password answer alike (401) to the caller;
                # the event says which, for the installer.
                reason = LprRejectReason.BAD_AUTH if camera is not None else LprRejectReason.UNKNOWN_CAMERA
                raise LprRejected(reason, "no or wrong credentials" if camera else "no such camera")
            assert camera is not None
            length_text = headers.get("Content-Length")
            if length_text is None or not length_text.strip().isdigit():
                raise LprRejected(LprRejectReason.NO_LENGTH, "a push needs a Content-Length")
            length = int(length_text)
            if length > self.max_body:
                raise LprRejected(LprRejectReason.TOO_LARGE, f"{length} bytes > {self.max_body}")
            body = read(length)
            if len(body) != length:
                raise _malformed(f"body ended after {len(body)} of {length} bytes")
            at_ns = time.monotonic_ns()
            raw = PARSERS[camera.format](body, headers.get("Content-Type", ""))
            if raw is None:
                return HTTPStatus.OK, {"ok": True, "ignored": "not an ANPR event"}
            push = judge(camera, raw, at_ns)
        except LprRejected as rejected:
            rejected.camera = rejected.camera or camera_name
            rejected.remote = remote
            self.rejected += 1
            log.warning("LPR push from %s refused: %s (%s)", remote, rejected.reason, rejected.detail)
            _call(self.on_reject, rejected)
            status = rejected.status
            if rejected.reason is LprRejectReason.UNKNOWN_CAMERA:
                status = HTTPStatus.UNAUTHORIZED
            return status, {"ok": False, "reason": str(rejected.reason)}
        except Exception as exc:  # a parser bug must cost one push, never the endpoint
            log.exception("LPR push from %s: unexpected error", remote)
            rejected = LprRejected(
                LprRejectReason.MALFORMED,
                f"unreadable: {type(exc).__name__}",
                camera=camera_name,
                remote=remote,
            )
            self.rejected += 1
            _call(self.on_reject, rejected)
            return HTTPStatus.BAD_REQUEST, {"ok": False, "reason": str(rejected.reason)}
        self.accepted += 1
        _call(self.on_push, push)
        return HTTPStatus.OK, {"ok": True, "plate": push.plate.text}


def _call(callback: Callable[[Any], None], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("LPR callback failed")


def _authorised(camera: LprCamera | None, header: str | None) -> bool:
    """HTTP Basic against the camera's credentials, in constant time (a missing camera compares against a dummy)."""
    expected = f"{camera.username}:{camera.password}" if camera is not None else "\x00:\x00"
    given = ""
    if header is not None and header[:6].lower() == "basic ":
        try:
            given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            given = ""
    same = hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    return same and camera is not None


def _handler_for(server: LprServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "gatepost-lpr"
        sys_version = ""
        timeout = READ_TIMEOUT_S

        def _serve(self) -> None:
            status, answer = server.handle(
                self.command, self.path, self.headers, self.rfile.read, self.client_address[0]
            )
            body = json.dumps(answer).encode()
            self.send_response(status)
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="gatepost-lpr"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status >= 400:
                self.send_header(
                    "Connection", "close"
                )  # an unread body must not be taken for the next request
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        do_POST = _serve
        do_GET = _serve
        do_PUT = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.client_address[0], format % args)

    return Handler

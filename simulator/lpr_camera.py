"""A simulated LPR camera: it "recognises" plates and pushes them to the gate over HTTP, as an ANPR camera does.

It builds the payloads a real camera sends -- a Hikvision ISAPI ``EventNotificationAlert``
(ANPR) as ``multipart/form-data`` with the XML and the plate picture, or the generic JSON
-- with the plate picture rendered by :mod:`simulator.plates`, and posts them with HTTP
Basic credentials through the standard library's ``http.client``.  Tests and the demo use
it to drive the agent's endpoint exactly as a camera on the lane would; the payload
builders are public so that tests can break them on purpose.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2

from simulator.plates import render_plate

__all__ = ["LprCameraClient", "generic_payload", "hikvision_payload", "hikvision_xml"]


def hikvision_xml(
    plate: str,
    *,
    confidence: int = 96,
    direction: str = "forward",
    event_type: str = "ANPR",
    ip: str = "192.0.2.10",
    channel: int = 1,
) -> bytes:
    """An ISAPI ANPR alert, in the element names of Hikvision's XML_EventNotificationAlert_ANPR."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    anpr = (
        f"<ANPR><country>CN</country><licensePlate>{plate}</licensePlate><line>1</line>"
        f"<direction>{direction}</direction><confidenceLevel>{confidence}</confidenceLevel>"
        f"<plateType>92TypeCivil</plateType><plateColor>blue</plateColor></ANPR>"
        if event_type == "ANPR"
        else ""
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">'
        f"<ipAddress>{ip}</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>"
        f"<channelID>{channel}</channelID><dateTime>{now}</dateTime><activePostCount>1</activePostCount>"
        f"<eventType>{event_type}</eventType><eventState>{'active' if anpr else 'inactive'}</eventState>"
        f"<eventDescription>{event_type}</eventDescription>{anpr}</EventNotificationAlert>"
    ).encode()


def _plate_jpeg(plate: str) -> bytes:
    ok, encoded = cv2.imencode(".jpg", render_plate(plate), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return encoded.tobytes()


def hikvision_payload(plate: str, *, picture: bool = True, **xml: object) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart push: the XML part and the plate picture."""
    boundary = uuid.uuid4().hex
    parts = [
        (
            'Content-Disposition: form-data; name="anpr.xml"; filename="anpr.xml"\r\n'
            "Content-Type: application/xml\r\n",
            hikvision_xml(plate, **xml),  # type: ignore[arg-type]
        )
    ]
    if picture:
        parts.append(
            (
                'Content-Disposition: form-data; name="licensePlatePicture.jpg"; filename="licensePlatePicture.jpg"\r\n'
                "Content-Type: image/jpeg\r\n",
                _plate_jpeg(plate),
            )
        )
    body = b"".join(
        f"--{boundary}\r\n".encode() + headers.encode() + b"\r\n" + payload + b"\r\n"
        for headers, payload in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def generic_payload(
    plate: str, *, confidence: float = 0.95, picture: bool = True, direction: str | None = None
) -> tuple[bytes, str]:
    document: dict[str, object] = {"plate": plate, "confidence": confidence}
    if picture:
        document["image"] = base64.b64encode(_plate_jpeg(plate)).decode()
    if direction is not None:
        document["direction"] = direction
    return json.dumps(document, ensure_ascii=False).encode(), "application/json"


@dataclass
class LprCameraClient:
    """Posts pushes to ``http://host:port/lpr/<camera>`` as camera ``camera`` with its credentials."""

    host: str
    port: int
    camera: str
    username: str
    password: str
    format: str = "hikvision"
    timeout_s: float = 5.0

    def push(self, plate: str, **options: object) -> tuple[int, dict[str, object]]:
        """Push one recognised plate; returns the HTTP status and the JSON answer."""
        if self.format == "hikvision":
            body, content_type = hikvision_payload(plate, **options)  # type: ignore[arg-type]
        else:
            body, content_type = generic_payload(plate, **options)  # type: ignore[arg-type]
        return self.post(body, content_type)

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        path: str | None = None,
        method: str = "POST",
        auth: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, object]]:
        """A raw request (tests send malformed ones through here)."""
        credentials = auth if auth is not None else f"{self.username}:{self.password}"
        sent = {
            "Content-Type": content_type,
            "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
            **(headers or {}),
        }
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            connection.request(method, path or f"/lpr/{self.camera}", body=body, headers=sent)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        try:
            document = json.loads(answer)
        except ValueError:
            document = {"raw": answer.decode("latin-1")[:200]}
        return response.status, document


class ExitTraffic:
    """Cars leaving by the exit lane: the LPR camera pushes one plate every ``every_s`` seconds, in turn."""

    def __init__(self, client: LprCameraClient, plates: list[str], every_s: float = 11.0) -> None:
        import threading

        self.client = client
        self.plates = plates
        self.every_s = every_s
        self.answers: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-exit-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        index = 0
        while not self._stop.wait(self.every_s) and self.plates:
            plate = self.plates[index % len(self.plates)]
            index += 1
            try:
                status, _ = self.client.push(plate)
            except OSError:
                continue  # the gate is (re)starting: the next car tries again
            self.answers.append((plate, status))

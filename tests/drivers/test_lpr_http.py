"""LPR cameras' HTTP pushes: the Hikvision ANPR alert and the generic JSON accepted, everything else a typed refusal.

Requests go over real loopback HTTP to the real server, from the simulated camera's client.
"""

from __future__ import annotations

import http.client
import threading

import pytest

from drivers.lpr_http import LprCamera, LprRejectReason, LprServer, parse_hikvision
from simulator.lpr_camera import LprCameraClient, generic_payload, hikvision_payload, hikvision_xml

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server():
    pushes, rejections = [], []
    cameras = {
        "hik-in": LprCamera("hik-in", "car-in", "hikvision", "cam", "s3cret-in", 0.0),
        "json-out": LprCamera("json-out", "car-out", "generic", "cam2", "s3cret-out", 0.7),
    }
    srv = LprServer(
        "127.0.0.1:0", cameras, on_push=pushes.append, on_reject=rejections.append, max_body=200_000
    )
    srv.start()
    srv.pushes, srv.rejections = pushes, rejections
    yield srv
    srv.close()


def hik(server, **kw) -> LprCameraClient:
    return LprCameraClient("127.0.0.1", server.port, "hik-in", "cam", "s3cret-in", **kw)


def generic(server) -> LprCameraClient:
    return LprCameraClient("127.0.0.1", server.port, "json-out", "cam2", "s3cret-out", format="generic")


def test_a_hikvision_multipart_alert_with_its_plate_picture_is_a_push(server):
    status, answer = hik(server).push("京A·12345", confidence=97, direction="forward")
    assert (status, answer) == (200, {"ok": True, "plate": "京A12345"})
    (push,) = server.pushes
    assert (push.camera, push.lane, push.plate.text, push.confidence, push.direction) == (
        "hik-in",
        "car-in",
        "京A12345",
        0.97,
        "in",
    )
    assert push.image is not None and push.image[:2] == b"\xff\xd8"
    assert server.rejections == []


def test_the_bare_xml_alert_and_the_generic_json_are_pushes_and_a_heartbeat_is_ignored(server):
    assert hik(server).post(hikvision_xml("沪B88888"), "application/xml")[0] == 200
    assert generic(server).push("粤BD12345", confidence=93, direction="out") == (
        200,
        {"ok": True, "plate": "粤BD12345"},
    )
    status, answer = hik(server).post(hikvision_xml("", event_type="videoloss"), "application/xml")
    assert status == 200 and answer["ignored"]
    assert [(p.plate.text, p.confidence) for p in server.pushes] == [("沪B88888", 0.96), ("粤BD12345", 0.93)]
    assert server.rejections == []


MALFORMED_CASES = [
    # (client, request keyword arguments, HTTP status, reason)
    ("hik", dict(auth="cam:wrong"), 401, LprRejectReason.BAD_AUTH),
    ("hik", dict(auth=""), 401, LprRejectReason.BAD_AUTH),
    ("hik", dict(path="/lpr/nobody"), 401, LprRejectReason.UNKNOWN_CAMERA),
    ("hik", dict(path="/somewhere/else"), 404, LprRejectReason.BAD_PATH),
    ("hik", dict(method="GET"), 405, LprRejectReason.BAD_METHOD),
    ("hik", dict(body=b"x" * 300_000), 413, LprRejectReason.TOO_LARGE),
    (
        "hik",
        dict(body=b"<EventNotificationAlert><eventType>ANPR", content_type="application/xml"),
        400,
        LprRejectReason.MALFORMED,
    ),
    (
        "hik",
        dict(
            body=b'<!DOCTYPE x [<!ENTITY a "aaaa">]><EventNotificationAlert/>', content_type="application/xml"
        ),
        400,
        LprRejectReason.MALFORMED,
    ),
    ("hik", dict(body=b"<Other/>", content_type="application/xml"), 400, LprRejectReason.MALFORMED),
    (
        "hik",
        dict(
            body=hikvision_xml("x").replace(b"<licensePlate>x</licensePlate>", b""),
            content_type="application/xml",
        ),
        400,
        LprRejectReason.MALFORMED,
    ),
    (
        "hik",
        dict(body=hikvision_xml("京A12345", confidence=900), content_type="application/xml"),
        400,
        LprRejectReason.MALFORMED,
    ),
    (
        "hik",
        dict(body=b'{"plate": "x"}', content_type="application/json"),
        415,
        LprRejectReason.UNSUPPORTED_TYPE,
    ),
    (
        "hik",
        dict(body=hikvision_xml("无车牌"), content_type="application/xml"),
        422,
        LprRejectReason.NOT_A_PLATE,
    ),
    (
        "hik",
        dict(body=b"--b\r\n\r\nno parts here", content_type="multipart/form-data; boundary=zz"),
        400,
        LprRejectReason.MALFORMED,
    ),
    ("generic", dict(body=b"{not json", content_type="application/json"), 400, LprRejectReason.MALFORMED),
    ("generic", dict(body=b"[1, 2]", content_type="application/json"), 400, LprRejectReason.MALFORMED),
    (
        "generic",
        dict(body=b'{"plate": 12345}', content_type="application/json"),
        400,
        LprRejectReason.MALFORMED,
    ),
    (
        "generic",
        dict(body=b'{"plate": "\\u4eacA12345", "image": "!!"}', content_type="application/json"),
        400,
        LprRejectReason.MALFORMED,
    ),
    (
        "generic",
        dict(body=b'{"plate": "\\u4eacA12345", "direction": "up"}', content_type="application/json"),
        400,
        LprRejectReason.MALFORMED,
    ),
    ("generic", dict(body=b"\xff\xfe\x00", content_type="application/json"), 400, LprRejectReason.MALFORMED),
    (
        "generic",
        dict(body=generic_payload("京A12345", confidence=0.5)[0], content_type="application/json"),
        422,
        LprRejectReason.LOW_CONFIDENCE,
    ),
    (
        "generic",
        dict(body=generic_payload("AB12345", picture=False)[0], content_type="application/json"),
        422,
        LprRejectReason.NOT_A_PLATE,
    ),
]


@pytest.mark.parametrize(("client", "request_args", "status", "reason"), MALFORMED_CASES)
def test_every_bad_push_is_a_typed_refusal_and_no_push(server, client, request_args, status, reason):
    sender = hik(server) if client == "hik" else generic(server)
    args = dict(request_args)
    body = args.pop(
        "body", hikvision_payload("京A12345")[0] if client == "hik" else generic_payload("京A12345")[0]
    )
    content_type = args.pop(
        "content_type", hikvision_payload("京A12345")[1] if client == "hik" else "application/json"
    )
    if client == "hik" and "body" not in request_args:
        body, content_type = hikvision_payload("京A12345")
    got_status, answer = sender.post(body, content_type, **args)
    assert (got_status, answer.get("reason")) == (status, str(reason))
    assert server.pushes == []
    assert [r.reason for r in server.rejections] == [reason]
    assert server.rejections[0].remote == "127.0.0.1"


def test_a_push_without_a_length_is_refused_and_the_server_keeps_serving(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.putrequest("POST", "/lpr/hik-in")
    connection.putheader("Authorization", "Basic Y2FtOnMzY3JldC1pbg==")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 411
    connection.close()
    assert hik(server).push("京A12345")[0] == 200  # still up


def test_pushes_from_many_cameras_at_once_are_each_taken(server):
    def send(index: int) -> None:
        hik(server).push(f"京A1{index:04d}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.plate.text for p in server.pushes) == sorted(f"京A1{i:04d}" for i in range(20))


def test_the_hikvision_parser_reads_namespaced_and_bare_xml():
    raw = parse_hikvision(hikvision_xml("京A12345", confidence=80, direction="reverse"), "text/xml")
    assert raw is not None and (raw.text, raw.confidence, raw.direction) == ("京A12345", 0.8, "out")
    bare = b"<EventNotificationAlert><eventType>ANPR</eventType><ANPR><licensePlate>\xe4\xba\xacB12345</licensePlate></ANPR></EventNotificationAlert>"
    raw = parse_hikvision(bare, "application/xml")
    assert raw is not None and raw.text == "京B12345" and raw.confidence is None

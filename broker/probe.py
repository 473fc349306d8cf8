"""One MQTT login over a plain socket: is the broker up, and does it accept these credentials?

The launcher needs a yes/no answer without threads or callbacks, at start (is the main
loop running?) and after a reload (is the new password live yet?).  A CONNECT/CONNACK
exchange in MQTT 3.1.1 is a few dozen bytes, so it is written out here rather than
borrowing a paho client and its network thread for a single round trip.

A login's client id is its user name, as for every gatepost connection: the broker binds
each user name to that one client id (broker.dynsec), so a probe under any other id would
be refused however right the password.
"""

from __future__ import annotations

import socket
import struct
from enum import IntEnum


class ConnackCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes."""

    ACCEPTED = 0
    BAD_PROTOCOL = 1
    ID_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive: int = 10) -> bytes:
    flags = 0x02  # clean session: the probe leaves nothing behind in the broker
    payload = _field(client_id)
    if username is not None:
        flags |= 0x80
        payload += _field(username)
        if password is not None:
            flags |= 0x40
            payload += _field(password)
    body = _field("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + _remaining_length(len(body)) + body


def try_login(
    host: str,
    port: int,
    username: str | None = None,
    password: str | None = None,
    *,
    client_id: str | None = None,
    timeout: float = 2.0,
) -> ConnackCode:
    """Return the broker's CONNACK code; raise OSError if nothing MQTT answers.

    ``client_id`` defaults to the user name (``gatepost-probe`` when anonymous); tests
    pass another to see the binding refuse it.
    """
    if client_id is None:
        client_id = username if username is not None else "gatepost-probe"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(connect_packet(client_id, username, password))
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                raise ConnectionResetError(f"{host}:{port} closed the connection before CONNACK")
            reply += chunk
        if reply[0] != 0x20 or reply[1] != 2:
            raise ConnectionError(f"{host}:{port} did not answer with an MQTT CONNACK")
        try:
            code = ConnackCode(reply[3])
        except ValueError:
            raise ConnectionError(f"{host}:{port} answered with unknown CONNACK code {reply[3]}") from None
        if code is ConnackCode.ACCEPTED:
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the broker logs a clean goodbye
        return code

"""A man in the middle for MQTT on loopback: forwards bytes, and can swallow a chosen PUBLISH.

Between a client and the broker, it splits both streams into MQTT packets (fixed header,
remaining length) and asks a filter about each PUBLISH.  A swallowed QoS 1 PUBLISH is
answered with a PUBACK to its sender, as a broker (or a subscriber) that took the message
and then lost it would: the sender believes it delivered, and nothing past the proxy ever
sees it.  Tests and benchmarks use it to lose one message without a disconnect, which is
what the gate's per-event resend (edge/resend.py) exists for.  It also keeps every byte
that passed, so a test can look for secrets sent in clear.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

PUBLISH = 3


@dataclass(frozen=True, slots=True)
class Packet:
    """One MQTT control packet from the client, with what a filter needs of a PUBLISH."""

    raw: bytes

    @property
    def type(self) -> int:
        return self.raw[0] >> 4

    @property
    def qos(self) -> int:
        return (self.raw[0] >> 1) & 3

    def _body(self) -> bytes:
        i = 1
        while self.raw[i] & 0x80:
            i += 1
        return self.raw[i + 1 :]

    @property
    def topic(self) -> str:
        body = self._body()
        return body[2 : 2 + int.from_bytes(body[:2], "big")].decode("utf-8", "replace")

    @property
    def payload(self) -> bytes:
        """The application message of an MQTT 5 PUBLISH (after topic, packet id and properties)."""
        body = self._body()
        i = 2 + int.from_bytes(body[:2], "big") + (2 if self.qos else 0)
        length, multiplier = 0, 1
        while True:
            byte = body[i]
            i += 1
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        return body[i + length :]

    @property
    def packet_id(self) -> int:
        body = self._body()
        start = 2 + int.from_bytes(body[:2], "big")
        return int.from_bytes(body[start : start + 2], "big")


def split_packets(buffer: bytearray) -> list[bytes]:
    """Take every complete packet off the front of ``buffer``."""
    packets = []
    while len(buffer) >= 2:
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buffer):
                return packets
            byte = buffer[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(buffer) < i + length:
            return packets
        packets.append(bytes(buffer[: i + length]))
        del buffer[: i + length]
    return packets


class MqttProxy:
    """Listens on a free loopback port and relays to ``upstream``.

    ``swallow(packet, from_client)`` decides, for each PUBLISH in either direction, whether
    it is dropped (and acknowledged to its sender) instead of forwarded.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        swallow: Callable[[Packet, bool], bool] | None = None,
        *,
        raw: bool = False,
    ) -> None:
        self.upstream = upstream
        self.raw = raw
        """Relay bytes as they come, without reading MQTT packets (TLS: an eavesdropper's view)."""
        self.swallow = swallow or (lambda _packet, _from_client: False)
        self.swallowed: list[Packet] = []
        self.client_bytes = bytearray()
        self.server_bytes = bytearray()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets += [client, server]
            locks = {client: threading.Lock(), server: threading.Lock()}
            threading.Thread(target=self._pump, args=(client, server, locks, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, locks, False), daemon=True).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        locks: dict[socket.socket, threading.Lock],
        from_client: bool,
    ) -> None:
        buffer = bytearray()
        seen = self.client_bytes if from_client else self.server_bytes
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    seen += data
                if self.raw:
                    with locks[sink]:
                        sink.sendall(data)
                    continue
                buffer += data
                for raw in split_packets(buffer):
                    packet = Packet(raw)
                    if packet.type == PUBLISH and self.swallow(packet, from_client):
                        self.swallowed.append(packet)
                        if packet.qos == 1:
                            pid = packet.packet_id
                            with locks[source]:
                                source.sendall(bytes([0x40, 0x02, pid >> 8, pid & 0xFF]))
                        continue
                    with locks[sink]:
                        sink.sendall(raw)
        self._close_pair(source, sink)

    def _close_pair(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        self._close_pair(*socks)

    def __enter__(self) -> MqttProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

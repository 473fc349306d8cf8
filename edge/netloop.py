"""One network thread for the MQTT links of a process: a gate's own, or hundreds of them.

Every :class:`~edge.link.Link` runs on a :class:`SharedNetwork`.  A gate agent on its own
board has a network of one link (``Link`` makes it); the fleet harness
(simulator/fleet.py) hands hundreds of links the same few networks.  One code path either
way, so what the harness measures is what a gate runs.  A thread per client and a sender
thread per link (paho's ``loop_start`` beside a sender) cost stacks, wake-ups (each thread
polled at least once a second) and the GIL, and for a gate alone a thread it did not need.

:class:`SharedNetwork` drives paho clients through paho's external-loop API
(``loop_read``/``loop_write``/``loop_misc``, paho-mqtt's ``examples/loop_select.py``) from
one ``selectors`` loop, and runs each link's sender step on that same thread when the
link is woken, so an event costs no thread hand-off beyond the outbox commit.  What the
threaded loop did besides — reconnecting with back-off — is done here too: a lost
client is reconnected by connector threads (``reconnect()`` blocks for the TCP connect and
the TLS handshake, which must not stall the other clients), at most ``connectors`` at a
time, started when a connect is wanted and gone when none is, with *jittered*
exponential back-off, so a thousand gates whose broker restarted do not all knock at the
same instant.  A connected gate therefore has one network thread and no other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

log = logging.getLogger("gatepost.edge.netloop")

MISC_EVERY_S = 0.25
"""How often keep-alives, write-interest and senders' own deadlines are looked at."""
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
"""The same bounds as ``protocol.mqtt.make_client``'s ``reconnect_delay_set``."""


@dataclass(eq=False)
class _Member:
    client: paho.Client
    tick: Callable[[], None] | None
    """The link's sender step: called when woken and every :data:`MISC_EVERY_S`."""
    sock: Any = None
    writing: bool = False
    connecting: bool = False
    removed: bool = False
    delay: float = RECONNECT_MIN_S
    retry_at: float = 0.0
    woken: bool = False
    on_open: Any = field(default=None)


class SharedNetwork:
    """A ``selectors`` loop over many paho clients, with a few connector threads."""

    def __init__(
        self, name: str = "mqtt-shared", *, connectors: int = 4, seed: int | None = None, few: bool = False
    ) -> None:
        """``few``: a network for one link or a handful (a gate's own): ``poll`` rather than an
        epoll descriptor, which pays only for many sockets."""
        self.name = name
        self._selector: selectors.BaseSelector = (
            selectors.PollSelector()
            if few and hasattr(selectors, "PollSelector")
            else selectors.DefaultSelector()
        )
        self._members: dict[int, _Member] = {}
        self._lock = threading.Lock()
        self._posted: list[Callable[[], None]] = []
        self._wake = _Waker()
        self._selector.register(self._wake.fd, selectors.EVENT_READ, None)
        self._connect_queue: deque[_Member] = deque()
        self._connect_threads = 0
        self._max_connectors = max(1, connectors)
        self._random = random.Random(seed)
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.reconnects = 0

    # -- membership (any thread) -------------------------------------------------------

    def add(self, client: paho.Client, tick: Callable[[], None] | None = None) -> None:
        """Connect ``client`` (``connect_async`` was called on it) and keep it connected."""
        member = _Member(client, tick, on_open=client.on_socket_open)
        client.on_socket_open = lambda c, u, s, m=member: self._opened(m, c, u, s)
        client.on_socket_close = lambda _c, _u, s, m=member: self._post(lambda: self._closed(m, s))
        client.on_socket_register_write = lambda _c, _u, _s, m=member: self._post(lambda: self._want_write(m))
        client.on_socket_unregister_write = None
        with self._lock:
            self._members[id(client)] = member
        self._connect(member)

    def remove(self, client: paho.Client) -> None:
        """Stop reconnecting ``client`` and forget it; its socket is closed by ``disconnect()`` or here."""
        with self._lock:
            member = self._members.pop(id(client), None)
        if member is None:
            return
        member.removed = True
        done = threading.Event()

        def drop() -> None:
            self._unregister(member)
            done.set()

        self._post(drop)
        if threading.current_thread() is not self._thread:
            done.wait(5.0)

    def wake(self, client: paho.Client) -> None:
        """Run ``client``'s tick soon, on the network thread (the link has work)."""
        member = self._members.get(id(client))
        if member is None or member.woken:
            return
        member.woken = True
        self._post(lambda: self._tick(member))

    def close(self) -> None:
        self._running = False
        self._post(lambda: None)
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        with self._lock:
            self._connect_queue.clear()
        self._wake.close()
        self._selector.close()

    @property
    def clients(self) -> int:
        return len(self._members)

    def on_network_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # -- connecting (connector threads) ------------------------------------------------

    def _connect(self, member: _Member) -> None:
        if member.removed or member.connecting or not self._running:
            return
        member.connecting = True
        with self._lock:
            self._connect_queue.append(member)
            if self._connect_threads >= self._max_connectors:
                return  # a running connector takes it next
            self._connect_threads += 1
        threading.Thread(target=self._connector, name=f"{self.name}-connect", daemon=True).start()

    def _connector(self) -> None:
        """Connect queued clients until none is left, then end: no thread idles between outages."""
        while True:
            with self._lock:
                if not self._connect_queue or not self._running:
                    self._connect_threads -= 1
                    for member in self._connect_queue:
                        member.connecting = False
                    self._connect_queue.clear()
                    return
                member = self._connect_queue.popleft()
            self._reconnect(member)

    def _reconnect(self, member: _Member) -> None:
        """``reconnect()`` blocks on TCP and TLS: here, not on the network thread."""
        client = member.client
        try:
            if member.removed:
                return
            client.reconnect()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: see protocol.mqtt.Client
            on_fail = client.on_connect_fail  # protocol.mqtt's logs sys.exc_info(): call it in here
            if on_fail is not None:
                with contextlib.suppress(Exception):
                    on_fail(client, None)
            self._post(lambda: self._schedule_retry(member))
            return
        finally:
            member.connecting = False
        self.reconnects += 1
        self._post(lambda: self._register(member))

    def _opened(self, member: _Member, client: paho.Client, userdata: Any, sock: Any) -> None:
        if member.on_open is not None:
            member.on_open(client, userdata, sock)

    # -- the network thread ------------------------------------------------------------

    def _post(self, action: Callable[[], None]) -> None:
        with self._lock:
            self._posted.append(action)
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake.set()

    def _run(self) -> None:
        next_misc = time.monotonic()
        while self._running:
            timeout = max(0.0, next_misc - time.monotonic())
            try:
                ready = self._selector.select(timeout)
            except OSError:
                ready = []
            for key, events in ready:
                member = key.data
                if member is None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._wake.clear()
                    continue
                self._service(member, events)
            with self._lock:
                posted, self._posted = self._posted, []
            for action in posted:
                self._guard(action)
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_EVERY_S
                self._misc(now)

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # one client's bug must not end every client's network
            log.exception("shared network: a client's action failed")

    def _service(self, member: _Member, events: int) -> None:
        client = member.client
        if events & selectors.EVENT_READ:
            self._guard(client.loop_read)
        if events & selectors.EVENT_WRITE and client.socket() is not None:
            self._guard(client.loop_write)
        self._update_interest(member)

    def _misc(self, now: float) -> None:
        for member in list(self._members.values()):
            client = member.client
            if member.sock is not None:
                self._guard(client.loop_misc)
                if client.is_connected():
                    member.delay = RECONNECT_MIN_S
                self._update_interest(member)
            elif not member.connecting and member.retry_at and now >= member.retry_at:
                member.retry_at = 0.0
                self._connect(member)
            if member.tick is not None and member.sock is not None:
                self._guard(member.tick)

    def _tick(self, member: _Member) -> None:
        member.woken = False
        if member.tick is not None and not member.removed:
            member.tick()

    def _register(self, member: _Member) -> None:
        sock = member.client.socket()
        if member.removed or sock is None:
            return
        self._unregister(member)
        member.sock = sock
        member.writing = member.client.want_write()
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if member.writing else 0)
        try:
            self._selector.register(sock, events, member)
        except (ValueError, KeyError, OSError):
            member.sock = None
            self._schedule_retry(member)

    def _unregister(self, member: _Member) -> None:
        if member.sock is None:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(member.sock)
        member.sock = None
        member.writing = False

    def _want_write(self, member: _Member) -> None:
        self._update_interest(member)

    def _update_interest(self, member: _Member) -> None:
        """Select for writing exactly while paho has bytes queued (checked, not trusted to callbacks)."""
        if member.sock is None:
            return
        if member.client.socket() is not member.sock:  # closed meanwhile
            self._closed(member, member.sock)
            return
        want = member.client.want_write()
        if want == member.writing:
            return
        member.writing = want
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.modify(member.sock, events, member)

    def _closed(self, member: _Member, sock: Any) -> None:
        """paho closed the socket: the connection was lost, or ``disconnect()`` finished."""
        if member.sock is not None and member.sock is not sock:
            return  # an old connection's close, heard after the next one was registered
        if member.sock is not None:
            self._unregister(member)
        if member.removed or member.connecting:
            return
        if getattr(member.client, "_state", None) == paho._ConnectionState.MQTT_CS_DISCONNECTED:
            return  # a wanted disconnect
        self._schedule_retry(member)

    def _schedule_retry(self, member: _Member) -> None:
        """Jittered exponential back-off: between half and all of the current delay."""
        if member.removed or member.retry_at:
            return
        wait = member.delay * (0.5 + 0.5 * self._random.random())
        member.delay = min(member.delay * 2, RECONNECT_MAX_S)
        member.retry_at = time.monotonic() + wait


class _Waker:
    """What wakes the loop from another thread: an ``eventfd`` (one descriptor) where Linux has
    it, else a socket pair.  A raw descriptor closed under a late ``set`` could be reused by
    another file by then, so setting and closing share a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event: int | None = None
        self._pair: tuple[socket.socket, socket.socket] | None = None
        if hasattr(os, "eventfd"):
            self._event = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            pair = socket.socketpair()
            for sock in pair:
                sock.setblocking(False)
            self._pair = pair

    @property
    def fd(self) -> int:
        return self._event if self._event is not None else self._pair[0].fileno()  # type: ignore[index]

    def set(self) -> None:
        with self._lock:
            if self._event is not None:
                os.eventfd_write(self._event, 1)
            elif self._pair is not None:
                self._pair[1].send(b"\0")

    def clear(self) -> None:
        """Called by the loop's own thread only, which ``close`` joins first."""
        if self._event is not None:
            os.eventfd_read(self._event)
        elif self._pair is not None:
            while self._pair[0].recv(4096):
                pass

    def close(self) -> None:
        with self._lock:
            if self._event is not None:
                os.close(self._event)
                self._event = None
            elif self._pair is not None:
                for sock in self._pair:
                    sock.close()
                self._pair = None

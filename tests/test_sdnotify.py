"""systemd's notify protocol, against a real datagram socket that reads the sender's credentials as systemd does."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gatepost.sdnotify import Notifier
from simulator.service import NotifySocket


def test_abstract_socket_gets_each_message_with_our_pid():
    with NotifySocket() as listener:
        assert listener.address.startswith("@")
        notifier = Notifier(listener.address, watchdog_usec=2_000_000)
        assert notifier.enabled and notifier.watchdog_s == 2.0
        assert notifier.ready("backlog 3")
        assert notifier.watchdog("line one\nline two")
        assert notifier.stopping()
        ready = listener.wait_for("READY", "1")
        ping = listener.wait_for("WATCHDOG", "1")
        stop = listener.wait_for("STOPPING", "1")
        notifier.close()
    assert ready is not None and ready.fields == {"READY": "1", "STATUS": "backlog 3"}
    assert ready.pid == os.getpid()  # what NotifyAccess=main checks
    assert ping is not None and ping.fields["STATUS"] == "line one line two"  # one assignment per line
    assert stop is not None


def test_socket_file_path():
    folder = Path(tempfile.mkdtemp(prefix="gp-", dir="/tmp"))  # AF_UNIX paths are short
    try:
        with NotifySocket(folder / "notify") as listener:
            notifier = Notifier(str(folder / "notify"))
            notifier.status("hello")
            assert listener.wait_for("STATUS", "hello") is not None
            notifier.close()
    finally:
        (folder / "notify").unlink(missing_ok=True)
        folder.rmdir()


def test_without_notify_socket_nothing_happens():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_s == 0
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_a_gone_socket_is_not_an_error():
    notifier = Notifier("@gatepost-test/nobody-listens-here")
    assert notifier.enabled
    assert notifier.ready() is False  # ECONNREFUSED, logged and dropped


def test_other_address_kinds_are_ignored():
    assert not Notifier("vsock:2:1234").enabled


def test_environment_is_read_then_removed():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid()), "OTHER": "1"}
    notifier = Notifier.from_environment(env)
    assert notifier.watchdog_s == 4.0
    assert env == {"OTHER": "1"}  # children cannot speak for the service


def test_watchdog_meant_for_another_process_is_not_ours():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environment(env).watchdog_s == 0
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "soon"}
    assert Notifier.from_environment(env).watchdog_s == 0

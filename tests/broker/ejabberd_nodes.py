"""Two ejabberd nodes clustered on loopback, with mod_mqtt listening: the clustered broker under test.

Debian 12 ships ejabberd 23.01 (``apt-get install ejabberd``); its ``ejabberdctl`` runs the
node as the ``ejabberd`` user, so this needs root (or that user) and is used only by the
opt-in test in ``test_ejabberd_cluster.py``.  Each node gets its own configuration, spool
and logs under the test's folder, a unique node name and a free MQTT port; the second
node joins the first (``ejabberdctl join_cluster``, https://docs.ejabberd.im/admin/guide/clustering/).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from broker.launcher import free_port

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"
HOST = "localhost"
"""The XMPP host the MQTT users belong to (``user@localhost``)."""

CONFIG = """\
hosts:
  - {host}
loglevel: info
certfiles:
  - /etc/ejabberd/ejabberd.pem
listen:
  - port: {port}
    ip: "127.0.0.1"
    module: mod_mqtt
    backlog: 1000
auth_method: internal
modules:
  mod_mqtt:
    session_expiry: 3600
    max_queue: 100000
"""


def available() -> str | None:
    """Why the cluster cannot run here, or None when it can."""
    if not Path(EJABBERDCTL).exists():
        return "ejabberd is not installed (apt-get install ejabberd)"
    try:
        pwd.getpwnam("ejabberd")
    except KeyError:
        return "no ejabberd user"
    if os.geteuid() != 0:
        return "ejabberdctl runs nodes as the ejabberd user: needs root"
    return None


@dataclass
class Node:
    name: str
    port: int
    folder: Path

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                EJABBERDCTL,
                "--config-dir",
                str(self.folder),
                "--node",
                self.name,
                "--spool",
                str(self.folder / "spool"),
                "--logs",
                str(self.folder / "logs"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pid(self) -> int | None:
        """The node's BEAM process, found by its unique node name on its command line."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"beam.smp") and self.name.encode() in argv:
                return int(entry.name)
        return None

    def start(self, timeout: float = 60.0) -> None:
        self.ctl("start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "is running" in self.ctl("status", timeout=20).stdout and _listening(self.port):
                return
            time.sleep(0.5)
        raise RuntimeError(f"ejabberd node {self.name} did not start: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the node, as a crashed host would: no goodbye to its clients or its peer."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.pid() == pid and time.monotonic() < deadline:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.pid() is None:
            return
        self.ctl("stop", timeout=30)
        deadline = time.monotonic() + 20
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()

    def log_tail(self, lines: int = 20) -> str:
        path = self.folder / "logs" / "ejabberd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    """Two clustered nodes; users registered once are known to both (mnesia replicates ``passwd``)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        # Not under pytest's tmp_path: the ejabberd user must reach it, and pytest's root is 0700.
        folder = self.folder = Path(tempfile.mkdtemp(prefix=f"gatepost-ejabberd-{tag}-"))
        self.nodes = [Node(f"gp{tag}n{i}@localhost", free_port(), folder / f"n{i}") for i in (1, 2)]
        for node in self.nodes:
            (node.folder / "spool").mkdir(parents=True)
            (node.folder / "logs").mkdir()
            (node.folder / "ejabberd.yml").write_text(CONFIG.format(host=HOST, port=node.port))
            (node.folder / "ejabberdctl.cfg").write_text(
                'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\nINET_DIST_INTERFACE=127.0.0.1\n'
            )
            shutil.copy("/etc/ejabberd/inetrc", node.folder / "inetrc")
        folder.chmod(0o755)
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", *(str(n.folder) for n in self.nodes)], check=True)

    def start(self) -> None:
        first, second = self.nodes
        first.start()
        second.start()
        joined = second.ctl("join_cluster", first.name, timeout=120)
        if joined.returncode != 0:
            raise RuntimeError(f"join_cluster failed: {joined.stdout} {joined.stderr}")
        second.start()  # join_cluster restarts the joining node
        listed = first.ctl("list_cluster").stdout
        if second.name not in listed:
            raise RuntimeError(f"{second.name} not in the cluster: {listed}")

    def register(self, user: str, password: str) -> None:
        result = self.nodes[0].ctl("register", user, HOST, password)
        if result.returncode != 0:
            raise RuntimeError(f"register {user}: {result.stdout} {result.stderr}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

"""Run mosquitto as a child process from gatepost's own configuration.

Tests, the simulator and ``gatepost broker run`` all start the broker here, so each of
them runs the production configuration (rendered for its own folder and port).  The
child never outlives its parent: it runs in its own process group (a Ctrl-C in the
terminal reaches us, and we stop it in order), a finalizer kills the group when the
Broker object or the interpreter goes away, and on Linux ``PR_SET_PDEATHSIG`` makes the
kernel kill it even if the parent is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from broker.config import AUTOSAVE_INTERVAL_S, DYNSEC_FILE, QueueSizing, find_dynsec_plugin, render_config
from broker.control import ApplyReport, apply_registry
from broker.errors import BrokerError
from broker.files import write_atomic
from broker.pki import SiteCA
from broker.probe import ConnackCode, try_login
from broker.provision import Credentials, Provisioning
from protocol.identity import ADMIN_ACCOUNT, MAX_INGEST_WORKERS, account_connections, console_certificates
from protocol.mqtt import BrokerEndpoint

READY_LINE = b" running"
"""mosquitto logs ``mosquitto version X running`` after its listeners and signal handlers are set up."""
PORT_TAKEN = "Address already in use"
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now.  Another process may take it before we bind;
    :meth:`Broker.start` retries with a new one when that happens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise BrokerError("mosquitto not found on PATH or in /usr/sbin; install the mosquitto package")
    return found


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to SIGKILL the child when this process exits.

    libc is looked up here, in the parent, so the child between fork and exec only makes
    one system call.  If the parent died before the call, the child exits at once.  The
    signal fires when the *thread* that started the child exits, so start brokers from a
    thread that lives as long as you need them (the main thread, in practice).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer: SIGKILL the broker's process group if it is still there.  Must not raise."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


class Broker:
    """One mosquitto with its configuration, users and data in ``state_dir``.

    Nothing is started by the constructor; :meth:`start` renders the configuration and
    the dynamic-security plugin's file and waits until mosquitto answers MQTT.  ``port=None``
    picks a free port once; :meth:`restart` keeps it, so clients reconnect to the same
    address.

    It listens as a site does: TLS with client certificates on ``tls_port`` (a site CA
    and server certificate for ``host`` are made in ``state_dir/pki`` on first start), and
    plain MQTT with passwords on ``port``, loopback only (``plain=False`` leaves that out;
    the administrator then logs in with its certificate).  :meth:`add_gate` and
    :meth:`add_console` issue certificates too, and :meth:`endpoint` is the TLS endpoint
    for credentials that carry one; :meth:`plain_endpoint` the password one.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        max_queued_messages: int | None = None,
        autosave_interval: int = AUTOSAVE_INTERVAL_S,
        tls_port: int | None = None,
        plain: bool = True,
        gates: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.host = host
        self.plain = plain
        self._port_fixed = port is not None or tls_port is not None
        self.port = port if port is not None else free_port(host)
        self.tls_port = tls_port if tls_port is not None else free_port(host)
        self.ca = SiteCA(self.state_dir)
        self.max_queued_messages = max_queued_messages
        self.autosave_interval = autosave_interval
        self.gates = gates
        """Gates this broker is sized for (``max_connections``); ``None``: the production default."""
        self.provisioning = Provisioning(self.state_dir, dynsec_path=self.state_dir / DYNSEC_FILE)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- where things are -------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.state_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "mosquitto.log"

    @property
    def stderr_path(self) -> Path:
        return self.state_dir / "mosquitto.stderr"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "mosquitto.db"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def endpoint(self, creds: Credentials | None = None) -> BrokerEndpoint:
        """The TLS endpoint for ``creds`` with a certificate; else the plain one (as :meth:`plain_endpoint`)."""
        if creds is None or creds.tls_cert is None:
            return self.plain_endpoint(creds)
        return BrokerEndpoint(
            self.host,
            self.tls_port,
            creds.username,
            None,
            str(creds.tls_ca),
            str(creds.tls_cert),
            str(creds.tls_key),
        )

    def plain_endpoint(self, creds: Credentials | None = None) -> BrokerEndpoint:
        """The loopback listener with the password (anonymous without ``creds``)."""
        if not self.plain:
            raise BrokerError(f"{self!r} has no plain listener")
        if creds is None:
            return BrokerEndpoint(self.host, self.port)
        return BrokerEndpoint(self.host, self.port, creds.username, creds.password)

    def tls_anonymous(self) -> BrokerEndpoint:
        """The TLS listener trusting the site CA, with no client certificate (the broker refuses it)."""
        return BrokerEndpoint(self.host, self.tls_port, tls_ca=str(self.ca.ca_cert))

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        plain = f"plain {self.port}, " if self.plain else ""
        return f"Broker({self.host}: {plain}tls {self.tls_port}, {self.state_dir}, {state})"

    # -- life cycle -------------------------------------------------------------------

    def write_config(self) -> Path:
        """Render ``mosquitto.conf`` for this folder, port and user; also used by ``broker init``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            plugin = find_dynsec_plugin()
        except FileNotFoundError as exc:
            raise BrokerError(str(exc)) from None
        self._ensure_pki()
        text = render_config(
            config_dir=self.state_dir,
            data_dir=self.state_dir,
            port=self.port if self.plain else None,
            tls_port=self.tls_port,
            bind=self.host,
            user=_current_user(),
            plugin=plugin,
            max_queued_messages=self.max_queued_messages,
            sizing=QueueSizing(gates=self.gates) if self.gates is not None else None,
            autosave_interval=self.autosave_interval,
        )
        write_atomic(self.config_path, text, mode=0o640)
        return self.config_path

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and return once it answers MQTT on ``host:port``; BrokerError otherwise."""
        if self.running:
            raise BrokerError(f"{self!r} is already running")
        self.provisioning.sync()
        attempts = 1 if self._port_fixed else 5
        for attempt in range(attempts):
            self.write_config()
            try:
                self._spawn(timeout)
            except _PortTaken as exc:
                if attempt + 1 == attempts:
                    raise BrokerError(str(exc)) from None
                self.port = free_port(self.host)
                self.tls_port = free_port(self.host)
                continue
            self._port_fixed = True  # from now on clients know this port: restart() must keep it
            return

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, so mosquitto writes its persistence file and sends wills; SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a power cut would: nothing written since the last autosave survives."""
        proc = self._proc
        if proc is None:
            return
        _kill_group(proc)
        self._forget()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop if running, then start on the same port with the same state."""
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> Broker:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- users ------------------------------------------------------------------------

    def add_gate(self, site: str, gate: str) -> Credentials:
        """Provision a gate; a running broker takes it up, and this returns once the login works."""
        creds = self._certify(self.provisioning.add_gate(site, gate), [None])
        if self.running:
            self.reload(creds)
        return creds

    def add_gates(self, site: str, gates: list[str]) -> list[Credentials]:
        """Provision many gates at once, each with its own key and certificate (the fleet harness).

        One registry write and one issued-list write for all of them; a running broker
        takes them up in one reload.
        """
        made = self.provisioning.add_gates(site, gates)
        self._ensure_pki()
        issued = self.ca.issue_keys([creds.username for creds in made])
        out = [
            Credentials(c.username, c.password, self.ca.ca_cert, i.cert_path, self.ca.key_path(c.username))
            for c, i in zip(made, issued, strict=True)
        ]
        if self.running:
            self.reload()
        return out

    def add_console(self, name: str = "console", *, workers: int | None = None) -> Credentials:
        """Provision a console; a running broker takes it up at once.

        One key, certified for each connection name: every ingest worker (or the first
        ``workers``) and every :class:`~protocol.identity.ConsoleConnection`.
        """
        creds = self.provisioning.add_console(name)
        creds = self._certify(creds, console_certificates(creds.username, workers or MAX_INGEST_WORKERS))
        if self.running:
            self.reload(creds)
        return creds

    def add_homeassistant(
        self, site: str, name: str = "homeassistant", *, discovery_prefix: str = "homeassistant"
    ) -> Credentials:
        """Provision a site's Home Assistant account (docs/homeassistant.md); a running broker takes it up."""
        account = self.provisioning.add_homeassistant(site, name, discovery_prefix=discovery_prefix)
        creds = self._certify(account, [None])
        if self.running:
            self.reload(creds)
        return creds

    def remove(self, username: str, *, revoke: bool = True) -> None:
        """Remove an account and revoke its certificates; a running broker deletes its clients.

        mosquitto 2.0 reads its CRL only when it starts (eclipse/mosquitto issue #35), so a
        running broker is restarted after the CRL is written: SIGTERM makes it save its
        persistence file first, so sessions and queued messages survive the restart.
        """
        connections = account_connections(username)
        self.provisioning.remove(username)
        revoked = self.ca.revoke(set(connections)) if revoke and self.ca.exists else []
        if self.running:
            self.reload()
            if revoked:
                self.restart()

    def _certify(self, creds: Credentials, connections: list[str | None] | list[str]) -> Credentials:
        """Issue ``creds`` a key and a certificate for each connection name (here: tests, the demo)."""
        self._ensure_pki()
        names = [creds.username if c is None else c for c in connections]
        issued = self.ca.issue_with_key(names)
        return Credentials(
            creds.username, creds.password, self.ca.ca_cert, issued[0].cert_path, self.ca.key_path(names[0])
        )

    def _ensure_pki(self) -> None:
        """A site CA and a server certificate for ``host`` (and ``localhost``), and one for the admin."""
        if not self.ca.exists:
            self.ca.init(["localhost"], [self.host] if self.host not in ("", "0.0.0.0") else ["127.0.0.1"])
        if not self.ca.cert_path(ADMIN_ACCOUNT).exists():
            self.ca.issue_with_key([ADMIN_ACCOUNT])
        self.ca.write_crl()

    def admin_tls(self) -> tuple[Path, Path, Path]:
        return (self.ca.ca_cert, self.ca.cert_path(ADMIN_ACCOUNT), self.ca.key_path(ADMIN_ACCOUNT))

    def reload(self, creds: Credentials | None = None, timeout: float = 5.0) -> ApplyReport:
        """Bring the running broker in line with the registry, through the plugin's control topic.

        The plugin reads its file only at start, so changes reach a running broker as
        commands (broker.control); only what differs is sent, so clients whose account
        did not change stay connected.  With ``creds`` (a password just made), also waits
        until they log in, which proves it from the outside.  BrokerError if an account
        could not be applied (its password is no longer at hand: restart to take it up).
        """
        self._require_running()
        passwords = {creds.username: creds.password} if creds is not None else None
        try:
            report = apply_registry(
                self.provisioning,
                self.host,
                self.port if self.plain else self.tls_port,
                passwords=passwords,
                timeout=timeout,
                tls=None if self.plain else self.admin_tls(),
            )
        except OSError as exc:
            raise BrokerError(
                f"could not reach the broker to apply the registry: {exc}\n{self._tail()}"
            ) from None
        if report.pending:
            raise BrokerError(
                f"not applied to the running broker, no password at hand for: {', '.join(report.pending)}; "
                "restart it to take them up"
            )
        if creds is not None and self.plain:  # a certificate login needs no password to be live
            deadline = time.monotonic() + timeout
            self._wait_for(
                lambda: self._login(creds) is ConnackCode.ACCEPTED, deadline, f"accept {creds.username}"
            )
        return report

    # -- internals --------------------------------------------------------------------

    def _spawn(self, timeout: float) -> None:
        offset = self._log_size()
        stderr_offset = _size(self.stderr_path)
        with open(self.stderr_path, "ab") as stderr:
            proc = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.state_dir,
                close_fds=True,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),  # only prctl runs between fork and exec
            )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill_group, proc)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self._forget()
                tail = self._tail()
                fresh = self._log_since(offset) + _read_from(self.stderr_path, stderr_offset)
                if PORT_TAKEN.encode() in fresh:
                    raise _PortTaken(f"port {self.port} is taken:\n{tail}")
                raise BrokerError(f"mosquitto exited with status {proc.returncode} while starting:\n{tail}")
            if READY_LINE in self._log_since(offset) and self._login(None) is not None:
                return
            if time.monotonic() > deadline:
                _kill_group(proc)
                self._forget()
                raise BrokerError(
                    f"mosquitto did not answer on {self.host}:{self.port} in {timeout} s:\n{self._tail()}"
                )
            time.sleep(0.01)

    def _login(self, creds: Credentials | None) -> ConnackCode | None:
        """A password login on the plain listener; without one, the admin's certificate on TLS."""
        try:
            if not self.plain:
                ca, cert, key = self.admin_tls()
                context = BrokerEndpoint(self.host, self.tls_port, None, None, str(ca), str(cert), str(key))
                return try_login(
                    self.host, self.tls_port, ADMIN_ACCOUNT, timeout=1.0, tls=context.tls_context()
                )
            if creds is None:
                return try_login(self.host, self.port, timeout=1.0)
            return try_login(self.host, self.port, creds.username, creds.password, timeout=1.0)
        except OSError:
            return None

    def _wait_for(self, condition: Callable[[], bool], deadline: float, what: str) -> None:
        while not condition():
            if not self.running:
                raise BrokerError(f"mosquitto died while waiting to {what}:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not {what} in time:\n{self._tail()}")
            time.sleep(0.01)

    def _require_running(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError(f"{self!r} is not running")
        return self._proc

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._proc = None

    def _log_size(self) -> int:
        return _size(self.log_path)

    def _log_since(self, offset: int) -> bytes:
        return _read_from(self.log_path, offset)

    def _tail(self, lines: int = 15) -> str:
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(mosquitto wrote nothing)"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    """What a log gained since ``offset``: earlier runs' lines must not be mistaken for this one's."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""


class _PortTaken(BrokerError):
    """mosquitto could not bind; only an automatically chosen port is retried."""

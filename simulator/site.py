"""A whole compound on one machine: broker, console and gates, with virtual scanners.

The demo, the end-to-end fault tests and the pipeline benchmark all need the same thing:
a real mosquitto started from ``broker/``'s configuration, a console process, gate agent
processes, each gate reading a pseudo-terminal that a virtual scanner types into.  This
module builds that from nothing but a folder, writing real configuration files, so what
runs is what an installer would run — ``gatepost console run`` and the gate agent of
``gatepost edge run`` (started as ``gatepost sim-gate``, which registers the simulator's
devices first) with a TOML file each.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from broker.launcher import Broker
from broker.provision import Credentials
from gatepost.processes import Child, gatepost_command
from simulator.lpr_camera import LprCameraClient
from simulator.osdp import SimulatedOsdpBus, demo_key
from simulator.passes import SimulatedOffice, SiteOffice
from simulator.plates import vehicle_plates
from simulator.scanner import VirtualScanner
from simulator.scenario import resident_codes


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SimulatedSite:
    """Everything of one site under ``root``; start what a test needs, stop it all at the end."""

    def __init__(
        self,
        root: Path,
        *,
        site: str = "longtan",
        gates: Sequence[str] = ("north", "east", "south"),
        door_gates: Sequence[str] = (),
        camera_gates: Sequence[str] = (),
        osdp_gates: Sequence[str] = (),
        lane_gates: Sequence[str] = (),
        residents: int = 200,
        baudrate: int = 9600,
        pace: bool = True,
        broker_port: int | None = None,
        outbox_capacity: int = 200_000,
        resend_after_s: float = 15.0,
        log_level: str = "INFO",
        signed_passes: bool = False,
        office: SiteOffice | None = None,
        tls: bool = True,
    ) -> None:
        self.root = root
        self.tls = tls
        """False: every process logs in with its password on the plain loopback listener
        (the benchmark's comparison); True, as a site runs: TLS with client certificates."""
        self.site = site
        self.gates = list(gates)
        self.door_gates = list(door_gates)
        self.camera_gates = list(camera_gates)
        self.osdp_gates = list(osdp_gates)
        """Building doors whose card readers are on an OSDP bus (simulator/osdp.py), secure channel on."""
        self.osdp_buses: dict[str, SimulatedOsdpBus] = {}
        self.lane_gates = list(lane_gates)
        """Vehicle entrances: a lane read by its own camera, and an exit lane fed by an LPR camera's pushes."""
        self.vehicles = vehicle_plates(residents)
        self.lpr_ports: dict[str, int] = {}
        self.card_registry = root / "console" / "cards.db"
        """The console's card list, which carries resident plates to the vehicle lanes (filled by
        the demo and the tests through console.credentials, before the console starts)."""
        self.codes = resident_codes(residents)
        self.cards = [f"13:{1000 + 37 * i}" for i in range(min(residents, 500))]
        self.baudrate = baudrate
        self.pace = pace
        self.outbox_capacity = outbox_capacity
        self.resend_after_s = resend_after_s
        self.log_level = log_level
        root.mkdir(parents=True, exist_ok=True)
        self.broker = Broker(root / "broker", port=broker_port)
        self.console_db = root / "console" / "events.db"
        self.console: Child | None = None
        self.agents: dict[str, Child] = {}
        self.scanners: dict[str, VirtualScanner] = {}
        self._configured: set[str] = set()
        self.credentials: dict[str, Credentials] = {}
        self.console_username: str | None = None
        self.office: SiteOffice | None = office
        """Given (the demo's real site office), or played by the simulator with ``signed_passes``."""
        if office is None and signed_passes:
            # Scanner gates then check real signed passes; the allow-list keeps the plain codes.
            self.office = SimulatedOffice(root / "office", site=site)

    # -- configuration files ---------------------------------------------------------

    def _secret(self, name: str, password: str) -> Path:
        path = self.root / "secrets" / f"{name}.secret"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(password)
        path.chmod(0o600)
        return path

    def _mqtt_lines(self, creds: Credentials) -> list[str]:
        """TLS with the client certificate the launcher issued (CN = user name), as a site runs."""
        if not self.tls:
            return [
                f"host = {_toml_str(self.broker.host)}",
                f"port = {self.broker.port}",
                f"username = {_toml_str(creds.username)}",
                f"password_file = {_toml_str(str(self._secret(creds.username, creds.password)))}",
            ]
        return [
            f"host = {_toml_str(self.broker.host)}",
            f"port = {self.broker.tls_port}",
            f"username = {_toml_str(creds.username)}",
            f"tls_ca = {_toml_str(str(creds.tls_ca))}",
            f"tls_cert = {_toml_str(str(creds.tls_cert))}",
            f"tls_key = {_toml_str(str(creds.tls_key))}",
        ]

    def console_config(self) -> Path:
        path = self.root / "console" / "console.toml"
        if "console" not in self._configured:
            creds = self.broker.add_console("console")
            self.credentials[creds.username] = creds
            self.console_username = creds.username
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "\n".join(
                    [
                        'name = "console"',
                        "",
                        "[mqtt]",
                        *self._mqtt_lines(creds),
                        "",
                        "[store]",
                        f"path = {_toml_str(str(self.console_db))}",
                        "",
                        *self._cards_lines(),
                        "# Off unless the demo switches it on with a free port: tests run many sites at once.",
                        "[web]",
                        "enabled = false",
                        "",
                        "# Any free port, for the same reason (the log says which).",
                        "[metrics]",
                        'listen = "127.0.0.1:0"',
                        "",
                    ]
                )
            )
            self._configured.add("console")
        return path

    def _cards_lines(self) -> list[str]:
        """The console publishes its card list (resident plates among it) when the site has vehicle lanes."""
        if not self.lane_gates:
            return []
        return [
            "[cards]",
            f"site = {_toml_str(self.site)}",
            f"registry = {_toml_str(str(self.card_registry))}",
            f"thumbnails = {_toml_str(str(self.root / 'console' / 'thumbnails'))}",
            "snapshot_every_s = 5",
            "",
        ]

    def gate_config(self, gate: str) -> Path:
        """Provision ``gate`` on the broker and write its configuration (once)."""
        path = self.root / "gates" / gate / "gate.toml"
        if gate in self._configured:
            return path
        if gate in self.door_gates:
            readers = self._door_sections()
            allow = [f"wiegand26:{card}" for card in self.cards]
        elif gate in self.osdp_gates:
            readers = self._osdp_door_sections(gate, path.parent)
            allow = [f"wiegand26:{card}" for card in self.cards]
        elif gate in self.lane_gates:
            readers = [
                *self._lane_sections(gate),
                "",
                "[cards]",
                f"store = {_toml_str(str(path.parent / 'cards.db'))}",
            ]
            readers.append('timezone = "Asia/Shanghai"')
            allow = []  # resident plates come in the card list, as a compound registers its cars
        elif gate in self.camera_gates:
            if self.office is not None:  # residents' signed passes, and a forged one held up by a visitor
                corpus = self.office.corpus
                codes = [*corpus.genuine[:4], corpus.refused["bad_signature"][0]]
            else:
                codes = [*self.codes[:6], "9000000000001"]  # six residents and one visitor
            readers = [
                "[[cameras]]",
                'name = "camera"',
                'direction = "in"',
                f'source = "sim://?codes={",".join(codes)}&every=5&hold=1.5&size=1280x720&fps=15"',
            ]
            allow = self.codes
            if self.office is not None:
                readers += ["", *self._passes_section(gate, path.parent)]
        else:
            readers = [
                "[[scanners]]",
                'name = "scanner"',
                'direction = "in"',  # people leave by the exit button; passes are shown coming in
                f"url = {_toml_str(str(self.scanner(gate).link_path))}",
                f"baudrate = {self.baudrate}",
            ]
            allow = self.codes
            if self.office is not None:
                readers += ["", *self._passes_section(gate, path.parent)]
        creds = self.broker.add_gate(self.site, gate)
        self.credentials[creds.username] = creds
        allowed = ",\n    ".join(_toml_str(code) for code in allow)
        allow_line = f"allow = [\n    {allowed},\n]" if allow else "allow = []"
        lines = [
            f"site = {_toml_str(self.site)}",
            f"gate = {_toml_str(gate)}",
            "",
            "[mqtt]",
            *self._mqtt_lines(creds),
            f"resend_after_s = {self.resend_after_s}",
            "",
            *readers,
            "",
            "[outbox]",
            f"path = {_toml_str(str(path.parent / 'outbox.db'))}",
            f"capacity = {self.outbox_capacity}",
            "",
            "[access]",
            allow_line,
            "",
            "[metrics]",
            'listen = "127.0.0.1:0"  # any free port: many gates on one machine (the log says which)',
            "",
            "[log]",
            f'level = "{self.log_level}"',
            "",
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        self._configured.add(gate)
        return path

    def _passes_section(self, gate: str, folder: Path) -> list[str]:
        """The office's public files, copied for this gate (each gate keeps its own newer ones)."""
        assert self.office is not None
        folder.mkdir(parents=True, exist_ok=True)
        for source in (
            self.office.root_key,
            self.office.bundle,
            self.office.revocations,
            self.office.site_secret,
        ):
            (folder / source.name).write_bytes(source.read_bytes())
        (folder / self.office.site_secret.name).chmod(0o600)
        return [
            "[passes]",
            f"root_key = {_toml_str(str(folder / self.office.root_key.name))}",
            f"trust_bundle = {_toml_str(str(folder / self.office.bundle.name))}",
            f"revocation_list = {_toml_str(str(folder / self.office.revocations.name))}",
            f"site_secret_file = {_toml_str(str(folder / self.office.site_secret.name))}",
        ]

    def _door_sections(self) -> list[str]:
        """A building door: a Wiegand card reader and a lock, with simulated residents on mock pins."""
        cards = ", ".join(_toml_str(card) for card in self.cards[:50])
        return [
            "[gpio]",
            'pin_factory = "mock"',
            "",
            "[door.pins]",
            'relay = "GPIO17"',
            'contact = "GPIO27"',
            'exit_button = "GPIO22"',
            'tamper = "GPIO23"',
            'green = "GPIO24"',
            'red = "GPIO25"',
            'buzzer = "GPIO12"',
            "",
            "[door.behaviour]",
            "unlock_s = 5",
            "prealarm_s = 20",
            "held_open_s = 30",
            "",
            "[[wiegand]]",
            'direction = "in"',
            'name = "card-reader"',
            'd0 = "GPIO5"',
            'd1 = "GPIO6"',
            "",
            "[simulation]",
            "people_per_min = 12",
            f"cards = [{cards}]",
        ]

    def _osdp_door_sections(self, gate: str, folder: Path) -> list[str]:
        """A door with two OSDP readers (in and out) on one bus, each with its own key in the key store."""
        bus = self.osdp_bus(gate)
        keys = folder / "osdp-keys"
        keys.mkdir(parents=True, exist_ok=True)
        keys.chmod(0o700)
        for reader in bus.readers:
            key_file = keys / f"{reader.name}.key"
            key_file.write_text(f"{(reader.key or b'').hex()}\n")
            key_file.chmod(0o600)
        return [
            "[gpio]",
            'pin_factory = "mock"',
            "",
            "[door.pins]",
            'relay = "GPIO17"',
            'contact = "GPIO27"',
            'exit_button = "GPIO22"',
            "",
            "[door.behaviour]",
            "unlock_s = 5",
            "",
            "[[osdp]]",
            'name = "door-bus"',
            f"url = {_toml_str(bus.url)}",
            "baudrate = 115200",
            f"key_dir = {_toml_str(str(keys))}",
            *[
                line
                for reader, direction in zip(bus.readers, ("in", "out"), strict=True)
                for line in (
                    "",
                    "[[osdp.readers]]",
                    f"name = {_toml_str(reader.name)}",
                    f"address = {reader.address}",
                    f'direction = "{direction}"',
                )
            ],
        ]

    def osdp_bus(self, gate: str) -> SimulatedOsdpBus:
        """The OSDP bus of an OSDP door (started on first use), with an in and an out reader."""
        if gate not in self.osdp_buses:
            bus = SimulatedOsdpBus(self.root / "dev" / f"{gate}-osdp")
            for address, name in ((1, "osdp-in"), (2, "osdp-out")):
                bus.add_reader(address, key=demo_key(f"{self.site}/{gate}/{name}"), name=name)
            self.osdp_buses[gate] = bus.start()
        return self.osdp_buses[gate]

    def _lane_sections(self, gate: str) -> list[str]:
        """An entrance lane read by its own (synthetic) camera, gated by its loop, and an exit lane whose
        LPR camera pushes plates to the agent (:meth:`lpr_client`)."""
        port = self.lpr_ports.setdefault(gate, _free_port())
        password = self._secret(f"lpr-{gate}", f"lpr-{gate}-secret")
        plates = ",".join(self.vehicles.schedule)
        return [
            "[gpio]",
            'pin_factory = "mock"',
            "",
            "[[lane]]",
            'name = "car-in"',
            'direction = "in"',
            'barrier = { open = "GPIO5", close = "GPIO6", loop = "GPIO13", pulse_s = 0.5 }',
            f'camera = {{ source = "sim://plates?plates={plates}&every=9&dwell=4&repeat=1'
            f'&conditions=plain,night,glare,perspective,blur", region = [120, 200, 400, 240] }}',
            "",
            "[[lane]]",
            'name = "car-out"',
            'direction = "out"',
            'barrier = { open = "GPIO16", loop = "GPIO19", pulse_s = 0.5 }',
            "",
            "[lpr]",
            f'listen = "127.0.0.1:{port}"',
            "",
            "[[lpr.cameras]]",
            'name = "exit-camera"',
            'lane = "car-out"',
            'format = "hikvision"',
            'username = "camera"',
            f"password_file = {_toml_str(str(password))}",
        ]

    def lpr_client(self, gate: str) -> LprCameraClient:
        """The exit lane's simulated LPR camera, pushing to ``gate``'s endpoint."""
        self.gate_config(gate)
        return LprCameraClient(
            "127.0.0.1", self.lpr_ports[gate], "exit-camera", "camera", f"lpr-{gate}-secret"
        )

    def scanner(self, gate: str) -> VirtualScanner:
        if gate not in self.scanners:
            self.scanners[gate] = VirtualScanner(
                self.root / "dev" / f"tty-{gate}",
                baudrate=self.baudrate,
                pace=self.pace,
                write_timeout_s=30.0,
            )
        return self.scanners[gate]

    def outbox_path(self, gate: str) -> Path:
        return self.root / "gates" / gate / "outbox.db"

    # -- processes -------------------------------------------------------------------

    def start_broker(self) -> None:
        if not self.broker.running:
            self.broker.start()

    def start_console(self) -> Child:
        self.start_broker()
        config = self.console_config()
        self.console = Child(
            "console",
            gatepost_command("console", "run", "--config", str(config)),
            self.root / "logs" / "console.log",
        ).start()
        return self.console

    def start_gate(self, gate: str) -> Child:
        self.start_broker()
        config = self.gate_config(gate)
        child = Child(
            gate, gatepost_command("sim-gate", "--config", str(config)), self.root / "logs" / f"{gate}.log"
        ).start()
        self.agents[gate] = child
        return child

    def start(self) -> None:
        self.start_broker()
        self.start_console()
        for gate in [*self.gates, *self.door_gates, *self.camera_gates, *self.osdp_gates, *self.lane_gates]:
            self.start_gate(gate)

    def stop(self) -> None:
        """Gates first (their last events may still reach the console), then console, broker, scanners."""
        for child in self.agents.values():
            child.stop()
        if self.console is not None:
            self.console.stop()
        if self.broker.running:
            self.broker.stop()
        for scanner in self.scanners.values():
            scanner.close()
        for bus in self.osdp_buses.values():
            bus.close()

    # -- what reached the console ----------------------------------------------------

    def console_rows(self, sql: str, params: Iterable[object] = ()) -> list[tuple]:
        if not self.console_db.exists():
            return []
        db = sqlite3.connect(f"file:{self.console_db}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError:
            return []  # the console has not created its tables yet
        finally:
            db.close()

    def stored_codes(self, gate: str | None = None) -> list[str]:
        sql = "SELECT json_extract(data, '$.code') FROM events WHERE type = 'access.scan'"
        params: list[object] = []
        if gate is not None:
            sql += " AND gate = ?"
            params.append(gate)
        return [row[0] for row in self.console_rows(sql, params)]

    def wait_console_online(self, timeout: float = 30.0) -> bool:
        """True once the console's retained status reads online, False if it never does (or exits).

        The console publishes that status right after sending its SUBSCRIBE, on the same
        connection, and the broker handles a connection's packets in order: once the
        status is there, the gates' events have a subscriber.
        """
        import threading

        from protocol import GateState, ProtocolError, decode_console_status
        from protocol.identity import ConsoleConnection
        from protocol.mqtt import connect_async, make_client
        from protocol.topics import console_status_topic

        if self.console_username is None:
            raise RuntimeError("start the console first")
        online = threading.Event()

        def on_message(_client: object, _userdata: object, message: object) -> None:
            try:
                status = decode_console_status(message.payload)  # type: ignore[attr-defined]
            except ProtocolError:
                return
            if status.state is GateState.ONLINE:
                online.set()

        endpoint = self.broker.endpoint(self.credentials[self.console_username])
        client = make_client(endpoint.for_connection(ConsoleConnection.WATCH))  # console.<name>.watch
        client.on_connect = lambda c, *_: c.subscribe(console_status_topic("all"), qos=1)
        client.on_message = on_message
        connect_async(client, endpoint, clean_start=True)
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout
            while not online.wait(0.1):
                if time.monotonic() > deadline or (self.console is not None and not self.console.running):
                    return False
            return True
        finally:
            client.disconnect()
            client.loop_stop()

    def wait_for(self, predicate: object, timeout: float = 60.0, interval: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(interval)
        return bool(predicate())  # type: ignore[operator]

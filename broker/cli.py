"""``gatepost broker …``: write the broker's configuration, provision users, run it in the foreground.

Passwords are never printed unless asked for: they go to ``credentials/<user>.secret``
(0600), which the installer copies to the device, so they do not end up in shell
history, terminal scrollback or CI logs.

A change is written to the registry and the plugin's file, then applied to the broker
if one answers where ``mosquitto.conf`` says it listens; the command says which happened,
because a broker that was not reached takes the change up only at its next start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.provision import Credentials, Provisioning


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    broker = subparsers.add_parser("broker", help="the MQTT broker: configuration, users, running it")
    commands = broker.add_subparsers(dest="broker_command", required=True)

    def state(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state",
            type=Path,
            required=True,
            help="folder for config, users and secrets (e.g. /etc/gatepost/broker)",
        )

    def target(parser: argparse.ArgumentParser) -> None:
        state(parser)
        parser.add_argument("--host", help="broker to apply the change to (default: from mosquitto.conf)")
        parser.add_argument("--port", type=int, help="its port (default: from mosquitto.conf)")

    init = commands.add_parser(
        "init", help="write mosquitto.conf and the dynamic-security plugin's file (in the data folder)"
    )
    state(init)
    init.add_argument(
        "--data", type=Path, help="folder for the persistence file and log (default: the state folder)"
    )
    init.add_argument(
        "--port", type=int, default=1883, help="plain MQTT listener, on 127.0.0.1 only (default 1883)"
    )
    init.add_argument(
        "--no-plain", action="store_true", help="no plain listener at all: every connection is TLS"
    )
    init.add_argument("--tls-port", type=int, default=8883, help="TLS listener (default 8883)")
    init.add_argument("--bind", default="0.0.0.0", help="address the TLS listener listens on (default: all)")
    init.add_argument(
        "--name", action="append", default=[], help="a host name gates use for the broker (repeatable)"
    )
    init.add_argument(
        "--address", action="append", default=[], help="an IP address gates use for the broker (repeatable)"
    )
    init.add_argument("--user", default="mosquitto", help="user mosquitto drops to when started as root")
    init.add_argument(
        "--gates", type=int, default=16, help="gates on the site: queue sizing and max_connections"
    )
    init.add_argument("--peak-rate", type=float, default=2.0, help="peak events per second per gate")
    init.add_argument("--outage", type=int, default=3600, help="console outage to ride out, seconds")
    init.add_argument(
        "--plugin", type=Path, help="mosquitto_dynamic_security.so (default: found in /usr/lib)"
    )
    init.set_defaults(func=_init)

    sync = commands.add_parser(
        "sync", help="rewrite the plugin's file from users.json (run before mosquitto starts)"
    )
    state(sync)
    sync.set_defaults(func=_sync)

    add_gate = commands.add_parser("add-gate", help="create a gate's user (or give it a new password)")
    target(add_gate)
    add_gate.add_argument("--site", required=True)
    add_gate.add_argument("--gate", required=True)
    add_gate.add_argument("--show-password", action="store_true", help="also print the password")
    add_gate.add_argument(
        "--issue-key",
        action="store_true",
        help="also make the gate's key and certificate here (copy both to the gate); "
        "`gatepost edge enroll` keeps the key on the gate instead",
    )
    add_gate.set_defaults(func=_add_gate)

    sign = commands.add_parser(
        "sign", help="certify a gate's or console's signing request (from `gatepost edge enroll`)"
    )
    state(sign)
    sign.add_argument("--csr", type=Path, required=True, help="the .csr file the device made")
    sign.add_argument(
        "--out", type=Path, help="where to write the certificate(s) (default: beside the request)"
    )
    sign.add_argument(
        "--workers", type=int, default=1, help="for a console: ingest workers to certify (default 1)"
    )
    sign.add_argument("--days", type=int, default=365, help="validity (default 365)")
    sign.set_defaults(func=_sign)

    add_console = commands.add_parser(
        "add-console", help="create a console's user (or give it a new password)"
    )
    target(add_console)
    add_console.add_argument("--name", default="console")
    add_console.add_argument("--show-password", action="store_true", help="also print the password")
    add_console.add_argument(
        "--issue-key", action="store_true", help="also make the console's key and certificates here"
    )
    add_console.add_argument(
        "--workers", type=int, default=1, help="ingest workers to certify with --issue-key (default 1)"
    )
    add_console.set_defaults(func=_add_console)

    add_ha = commands.add_parser(
        "add-homeassistant",
        help="create a site's Home Assistant user: it reads the console's discovery and states, "
        "and may only ask the console for commands (docs/homeassistant.md)",
    )
    target(add_ha)
    add_ha.add_argument("--site", required=True)
    add_ha.add_argument("--name", default="homeassistant")
    add_ha.add_argument("--discovery-prefix", default="homeassistant")
    add_ha.add_argument("--show-password", action="store_true", help="also print the password")
    add_ha.set_defaults(func=_add_homeassistant)

    remove = commands.add_parser(
        "remove", help="delete a user, its role and its secret file; revoke its certificates (CRL)"
    )
    target(remove)
    remove.add_argument("username")
    remove.set_defaults(func=_remove)

    users = commands.add_parser("users", help="list provisioned users")
    state(users)
    users.set_defaults(func=_users)

    run = commands.add_parser("run", help="run mosquitto in the foreground from this folder until Ctrl-C")
    state(run)
    run.add_argument("--port", type=int, default=1883, help="plain listener (loopback only)")
    run.add_argument("--tls-port", type=int, default=8883, help="TLS listener, client certificates")
    run.add_argument("--no-plain", action="store_true", help="no plain listener")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on")
    run.set_defaults(func=_run)


def _fail(exc: Exception) -> int:
    print(f"gatepost broker: {exc}", file=sys.stderr)
    return 2


UNIT_NOFILE = 65536
"""``LimitNOFILE`` in systemd/gatepost-broker.service (a test keeps the two equal)."""


def _init(args: argparse.Namespace) -> int:
    from broker.config import QueueSizing, find_dynsec_plugin, render_config
    from broker.files import write_atomic
    from broker.pki import SiteCA
    from broker.provision import Provisioning
    from protocol.errors import GatepostError
    from protocol.identity import ADMIN_ACCOUNT

    try:
        sizing = QueueSizing(gates=args.gates, peak_events_per_s=args.peak_rate, outage_s=args.outage)
        state_dir: Path = args.state.absolute()
        data_dir: Path = (args.data or args.state).absolute()
        text = render_config(
            config_dir=state_dir,
            data_dir=data_dir,
            port=None if args.no_plain else args.port,
            tls_port=args.tls_port,
            bind=args.bind,
            user=args.user,
            sizing=sizing,
            plugin=args.plugin.absolute() if args.plugin else find_dynsec_plugin(),
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(state_dir / "mosquitto.conf", text, mode=0o640)
        provisioning = Provisioning(state_dir)
        provisioning.sync()
        ca = SiteCA(state_dir)
        had_ca = ca.exists
        ca.init(args.name, args.address or ([] if args.name else ["127.0.0.1"]))
        if not ca.cert_path(ADMIN_ACCOUNT).exists():
            ca.issue_with_key([ADMIN_ACCOUNT])
    except (GatepostError, ValueError, OSError) as exc:
        return _fail(exc)
    print(f"{'kept' if had_ca else 'made'} the site CA {ca.ca_cert} (its key {ca.ca_key}, 0600)")
    print(
        f"wrote the server certificate {ca.server_cert} for {', '.join(args.name + args.address) or '127.0.0.1'}"
    )
    print(f"wrote {state_dir / 'mosquitto.conf'} (queue: {sizing.explain()})")
    print(f"max_connections {sizing.connections}: the unit's LimitNOFILE must exceed it (docs/broker.md)")
    if sizing.connections + 256 > UNIT_NOFILE:
        print(f"warning: raise LimitNOFILE in gatepost-broker.service above {sizing.connections + 256}")
    print(f"wrote {provisioning.dynsec_path} (users and roles, from {provisioning.registry_path})")
    print(f"run it with: mosquitto -c {state_dir / 'mosquitto.conf'}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from broker.pki import SiteCA
    from broker.provision import Provisioning
    from protocol.errors import GatepostError

    provisioning = Provisioning(args.state)
    try:
        provisioning.sync()
        SiteCA(args.state).write_crl()  # re-signed, so its next-update date never passes
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    print(f"wrote {provisioning.dynsec_path} from {provisioning.registry_path}")
    return 0


def _apply(args: argparse.Namespace, provisioning: Provisioning, creds: Credentials | None) -> int:
    """Apply the registry to the running broker if one answers; say which happened."""
    from broker.config import configured_listener, configured_tls_listener
    from broker.control import ControlError, apply_registry
    from broker.pki import SiteCA
    from protocol.errors import GatepostError
    from protocol.identity import ADMIN_ACCOUNT

    configured = configured_listener(provisioning.state_dir / "mosquitto.conf")
    if configured is None and not (args.host and args.port):
        print(
            f"no mosquitto.conf in {provisioning.state_dir} to say where the broker listens: "
            "a broker started from this folder takes this up when it starts (or give --host and --port)"
        )
        return 0
    host, port = configured or (args.host, args.port)
    host, port = args.host or host, args.port or port
    tls = None
    if configured is not None and configured == configured_tls_listener(
        provisioning.state_dir / "mosquitto.conf"
    ):
        ca = SiteCA(provisioning.state_dir)  # no plain listener: the admin logs in with its certificate
        tls = (ca.ca_cert, ca.cert_path(ADMIN_ACCOUNT), ca.key_path(ADMIN_ACCOUNT))
    try:
        report = apply_registry(
            provisioning, host, port, passwords={creds.username: creds.password} if creds else None, tls=tls
        )
    except ControlError as exc:
        print(f"gatepost broker: the broker at {host}:{port} did not take this up: {exc}", file=sys.stderr)
        print("restart mosquitto to take it up from the plugin's file", file=sys.stderr)
        return 1
    except (GatepostError, FileNotFoundError, PermissionError) as exc:
        return _fail(exc)
    except OSError as exc:  # nothing listens there: the registry and the plugin's file are written
        print(f"no broker answers at {host}:{port} ({exc}): it takes this up when it next starts")
        return 0
    print(f"applied to the running broker at {host}:{port} ({len(report.changes)} changes)")
    if report.pending:
        print(
            f"not applied, no password at hand for: {', '.join(report.pending)}; "
            "the broker takes them up when it next starts"
        )
    return 0


def _report(creds: Credentials, secret: Path, show: bool, rotated: bool) -> None:
    print(f"{'new password for' if rotated else 'added'} {creds.username}")
    print(f"secret: {secret}")
    if show:
        print(f"password: {creds.password}")


def _add_gate(args: argparse.Namespace) -> int:
    from broker.provision import Provisioning, gate_username
    from protocol.errors import GatepostError

    provisioning = Provisioning(args.state)
    try:
        rotated = gate_username(args.site, args.gate) in provisioning.users()
        creds = provisioning.add_gate(args.site, args.gate)
        if args.issue_key:
            _issue_key(provisioning.state_dir, [creds.username])
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    _report(creds, provisioning.secret_path(creds.username), args.show_password, rotated)
    return _apply(args, provisioning, creds)


def _add_console(args: argparse.Namespace) -> int:
    from broker.provision import Provisioning, console_username
    from protocol.errors import GatepostError
    from protocol.identity import console_certificates

    provisioning = Provisioning(args.state)
    try:
        rotated = console_username(args.name) in provisioning.users()
        creds = provisioning.add_console(args.name)
        if args.issue_key:
            _issue_key(provisioning.state_dir, console_certificates(creds.username, args.workers))
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    _report(creds, provisioning.secret_path(creds.username), args.show_password, rotated)
    return _apply(args, provisioning, creds)


def _add_homeassistant(args: argparse.Namespace) -> int:
    from broker.provision import Provisioning
    from protocol.errors import GatepostError
    from protocol.identity import homeassistant_identity

    provisioning = Provisioning(args.state)
    try:
        rotated = homeassistant_identity(args.site, args.name) in provisioning.users()
        creds = provisioning.add_homeassistant(args.site, args.name, discovery_prefix=args.discovery_prefix)
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    _report(creds, provisioning.secret_path(creds.username), args.show_password, rotated)
    print(f"Home Assistant's MQTT client id must be {creds.username} (the broker binds the login to it)")
    return _apply(args, provisioning, creds)


def _remove(args: argparse.Namespace) -> int:
    from broker.pki import SiteCA
    from broker.provision import Provisioning
    from protocol.errors import GatepostError
    from protocol.identity import account_connections

    provisioning = Provisioning(args.state)
    try:
        provisioning.remove(args.username)
        ca = SiteCA(args.state)
        revoked = ca.revoke(set(account_connections(args.username))) if ca.exists else []
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    print(f"removed {args.username}")
    if revoked:
        print(
            f"revoked {len(revoked)} certificate(s) into {ca.crl}; mosquitto reads the CRL only when it "
            "starts: restart it (`systemctl restart gatepost-broker`; queued messages are kept)"
        )
    return _apply(args, provisioning, None)


def _issue_key(state_dir: Path, names: list[str]) -> None:
    from broker.pki import SiteCA

    ca = SiteCA(state_dir)
    issued = ca.issue_with_key(names)
    print(f"key (copy to the device, then delete here): {ca.key_path(names[0])}")
    for item in issued:
        print(f"certificate {item.common_name}: {item.cert_path} (until {item.not_after:%Y-%m-%d})")
    print(f"site CA: {ca.ca_cert}")


def _sign(args: argparse.Namespace) -> int:
    """Certify a CSR for its CN (a gate), or for each connection of the console it names."""
    from cryptography import x509

    from broker.pki import PkiError, SiteCA, common_name
    from broker.provision import Provisioning
    from protocol.errors import GatepostError
    from protocol.identity import Role, account_connections, console_certificates, parse_identity

    try:
        pem = args.csr.read_bytes()
        try:
            cn = common_name(x509.load_pem_x509_csr(pem))
        except ValueError as exc:
            raise PkiError(f"{args.csr}: not a PEM certificate signing request ({exc})") from None
        identity = parse_identity(cn)
        provisioned = set(Provisioning(args.state).users())
        if identity.account not in provisioned:
            raise PkiError(f"{cn!r} is not provisioned here; `gatepost broker add-gate` first")
        allowed = set(account_connections(identity.account))
        names = console_certificates(cn, args.workers) if identity.role is Role.CONSOLE else [cn]
        ca = SiteCA(args.state)
        out_dir = args.out or args.csr.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            issued = ca.sign_csr(pem, allowed, days=args.days, common_name_override=name)
            target = out_dir / f"{name}.crt"
            target.write_bytes(issued.cert_path.read_bytes())
            print(f"certificate {name}: {target} (until {issued.not_after:%Y-%m-%d})")
        (out_dir / "ca.crt").write_bytes(ca.ca_cert.read_bytes())
        print(f"site CA: {out_dir / 'ca.crt'}")
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    return 0


def _users(args: argparse.Namespace) -> int:
    from broker.provision import Provisioning
    from protocol.errors import GatepostError

    try:
        names = Provisioning(args.state).users()
    except (GatepostError, OSError) as exc:
        return _fail(exc)
    for name in names:
        print(name)
    return 0


def _run(args: argparse.Namespace) -> int:
    from broker.launcher import Broker
    from gatepost.stopping import StopSignals
    from protocol.errors import GatepostError

    broker = Broker(
        args.state, port=args.port, tls_port=args.tls_port, host=args.host, plain=not args.no_plain
    )

    # SIGTERM (systemd, docker stop) stops as cleanly as Ctrl-C; neither raises mid-statement
    with StopSignals() as stop:
        try:
            broker.start()
            plain = f"{broker.host}:{broker.port} (plain, loopback) and " if broker.plain else ""
            print(
                f"broker on {plain}{broker.host}:{broker.tls_port} (TLS), pid {broker.pid}, "
                f"log {broker.log_path}",
                flush=True,
            )
            while broker.running:
                if stop.wait(0.2):
                    return 0
            print(f"gatepost broker: mosquitto exited unexpectedly; see {broker.log_path}", file=sys.stderr)
            return 1
        except GatepostError as exc:
            return _fail(exc)
        finally:
            broker.stop()

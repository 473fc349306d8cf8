"""``gatepost install``, ``gatepost uninstall`` and ``gatepost bundle``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROLES = ("gate", "console", "broker")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    install = subparsers.add_parser(
        "install", help="install a gate, console or broker on this machine (or into --root)"
    )
    install.add_argument("role", choices=ROLES)
    install.add_argument("--config", "-c", type=Path, help="the role's TOML configuration (first install)")
    install.add_argument("--dry-run", action="store_true", help="print every change and make none")
    source = install.add_mutually_exclusive_group()
    source.add_argument("--bundle", type=Path, help="install offline from a bundle (folder or tarball)")
    source.add_argument("--wheel", type=Path, help="the gatepost wheel (dependencies from the package index)")
    install.add_argument("--root", type=Path, default=Path("/"), help="install into this root (default /)")
    install.add_argument(
        "--pi", action=argparse.BooleanOptionalAction, default=None, help="a Raspberry Pi (default: detect)"
    )
    install.add_argument(
        "--kiosk",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the guard screen's kiosk on the display (default: when [guard_screen] is enabled)",
    )
    install.add_argument(
        "--mqtt-secret", type=Path, help="the broker password, sealed as the units' systemd credential"
    )
    install.set_defaults(func=_install)

    uninstall = subparsers.add_parser("uninstall", help="remove what install made; data and keys stay")
    uninstall.add_argument("role", choices=ROLES)
    uninstall.add_argument("--purge", action="store_true", help="also delete data, keys and the user")
    uninstall.add_argument("--dry-run", action="store_true", help="print every change and make none")
    uninstall.add_argument("--root", type=Path, default=Path("/"))
    uninstall.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    uninstall.set_defaults(func=_uninstall)

    bundle = subparsers.add_parser(
        "bundle", help="write an offline bundle: every wheel for Linux aarch64 and x86_64, Python 3.11"
    )
    bundle.add_argument("--out", type=Path, required=True, help="the tarball to write (.tar or .tar.gz)")
    bundle.add_argument("--wheel", type=Path, help="the gatepost wheel (default: built from this checkout)")
    bundle.add_argument(
        "--debs", type=Path, nargs="*", default=[], help=".deb files to carry (arm64, amd64 or all)"
    )
    bundle.set_defaults(func=_bundle)


def _planner(role: str) -> object:
    from deploy import broker, console, gate

    return {"gate": gate, "console": console, "broker": broker}[role]


def _fail(exc: Exception) -> int:
    print(f"gatepost: {exc}", file=sys.stderr)
    return 1


def _needs_root(dry_run: bool) -> int | None:
    if not dry_run and os.geteuid() != 0:
        print(
            "gatepost: installing changes users, /etc and /opt: run it as root (or --dry-run)",
            file=sys.stderr,
        )
        return 1
    return None


def _install(args: argparse.Namespace) -> int:
    from deploy.common import Request
    from deploy.errors import InstallError
    from deploy.plan import execute
    from deploy.source import open_source
    from deploy.target import Target

    refused = _needs_root(args.dry_run)
    if refused is not None:
        return refused
    try:
        with open_source(args.bundle, args.wheel) as source:
            request = Request(
                args.role,
                Target(args.root),
                source,
                config=args.config,
                pi=args.pi,
                kiosk=args.kiosk,
                mqtt_secret=args.mqtt_secret,
            )
            plan = _planner(args.role).plan_install(request)  # type: ignore[attr-defined]
            execute(plan, request.target, dry_run=args.dry_run)
    except (InstallError, OSError) as exc:
        return _fail(exc)
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    from deploy.common import Request
    from deploy.errors import InstallError
    from deploy.plan import execute
    from deploy.source import WheelSource
    from deploy.target import Target

    refused = _needs_root(args.dry_run)
    if refused is not None:
        return refused
    request = Request(args.role, Target(args.root), WheelSource(Path("/nonexistent")))
    try:
        plan = _planner(args.role).plan_uninstall(request, args.purge)  # type: ignore[attr-defined]
        execute(plan, request.target, dry_run=args.dry_run)
    except (InstallError, OSError) as exc:
        return _fail(exc)
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from deploy.bundle import write_bundle
    from deploy.errors import InstallError

    try:
        out = write_bundle(args.out, wheel=args.wheel, debs=args.debs, say=print)
    except (InstallError, OSError) as exc:
        return _fail(exc)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB)")
    return 0

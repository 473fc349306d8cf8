"""Serving the web console from ``gatepost console run``, and the ``gatepost console user`` commands.

uvicorn runs in a thread of the console process, beside the ingestor: the web console
reads the same database and is stopped with it.  Handlers that touch the database run
in uvicorn's thread pool, so a slow query never stalls the live streams.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from console.users import Permission

if TYPE_CHECKING:
    from console.alarms import Alarm
    from console.config import ConsoleConfig
    from console.store import EventStore
    from console.web.context import WebContext
    from protocol.mqtt import BrokerEndpoint

log = logging.getLogger("gatepost.console.web")

START_TIMEOUT_S = 15.0


class WebServer:
    """uvicorn in a thread; ``poke`` wakes the live-update watcher (the ingestor's ``on_commit``)."""

    def __init__(self, ctx: WebContext, host: str, port: int) -> None:
        import uvicorn

        from console.web.app import create_app

        self.ctx = ctx
        self.app = create_app(ctx)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
                # the client's address counts failed logins: believe X-Forwarded-For from our proxies alone
                proxy_headers=bool(ctx.config.web.trusted_proxies),
                forwarded_allow_ips=list(ctx.config.web.trusted_proxies) or [],
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="console-web", daemon=True)
        self.host, self.port = host, port

    def start(self) -> bool:
        self.thread.start()
        ok = _wait(lambda: self.server.started or not self.thread.is_alive(), START_TIMEOUT_S)
        return ok and self.server.started

    def poke(self, *_args: object) -> None:
        self.app.state.watcher.poke()

    def publish_alarm(self, alarm: Alarm, opened: bool) -> None:
        """An alarm raised, updated or cleared outside the watcher (the gap watch), to open pages."""
        self.ctx.hub.publish("alarm", {**alarm.to_dict(), "opened": opened})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.ctx.db.close()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def start_web(config: ConsoleConfig, store: EventStore, endpoint: BrokerEndpoint | None) -> WebServer | None:
    """Start the web console if ``[web] enabled``; None when disabled.  Raises OSError if it cannot listen."""
    if not config.web.enabled:
        return None
    from console.web.app import build_context

    host, _, port = config.web.listen.rpartition(":")
    ctx = build_context(config, store, endpoint=endpoint)
    server = WebServer(ctx, host.strip("[]"), int(port))
    if not server.start():
        server.stop()
        raise OSError(f"the web console cannot listen on {config.web.listen}")
    print(f"web console on http://{config.web.listen}/", flush=True)
    if ctx.users.count() == 0:
        print(
            "no web console user exists yet: create the first with "
            "`gatepost console user add NAME --role admin --config FILE`",
            flush=True,
        )
    return server


# -- gatepost console user ... -------------------------------------------------------------


def add_user_parser(commands: argparse._SubParsersAction) -> None:
    user = commands.add_parser(
        "user", help="web console users: add, set a password, limit to sites, grant and revoke, list"
    )
    actions = user.add_subparsers(dest="user_command", required=True)
    add = actions.add_parser("add", help="create a user (the first one should be an admin)")
    add.add_argument("name")
    add.add_argument("--role", choices=("operator", "admin"), default="operator")
    add.add_argument(
        "--sites", default="*", help="the sites an operator sees: '*' or names separated by commas"
    )
    passwd = actions.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("name")
    sites = actions.add_parser("sites", help="limit an operator to sites ('*': every site)")
    sites.add_argument("name")
    sites.add_argument("sites", help="'*' or site names separated by commas")
    grant = actions.add_parser("grant", help="grant a permission: unlock SITE[/GATE]|*, passes SITE|*")
    revoke = actions.add_parser("revoke", help="take a granted permission back")
    for sub in (grant, revoke):
        sub.add_argument("name")
        sub.add_argument("permission", choices=[p.value for p in Permission])
        sub.add_argument("scope", help="'*', a site, or (unlock) site/gate")
    listing = actions.add_parser("list", help="list users, roles, sites and permissions")
    for sub in (add, passwd, sites, grant, revoke, listing):
        sub.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    for sub in (add, passwd):
        sub.add_argument(
            "--password-file", type=Path, help="read the password from this file instead of prompting"
        )
    user.set_defaults(func=user_command)


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def user_command(args: argparse.Namespace) -> int:
    from console.audit import AuditLog
    from console.config import load_config
    from console.db import Database, DatabaseError
    from console.users import UserError, UserStore, sites_text
    from console.web.app import store_url
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    try:
        db = Database(store_url(config))
    except (DatabaseError, OSError) as exc:
        print(f"gatepost console user: cannot open the database: {exc}", file=sys.stderr)
        return 1
    try:
        users = UserStore(db)
        audit = AuditLog(db)
        if args.user_command == "list":
            for user in users.list():
                grants = ",".join(f"{g.permission.value}:{g.scope}" for g in sorted(user.grants)) or "-"
                print(
                    f"{user.name}\t{user.role.value}\t{'disabled' if user.disabled else 'active'}\t{user.created_at}"
                    f"\tsites={sites_text(user.sites)}\tgrants={grants}"
                )
            return 0
        if args.user_command == "sites":
            limit = users.set_sites(args.name, args.sites)
            audit.record("cli", "user.sites", args.name, {"sites": sites_text(limit)})
            print(f"{args.name} sees {sites_text(limit)}")
            return 0
        if args.user_command in ("grant", "revoke"):
            if args.user_command == "grant":
                done = users.grant(args.name, args.permission, args.scope, by="cli")
                detail: dict[str, object] = {"permission": done.permission.value, "scope": done.scope}
            else:
                detail = {"permission": args.permission, "scope": args.scope}
                detail["held"] = users.revoke(args.name, args.permission, args.scope)
            audit.record("cli", f"user.{args.user_command}", args.name, detail)
            print(f"{args.user_command}: {args.name} {args.permission} {args.scope}")
            return 0
        password = _password(args)
        if args.user_command == "add":
            users.add(args.name, password, args.role, sites=args.sites)
            audit.record("cli", "user.add", args.name, {"role": args.role, "sites": args.sites})
            print(f"added {args.role} {args.name}")
        else:
            users.set_password(args.name, password)
            audit.record("cli", "user.password", args.name)
            print(f"password of {args.name} changed; their sessions are closed")
        return 0
    except (UserError, ValueError, OSError) as exc:
        print(f"gatepost console user: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()

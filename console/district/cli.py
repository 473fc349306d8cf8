"""``gatepost console district-token create|list|revoke``: the district's pull-API tokens from a shell.

The plain token is printed once, by ``create``, on stdout alone (so ``> file`` captures
nothing else); every change goes to the audit log as the web console's would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser(
        "district-token", help="read-only tokens for the district's pull API (/api/v1): create, list, revoke"
    )
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", help="make a token; it is printed once and stored only hashed")
    create.add_argument("label", help="who holds it, e.g. 'district platform'")
    create.add_argument("--sites", default="*", help="'*' or the site names it may read, comma-separated")
    listing = actions.add_parser("list", help="every token: id, label, sites, made, revoked, last used")
    revoke = actions.add_parser("revoke", help="revoke a token by its id (the part after gpd_)")
    revoke.add_argument("token_id")
    for sub in (create, listing, revoke):
        sub.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    token.set_defaults(func=token_command)


def token_command(args: argparse.Namespace) -> int:
    from console.audit import AuditLog
    from console.config import load_config
    from console.db import DatabaseError
    from console.district.tokens import TokenError, TokenStore
    from console.store import EventStore
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    try:
        store = EventStore(config.store.target)
    except (DatabaseError, OSError) as exc:
        print(f"gatepost console district-token: cannot open the store: {exc}", file=sys.stderr)
        return 1
    try:
        tokens = TokenStore(store.db)
        audit = AuditLog(store.db)
        if args.token_command == "create":
            token, plain = tokens.create(args.label, args.sites, by="cli")
            audit.record("cli", "district.token_create", token.token_id, {"sites": token.sites_text})
            print(plain)
            print(
                f"token {token.token_id} for {token.label!r}, sites {token.sites_text}: "
                "shown once, stored only as a hash",
                file=sys.stderr,
            )
            return 0
        if args.token_command == "list":
            for token in tokens.list():
                state = f"revoked {token.revoked_at}" if token.revoked_at else "active"
                print(
                    f"{token.token_id}\t{token.label}\tsites={token.sites_text}\t{state}"
                    f"\tmade {token.created_at} by {token.created_by}\tlast used {token.last_used_at or '-'}"
                )
            return 0
        if not tokens.revoke(args.token_id):
            print(f"gatepost console district-token: no active token {args.token_id!r}", file=sys.stderr)
            return 1
        audit.record("cli", "district.token_revoke", args.token_id, {})
        print(f"revoked {args.token_id}")
        return 0
    except (TokenError, DatabaseError) as exc:
        print(f"gatepost console district-token: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()

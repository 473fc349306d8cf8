"""``gatepost pass …``: the site office's commands for keys, passes and revocations.

Every command takes ``--office DIR``, the office's private folder; private keys never
leave it, and what gates need is written to ``DIR/public/``.  Exit codes: 0 done,
1 something was refused (a bad row, a failed check, a wrong passphrase), 2 the command
could not run (bad arguments, missing or insecure office), 3 ``show`` without an office
to verify.

The root key is sealed under a passphrase and asked for only by the commands that
certify keys (``init``, ``rotate-key``, ``retire-key``, ``renew-keys``, ``encrypt-root``),
as are the passphrases of ``backup`` and ``restore``.  A passphrase comes from
``--passphrase-file FILE`` (0600, first line), else ``$GATEPOST_PASSPHRASE``, else a
prompt on the terminal; never from the command line, where ``ps`` and the shell history
would show it to anyone.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import stat
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.errors import GatepostError

if TYPE_CHECKING:
    from console.passes.office import IssuedPass, Office

EXIT_OK, EXIT_REFUSED, EXIT_ERROR, EXIT_UNVERIFIED = 0, 1, 2, 3
PASSPHRASE_ENV = "GATEPOST_PASSPHRASE"
"""For automation: visible to the same user's processes (``/proc/PID/environ``) and inherited
by children, so prefer ``--passphrase-file``; never put it on the command line."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("pass", help="issue, print and revoke signed passes (site office)")
    commands = group.add_subparsers(dest="pass_command", required=True)

    def office(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--office", type=Path, required=required, help="the site office's private folder")

    def root(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", type=Path, help="the sealed root key file (default DIR/root.sealed)")
        passphrase(p)

    def passphrase(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--passphrase-file",
            type=Path,
            help=f"read the passphrase from this file's first line (else ${PASSPHRASE_ENV}, else a prompt)",
        )

    init = commands.add_parser(
        "init", help="create a site office: sealed root key, signing and command keys, trust bundle"
    )
    office(init)
    init.add_argument("--site", required=True, help="site name, as in topics (a-z, 0-9, -, _)")
    init.add_argument("--site-id", type=int, required=True, help="the number printed passes carry")
    init.add_argument("--timezone", default="Asia/Shanghai", help="site time zone for daily windows")
    root(init)
    init.set_defaults(func=_init)

    rotate = commands.add_parser("rotate-key", help="add a new signing key; older keys end with their passes")
    office(rotate)
    root(rotate)
    rotate.set_defaults(func=_rotate)

    retire = commands.add_parser(
        "retire-key", help="stop accepting a signing or command key now (leaked or lost)"
    )
    office(retire)
    retire.add_argument("kid", type=int)
    root(retire)
    retire.set_defaults(func=_retire)

    renew = commands.add_parser(
        "renew-keys", help="new signing and command keys for the web console; old private keys destroyed"
    )
    office(renew)
    renew.add_argument("--days", type=int, default=730, help="signing key lifetime (default 730)")
    renew.add_argument("--command-days", type=int, default=90, help="command key lifetime (default 90)")
    root(renew)
    renew.set_defaults(func=_renew)

    keys = commands.add_parser("keys", help="list the office's keys, their windows, and where the root is")
    office(keys)
    keys.set_defaults(func=_keys)

    seal = commands.add_parser("encrypt-root", help="seal an older office's root key under a passphrase")
    office(seal)
    root(seal)
    seal.set_defaults(func=_encrypt_root)

    backup = commands.add_parser("backup", help="the whole office in one file, sealed under a passphrase")
    office(backup)
    backup.add_argument("--out", type=Path, required=True, help="the backup file to write (must not exist)")
    backup.add_argument("--root", type=Path, help="also include a sealed root kept outside DIR")
    passphrase(backup)
    backup.set_defaults(func=_backup)

    restore = commands.add_parser("restore", help="recreate an office from a backup (DIR must not exist)")
    office(restore)
    restore.add_argument("backup", type=Path, help="the file `pass backup` wrote")
    passphrase(restore)
    restore.set_defaults(func=_restore)

    issue = commands.add_parser("issue", help="issue one pass and print it as PNG and PDF")
    office(issue)
    issue.add_argument("--holder", required=True)
    issue.add_argument("--unit", required=True, help="unit for residents (3-2-501), employer for others")
    issue.add_argument("--role", required=True, help="resident, service_worker, visitor or staff")
    issue.add_argument("--zones", default="0", help="zone numbers, e.g. 0,1 (default 0)")
    validity = issue.add_mutually_exclusive_group()
    validity.add_argument("--days", help="valid for this many days from now")
    validity.add_argument("--until", help="valid through this site-local date (YYYY-MM-DD)")
    issue.add_argument("--window", help="daily hours, e.g. 06:00-09:00")
    issue.add_argument("--photo", type=Path, help="holder's photo, printed and digested into the pass")
    issue.add_argument("--dynamic", action="store_true", help="phone pass: needs the changing 8-digit code")
    issue.add_argument("--out", type=Path, help="where to write <serial>.png/.pdf (default DIR/printed)")
    issue.set_defaults(func=_issue)

    batch = commands.add_parser("issue-batch", help="issue one pass per CSV row; bad rows are reported")
    office(batch)
    batch.add_argument("file", type=Path, help="CSV: holder,unit,role,days|until,zones,window,photo")
    batch.add_argument("--out", type=Path, help="where to write the cards (default DIR/printed)")
    batch.set_defaults(func=_issue_batch)

    reissue = commands.add_parser(
        "reissue", help="a new generation of a pass (lost, copied, new phone); earlier ones revoked"
    )
    office(reissue)
    reissue.add_argument("serial", type=int)
    again = reissue.add_mutually_exclusive_group()
    again.add_argument("--days", help="valid for this many days from now (default: the role's default)")
    again.add_argument("--until", help="valid through this site-local date (YYYY-MM-DD)")
    reissue.add_argument("--photo", type=Path, help="a new photo (default: keep the current one)")
    reissue.add_argument("--out", type=Path, help="where to write <serial>.png/.pdf (default DIR/printed)")
    reissue.set_defaults(func=_reissue)

    revoke = commands.add_parser("revoke", help="revoke a pass and publish a new revocation list")
    office(revoke)
    revoke.add_argument("serial", type=int)
    revoke.add_argument(
        "--before-generation", type=int, help="revoke only generations below N (the old copy of a re-issue)"
    )
    revoke.set_defaults(func=_revoke)

    show = commands.add_parser("show", help="decode a code and explain every check a gate makes")
    office(show, required=False)
    show.add_argument("--public", type=Path, help="a public/ folder (root.pub, bundle, revocations) instead")
    show.add_argument("code", help="the scanned digits, or - to read them from stdin")
    show.set_defaults(func=_show)


def main(argv: Sequence[str] | None = None) -> int:
    """``gatepost pass …`` on its own, for tests and for running without the top-level CLI."""
    parser = argparse.ArgumentParser(prog="gatepost")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _now() -> datetime:
    return datetime.now(UTC)


def _fail(command: str, exc: BaseException) -> int:
    from console.passes.sealed import SealError

    print(f"gatepost pass {command}: {exc}", file=sys.stderr)
    return EXIT_REFUSED if isinstance(exc, SealError) else EXIT_ERROR


class PassphraseUnavailable(GatepostError, RuntimeError):
    """No passphrase source: no file, no environment variable, and no terminal to ask on."""


def read_passphrase(args: argparse.Namespace, *, what: str, new: bool = False) -> str:
    """The passphrase for ``what``: from ``--passphrase-file``, ``$GATEPOST_PASSPHRASE`` or the terminal.

    A new one (sealing something) is asked twice on a terminal, and must be long enough.
    """
    from console.passes.sealed import check_new_passphrase

    path: Path | None = getattr(args, "passphrase_file", None)
    if path is not None:
        try:
            info = os.stat(path)
            if info.st_mode & 0o077:
                raise PassphraseUnavailable(
                    f"{path} has mode {stat.filemode(info.st_mode)}; a passphrase file must be 0600"
                )
            with open(path, encoding="utf-8") as f:
                value = f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise PassphraseUnavailable(f"cannot read the passphrase file: {exc}") from None
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    else:
        try:
            if not sys.stdin.isatty():  # a pipe or a service: asking would hang or read garbage
                raise EOFError
            value = getpass.getpass(f"passphrase for {what}: ")
            if new and getpass.getpass("the same passphrase again: ") != value:
                raise PassphraseUnavailable("the two passphrases differ")
        except (EOFError, OSError):
            raise PassphraseUnavailable(
                f"no passphrase for {what}: give --passphrase-file FILE or set ${PASSPHRASE_ENV}"
            ) from None
    if new:
        check_new_passphrase(value)
    elif not value:
        raise PassphraseUnavailable(f"an empty passphrase for {what}")
    return value


def _open(directory: Path) -> Office:
    """Open the office, and say so on stderr while its root key lies in the folder in clear."""
    from console.passes.office import Office

    office = Office.open(directory)
    if office.root_in_clear:
        print(
            f"warning: the site root key in {office.dir / 'root.key'} is not encrypted; "
            f"seal it with `gatepost pass encrypt-root --office {office.dir}`",
            file=sys.stderr,
        )
    return office


def _unlock(office: Office, args: argparse.Namespace) -> None:
    """Make the root key usable for this command: from its sealed file, or (older offices) in clear."""
    if office.root_in_clear and args.root is None:
        return
    office.unlock_root(read_passphrase(args, what="the site root key"), args.root)


def _init(args: argparse.Namespace) -> int:
    from console.passes.office import Office

    try:
        passphrase = read_passphrase(args, what="the new site root key", new=True)
        office = Office.create(
            args.office,
            site=args.site,
            site_id=args.site_id,
            timezone=args.timezone,
            passphrase=passphrase,
            root_file=args.root,
        )
    except (GatepostError, OSError) as exc:
        return _fail("init", exc)
    with office:
        public = office.public.resolve()
        print(
            f"site office for {office.bundle.site} (site id {office.bundle.site_id}) in {office.dir.resolve()}"
        )
        print(
            f"signing key kid {office.bundle.keys[-1].kid}, command key kid {office.bundle.command_keys[-1].kid},"
            f" trust bundle v{office.bundle.version}"
        )
        print(f"root key sealed in {(args.root or office.dir / 'root.sealed').resolve()}")
        print("copy these public files to every gate:")
        for name in ("root.pub", "bundle", "revocations"):
            print(f"  {public / name}")
        print(
            f"and, for phone passes, the site secret (keep it 0600): {(office.dir / 'site.secret').resolve()}"
        )
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    try:
        with _open(args.office) as office:
            _unlock(office, args)
            kid = office.rotate_key()
            print(
                f"new signing key kid {kid}; trust bundle v{office.bundle.version} in {office.public / 'bundle'}"
            )
            for entry in office.bundle.keys:
                if entry.kid != kid:
                    print(f"  kid {entry.kid} accepted until {entry.not_after:%Y-%m-%d %H:%M} UTC")
    except (GatepostError, OSError) as exc:
        return _fail("rotate-key", exc)
    return EXIT_OK


def _retire(args: argparse.Namespace) -> int:
    try:
        with _open(args.office) as office:
            _unlock(office, args)
            command = office.bundle.command_key(args.kid) is not None
            added = office.retire_key(args.kid)
            print(
                f"kid {args.kid} retired; trust bundle v{office.bundle.version} in {office.public / 'bundle'}"
            )
            kind = "command" if command else "signing"
            if added is not None:
                print(f"it was the only valid {kind} key: new {kind} key kid {added}")
            if command:
                print("commands it signed are refused by every gate that has the new bundle")
            else:
                print("passes it signed no longer open any gate that has the new bundle; re-issue them")
            print("publish it to the gates: gatepost console publish-passes --public " + str(office.public))
    except (GatepostError, OSError) as exc:
        return _fail("retire-key", exc)
    return EXIT_OK


def _renew(args: argparse.Namespace) -> int:
    from datetime import timedelta

    if not (1 <= args.days <= 36500 and 1 <= args.command_days <= 3650):
        print("gatepost pass renew-keys: --days 1-36500, --command-days 1-3650", file=sys.stderr)
        return EXIT_ERROR
    try:
        with _open(args.office) as office:
            _unlock(office, args)
            kid, command_kid = office.renew_keys(
                lifetime=timedelta(days=args.days), command_lifetime=timedelta(days=args.command_days)
            )
            signing = office.bundle.key(kid)
            command = office.bundle.command_key(command_kid)
            assert signing is not None and command is not None
            print(f"signing key kid {kid} until {signing.not_after:%Y-%m-%d} UTC")
            print(f"command key kid {command_kid} until {command.not_after:%Y-%m-%d} UTC")
            print(f"trust bundle v{office.bundle.version}; older private keys destroyed")
            print("publish it to the gates: gatepost console publish-passes --public " + str(office.public))
    except (GatepostError, OSError) as exc:
        return _fail("renew-keys", exc)
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    try:
        with _open(args.office) as office:
            now = _now()
            bundle = office.bundle
            if office.root_in_clear:
                where = "IN CLEAR (root.key): run `gatepost pass encrypt-root`"
            elif (office.dir / "root.sealed").exists():
                where = "sealed (root.sealed)"
            else:
                where = "not in this folder (kept elsewhere: give --root FILE when it is needed)"
            print(f"site {bundle.site}, trust bundle v{bundle.version}; root key {where}")
            for entry in (*bundle.keys, *bundle.command_keys):
                kind = "command" if bundle.command_key(entry.kid) else "signing"
                state = "valid" if entry.valid_at(now) else ("ended" if now >= entry.not_after else "not yet")
                held = "key file here" if (office.dir / f"{kind}-{entry.kid}.key").exists() else "no key file"
                print(
                    f"  kid {entry.kid:<4} {kind:<8} {entry.not_before:%Y-%m-%d} .. {entry.not_after:%Y-%m-%d}"
                    f"  {state:<8} {held}"
                )
    except (GatepostError, OSError) as exc:
        return _fail("keys", exc)
    return EXIT_OK


def _encrypt_root(args: argparse.Namespace) -> int:
    try:
        with _open(args.office) as office:
            if not office.root_in_clear:
                print("gatepost pass encrypt-root: the root key is already sealed", file=sys.stderr)
                return EXIT_REFUSED
            path = office.encrypt_root(
                read_passphrase(args, what="the site root key", new=True), root_file=args.root
            )
            print(f"root key sealed in {path}; the clear root.key was overwritten and deleted")
    except (GatepostError, OSError) as exc:
        return _fail("encrypt-root", exc)
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    from console.passes.backup import backup_office

    try:
        _open(args.office).close()
        passphrase = read_passphrase(args, what="the backup", new=True)
        summary = backup_office(args.office, args.out, passphrase, root_file=args.root)
    except (GatepostError, OSError) as exc:
        return _fail("backup", exc)
    print(f"backup of {summary.site}: {summary.files} files, {summary.bytes} bytes, sealed in {args.out}")
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    from console.passes.backup import restore_office

    try:
        passphrase = read_passphrase(args, what="the backup")
        summary = restore_office(args.backup, args.office, passphrase)
    except (GatepostError, OSError) as exc:
        return _fail("restore", exc)
    print(f"restored {summary.site}: {summary.files} files into {args.office}")
    return EXIT_OK


def _print_issued(office: Office, issued: IssuedPass, out: Path) -> tuple[Path, Path]:
    from console.passes.printing import print_pass

    photo = issued.photo.read_bytes() if issued.photo is not None else None
    png, pdf = print_pass(
        issued.pass_, issued.text, out, site=office.bundle.site, zone=office.timezone, photo=photo
    )
    if issued.phone_key is not None:
        phone = out / f"{issued.pass_.serial}.phone.json"
        fd = os.open(phone, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"serial": issued.pass_.serial, "text": issued.text, "key": issued.phone_key.hex()}, f)
    return png, pdf


def _issue(args: argparse.Namespace) -> int:
    from console.passes.office import (
        PassRequest,
        RequestError,
        parse_days,
        parse_role,
        parse_until,
        parse_window,
        parse_zones,
    )
    from console.passes.printing import find_cjk_font

    try:
        request = PassRequest(
            holder=args.holder,
            unit=args.unit,
            role=parse_role(args.role, "--role"),
            zones=parse_zones(args.zones, "--zones"),
            days=parse_days(args.days, "--days") if args.days else None,
            until=parse_until(args.until, "--until") if args.until else None,
            daily_window=parse_window(args.window, "--window") if args.window else None,
            photo=args.photo,
            dynamic=args.dynamic,
        )
    except RequestError as exc:
        print(f"gatepost pass issue: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        find_cjk_font()  # before a serial is spent on a pass that cannot be printed
        with _open(args.office) as office:
            issued = office.issue(request)
            png, pdf = _print_issued(office, issued, args.out or office.dir / "printed")
    except RequestError as exc:
        print(f"gatepost pass issue: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (GatepostError, OSError) as exc:
        return _fail("issue", exc)
    p = issued.pass_
    print(
        f"serial {p.serial}: {p.holder} ({p.unit}), {p.role.name.lower()}, until {p.valid_until:%Y-%m-%d %H:%M} UTC"
    )
    print(f"printed {png} and {pdf}")
    if issued.phone_key is not None:
        print(f"phone pass: give the holder {png.parent / f'{p.serial}.phone.json'} (secret, 0600)")
    print(f"code {issued.text}")
    return EXIT_OK


def _issue_batch(args: argparse.Namespace) -> int:
    from console.passes.batch import progress_bar, run_batch
    from console.passes.office import PassRequest
    from console.passes.printing import find_cjk_font

    try:
        find_cjk_font()
        with _open(args.office) as office:
            out = args.out or office.dir / "printed"

            def issue_one(request: PassRequest) -> int:
                issued = office.issue(request)
                _print_issued(office, issued, out)
                return issued.pass_.serial

            def progress(done: int, total: int) -> None:
                sys.stderr.write(progress_bar(done, total))
                sys.stderr.flush()

            result = run_batch(args.file, issue_one, progress=progress)
            sys.stderr.write("\n")
    except (GatepostError, OSError, UnicodeDecodeError) as exc:
        return _fail("issue-batch", exc)
    for error in result.rejected:
        print(
            f"rejected {error.file}:{error.line} column {error.column}: {error.reason}: {error.detail}",
            file=sys.stderr,
        )
    first_last = f" (serials {result.issued[0]}-{result.issued[-1]})" if result.issued else ""
    print(f"issued {len(result.issued)}{first_last}, rejected {len(result.rejected)}; cards in {out}")
    return EXIT_REFUSED if result.rejected else EXIT_OK


def _reissue(args: argparse.Namespace) -> int:
    from console.passes.office import RequestError, parse_days, parse_until
    from console.passes.printing import find_cjk_font

    try:
        days = parse_days(args.days, "--days") if args.days else None
        until = parse_until(args.until, "--until") if args.until else None
        find_cjk_font()
        with _open(args.office) as office:
            issued, revocations = office.reissue(args.serial, days=days, until=until, photo=args.photo)
            png, pdf = _print_issued(office, issued, args.out or office.dir / "printed")
    except RequestError as exc:
        print(f"gatepost pass reissue: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (GatepostError, OSError) as exc:
        return _fail("reissue", exc)
    p = issued.pass_
    print(
        f"serial {p.serial} generation {p.generation}: {p.holder} ({p.unit}),"
        f" until {p.valid_until:%Y-%m-%d %H:%M} UTC"
    )
    print(f"printed {png} and {pdf}")
    if issued.phone_key is not None:
        print(f"phone pass: give the holder {png.parent / f'{p.serial}.phone.json'} (secret, 0600)")
    print(f"generations below {p.generation} revoked: revocation list v{revocations.version}")
    print("publish it to the gates: gatepost console publish-passes --public " + str(office.public))
    print(f"code {issued.text}")
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:

    try:
        with _open(args.office) as office:
            revocations = office.revoke(args.serial, before_generation=args.before_generation)
            which = (
                f"generations below {args.before_generation} of serial {args.serial}"
                if args.before_generation is not None
                else f"serial {args.serial}"
            )
            print(
                f"revoked {which}; revocation list v{revocations.version} in {office.public / 'revocations'}"
            )
            print("publish it to the gates: gatepost console publish-passes --public " + str(office.public))
    except (GatepostError, OSError) as exc:
        return _fail("revoke", exc)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from console.passes.explain import explain
    from console.passes.office import PUBLIC, SITE_SECRET, gate_state_from
    from protocol.passes.keys import load_site_secret

    code = sys.stdin.read(4096) if args.code == "-" else args.code
    state = None
    public = args.public or (args.office / PUBLIC if args.office else None)
    if public is not None:
        try:
            secret = load_site_secret(args.office / SITE_SECRET) if args.office else None
            state = gate_state_from(public, site_secret=secret)
        except (GatepostError, OSError) as exc:
            return _fail("show", exc)
    result = explain(code, _now(), state)
    for check in result.checks:
        print(check.line())
    if result.failed:
        print("verdict: REFUSED, see FAIL above")
        return EXIT_REFUSED
    if not result.verified:
        print("verdict: not verified (give --office DIR or --public DIR)")
        return EXIT_UNVERIFIED
    print("verdict: valid (a gate of one of its zones would open)")
    return EXIT_OK

"""``gatepost pass …``: the site office's commands for keys, passes and revocations.

Every command takes ``--office DIR``, the office's private folder; private keys never
leave it, and what gates need is written to ``DIR/public/``.  Exit codes: 0 done,
1 something was refused (a bad row, a failed check), 2 the command could not run
(bad arguments, missing or insecure office), 3 ``show`` without an office to verify.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.errors import GatepostError

if TYPE_CHECKING:
    from console.passes.office import IssuedPass, Office

EXIT_OK, EXIT_REFUSED, EXIT_ERROR, EXIT_UNVERIFIED = 0, 1, 2, 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("pass", help="issue, print and revoke signed passes (site office)")
    commands = group.add_subparsers(dest="pass_command", required=True)

    def office(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--office", type=Path, required=required, help="the site office's private folder")

    init = commands.add_parser("init", help="create a site office: root key, signing key, trust bundle")
    office(init)
    init.add_argument("--site", required=True, help="site name, as in topics (a-z, 0-9, -, _)")
    init.add_argument("--site-id", type=int, required=True, help="the number printed passes carry")
    init.add_argument("--timezone", default="Asia/Shanghai", help="site time zone for daily windows")
    init.set_defaults(func=_init)

    rotate = commands.add_parser("rotate-key", help="add a new signing key; older keys end with their passes")
    office(rotate)
    rotate.set_defaults(func=_rotate)

    retire = commands.add_parser("retire-key", help="stop accepting a signing key now (leaked or lost)")
    office(retire)
    retire.add_argument("kid", type=int)
    retire.set_defaults(func=_retire)

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
    print(f"gatepost pass {command}: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _init(args: argparse.Namespace) -> int:
    from console.passes.office import Office

    try:
        office = Office.create(args.office, site=args.site, site_id=args.site_id, timezone=args.timezone)
    except (GatepostError, OSError) as exc:
        return _fail("init", exc)
    with office:
        public = office.public.resolve()
        print(
            f"site office for {office.bundle.site} (site id {office.bundle.site_id}) in {office.dir.resolve()}"
        )
        print(f"signing key kid {office.bundle.keys[-1].kid}, trust bundle v{office.bundle.version}")
        print("copy these public files to every gate:")
        for name in ("root.pub", "bundle", "revocations"):
            print(f"  {public / name}")
        print(
            f"and, for phone passes, the site secret (keep it 0600): {(office.dir / 'site.secret').resolve()}"
        )
    return EXIT_OK


def _rotate(args: argparse.Namespace) -> int:
    from console.passes.office import Office

    try:
        with Office.open(args.office) as office:
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
    from console.passes.office import Office

    try:
        with Office.open(args.office) as office:
            added = office.retire_key(args.kid)
            print(
                f"kid {args.kid} retired; trust bundle v{office.bundle.version} in {office.public / 'bundle'}"
            )
            if added is not None:
                print(f"it was the only valid key: new signing key kid {added}")
            print("passes it signed no longer open any gate that has the new bundle; re-issue them")
    except (GatepostError, OSError) as exc:
        return _fail("retire-key", exc)
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
        Office,
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
        with Office.open(args.office) as office:
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
    from console.passes.office import Office, PassRequest
    from console.passes.printing import find_cjk_font

    try:
        find_cjk_font()
        with Office.open(args.office) as office:
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
    from console.passes.office import Office, RequestError, parse_days, parse_until
    from console.passes.printing import find_cjk_font

    try:
        days = parse_days(args.days, "--days") if args.days else None
        until = parse_until(args.until, "--until") if args.until else None
        find_cjk_font()
        with Office.open(args.office) as office:
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
    from console.passes.office import Office

    try:
        with Office.open(args.office) as office:
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

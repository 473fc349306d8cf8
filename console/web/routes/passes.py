"""``/passes``: issue, show, print, search and revoke signed passes, and import them from CSV.

Everything goes through the site office (:mod:`console.passes.office`) exactly as the
``gatepost pass`` commands do, so a pass issued here and one issued at the command line
share one serial counter, one register and one revocation list.  The office's SQLite
connection belongs to the thread that opened it, so each request opens the office,
does its work and closes it inside one worker thread.

Who may: the office belongs to one site, and a user limited to other sites sees none of
it.  Issuing, printing, revoking, publishing and handing out a dynamic pass's phone key
need the ``passes`` permission for that site (console/users.py): a printed card and a
phone key *are* the credential, so only those who issue passes get them, and every
download is audited.  Without the permission the answer is 403 and an audit entry
(``pass.…denied``); reading the list and a pass's details needs only the site.  A bulk
import is an admin's (a wrong spreadsheet can issue a thousand passes); its ``photo``
column names files uploaded with the CSV, never a path on the server.  Every action is
audited.  A revocation is published to the gates at once (the signed list, retained on
the broker); if the broker cannot be reached, the revocation is still recorded and the
page says so and offers to publish again.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console import photos
from console.passes.office import (
    MAX_PHOTO_BYTES,
    Office,
    OfficeError,
    PassRecord,
    PassRequest,
    RequestError,
    RequestReason,
    parse_days,
    parse_role,
    parse_until,
    parse_window,
    parse_zones,
)
from console.photos import PhotoError
from console.users import Permission
from console.web.auth import Endpoint, admin_required, current_user, login_required, refuse
from console.web.forms import MAX_FIELD_CHARS, PageError, audit, field_text, refused, thumbnail_folder
from console.web.imports import ImportJob, RowProblem, job_events, job_page, job_state, read_csv, start_import
from console.web.render import render
from protocol.errors import GatepostError
from protocol.passes import Role

log = logging.getLogger("gatepost.console.web.passes")

PRINTED = "printed"
SEARCH_LIMIT = 100
MAX_GENERATIONS = 1000
MAX_CSV_BYTES = 20 * 1024 * 1024
MAX_REASON_CHARS = 500
PHOTO_TYPES = {".jpg", ".jpeg", ".png", ".webp"}
MAX_IMPORT_PHOTOS = 500
"""Photos one import may carry (the security middleware parses at most 1000 files); the
request body's 64 MiB bounds their bytes."""
PUBLISH_TIMEOUT_S = 3.0
"""How long the operator waits for the broker after a revocation before the page says "not sent yet"."""

T = TypeVar("T")


# -- the office, one thread at a time ---------------------------------------------------------


def _office_dir(request: Request) -> Path:
    directory = request.app.state.ctx.office_dir
    if directory is None:
        raise PageError("passes.error.no_office", status=503)
    return Path(directory)


async def with_office(request: Request, work: Callable[[Office], T]) -> T:
    """Open the office, run ``work`` and close it, all in one worker thread."""
    directory = _office_dir(request)

    def run() -> T:
        try:
            office = Office.open(directory)
        except OfficeError as exc:
            raise PageError("passes.error.office", status=503, detail=exc.detail) from None
        with office:
            return work(office)

    return await run_in_threadpool(run)


async def office_site(request: Request) -> str:
    """The site the office issues for; read once per office folder (it does not change)."""
    directory = _office_dir(request)
    known: dict[Path, str] | None = getattr(request.app.state, "office_sites", None)
    if known is None:
        known = request.app.state.office_sites = {}
    if directory not in known:
        known[directory] = await with_office(request, lambda office: office.bundle.site)
    return known[directory]


def guarded(
    *, permission: Permission | None = None, action: str | None = None
) -> Callable[[Endpoint], Endpoint]:
    """Let the request through only if the user sees the office's site (and holds ``permission`` there).

    Refused with 403; when ``action`` is given (a change, or a file that is a credential)
    the refusal is audited as ``<action>.denied``.  Without an office the page itself
    says so.
    """

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            try:
                site = await office_site(request)
            except PageError:
                return await endpoint(request)
            user = current_user(request)
            assert user is not None
            if user.sees(site) and (permission is None or user.may(permission, site)):
                return await endpoint(request)
            key = "error.not_your_site" if not user.sees(site) else "error.no_passes"
            if action is None:
                return render(request, "error.html", status_code=403, message_key=key)
            serial = request.path_params.get("serial")
            target = f"pass:{serial}" if serial is not None else f"site:{site}"
            return await refuse(
                request, action, target, {"site": site, "wanted": str(permission)}, message_key=key
            )

        return wrapper

    return wrap


def may_issue(request: Request, site: str) -> bool:
    user = current_user(request)
    return user is not None and user.may(Permission.PASSES, site)


@dataclass(frozen=True, slots=True)
class PassRow:
    serial: int
    generation: int
    holder: str
    unit: str
    role: str
    zones: str
    valid_from: str
    valid_until: str
    daily_window: str | None
    dynamic: bool
    issued_at: str
    photo_digest: str | None
    status: str
    """``valid``, ``expired`` or ``revoked``."""
    revoked_at: str | None

    @property
    def stem(self) -> str:
        return str(self.serial) if not self.generation else f"{self.serial}-{self.generation}"

    @property
    def window_text(self) -> str:
        if not self.daily_window:
            return ""
        start, end = (int(v) for v in self.daily_window.split("-"))
        return f"{start // 60:02d}:{start % 60:02d}–{end // 60:02d}:{end % 60:02d}"


def _row(record: PassRecord, now: datetime) -> PassRow:
    if record.revoked:
        status = "revoked"
    elif datetime.fromisoformat(record.valid_until) <= now:
        status = "expired"
    else:
        status = "valid"
    return PassRow(
        record.serial, record.generation, record.holder, record.unit, record.role, record.zones,
        record.valid_from, record.valid_until, record.daily_window, record.dynamic, record.issued_at,
        record.photo_digest, status, record.revoked_at if status == "revoked" else None,
    )  # fmt: skip


def search_passes(office: Office, query: str, *, limit: int = SEARCH_LIMIT) -> list[PassRow]:
    """Newest first; a number finds that serial, any text finds holders and units containing it."""
    now = datetime.now(UTC)
    return [_row(r, now) for r in office.search(query[:MAX_FIELD_CHARS], limit)]


def pass_rows(office: Office, serial: int) -> list[PassRow]:
    """Every generation of one serial, oldest first."""
    now = datetime.now(UTC)
    records = office.search(str(serial), MAX_GENERATIONS, serial_only=True)
    return [_row(r, now) for r in reversed(records)]


# -- forms --------------------------------------------------------------------------------------

ROLES = [role.name.lower() for role in Role]


async def _read_upload(upload: UploadFile, limit: int, field: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise RequestError(RequestReason.BAD_PHOTO, field, f"over {limit} bytes")
    return data


async def pass_request(form: FormData, photo_dir: Path) -> tuple[PassRequest, bytes | None]:
    """The issue form as a :class:`PassRequest`; the photo, if any, is written into ``photo_dir``."""
    holder, unit = field_text(form, "holder"), field_text(form, "unit")
    for name, value in (("holder", holder), ("unit", unit), ("role", field_text(form, "role"))):
        if not value:
            raise RequestError(RequestReason.MISSING, name, "empty")
    days, until = field_text(form, "days"), field_text(form, "until")
    if days and until:
        raise RequestError(RequestReason.BAD_DAYS, "days", "give days or until, not both")
    photo_path = None
    photo_bytes = None
    upload = form.get("photo")
    if isinstance(upload, UploadFile) and upload.filename:
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in PHOTO_TYPES:
            raise RequestError(
                RequestReason.BAD_PHOTO, "photo", f"{suffix or 'no extension'}: use JPEG or PNG"
            )
        photo_bytes = await _read_upload(upload, MAX_PHOTO_BYTES, "photo")
        if photo_bytes:
            photo_path = photo_dir / f"upload{suffix}"
            photo_path.write_bytes(photo_bytes)
        else:
            photo_bytes = None
    request = PassRequest(
        holder=holder,
        unit=unit,
        role=parse_role(field_text(form, "role")),
        zones=parse_zones(field_text(form, "zones") or "0"),
        days=parse_days(days) if days else None,
        until=parse_until(until) if until else None,
        daily_window=parse_window(field_text(form, "window")) if field_text(form, "window") else None,
        photo=photo_path,
        dynamic=form.get("dynamic") in ("1", "on", "true"),
    )
    return request, photo_bytes


def _print(office: Office, issued: Any, photo: bytes | None) -> tuple[Path, Path]:
    from console.passes.printing import print_pass

    return print_pass(
        issued.pass_,
        issued.text,
        office.dir / PRINTED,
        site=office.bundle.site,
        zone=office.timezone,
        photo=photo,
    )


def _write_phone_key(office: Office, issued: Any) -> None:
    """The dynamic pass's key for the holder's phone, 0600 beside the card, as ``gatepost pass issue`` writes it."""
    import json

    if issued.phone_key is None:
        return
    path = office.dir / PRINTED / f"{issued.pass_.serial}.phone.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"serial": issued.pass_.serial, "text": issued.text, "key": issued.phone_key.hex()}, f)


async def _thumbnail(request: Request, photo: bytes | None) -> None:
    """Give the gates' guard screens the holder's face, if the console delivers thumbnails.

    Decoding and scaling a phone photo takes Pillow a good part of a second: not on the event loop.
    """
    folder = thumbnail_folder(request)
    if photo is None or folder is None:
        return
    from console.thumbnails import ThumbnailError, save_thumbnail

    try:
        await run_in_threadpool(save_thumbnail, folder, photo)
    except (ThumbnailError, OSError) as exc:
        log.warning("pass photo thumbnail not written: %s", exc)


def _as_uploaded(exc: Exception, pass_req: PassRequest | None, form: FormData) -> Exception:
    """A refusal of the photo naming the operator's own file, not the server's temporary copy of it."""
    upload = form.get("photo")
    photo = pass_req.photo if pass_req is not None else None
    if not isinstance(exc, RequestError) or photo is None or not isinstance(upload, UploadFile):
        return exc
    name = Path(upload.filename or "").name[:100]
    return RequestError(exc.reason, exc.field, exc.detail.replace(str(photo), name))


def _error_page(request: Request, template: str, exc: Exception, **ctx: Any) -> Response:
    """The form again with the reason it was refused: a typed message, never a 500."""
    if isinstance(exc, PageError):
        return refused(request, template, exc, **ctx)
    if isinstance(exc, RequestError):
        values = {"field": exc.field, "reason": exc.reason.value, "detail": exc.detail}
        return render(
            request, template, status_code=400, error_key="passes.error.request", error_values=values, **ctx
        )
    if isinstance(exc, OfficeError):
        values = {"reason": exc.reason.value, "detail": exc.detail}
        return render(
            request, template, status_code=409, error_key="passes.error.refused", error_values=values, **ctx
        )
    values = {"detail": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}
    return render(
        request, template, status_code=500, error_key="passes.error.failed", error_values=values, **ctx
    )


# -- pages --------------------------------------------------------------------------------------


@login_required
@guarded()
async def list_page(request: Request) -> Response:
    query = request.query_params.get("q", "")[:MAX_FIELD_CHARS]
    try:
        rows, site = await with_office(
            request, lambda office: (search_passes(office, query), office.bundle.site)
        )
    except PageError as exc:
        return _error_page(request, "passes/list.html", exc, rows=[], q=query)
    return render(request, "passes/list.html", rows=rows, q=query, can_issue=may_issue(request, site))


@login_required
@guarded(permission=Permission.PASSES)
async def new_page(request: Request) -> Response:
    return render(request, "passes/new.html", roles=ROLES, form={})


@login_required
@guarded(permission=Permission.PASSES, action="pass.issue")
async def issue(request: Request) -> Response:
    """Issue, print and thumbnail one pass; with a photo, only while one of the upload places is free."""
    form = await request.form(max_files=1, max_fields=20)
    upload = form.get("photo")
    try:
        with photos.upload_slot() if isinstance(upload, UploadFile) and upload.filename else nullcontext():
            return await _issue(request, form)
    except PhotoError as exc:  # no place: refused before anything was spent on it
        await form.close()
        log.info("pass issue refused: %s", exc)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        page = _error_page(
            request,
            "passes/new.html",
            PageError("passes.error.photo_busy", status=503),
            roles=ROLES,
            form=values,
        )
        page.headers["retry-after"] = "5"
        return page


async def _issue(request: Request, form: FormData) -> Response:
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    pass_req: PassRequest | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="gatepost-upload-") as tmp:
            pass_req, photo = await pass_request(form, Path(tmp))

            def work(office: Office) -> tuple[int, int]:
                from console.passes.printing import PrintError, find_cjk_font

                try:
                    find_cjk_font()  # before a serial is spent on a pass that cannot be printed
                except PrintError as exc:
                    raise PageError("passes.error.print", status=503, detail=exc.detail) from None
                issued = office.issue(pass_req)
                try:
                    _print(office, issued, photo)
                    _write_phone_key(office, issued)
                except (GatepostError, OSError) as exc:
                    log.warning("pass %s issued but not printed: %s", issued.pass_.serial, exc)
                return issued.pass_.serial, issued.pass_.generation

            serial, generation = await with_office(request, work)
    except (PageError, RequestError, OfficeError) as exc:
        log.info("pass issue refused: %s", exc)
        shown = _as_uploaded(exc, pass_req, form)
        return _error_page(request, "passes/new.html", shown, roles=ROLES, form=values)
    finally:
        await form.close()
    await _thumbnail(request, photo)
    await audit(
        request,
        "pass.issue",
        f"pass:{serial}",
        {
            "holder": pass_req.holder,
            "unit": pass_req.unit,
            "role": pass_req.role.name.lower(),
            "generation": generation,
        },
    )
    return RedirectResponse(f"/passes/{serial}?issued=1", status_code=303)


async def _show_context(request: Request, serial: int) -> dict[str, Any]:
    def work(office: Office) -> dict[str, Any]:
        rows = pass_rows(office, serial)
        printed = office.dir / PRINTED
        return {
            "rows": rows,
            "site": office.bundle.site,
            "printed": {row.stem: (printed / f"{row.stem}.png").exists() for row in rows},
            "phone": (printed / f"{serial}.phone.json").exists(),
        }

    ctx = await with_office(request, work)
    if not ctx["rows"]:
        raise PageError("passes.error.unknown_serial", status=404, serial=serial)
    return ctx


async def _pass_page(request: Request, template: str, **extra: Any) -> Response:
    """``template`` for the serial in the URL and every generation of it; an unknown serial is a 404 there."""
    serial = request.path_params["serial"]
    try:
        ctx = await _show_context(request, serial)
    except PageError as exc:
        return _error_page(request, template, exc, serial=serial, rows=[])
    return render(request, template, serial=serial, **extra, **ctx)


@login_required
@guarded()
async def show_page(request: Request) -> Response:
    try:
        site = await office_site(request)
    except PageError:
        site = ""  # no office: the page says so
    return await _pass_page(
        request,
        "passes/show.html",
        issued=request.query_params.get("issued") == "1",
        can_issue=may_issue(request, site),
    )


def _printed(request: Request, name: str, missing: str) -> Path | Response:
    """A file the office printed, or the JSON a script gets instead (``missing`` when it is not there)."""
    try:
        path = _office_dir(request) / PRINTED / name
    except PageError:
        return JSONResponse({"error": "no_office"}, status_code=503)
    if not path.is_file():
        return JSONResponse({"error": missing}, status_code=404)
    return path


@login_required
@guarded(permission=Permission.PASSES, action="pass.print")
async def card_file(request: Request) -> Response:
    """The printed card (PNG to look at, PDF to print); a download or a PDF is audited as a print."""
    serial = request.path_params["serial"]
    fmt = request.path_params["fmt"]
    generation = request.query_params.get("generation", "0")
    if fmt not in ("png", "pdf"):
        return JSONResponse({"error": "bad_format"}, status_code=404)
    if not (generation.isascii() and generation.isdigit()) or len(generation) > 6:
        return JSONResponse({"error": "bad_generation"}, status_code=400)
    stem = str(serial) if generation == "0" else f"{serial}-{int(generation)}"
    path = _printed(request, f"{stem}.{fmt}", "not_printed")
    if isinstance(path, Response):
        return path
    download = request.query_params.get("download") == "1" or fmt == "pdf"
    if download:
        await audit(request, "pass.print", f"pass:{serial}", {"format": fmt, "generation": int(generation)})
    media = "application/pdf" if fmt == "pdf" else "image/png"
    return FileResponse(
        path,
        media_type=media,
        filename=f"pass-{stem}.{fmt}",
        content_disposition_type="attachment" if download else "inline",
    )


@login_required
@guarded(permission=Permission.PASSES, action="pass.phone_key")
async def phone_file(request: Request) -> Response:
    serial = request.path_params["serial"]
    path = _printed(request, f"{serial}.phone.json", "not_a_dynamic_pass")
    if isinstance(path, Response):
        return path
    await audit(request, "pass.phone_key", f"pass:{serial}", {})
    return FileResponse(path, media_type="application/json", filename=f"pass-{serial}.phone.json")


@login_required
@guarded(permission=Permission.PASSES)
async def revoke_page(request: Request) -> Response:
    return await _pass_page(request, "passes/revoke.html")


def publish(request: Request, public: Path, site: str) -> str | None:
    """Send the signed documents to the site's gates; ``None`` when done, else why not."""
    from console.documents import PublishError, publish_documents
    from protocol.identity import ConsoleConnection

    config = request.app.state.ctx.config
    try:
        publish_documents(
            config.mqtt.endpoint().for_connection(ConsoleConnection.WEB),
            site,
            public,
            timeout=PUBLISH_TIMEOUT_S,
        )
    except (PublishError, GatepostError, OSError) as exc:
        log.warning("revocation list not published: %s", exc)
        return str(exc).splitlines()[0][:300]
    return None


@login_required
@guarded(permission=Permission.PASSES, action="pass.revoke")
async def revoke(request: Request) -> Response:
    serial = request.path_params["serial"]
    form = await request.form(max_files=0, max_fields=10)
    reason = field_text(form, "reason", MAX_REASON_CHARS)
    try:
        if not reason:
            raise PageError("passes.error.reason_required")
        if form.get("confirm") != "yes":
            raise PageError("passes.error.confirm_required")

        def work(office: Office) -> tuple[int, Path, str]:
            revocations = office.revoke(serial)
            return revocations.version, office.public, office.bundle.site

        version, public, site = await with_office(request, work)
    except (PageError, OfficeError) as exc:
        log.info("revocation of %s refused: %s", serial, exc)
        try:
            ctx = await _show_context(request, serial)
        except PageError:
            ctx = {"rows": []}
        return _error_page(request, "passes/revoke.html", exc, serial=serial, **ctx)
    failure = await run_in_threadpool(publish, request, public, site)
    await audit(
        request,
        "pass.revoke",
        f"pass:{serial}",
        {"reason": reason, "list_version": version, "published": failure is None, "publish_error": failure},
    )
    return RedirectResponse(
        f"/passes/{serial}?revoked={version}" + ("&unpublished=1" if failure else ""), status_code=303
    )


@login_required
@guarded(permission=Permission.PASSES, action="pass.publish")
async def publish_again(request: Request) -> Response:
    """Publish the current trust bundle and revocation list (after a failed attempt, or to be sure)."""
    try:
        public, site = await with_office(request, lambda office: (office.public, office.bundle.site))
    except PageError as exc:
        return _error_page(request, "passes/list.html", exc, rows=[], q="")
    failure = await run_in_threadpool(publish, request, public, site)
    await audit(request, "pass.publish", f"site:{site}", {"published": failure is None, "error": failure})
    if failure:
        return _error_page(
            request,
            "passes/list.html",
            PageError("passes.error.publish", status=502, detail=failure),
            rows=[],
            q="",
        )
    return RedirectResponse("/passes?published=1", status_code=303)


# -- bulk import --------------------------------------------------------------------------------


@admin_required
async def import_page(request: Request) -> Response:
    return render(request, "passes/import.html")


async def import_photos(form: FormData) -> dict[str, bytes]:
    """The photos uploaded with a CSV, by file name: the only photos its rows may name."""
    found: dict[str, bytes] = {}
    uploads = [u for u in form.getlist("photos") if isinstance(u, UploadFile) and u.filename]
    if len(uploads) > MAX_IMPORT_PHOTOS:
        raise PageError("passes.error.too_many_photos", limit=MAX_IMPORT_PHOTOS)
    for upload in uploads:
        name = Path(upload.filename or "").name[:100]
        suffix = Path(name).suffix.lower()
        if suffix not in PHOTO_TYPES:
            raise PageError(
                "passes.error.import_photo", name=name, detail=f"{suffix or 'no extension'}: use JPEG or PNG"
            )
        if name in found:
            raise PageError("passes.error.import_photo", name=name, detail="chosen twice")
        data = await upload.read(MAX_PHOTO_BYTES + 1)
        if len(data) > MAX_PHOTO_BYTES:
            raise PageError("passes.error.import_photo", name=name, detail=f"over {MAX_PHOTO_BYTES} bytes")
        found[name] = data
    return found


@admin_required
async def import_start(request: Request) -> Response:
    form = await request.form(max_files=MAX_IMPORT_PHOTOS + 1, max_fields=10)
    try:
        upload = await read_csv(form, MAX_CSV_BYTES, "passes")
        uploaded = await import_photos(form)
        directory = _office_dir(request)
    except PageError as exc:
        return refused(request, "passes/import.html", exc)
    finally:
        await form.close()
    data = upload.data

    def work(job: ImportJob) -> None:
        from console.passes.batch import count_rows, run_batch
        from console.passes.printing import find_cjk_font

        with tempfile.TemporaryDirectory(prefix="gatepost-import-") as tmp:
            path = Path(tmp) / "passes.csv"
            path.write_bytes(data)
            photos = Path(tmp) / "photos"
            photos.mkdir()
            named: dict[str, Path] = {}
            for index, (name, photo) in enumerate(uploaded.items()):
                named[name] = photos / f"{index}{Path(name).suffix.lower()}"  # our name, not the sender's
                named[name].write_bytes(photo)
            job.update(total=count_rows(path))
            find_cjk_font()
            with Office.open(directory) as office:

                def issue_one(pass_req: PassRequest) -> int:
                    issued = office.issue(pass_req)
                    photo = issued.photo.read_bytes() if issued.photo is not None else None
                    _print(office, issued, photo)
                    _write_phone_key(office, issued)
                    # in place, not a copy per row: snapshot() reads the list under the job's
                    # lock, an append is atomic, and the progress update after the row tells the page
                    job.imported.append(str(issued.pass_.serial))
                    return issued.pass_.serial

                result = run_batch(
                    path,
                    issue_one,
                    progress=lambda done, total: job.update(done=done, total=total),
                    photos=named,
                )
            job.update(
                problems=[RowProblem(e.line, e.column, str(e.reason), e.detail) for e in result.rejected],
            )

    def summary(job: ImportJob) -> dict[str, Any]:
        return {"issued": len(job.imported), "rejected": len(job.problems), "error": job.error}

    return start_import(request, "passes", upload.filename, work, "pass.import", summary)


routes: list[BaseRoute] = [
    Route("/passes", list_page, methods=["GET"], name="passes"),
    Route("/passes/new", new_page, methods=["GET"], name="passes_new"),
    Route("/passes/new", issue, methods=["POST"], name="passes_issue"),
    Route("/passes/publish", publish_again, methods=["POST"], name="passes_publish"),
    Route("/passes/import", import_page, methods=["GET"], name="passes_import"),
    Route("/passes/import", import_start, methods=["POST"], name="passes_import_start"),
    Route("/passes/import/{job:str}", job_page("passes"), methods=["GET"], name="passes_job"),
    Route("/passes/import/{job:str}/events", job_events("passes"), methods=["GET"], name="passes_job_events"),
    Route(
        "/passes/import/{job:str}/state.json", job_state("passes"), methods=["GET"], name="passes_job_json"
    ),
    Route("/passes/{serial:int}", show_page, methods=["GET"], name="pass"),
    Route("/passes/{serial:int}/card.{fmt:str}", card_file, methods=["GET"], name="pass_card"),
    Route("/passes/{serial:int}/phone.json", phone_file, methods=["GET"], name="pass_phone"),
    Route("/passes/{serial:int}/revoke", revoke_page, methods=["GET"], name="pass_revoke_confirm"),
    Route("/passes/{serial:int}/revoke", revoke, methods=["POST"], name="pass_revoke"),
]

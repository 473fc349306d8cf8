"""``/cards``: the site's door-card registry — list, search, add, edit, remove, import from CSV.

The registry (:class:`console.credentials.CardRegistry`) is the authoritative list the
gates receive; every change here is one registry call, so one new list version and one
new list hash, which the page shows so an operator can compare it with what a gate
reports.  Delivery to the gates is the card publisher's job (``console/card_sync.py``):
it watches the version, so nothing here talks to the broker.

Dates on the form are site-local days (``[flow] timezone``): "valid until 2026-12-31"
means through the end of that day where the gate stands, as for passes.  A photo is
turned into the thumbnail the guard screens show and the card carries its digest.

Roles: operators add, edit and remove single cards (like issuing a pass); a bulk import
is an admin's.  Every change is audited.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.credentials import CardRegistry
from console.passes.office import RequestError, parse_window, parse_zones
from console.web.auth import admin_required, client_address, login_required
from console.web.imports import ImportJob, RowProblem, jobs_of, progress_stream
from console.web.render import render
from protocol.credentials import CardEntry, CredentialListError
from protocol.errors import GatepostError

log = logging.getLogger("gatepost.console.web.cards")

LIST_LIMIT = 200
MAX_FIELD_CHARS = 200
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_CSV_BYTES = 50 * 1024 * 1024
MAX_CSV_ROWS = 200_000
CSV_COLUMNS = ("credential", "holder", "unit", "from", "until", "window", "zones", "photo_digest")
REQUIRED = ("credential",)


class CardFormError(GatepostError, ValueError):
    """One field of a card form or CSV row that cannot be used: the field, a message key and its values."""

    def __init__(self, field: str, key: str, **values: object) -> None:
        super().__init__(f"{field}: {key} {values}")
        self.field = field
        self.key = key
        self.values = values


# -- reading the registry -----------------------------------------------------------------------


def search_cards(registry: CardRegistry, query: str, limit: int = LIST_LIMIT) -> tuple[list[CardEntry], int]:
    """Cards whose credential starts with ``query`` or whose holder or unit contains it; and how many in all."""
    return registry.search(query, limit, 0), registry.count(query)


@dataclass(frozen=True, slots=True)
class CardView:
    """A card as the page shows it: local dates, window and zone numbers."""

    entry: CardEntry
    valid_from: str
    valid_until: str
    window: str
    zones: str

    @property
    def credential(self) -> str:
        return self.entry.credential


def _minutes(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def view(entry: CardEntry, zone: ZoneInfo) -> CardView:
    until = ""
    if entry.valid_until is not None:  # stored as the next local midnight: show the last valid day
        until = (entry.valid_until.astimezone(zone) - timedelta(seconds=1)).date().isoformat()
    return CardView(
        entry,
        entry.valid_from.astimezone(zone).date().isoformat() if entry.valid_from is not None else "",
        until,
        f"{_minutes(entry.window_start)}-{_minutes(entry.window_end)}"
        if entry.window_start is not None and entry.window_end is not None
        else "",
        ",".join(str(bit) for bit in range(64) if entry.zones >> bit & 1),
    )


# -- forms and rows -----------------------------------------------------------------------------


def _zone(request: Request) -> ZoneInfo:
    flow = getattr(request.app.state.ctx.config, "flow", None)
    return ZoneInfo(getattr(flow, "timezone", "Asia/Shanghai"))


def _local_day(text: str, field: str, zone: ZoneInfo, *, end: bool) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CardFormError(field, "cards.error.bad_date", value=text[:40]) from None
    if not 1970 <= day.year <= 9998:
        raise CardFormError(field, "cards.error.bad_date", value=text[:40])
    moment = datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=zone)
    return moment


def card_entry(
    values: dict[str, str], zone: ZoneInfo, *, photo_digest: str | None = None, credential: str | None = None
) -> CardEntry:
    """A form or a CSV row as a validated :class:`CardEntry`; every problem is a :class:`CardFormError`."""

    def get(name: str) -> str:
        return (values.get(name) or "").strip()[:MAX_FIELD_CHARS]

    credential = credential or get("credential")
    if not credential:
        raise CardFormError("credential", "cards.error.missing")
    holder, unit = get("holder"), get("unit")
    valid_from = _local_day(get("from"), "from", zone, end=False)
    valid_until = _local_day(get("until"), "until", zone, end=True)
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise CardFormError("until", "cards.error.until_before_from")
    window_start = window_end = None
    if get("window"):
        try:
            window = parse_window(get("window"))
        except RequestError:
            raise CardFormError("window", "cards.error.bad_window", value=get("window")[:40]) from None
        window_start, window_end = window.start, window.end
    try:
        zones = sum(1 << z for z in parse_zones(get("zones") or "0"))
    except RequestError:
        raise CardFormError("zones", "cards.error.bad_zones", value=get("zones")[:40]) from None
    digest = photo_digest if photo_digest is not None else (get("photo_digest").lower() or None)
    entry = CardEntry(
        credential, holder, unit, valid_from, valid_until, window_start, window_end, zones, digest
    )
    try:
        entry.line()  # the same checks every gate's decoder makes
    except CredentialListError as exc:
        raise CardFormError(_field_of(exc.detail), "cards.error.refused", detail=exc.detail) from None
    return entry


def _field_of(detail: str) -> str:
    for prefix, name in (
        ("card credential", "credential"),
        ("holder", "holder"),
        ("unit", "unit"),
        ("validity", "until"),
        ("daily window", "window"),
        ("zones", "zones"),
        ("photo", "photo"),
    ):
        if detail.startswith(prefix):
            return name
    return "card"


async def _photo_digest(request: Request, form: FormData) -> str | None:
    """Save an uploaded photo as the guard-screen thumbnail; its digest goes into the card."""
    upload = form.get("photo")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    data = await upload.read(MAX_PHOTO_BYTES + 1)
    if len(data) > MAX_PHOTO_BYTES:
        raise CardFormError("photo", "cards.error.photo_too_large", limit=MAX_PHOTO_BYTES // (1024 * 1024))
    if not data:
        return None
    cards = getattr(request.app.state.ctx.config, "cards", None)
    folder = getattr(cards, "thumbnails", None)
    if folder is None:
        raise CardFormError("photo", "cards.error.no_thumbnails")
    from console.thumbnails import ThumbnailError, save_thumbnail

    try:
        return await run_in_threadpool(save_thumbnail, Path(folder), data)
    except ThumbnailError:
        raise CardFormError("photo", "cards.error.bad_photo") from None


def read_rows(text: str, zone: ZoneInfo) -> Iterable[tuple[int, CardEntry | RowProblem]]:
    """Each data row of a card CSV as (line, entry or problem); a bad row never stops the rest."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        yield 1, RowProblem(1, missing[0], "missing", f"header lacks {', '.join(missing)}")
        return
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        yield 1, RowProblem(1, unknown[0], "unknown_column", f"columns are {', '.join(CSV_COLUMNS)}")
        return
    line = reader.line_num + 1
    count = 0
    for cells in reader:
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        count += 1
        if count > MAX_CSV_ROWS:
            yield start, RowProblem(start, "-", "too_many_rows", f"at most {MAX_CSV_ROWS} rows per file")
            return
        if len(cells) > len(header):
            yield start, RowProblem(start, "-", "extra_cells", "more cells than header columns")
            continue
        try:
            yield start, card_entry(dict(zip(header, cells, strict=False)), zone)
        except CardFormError as exc:
            detail = str(exc.values.get("detail") or exc.values.get("value") or "")
            yield start, RowProblem(start, exc.field, exc.key.rsplit(".", 1)[-1], detail)


# -- pages --------------------------------------------------------------------------------------


def _registry(request: Request) -> CardRegistry | None:
    return request.app.state.ctx.cards


def _audit(request: Request, action: str, target: str, detail: dict[str, Any]) -> None:
    request.app.state.ctx.audit.record(
        request.state.user, action, target, detail, address=client_address(request)
    )


def _no_registry(request: Request) -> Response:
    return render(
        request, "cards/list.html", status_code=503, error_key="cards.error.no_registry", cards=[], state=None
    )


@login_required
async def list_page(request: Request) -> Response:
    registry = _registry(request)
    if registry is None:
        return _no_registry(request)
    query = request.query_params.get("q", "")[:MAX_FIELD_CHARS]
    zone = _zone(request)
    found, total = await run_in_threadpool(search_cards, registry, query)
    state = await run_in_threadpool(lambda: registry.state)
    return render(
        request,
        "cards/list.html",
        cards=[view(e, zone) for e in found],
        total=total,
        q=query,
        state=state,
        limit=LIST_LIMIT,
    )


def _form_values(form: FormData) -> dict[str, str]:
    return {k: v[:MAX_FIELD_CHARS] for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


@login_required
async def new_page(request: Request) -> Response:
    if _registry(request) is None:
        return _no_registry(request)
    return render(request, "cards/edit.html", form={}, card=None)


@login_required
async def create(request: Request) -> Response:
    registry = _registry(request)
    if registry is None:
        return _no_registry(request)
    form = await request.form(max_files=1, max_fields=20)
    values = _form_values(form)
    try:
        digest = await _photo_digest(request, form)
        entry = card_entry(values, _zone(request), photo_digest=digest)
        if await run_in_threadpool(registry.get, entry.credential) is not None:
            raise CardFormError("credential", "cards.error.exists", credential=entry.credential)
        version = await run_in_threadpool(registry.put, [entry])
    except CardFormError as exc:
        log.info("card refused: %s", exc)
        return render(
            request,
            "cards/edit.html",
            status_code=400,
            form=values,
            card=None,
            error_key=exc.key,
            error_values=exc.values,
        )
    finally:
        await form.close()
    _audit(
        request,
        "card.add",
        f"card:{entry.credential}",
        {"holder": entry.holder, "unit": entry.unit, "version": version},
    )
    return RedirectResponse(f"/cards?q={entry.credential}&changed={version}", status_code=303)


async def _existing(request: Request) -> tuple[CardRegistry, CardEntry] | Response:
    registry = _registry(request)
    if registry is None:
        return _no_registry(request)
    credential = request.path_params["credential"][:100]
    entry = await run_in_threadpool(registry.get, credential)
    if entry is None:
        return render(
            request,
            "cards/list.html",
            status_code=404,
            error_key="cards.error.unknown",
            error_values={"credential": credential},
            cards=[],
            state=None,
        )
    return registry, entry


def _edit_values(card: CardView) -> dict[str, str]:
    e = card.entry
    return {
        "credential": e.credential,
        "holder": e.holder,
        "unit": e.unit,
        "from": card.valid_from,
        "until": card.valid_until,
        "window": card.window,
        "zones": card.zones,
        "photo_digest": e.photo_digest or "",
    }


@login_required
async def edit_page(request: Request) -> Response:
    found = await _existing(request)
    if isinstance(found, Response):
        return found
    card = view(found[1], _zone(request))
    return render(request, "cards/edit.html", form=_edit_values(card), card=card)


@login_required
async def update(request: Request) -> Response:
    found = await _existing(request)
    if isinstance(found, Response):
        return found
    registry, old = found
    form = await request.form(max_files=1, max_fields=20)
    values = _form_values(form)
    card = view(old, _zone(request))
    try:
        digest = await _photo_digest(request, form)
        if digest is None:
            digest = None if form.get("remove_photo") == "1" else (old.photo_digest or "")
        entry = card_entry(values, _zone(request), photo_digest=digest or None, credential=old.credential)
        version = await run_in_threadpool(registry.put, [entry])
    except CardFormError as exc:
        log.info("card change refused: %s", exc)
        return render(
            request,
            "cards/edit.html",
            status_code=400,
            form=values,
            card=card,
            error_key=exc.key,
            error_values=exc.values,
        )
    finally:
        await form.close()
    _audit(
        request,
        "card.edit",
        f"card:{entry.credential}",
        {"holder": entry.holder, "unit": entry.unit, "version": version},
    )
    return RedirectResponse(f"/cards?q={entry.credential}&changed={version}", status_code=303)


@login_required
async def remove(request: Request) -> Response:
    found = await _existing(request)
    if isinstance(found, Response):
        return found
    registry, entry = found
    form = await request.form(max_files=0, max_fields=5)
    if form.get("confirm") != "yes":
        card = view(entry, _zone(request))
        return render(
            request,
            "cards/edit.html",
            status_code=400,
            form=_edit_values(card),
            card=card,
            error_key="cards.error.confirm_required",
        )
    version = await run_in_threadpool(registry.remove, [entry.credential])
    _audit(request, "card.remove", f"card:{entry.credential}", {"holder": entry.holder, "version": version})
    return RedirectResponse(f"/cards?changed={version}", status_code=303)


# -- bulk import --------------------------------------------------------------------------------


@admin_required
async def import_page(request: Request) -> Response:
    if _registry(request) is None:
        return _no_registry(request)
    return render(request, "cards/import.html", columns=CSV_COLUMNS)


@admin_required
async def import_start(request: Request) -> Response:
    registry = _registry(request)
    if registry is None:
        return _no_registry(request)
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    replace = form.get("replace") == "1"
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise CardFormError("file", "cards.error.no_file")
        data = await upload.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise CardFormError("file", "cards.error.file_too_large", limit=MAX_CSV_BYTES // (1024 * 1024))
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CardFormError("file", "cards.error.not_utf8") from None
        if replace and form.get("confirm_replace") != "yes":
            raise CardFormError("replace", "cards.error.confirm_replace")
        filename = Path(upload.filename).name[:100]
    except CardFormError as exc:
        return render(
            request,
            "cards/import.html",
            status_code=400,
            columns=CSV_COLUMNS,
            error_key=exc.key,
            error_values=exc.values,
        )
    finally:
        await form.close()
    zone = _zone(request)
    user = request.state.user.name
    audit = request.app.state.ctx.audit
    address = client_address(request)
    result: dict[str, Any] = {}

    def work(job: ImportJob) -> None:
        total = max(0, sum(1 for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)) - 1)
        job.update(total=total + 1)  # the last step is the one registry change
        entries: dict[str, CardEntry] = {}
        problems: list[RowProblem] = []
        for done, (_line, item) in enumerate(read_rows(text, zone), start=1):
            if isinstance(item, RowProblem):
                problems.append(item)
            else:
                entries[item.credential] = item  # a credential listed twice: the later row wins
            if done % 200 == 0:
                job.update(done=min(done, total), problems=list(problems))
        job.update(done=total, problems=problems)
        if problems and replace:
            # replacing the whole list from a file with bad rows would drop those people's cards
            result["skipped"] = "replace_with_problems"
            job.update(error="cards.error.replace_with_problems")
            return
        version = registry.replace_all(entries.values()) if replace else registry.put(entries.values())
        result["version"] = version
        job.update(done=total + 1, imported=sorted(entries))

    def finished(job: ImportJob) -> None:
        audit.record(
            user,
            "card.import",
            f"file:{filename}",
            {
                "mode": "replace" if replace else "merge",
                "cards": len(job.imported),
                "rejected": len(job.problems),
                "version": result.get("version"),
                "error": job.error,
            },
            address=address,
        )

    job = jobs_of(request.app).start("cards", user, filename, work, finished)
    return RedirectResponse(f"/cards/import/{job.id}", status_code=303)


def _job(request: Request) -> ImportJob | None:
    job = jobs_of(request.app).get(request.path_params["job"])
    return job if job is not None and job.kind == "cards" else None


@admin_required
async def job_page(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return render(
            request, "cards/job.html", status_code=404, job=None, error_key="cards.error.unknown_job"
        )
    return render(request, "cards/job.html", job=job, state=job.snapshot())


@admin_required
async def job_events(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return JSONResponse({"error": "unknown_job"}, status_code=404)
    return progress_stream(job)


routes: list[BaseRoute] = [
    Route("/cards", list_page, methods=["GET"], name="cards"),
    Route("/cards/new", new_page, methods=["GET"], name="cards_new"),
    Route("/cards/new", create, methods=["POST"], name="cards_create"),
    Route("/cards/import", import_page, methods=["GET"], name="cards_import"),
    Route("/cards/import", import_start, methods=["POST"], name="cards_import_start"),
    Route("/cards/import/{job:str}", job_page, methods=["GET"], name="cards_job"),
    Route("/cards/import/{job:str}/events", job_events, methods=["GET"], name="cards_job_events"),
    Route("/cards/{credential:str}/edit", edit_page, methods=["GET"], name="card_edit"),
    Route("/cards/{credential:str}/edit", update, methods=["POST"], name="card_update"),
    Route("/cards/{credential:str}/remove", remove, methods=["POST"], name="card_remove"),
]

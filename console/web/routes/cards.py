"""``/cards``: the site's door-card registry — list, search, add, edit, remove, import from CSV.

The registry (:class:`console.credentials.CardRegistry`) is the authoritative list the
gates receive; every change here is one registry call, so one new list version and one
new list hash, which the page shows so an operator can compare it with what a gate
reports.  Delivery to the gates is the card publisher's job (``console/card_sync.py``):
it watches the version, so nothing here talks to the broker.

Dates on the form are site-local days (``[flow] timezone``): "valid until 2026-12-31"
means through the end of that day where the gate stands, as for passes.  A photo is
turned into the thumbnail the guard screens show and the card carries its digest.

Roles: operators add, edit and remove single cards; a bulk import is an admin's.  The
registry belongs to one site (``[cards] site``): a user limited to other sites sees
none of it, and a change they attempt is refused (403) and audited (``card.denied``).
Every change is audited.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from console.credentials import CardRegistry
from console.passes.office import RequestError, parse_window, parse_zones
from console.web.auth import Endpoint, admin_required, login_required, refuse, sees
from console.web.forms import MAX_FIELD_CHARS, PageError, audit, field_text, refused, thumbnail_folder
from console.web.imports import ImportJob, RowProblem, job_events, job_page, read_csv, start_import
from console.web.render import render
from protocol.credentials import CardEntry, CredentialListError

log = logging.getLogger("gatepost.console.web.cards")

LIST_LIMIT = 200
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_CSV_BYTES = 50 * 1024 * 1024
MAX_CSV_ROWS = 200_000
CSV_COLUMNS = ("credential", "holder", "unit", "from", "until", "window", "zones", "photo_digest")
REQUIRED = ("credential",)


class CardFormError(PageError):
    """One field of a card form or CSV row that cannot be used: the field, a message key and its values."""

    def __init__(self, field: str, key: str, **values: object) -> None:
        self.field = field
        super().__init__(key, **values)

    def _describe(self) -> str:
        return f"{self.field}: {super()._describe()}"


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
        return field_text(values, name)

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
    folder = thumbnail_folder(request)
    if folder is None:
        raise CardFormError("photo", "cards.error.no_thumbnails")
    from console.photos import PhotoError, upload_slot
    from console.thumbnails import ThumbnailError, save_thumbnail

    try:
        with upload_slot():
            return await run_in_threadpool(save_thumbnail, folder, data)
    except PhotoError:  # no place for another photo now: refused before it was decoded
        busy = CardFormError("photo", "cards.error.photo_busy")
        busy.status = 503
        raise busy from None
    except ThumbnailError as exc:
        if exc.reason in ("too_many_pixels", "too_much_memory"):
            raise CardFormError("photo", "cards.error.photo_too_big", detail=str(exc)) from None
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


RegistryPage = Callable[[Request, CardRegistry], Awaitable[Response]]
CardPage = Callable[[Request, CardRegistry, CardEntry], Awaitable[Response]]


def _with_registry(endpoint: RegistryPage) -> Endpoint:
    """Call ``endpoint`` with the site's card registry; a console without one says so on every card page."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        registry: CardRegistry | None = request.app.state.ctx.cards
        site = request.app.state.ctx.config.cards.site if registry is not None else ""
        if registry is not None and not sees(request, site):
            if request.method == "POST":
                target = f"card:{request.path_params.get('credential', '')[:100]}"
                return await refuse(
                    request, "card", target, {"site": site}, message_key="error.not_your_site"
                )
            return render(request, "error.html", status_code=403, message_key="error.not_your_site")
        if registry is None:
            return render(
                request,
                "cards/list.html",
                status_code=503,
                error_key="cards.error.no_registry",
                cards=[],
                state=None,
            )
        return await endpoint(request, registry)

    return wrapper


def _with_card(endpoint: CardPage) -> Endpoint:
    """Call ``endpoint`` with the registry and the card the URL names; an unknown one is a 404 on the list."""

    @_with_registry
    @functools.wraps(endpoint)
    async def wrapper(request: Request, registry: CardRegistry) -> Response:
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
        return await endpoint(request, registry, entry)

    return wrapper


@login_required
@_with_registry
async def list_page(request: Request, registry: CardRegistry) -> Response:
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
@_with_registry
async def new_page(request: Request, registry: CardRegistry) -> Response:
    return render(request, "cards/edit.html", form={}, card=None)


async def _save(request: Request, registry: CardRegistry, old: CardEntry | None) -> Response:
    """Add a card (``old`` is None) or change ``old`` from the form: one registry change, one audit entry."""
    form = await request.form(max_files=1, max_fields=20)
    values = _form_values(form)
    zone = _zone(request)
    try:
        digest = await _photo_digest(request, form)
        if old is None:
            entry = card_entry(values, zone, photo_digest=digest)
            if await run_in_threadpool(registry.get, entry.credential) is not None:
                raise CardFormError("credential", "cards.error.exists", credential=entry.credential)
        else:
            if digest is None and form.get("remove_photo") != "1":
                digest = old.photo_digest  # no new photo: the card keeps its own unless asked to remove it
            entry = card_entry(values, zone, photo_digest=digest or None, credential=old.credential)
        version = await run_in_threadpool(registry.put, [entry])
    except CardFormError as exc:
        log.info("card refused: %s" if old is None else "card change refused: %s", exc)
        card = None if old is None else view(old, zone)
        return refused(request, "cards/edit.html", exc, form=values, card=card)
    finally:
        await form.close()
    await audit(
        request,
        "card.add" if old is None else "card.edit",
        f"card:{entry.credential}",
        {"holder": entry.holder, "unit": entry.unit, "version": version},
    )
    return RedirectResponse(f"/cards?q={entry.credential}&changed={version}", status_code=303)


@login_required
@_with_registry
async def create(request: Request, registry: CardRegistry) -> Response:
    return await _save(request, registry, None)


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
@_with_card
async def edit_page(request: Request, registry: CardRegistry, entry: CardEntry) -> Response:
    card = view(entry, _zone(request))
    return render(request, "cards/edit.html", form=_edit_values(card), card=card)


@login_required
@_with_card
async def update(request: Request, registry: CardRegistry, entry: CardEntry) -> Response:
    return await _save(request, registry, entry)


@login_required
@_with_card
async def remove(request: Request, registry: CardRegistry, entry: CardEntry) -> Response:
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
    await audit(
        request, "card.remove", f"card:{entry.credential}", {"holder": entry.holder, "version": version}
    )
    return RedirectResponse(f"/cards?changed={version}", status_code=303)


# -- bulk import --------------------------------------------------------------------------------


@admin_required
@_with_registry
async def import_page(request: Request, registry: CardRegistry) -> Response:
    return render(request, "cards/import.html", columns=CSV_COLUMNS)


@admin_required
@_with_registry
async def import_start(request: Request, registry: CardRegistry) -> Response:
    form = await request.form(max_files=1, max_fields=5)
    replace = form.get("replace") == "1"
    try:
        upload = await read_csv(form, MAX_CSV_BYTES, "cards")
        if replace and form.get("confirm_replace") != "yes":
            raise CardFormError("replace", "cards.error.confirm_replace")
    except PageError as exc:
        return refused(request, "cards/import.html", exc, columns=CSV_COLUMNS)
    finally:
        await form.close()
    text = upload.text
    zone = _zone(request)
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

    def summary(job: ImportJob) -> dict[str, Any]:
        return {
            "mode": "replace" if replace else "merge",
            "cards": len(job.imported),
            "rejected": len(job.problems),
            "version": result.get("version"),
            "error": job.error,
        }

    return start_import(request, "cards", upload.filename, work, "card.import", summary)


routes: list[BaseRoute] = [
    Route("/cards", list_page, methods=["GET"], name="cards"),
    Route("/cards/new", new_page, methods=["GET"], name="cards_new"),
    Route("/cards/new", create, methods=["POST"], name="cards_create"),
    Route("/cards/import", import_page, methods=["GET"], name="cards_import"),
    Route("/cards/import", import_start, methods=["POST"], name="cards_import_start"),
    Route("/cards/import/{job:str}", job_page("cards"), methods=["GET"], name="cards_job"),
    Route("/cards/import/{job:str}/events", job_events("cards"), methods=["GET"], name="cards_job_events"),
    Route("/cards/{credential:str}/edit", edit_page, methods=["GET"], name="card_edit"),
    Route("/cards/{credential:str}/edit", update, methods=["POST"], name="card_update"),
    Route("/cards/{credential:str}/remove", remove, methods=["POST"], name="card_remove"),
]

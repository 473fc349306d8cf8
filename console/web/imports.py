"""Bulk imports (passes, cards) that run in a background thread and report progress over SSE.

Issuing a thousand passes signs and prints a thousand cards: minutes, far longer than a
request may take.  The upload starts an :class:`ImportJob` in a thread and redirects to
its page; the page's ``EventSource`` receives ``progress`` events as rows are done and a
final ``done`` event with the result, so the bar moves without polling.  A job lives in
memory only: after a restart its page says it is unknown, and the register or the card
registry already holds whatever it did.

Passes and cards import alike: the upload (:func:`read_csv`), the start
(:func:`start_import`, audited when the job ends) and the job's pages
(:func:`job_page`, :func:`job_events`, :func:`job_state`) differ only in their ``kind``,
which names the URLs (``/passes/import/…``), the templates and the message keys.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from console.web.auth import Endpoint, admin_required, client_address
from console.web.forms import PageError
from console.web.render import render

log = logging.getLogger("gatepost.console.web.imports")

MAX_JOBS = 50
"""Finished jobs kept for their pages; the oldest are forgotten first."""
KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One refused row: the line of the uploaded file, the column, the reason code and the words."""

    line: int
    column: str
    reason: str
    detail: str


@dataclass
class ImportJob:
    """The state of one import; every change bumps ``version`` and wakes whoever waits."""

    id: str
    kind: str
    user: str
    filename: str
    total: int = 0
    done: int = 0
    imported: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    finished: bool = False
    error: str | None = None
    version: int = 0
    started: float = field(default_factory=time.time)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def update(self, **values: Any) -> None:
        with self._changed:
            for name, value in values.items():
                setattr(self, name, value)
            self.version += 1
            self._changed.notify_all()

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until ``version`` passes ``seen`` (or ``timeout``); return the version now."""
        with self._changed:
            self._changed.wait_for(lambda: self.version > seen or self.finished, timeout)
            return self.version

    def snapshot(self) -> dict[str, Any]:
        with self._changed:
            return {
                "id": self.id,
                "kind": self.kind,
                "total": self.total,
                "done": self.done,
                "percent": round(100 * self.done / self.total)
                if self.total
                else (100 if self.finished else 0),
                "imported": len(self.imported),
                "first": self.imported[0] if self.imported else None,
                "last": self.imported[-1] if self.imported else None,
                "problems": [
                    {"line": p.line, "column": p.column, "reason": p.reason, "detail": p.detail}
                    for p in self.problems[:200]
                ],
                "problem_count": len(self.problems),
                "finished": self.finished,
                "error": self.error,
            }


class ImportJobs:
    """The running and recent jobs of one web app."""

    def __init__(self) -> None:
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(
        self,
        kind: str,
        user: str,
        filename: str,
        work: Callable[[ImportJob], None],
        on_finish: Callable[[ImportJob], None] | None = None,
    ) -> ImportJob:
        """Run ``work(job)`` in a daemon thread; whatever it raises ends the job with an error, never the app."""
        job = ImportJob(secrets.token_hex(8), kind, user, filename)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS:
                oldest = next(iter(self._jobs))
                if not self._jobs[oldest].finished:
                    break
                del self._jobs[oldest]

        def run() -> None:
            try:
                work(job)
            except Exception as exc:  # a job must end with a message, whatever went wrong
                log.exception("%s import %s failed", kind, job.id)
                job.update(error=f"{type(exc).__name__}: {exc}")
            finally:
                # the audit entry (on_finish) is written before the page is told "done", so
                # whoever sees the job finished also finds it in the audit log
                if on_finish is not None:
                    try:
                        on_finish(job)
                    except Exception:
                        log.exception("after %s import %s", kind, job.id)
                job.update(finished=True)

        threading.Thread(target=run, name=f"import-{kind}-{job.id}", daemon=True).start()
        return job


def jobs_of(app: Any) -> ImportJobs:
    """The app's job table, created on first use (the app factory need not know about imports)."""
    jobs = getattr(app.state, "import_jobs", None)
    if jobs is None:
        jobs = app.state.import_jobs = ImportJobs()
    return jobs


def progress_stream(job: ImportJob) -> StreamingResponse:
    """Server-Sent Events: ``progress`` on every change, then one ``done``; a comment every 15 s keeps proxies open."""

    async def events() -> AsyncIterator[str]:
        seen = -1
        while True:
            version = await run_in_threadpool(job.wait_change, seen, KEEPALIVE_S)
            if version == seen and not job.finished:
                yield ": keepalive\n\n"
                continue
            seen = version
            state = job.snapshot()
            name = "done" if state["finished"] else "progress"
            yield f"event: {name}\ndata: {json.dumps(state, ensure_ascii=False)}\n\n"
            if state["finished"]:
                return

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- the pages of an import, for passes and cards alike -------------------------------------------


@dataclass(frozen=True, slots=True)
class CsvUpload:
    """An uploaded CSV that is within the size limit and is UTF-8: its bytes, its text and its file name."""

    filename: str
    data: bytes
    text: str


async def read_csv(form: FormData, limit: int, kind: str) -> CsvUpload:
    """The form's ``file``; a missing, oversized or non-UTF-8 one is a :class:`PageError` of ``kind``."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise PageError(f"{kind}.error.no_file")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PageError(f"{kind}.error.file_too_large", limit=limit // (1024 * 1024))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PageError(f"{kind}.error.not_utf8") from None
    return CsvUpload(Path(upload.filename).name[:100], data, text)


def start_import(
    request: Request,
    kind: str,
    filename: str,
    work: Callable[[ImportJob], None],
    action: str,
    summary: Callable[[ImportJob], dict[str, Any]],
) -> Response:
    """Run ``work`` as a job and send the browser to its page; its end is audited as ``action``, ``summary``.

    Who and from where are read now: the job outlives the request.
    """
    user = request.state.user.name
    audit = request.app.state.ctx.audit
    address = client_address(request)

    def finished(job: ImportJob) -> None:
        audit.record(user, action, f"file:{filename}", summary(job), address=address)

    job = jobs_of(request.app).start(kind, user, filename, work, finished)
    return RedirectResponse(f"/{kind}/import/{job.id}", status_code=303)


def _job(request: Request, kind: str) -> ImportJob | None:
    """The job the URL names, if it is one of this ``kind``: a cards page does not show a passes job."""
    job = jobs_of(request.app).get(request.path_params["job"])
    return job if job is not None and job.kind == kind else None


def job_page(kind: str) -> Endpoint:
    """The page of one ``kind`` import; its progress bar follows :func:`job_events`."""

    @admin_required
    async def page(request: Request) -> Response:
        job = _job(request, kind)
        template = f"{kind}/job.html"
        if job is None:
            return render(request, template, status_code=404, job=None, error_key=f"{kind}.error.unknown_job")
        return render(request, template, job=job, state=job.snapshot())

    return page


def _job_answer(kind: str, answer: Callable[[ImportJob], Response]) -> Endpoint:
    """An endpoint for scripts and ``EventSource``: ``answer(job)``, or a JSON 404 for an unknown job."""

    @admin_required
    async def endpoint(request: Request) -> Response:
        job = _job(request, kind)
        if job is None:
            return JSONResponse({"error": "unknown_job"}, status_code=404)
        return answer(job)

    return endpoint


def job_events(kind: str) -> Endpoint:
    """The job's progress as Server-Sent Events (:func:`progress_stream`)."""
    return _job_answer(kind, progress_stream)


def job_state(kind: str) -> Endpoint:
    """The job's state as one JSON document."""
    return _job_answer(kind, lambda job: JSONResponse(job.snapshot()))

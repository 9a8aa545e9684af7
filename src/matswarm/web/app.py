"""The dashboard's FastAPI application: server-side Jinja2 pages over :class:`Dashboard`.

Read-only: no route changes the ledger or the store (``POST /task/ID/verify`` only re-derives
the task, as ``matswarm verify`` does). When a token is set, every request must carry it
(``Authorization: Bearer TOKEN``, the ``matswarm_token`` cookie, or ``?token=TOKEN`` once,
which sets the cookie); the CLI sets one whenever the server is reachable from other hosts.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from matswarm.ledger import LedgerError
from matswarm.protocol.codec import CodecError
from matswarm.runtime.local import Home, HomeError
from matswarm.store import StoreError
from matswarm.web.charts import CHARTS, ChartUnavailable, Evaluator
from matswarm.web.data import WARM_TASKS, Dashboard, parse_task, run_verify, short

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["short"] = short
TOKEN_COOKIE = "matswarm_token"
#: Rounds whose commitments and votes the task page lists (the others have a page each).
DETAIL_ROUNDS = 5
#: Explains, on every page, what the ledger does and does not guarantee.
TRUST_NOTE = (
    "Read-only view of the ledger and the artifact store. The embedded chain is a "
    "single-process simulator without consensus; a simulated enclave proves code identity, "
    "not hardware isolation."
)


def create_app(
    home: Home,
    *,
    token: str | None = None,
    poll_ms: int = 2000,
    eval_data: Path | None = None,
    verify_identity: Any = None,
) -> FastAPI:
    """The dashboard app over ``home`` (opened read-only now; closed on shutdown)."""
    if poll_ms < 100:
        raise ValueError(f"poll_ms must be >= 100, got {poll_ms}")
    dash = Dashboard(home)
    try:
        events = dash.warm()
        evaluator = Evaluator(eval_data)
        if eval_data is not None:
            _prerender(dash, evaluator)  # the charts of archived tasks, before the first request
    except BaseException:
        dash.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        dash.close()

    app = FastAPI(
        title="matswarm dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    app.state.events_indexed = events

    @app.middleware("http")
    async def auth_and_timing(request: Request, call_next):  # type: ignore[no-untyped-def]
        if token is not None:
            given = request.query_params.get("token")
            header = request.headers.get("authorization", "")
            offered = (
                given
                or (header[7:] if header.lower().startswith("bearer ") else None)
                or request.cookies.get(TOKEN_COOKIE)
            )
            if offered is None or not secrets.compare_digest(offered, token):
                return HTMLResponse(
                    "<h1>401</h1><p>This dashboard needs its access token: open the URL "
                    "printed by <code>matswarm dashboard</code>.</p>",
                    status_code=401,
                )
            if given is not None:  # drop the token from the address bar, keep it in a cookie
                resp = RedirectResponse(str(request.url.remove_query_params("token")), 303)
                resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return resp
        t0 = time.perf_counter()
        response = await call_next(request)
        ms = (time.perf_counter() - t0) * 1e3
        response.headers["Server-Timing"] = f"render;dur={ms:.1f}"
        return response

    def page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, name, {"trust_note": TRUST_NOTE, "home": str(home.path), **ctx}
        )

    def error(request: Request, status: int, message: str) -> HTMLResponse:
        resp = page(request, "error.html", status=status, message=message)
        resp.status_code = status
        return resp

    @app.exception_handler(HomeError)
    def bad_request(request: Request, exc: HomeError) -> HTMLResponse:
        return error(request, 400, str(exc))  # e.g. a task id that is not 32 bytes of hex

    @app.exception_handler(StoreError)
    def not_stored(request: Request, exc: StoreError) -> HTMLResponse:
        return error(request, 404, str(exc))

    @app.exception_handler(LedgerError)
    def not_found(request: Request, exc: LedgerError) -> HTMLResponse:
        return error(request, 404, str(exc))  # e.g. an unknown task

    @app.get("/", response_class=HTMLResponse)
    def index() -> RedirectResponse:
        return RedirectResponse("/tasks", 303)

    @app.get("/members", response_class=HTMLResponse)
    def members(request: Request) -> HTMLResponse:
        return page(request, "members.html", members=dash.members(), nav="members")

    @app.get("/tasks", response_class=HTMLResponse)
    def tasks(request: Request) -> HTMLResponse:
        return page(request, "tasks.html", tasks=dash.tasks(), nav="tasks")

    @app.get("/task/{task}", response_class=HTMLResponse)
    def task_page(request: Request, task: str) -> HTMLResponse:
        tid = parse_task(task)
        view = dash.task(tid)
        return page(
            request,
            "task.html",
            t=view,
            poll_ms=poll_ms,
            detail_rounds=DETAIL_ROUNDS,
            charts=_chart_state(dash, evaluator, tid, view),
            nav="tasks",
        )

    @app.get("/task/{task}/round/{number}", response_class=HTMLResponse)
    def round_page(request: Request, task: str, number: int) -> HTMLResponse:
        name, row = dash.round(parse_task(task), number)
        return page(request, "round.html", task=task, task_name=name, r=row, nav="tasks")

    @app.get("/task/{task}/progress", response_class=HTMLResponse)
    def progress(request: Request, task: str) -> HTMLResponse:
        tid = parse_task(task)
        status, rows = dash.progress(tid)
        final = sum(r.phase == "final" for r in rows)
        return page(request, "_progress.html", status=status, rounds=rows, rounds_final=final)

    @app.get("/task/{task}/{chart}.png")
    def chart(request: Request, task: str, chart: str) -> Response:
        tid = parse_task(task)
        try:
            png = evaluator.png(dash.store, dash.models(tid), chart)
        except ChartUnavailable as exc:
            return error(request, 404, str(exc))
        return Response(png, media_type="image/png")

    @app.post("/task/{task}/verify", response_class=HTMLResponse)
    async def verify(request: Request, task: str) -> HTMLResponse:
        tid = parse_task(task)
        dash.task_status(tid)  # an unknown task is a 404 here, not a failed verification
        t0 = time.perf_counter()
        result = await run_in_threadpool(run_verify, home, tid, verify_identity)
        return page(
            request,
            "verify.html",
            task=task,
            r=result,
            seconds=time.perf_counter() - t0,
            as_org=None if verify_identity is None else verify_identity.name,
            nav="tasks",
        )

    return app


log = logging.getLogger(__name__)


def _prerender(dash: Dashboard, evaluator: Evaluator) -> None:
    for row in dash.tasks()[:WARM_TASKS]:
        if row.status != "archived":
            continue
        models = dash.models(parse_task(row.task))
        for chart in CHARTS:
            try:
                evaluator.png(dash.store, models, chart)
            except (ChartUnavailable, StoreError, CodecError) as exc:  # said again on request
                log.info("chart %s of %s not drawn: %s", chart, row.task, exc)


def _chart_state(dash: Dashboard, evaluator: Evaluator, tid: bytes, view: Any) -> dict[str, str]:
    """Per chart: "" when it can be drawn, else why not (checked without drawing it)."""
    spec = dash.spec_obj(bytes.fromhex(view.spec_hash[2:]))
    if isinstance(spec, str):
        return {"mse": spec, "parity": spec}
    try:
        evaluator.prepare(spec, view.card)
    except ChartUnavailable as exc:
        return {"mse": str(exc), "parity": str(exc)}
    return {"mse": "", "parity": "" if view.final_model_cid else "no final model yet"}

"""The dashboard's web application (Starlette): the page, its static files, the JSON API and the
server-sent events that keep the page current.

Routes (every one only reads; there is no route that writes, and no method but GET/HEAD):

==================================  ==========================================================
``/``                               the page (``static/index.html``)
``/static/...``                     its script and style sheet (package data; nothing fetched
                                    from the internet)
``/api/board``                      the summary (counts, cost, budget) and one page of rows:
                                    ``?state=S&q=TEXT&offset=N&limit=M`` (see
                                    :mod:`dashboard.window`)
``/api/events``                     server-sent events: ``board`` first, then ``delta``
``/api/tasks/{id}``                 one task in full
``/api/tasks/{id}/patch``           its ``changes.patch``
``/api/tasks/{id}/log``             its log (``?offset=N`` for what follows byte N)
``/api/tasks/{id}/log/events``      server-sent events: the log's tail, then what is appended
``/api/egress``                     every task's outbound connections, newest last
``/healthz``                        ``ok`` (no token needed: for healthchecks)
==================================  ==========================================================

A request the dashboard cannot answer (a bad or unknown id) is a JSON ``{"error": sentence}``
with 400 or 404, which the page shows; never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from orchestration_protocol import Layout
from orchestration_views.logs import LogTail

from .details import (
    DashboardError,
    egress_entries,
    task_details,
    task_layout,
    task_patch,
)
from .events import BoardHub
from .metrics import fleet_registry
from .project import project_info
from .security import SecurityHeaders, TokenGate
from .static_files import INDEX, STATIC_DIR
from .window import BadWindowQuery, parse_query

logger = logging.getLogger(__name__)

SSE_PING_S = 15
"""A comment line every this many seconds keeps proxies from closing an idle stream."""


def _json(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code, headers={"Cache-Control": "no-store"})


def _error(error: DashboardError) -> JSONResponse:
    return _json({"error": str(error)}, error.status_code)


def _hub(request: Request) -> BoardHub:
    hub: BoardHub = request.app.state.hub
    return hub


async def index(request: Request) -> Response:
    return FileResponse(INDEX, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    text = await to_thread.run_sync(generate_latest, registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


async def project(request: Request) -> Response:
    return _json(project_info().model_dump())


async def board(request: Request) -> Response:
    hub = _hub(request)
    try:
        query = parse_query(request.query_params)
    except BadWindowQuery as error:
        return _json({"error": str(error)}, 400)
    await hub.ready.wait()
    return _json(await to_thread.run_sync(hub.model.window, query))


async def events(request: Request) -> Response:
    hub = _hub(request)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for message in hub.messages():
            yield ServerSentEvent(data=json.dumps(message), event=message["type"])

    return EventSourceResponse(stream(), ping=SSE_PING_S, headers={"Cache-Control": "no-store"})


async def task(request: Request) -> Response:
    hub = _hub(request)
    try:
        details = await to_thread.run_sync(
            task_details, hub.layout, hub.model.ledgers, request.path_params["task_id"]
        )
    except DashboardError as error:
        return _error(error)
    return _json(details)


async def patch(request: Request) -> Response:
    try:
        found = await to_thread.run_sync(
            task_patch, _hub(request).layout, request.path_params["task_id"]
        )
    except DashboardError as error:
        return _error(error)
    return _json(found)


async def log(request: Request) -> Response:
    layout = _hub(request).layout
    task_id = request.path_params["task_id"]
    try:
        layout = task_layout(layout, task_id)
        offset = int(request.query_params.get("offset", "-1"))
    except DashboardError as error:
        return _error(error)
    except ValueError:
        return _json({"error": "offset must be a whole number of bytes."}, 400)
    reader = LogTail(layout.log_file(task_id))
    truncated = reader.start_at_tail() if offset < 0 else False
    if offset >= 0:
        reader.offset = offset
    text = await to_thread.run_sync(reader.read_new)
    return _json({"id": task_id, "text": text, "offset": reader.offset, "truncated": truncated})


async def log_events(request: Request) -> Response:
    hub = _hub(request)
    task_id = request.path_params["task_id"]
    try:
        reader = LogTail(task_layout(hub.layout, task_id).log_file(task_id))
    except DashboardError as error:
        return _error(error)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with hub.log_waiter(task_id) as written:
            truncated = reader.start_at_tail()
            text = await to_thread.run_sync(reader.read_new)
            yield ServerSentEvent(
                data=json.dumps({"text": text, "offset": reader.offset, "truncated": truncated}),
                event="log",
            )
            while True:
                await written.wait()
                written.clear()
                while text := await to_thread.run_sync(reader.read_new):
                    yield ServerSentEvent(
                        data=json.dumps({"text": text, "offset": reader.offset}), event="append"
                    )

    return EventSourceResponse(stream(), ping=SSE_PING_S, headers={"Cache-Control": "no-store"})


async def egress(request: Request) -> Response:
    return _json(await to_thread.run_sync(egress_entries, _hub(request).layout))


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return _json({"error": f"No such API route: {request.url.path}."}, 404)
    return PlainTextResponse("Not found. The dashboard is at /.", status_code=404)


async def server_error(request: Request, exc: Exception) -> Response:
    logger.exception("dashboard request failed: %s", request.url.path, exc_info=exc)
    return _json({"error": f"The dashboard could not answer ({type(exc).__name__}: {exc})."}, 500)


def create_app(
    layout: Layout,
    *,
    token: str | None = None,
    allowed_hosts: list[str] | None = None,
    polling: bool | None = None,
) -> ASGIApp:
    """The dashboard over ``layout``. ``token``: required on every request but ``/healthz``
    (header, cookie, or ``?token=`` once); ``allowed_hosts``: the ``Host`` names accepted when
    there is no token (a loopback dashboard refuses other names: DNS rebinding)."""
    hub = BoardHub(layout, polling=polling)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    get = ["GET", "HEAD"]
    routes = [
        Route("/", index, methods=get),
        Route("/healthz", healthz, methods=get),
        Route("/api/board", board, methods=get),
        Route("/api/project", project, methods=get),
        Route("/metrics", metrics, methods=get),
        Route("/api/events", events, methods=get),
        Route("/api/egress", egress, methods=get),
        Route("/api/tasks/{task_id}", task, methods=get),
        Route("/api/tasks/{task_id}/patch", patch, methods=get),
        Route("/api/tasks/{task_id}/log", log, methods=get),
        Route("/api/tasks/{task_id}/log/events", log_events, methods=get),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 500: server_error},
    )
    app.state.hub = hub
    app.state.metrics = fleet_registry(layout)
    return SecurityHeaders(TokenGate(app, token=token, allowed_hosts=allowed_hosts))

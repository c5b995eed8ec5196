"""The dashboard's routes: the page and its assets (open: they hold no data), and the JSON it
reads (guarded like the rest of the API)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures' types.

from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any

from dbos import DBOSClient
from fastapi import APIRouter, FastAPI, HTTPException, Path, status
from fastapi.params import Depends
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from dbos_publishers._config import BATCH_ID, Settings
from dbos_publishers.ops.dashboard import overview
from dbos_publishers.ops.dashboard.models import BatchTimeline, Overview

STATIC = FilePath(__file__).parent / "static"
PAGE = "/dashboard"


def install(
    app: FastAPI,
    settings: Settings,
    client: DBOSClient,
    *,
    guarded: list[Depends],
    errors: Callable[..., dict[int | str, dict[str, Any]]],
    recovered_at_start: int,
) -> None:
    """Mount the page's script and style sheet at /dashboard/static and add the routes."""
    app.mount(f"{PAGE}/static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.include_router(
        router(
            settings, client, guarded=guarded, errors=errors, recovered_at_start=recovered_at_start
        )
    )


def router(
    settings: Settings,
    client: DBOSClient,
    *,
    guarded: list[Depends],
    errors: Callable[..., dict[int | str, dict[str, Any]]],
    recovered_at_start: int,
) -> APIRouter:
    """`errors(*codes)`: the documented error responses of a guarded route (401 with a token)
    and the codes it adds."""
    routes = APIRouter()

    @routes.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(PAGE)

    @routes.get(PAGE, include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @routes.get(
        "/dashboard/overview", tags=["dashboard"], dependencies=guarded, responses=errors(503)
    )
    def dashboard_overview() -> Overview:
        """Counters, queue depth, batches, workers, takeovers, failpoints and the invariant."""
        return overview.gather(settings, client, recovered_at_start)

    @routes.get(
        "/batches/{batch_id}/timeline",
        tags=["batches"],
        dependencies=guarded,
        responses=errors(404, 503),
    )
    def batch_timeline(
        batch_id: Annotated[str, Path(pattern=f"^{BATCH_ID.pattern}$")],
    ) -> BatchTimeline:
        """A batch's workflows and steps, replayed steps and takeovers marked (as `inspect`)."""
        try:
            return overview.timeline(settings, batch_id)
        except overview.UnknownBatchError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None

    return routes

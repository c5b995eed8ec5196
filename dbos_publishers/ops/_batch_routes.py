"""The batch routes beyond submitting and following one: GET /batches, the batch list
(`ops._batch_list`), and POST /batches/{id}/cancel | resume | retry (`_lifecycle`)."""

# No `from __future__ import annotations`: FastAPI reads the parameter annotations at runtime.

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal

from dbos import DBOSClient
from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, BeforeValidator

from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers._config import BATCH_ID, Settings
from dbos_publishers.ops import _batch_list as batch_list
from dbos_publishers.store._batch_list import DEFAULT_PAGE, MAX_PAGE

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ListedBatch(BaseModel):
    batch_id: str
    publisher: str
    topic: str
    state: str
    messages: int
    published: int
    failed: int
    submitted: str | None
    started: str | None
    finished: str | None
    duration_sec: float | None
    msg_per_sec: float | None


class BatchAction(BaseModel):
    batch_id: str
    action: str
    state: str
    workflows: list[str]
    published: int


class BatchList(BaseModel):
    batches: list[ListedBatch]
    next: str | None  # pass as `after` for the next page; null on the last


NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _not_a_number(value: object) -> object:
    """A date-time, never a number read as seconds since 1970 (pydantic's lax reading)."""
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        raise ValueError("an ISO 8601 time, not a number")
    return value


def install(
    app: FastAPI, settings: Settings, guarded: list[Any], errors: dict[int | str, dict[str, Any]]
) -> None:
    """GET /batches (`errors`: the route's refusals: a bad time is a 400, a cursor naming no
    batch a 404)."""

    @app.get("/batches", dependencies=guarded, responses=errors, tags=["batches"])
    def list_batches(
        *,
        publisher: str | None = None,
        topic: str | None = None,
        state: State | None = None,
        since: Annotated[
            datetime | None,
            BeforeValidator(_not_a_number),
            Query(description="an ISO 8601 time"),
        ] = None,
        within: Annotated[
            str | None, Query(pattern=r"^\d{1,4}[smhd]$", description="30m, 2h, 7d: this recent")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        after: Annotated[
            str | None,
            Query(pattern=f"^{BATCH_ID.pattern}$", description="the `next` of the page before"),
        ] = None,
        search: Annotated[str | None, Query(max_length=80, description="part of the id")] = None,
    ) -> BatchList:
        """The batches, newest first, filtered; page on with the `next` cursor."""
        wanted = batch_list.batch_filter(
            publisher=publisher,
            topic=topic,
            state=state,
            since=since.isoformat() if since is not None else within,
            limit=limit,
            after=after,
            search=search,
        )
        return BatchList.model_validate(batch_list.gather(settings, wanted).to_json())


def lifecycle_routes(
    app: FastAPI,
    settings: Settings,
    client: DBOSClient,
    guarded: list[Any],
    acted: dict[int | str, dict[str, Any]],
) -> None:
    """POST /batches/{id}/cancel | resume | retry (`_lifecycle`): 404 for an unknown batch, 409 for
    one in the wrong state (`acted`), with the same token rules as every other route."""
    batch_path = Annotated[str, Path(pattern=f"^{BATCH_ID.pattern}$")]
    TAG: list[str | Enum] = ["batches"]  # noqa: N806 - a constant of these routes

    def batch_action(action: lifecycle.Action, batch_id: str, request: Request) -> BatchAction:
        caller = request.client.host if request.client else "unknown"
        done = lifecycle.apply(settings, client, action, batch_id, by=f"api {caller}")
        return BatchAction(**done.to_json())

    @app.post("/batches/{batch_id}/cancel", tags=TAG, dependencies=guarded, responses=acted)
    def cancel_batch(batch_id: batch_path, request: Request) -> BatchAction:
        """Cancel a batch: nothing more of it is published (404 unknown, 409 already ended)."""
        return batch_action("cancel", batch_id, request)

    @app.post("/batches/{batch_id}/resume", tags=TAG, dependencies=guarded, responses=acted)
    def resume_batch(batch_id: batch_path, request: Request) -> BatchAction:
        """Resume a cancelled batch where it stopped (409 if it is not cancelled)."""
        return batch_action("resume", batch_id, request)

    @app.post(
        "/batches/{batch_id}/retry",
        tags=TAG,
        status_code=202,
        dependencies=guarded,
        responses=acted,
    )
    def retry_batch(batch_id: batch_path, request: Request) -> BatchAction:
        """Enqueue the failed chunks of a finished batch again, once (409 if none failed)."""
        return batch_action("retry", batch_id, request)

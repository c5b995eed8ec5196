"""GET /batches, the batch list (`ops._batch_list`), as a route of the HTTP API."""

# No `from __future__ import annotations`: FastAPI reads the parameter annotations at runtime.

from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query
from pydantic import BaseModel

from dbos_publishers._config import Settings
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


class BatchList(BaseModel):
    batches: list[ListedBatch]
    next: str | None  # pass as `after` for the next page; null on the last


def install(
    app: FastAPI, settings: Settings, guarded: list[Any], errors: dict[int | str, dict[str, Any]]
) -> None:
    """GET /batches (`errors`: the route's refusals: a bad cursor or time is a 400)."""

    @app.get("/batches", dependencies=guarded, responses=errors, tags=["batches"])
    def list_batches(
        *,
        publisher: str | None = None,
        topic: str | None = None,
        state: State | None = None,
        since: Annotated[str | None, Query(description="30m, 2h, 7d or an ISO time")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        after: Annotated[str | None, Query(description="the `next` of the page before")] = None,
        search: Annotated[str | None, Query(max_length=80, description="part of the id")] = None,
    ) -> BatchList:
        """The batches, newest first, filtered; page on with the `next` cursor."""
        wanted = batch_list.batch_filter(
            publisher=publisher,
            topic=topic,
            state=state,
            since=since,
            limit=limit,
            after=after,
            search=search,
        )
        return BatchList.model_validate(batch_list.gather(settings, wanted).to_json())

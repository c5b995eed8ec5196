"""The HTTP API's boundary, served by uvicorn in a thread of this process on a real SQLite
system database: a request body is strict, with no unknown field and no coerced type, and bounded in
size; a refused request writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from dbos_publishers.ops._api import MAX_BODY_BYTES
from tests.inprocess.conftest import Api, served_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with served_api(tmp_path, '[[publishers]]\nname = "orders"\n') as served:
        yield served


def _nothing_written(settings: Settings) -> bool:
    with dbos_gateway.client(settings.system_db) as client:
        return dbos_gateway.active_workflows(client) == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        # A typo for batch_id: accepted, it would publish under a random id, and again on retry.
        ({"publisher": "orders", "count": 5, "batchId": "x-1"}, "batchId"),
        ({"publisher": "orders", "count": "5"}, "count"),
        ({"publisher": "orders", "count": 5.5}, "count"),
        ({"publisher": "orders", "count": True}, "count"),
        ({"publisher": "orders", "count": [5]}, "count"),
        ({"publisher": "orders", "count": 5, "topic": 7}, "topic"),
    ],
)
def test_a_body_with_an_unknown_field_or_a_coerced_type_is_refused(
    api: Api, body: dict[str, Any], fragment: str
) -> None:
    client, settings = api
    response = client.post("/batches", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text
    assert _nothing_written(settings)


def test_a_body_over_the_limit_is_refused_declared_or_streamed(
    api: Api,
) -> None:
    client, settings = api
    big = b'{"publisher": "orders", "count": 5, "topic": "' + b"a" * MAX_BODY_BYTES + b'"}'
    declared = client.post("/batches", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert f"over {MAX_BODY_BYTES} bytes" in declared.json()["detail"]

    def stream() -> Iterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = client.post(
        "/batches", content=stream(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert _nothing_written(settings)


@pytest.mark.parametrize("count", ["5", "5.0", "5e0"])
def test_a_whole_count_is_accepted_however_json_writes_it(api: Api, count: str) -> None:
    """JSON has one number type; JSON Schema's "integer", which the OpenAPI spec publishes, is
    any number with no fractional part. Refusing 5.0 would make the spec lie."""
    client, settings = api
    body = f'{{"publisher": "orders", "count": {count}, "batch_id": "ok"}}'
    response = client.post("/batches", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    with dbos_gateway.client(settings.system_db) as dbos_client:
        (request,) = dbos_gateway.workflow_input(dbos_client, "batch-ok") or ()
    assert request["count"] == 5 and type(request["count"]) is int

"""The API is safe to reach from a browser: a forged state change from another site or origin is
refused and changes nothing, while a page of this origin and a tool (no Origin) change state; a
Host header outside the allow-list is a 400 (DNS rebinding); every answer carries the headers that
forbid framing and sniffing. Over real loopback HTTP, with no token (the loopback default) and no
worker (batches wait ENQUEUED)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dbos_publishers import _dbos_gateway as dbos_gateway
from dbos_publishers._config import Settings
from tests.inprocess.conftest import Api, served_api

PUBLISHERS = '[[publishers]]\nname = "orders"\nchunk_size = 25\n'
JSON = {"content-type": "application/json"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with served_api(tmp_path, PUBLISHERS) as served:
        http = served[0]
        body = {"publisher": "orders", "count": 50, "batch_id": "q"}
        assert http.post("/batches", json=body).status_code == 202
        yield served


def _status(settings: Settings) -> str:
    with dbos_gateway.client(settings.system_db) as client:
        (found,) = dbos_gateway.workflows(client, ["batch-q"])
    return found.status


@pytest.mark.parametrize(
    ("headers", "code", "detail"),
    [
        ({**JSON, "Origin": "http://evil.example"}, 403, "from another origin (http://evil"),
        ({**JSON, "Origin": "null"}, 403, "from another origin (null)"),
        ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403, "(Sec-Fetch-Site: cross-site)"),
    ],
    ids=["other-origin", "opaque-origin", "cross-site"],
)
def test_a_forgeable_state_change_is_refused_and_changes_nothing(
    api: Api, headers: dict[str, str], code: int, detail: str
) -> None:
    http, settings = api
    refused = http.post("/batches/q/cancel", headers=headers)
    assert (refused.status_code, detail in refused.json()["detail"]) == (code, True), refused.text
    assert _status(settings) == "ENQUEUED"


@pytest.mark.parametrize("from_a_page", [True, False], ids=["same-origin-page", "a-tool"])
def test_a_post_from_the_same_origin_or_a_tool_changes_state(api: Api, from_a_page: bool) -> None:
    http, settings = api
    origin = str(http.base_url).rstrip("/")
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"} if from_a_page else {}
    done = http.post("/batches/q/cancel", headers=headers)  # no body, as the spec says
    assert done.status_code == 200, done.text
    assert _status(settings) == "CANCELLED"


def test_a_host_outside_the_allow_list_is_a_400(api: Api) -> None:
    http, _ = api
    assert http.get("/publishers", headers={"Host": "evil.example"}).status_code == 400
    assert http.get("/publishers", headers={"Host": "localhost:8000"}).status_code == 200


@pytest.mark.parametrize("path", ["/dashboard", "/docs", "/publishers", "/healthz"])
def test_every_answer_forbids_framing_and_sniffing(api: Api, path: str) -> None:
    http, _ = api
    answer = http.get(path)
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert ("'unsafe-inline'" in policy.split("script-src")[1].split(";")[0]) == (path == "/docs")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"

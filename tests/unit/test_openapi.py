"""The served OpenAPI spec says what the server does: each route lists only the errors it can
answer, the bearer scheme guards what the token guards (not the probes), and /docs renders from
assets this service serves itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from dbos_publishers._config import Settings
from dbos_publishers.ops._api import create_app, serve_in_thread

# Operation -> the status codes it can answer, besides the token's 401.
EXPECTED = {
    ("post", "/batches"): {"202", "400", "403", "409", "413", "422", "503"},
    ("get", "/batches"): {"200", "400", "404", "422", "503"},
    ("get", "/batches/{batch_id}"): {"200", "404", "422", "503"},
    ("post", "/batches/{batch_id}/cancel"): {"200", "403", "404", "409", "422", "503"},
    ("post", "/batches/{batch_id}/resume"): {"200", "403", "404", "409", "422", "503"},
    ("post", "/batches/{batch_id}/retry"): {"202", "403", "404", "409", "422", "503"},
    ("get", "/publishers"): {"200", "400", "503"},
    ("get", "/workers"): {"200", "503"},
    ("get", "/metrics"): {"200", "503"},
    ("get", "/dashboard/overview"): {"200", "503"},
    ("get", "/batches/{batch_id}/timeline"): {"200", "404", "422", "503"},
    ("get", "/healthz"): {"200"},
    ("get", "/readyz"): {"200", "503"},
}
PROBES = {"/healthz", "/readyz"}


def _spec(tmp_path: Path, token: str | None) -> dict[str, Any]:
    settings = Settings.from_env(
        {
            "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}",
            "APP_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}",
        }
    )
    spec: dict[str, Any] = create_app(settings, None, token=token).openapi()  # type: ignore[arg-type]
    return spec


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, path): op for path, ops in spec["paths"].items() for m, op in ops.items()}


@pytest.mark.parametrize("token", [None, "t0ken"])
def test_each_route_lists_only_the_errors_it_can_answer(tmp_path: Path, token: str | None) -> None:
    operations = _operations(_spec(tmp_path, token))
    assert set(operations) == set(EXPECTED)
    for key, operation in operations.items():
        guarded = token is not None and key[1] not in PROBES
        assert set(operation["responses"]) == EXPECTED[key] | ({"401"} if guarded else set()), key


def test_the_bearer_scheme_guards_every_route_but_the_probes(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "t0ken")
    scheme = spec["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (_, path), operation in _operations(spec).items():
        expected: list[dict[str, list[str]]] | None = (
            None if path in PROBES else [{"HTTPBearer": []}]
        )
        assert operation.get("security") == expected, path


def test_without_a_token_the_spec_asks_for_none(tmp_path: Path) -> None:
    spec = _spec(tmp_path, None)
    assert "securitySchemes" not in spec.get("components", {})
    assert all("security" not in op for op in _operations(spec).values())


def test_docs_load_swagger_ui_from_this_service(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "DBOS_SYSTEM_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite'}",
            "APP_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}",
        }
    )
    server = serve_in_thread(create_app(settings, None, token=None), "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            page = client.get("/docs")
            assert page.status_code == 200
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
            assert assets and all(a.startswith("/docs/static/") for a in assets), assets
            for asset in assets:
                assert client.get(asset).status_code == 200, asset
    finally:
        server.should_exit = True
    assert "://" not in page.text  # nothing fetched from elsewhere


def test_docs_group_every_route_under_one_described_tag_and_describe_each(tmp_path: Path) -> None:
    spec = _spec(tmp_path, None)
    described = {tag["name"]: tag["description"] for tag in spec["tags"]}
    assert list(described) == ["batches", "state", "dashboard", "probes"]
    assert all(described.values())
    for (method, path), operation in _operations(spec).items():
        assert len(operation.get("tags", [])) == 1, (method, path)
        assert operation["tags"][0] in described, (method, path)
        assert operation.get("description"), f"{method} {path} has no description"

"""No secret anywhere: a password planted in the Postgres URLs and a token in APP_API_TOKEN appear
in no output of the crash lab, `dbos migrate`, the service (its log, its HTTP responses, its
command line) or any command, while both are in use; and the grep does find them where they are."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.helpers import Databases, ServiceRunner, dbos_migrate

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PASSWORD = "PLANTED-pw-123"  # trust auth accepts any password: it travels, and is never needed
TOKEN = "PLANTED-token-456"
COMMANDS = [
    ["status"],
    ["status", "--json"],
    ["inspect", "secret-1"],
    ["inspect", "secret-1", "--json"],
    ["workers"],
    ["workers", "--json"],
    ["publish", "orders", "--count", "5", "--batch-id", "secret-2", "--wait"],
    ["publish", "nobody", "--count", "5"],  # bad input
    ["publish", "orders", "--count", "5", "--topic", "Bad Topic"],  # bad input
]
ROUTES = [
    *("/metrics", "/publishers", "/workers", "/readyz", "/batches/secret-1", "/openapi.json"),
    *("/dashboard", "/dashboard/overview", "/batches/secret-1/timeline", "/docs"),
]


def with_password(url: str) -> str:
    return sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def leaks(seen: dict[str, str]) -> list[str]:
    """The names of the texts that show a planted secret."""
    return [name for name, text in seen.items() if PASSWORD in text or TOKEN in text]


def test_the_grep_finds_a_planted_secret_where_it_is_shown(postgres_server: str) -> None:
    """The broken variant: unsafe renderings of both secrets are caught, safe ones pass."""
    url = with_password(postgres_server)
    shown = {
        "the raw URL": url,
        "a repr of it": repr(sa.make_url(url).render_as_string(hide_password=False)),
        "the header": f"Authorization: Bearer {TOKEN}",
        "the safe URL": str(sa.make_url(url)),
    }
    assert leaks(shown) == ["the raw URL", "a repr of it", "the header"]


def _http(base: str, seen: dict[str, str]) -> None:
    """Every route with the token, and the refusals without it or with a wrong one."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, timeout=60) as http:
        body = {"publisher": "orders", "count": 60, "batch_id": "secret-1"}
        submitted = http.post("/batches", json=body, headers=bearer)
        assert submitted.status_code == 202, submitted.text
        seen["POST /batches"] = submitted.text
        for route in ROUTES:
            response = http.get(route, headers=bearer)
            assert response.status_code == 200, (route, response.text)
            seen[f"GET {route}"] = response.text + str(response.headers)
        for headers in ({}, {"Authorization": f"Bearer {TOKEN[:-1]}"}):
            refused = http.get("/publishers", headers=headers)
            assert refused.status_code == 401
            seen[f"401 {headers}"] = refused.text + str(refused.headers)


@pytest.mark.parametrize("backend", ["postgres"])
def test_no_planted_secret_shows_anywhere(
    databases: Databases, postgres_server: str, tmp_path: Path
) -> None:
    url = with_password(databases.system_url)
    service = ServiceRunner(Databases("postgres", url, url), workdir=tmp_path)
    base = service.enable_http()
    service.extra_env["APP_API_TOKEN"] = TOKEN
    seen: dict[str, str] = {}
    lab = service.cli(
        "scenario", "run", "chunk.before_commit/crash", "--backend", "postgres",
        "--postgres-url", with_password(postgres_server), "--json",
    )  # fmt: skip
    assert lab.returncode == 0, lab.stderr[-3000:]
    seen["scenario stdout"], seen["scenario stderr"] = lab.stdout, lab.stderr
    migrated = dbos_migrate(url)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    seen["dbos migrate stdout"], seen["dbos migrate stderr"] = migrated.stdout, migrated.stderr
    try:
        service.start()
        assert service.process is not None
        proc = Path(f"/proc/{service.process.pid}")
        seen["cmdline"] = proc.joinpath("cmdline").read_bytes().decode(errors="replace")
        # Both secrets are in play: the service was given them (and the API asks for the token).
        environ = proc.joinpath("environ").read_bytes().decode(errors="replace")
        assert PASSWORD in environ and TOKEN in environ
        _http(base, seen)
        service.wait_batch("secret-1")
        for args in COMMANDS:
            done = service.cli(*args)
            seen[f"{args} stdout"], seen[f"{args} stderr"] = done.stdout, done.stderr
        down = service.cli("status", APP_DATABASE_URL=f"postgresql://u:{PASSWORD}@127.0.0.1:1/db")
        assert down.returncode == 2
        seen["unreachable stderr"] = down.stderr
        assert service.stop() == 0
    finally:
        service.kill()
    seen.update({str(path): path.read_text(errors="replace") for path in service.log_paths})
    assert "service_ready" in seen[str(service.log_paths[0])]
    assert leaks(seen) == []

"""docker-compose.yml, envrc-template and dbos-config.yaml agree with each other and the docs
(docs/operations: postgres.md, several-workers.md; there is no Docker engine here, so the compose
file is checked by reading it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations"


def _compose() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_names_the_services_the_docs_name() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert set(services) == {"postgres", "migrate", "service"}
    postgres_page = (OPERATIONS / "postgres.md").read_text()
    assert "docker compose up -d --wait postgres" in postgres_page
    assert "(`migrate`)" in postgres_page and "(`service`," in postgres_page


def test_postgres_has_a_healthcheck_and_a_named_volume() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]  # type: ignore[index]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # type: ignore[operator]


def test_service_waits_for_a_healthy_postgres_and_a_finished_migration() -> None:
    services = _compose()["services"]
    assert services["migrate"]["command"] == ["dbos", "migrate"]  # type: ignore[index]
    # Each replica's executor id is its hostname, then the service takes over the process (so
    # a SIGTERM reaches it, not `dbos start`, which would exit before the service has stopped).
    command = services["service"]["command"]  # type: ignore[index]
    assert command[:2] == ["sh", "-c"] and command[2].endswith("exec python -m app serve")
    assert 'APP_EXECUTOR_ID="$$(hostname)"' in command[2]
    assert services["service"]["depends_on"] == {  # type: ignore[index]
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }


def test_both_database_variables_are_the_contract_everywhere() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    envrc = (ROOT / "envrc-template").read_text()
    config = yaml.safe_load((ROOT / "dbos-config.yaml").read_text())
    for variable in ("DBOS_SYSTEM_DATABASE_URL", "APP_DATABASE_URL"):
        assert f"{variable}:" in compose
        assert f"export {variable}=" in envrc
    assert config["system_database_url"] == "${DBOS_SYSTEM_DATABASE_URL}"
    assert config["runtimeConfig"]["start"] == ["python -m app serve"]
    assert config["database"]["migrate"] == ["alembic upgrade head"]


def test_envrc_points_libpq_and_compose_at_the_same_database() -> None:
    envrc = (ROOT / "envrc-template").read_text()
    exported = dict(re.findall(r"^export (\w+)=(.*)$", envrc, re.M))
    for variable in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
        assert variable in exported
    compose = _compose()["services"]["postgres"]  # type: ignore[index]
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        # The same default, and the environment's value first, in both files.
        assert exported[variable] == f'"{compose["environment"][variable]}"', variable


def _sourced(**env: str) -> list[str]:
    """PGDATABASE and the system database URL after `source envrc-template` in bash."""
    script = 'source ./envrc-template && echo "$PGDATABASE $DBOS_SYSTEM_DATABASE_URL"'
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, "-c", script],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_sourcing_the_envrc_keeps_a_database_name_already_set() -> None:
    url = "postgresql://postgres:dbos@127.0.0.1:5432/"
    assert _sourced() == ["publishers", f"{url}publishers"]
    assert _sourced(POSTGRES_DB="mine") == ["mine", f"{url}mine"]


def test_the_service_scales_without_a_host_port_clash() -> None:
    """`docker compose up --scale service=3`: every replica's API on an ephemeral host port."""
    (port,) = _compose()["services"]["service"]["ports"]  # type: ignore[index]
    host_ip, host_port, container_port = port.split(":")
    assert (host_ip, host_port, container_port) == ("127.0.0.1", "", "8000")
    assert "--scale service=3" in (OPERATIONS / "several-workers.md").read_text()

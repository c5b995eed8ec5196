"""The service's HTTP API: submit and follow batches, read counters, probes and metrics."""

# No `from __future__ import annotations`: FastAPI must see the per-app request model itself.

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import sqlalchemy as sa
import uvicorn
from dbos import DBOSClient
from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, create_model
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbos_publishers import _batches as batches
from dbos_publishers import _lifecycle as lifecycle
from dbos_publishers import _migrate as migrate
from dbos_publishers._config import BATCH_ID, TOPIC_NAME, ConfigError, Settings, is_loopback
from dbos_publishers._connections import API_READERS
from dbos_publishers._errors import (
    AppError,
    BadInputError,
    ConflictError,
    NotFoundError,
    StateError,
    UnreachableDatabaseError,
)
from dbos_publishers._ids import batch_workflow_id
from dbos_publishers._metrics import REGISTRY
from dbos_publishers.ops import _batch_routes as batch_routes
from dbos_publishers.ops import _fleet_view as fleet
from dbos_publishers.ops import _status as service_status
from dbos_publishers.ops._browser_safety import BrowserSafety
from dbos_publishers.ops.dashboard import docs, routes
from dbos_publishers.store import _ledger as ledger
from dbos_publishers.store._database import short_lived_engine

bearer = HTTPBearer(auto_error=False, description="APP_API_TOKEN, as `Authorization: Bearer`")
HTTP_START_TIMEOUT_SEC = 30
READ_WAIT_SEC = 10.0  # a request waits this long for a read slot, then gets a 503
MAX_BODY_BYTES = 64 * 1024  # a batch request is a few fields; anything bigger is refused (413)


def _whole_number(value: object) -> object:
    """A JSON number with no fractional part, as JSON Schema's "integer" (and so the published
    OpenAPI spec) defines it: 5, 5.0 and 1e3 are whole numbers; "5", true and 5.5 are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # anything else meets the strict int check: only a real int passes


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole_number)]


def batch_model(settings: Settings) -> type[BaseModel]:
    """The request body, with the declared publisher names and the name rules in its schema."""
    names = tuple(d.name for d in settings.publishers)
    # Strict: an unknown field (a typo for batch_id) or a count given as "5", true or 5.5 is a
    # 422, never a batch published under a random id or with a guessed count.
    model: type[BaseModel] = create_model(
        "BatchIn",
        __config__=ConfigDict(extra="forbid", strict=True),
        publisher=(Literal[names], Field(description="a declared publisher")),  # type: ignore[arg-type]
        count=(WholeNumber, Field(gt=0, le=batches.MAX_BATCH_MESSAGES)),
        topic=(str, Field(default="default", pattern=f"^{TOPIC_NAME.pattern}$")),
        batch_id=(
            str | None,
            Field(default=None, pattern=f"^{BATCH_ID.pattern}$", description="idempotency key"),
        ),
    )
    return model


class BatchAccepted(BaseModel):
    batch_id: str
    workflow_id: str
    status_url: str


class BatchState(BaseModel):
    batch_id: str
    workflow_id: str
    status: str
    published: int
    summary: dict[str, Any] | None


class Problem(BaseModel):
    detail: str


class Readiness(BaseModel):
    system_database: bool
    app_database: bool
    migrations_at_head: bool


DESCRIPTION = (
    "Submit batches to durable DBOS queues, follow them, cancel, resume or retry them, and read "
    "counters, workers and metrics. With `APP_API_TOKEN` set, every route but the probes needs "
    "`Authorization: Bearer <token>`."
)
# The groups /docs shows, in this order, each with what its routes are for.
TAGS = [
    {"name": "batches", "description": "Submit, list and follow batches; cancel, resume, retry."},
    {"name": "state", "description": "Counters, ledger totals, workers and Prometheus metrics."},
    {"name": "dashboard", "description": "The JSON the dashboard page reads."},
    {"name": "probes", "description": "Liveness and readiness, open to anyone."},
]
FORGED = (403,)  # every POST: refused by ops._browser_safety before it reaches a route
# Each route lists only the errors it can answer (FastAPI adds 422 where a request has fields).
REASONS = {
    400: "refused by a rule the schema cannot say (the message names it)",
    401: "missing or wrong bearer token",
    404: "no such batch",
    403: "a state change sent from another site or origin (a browser's forged request)",
    409: "the batch id is taken by a different batch",
    413: f"request body over {MAX_BODY_BYTES} bytes",
    503: "a database is unreachable, or every read slot is busy",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem, "description": REASONS[code]} for code in codes}


READY_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Readiness | Problem,
        "description": "not ready: the checks say which failed (or every read slot is busy)",
    }
}


def create_app(
    settings: Settings, client: DBOSClient, *, token: str | None, recovered_at_start: int = 0
) -> FastAPI:
    """The FastAPI app; `client` is a DBOS client on the system database, owned by the caller."""
    app = FastAPI(
        title="dbos-publishers",
        version="1",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None,
        redoc_url=None,
    )
    _install_guards(app, settings)
    docs.mount(app)
    batch_in = batch_model(settings)
    auth = (401,) if token is not None else ()

    def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
        """A guarded route's errors: 401 when a token is required, then its own."""
        return problems(*auth, *codes)

    def authorize(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token")

    readers = threading.BoundedSemaphore(API_READERS)

    def read_slot() -> Iterator[None]:
        # The connection budget: at most API_READERS requests touch the databases at once.
        if not readers.acquire(timeout=READ_WAIT_SEC):
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"busy: {API_READERS} database reads already in flight for {READ_WAIT_SEC:g} s; "
                "retry",
            )
        try:
            yield
        finally:
            readers.release()

    # Declared only with a token, so the OpenAPI spec says exactly what the server requires.
    open_reads = [Depends(read_slot)]
    guarded = [Depends(authorize), *open_reads] if token is not None else open_reads

    @app.post(
        "/batches",
        tags=["batches"],
        status_code=202,
        dependencies=guarded,
        responses=errors(400, *FORGED, 409, 413, 503),
    )
    def submit_batch(body: batch_in) -> BatchAccepted:  # type: ignore[valid-type]
        """Submit a batch; the same batch id again returns the first submission."""
        fields = body.model_dump()  # type: ignore[attr-defined]
        submission = batches.validate(
            settings,
            fields["publisher"],
            count=fields["count"],
            topic=fields["topic"],
            batch_id=fields["batch_id"],
        )
        batches.require_served(settings, submission.publisher)
        batches.enqueue(client, submission)
        batches.record_submission(settings, submission)
        batch_id = submission.request["batch_id"]
        return BatchAccepted(
            batch_id=batch_id,
            workflow_id=submission.workflow_id,
            status_url=f"/batches/{batch_id}",
        )

    @app.get(
        "/batches/{batch_id}",
        tags=["batches"],
        dependencies=guarded,
        responses=errors(404, 503),
        description="A batch's DBOS status, messages published so far, its summary once done.",
    )
    def batch_state(
        batch_id: Annotated[str, Path(pattern=f"^{BATCH_ID.pattern}$")],
    ) -> BatchState:
        batch_status, summary = lifecycle.batch_outcome(client, batch_id)
        if batch_status is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch with id {batch_id!r}")
        with short_lived_engine(settings.app_db) as engine, engine.connect() as conn:
            published = ledger.batch_published(conn, batch_id)
        return BatchState(
            batch_id=batch_id,
            workflow_id=batch_workflow_id(batch_id),
            status=batch_status,
            published=published,
            summary=summary,
        )

    batch_routes.lifecycle_routes(app, settings, client, guarded, errors(*FORGED, 404, 409, 503))
    batch_routes.install(app, settings, guarded, errors(400, 404, 503))

    @app.get("/publishers", tags=["state"], dependencies=guarded, responses=errors(400, 503))
    def publishers() -> dict[str, Any]:
        """Declared publishers, local and global counters, and whether they agree."""
        return service_status.gather(settings).to_json()

    @app.get("/workers", tags=["state"], dependencies=guarded, responses=errors(503))
    def workers() -> dict[str, Any]:
        """Worker leases, in-flight work, takeovers, and work stranded under another version."""
        return fleet.gather(settings).to_json()

    _add_probes(app, settings, open_reads)

    @app.get(
        "/metrics",
        tags=["state"],
        description="Prometheus metrics: counters, queues, workers, takeovers, batches.",
        dependencies=guarded,
        response_class=Response,
        responses=errors(503),
    )
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes.install(
        app, settings, client, guarded=guarded, errors=errors, recovered_at_start=recovered_at_start
    )
    return app


def _add_probes(app: FastAPI, settings: Settings, open_reads: list[Any]) -> None:
    """Liveness and readiness: open to anyone, whatever the token."""

    @app.get("/healthz", tags=["probes"])
    def liveness() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses=READY_ERRORS, dependencies=open_reads)
    def readiness(response: Response) -> Readiness:
        """Both databases reachable, the schema at head (503 says which check failed)."""
        checks = readiness_checks(settings)
        if not all(checks.values()):
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(**checks)


class BodyLimit:
    """ASGI middleware: refuse a request body over `limit` bytes with a 413, whether it declares
    its length or streams it, before any of it is parsed or held."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            response = JSONResponse({"detail": self._detail}, status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # streamed past the limit: the handler's error path answers
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._detail)
            return message

        await self.app(scope, counted, send)

    @property
    def _detail(self) -> str:
        return f"request body over {self.limit} bytes"


def _install_guards(app: FastAPI, settings: Settings) -> None:
    """Body limit, browser safety, the Host allow-list, and how errors answer."""
    app.add_middleware(BodyLimit)
    app.add_middleware(BrowserSafety)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_exception_handler(AppError, refused)  # type: ignore[arg-type]
    app.add_exception_handler(405, allow_every_method)


async def refused(_request: Request, exc: AppError) -> JSONResponse:
    """An error the product raised on purpose: its one line, at its status."""
    return JSONResponse({"detail": str(exc)}, status_code=http_status(exc))


async def allow_every_method(request: Request, _exc: Exception) -> JSONResponse:
    """A 405 naming every method the path serves: Starlette names those of the first route
    matching it only, and GET and POST /batches are two routes."""
    allow = ", ".join(sorted(allowed_methods(request.app, request.url.path)))
    return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": allow})


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route of `app` serves at `path`."""
    found: set[str] = set()
    for route in app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            found |= set(getattr(route, "methods", None) or ())
    return found


def http_status(exc: AppError) -> int:
    """The HTTP status of an error the product raised on purpose."""
    if isinstance(exc, NotFoundError):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, ConflictError | StateError):
        return status.HTTP_409_CONFLICT
    if isinstance(exc, UnreachableDatabaseError):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    return status.HTTP_400_BAD_REQUEST


def readiness_checks(settings: Settings) -> dict[str, bool]:
    """Both databases reachable and the application schema at alembic's head."""
    checks = {"system_database": False, "app_database": False, "migrations_at_head": False}
    for name, url in (("system_database", settings.system_db), ("app_database", settings.app_db)):
        try:
            with short_lived_engine(url) as engine, engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                checks[name] = True
                if name == "app_database":
                    checks["migrations_at_head"] = migrate.at_head(conn, url)
        except sa.exc.DBAPIError:
            continue
    return checks


def refuse_an_open_api(settings: Settings) -> None:
    """Beyond loopback, anyone who reaches the port could submit batches: serving there needs a
    token, unless APP_ALLOW_NO_TOKEN=1 says only trusted peers reach it. Checked at start, before
    anything touches a database."""
    if settings.http_port is None or settings.api_token is not None or settings.allow_no_token:
        return
    if not is_loopback(settings.http_host):
        raise ConfigError(
            f"APP_HTTP_HOST={settings.http_host} serves the API beyond loopback without a token: "
            "set APP_API_TOKEN (clients send `Authorization: Bearer <token>`), or "
            "APP_ALLOW_NO_TOKEN=1 if only trusted peers can reach it"
        )


def serve_in_thread(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """Run the app with uvicorn in a daemon thread (uvicorn leaves signals to the main thread)
    and return once it listens; a port it cannot take is one clear error."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    deadline = time.monotonic() + HTTP_START_TIMEOUT_SEC
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise BadInputError(
            f"the HTTP API cannot listen on {host}:{port} "
            "(set APP_HTTP_PORT to a free port, or to 'off')"
        )
    return server

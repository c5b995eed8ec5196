"""/docs: Swagger UI from files installed on this machine (the `fastapi-offline` package ships
Swagger UI's bundle and style sheet), so the docs render with no network."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_FILES = Path(str(files("fastapi_offline") / "static"))
DOCS_STATIC = "/docs/static"


def mount(app: FastAPI) -> None:
    """Serve /docs and its assets; the app is made with docs_url=None (FastAPI's page loads
    them from a CDN)."""
    app.mount(DOCS_STATIC, StaticFiles(directory=SWAGGER_FILES), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            # No badge that asks validator.swagger.io about the spec.
            swagger_ui_parameters={"validatorUrl": None},
        )

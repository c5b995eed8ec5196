"""The API and the dashboard are safe to reach from a browser: another site's page cannot change
state here (cross-site request forgery), a DNS name rebound to this machine is refused (the Host
allow-list, starlette's TrustedHostMiddleware), and every response forbids framing, sniffing and
content from elsewhere.

A POST (every state change here is one) is refused with a 403 when the browser says it comes from
another site (`Sec-Fetch-Site`) or another origin (`Origin`, `null` included). Every browser the
dashboard runs in sends both with a cross-origin POST, `no-cors` fetches and forms included, and
a page cannot remove them; a request without them is no browser's, so tools (curl, scripts) need
no extra header and the body-less lifecycle routes keep the shape their OpenAPI spec gives.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every state change here is a POST; other methods reach the router and get their 405.
UNSAFE_METHODS = frozenset({"POST"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
# Swagger UI (/docs) starts itself with an inline script; nothing else here needs one. Inline
# style attributes are the dashboard's bar widths and legend colours.
POLICY = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    "object-src 'none'"
)
INLINE_SCRIPT_PATHS = frozenset({"/docs"})


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    scripts = " 'unsafe-inline'" if path in INLINE_SCRIPT_PATHS else ""
    return [
        (b"content-security-policy", POLICY.format(scripts=scripts).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


def refusal(method: str, headers: Headers, host_origins: Iterable[str]) -> tuple[int, str] | None:
    """Why a request is refused as forged (status and one line), or None."""
    if method not in UNSAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site")
    if site in FOREIGN_SITES:
        return 403, f"refused: a state-changing request from another site (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None and origin not in host_origins:
        return 403, f"refused: a state-changing request from another origin ({origin})"
    return None


class BrowserSafety:
    """ASGI middleware: refuse forged state changes; add the security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        origins = {f"http://{host}", f"https://{host}"}
        extra = security_headers(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        refused = refusal(scope["method"], headers, origins)
        if refused is None:
            await self.app(scope, receive, with_headers)
        else:
            code, detail = refused
            await JSONResponse({"detail": detail}, status_code=code)(scope, receive, with_headers)

"""``GET /console``: the web console, static files shipped in the package, served here.

No server of its own and no build step: ``api/console/`` holds one HTML page, a style
sheet and ES modules that read the JSON routes (their paths are declared once, in
``assets/js/paths.js``, and a test checks each against the OpenAPI document). Nothing
here is in the OpenAPI document: the console is a client of the API, not part of it.

The page is sent with a Content-Security-Policy that allows scripts and styles from this
origin only, so even a string that escaped the console's escaping could not run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from api.context import ApiContext

__all__ = ["ASSETS", "CONSOLE", "CSP", "install"]

CONSOLE = Path(__file__).resolve().parent.parent / "console"
ASSETS = CONSOLE / "assets"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI, ctx: ApiContext) -> None:
    page = (CONSOLE / "index.html").read_bytes()

    async def console() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    for path in ("/console", "/console/"):
        app.add_api_route(path, console, methods=["GET"], include_in_schema=False)
    app.mount("/console/assets", StaticFiles(directory=ASSETS), name="console-assets")

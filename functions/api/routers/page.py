"""`GET /` and `GET /upload`: the page to try the API (static HTML/JS/CSS, no build step,
no external resources), and its assets under `/static/`."""

from __future__ import annotations

import hashlib
import html
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from alertfusion.errors import NotFoundError

router = APIRouter(tags=["page"], include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
#: the page talks only to its own origin and, for the presigned POST, to S3
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; "
    "connect-src *; form-action 'none'; frame-ancestors 'none'; base-uri 'self'"
)


@cache
def _read(name: str) -> tuple[bytes, str]:
    data = (STATIC / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def _page(request: Request) -> HTMLResponse:
    template, _ = _read("index.html")
    # relative URLs resolve under the stage prefix ("/prod/") behind API Gateway
    base = html.escape(request.scope.get("root_path", "") + "/", quote=True)
    _, js_version = _read("app.js")
    _, css_version = _read("app.css")
    body = (
        template.decode("utf-8")
        .replace("{{BASE}}", base)
        .replace("{{JS_VERSION}}", js_version)
        .replace("{{CSS_VERSION}}", css_version)
    )
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": _CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/upload", response_class=HTMLResponse)
async def upload_page(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/static/{name}")
async def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no asset {name[:60]!r}")
    data, etag = _read(name)
    return Response(
        data,
        media_type=media_type,
        headers={
            "Cache-Control": "public, max-age=300",
            "ETag": f'"{etag}"',
            "X-Content-Type-Options": "nosniff",
        },
    )

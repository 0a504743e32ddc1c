"""The web app's static files (web/dist): `/`, hashed assets, top-level files, and index.html
for every other app path (the browser's router takes over from there).

The REST routes the web app needs beyond the product contract are in :mod:`server.web.api`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
# First path segments that are never the web app's (API, infrastructure, sockets, media).
WEB_RESERVED = ("api", "docs", "openapi.json", "metrics", "healthz", "readyz", "collab", "ws", "media")


def web_index() -> Response:
    index = WEB_DIST / "index.html"
    if not index.is_file():
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Scriptorium</title>"
            "<h1>Scriptorium</h1><p>The API is running (web/dist is not built). "
            "See <a href='/docs'>/docs</a>.</p>"
        )
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-cache"})


class HashedAssets(StaticFiles):
    """web/dist/assets: file names carry a content hash, so they may be cached for a year."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def web_routes() -> list[BaseRoute]:
    """The web app from web/dist: `/`, hashed assets, and top-level files such as the favicon.

    Other app paths (/courses/…, /lessons/…) get index.html from :func:`spa_fallback`."""

    async def landing(request: Request) -> Response:
        return web_index()

    async def top_file(request: Request) -> Response:
        name = request.path_params["name"]
        candidate = WEB_DIST / name
        if name.startswith(".") or not candidate.is_file():
            raise HTTPException(404)
        return FileResponse(candidate, headers={"Cache-Control": "no-cache"})

    return [
        Route("/", landing, methods=["GET", "HEAD"]),
        Mount("/assets", app=HashedAssets(directory=WEB_DIST / "assets", check_dir=False), name="assets"),
        Route("/{name:str}.{ext:str}", top_file_with_ext(top_file), methods=["GET", "HEAD"]),
    ]


def top_file_with_ext(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        params = request.path_params
        request.scope["path_params"] = {"name": f"{params['name']}.{params['ext']}"}
        if params["name"] in WEB_RESERVED:
            raise HTTPException(404)
        return await handler(request)

    return wrapped


def spa_fallback(not_found: ASGIApp) -> ASGIApp:
    """The router's default: index.html for a GET of an app path (not API or infra), else 404."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            first = scope["path"].lstrip("/").split("/", 1)[0]
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            if first not in WEB_RESERVED and first != "assets" and b"text/html" in accept:
                await web_index()(scope, receive, send)
                return
        await not_found(scope, receive, send)

    return app

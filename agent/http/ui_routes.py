"""The web UI's routes: its static files, and Consul's ``/v1/internal/ui/*`` reads.

Static side (only when the agent runs with the UI on, as Consul's ``ui_config``):

- ``/`` redirects (301) to ``/ui/``, so an HTTP check pointed at the agent's root
  gets a 2xx after the redirect, as with Consul;
- ``/ui/assets/<path>`` is a file under :data:`agent.ui.STATIC_DIR` (404 if
  absent; never outside that directory);
- any other ``/ui/...`` path is the single page (``index.html``), so a deep link
  such as ``/ui/dc1/kv/app/config/edit`` opens where it points.

The ``/v1/internal/ui/*`` endpoints are served whether the UI is on or not (as
Consul does); they live in :mod:`agent.http.ui_endpoints`.
"""

from __future__ import annotations

from aiohttp import web

from agent.http.ui_endpoints import add_ui_endpoints
from agent.ui import INDEX_HTML, STATIC_DIR

__all__ = ["add_ui_routes"]

# The page is small and changes with every release: always revalidate it. The
# assets are revalidated too (ETag / Last-Modified from aiohttp's FileResponse);
# they are few and small, so a 304 costs one round trip each.
_NO_CACHE = {"Cache-Control": "no-cache"}

_CONTENT_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ui/")


async def _ui_slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/ui/")


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(INDEX_HTML, headers=_NO_CACHE)


async def _asset(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    base = STATIC_DIR.resolve()
    try:
        path = (base / relative).resolve()
    except (OSError, ValueError):
        raise web.HTTPNotFound() from None
    if not path.is_relative_to(base) or not path.is_file():
        raise web.HTTPNotFound()
    headers = dict(_NO_CACHE)
    content_type = _CONTENT_TYPES.get(path.suffix)
    if content_type is not None:
        headers["Content-Type"] = content_type + "; charset=utf-8"
    return web.FileResponse(path, headers=headers)


def add_ui_routes(router: web.UrlDispatcher, *, serve_ui: bool) -> None:
    """Consul's UI reads always; the UI itself (and ``/`` → ``/ui/``) when ``serve_ui``."""
    add_ui_endpoints(router)
    if not serve_ui:
        return
    router.add_get("/", _root)
    router.add_get("/ui", _ui_slash)
    router.add_get("/ui/assets/{path:.+}", _asset)
    router.add_get("/ui/{tail:.*}", _page)

"""The web UI's static files: an ES-module single-page app under ``static/``.

Nothing here is built or fetched at run time. ``static/app/`` is our code;
``static/vendor/`` holds the ES-module builds of Preact, its hooks, htm and
js-yaml copied from ``node_modules`` by ``scripts/vendor-ui`` (pinned in the
repository's package-lock.json; ``scripts/vendor-ui --check`` fails when the copy
drifts). The files ship in the wheel as package data; ``agent.http.ui_routes``
serves them at ``/ui/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["INDEX_HTML", "STATIC_DIR"]

#: The directory served at ``/ui/assets/``.
STATIC_DIR: Path = Path(__file__).resolve().parent / "static"
#: The page every client-side route (``/ui/dc1/services`` ...) answers with.
INDEX_HTML: Path = STATIC_DIR / "index.html"

"""Consul's ``/v1`` HTTP API on aiohttp, translating JSON to and from our protobufs."""

from __future__ import annotations

from agent.http.app import build_app
from agent.http.protocols import Invoker, LocalAgent
from agent.http.server import HTTPServer

__all__ = ["HTTPServer", "Invoker", "LocalAgent", "build_app"]

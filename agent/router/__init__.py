"""The router: the ordered server list of each datacenter, and routes to them."""

from __future__ import annotations

from agent.router.manager import Manager, ManagerState, Pinger
from agent.router.router import Router
from agent.router.server import Server

__all__ = ["Manager", "ManagerState", "Pinger", "Router", "Server"]

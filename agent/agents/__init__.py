"""The two composition roots: ``ServerAgent`` and ``ClientAgent``, on a shared ``AgentBase``."""

from __future__ import annotations

from agent.agents.base import AgentBase, StopFailed
from agent.agents.client import ClientAgent
from agent.agents.server import ServerAgent

__all__ = ["AgentBase", "ClientAgent", "ServerAgent", "StopFailed"]

"""The agent's local state, its anti-entropy with the catalog, and AgentService."""

from __future__ import annotations

from agent.local.antientropy import AntiEntropy, Invoker, scale_interval
from agent.local.endpoint import AgentEndpoint
from agent.local.state import LocalState

__all__ = ["AgentEndpoint", "AntiEntropy", "Invoker", "LocalState", "scale_interval"]

"""What every agent, server or client, runs for its applications.

``LocalAgent`` owns the local state (services, checks, persistence), the
anti-entropy loop that pushes it to the catalog through an ``Invoker``, and
the AgentService endpoint. The server agent gives it its in-process
dispatcher as invoker; the client agent gives it ``Client``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.checks.spec import MIN_INTERVAL
from agent.local.antientropy import SYNC_INTERVAL, AntiEntropy, Invoker
from agent.local.endpoint import AgentEndpoint
from agent.local.state import LocalState
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["LocalAgent"]


class LocalAgent:
    def __init__(
        self,
        *,
        node_name: str,
        datacenter: str,
        invoker: Invoker,
        node: Callable[[], pb.Node],
        members: Callable[[bool], Awaitable[list[mpb.Member]]],
        describe: Callable[[], apb.SelfResponse],
        cluster_size: Callable[[], int] = lambda: 1,
        data_dir: str = "",
        enable_script_checks: bool = False,
        min_check_interval: float = MIN_INTERVAL,
        sync_interval: float = SYNC_INTERVAL,
        retry_interval: float = 15.0,
    ) -> None:
        self.state = LocalState(
            node_name,
            data_dir=data_dir,
            enable_script_checks=enable_script_checks,
            min_check_interval=min_check_interval,
        )
        self.ae = AntiEntropy(
            self.state,
            invoker,
            node,
            datacenter=datacenter,
            cluster_size=cluster_size,
            interval=sync_interval,
            retry_interval=retry_interval,
        )
        self.state.on_change = self.ae.trigger
        self.endpoint = AgentEndpoint(self.state, members=members, describe=describe)

    async def start(self) -> None:
        await self.state.__aenter__()
        await self.ae.start()

    async def aclose(self) -> None:
        await self.ae.aclose()
        await self.state.aclose()

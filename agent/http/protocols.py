"""What the HTTP API calls: the servers (through an Invoker) and the local agent.

Both are declared here, next to their user, and satisfied without an import:
the client agent's ``Client`` (or a server agent's in-process dispatcher) is an
:class:`Invoker`; ``agent.local.AgentEndpoint`` is a :class:`LocalAgent`.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message

from agent.rpc.methods import MethodSpec
from generated.consul.agent.v1 import agent_pb2 as apb

__all__ = ["Invoker", "LocalAgent"]


class Invoker(Protocol):
    """Sends one Catalog/Health/KV/Status call to the servers.

    Errors are raised as ``agent.errors.ConsulError`` subclasses; the HTTP
    layer answers each with its ``http_status`` and message.
    """

    async def rpc(self, spec: MethodSpec, request: Message) -> Message: ...


class LocalAgent(Protocol):
    """The agent's own operations, one coroutine per AgentService RPC."""

    async def RegisterService(
        self, req: apb.RegisterServiceRequest
    ) -> apb.RegisterServiceResponse: ...

    async def DeregisterService(
        self, req: apb.DeregisterServiceRequest
    ) -> apb.DeregisterServiceResponse: ...

    async def RegisterCheck(self, req: apb.RegisterCheckRequest) -> apb.RegisterCheckResponse: ...

    async def DeregisterCheck(
        self, req: apb.DeregisterCheckRequest
    ) -> apb.DeregisterCheckResponse: ...

    async def UpdateTTL(self, req: apb.UpdateTTLRequest) -> apb.UpdateTTLResponse: ...

    async def ListServices(self, req: apb.ListServicesRequest) -> apb.ListServicesResponse: ...

    async def ListChecks(self, req: apb.ListChecksRequest) -> apb.ListChecksResponse: ...

    async def ListMembers(self, req: apb.ListMembersRequest) -> apb.ListMembersResponse: ...

    async def Self(self, req: apb.SelfRequest) -> apb.SelfResponse: ...

    async def Maintenance(self, req: apb.MaintenanceRequest) -> apb.MaintenanceResponse: ...

"""AgentService: the local agent's own RPCs (registrations, TTLs, members, self).

Served on ``--grpc-addr`` by every agent, and called in-process by the HTTP
API's ``/v1/agent/*`` handlers, so both speak through one piece of code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.errors import InvalidArgument
from agent.filter import apply_filter
from agent.local.convert import STATUS_OF
from agent.local.state import LocalState
from agent.shapes import check_json, service_json
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["AgentEndpoint"]


class AgentEndpoint:
    def __init__(
        self,
        local: LocalState,
        *,
        members: Callable[[bool], Awaitable[list[mpb.Member]]],
        describe: Callable[[], apb.SelfResponse],
    ) -> None:
        self.local = local
        self.members = members
        self.describe = describe

    async def RegisterService(self, req: apb.RegisterServiceRequest) -> apb.RegisterServiceResponse:
        self.local.add_service(req.definition, replace_existing_checks=req.replace_existing_checks)
        return apb.RegisterServiceResponse()

    async def DeregisterService(
        self, req: apb.DeregisterServiceRequest
    ) -> apb.DeregisterServiceResponse:
        self.local.remove_service(req.service_id)
        return apb.DeregisterServiceResponse()

    async def RegisterCheck(self, req: apb.RegisterCheckRequest) -> apb.RegisterCheckResponse:
        self.local.add_check(req.check)
        return apb.RegisterCheckResponse()

    async def DeregisterCheck(self, req: apb.DeregisterCheckRequest) -> apb.DeregisterCheckResponse:
        self.local.remove_check(req.check_id)
        return apb.DeregisterCheckResponse()

    async def UpdateTTL(self, req: apb.UpdateTTLRequest) -> apb.UpdateTTLResponse:
        status = STATUS_OF.get(req.status)
        if status is None or status == "maintenance":
            raise InvalidArgument(f"Unknown check status {req.status}")
        self.local.update_ttl(req.check_id, status, req.output)
        return apb.UpdateTTLResponse()

    async def ListServices(self, req: apb.ListServicesRequest) -> apb.ListServicesResponse:
        services = sorted(self.local.services.values(), key=lambda s: s.id)
        if req.filter:
            services = apply_filter(req.filter, services, service_json)
        return apb.ListServicesResponse(services=services)

    async def ListChecks(self, req: apb.ListChecksRequest) -> apb.ListChecksResponse:
        checks = self.local.health_checks()
        if req.filter:
            checks = apply_filter(req.filter, checks, check_json)
        return apb.ListChecksResponse(checks=checks)

    async def ListMembers(self, req: apb.ListMembersRequest) -> apb.ListMembersResponse:
        members = await self.members(req.wan)
        return apb.ListMembersResponse(members=sorted(members, key=lambda m: m.name))

    async def Self(self, req: apb.SelfRequest) -> apb.SelfResponse:
        return self.describe()

    async def Maintenance(self, req: apb.MaintenanceRequest) -> apb.MaintenanceResponse:
        self.local.set_maintenance(req.enable, req.reason, req.service_id)
        return apb.MaintenanceResponse()

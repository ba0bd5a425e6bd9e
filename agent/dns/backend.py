"""What the DNS interface reads, declared next to its user, and one implementation.

:class:`DiscoveryReads` is the small surface DNS needs: the instances of a
service with their node and checks, a node, the nodes of a datacenter (PTR),
the known datacenters, the servers (NS), and prepared-query execution. Each
read says whether a stale answer is acceptable; errors are
``agent.errors.ConsulError`` subclasses (``NotFound``/``NoPathToDatacenter``
become NXDOMAIN, anything else SERVFAIL).

:class:`InvokerReads` answers them over the agent's RPC path, the same one the
HTTP API uses (a client agent's ``Client.rpc``, a server agent's in-process
dispatcher). With ``allow_stale`` reads are stale; an answer whose
``last_contact`` is over ``max_stale`` is read again, consistently, as
Consul's DNS does. Local views (DESIGN section 7) can replace it behind the
same protocol.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message

from agent.durations import duration_seconds
from agent.rpc.methods import MethodSpec, method_spec
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.query.v1 import query_pb2 as qypb

__all__ = ["DiscoveryReads", "InvokerReads", "RPCInvoker"]


class RPCInvoker(Protocol):
    """Sends one call to the servers (``agent.http.protocols.Invoker``'s shape)."""

    async def rpc(self, spec: MethodSpec, request: Message) -> Message: ...


class DiscoveryReads(Protocol):
    """The reads behind DNS answers."""

    async def service_nodes(
        self, datacenter: str, service: str, tag: str, *, stale: bool
    ) -> list[pb.ServiceEntry]: ...

    async def node(self, datacenter: str, name: str, *, stale: bool) -> pb.Node | None: ...

    async def nodes(self, datacenter: str, *, stale: bool) -> list[pb.Node]: ...

    async def datacenters(self) -> list[str]: ...

    async def execute_query(
        self, datacenter: str, name: str, source: qypb.QuerySource, *, stale: bool
    ) -> qypb.ExecuteResponse: ...


_HEALTH = method_spec("/consul.health.v1.HealthService/ServiceHealth")
_NODE = method_spec("/consul.catalog.v1.CatalogService/GetNode")
_NODES = method_spec("/consul.catalog.v1.CatalogService/ListNodes")
_DCS = method_spec("/consul.catalog.v1.CatalogService/ListDatacenters")
_EXECUTE = method_spec("/consul.query.v1.PreparedQueryService/Execute")


class InvokerReads:
    """:class:`DiscoveryReads` over RPC, with Consul's stale-read rule."""

    def __init__(self, invoker: RPCInvoker, *, allow_stale: bool, max_stale: float) -> None:
        self.invoker = invoker
        self.allow_stale = allow_stale
        self.max_stale = max_stale

    def _options(self, datacenter: str, stale: bool) -> qpb.QueryOptions:
        consistency = (
            qpb.CONSISTENCY_STALE if stale and self.allow_stale else qpb.CONSISTENCY_UNSPECIFIED
        )
        return qpb.QueryOptions(datacenter=datacenter, consistency=consistency)

    async def _read(self, spec: MethodSpec, request: Message) -> Message:
        """One read; again without ``stale`` if the answer is older than ``max_stale``."""
        response = await self.invoker.rpc(spec, request)
        options = getattr(request, "options", None)
        meta = getattr(response, "meta", None)
        if (
            options is not None
            and meta is not None
            and options.consistency == qpb.CONSISTENCY_STALE
            and duration_seconds(meta.last_contact) > self.max_stale
        ):
            fresh = type(request)()
            fresh.CopyFrom(request)
            getattr(fresh, "options").consistency = qpb.CONSISTENCY_UNSPECIFIED  # noqa: B009
            response = await self.invoker.rpc(spec, fresh)
        return response

    async def service_nodes(
        self, datacenter: str, service: str, tag: str, *, stale: bool
    ) -> list[pb.ServiceEntry]:
        req = hpb.ServiceHealthRequest(
            options=self._options(datacenter, stale), service=service, tags=[tag] if tag else []
        )
        resp = await self._read(_HEALTH, req)
        assert isinstance(resp, hpb.ServiceHealthResponse)
        return list(resp.entries)

    async def node(self, datacenter: str, name: str, *, stale: bool) -> pb.Node | None:
        req = cpb.GetNodeRequest(options=self._options(datacenter, stale), node=name)
        resp = await self._read(_NODE, req)
        assert isinstance(resp, cpb.GetNodeResponse)
        return resp.node if resp.HasField("node") and resp.node.name else None

    async def nodes(self, datacenter: str, *, stale: bool) -> list[pb.Node]:
        req = cpb.ListNodesRequest(options=self._options(datacenter, stale))
        resp = await self._read(_NODES, req)
        assert isinstance(resp, cpb.ListNodesResponse)
        return list(resp.nodes)

    async def datacenters(self) -> list[str]:
        resp = await self.invoker.rpc(_DCS, cpb.ListDatacentersRequest())
        assert isinstance(resp, cpb.ListDatacentersResponse)
        return list(resp.datacenters)

    async def execute_query(
        self, datacenter: str, name: str, source: qypb.QuerySource, *, stale: bool
    ) -> qypb.ExecuteResponse:
        req = qypb.ExecuteRequest(
            options=self._options(datacenter, stale), query_id_or_name=name, source=source
        )
        resp = await self._read(_EXECUTE, req)
        assert isinstance(resp, qypb.ExecuteResponse)
        return resp

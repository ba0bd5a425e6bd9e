"""The PreparedQuery endpoint: store, resolve and execute prepared queries.

Execution follows Consul's ``PreparedQuery.Execute``: resolve the query (a
template is rendered for the asked name), read the service's health here,
filter by tags (``tag`` required, ``!tag`` excluded, case-insensitively),
node and service metadata and health (any critical or maintenance check
drops an instance, ``OnlyPassing`` also drops warnings; ``IgnoreCheckIDs``
never count), shuffle, sort by estimated RTT from the ``Near`` node
(``_agent``: the asking agent's node; Consul's ``sortNodesByDistanceFrom``
over the nodes' network coordinates, those without one last) and move that
node itself to the front, apply the limit. When nothing is left and the query has a
``Failover``, the other datacenters are tried in order, ``NearestN`` of them
first (without network coordinates, "nearest" is the order the WAN pool lists
them in, by name), then the listed ``Datacenters`` that are known and not yet
tried; each gets an ``ExecuteRemote`` with the rendered definition (the query
itself lives only in its own datacenter). A failed datacenter is logged and
skipped. ``Failovers`` counts the datacenters tried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from agent.convert import check_name, query_opts
from agent.coordinate import sort_by_distance
from agent.errors import ConsulError, NotFound
from agent.rpc.methods import MethodSpec, method_spec
from agent.server.endpoints import ServerContext
from agent.state.blocking import QueryOpts
from agent.state.queries import QueryState
from agent.store import Store
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.query.v1 import query_pb2 as qypb

__all__ = ["PreparedQueryEndpoint", "filter_entries"]

logger = logging.getLogger(__name__)

_REMOTE = method_spec("/consul.query.v1.PreparedQueryService/ExecuteRemote")
_BAD = (pb.HEALTH_STATUS_CRITICAL, pb.HEALTH_STATUS_MAINTENANCE)

Call = Callable[[MethodSpec, Message], Awaitable[Message]]


def filter_entries(
    entries: list[pb.ServiceEntry], service: qypb.ServiceQuery
) -> list[pb.ServiceEntry]:
    """Consul's tag, metadata and health filters of a prepared query."""
    ignore = set(service.ignore_check_ids)
    out = []
    for e in entries:
        tags = {t.lower() for t in e.service.tags}
        ok = True
        for want in service.tags:
            w = want.lower()
            if w.startswith("!"):
                if w[1:] in tags:
                    ok = False
            elif w not in tags:
                ok = False
        if not ok:
            continue
        if any(e.node.meta.get(k) != v for k, v in service.node_meta.items()):
            continue
        if any(e.service.meta.get(k) != v for k, v in service.service_meta.items()):
            continue
        healthy = True
        for c in e.checks:
            if c.check_id in ignore:
                continue
            if c.status in _BAD or (service.only_passing and c.status == pb.HEALTH_STATUS_WARNING):
                healthy = False
                break
        if healthy:
            out.append(e)
    return out


class PreparedQueryEndpoint:
    """consul.query.v1.PreparedQueryService on a server."""

    def __init__(
        self,
        ctx: ServerContext,
        store: Store,
        call: Call,
        *,
        reader: Store | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.ctx = ctx
        self.queries = QueryState(store, reader)
        self.call = call
        self.rng = rng or random.Random()

    async def Create(self, req: qypb.CreateRequest) -> qypb.CreateResponse:
        await self._check_session(req.query.session)
        query_id, index = await self.queries.create(req.query)
        return qypb.CreateResponse(meta=qpb.WriteMeta(index=index), id=query_id)

    async def Update(self, req: qypb.UpdateRequest) -> qypb.UpdateResponse:
        await self._check_session(req.query.session)
        index = await self.queries.update(req.query)
        return qypb.UpdateResponse(meta=qpb.WriteMeta(index=index))

    async def Delete(self, req: qypb.DeleteRequest) -> qypb.DeleteResponse:
        check_name(req.id, "query ID")
        index = await self.queries.delete(req.id)
        return qypb.DeleteResponse(meta=qpb.WriteMeta(index=index))

    async def _check_session(self, session_id: str) -> None:
        if session_id and not await self.ctx.sessions.exists(session_id):
            raise ConsulError(f"invalid session {session_id!r}")

    async def Get(self, req: qypb.GetRequest) -> qypb.GetResponse:
        check_name(req.id, "query ID")
        read = await self.queries.get(query_opts(req.options), req.id)
        if read.value is None:
            raise NotFound("Query not found")
        return qypb.GetResponse(meta=self.ctx.meta(read.index), queries=[read.value])

    async def List(self, req: qypb.ListRequest) -> qypb.ListResponse:
        read = await self.queries.list_queries(query_opts(req.options))
        return qypb.ListResponse(meta=self.ctx.meta(read.index), queries=read.value)

    async def Explain(self, req: qypb.ExplainRequest) -> qypb.ExplainResponse:
        query, index = await self.queries.resolve(req.query_id_or_name)
        return qypb.ExplainResponse(meta=self.ctx.meta(index), query=query)

    async def Execute(self, req: qypb.ExecuteRequest) -> qypb.ExecuteResponse:
        opts = query_opts(req.options)
        query, _ = await self.queries.resolve(req.query_id_or_name)
        resp = await self._run(opts, query, req.limit, req.source)
        if resp.nodes or not _has_failover(query):
            return resp
        tried = 0
        for dc in self._failover_targets(query):
            tried += 1
            remote = qypb.ExecuteRemoteRequest(
                options=qpb.QueryOptions(
                    datacenter=dc, consistency=req.options.consistency, token=req.options.token
                ),
                query=query,
                limit=req.limit,
                source=req.source,
            )
            try:
                answer = await self.call(_REMOTE, remote)
            except ConsulError as exc:
                logger.warning("prepared query failover failed datacenter=%s error=%s", dc, exc)
                continue
            assert isinstance(answer, qypb.ExecuteRemoteResponse)
            if answer.result.nodes:
                answer.result.failovers = tried
                return answer.result
        resp.failovers = tried
        return resp

    async def ExecuteRemote(self, req: qypb.ExecuteRemoteRequest) -> qypb.ExecuteRemoteResponse:
        result = await self._run(query_opts(req.options), req.query, req.limit, req.source)
        return qypb.ExecuteRemoteResponse(result=result)

    def _failover_targets(self, query: qypb.PreparedQuery) -> list[str]:
        local = self.ctx.datacenter
        known = [dc for dc in sorted(set(self.ctx.remote_datacenters())) if dc != local]
        targets = known[: query.service.failover.nearest_n]
        for dc in query.service.failover.datacenters:
            if dc == local or dc in targets:
                continue
            if dc not in known:
                logger.debug("prepared query failover skips unknown datacenter=%s", dc)
                continue
            targets.append(dc)
        return targets

    async def _run(
        self, opts: QueryOpts, query: qypb.PreparedQuery, limit: int, source: qypb.QuerySource
    ) -> qypb.ExecuteResponse:
        service = query.service
        read = await self.ctx.catalog.service_health(
            QueryOpts(consistency=opts.consistency), service.service
        )
        nodes = filter_entries(read.value, service)
        self.rng.shuffle(nodes)
        near = service.near
        if near == "_agent":
            near = source.node if source.datacenter in ("", self.ctx.datacenter) else ""
        if near and self.ctx.coordinate_state is not None:
            coords = await self.ctx.coordinate_state.by_node()
            nodes = sort_by_distance(nodes, lambda e: e.node.name, near, coords)
        if near:
            nodes.sort(key=lambda e: e.node.name != near)
        if limit > 0:
            nodes = nodes[:limit]
        return qypb.ExecuteResponse(
            meta=self.ctx.meta(read.index),
            service=service.service,
            nodes=nodes,
            dns=query.dns,
            datacenter=self.ctx.datacenter,
        )


def _has_failover(query: qypb.PreparedQuery) -> bool:
    f = query.service.failover
    return f.nearest_n > 0 or len(f.datacenters) > 0

"""Anti-entropy: keep the catalog's view of this node equal to the local state.

As Consul's ``agent/ae``: a change syncs at once; a full sync runs every
60 s plus a random stagger that grows with the cluster (``scale_interval``);
a failed sync is retried after 15 s. A sync reads what the catalog holds for
this node and pushes the difference: services and checks that differ are
registered again, catalog entries the agent does not know are removed (but
never the ``consul`` service or the ``serfHealth`` check, which the leader
owns). A service with ``enable_tag_override`` keeps the catalog's tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message

from agent.errors import NoServers
from agent.local.state import LocalState
from agent.rpc.methods import MethodSpec, method_spec
from agent.tasks import Background
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb

__all__ = ["AntiEntropy", "Invoker", "scale_interval"]

_M = TypeVar("_M", pb.Service, pb.HealthCheck)

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 60.0
RETRY_INTERVAL = 15.0
PROTECTED_SERVICES = frozenset({"consul"})
PROTECTED_CHECKS = frozenset({"serfHealth"})

_GET_NODE = method_spec("/consul.catalog.v1.CatalogService/GetNode")
_NODE_CHECKS = method_spec("/consul.health.v1.HealthService/NodeChecks")
_REGISTER = method_spec("/consul.catalog.v1.CatalogService/Register")
_DEREGISTER = method_spec("/consul.catalog.v1.CatalogService/Deregister")


class Invoker(Protocol):
    """Sends one RPC to the servers (the client agent's ``Client``, or a server itself)."""

    async def rpc(self, spec: MethodSpec, request: Message) -> Any: ...


def scale_interval(interval: float, cluster_size: int) -> float:
    """Consul's aeScale: above 128 nodes the interval grows with log2 of the size.

    10,000 nodes: 60 s * (ceil(log2 10000 - log2 128) + 1) = 60 s * 8 = 8 min.
    """
    threshold = 128
    if cluster_size <= threshold:
        return interval
    multiplier = math.ceil(math.log2(cluster_size) - math.log2(threshold)) + 1
    return interval * multiplier


def _bare(msg: _M) -> _M:
    copy = type(msg)()
    copy.CopyFrom(msg)
    copy.ClearField("create_index")
    copy.ClearField("modify_index")
    if isinstance(copy, pb.HealthCheck):
        copy.ClearField("definition")
    return copy


class AntiEntropy:
    """The sync loop of one agent; ``trigger()`` asks for a sync now."""

    def __init__(
        self,
        local: LocalState,
        invoker: Invoker,
        node: Callable[[], pb.Node],
        *,
        datacenter: str,
        cluster_size: Callable[[], int] = lambda: 1,
        interval: float = SYNC_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
        rng: random.Random | None = None,
    ) -> None:
        self.local = local
        self.invoker = invoker
        self.node = node
        self.datacenter = datacenter
        self.cluster_size = cluster_size
        self.interval = interval
        self.retry_interval = retry_interval
        self.rng = rng or random.Random()
        self.syncs = 0
        self.failures = 0
        self.last_error = ""
        self._wake = asyncio.Event()
        self._loops = Background("anti-entropy")
        self.in_sync = asyncio.Event()

    def trigger(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._loops.spawn(self._run(), "anti-entropy")

    async def aclose(self) -> None:
        await self._loops.aclose()

    def _next_full(self) -> float:
        scaled = scale_interval(self.interval, self.cluster_size())
        return scaled + self.rng.uniform(0, scaled / 8)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        next_full = loop.time()
        while True:
            wait = max(0.0, min(next_full - loop.time(), delay if delay else math.inf))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: 3.11's can eat a cancel
                    await self._wake.wait()
            self._wake.clear()
            self.local.changed.clear()
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except NoServers:
                # Not a failure: the first server to appear triggers a full sync.
                logger.debug("anti-entropy waiting for a server")
                self.in_sync.clear()
                delay = self.retry_interval
                next_full = loop.time() + self.retry_interval
                continue
            except Exception as exc:
                self.failures += 1
                self.last_error = str(exc)
                self.in_sync.clear()
                logger.warning(
                    "anti-entropy sync failed; retrying in %ss error=%s", self.retry_interval, exc
                )
                delay = self.retry_interval
                next_full = loop.time() + self.retry_interval
                continue
            delay = 0.0
            next_full = loop.time() + self._next_full()

    async def _call(self, spec: MethodSpec, request: Message) -> Any:
        return await self.invoker.rpc(spec, request)

    async def sync(self) -> None:
        """One full comparison and push."""
        node = self.node()
        write = qpb.WriteOptions(datacenter=self.datacenter)
        opts = qpb.QueryOptions(datacenter=self.datacenter)
        remote = await self._call(_GET_NODE, cpb.GetNodeRequest(options=opts, node=node.name))
        remote_checks = await self._call(
            _NODE_CHECKS, hpb.NodeChecksRequest(options=opts, node=node.name)
        )
        r_services = {s.id: s for s in remote.services}
        r_checks = {c.check_id: c for c in remote_checks.checks}
        local_checks = {c.check_id: c for c in self.local.health_checks()}

        node_stale = not remote.HasField("node") or (
            remote.node.address != node.address or (node.id and remote.node.id != node.id)
        )
        # Deletions first: what the catalog has and the agent does not.
        for sid in set(r_services) - set(self.local.services) - PROTECTED_SERVICES:
            await self._call(
                _DEREGISTER, cpb.DeregisterRequest(write=write, node=node.name, service_id=sid)
            )
        for cid, rc in r_checks.items():
            if cid in local_checks or cid in PROTECTED_CHECKS:
                continue
            if rc.service_id and rc.service_id not in self.local.services:
                continue  # gone with its service
            await self._call(
                _DEREGISTER, cpb.DeregisterRequest(write=write, node=node.name, check_id=cid)
            )

        # Services (with their checks) that differ.
        pushed_checks: set[str] = set()
        for sid, svc in list(self.local.services.items()):
            rs = r_services.get(sid)
            if rs is not None and svc.enable_tag_override and list(rs.tags) != list(svc.tags):
                svc.tags[:] = list(rs.tags)  # the catalog's tags win
            checks = [c for c in local_checks.values() if c.service_id == sid]
            stale = node_stale or rs is None or _bare(rs) != _bare(svc)
            stale = stale or any(
                c.check_id not in r_checks or _bare(r_checks[c.check_id]) != _bare(c)
                for c in checks
            )
            if stale:
                await self._call(
                    _REGISTER,
                    cpb.RegisterRequest(write=write, node=node, service=svc, checks=checks),
                )
                node_stale = False
                pushed_checks |= {c.check_id for c in checks}
        node_checks = [
            c
            for c in local_checks.values()
            if not c.service_id
            and (c.check_id not in r_checks or _bare(r_checks[c.check_id]) != _bare(c))
        ]
        if node_stale or node_checks:
            await self._call(
                _REGISTER, cpb.RegisterRequest(write=write, node=node, checks=node_checks)
            )
        self.syncs += 1
        self.last_error = ""
        self.in_sync.set()

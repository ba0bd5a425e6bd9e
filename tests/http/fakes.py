"""Hand-written fakes for the HTTP API's two collaborators.

``FakeInvoker`` answers KV from an in-memory dict (with Consul-like indexes and
CAS) and every other RPC from canned responses; it records every request.
``FakeAgent`` keeps local services and checks in dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message

from agent.errors import CASConflict, NotFound
from agent.rpc.methods import MethodSpec
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.membership.v1 import membership_pb2 as mpb


@dataclass
class FakeInvoker:
    kv: dict[str, kpb.KVPair] = field(default_factory=dict)
    index: int = 10
    canned: dict[str, Message] = field(default_factory=dict)
    calls: list[tuple[str, Message]] = field(default_factory=list)
    error: Exception | None = None

    def requests(self, name: str) -> list[Message]:
        return [req for path, req in self.calls if path.endswith("/" + name)]

    def last(self, name: str) -> Message:
        found = self.requests(name)
        assert found, f"no {name} call in {[p for p, _ in self.calls]}"
        return found[-1]

    def _meta(self) -> qpb.QueryMeta:
        meta = qpb.QueryMeta(index=self.index, known_leader=True)
        meta.last_contact.FromMilliseconds(7)
        return meta

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        self.calls.append((spec.path, request))
        if self.error is not None:
            raise self.error
        if spec.path in self.canned:
            return self.canned[spec.path]
        if spec.service == "consul.kv.v1.KVService":
            return self._kv(spec.name, request)
        return spec.response_type()

    def _kv(self, name: str, req: Message) -> Message:
        if isinstance(req, kpb.GetRequest):
            pair = self.kv.get(req.key)
            return kpb.GetResponse(meta=self._meta(), pair=pair)
        if isinstance(req, kpb.ListRequest):
            pairs = [p for k, p in sorted(self.kv.items()) if k.startswith(req.prefix)]
            return kpb.ListResponse(meta=self._meta(), pairs=pairs)
        if isinstance(req, kpb.KeysRequest):
            keys: list[str] = []
            for k in sorted(self.kv):
                if not k.startswith(req.prefix):
                    continue
                if req.separator:
                    rest = k[len(req.prefix) :]
                    cut = rest.find(req.separator)
                    if cut >= 0:
                        k = req.prefix + rest[: cut + len(req.separator)]
                if k not in keys:
                    keys.append(k)
            return kpb.KeysResponse(meta=self._meta(), keys=keys)
        if isinstance(req, kpb.PutRequest):
            current = self.kv.get(req.key)
            if req.HasField("cas") and (current.modify_index if current else 0) != req.cas:
                raise CASConflict(f"CAS failed: key {req.key!r} is not at index {req.cas}")
            self.index += 1
            self.kv[req.key] = kpb.KVPair(
                key=req.key,
                value=req.value,
                flags=req.flags,
                create_index=current.create_index if current else self.index,
                modify_index=self.index,
            )
            return kpb.PutResponse(meta=qpb.WriteMeta(index=self.index), applied=True)
        if isinstance(req, kpb.DeleteRequest):
            if req.recurse:
                for k in [k for k in self.kv if k.startswith(req.key)]:
                    del self.kv[k]
            else:
                current = self.kv.get(req.key)
                if req.HasField("cas") and (current.modify_index if current else 0) != req.cas:
                    raise CASConflict("CAS failed")
                self.kv.pop(req.key, None)
            self.index += 1
            return kpb.DeleteResponse(meta=qpb.WriteMeta(index=self.index))
        raise AssertionError(f"unexpected KV call {name}")


@dataclass
class FakeAgent:
    services: dict[str, pb.Service] = field(default_factory=dict)
    checks: dict[str, pb.HealthCheck] = field(default_factory=dict)
    calls: list[Message] = field(default_factory=list)
    members: list[mpb.Member] = field(default_factory=list)
    maintenance: list[apb.MaintenanceRequest] = field(default_factory=list)

    def last(self, cls: type[Message]) -> Message:
        found = [c for c in self.calls if isinstance(c, cls)]
        assert found, f"no {cls.__name__} call"
        return found[-1]

    async def RegisterService(self, req: apb.RegisterServiceRequest) -> apb.RegisterServiceResponse:
        self.calls.append(req)
        svc = req.definition.service
        self.services[svc.id] = svc
        for n, c in enumerate(req.definition.checks, 1):
            cid = c.check_id or (
                f"service:{svc.id}" if len(req.definition.checks) == 1 else f"service:{svc.id}:{n}"
            )
            self.checks[cid] = pb.HealthCheck(
                node="node-1",
                check_id=cid,
                name=c.name or f"Service '{svc.name}' check",
                status=c.status or pb.HEALTH_STATUS_CRITICAL,
                service_id=svc.id,
                service_name=svc.name,
                type="ttl" if c.definition.HasField("ttl") else "http",
                definition=c.definition,
            )
        return apb.RegisterServiceResponse()

    async def DeregisterService(
        self, req: apb.DeregisterServiceRequest
    ) -> apb.DeregisterServiceResponse:
        self.calls.append(req)
        if req.service_id not in self.services:
            raise NotFound(f'Unknown service ID "{req.service_id}"')
        del self.services[req.service_id]
        return apb.DeregisterServiceResponse()

    async def RegisterCheck(self, req: apb.RegisterCheckRequest) -> apb.RegisterCheckResponse:
        self.calls.append(req)
        c = req.check
        cid = c.check_id or c.name
        self.checks[cid] = pb.HealthCheck(
            node="node-1", check_id=cid, name=c.name, status=pb.HEALTH_STATUS_CRITICAL
        )
        return apb.RegisterCheckResponse()

    async def DeregisterCheck(self, req: apb.DeregisterCheckRequest) -> apb.DeregisterCheckResponse:
        self.calls.append(req)
        if req.check_id not in self.checks:
            raise NotFound(f'Unknown check ID "{req.check_id}"')
        del self.checks[req.check_id]
        return apb.DeregisterCheckResponse()

    async def UpdateTTL(self, req: apb.UpdateTTLRequest) -> apb.UpdateTTLResponse:
        self.calls.append(req)
        if req.check_id not in self.checks:
            raise NotFound(f'Unknown check ID "{req.check_id}"')
        self.checks[req.check_id].status = req.status
        self.checks[req.check_id].output = req.output
        return apb.UpdateTTLResponse()

    async def ListServices(self, req: apb.ListServicesRequest) -> apb.ListServicesResponse:
        self.calls.append(req)
        return apb.ListServicesResponse(services=sorted(self.services.values(), key=lambda s: s.id))

    async def ListChecks(self, req: apb.ListChecksRequest) -> apb.ListChecksResponse:
        self.calls.append(req)
        return apb.ListChecksResponse(checks=sorted(self.checks.values(), key=lambda c: c.check_id))

    async def ListMembers(self, req: apb.ListMembersRequest) -> apb.ListMembersResponse:
        self.calls.append(req)
        return apb.ListMembersResponse(members=self.members)

    async def Self(self, req: apb.SelfRequest) -> apb.SelfResponse:
        self.calls.append(req)
        resp = apb.SelfResponse(
            node_name="node-1",
            datacenter="dc1",
            server=False,
            version="1.22.0",
            member=mpb.Member(
                name="node-1",
                address="127.0.0.1:8502",
                datacenter="dc1",
                role=mpb.MEMBER_ROLE_NODE,
                tags={"role": "node", "node_id": "abc"},
                status=mpb.MEMBER_STATUS_ALIVE,
            ),
            stats={"consul.known_servers": "1", "agent.checks": "0", "runtime": "python"},
        )
        resp.routers.add(
            datacenter="dc1",
            servers=[apb.RouterServer(name="s1", address="127.0.0.1:8300", datacenter="dc1")],
        )
        return resp

    async def Maintenance(self, req: apb.MaintenanceRequest) -> apb.MaintenanceResponse:
        self.calls.append(req)
        self.maintenance.append(req)
        return apb.MaintenanceResponse()

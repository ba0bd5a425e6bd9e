"""A FakeInvoker that also answers Session, Event and Txn calls, and KV lock writes.

``SessionInvoker`` keeps sessions and events in memory with Consul-like
indexes, applies KV ``acquire``/``release`` and a small KV transaction
evaluator over the inherited KV dict; it records every request as
``FakeInvoker`` does. Every other call goes to ``FakeInvoker`` unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from google.protobuf.message import Message

from agent.errors import InvalidArgument, NotFound
from agent.rpc.methods import MethodSpec
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.session.v1 import session_pb2 as sspb
from generated.consul.txn.v1 import txn_pb2 as tpb
from tests.http.fakes import FakeInvoker

_SERVICES = {
    "consul.session.v1.SessionService",
    "consul.event.v1.EventService",
    "consul.txn.v1.TxnService",
}


def _is_lock(request: Message) -> bool:
    return isinstance(request, kpb.PutRequest) and bool(request.acquire or request.release)


@dataclass
class SessionInvoker(FakeInvoker):
    sessions: dict[str, sspb.Session] = field(default_factory=dict)
    events: list[epb.Event] = field(default_factory=list)
    nodes: set[str] = field(default_factory=lambda: {"node-1", "node-2"})

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        if spec.service not in _SERVICES and not _is_lock(request):
            return await super().rpc(spec, request)
        self.calls.append((spec.path, request))
        if self.error is not None:
            raise self.error
        if spec.path in self.canned:
            return self.canned[spec.path]
        if isinstance(request, kpb.PutRequest):
            return self._lock(request)
        if spec.service == "consul.session.v1.SessionService":
            return self._session(request)
        if spec.service == "consul.event.v1.EventService":
            return self._event(request)
        assert isinstance(request, tpb.TxnRequest)
        return self._txn(list(request.ops))

    # Sessions.

    def _session(self, req: Message) -> Message:
        if isinstance(req, sspb.CreateRequest):
            s = sspb.Session()
            s.CopyFrom(req.session)
            if s.node not in self.nodes:
                raise InvalidArgument(f"Missing node registration: node {s.node!r} is unknown")
            if not req.node_checks_set and not s.node_checks:
                s.node_checks.append("serfHealth")
            if s.behavior == sspb.BEHAVIOR_UNSPECIFIED:
                s.behavior = sspb.BEHAVIOR_RELEASE
            self.index += 1
            s.id = str(uuid.uuid4())
            s.create_index = s.modify_index = self.index
            self.sessions[s.id] = s
            return sspb.CreateResponse(meta=qpb.WriteMeta(index=self.index), id=s.id)
        if isinstance(req, sspb.DestroyRequest):
            if self.sessions.pop(req.id, None) is not None:
                self.index += 1
                for pair in self.kv.values():
                    if pair.session == req.id:
                        pair.session = ""
            return sspb.DestroyResponse(meta=qpb.WriteMeta(index=self.index))
        if isinstance(req, sspb.RenewRequest):
            found = self.sessions.get(req.id)
            if found is None:
                raise NotFound(f"Session id '{req.id}' not found")
            return sspb.RenewResponse(session=found)
        if isinstance(req, sspb.InfoRequest):
            return sspb.InfoResponse(meta=self._meta(), session=self.sessions.get(req.id))
        if isinstance(req, sspb.ListRequest):
            return sspb.ListResponse(meta=self._meta(), sessions=list(self.sessions.values()))
        if isinstance(req, sspb.ListNodeRequest):
            mine = [s for s in self.sessions.values() if s.node == req.node]
            return sspb.ListNodeResponse(meta=self._meta(), sessions=mine)
        raise AssertionError(f"unexpected session call {type(req).__name__}")

    def _lock(self, req: kpb.PutRequest) -> kpb.PutResponse:
        holder = req.acquire or req.release
        if holder not in self.sessions:
            raise InvalidArgument(f"Invalid session {holder!r}")
        current = self.kv.get(req.key)
        held_by = current.session if current is not None else ""
        if req.acquire and held_by and held_by != req.acquire:
            return kpb.PutResponse(meta=qpb.WriteMeta(index=self.index), applied=False)
        if req.release and held_by != req.release:
            return kpb.PutResponse(meta=qpb.WriteMeta(index=self.index), applied=False)
        self.index += 1
        pair = kpb.KVPair(
            key=req.key,
            value=req.value,
            flags=req.flags,
            create_index=current.create_index if current else self.index,
            modify_index=self.index,
            lock_index=current.lock_index if current else 0,
            session=req.acquire,
        )
        if req.acquire and held_by != req.acquire:
            pair.lock_index += 1
        self.kv[req.key] = pair
        return kpb.PutResponse(meta=qpb.WriteMeta(index=self.index), applied=True)

    # Events.

    def _event(self, req: Message) -> Message:
        if isinstance(req, epb.FireRequest):
            self.index += 1
            e = epb.Event()
            e.CopyFrom(req.event)
            e.id, e.version, e.ltime = str(uuid.uuid4()), 1, self.index
            self.events.append(e)
            return epb.FireResponse(event=e)
        if isinstance(req, epb.ListRequest):
            events = [e for e in self.events if not req.name or e.name == req.name]
            return epb.ListResponse(meta=self._meta(), events=events)
        raise AssertionError(f"unexpected event call {type(req).__name__}")

    # Transactions: a few verbs, enough for the HTTP layer's shapes.

    def _txn(self, ops: list[tpb.KVOp]) -> tpb.TxnResponse:
        view = {k: kpb.KVPair(key=p.key, value=p.value, flags=p.flags, modify_index=p.modify_index,
                              create_index=p.create_index) for k, p in self.kv.items()}  # fmt: skip
        results: list[kpb.KVPair] = []
        errors: list[tpb.TxnError] = []
        written: list[str] = []
        for n, op in enumerate(ops):
            cur = view.get(op.key)
            index = cur.modify_index if cur is not None else 0
            if op.verb in ("set", "cas"):
                if op.verb == "cas" and index != op.index:
                    errors.append(tpb.TxnError(op_index=n, what=f"current modify index {index}"))
                    continue
                view[op.key] = kpb.KVPair(key=op.key, value=op.value, flags=op.flags)
                written.append(op.key)
                results.append(kpb.KVPair(key=op.key, flags=op.flags))
            elif op.verb == "get":
                if cur is None:
                    errors.append(tpb.TxnError(op_index=n, what=f"key {op.key!r} doesn't exist"))
                else:
                    results.append(cur)
            elif op.verb == "delete":
                view.pop(op.key, None)
                written.append(op.key)
            else:
                raise AssertionError(f"fake txn does not do {op.verb!r}")
        if errors:
            return tpb.TxnResponse(errors=errors)
        self.index += 1
        for key in written:
            pair = view.get(key)
            if pair is None:
                self.kv.pop(key, None)
                continue
            old = self.kv.get(key)
            pair.create_index = old.create_index if old else self.index
            pair.modify_index = self.index
            self.kv[key] = pair
        for pair in results:
            if pair.key in written:
                pair.create_index = self.kv[pair.key].create_index
                pair.modify_index = self.index
        return tpb.TxnResponse(results=results, index=self.index)

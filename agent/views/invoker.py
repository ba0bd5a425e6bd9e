"""``ViewInvoker``: the agent's invoker, answering discovery reads from views.

It wraps the agent's own invoker (``Client.rpc`` on a client agent, the
``Dispatcher`` on a server) and has the same ``rpc(spec, request)``, so the
HTTP routes and the gRPC handlers read through it unchanged:

- a covered read (``agent.views.reads.READS``) with default or stale
  consistency is answered from the view of its (datacenter, topic, key):
  a blocking read (``min_index``) waits on the view's index, here, without
  a round trip; the response is cached per request variant and view version;
- ``?consistent`` reads, uncovered reads and every write go to ``inner``.

Read-your-writes: a write through this invoker answers its index W; until a
view has heard from its server that the server's feed passed W (``position``),
a default non-blocking read of it goes to a server instead, so a client that
writes and then reads through the same agent sees its write (one round trip,
only in that window). Blocking reads wait on indexes and need no such care.

A server agent uses ``blocking_only``: its non-blocking reads are answered by
its endpoints in-process (no round trip to save, and exact read-your-writes
across servers), its blocking reads by views (one subscription per key
instead of one store wait per watcher).

``rendered`` is the HTTP layer's hook: the response and its bytes, built and
serialized once per view version and variant; ``serialize`` is the gRPC
handlers' (their response serializer), for the same bytes over gRPC.

ACLs: with a ``gate`` (ACLs on), one view per key still serves every token;
each read takes the view's answer (a copy) through the gate, which checks and
filters it for the caller's token (``prepare`` puts the agent's default token
into a request carrying none), exactly as a server filters what it answers.
Rendered bytes are then not shared between callers. A view its subscription
may not read (the servers check the agent's own token against the whole
topic key) sends the read to a server instead.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from agent.convert import query_meta
from agent.errors import PermissionDenied
from agent.rpc.methods import MethodSpec, request_datacenter, request_wait
from agent.views.reads import READS
from agent.views.store import ViewStore
from agent.views.view import Answer, View, ViewKey
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = ["Invoker", "ReadGate", "Rendered", "ViewInvoker"]

#: Answers handed to gRPC whose bytes ``serialize`` may be asked for.
_MAX_SENT = 1024


class Invoker(Protocol):
    """What the views wrap: ``Client`` or a server's ``Dispatcher``."""

    async def rpc(self, spec: MethodSpec, request: Message) -> Message: ...


class ReadGate(Protocol):
    """ACL enforcement of one read (``agent.acl.enforce.Gate``): checks the
    request's token, calls ``fn``, filters its answer for that token."""

    async def call(
        self, path: str, fn: Callable[[Any], Awaitable[Any]], request: Any
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Rendered:
    """An answer and its bytes in one format; ``hit`` when both came from the cache."""

    response: Message
    body: bytes
    hit: bool
    age: float
    #: The view and data version it was built from (None: a server answered).
    view: View | None = None
    version: int = 0


class ViewInvoker:
    """See the module docstring."""

    def __init__(
        self,
        inner: Invoker,
        views: ViewStore,
        local_dc: str,
        *,
        blocking_only: bool = False,
        enabled: bool = True,
        gate: ReadGate | None = None,
        prepare: Callable[[Message], Message] | None = None,
    ) -> None:
        """``enabled`` False: every read goes to ``inner``. ``gate``: ACLs are
        on, every view answer is checked and filtered per token (module docstring)."""
        self.inner = inner
        self.enabled = enabled
        self.gate = gate
        self.prepare = prepare or (lambda request: request)
        self.blocking_only = blocking_only
        self.views = views
        self.local_dc = local_dc
        self._last_write = 0
        self._sent: OrderedDict[int, Answer] = OrderedDict()

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        if self.gate is not None and spec.path in READS:
            return await self._gated(spec, self.prepare(request))
        found = await self._answer(spec, request)
        if found is not None:
            self._sent[id(found.response)] = found
            while len(self._sent) > _MAX_SENT:
                self._sent.popitem(last=False)
            return found.response
        return await self._delegate(spec, request)

    async def _gated(self, spec: MethodSpec, request: Message) -> Message:
        assert self.gate is not None

        async def read(req: Message) -> Message:
            try:
                found = await self._answer(spec, req)
            except PermissionDenied:
                found = None  # the agent may not subscribe to all of it: ask a server
            if found is None:
                return await self._delegate(spec, req)
            mine = type(found.response)()
            mine.CopyFrom(found.response)  # the gate filters it in place
            return mine

        response: Message = await self.gate.call(spec.path, read, request)
        return response

    def serialize(self, message: Message) -> bytes:
        """gRPC response bytes: a cached answer's are serialized once per view version.

        ``_sent`` holds each answer (and so its response) alive, so an ``id``
        found there cannot belong to another message.
        """
        found = self._sent.get(id(message))
        if found is None or found.response is not message:
            return message.SerializeToString()
        data = found.rendered.get("grpc")
        if data is None:
            data = found.rendered["grpc"] = message.SerializeToString()
        return data

    async def rendered(
        self, spec: MethodSpec, request: Message, fmt: str, render: Callable[[Message], bytes]
    ) -> Rendered:
        """The answer of ``request`` and its bytes as ``fmt``, both cached per view version."""
        if self.gate is not None:  # per token: nothing rendered is shared
            response = await self.rpc(spec, request)
            return Rendered(response, render(response), False, 0.0)
        found = await self._answer(spec, request)
        if found is None:
            response = await self._delegate(spec, request)
            return Rendered(response, render(response), False, 0.0)
        body = found.rendered.get(fmt)
        hit = body is not None
        if body is None:
            body = found.rendered[fmt] = render(found.response)
        return Rendered(
            found.response, body, hit, time.monotonic() - found.created, found.view, found.version
        )

    def current(self, view: View, version: int) -> bool:
        """Whether an answer built from ``view`` at ``version`` is still what a default
        read would get (the HTTP layer's front cache asks, per request)."""
        if self.gate is not None or not view.connected or view.version != version:
            return False
        if view.position < self._last_write and view.key.datacenter == self.local_dc:
            return False
        view.touch()
        self.views.stats.hits += 1
        return True

    async def _delegate(self, spec: MethodSpec, request: Message) -> Message:
        response = await self.inner.rpc(spec, request)
        if not spec.read:
            meta = getattr(response, "meta", None)
            index = getattr(meta, "index", 0)
            if isinstance(index, int):
                self._last_write = max(self._last_write, index)
        return response

    async def _answer(self, spec: MethodSpec, request: Message) -> Answer | None:
        """The view's answer of a covered read; None when a server must answer it."""
        read = READS.get(spec.path) if self.enabled else None
        if read is None:
            return None
        options: qpb.QueryOptions = getattr(request, "options")  # noqa: B009
        if options.consistency == qpb.CONSISTENCY_CONSISTENT:
            return None
        if self.blocking_only and not options.min_index:
            return None
        topic_key = read.key_of(request)
        if topic_key is None:
            return None
        dc = request_datacenter(request) or self.local_dc
        view = self.views.view(ViewKey(dc, topic_key[0], topic_key[1]))
        await view.usable()
        # Keyed before a blocking wait: the wake of many readers is then lookups only.
        variant = _variant(spec.path, request)
        if options.min_index:
            await view.wait_index(options.min_index, request_wait(request))
            await view.usable()
        elif view.position < self._last_write and dc == self.local_dc:
            self.views.stats.delegated += 1
            return None
        return self._cached(view, read.answer, variant, request)

    def _cached(
        self,
        view: View,
        answer: Callable[[Any, Any, qpb.QueryMeta], Message],
        variant: bytes,
        request: Message,
    ) -> Answer:
        assert view.value is not None
        if view.connected:
            found = view.answer(variant)
            if found is not None:
                self.views.stats.hits += 1
                return found
        self.views.stats.misses += 1
        meta = query_meta(view.index, view.known_leader, view.last_contact())
        response = answer(request, view.value, meta)
        if not view.connected:
            return Answer(view.version, response, time.monotonic())
        return view.keep_answer(variant, response)


def _variant(path: str, request: Message) -> bytes:
    """The request without what does not change its answer (the blocking options).

    The token stays: per-token filtering will make it part of the answer.
    """
    options = getattr(request, "options")  # noqa: B009
    if options.min_index or options.HasField("max_wait"):
        copy = type(request)()
        copy.CopyFrom(request)
        request = copy
        options = getattr(copy, "options")  # noqa: B009
        options.min_index = 0
        options.ClearField("max_wait")
        if not options.ByteSize():
            copy.ClearField("options")
    return path.encode() + b"\x00" + request.SerializeToString(deterministic=True)

"""User events on the store: the last 256 events of a datacenter.

Consul gossips user events and each agent keeps the last 256 it saw; here a
datacenter's servers keep them under ``events/`` and every agent reads them
through the same API. The event's ``ltime`` is its store index.
"""

from __future__ import annotations

import uuid

from agent.errors import InvalidArgument
from agent.state.blocking import QueryOpts, Read, blocking_query
from agent.store import Delete, Put, Store
from generated.consul.event.v1 import event_pb2 as epb

__all__ = ["MAX_EVENTS", "MAX_PAYLOAD", "EventState"]

PREFIX = "events/"
MAX_EVENTS = 256
MAX_PAYLOAD = 100 * 1024


class EventState:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def fire(self, event: epb.Event) -> epb.Event:
        if not event.name:
            raise InvalidArgument("Missing name")
        if len(event.payload) > MAX_PAYLOAD:
            raise InvalidArgument(f"Payload exceeds {MAX_PAYLOAD} byte limit")
        e = epb.Event()
        e.CopyFrom(event)
        e.id = str(uuid.uuid4())
        e.version = 1
        e.ltime = 0
        _, index = await self.store.txn([], [Put(PREFIX + e.id, e.SerializeToString())])
        e.ltime = index
        entries, _ = await self.store.range(PREFIX)
        if len(entries) > MAX_EVENTS:
            oldest = sorted(entries, key=lambda x: x.create_index)[: len(entries) - MAX_EVENTS]
            await self.store.txn([], [Delete(x.key) for x in oldest])
        return e

    async def list(self, opts: QueryOpts, name: str = "") -> Read[list[epb.Event]]:
        async def read() -> Read[list[epb.Event]]:
            entries, index = await self.store.range(PREFIX)
            out = []
            for entry in sorted(entries, key=lambda x: x.create_index):
                e = epb.Event.FromString(entry.value)
                e.ltime = entry.create_index
                if not name or e.name == name:
                    out.append(e)
            best = max((e.ltime for e in out), default=0)
            return Read(out, best or index or 1, index)

        return await blocking_query(self.store, opts, [PREFIX], read)

"""The ConfigService endpoint: Consul's configuration entries, JSON in and out."""

from __future__ import annotations

import json
from collections.abc import Callable

from agent.convert import query_opts
from agent.errors import InvalidArgument
from agent.state.config_entries import ConfigEntries
from agent.state.members import MAX_NAME
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.config.v1 import config_pb2 as cfpb

__all__ = ["ConfigEndpoint"]


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidArgument(f"Request decoding failed: {exc}") from None


def _name(name: str) -> str:
    if not name:
        raise InvalidArgument("Must provide both a kind and name")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"config entry name too long (at most {MAX_NAME} characters)")
    return name


class ConfigEndpoint:
    """``meta``: the server's QueryMeta for an index (``ServerContext.meta``)."""

    def __init__(self, entries: ConfigEntries, meta: Callable[[int], qpb.QueryMeta]) -> None:
        self.entries = entries
        self._meta = meta

    async def Apply(self, req: cfpb.ApplyRequest) -> cfpb.ApplyResponse:
        cas = req.cas if req.has_cas else None
        applied, index = await self.entries.apply(_json(req.entry_json), cas)
        return cfpb.ApplyResponse(applied=applied, index=index)

    async def Get(self, req: cfpb.GetRequest) -> cfpb.GetResponse:
        read = await self.entries.get(query_opts(req.options), req.kind, _name(req.name))
        raw = b"" if read.value is None else json.dumps(read.value).encode()
        return cfpb.GetResponse(meta=self._meta(read.index), entry_json=raw)

    async def List(self, req: cfpb.ListRequest) -> cfpb.ListResponse:
        read = await self.entries.list(query_opts(req.options), req.kind)
        return cfpb.ListResponse(
            meta=self._meta(read.index), entries_json=[json.dumps(e).encode() for e in read.value]
        )

    async def Delete(self, req: cfpb.DeleteRequest) -> cfpb.DeleteResponse:
        cas = req.cas if req.has_cas else None
        deleted, index = await self.entries.delete(req.kind, _name(req.name), cas)
        return cfpb.DeleteResponse(deleted=deleted, index=index)

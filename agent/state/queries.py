"""Prepared queries on the store, as Consul's ``PreparedQuery`` state.

``queries/<uuid>`` holds one ``PreparedQuery`` message; a query tied to a
session goes away with the session (deleted the next time queries are read). A query is found by
ID, else by exact name, else by the longest ``name_prefix_match`` template
whose name prefixes the asked name (an empty template name matches every
name), as Consul's ``PreparedQueryResolve``. A template is rendered for the
asked name: ``${name.full}``, ``${name.prefix}``, ``${name.suffix}``,
``${match(N)}`` (captures of the template's regexp, matched with RE2, which
runs in linear time: the pattern is user input) and ``${agent.segment}`` are
replaced in every string field; ``remove_empty_tags`` then drops empty tags.

Validation is Consul's ``parseQuery``: a service name, ``NearestN >= 0``, a
parseable non-negative ``DNS.TTL``, a compilable regexp, known template
variables, a unique name that is not a UUID, one template per prefix.
"""

from __future__ import annotations

import re
import uuid

import re2

from agent.durations import parse_duration
from agent.errors import InvalidArgument, NotFound
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.store import Compare, Delete, Entry, Put, Store
from generated.consul.query.v1 import query_pb2 as qypb

__all__ = ["QueryState", "is_uuid", "render_template", "validate_query"]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# One HIL interpolation: ${ name.full } and friends, or ${match(N)}.
_VAR = re.compile(r"\$\{\s*([^}]*?)\s*\}")
_MATCH = re.compile(r"^match\(\s*(\d{1,3})\s*\)$")
_NAMES = ("name.full", "name.prefix", "name.suffix", "agent.segment")


def is_uuid(text: str) -> bool:
    return bool(_UUID.match(text))


def _load(entry: Entry) -> qypb.PreparedQuery:
    query = qypb.PreparedQuery.FromString(entry.value)
    query.create_index = entry.create_index
    query.modify_index = entry.modify_index
    return query


def _check_vars(text: str, where: str) -> None:
    for m in _VAR.finditer(text):
        name = m.group(1)
        if name not in _NAMES and not _MATCH.match(name):
            raise InvalidArgument(
                f"Failed compiling template: unknown variable {name!r} in {where}"
            )


def _strings(query: qypb.PreparedQuery) -> list[tuple[str, str]]:
    """(where, text) of every string field a template renders."""
    s = query.service
    out = [("Service.Service", s.service), ("Service.Near", s.near)]
    out += [(f"Service.Failover.Datacenters[{i}]", d) for i, d in enumerate(s.failover.datacenters)]
    out += [(f"Service.Tags[{i}]", t) for i, t in enumerate(s.tags)]
    out += [(f"Service.NodeMeta.{k}", v) for k, v in s.node_meta.items()]
    out += [(f"Service.ServiceMeta.{k}", v) for k, v in s.service_meta.items()]
    out += [("DNS.TTL", query.dns.ttl)]
    return out


def validate_query(query: qypb.PreparedQuery) -> None:
    """Consul's checks on a query definition; InvalidArgument on the first failure."""
    if query.name and is_uuid(query.name):
        raise InvalidArgument("Query name cannot be a UUID")
    template = query.template.type == qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH
    if query.template.type not in (
        qypb.TEMPLATE_TYPE_UNSPECIFIED,
        qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH,
    ):
        raise InvalidArgument(f"Bad Type '{query.template.type}'")
    if template:
        if query.template.regexp:
            try:
                re2.compile(query.template.regexp)
            except re2.error as exc:
                raise InvalidArgument(f"Bad Regexp: {exc}") from None
        for where, text in _strings(query):
            _check_vars(text, where)
    elif query.template.regexp:
        raise InvalidArgument("Regexp is only allowed for template queries")
    if not query.service.service:
        raise InvalidArgument("Must provide a Service name to query")
    if query.service.failover.nearest_n < 0:
        raise InvalidArgument(f"Bad NearestN '{query.service.failover.nearest_n}', must be >= 0")
    if query.dns.ttl and not (template and "${" in query.dns.ttl):
        try:
            ttl = parse_duration(query.dns.ttl)
        except InvalidArgument as exc:
            raise InvalidArgument(f"Bad DNS TTL '{query.dns.ttl}': {exc.message}") from None
        if ttl < 0:
            raise InvalidArgument(f"DNS TTL '{query.dns.ttl}', must be >=0")


def render_template(query: qypb.PreparedQuery, name: str, segment: str = "") -> qypb.PreparedQuery:
    """``query`` (a template) rendered for the asked ``name``; a copy."""
    out = qypb.PreparedQuery()
    out.CopyFrom(query)
    captures: list[str] = []
    if query.template.regexp:
        m = re2.compile(query.template.regexp).search(name)
        if m is not None:
            captures = [m.group(0), *(g or "" for g in m.groups())]
    values = {
        "name.full": name,
        "name.prefix": query.name,
        "name.suffix": name[len(query.name) :],
        "agent.segment": segment,
    }

    def sub(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            var = m.group(1)
            if var in values:
                return values[var]
            n = _MATCH.match(var)
            if n is not None:
                i = int(n.group(1))
                return captures[i] if i < len(captures) else ""
            return m.group(0)

        return _VAR.sub(one, text)

    s = out.service
    s.service = sub(s.service)
    s.near = sub(s.near)
    dcs = [sub(d) for d in s.failover.datacenters]
    del s.failover.datacenters[:]
    s.failover.datacenters.extend(dcs)
    tags = [sub(t) for t in s.tags]
    if query.template.remove_empty_tags:
        tags = [t for t in tags if t]
    del s.tags[:]
    s.tags.extend(tags)
    for meta in (s.node_meta, s.service_meta):
        for k in list(meta):
            meta[k] = sub(meta[k])
    out.dns.ttl = sub(out.dns.ttl)
    return out


class QueryState:
    """Create, update, delete, list and resolve prepared queries."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store

    async def _all(self) -> tuple[list[qypb.PreparedQuery], int]:
        """Every live query. A query whose session is gone is deleted (Consul
        deletes a query when its session is invalidated) and left out."""
        entries, index = await self.reader.range(keys.QUERIES)
        out = []
        for e in entries:
            q = _load(e)
            if q.session:
                session, _ = await self.reader.get(keys.SESSIONS + q.session)
                if session is None:
                    await self.store.txn([Compare(e.key, e.modify_index)], [Delete(e.key)])
                    continue
            out.append(q)
        return out, index

    async def _check_name(self, query: qypb.PreparedQuery) -> None:
        template = query.template.type == qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH
        for other in (await self._all())[0]:
            if other.id == query.id:
                continue
            other_template = other.template.type == qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH
            same = other.name.lower() == query.name.lower()
            if query.name and same and not template and not other_template:
                raise InvalidArgument(f"Name '{query.name}' aliases an existing query name")
            if template and other_template and same:
                raise InvalidArgument(
                    f"Name '{query.name}' aliases an existing query template name"
                )

    async def create(self, query: qypb.PreparedQuery) -> tuple[str, int]:
        q = qypb.PreparedQuery()
        q.CopyFrom(query)
        validate_query(q)
        q.id = str(uuid.uuid4())
        q.ClearField("create_index")
        q.ClearField("modify_index")
        await self._check_name(q)
        key = keys.QUERIES + q.id
        _, index = await self.store.txn([Compare(key, 0)], [Put(key, q.SerializeToString())])
        await reader_caught_up(self.reader, index)
        return q.id, index

    async def update(self, query: qypb.PreparedQuery) -> int:
        if not query.id:
            raise InvalidArgument("Must provide a query ID")
        key = keys.QUERIES + query.id
        entry, _ = await self.store.get(key)
        if entry is None:
            raise NotFound(f"Cannot modify non-existent prepared query: '{query.id}'")
        q = qypb.PreparedQuery()
        q.CopyFrom(query)
        validate_query(q)
        q.ClearField("create_index")
        q.ClearField("modify_index")
        await self._check_name(q)
        ok, index = await self.store.txn(
            [Compare(key, entry.modify_index)], [Put(key, q.SerializeToString())]
        )
        if not ok:
            raise InvalidArgument("Prepared query changed concurrently; try again")
        await reader_caught_up(self.reader, index)
        return index

    async def delete(self, query_id: str) -> int:
        key = keys.QUERIES + query_id
        entry, index = await self.store.get(key)
        if entry is None:
            raise NotFound(f"Cannot delete non-existent prepared query: '{query_id}'")
        _, index = await self.store.txn([], [Delete(key)])
        await reader_caught_up(self.reader, index)
        return index

    async def get(self, opts: QueryOpts, query_id: str) -> Read[qypb.PreparedQuery | None]:
        async def read() -> Read[qypb.PreparedQuery | None]:
            entry, index = await self.reader.get(keys.QUERIES + query_id)
            if entry is None:
                return Read(None, index or 1, index)
            return Read(_load(entry), entry.modify_index, index)

        return await blocking_query(self.reader, opts, [keys.QUERIES + query_id], read)

    async def list_queries(self, opts: QueryOpts) -> Read[list[qypb.PreparedQuery]]:
        async def read() -> Read[list[qypb.PreparedQuery]]:
            queries, index = await self._all()
            best = max((q.modify_index for q in queries), default=0)
            return Read(queries, best or index or 1, index)

        return await blocking_query(self.reader, opts, [keys.QUERIES], read)

    async def resolve(self, id_or_name: str, segment: str = "") -> tuple[qypb.PreparedQuery, int]:
        """The query ``id_or_name`` names, a template rendered; NotFound otherwise."""
        if not id_or_name:
            raise InvalidArgument("Must provide a query ID or name")
        queries, index = await self._all()
        if is_uuid(id_or_name):
            for q in queries:
                if q.id == id_or_name.lower():
                    return self._rendered(q, id_or_name, segment), index
        # Names match case-insensitively (Consul's name index is lowercase; DNS
        # lowercases the names it is asked).
        lowered = id_or_name.lower()
        for q in queries:
            if q.name and q.name.lower() == lowered:
                return self._rendered(q, id_or_name, segment), index
        best: qypb.PreparedQuery | None = None
        for q in queries:
            if q.template.type != qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH:
                continue
            prefix = q.name.lower()
            if lowered.startswith(prefix) and (best is None or len(q.name) > len(best.name)):
                best = q
        if best is None:
            raise NotFound("Query not found")
        return render_template(best, id_or_name, segment), index

    @staticmethod
    def _rendered(q: qypb.PreparedQuery, name: str, segment: str) -> qypb.PreparedQuery:
        if q.template.type == qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH:
            return render_template(q, name, segment)
        return q

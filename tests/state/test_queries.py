"""Prepared queries on every store: CRUD, validation, resolution and templates."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument, NotFound
from agent.state.blocking import QueryOpts
from agent.state.queries import QueryState, render_template, validate_query
from agent.store import Store
from generated.consul.query.v1 import query_pb2 as qypb


def query(name: str, service: str = "web", **kw: object) -> qypb.PreparedQuery:
    q = qypb.PreparedQuery(name=name, service=qypb.ServiceQuery(service=service))
    for key, value in kw.items():
        if isinstance(value, qypb.DNSOptions):
            getattr(q, key).CopyFrom(value)
        else:
            setattr(q, key, value)
    return q


def template(
    name: str, service: str, regexp: str = "", remove_empty: bool = False
) -> qypb.PreparedQuery:
    q = query(name, service)
    q.template.type = qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH
    q.template.regexp = regexp
    q.template.remove_empty_tags = remove_empty
    return q


async def test_create_get_update_delete_list(store: Store) -> None:
    state = QueryState(store)
    qid, index = await state.create(query("web-q"))
    assert index > 0
    got = (await state.get(QueryOpts(), qid)).value
    assert got is not None and got.name == "web-q" and got.create_index == index
    got.service.service = "api"
    await state.update(got)
    listed = (await state.list_queries(QueryOpts())).value
    assert [(q.id, q.service.service) for q in listed] == [(qid, "api")]
    await state.delete(qid)
    assert (await state.get(QueryOpts(), qid)).value is None
    with pytest.raises(NotFound):
        await state.delete(qid)
    with pytest.raises(NotFound):
        await state.update(qypb.PreparedQuery(id=qid, service=qypb.ServiceQuery(service="x")))


async def test_names_are_unique_case_insensitively(store: Store) -> None:
    state = QueryState(store)
    await state.create(query("Web-Q"))
    with pytest.raises(InvalidArgument, match="aliases an existing query name"):
        await state.create(query("web-q"))
    await state.create(template("web-", "x"))
    with pytest.raises(InvalidArgument, match="template"):
        await state.create(template("WEB-", "y"))


async def test_resolve_by_id_name_then_longest_template(store: Store) -> None:
    state = QueryState(store)
    qid, _ = await state.create(query("exact", "a"))
    await state.create(template("", "catch-all-${name.full}"))
    await state.create(template("geo-", "${name.suffix}"))
    await state.create(template("geo-db-", "db-${name.suffix}"))
    assert (await state.resolve(qid))[0].service.service == "a"
    assert (await state.resolve("EXACT"))[0].service.service == "a"
    assert (await state.resolve("geo-web"))[0].service.service == "web"
    assert (await state.resolve("geo-db-east"))[0].service.service == "db-east"
    assert (await state.resolve("other"))[0].service.service == "catch-all-other"


async def test_unknown_query_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="Query not found"):
        await QueryState(store).resolve("nothing")


def test_regexp_captures_and_empty_tags() -> None:
    q = template("geo-", "${match(1)}", regexp=r"^geo-([a-z]+)-?(v\d+)?$", remove_empty=True)
    q.service.tags.extend(["${match(2)}", "primary", "${match(9)}"])
    q.service.failover.datacenters.append("${match(1)}-dr")
    out = render_template(q, "geo-web-v2")
    assert out.service.service == "web" and list(out.service.tags) == ["v2", "primary"]
    assert list(out.service.failover.datacenters) == ["web-dr"]
    bare = render_template(q, "geo-web")
    assert list(bare.service.tags) == ["primary"]


@pytest.mark.parametrize(
    ("q", "message"),
    [
        (query("x", ""), "Must provide a Service name"),
        (query("6b1f2c1a-1111-2222-3333-444455556666"), "cannot be a UUID"),
        (template("t", "a", regexp="("), "Bad Regexp"),
        (template("t", "${nope}"), "unknown variable"),
        (query("x", dns=qypb.DNSOptions(ttl="soon")), "Bad DNS TTL"),
    ],
)
def test_validation(q: qypb.PreparedQuery, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_query(q)


def test_negative_nearest_n() -> None:
    q = query("x")
    q.service.failover.nearest_n = -1
    with pytest.raises(InvalidArgument, match="NearestN"):
        validate_query(q)


def test_regexp_is_linear_time() -> None:
    # A pattern that backtracks catastrophically in Python's re; RE2 answers at once.
    q = template("p", "${match(1)}", regexp=r"^(a+)+$")
    assert render_template(q, "a" * 5000 + "!").service.service == ""


async def test_a_query_goes_away_with_its_session(store: Store) -> None:
    from agent.state.catalog import Catalog
    from agent.state.kv import KVState
    from agent.state.sessions import SessionState
    from generated.consul.common.v1 import types_pb2 as pb
    from generated.consul.session.v1 import session_pb2 as sspb

    catalog = Catalog(store)
    sessions = SessionState(store, catalog, KVState(store))
    serf = pb.HealthCheck(check_id="serfHealth", name="serf", status=pb.HEALTH_STATUS_PASSING)
    await catalog.register(pb.Node(name="n1", address="10.0.0.1"), None, [serf])
    sid, _ = await sessions.create(sspb.Session(node="n1"), node_checks_set=False)
    state = QueryState(store)
    await state.create(query("tied", session=sid))
    await state.create(query("free"))
    assert sorted(q.name for q in (await state.list_queries(QueryOpts())).value) == ["free", "tied"]
    await sessions.destroy(sid)
    assert [q.name for q in (await state.list_queries(QueryOpts())).value] == ["free"]
    with pytest.raises(NotFound):
        await state.resolve("tied")

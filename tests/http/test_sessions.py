"""/v1/session/* and KV locks: Consul's request defaults, shapes and status codes."""

from __future__ import annotations

from typing import Any

import pytest

from agent.http.params import Fields
from agent.http.session_routes import create_request
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.session.v1 import session_pb2 as sspb
from tests.http.conftest import Client
from tests.http.session_fakes import SessionInvoker

NS = 1_000_000_000


@pytest.fixture
def invoker() -> SessionInvoker:
    return SessionInvoker()


def _created(invoker: SessionInvoker) -> sspb.CreateRequest:
    req = invoker.last("Create")
    assert isinstance(req, sspb.CreateRequest)
    return req


async def _create(client: Client, body: Any = None) -> str:
    resp = await client.put("/v1/session/create", json=body)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert set(data) == {"ID"}
    return str(data["ID"])


async def test_create_defaults(client: Client, invoker: SessionInvoker) -> None:
    resp = await client.put("/v1/session/create")
    assert resp.status == 200
    session_id = (await resp.json())["ID"]
    req = _created(invoker)
    s = req.session
    assert (s.node, s.name, s.behavior) == ("node-1", "", sspb.BEHAVIOR_RELEASE)
    assert s.lock_delay.ToNanoseconds() == 15 * NS
    assert not s.HasField("ttl")
    assert list(s.node_checks) == [] and not req.node_checks_set
    assert invoker.sessions[session_id].node_checks == ["serfHealth"]


async def test_create_body(client: Client, invoker: SessionInvoker) -> None:
    await _create(
        client,
        {
            "Name": "lock-holder",
            "Node": "node-2",
            "LockDelay": "5s",
            "Behavior": "delete",
            "TTL": "30s",
            "NodeChecks": ["serfHealth", "maint"],
            "ServiceChecks": [{"ID": "service:web", "Namespace": ""}],
        },
    )
    req = _created(invoker)
    s = req.session
    assert (s.name, s.node, s.behavior) == ("lock-holder", "node-2", sspb.BEHAVIOR_DELETE)
    assert s.lock_delay.ToNanoseconds() == 5 * NS
    assert s.ttl.ToNanoseconds() == 30 * NS
    assert list(s.node_checks) == ["serfHealth", "maint"] and req.node_checks_set
    assert list(s.service_checks) == ["service:web"]


async def test_create_lowercase_keys_as_py_consul_sends(
    client: Client, invoker: SessionInvoker
) -> None:
    await _create(client, {"name": "n", "lockdelay": "20s", "behavior": "delete", "ttl": "10s"})
    s = _created(invoker).session
    assert (s.name, s.behavior) == ("n", sspb.BEHAVIOR_DELETE)
    assert s.lock_delay.ToNanoseconds() == 20 * NS
    assert s.ttl.ToNanoseconds() == 10 * NS


@pytest.mark.parametrize(
    ("lock_delay", "ns"),
    [
        (5, 5 * NS),  # under Consul's lockDelayMinThreshold: seconds
        (999, 999 * NS),
        (2 * NS, 2 * NS),  # nanoseconds
        ("250ms", 250_000_000),
        ("0s", 0),
    ],
)
def test_lock_delay_forms(lock_delay: Any, ns: int) -> None:
    req = create_request(Fields({"LockDelay": lock_delay}), "n1")
    assert req.session.lock_delay.ToNanoseconds() == ns


@pytest.mark.parametrize(
    ("body", "checks", "chosen"),
    [
        ({}, [], False),
        ({"Checks": []}, [], True),
        ({"Checks": None}, [], True),
        ({"checks": ["serfHealth", "web"]}, ["serfHealth", "web"], True),
        ({"Checks": ["web"]}, ["serfHealth", "web"], True),
        ({"Checks": ["serfHealth"], "NodeChecks": ["a"]}, ["a"], True),
        ({"NodeChecks": []}, [], True),
        ({"NodeChecks": ["a", "b"]}, ["a", "b"], True),
        ({"Checks": ["c"], "NodeChecks": []}, [], True),
        ({"Checks": ["c"], "NodeChecks": ["a"]}, ["a", "c"], True),
    ],
)
def test_checks_fixup_as_consul(body: dict[str, Any], checks: list[str], chosen: bool) -> None:
    req = create_request(Fields(body), "n1")
    assert list(req.session.node_checks) == checks
    assert req.node_checks_set is chosen


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"Behavior": "keep"}, "Invalid Behavior"),
        ({"LockDelay": "soon"}, "LockDelay"),
        ({"LockDelay": True}, "LockDelay"),
        ({"TTL": "ten"}, "TTL"),
        ({"Checks": "serfHealth"}, "Checks"),
        ({"ServiceChecks": [{"Namespace": "x"}]}, "ServiceChecks[0].ID"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
async def test_create_bad_body_is_400(client: Client, body: Any, needle: str) -> None:
    resp = await client.put("/v1/session/create", json=body)
    assert resp.status == 400
    assert needle in await resp.text()


async def test_create_bad_json_is_400(client: Client) -> None:
    resp = await client.put("/v1/session/create", data=b"{nope")
    assert resp.status == 400
    assert "Request decode failed" in await resp.text()


async def test_create_passes_dc_and_token(client: Client, invoker: SessionInvoker) -> None:
    await client.put("/v1/session/create?dc=dc2", headers={"X-Consul-Token": "t0k"})
    req = _created(invoker)
    assert (req.write.datacenter, req.write.token) == ("dc2", "t0k")


async def test_server_error_is_answered(client: Client) -> None:
    resp = await client.put("/v1/session/create", json={"Node": "nowhere"})
    assert resp.status == 400
    assert "Missing node registration" in await resp.text()


async def test_info_shape(client: Client, invoker: SessionInvoker) -> None:
    session_id = await _create(
        client,
        {"Name": "s", "TTL": "15s", "LockDelay": "1s", "ServiceChecks": [{"ID": "service:db"}]},
    )
    resp = await client.get(f"/v1/session/info/{session_id}")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == str(invoker.index)
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    (s,) = await resp.json()
    created = invoker.sessions[session_id].create_index
    assert s == {
        "ID": session_id,
        "Name": "s",
        "Node": "node-1",
        "LockDelay": NS,
        "Behavior": "release",
        "TTL": "15s",
        "NodeChecks": ["serfHealth"],
        "ServiceChecks": [{"ID": "service:db", "Namespace": ""}],
        "Checks": ["serfHealth", "service:db"],
        "CreateIndex": created,
        "ModifyIndex": created,
    }


async def test_info_unknown_is_empty_list_with_index(client: Client) -> None:
    resp = await client.get("/v1/session/info/no-such-session")
    assert resp.status == 200
    assert await resp.json() == []
    assert resp.headers["X-Consul-Index"] == "10"


async def test_no_ttl_is_empty_string(client: Client) -> None:
    session_id = await _create(client)
    (s,) = await (await client.get(f"/v1/session/info/{session_id}")).json()
    assert s["TTL"] == ""
    assert s["LockDelay"] == 15 * NS


async def test_blocking_params_reach_the_servers(client: Client, invoker: SessionInvoker) -> None:
    resp = await client.get("/v1/session/list?index=7&wait=2s&stale")
    assert resp.status == 200
    req = invoker.last("List")
    assert isinstance(req, sspb.ListRequest)
    assert req.options.min_index == 7
    assert req.options.max_wait.ToMilliseconds() == 2000
    resp = await client.get("/v1/session/info/x?index=nope")
    assert resp.status == 400


async def test_list_and_node(client: Client, invoker: SessionInvoker) -> None:
    assert await (await client.get("/v1/session/list")).json() == []
    a = await _create(client, {"Name": "a"})
    b = await _create(client, {"Name": "b", "Node": "node-2"})
    resp = await client.get("/v1/session/list")
    assert sorted(s["ID"] for s in await resp.json()) == sorted([a, b])
    assert "X-Consul-Index" in resp.headers
    resp = await client.get("/v1/session/node/node-2")
    assert [s["ID"] for s in await resp.json()] == [b]
    req = invoker.last("ListNode")
    assert isinstance(req, sspb.ListNodeRequest) and req.node == "node-2"
    assert await (await client.get("/v1/session/node/node-9")).json() == []


async def test_renew(client: Client) -> None:
    session_id = await _create(client, {"TTL": "10s"})
    resp = await client.put(f"/v1/session/renew/{session_id}")
    assert resp.status == 200
    (s,) = await resp.json()
    assert (s["ID"], s["TTL"]) == (session_id, "10s")


async def test_renew_unknown_is_404(client: Client) -> None:
    resp = await client.put("/v1/session/renew/gone")
    assert resp.status == 404
    assert await resp.text() == "Session id 'gone' not found"


async def test_destroy(client: Client, invoker: SessionInvoker) -> None:
    session_id = await _create(client)
    resp = await client.put(f"/v1/session/destroy/{session_id}")
    assert resp.status == 200
    assert await resp.json() is True
    assert session_id not in invoker.sessions
    assert await (await client.get(f"/v1/session/info/{session_id}")).json() == []


@pytest.mark.parametrize(
    ("method", "path", "text"),
    [
        ("PUT", "/v1/session/destroy/", "Missing session"),
        ("PUT", "/v1/session/renew/", "Missing session"),
        ("GET", "/v1/session/info/", "Missing session"),
        ("GET", "/v1/session/node/", "Missing node name"),
    ],
)
async def test_missing_path_value_is_400(client: Client, method: str, path: str, text: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 400
    assert await resp.text() == text


async def test_writes_are_put_only(client: Client) -> None:
    assert (await client.get("/v1/session/create")).status == 405
    assert (await client.post("/v1/session/destroy/x")).status == 405


async def test_kv_acquire_release(client: Client, invoker: SessionInvoker) -> None:
    a = await _create(client, {"Name": "a"})
    b = await _create(client, {"Name": "b"})
    resp = await client.put(f"/v1/kv/lock?acquire={a}", data=b"leader-a")
    assert resp.status == 200 and await resp.json() is True
    req = invoker.last("Put")
    assert isinstance(req, kpb.PutRequest) and req.acquire == a
    # Held by another session: a failed acquire is 200 false, as in Consul.
    resp = await client.put(f"/v1/kv/lock?acquire={b}", data=b"leader-b")
    assert resp.status == 200 and await resp.json() is False
    (pair,) = await (await client.get("/v1/kv/lock")).json()
    assert (pair["Session"], pair["LockIndex"]) == (a, 1)
    resp = await client.put(f"/v1/kv/lock?release={b}")
    assert await resp.json() is False
    resp = await client.put(f"/v1/kv/lock?release={a}")
    assert await resp.json() is True
    (pair,) = await (await client.get("/v1/kv/lock")).json()
    assert "Session" not in pair
    resp = await client.put(f"/v1/kv/lock?acquire={b}", data=b"leader-b")
    assert await resp.json() is True


async def test_kv_acquire_invalid_session_is_400(client: Client) -> None:
    resp = await client.put("/v1/kv/lock?acquire=nobody", data=b"x")
    assert resp.status == 400
    assert "Invalid session" in await resp.text()

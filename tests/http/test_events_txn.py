"""/v1/event/* and /v1/txn: Consul's shapes, filters, limits and status codes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from agent.http.event_routes import MAX_EVENT_PAYLOAD, applies_to
from agent.http.txn_routes import MAX_TXN_OPS
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.txn.v1 import txn_pb2 as tpb
from tests.http.conftest import Client
from tests.http.fakes import FakeAgent
from tests.http.session_fakes import SessionInvoker


@pytest.fixture
def invoker() -> SessionInvoker:
    return SessionInvoker()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Events.


async def test_fire_shape(client: Client, invoker: SessionInvoker) -> None:
    resp = await client.put(
        "/v1/event/fire/deploy?node=web-.*&service=api&tag=v2&dc=dc1",
        data=b"1609030",
        headers={"X-Consul-Token": "t"},
    )
    assert resp.status == 200
    body = await resp.json()
    assert body == {
        "ID": invoker.events[0].id,
        "Name": "deploy",
        "Payload": _b64(b"1609030"),
        "NodeFilter": "web-.*",
        "ServiceFilter": "api",
        "TagFilter": "v2",
        "Version": 1,
        "LTime": invoker.events[0].ltime,
    }
    req = invoker.last("Fire")
    assert isinstance(req, epb.FireRequest)
    assert (req.write.datacenter, req.write.token) == ("dc1", "t")
    assert req.event.payload == b"1609030"


async def test_fire_without_payload_is_null(client: Client) -> None:
    body = await (await client.put("/v1/event/fire/ping")).json()
    assert body["Payload"] is None
    assert (body["NodeFilter"], body["ServiceFilter"], body["TagFilter"]) == ("", "", "")


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/v1/event/fire/", "Missing name"),
        ("/v1/event/fire/x?tag=v1", "Cannot provide tag filter without service filter"),
        ("/v1/event/fire/x?node=web-(", "Invalid node filter"),
        ("/v1/event/fire/x?service=[a", "Invalid service filter"),
        ("/v1/event/fire/x?service=a&tag=*", "Invalid tag filter"),
    ],
)
async def test_fire_bad_input_is_400(client: Client, path: str, text: str) -> None:
    resp = await client.put(path)
    assert resp.status == 400
    assert text in await resp.text()


async def test_fire_payload_limit_is_413(client: Client, invoker: SessionInvoker) -> None:
    resp = await client.put("/v1/event/fire/big", data=b"x" * (MAX_EVENT_PAYLOAD + 1))
    assert resp.status == 413
    assert not invoker.events


async def test_list_oldest_first_with_index(client: Client, invoker: SessionInvoker) -> None:
    resp = await client.get("/v1/event/list")
    assert resp.status == 200
    assert await resp.json() == []
    assert resp.headers["X-Consul-Index"] == "10"
    for name in ("a", "b", "a"):
        await client.put(f"/v1/event/fire/{name}", data=name.encode())
    resp = await client.get("/v1/event/list")
    events = await resp.json()
    assert [e["Name"] for e in events] == ["a", "b", "a"]
    assert base64.b64decode(events[0]["Payload"]) == b"a"
    assert resp.headers["X-Consul-Index"] == str(invoker.index)
    resp = await client.get("/v1/event/list?name=a&index=12&wait=1s")
    assert [e["Name"] for e in await resp.json()] == ["a", "a"]
    req = invoker.last("List")
    assert isinstance(req, epb.ListRequest)
    assert (req.name, req.options.min_index) == ("a", 12)
    assert req.options.max_wait.ToSeconds() == 1


async def test_list_keeps_only_events_for_this_agent(
    client: Client, invoker: SessionInvoker, fake_agent: FakeAgent
) -> None:
    fake_agent.services["web-1"] = pb.Service(id="web-1", name="web", tags=["v1", "blue"])
    for query in (
        "",
        "node=node-.*",
        "node=^other$",
        "service=web",
        "service=db",
        "service=web&tag=^blue$",
        "service=web&tag=green",
    ):
        resp = await client.put(f"/v1/event/fire/e?{query}")
        assert resp.status == 200
    listed = await (await client.get("/v1/event/list")).json()
    got = [(e["NodeFilter"], e["ServiceFilter"], e["TagFilter"]) for e in listed]
    assert got == [
        ("", "", ""),
        ("node-.*", "", ""),
        ("", "web", ""),
        ("", "web", "^blue$"),
    ]


def test_applies_to_rules() -> None:
    web = pb.Service(id="web-1", name="web", tags=["v1"])
    assert applies_to(epb.Event(version=1), "n1", [])
    assert not applies_to(epb.Event(version=2), "n1", [])
    assert applies_to(epb.Event(version=1, node_filter="1$"), "n1", [])
    assert not applies_to(epb.Event(version=1, node_filter="("), "n1", [])
    assert applies_to(epb.Event(version=1, service_filter="web-1"), "n1", [web])
    assert not applies_to(epb.Event(version=1, service_filter="web"), "n1", [])
    assert applies_to(epb.Event(version=1, service_filter="w", tag_filter="v"), "n1", [web])
    assert not applies_to(epb.Event(version=1, service_filter="w", tag_filter="x"), "n1", [web])


# Transactions.


def _op(verb: str, key: str, value: bytes = b"", **extra: Any) -> dict[str, Any]:
    kv: dict[str, Any] = {"Verb": verb, "Key": key, **extra}
    if value:
        kv["Value"] = _b64(value)
    return {"KV": kv}


async def test_txn_success_shape(client: Client, invoker: SessionInvoker) -> None:
    invoker.kv["existing"] = kpb.KVPair(
        key="existing", value=b"old", flags=3, create_index=4, modify_index=5
    )
    ops = [_op("set", "a", b"one", Flags=7), _op("get", "existing")]
    resp = await client.put("/v1/txn", json=ops, headers={"X-Consul-Token": "t"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["Errors"] is None
    written, read = body["Results"]
    assert written["KV"]["Key"] == "a"
    assert written["KV"]["Value"] is None
    assert written["KV"]["Flags"] == 7
    assert written["KV"]["ModifyIndex"] == invoker.index
    assert read["KV"] == {
        "Key": "existing",
        "Value": _b64(b"old"),
        "Flags": 3,
        "LockIndex": 0,
        "CreateIndex": 4,
        "ModifyIndex": 5,
    }
    req = invoker.last("Txn")
    assert isinstance(req, tpb.TxnRequest)
    assert req.write.token == "t"
    assert [(o.verb, o.key, o.value, o.flags) for o in req.ops] == [
        ("set", "a", b"one", 7),
        ("get", "existing", b"", 0),
    ]


async def test_txn_fields_reach_the_servers(client: Client, invoker: SessionInvoker) -> None:
    ops = [{"kv": {"verb": "cas", "key": "k", "value": _b64(b"v"), "index": 0, "session": "s"}}]
    resp = await client.put("/v1/txn", json=ops)
    assert resp.status == 200
    req = invoker.last("Txn")
    assert isinstance(req, tpb.TxnRequest)
    (op,) = req.ops
    assert (op.verb, op.key, op.value, op.index, op.session) == ("cas", "k", b"v", 0, "s")


async def test_txn_failure_is_409(client: Client, invoker: SessionInvoker) -> None:
    ops = [_op("set", "a", b"1"), _op("cas", "b", b"2", Index=99)]
    resp = await client.put("/v1/txn", json=ops)
    assert resp.status == 409
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["Results"] is None
    assert body["Errors"] == [{"OpIndex": 1, "What": "current modify index 0"}]
    assert "a" not in invoker.kv


async def test_txn_unknown_verb_is_409_without_a_call(
    client: Client, invoker: SessionInvoker
) -> None:
    resp = await client.put("/v1/txn", json=[_op("set", "a"), _op("frobnicate", "b")])
    assert resp.status == 409
    body = await resp.json()
    assert body == {
        "Results": None,
        "Errors": [{"OpIndex": 1, "What": 'unknown KV verb "frobnicate"'}],
    }
    assert not invoker.requests("Txn")


async def test_txn_too_many_ops_is_413(client: Client, invoker: SessionInvoker) -> None:
    ops = [_op("set", f"k{n}") for n in range(MAX_TXN_OPS + 1)]
    resp = await client.put("/v1/txn", json=ops)
    assert resp.status == 413
    text = await resp.text()
    assert text == f"Transaction contains too many operations ({MAX_TXN_OPS + 1} > {MAX_TXN_OPS})"
    assert not invoker.requests("Txn")
    ops = ops[:MAX_TXN_OPS]
    assert (await client.put("/v1/txn", json=ops)).status == 200


async def test_txn_empty_is_200(client: Client, invoker: SessionInvoker) -> None:
    for body in (b"", b"[]", b"null"):
        resp = await client.put("/v1/txn", data=body)
        assert resp.status == 200
        assert await resp.json() == {"Results": [], "Errors": None}
    assert not invoker.requests("Txn")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ([{"Node": {"Verb": "set", "Node": {"Node": "n"}}}], "Node operations are not supported"),
        ([{"Service": {"Verb": "get"}}], "Service operations are not supported"),
        ([{"Check": {"Verb": "get"}}], "Check operations are not supported"),
        ([{}], "has no KV operation"),
        ([_op("set", "a"), "set"], "must be a JSON object"),
        ({"KV": {"Verb": "set"}}, "must be a JSON array"),
        ([{"KV": {"Verb": "set", "Key": "a", "Value": "!!!"}}], "not valid base64"),
        ([{"KV": {"Verb": "set", "Key": "a", "Flags": -1}}], "Flags"),
        ([{"KV": {"Verb": "set", "Key": "a", "Index": "3"}}], "Index"),
    ],
)
async def test_txn_bad_body_is_400(
    client: Client, invoker: SessionInvoker, body: Any, text: str
) -> None:
    resp = await client.put("/v1/txn", json=body)
    assert resp.status == 400
    assert text in await resp.text()
    assert not invoker.requests("Txn")


async def test_txn_bad_json_is_400(client: Client) -> None:
    resp = await client.put("/v1/txn", data=b"[{")
    assert resp.status == 400


async def test_txn_value_too_large_is_413(client: Client) -> None:
    big = _b64(b"x" * (384 * 1024))
    ops = [{"KV": {"Verb": "set", "Key": f"k{n}", "Value": big}} for n in range(2)]
    resp = await client.put("/v1/txn", json=ops)
    assert resp.status == 413


async def test_txn_is_put_only(client: Client) -> None:
    assert (await client.get("/v1/txn")).status == 405

"""/v1/kv and /v1/status: Consul's KV semantics over the invoker."""

from __future__ import annotations

import base64

from aiohttp.test_utils import TestClient, TestServer

from agent.errors import NoLeader
from agent.http import build_app
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.status.v1 import status_pb2 as spb
from tests.http.conftest import Client
from tests.http.fakes import FakeAgent, FakeInvoker


async def test_put_get_roundtrip(client: Client, invoker: FakeInvoker) -> None:
    resp = await client.put("/v1/kv/app/config", data=b"\x00bin\xff", params={"flags": "42"})
    assert resp.status == 200
    assert await resp.text() == "true"
    resp = await client.get("/v1/kv/app/config")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == "11"
    (pair,) = await resp.json()
    assert pair["Key"] == "app/config"
    assert base64.b64decode(pair["Value"]) == b"\x00bin\xff"
    assert pair["Flags"] == 42
    assert pair["CreateIndex"] == 11
    assert pair["ModifyIndex"] == 11
    assert pair["LockIndex"] == 0


async def test_raw_value(client: Client) -> None:
    await client.put("/v1/kv/k", data=b"hello")
    resp = await client.get("/v1/kv/k?raw")
    assert resp.status == 200
    assert await resp.read() == b"hello"
    assert "X-Consul-Index" in resp.headers


async def test_missing_key_is_404_with_index(client: Client) -> None:
    resp = await client.get("/v1/kv/missing")
    assert resp.status == 404
    assert resp.headers["X-Consul-Index"] == "10"
    resp = await client.get("/v1/kv/missing/?recurse")
    assert resp.status == 404
    assert "X-Consul-Index" in resp.headers
    resp = await client.get("/v1/kv/missing/?keys")
    assert resp.status == 404
    assert "X-Consul-Index" in resp.headers


async def test_recurse_keys_separator(client: Client, invoker: FakeInvoker) -> None:
    for key in ("a/1", "a/2", "a/b/3", "z"):
        assert (await client.put(f"/v1/kv/{key}", data=key.encode())).status == 200
    pairs = await (await client.get("/v1/kv/a/?recurse=true")).json()
    assert [p["Key"] for p in pairs] == ["a/1", "a/2", "a/b/3"]
    keys = await (await client.get("/v1/kv/a/?keys")).json()
    assert keys == ["a/1", "a/2", "a/b/3"]
    keys = await (await client.get("/v1/kv/a/?keys&separator=/")).json()
    assert keys == ["a/1", "a/2", "a/b/"]
    req = invoker.last("Keys")
    assert isinstance(req, kpb.KeysRequest)
    assert (req.prefix, req.separator) == ("a/", "/")
    assert await (await client.get("/v1/kv/?keys")).json() == ["a/1", "a/2", "a/b/3", "z"]


async def test_root_keys_empty_is_list(client: Client) -> None:
    resp = await client.get("/v1/kv/?keys")
    assert resp.status == 200
    assert await resp.json() == []


async def test_cas(client: Client, invoker: FakeInvoker) -> None:
    resp = await client.put("/v1/kv/c?cas=0", data=b"1")
    assert await resp.json() is True
    resp = await client.put("/v1/kv/c?cas=0", data=b"2")
    assert resp.status == 200
    assert await resp.json() is False
    index = invoker.kv["c"].modify_index
    resp = await client.put(f"/v1/kv/c?cas={index}", data=b"3")
    assert await resp.json() is True
    req = invoker.last("Put")
    assert isinstance(req, kpb.PutRequest)
    assert req.HasField("cas") and req.cas == index
    resp = await client.delete("/v1/kv/c?cas=1")
    assert resp.status == 200
    assert await resp.json() is False
    resp = await client.delete(f"/v1/kv/c?cas={invoker.kv['c'].modify_index}")
    assert await resp.json() is True
    assert "c" not in invoker.kv


async def test_put_without_cas_has_no_cas_field(client: Client, invoker: FakeInvoker) -> None:
    await client.put("/v1/kv/plain", data=b"x")
    req = invoker.last("Put")
    assert isinstance(req, kpb.PutRequest)
    assert not req.HasField("cas")


async def test_acquire_release_and_applied_false(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned["/consul.kv.v1.KVService/Put"] = kpb.PutResponse(applied=False)
    resp = await client.put("/v1/kv/lock?acquire=sess-1", data=b"")
    assert await resp.json() is False
    req = invoker.last("Put")
    assert isinstance(req, kpb.PutRequest)
    assert req.acquire == "sess-1"
    await client.put("/v1/kv/lock?release=sess-1", data=b"")
    req = invoker.last("Put")
    assert isinstance(req, kpb.PutRequest)
    assert req.release == "sess-1"


async def test_delete_recurse(client: Client, invoker: FakeInvoker) -> None:
    for key in ("p/1", "p/2", "q"):
        await client.put(f"/v1/kv/{key}", data=b"v")
    resp = await client.delete("/v1/kv/p/?recurse")
    assert await resp.json() is True
    assert sorted(invoker.kv) == ["q"]
    req = invoker.last("Delete")
    assert isinstance(req, kpb.DeleteRequest)
    assert req.recurse is True
    assert not req.HasField("cas")


async def test_missing_key_name_is_400(client: Client) -> None:
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.request(method, "/v1/kv/")
        assert resp.status == 400, method
        assert await resp.text() == "Missing key name"


async def test_value_too_large(client: Client, invoker: FakeInvoker) -> None:
    resp = await client.put("/v1/kv/big", data=b"x" * (512 * 1024 + 1))
    assert resp.status == 413
    assert await resp.text() == "Value exceeds 524288 byte limit"
    assert not invoker.requests("Put")
    resp = await client.put("/v1/kv/ok", data=b"x" * (512 * 1024))
    assert resp.status == 200


async def test_value_too_large_chunked(client: Client, invoker: FakeInvoker) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(9):
            yield b"x" * (64 * 1024)

    resp = await client.put("/v1/kv/big", data=chunks())
    assert resp.status == 413
    assert not invoker.requests("Put")


async def test_bad_cas_and_flags(client: Client) -> None:
    resp = await client.put("/v1/kv/k?cas=abc", data=b"")
    assert resp.status == 400
    assert "cas" in await resp.text()
    resp = await client.put("/v1/kv/k?flags=-1", data=b"")
    assert resp.status == 400


async def test_status(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned["/consul.status.v1.StatusService/Leader"] = spb.LeaderResponse(
        address="10.0.0.1:8300"
    )
    invoker.canned["/consul.status.v1.StatusService/Peers"] = spb.PeersResponse(
        addresses=["10.0.0.1:8300", "10.0.0.2:8300"]
    )
    resp = await client.get("/v1/status/leader?dc=dc2")
    assert await resp.json() == "10.0.0.1:8300"
    req = invoker.last("Leader")
    assert isinstance(req, spb.LeaderRequest)
    assert req.datacenter == "dc2"
    resp = await client.get("/v1/status/peers")
    assert await resp.json() == ["10.0.0.1:8300", "10.0.0.2:8300"]


async def test_status_no_leader_is_empty_string(client: Client) -> None:
    resp = await client.get("/v1/status/leader")
    assert await resp.json() == ""


async def test_consul_error_is_its_status_and_text(client: Client, invoker: FakeInvoker) -> None:
    invoker.error = NoLeader()
    resp = await client.get("/v1/kv/k")
    assert resp.status == 500
    assert await resp.text() == "No cluster leader"


class RenderingInvoker(FakeInvoker):
    """A fake with the views' rendered-answer hook: one render per (request, format)."""

    def __init__(self) -> None:
        super().__init__()
        self.renders = 0
        self.bodies: dict[tuple[str, bytes, str], bytes] = {}

    async def rendered(self, spec, request, fmt, render):  # type: ignore[no-untyped-def]
        from agent.views.invoker import Rendered

        response = await self.rpc(spec, request)
        request.options.Clear()  # the blocking options do not change the answer
        key = (spec.path, request.SerializeToString(deterministic=True), fmt)
        body = self.bodies.get(key)
        if body is None:
            self.renders += 1
            body = self.bodies[key] = render(response)
        return Rendered(response, body, False, 0.0)


async def test_kv_lists_are_rendered_once_for_all_watchers(fake_agent: FakeAgent) -> None:
    """1,000 watchers of a 10,000-key prefix each rendered its JSON (~40 ms of CPU each)."""
    invoker = RenderingInvoker()
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    async with TestClient(TestServer(app)) as c:
        for key in ("a/1", "a/2", "a/b/3"):
            assert (await c.put(f"/v1/kv/{key}", data=b"v")).status == 200
        for _ in range(5):
            pairs = await (await c.get("/v1/kv/a/?recurse&index=3&wait=1s")).json()
            assert [p["Key"] for p in pairs] == ["a/1", "a/2", "a/b/3"]
            keys = await (await c.get("/v1/kv/a/?keys&separator=/&index=3")).json()
            assert keys == ["a/1", "a/2", "a/b/"]
        assert invoker.renders == 2  # one per answer, shared by every reader
        missing = await c.get("/v1/kv/nothing/?recurse")
        assert missing.status == 404 and missing.headers["X-Consul-Index"] == "13"
        assert (await c.get("/v1/kv/nothing/?keys")).status == 404
        pretty = await (await c.get("/v1/kv/a/?recurse&pretty")).text()
        assert "\n    " in pretty  # another format, rendered on its own

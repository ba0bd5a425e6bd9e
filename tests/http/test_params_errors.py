"""Query options from query strings, and bad input answered with a 400, never a traceback."""

from __future__ import annotations

import json

import pytest

from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.kv.v1 import kv_pb2 as kpb
from tests.http.conftest import Client
from tests.http.fakes import FakeAgent, FakeInvoker


async def _options(client: Client, invoker: FakeInvoker, query: str) -> qpb.QueryOptions:
    resp = await client.get(f"/v1/catalog/nodes?{query}")
    assert resp.status == 200, await resp.text()
    req = invoker.last("ListNodes")
    return req.options  # type: ignore[attr-defined,no-any-return]


async def test_blocking_params(client: Client, invoker: FakeInvoker) -> None:
    opts = await _options(client, invoker, "index=123&wait=1m30s")
    assert opts.min_index == 123
    assert (opts.max_wait.seconds, opts.max_wait.nanos) == (90, 0)
    opts = await _options(client, invoker, "index=5&wait=250ms")
    assert (opts.max_wait.seconds, opts.max_wait.nanos) == (0, 250_000_000)
    opts = await _options(client, invoker, "")
    assert opts.min_index == 0
    assert not opts.HasField("max_wait")


async def test_kv_blocking_params(client: Client, invoker: FakeInvoker) -> None:
    await client.get("/v1/kv/k?index=9&wait=5s&dc=dc2")
    req = invoker.last("Get")
    assert isinstance(req, kpb.GetRequest)
    assert (req.options.min_index, req.options.max_wait.seconds, req.options.datacenter) == (
        9,
        5,
        "dc2",
    )


@pytest.mark.parametrize(
    ("query", "consistency"),
    [
        ("stale", qpb.CONSISTENCY_STALE),
        ("stale=true", qpb.CONSISTENCY_STALE),
        ("stale=1", qpb.CONSISTENCY_STALE),
        ("stale=True", qpb.CONSISTENCY_STALE),
        ("stale=false", qpb.CONSISTENCY_UNSPECIFIED),
        ("consistent", qpb.CONSISTENCY_CONSISTENT),
        ("consistent=1", qpb.CONSISTENCY_CONSISTENT),
        ("", qpb.CONSISTENCY_UNSPECIFIED),
    ],
)
async def test_consistency(
    client: Client, invoker: FakeInvoker, query: str, consistency: int
) -> None:
    opts = await _options(client, invoker, query)
    assert opts.consistency == consistency


async def test_token_sources(client: Client, invoker: FakeInvoker) -> None:
    await client.get("/v1/catalog/nodes", headers={"X-Consul-Token": "h"})
    assert invoker.last("ListNodes").options.token == "h"  # type: ignore[attr-defined]
    await client.get("/v1/catalog/nodes", headers={"Authorization": "Bearer b"})
    assert invoker.last("ListNodes").options.token == "b"  # type: ignore[attr-defined]
    await client.get("/v1/catalog/nodes?token=q", headers={"X-Consul-Token": "h"})
    assert invoker.last("ListNodes").options.token == "q"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("index=abc", "Invalid index"),
        ("index=-1", "Invalid index"),
        ("wait=forever", "Invalid wait time"),
        ("stale&consistent", "Cannot specify ?stale with ?consistent"),
        ("stale=maybe", "Invalid value for ?stale"),
        ("index=1&wait=99999999999999h", "Invalid wait time"),
        ("index=99999999999999999999999", "Invalid index"),
    ],
)
async def test_bad_query_params(client: Client, query: str, text: str) -> None:
    resp = await client.get(f"/v1/catalog/nodes?{query}")
    assert resp.status == 400
    assert text in await resp.text()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{not json", "Request decode failed"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "must be a JSON object"),
        (json.dumps({"Name": "web", "Port": "abc"}).encode(), "Port must be an integer"),
        (json.dumps({"Name": "web", "Port": 70000}).encode(), "between 0 and 65535"),
        (json.dumps({"Name": "web", "Port": True}).encode(), "Port must be an integer"),
        (json.dumps({"Name": "web", "Tags": "a"}).encode(), "Tags must be an array"),
        (json.dumps({"Name": "web", "Meta": {"a": 1}}).encode(), "Meta must be an object"),
        (json.dumps({"Name": 5}).encode(), "Name must be a string"),
        (json.dumps({"Port": 80}).encode(), "Missing service name"),
        (
            json.dumps(
                {"Name": "web", "Check": {"DockerContainerID": "x", "Interval": "1s"}}
            ).encode(),
            "DockerContainerID checks are not supported",
        ),
        (
            json.dumps({"Name": "web", "Check": {"Script": "x", "Interval": "1s"}}).encode(),
            "Script is not supported",
        ),
        (json.dumps({"Name": "web", "Check": {"Notes": "x"}}).encode(), "must provide TTL"),
        (
            json.dumps({"Name": "web", "Check": {"HTTP": "http://x"}}).encode(),
            "Interval must be > 0",
        ),
        (
            json.dumps({"Name": "web", "Check": {"TTL": "1s", "TCP": "a:1"}}).encode(),
            "only one check type",
        ),
        (json.dumps({"Name": "web", "Check": {"TTL": "soon"}}).encode(), "invalid duration"),
        (
            json.dumps({"Name": "web", "Check": {"TTL": "1s", "Status": "great"}}).encode(),
            "must be 'passing', 'warning' or 'critical'",
        ),
        (json.dumps({"Name": "web", "Checks": {"TTL": "1s"}}).encode(), "Checks must be an array"),
        (
            json.dumps({"Name": "web", "Weights": {"Passing": 0}}).encode(),
            "Passing must be greater",
        ),
        # Regression: these once crashed with a 500 (overflowing protobuf Durations, NaN).
        (b'{"Name": "a", "Check": {"TTL": 1e300}}', "TTL: duration out of range"),
        (b'{"Name": "a", "Check": {"TTL": "99999999999999999h"}}', "duration out of range"),
        (b'{"Name": "a", "Check": {"TTL": NaN}}', "Request decode failed"),
        (b'{"Name": "a", "Port": 1e300}', "must be between 0 and 65535"),
        (b"[" * 100_000 + b"]" * 100_000, "Request decode failed"),
        (b"\xff\xfe{}", "Request decode failed"),
    ],
)
async def test_bad_service_register_is_400(
    client: Client, fake_agent: FakeAgent, body: bytes, text: str
) -> None:
    resp = await client.put("/v1/agent/service/register", data=body)
    assert resp.status == 400, await resp.text()
    message = await resp.text()
    assert text in message
    assert "Traceback" not in message
    assert not fake_agent.calls


async def test_empty_check_object_is_ignored(client: Client, fake_agent: FakeAgent) -> None:
    resp = await client.put(
        "/v1/agent/service/register", data=json.dumps({"Name": "web", "Check": {}})
    )
    assert resp.status == 200
    assert fake_agent.services["web"].name == "web"


async def test_keys_match_case_insensitively(client: Client, fake_agent: FakeAgent) -> None:
    for body in (
        {"NAME": "a", "PORT": 1, "ENABLETAGOVERRIDE": True},
        {"name": "b", "port": 2, "enabletagoverride": True},
        {"Name": "c", "Port": 3, "EnableTagOverride": True},
        {"name": "d", "port": 4, "enable_tag_override": True},
    ):
        resp = await client.put("/v1/agent/service/register", data=json.dumps(body))
        assert resp.status == 200, await resp.text()
    for sid, port in (("a", 1), ("b", 2), ("c", 3), ("d", 4)):
        assert fake_agent.services[sid].port == port
        assert fake_agent.services[sid].enable_tag_override is True


async def test_oversized_json_body(client: Client, fake_agent: FakeAgent) -> None:
    body = json.dumps({"Name": "web", "Notes": "x" * (2 << 20)})
    resp = await client.put("/v1/agent/service/register", data=body)
    assert resp.status == 413
    assert not fake_agent.calls


async def test_catalog_register_wrong_types(client: Client, invoker: FakeInvoker) -> None:
    resp = await client.put(
        "/v1/catalog/register", data=json.dumps({"Node": "n", "Service": {"Port": "x"}})
    )
    assert resp.status == 400
    assert "register.Service.Port must be an integer" in await resp.text()
    assert not invoker.calls


async def test_unknown_path_and_method(client: Client) -> None:
    assert (await client.get("/v1/nope")).status == 404
    assert (await client.get("/v1/agent/nope")).status == 404
    assert (await client.post("/v1/agent/service/register")).status == 405
    assert (await client.get("/v1/agent/service/register")).status == 404  # an unknown service ID
    assert (await client.delete("/v1/catalog/nodes")).status == 405
    assert (await client.post("/v1/kv/a")).status == 405


async def test_crash_is_500_without_traceback(client: Client, invoker: FakeInvoker) -> None:
    invoker.error = RuntimeError("secret internals")
    resp = await client.get("/v1/catalog/nodes")
    assert resp.status == 500
    text = await resp.text()
    assert text == "Internal error"
    assert "secret" not in text


async def test_wrong_response_type_is_500(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned["/consul.catalog.v1.CatalogService/ListNodes"] = kpb.GetResponse()
    resp = await client.get("/v1/catalog/nodes")
    assert resp.status == 500


async def test_pretty(client: Client) -> None:
    resp = await client.get("/v1/agent/self?pretty")
    assert "\n    " in await resp.text()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"Name": "c", "H2PING": "x:1", "Interval": "1s"}, "H2PING checks are not supported"),
        ({"Name": "c", "AliasNode": "n1"}, "AliasNode checks are not supported"),
        ({"Name": "c"}, "must provide TTL"),
        ({"Name": "c", "TTL": "1s", "Status": "maintenance"}, "must be 'passing'"),
        ({"Name": "c", "Header": {"A": 1}, "HTTP": "http://x", "Interval": "1s"}, "Header.A"),
    ],
)
async def test_bad_check_register_is_400(
    client: Client, fake_agent: FakeAgent, body: dict[str, object], text: str
) -> None:
    resp = await client.put("/v1/agent/check/register", data=json.dumps(body))
    assert resp.status == 400
    assert text in await resp.text()
    assert not fake_agent.calls

"""py-consul's session, KV lock, event and txn calls against the app on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import consul
import pytest

from agent.http import HTTPServer, build_app
from tests.http.fakes import FakeAgent
from tests.http.session_fakes import SessionInvoker


@pytest.fixture
def invoker() -> SessionInvoker:
    return SessionInvoker()


@pytest.fixture
async def server(invoker: SessionInvoker, fake_agent: FakeAgent) -> AsyncIterator[HTTPServer]:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    async with HTTPServer(app, "127.0.0.1", 0) as srv:
        yield srv


def _client(server: HTTPServer) -> consul.Consul:
    host, _, port = server.address.rpartition(":")
    return consul.Consul(host=host, port=int(port), connections_timeout=5)


async def test_sessions(server: HTTPServer, invoker: SessionInvoker) -> None:
    c = _client(server)

    def scenario() -> None:
        sid = c.session.create(name="worker", behavior="delete", ttl=20, lock_delay=3)
        assert isinstance(sid, str) and sid
        index, session = c.session.info(sid)
        assert int(index) >= 1
        assert session is not None
        assert session["ID"] == sid
        assert session["Name"] == "worker"
        assert session["Node"] == "node-1"
        assert session["Behavior"] == "delete"
        assert session["TTL"] == "20s"
        assert session["LockDelay"] == 3_000_000_000
        assert session["NodeChecks"] == ["serfHealth"]
        _, missing = c.session.info("00000000-0000-0000-0000-000000000000")
        assert missing is None
        other = c.session.create(node="node-2", checks=[])
        _, sessions = c.session.list()
        assert sorted(s["ID"] for s in sessions) == sorted([sid, other])
        _, on_node = c.session.node("node-2")
        assert [s["ID"] for s in on_node] == [other]
        assert on_node[0]["NodeChecks"] == []
        renewed = c.session.renew(sid)
        assert renewed["ID"] == sid
        assert c.session.destroy(sid) is True
        with pytest.raises(consul.NotFound):
            c.session.renew(sid)
        assert c.session.info(sid)[1] is None

    await asyncio.to_thread(scenario)


async def test_kv_lock(server: HTTPServer) -> None:
    c = _client(server)

    def scenario() -> None:
        a = c.session.create(name="a")
        b = c.session.create(name="b")
        assert c.kv.put("service/leader", "a", acquire=a) is True
        assert c.kv.put("service/leader", "b", acquire=b) is False
        _, pair = c.kv.get("service/leader")
        assert pair is not None
        assert (pair["Value"], pair["Session"]) == (b"a", a)
        assert c.kv.put("service/leader", "a", release=a) is True
        assert c.kv.put("service/leader", "b", acquire=b) is True

    await asyncio.to_thread(scenario)


async def test_events(server: HTTPServer, fake_agent: FakeAgent) -> None:
    c = _client(server)

    def scenario() -> None:
        index, events = c.event.list()
        assert events == []
        fired = c.event.fire("deploy", "1609030")
        assert fired["Name"] == "deploy"
        assert base64.b64decode(fired["Payload"]) == b"1609030"
        c.event.fire("restart", node="^node-1$")
        c.event.fire("elsewhere", node="^node-9$")
        index, events = c.event.list()
        assert [e["Name"] for e in events] == ["deploy", "restart"]
        assert events[0]["Payload"] == b"1609030"
        assert events[1]["Payload"] is None
        assert int(index) >= 1
        _, events = c.event.list(name="deploy")
        assert [e["ID"] for e in events] == [fired["ID"]]

    await asyncio.to_thread(scenario)


async def test_txn(server: HTTPServer, invoker: SessionInvoker) -> None:
    c = _client(server)

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def scenario() -> None:
        result = c.txn.put(
            [
                {"KV": {"Verb": "set", "Key": "app/a", "Value": b64("1")}},
                {"KV": {"Verb": "set", "Key": "app/b", "Value": b64("2")}},
            ]
        )
        assert result["Errors"] is None
        assert [r["KV"]["Key"] for r in result["Results"]] == ["app/a", "app/b"]
        result = c.txn.put([{"KV": {"Verb": "get", "Key": "app/a"}}])
        assert base64.b64decode(result["Results"][0]["KV"]["Value"]) == b"1"
        with pytest.raises(consul.ConsulException, match="409"):
            c.txn.put([{"KV": {"Verb": "get", "Key": "app/missing"}}])
        with pytest.raises(consul.ConsulException, match="413"):
            c.txn.put([{"KV": {"Verb": "get", "Key": f"k{n}"}} for n in range(65)])

    await asyncio.to_thread(scenario)

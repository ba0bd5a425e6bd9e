"""Router: one Manager per datacenter, routes that skip offline managers."""

from __future__ import annotations

import asyncio
import random

import pytest

from agent.errors import NoPathToDatacenter, RemoteDCUnreachable
from agent.router import Router, Server


class FauxPinger:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()

    async def ping(self, server: Server) -> bool:
        return server.name not in self.failing


def make(failing: set[str] | None = None, **kw: object) -> Router:
    return Router("dc1", FauxPinger(failing), rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_local_manager_exists_from_the_start() -> None:
    r = make()
    assert r.datacenters() == ["dc1"]
    assert r.local.offline is True
    assert r.find_server() is None


def test_add_server_goes_to_its_datacenter() -> None:
    r = make()
    r.add_server(Server("a", "10.0.0.1:8300", "dc1"))
    r.add_server(Server("b", "10.1.0.1:8300", "dc2"))
    assert r.datacenters() == ["dc1", "dc2"]
    assert r.find_server() == Server("a", "10.0.0.1:8300", "dc1")
    assert r.manager("dc2").find_server() == Server("b", "10.1.0.1:8300", "dc2")
    r.remove_server(Server("b", "10.1.0.1:8300", "dc2"))
    assert r.manager("dc2").servers == ()
    r.remove_server(Server("x", "10.1.0.1:8300", "dc7"))  # unknown dc: nothing
    assert "dc7" not in r.datacenters()


def test_find_route() -> None:
    r = make()
    b = Server("b", "10.1.0.1:8300", "dc2")
    r.add_server(b)
    manager, server = r.find_route("dc2")
    assert manager is r.manager("dc2")
    assert server == b


def test_find_route_unknown_dc_is_no_path() -> None:
    r = make()
    with pytest.raises(NoPathToDatacenter, match="No path to datacenter"):
        r.find_route("dc9")
    r.manager("dc3")  # known, but no server
    with pytest.raises(NoPathToDatacenter):
        r.find_route("dc3")


async def test_find_route_skips_offline_manager() -> None:
    r = make(failing={"b1", "b2"})
    r.add_server(Server("b1", "10.1.0.1:8300", "dc2"))
    r.add_server(Server("b2", "10.1.0.2:8300", "dc2"))
    assert not await r.manager("dc2").rebalance_servers()
    with pytest.raises(RemoteDCUnreachable, match="Remote DC has no server currently reachable"):
        r.find_route("dc2")


def test_notify_failed_server_reaches_its_manager() -> None:
    r = make()
    a, b = Server("a", "10.0.0.1:8300", "dc1"), Server("b", "10.0.0.2:8300", "dc1")
    r.add_server(a)
    r.add_server(b)
    r.notify_failed_server(a)
    assert r.find_server() == b
    r.notify_failed_server(Server("z", "10.0.0.9:8300", "dc5"))  # unknown dc: ignored


def test_self_name_applies_to_local_dc_only() -> None:
    r = make(self_name="me")
    assert r.local._self_name == "me"
    assert r.manager("dc2")._self_name is None


def test_state_snapshot() -> None:
    r = make()
    r.add_server(Server("a", "10.0.0.1:8300", "dc1"))
    st = r.state()
    assert list(st) == ["dc1"]
    assert st["dc1"].servers == (Server("a", "10.0.0.1:8300", "dc1"),)
    assert st["dc1"].offline is False
    assert st["dc1"].rebalance_in > 0


async def test_start_and_aclose_run_every_manager() -> None:
    async with make() as r:
        late = r.manager("dc2")  # created while running: started too
        assert late._loops.running
        assert r.local._loops.running
    assert not late._loops.running
    assert not r.local._loops.running
    await asyncio.sleep(0)


def test_bad_datacenter_names() -> None:
    with pytest.raises(ValueError):
        Router("", FauxPinger())
    with pytest.raises(ValueError):
        make().manager("")

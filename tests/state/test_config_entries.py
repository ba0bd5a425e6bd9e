"""Config entries on both stores: Consul's validation, CAS, indexes, blocking lists."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import InvalidArgument
from agent.state.blocking import QueryOpts
from agent.state.config_entries import ConfigEntries
from agent.store import Store


async def test_apply_get_list_delete(store: Store) -> None:
    entries = ConfigEntries(store)
    ok, index = await entries.apply(
        {"kind": "service-defaults", "name": "web", "Protocol": "http", "meta": {"team": "a"}}
    )
    assert ok and index > 0
    got = await entries.get(QueryOpts(), "service-defaults", "web")
    assert got.value is not None
    assert got.value["Kind"] == "service-defaults" and got.value["Name"] == "web"
    assert got.value["Protocol"] == "http" and got.value["Meta"] == {"team": "a"}
    assert got.value["CreateIndex"] == got.value["ModifyIndex"] == got.index
    await entries.apply({"Kind": "service-defaults", "Name": "api", "Protocol": "grpc"})
    listed = await entries.list(QueryOpts(), "service-defaults")
    assert [e["Name"] for e in listed.value] == ["api", "web"]
    assert (await entries.list(QueryOpts(), "service-router")).value == []
    # CAS: a stale index loses, the current one wins.
    assert await entries.apply({"Kind": "service-defaults", "Name": "web"}, cas=1) == (
        False,
        got.index,
    )
    ok, _ = await entries.apply(
        {"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"}, cas=got.index
    )
    assert ok
    deleted, _ = await entries.delete("service-defaults", "web", cas=got.index)
    assert not deleted
    deleted, after = await entries.delete("service-defaults", "web")
    assert deleted
    gone = await entries.get(QueryOpts(), "service-defaults", "web")
    assert gone.value is None and gone.index >= after


async def test_blocking_list_wakes_on_delete(store: Store) -> None:
    entries = ConfigEntries(store)
    await entries.apply({"Kind": "proxy-defaults", "Name": "global"})
    first = await entries.list(QueryOpts(), "proxy-defaults")
    waiter = asyncio.create_task(
        entries.list(QueryOpts(min_index=first.index, max_wait=10), "proxy-defaults")
    )
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await entries.delete("proxy-defaults", "global")
    woken = await asyncio.wait_for(waiter, 10)
    assert woken.value == [] and woken.index > first.index


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ({"Kind": "nope", "Name": "x"}, "invalid config entry kind: nope"),
        ({"Name": "x"}, "Kind value in payload is missing"),
        ({"Kind": "service-defaults"}, "Name is required"),
        ({"Kind": "proxy-defaults", "Name": "web"}, "only 'global' is supported"),
        ({"Kind": "mesh", "Name": "x"}, "only 'mesh' is supported"),
        ({"Kind": "service-defaults", "Name": "w", "Meta": {"consul-x": "1"}}, "reserved prefix"),
        (
            {"Kind": "service-defaults", "Name": "w", "Meta": {str(i): "v" for i in range(65)}},
            "maximum element count 64",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
async def test_validation_as_consul(store: Store, doc: object, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text):
        await ConfigEntries(store).apply(doc)


async def test_deeply_nested_entry_is_a_400_not_a_crash_regression(store: Store) -> None:
    """Found by the fuzz suite: a nested document past Python's recursion limit
    crashed the endpoint (500 RecursionError)."""
    deep: object = "x"
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(InvalidArgument, match="Request decoding failed"):
        await ConfigEntries(store).apply({"Kind": "service-defaults", "Name": "w", "Deep": deep})

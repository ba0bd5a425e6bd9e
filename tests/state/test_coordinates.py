"""Coordinates on both stores: batched writes of changed coordinates of known
nodes, blocking lists, removal with the node; and the servers' batcher."""

from __future__ import annotations

import asyncio

import pytest

from agent.coordinate import Coordinate
from agent.errors import RateLimited
from agent.server.coordinates import BatchConfig, CoordinateBatcher
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.coordinates import CoordinateState, NodeCoordinate
from agent.store import Store
from generated.consul.common.v1 import types_pb2 as pb


def coord(x: float) -> Coordinate:
    c = Coordinate.new()
    c.vec[0] = x
    return c


async def nodes(store: Store, *names: str) -> Catalog:
    cat = Catalog(store)
    for name in names:
        await cat.register(pb.Node(name=name, address="10.0.0.1"))
    return cat


async def test_batch_writes_changed_coordinates_of_known_nodes(store: Store) -> None:
    await nodes(store, "a", "b")
    state = CoordinateState(store)
    written, index = await state.batch_update(
        [
            NodeCoordinate("a", "", coord(0.001)),
            NodeCoordinate("b", "", coord(0.002)),
            NodeCoordinate("ghost", "", coord(0.003)),  # not in the catalog: skipped
        ]
    )
    assert written == 2 and index > 0
    assert state.batches_written == 1
    listed = await state.list_nodes(QueryOpts())
    assert [(r.node, r.coord.vec[0]) for r in listed.value] == [("a", 0.001), ("b", 0.002)]
    assert listed.index == index
    # The same coordinates again: nothing to write, no store transaction.
    written, _ = await state.batch_update([NodeCoordinate("a", "", coord(0.001))])
    assert written == 0 and state.batches_written == 1
    one = await state.get_node(QueryOpts(), "b")
    assert [r.coord.vec[0] for r in one.value] == [0.002]
    assert (await state.get_node(QueryOpts(), "ghost")).value == []


async def test_batches_are_chunked_by_batch_size(store: Store) -> None:
    names = [f"n{i}" for i in range(5)]
    await nodes(store, *names)
    state = CoordinateState(store)
    written, _ = await state.batch_update(
        [NodeCoordinate(n, "", coord(i / 1000)) for i, n in enumerate(names)], batch_size=2
    )
    assert written == 5 and state.batches_written == 3


async def test_segments_are_kept_apart(store: Store) -> None:
    await nodes(store, "a")
    state = CoordinateState(store)
    await state.batch_update(
        [NodeCoordinate("a", "", coord(0.001)), NodeCoordinate("a", "alpha", coord(0.005))]
    )
    assert len((await state.list_nodes(QueryOpts())).value) == 2
    alpha = await state.list_nodes(QueryOpts(), "alpha")
    assert [(r.segment, r.coord.vec[0]) for r in alpha.value] == [("alpha", 0.005)]
    assert (await state.by_node())["a"].vec[0] == 0.001


async def test_blocking_list_wakes_on_a_batch_and_on_node_removal(store: Store) -> None:
    cat = await nodes(store, "a", "b")
    state = CoordinateState(store)
    _, index = await state.batch_update([NodeCoordinate("a", "", coord(0.001))])
    waiter = asyncio.create_task(state.list_nodes(QueryOpts(min_index=index, max_wait=30)))
    await asyncio.sleep(0)
    _, index2 = await state.batch_update([NodeCoordinate("b", "", coord(0.002))])
    async with asyncio.timeout(10):
        woken = await waiter
    assert {r.node for r in woken.value} == {"a", "b"} and woken.index == index2
    # Deregistering a node removes its coordinates and moves the index.
    waiter = asyncio.create_task(state.list_nodes(QueryOpts(min_index=index2, max_wait=30)))
    await asyncio.sleep(0)
    await cat.deregister("a")
    async with asyncio.timeout(10):
        woken = await waiter
    assert [r.node for r in woken.value] == ["b"] and woken.index > index2
    # A late update of the removed node does not bring it back.
    written, _ = await state.batch_update([NodeCoordinate("a", "", coord(0.004))])
    assert written == 0


async def test_batcher_keeps_the_latest_per_node_and_refuses_past_its_queue(
    store: Store,
) -> None:
    await nodes(store, "a", "b")
    state = CoordinateState(store)
    batcher = CoordinateBatcher(state, BatchConfig(period=3600, batch_size=1, max_batches=2))
    for i in range(10):  # ten updates of one node between two periods...
        batcher.queue("a", "", coord(i / 1000))
    batcher.queue("b", "", coord(0.5))
    with pytest.raises(RateLimited, match="Coordinate update rate limit exceeded"):
        batcher.queue("c", "", coord(0.1))
    assert await batcher.flush() == 2  # ...are one write of the latest
    assert state.batches_written == 2  # batch_size 1: one transaction per coordinate
    assert (await state.by_node())["a"].vec[0] == 0.009
    assert await batcher.flush() == 0 and state.batches_written == 2

"""Snapshots on both stores: save, restore into a fresh store, refuse damaged archives."""

from __future__ import annotations

import gzip
import io

import pytest

from agent.errors import InvalidArgument
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.kv import KVState
from agent.state.members import Members
from agent.state.snapshot import read_archive, restore, save
from agent.store import Store
from agent.store.memory import MemoryStore
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb


async def _fill(store: Store) -> None:
    catalog = Catalog(store)
    kv = KVState(store)
    for i in range(3):
        await catalog.register(
            pb.Node(name=f"ext-{i}", address=f"10.0.0.{i + 1}"),
            pb.Service(id=f"web-{i}", name="web", port=8080 + i, tags=["v1"]),
            [pb.HealthCheck(check_id=f"c{i}", name="alive", status=pb.HEALTH_STATUS_PASSING)],
        )
    # More keys than one store transaction holds: the restore is chunked.
    for i in range(300):
        await kv.put(f"app/{i:04d}", f"value-{i}".encode(), flags=i)
    await kv.put("config/x", b"\x00\xffbinary")
    await Members(store).join(
        mpb.Member(name="s1", address="127.0.0.1:1", datacenter="dc1", role=mpb.MEMBER_ROLE_NODE)
    )


async def _reads(store: Store) -> tuple[object, ...]:
    catalog = Catalog(store)
    kv = KVState(store)
    nodes = [(n.name, n.address) for n in (await catalog.list_nodes(QueryOpts())).value]
    services = (await catalog.list_services(QueryOpts())).value
    health = [
        (e.node.name, e.service.id, e.service.port, [c.status for c in e.checks])
        for e in (await catalog.service_health(QueryOpts(), "web")).value
    ]
    pairs = [(p.key, p.value, p.flags) for p in (await kv.list_prefix(QueryOpts(), "")).value]
    return nodes, services, health, pairs


async def test_save_and_restore_into_a_fresh_store(store: Store) -> None:
    await _fill(store)
    out = io.BytesIO()
    meta = await save(store, out, datacenter="dc1")
    assert meta.index > 0 and meta.store == store.kind
    async with MemoryStore() as fresh:
        await KVState(fresh).put("stale/key", b"replaced by the restore")
        out.seek(0)
        _, restored = await restore(fresh, out)
        assert restored > 300
        assert await _reads(fresh) == await _reads(store)
        # Runtime state is not carried over: membership belongs to the cluster.
        assert (await Members(fresh).list())[0] == []
        assert (await KVState(fresh).get(QueryOpts(), "stale/key")).value is None


async def test_restore_from_memory_into_this_store(store: Store) -> None:
    async with MemoryStore() as source:
        await _fill(source)
        out = io.BytesIO()
        await save(source, out, datacenter="dc1")
        out.seek(0)
        await restore(store, out)
        assert await _reads(store) == await _reads(source)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not-gzip", "empty"])
async def test_damaged_archive_is_refused_and_changes_nothing(store: Store, damage: str) -> None:
    await _fill(store)
    out = io.BytesIO()
    await save(store, out, datacenter="dc1")
    raw = out.getvalue()
    if damage == "truncated":
        bad = raw[: len(raw) // 2]
    elif damage == "flipped":
        inner = bytearray(gzip.decompress(raw))
        inner[len(inner) // 2] ^= 0xFF  # inside state.bin: the checksum no longer holds
        bad = gzip.compress(bytes(inner))
    elif damage == "not-gzip":
        bad = b"this is not a snapshot"
    else:
        bad = b""
    before = await _reads(store)
    with pytest.raises(InvalidArgument):
        await restore(store, io.BytesIO(bad))
    assert await _reads(store) == before
    with pytest.raises(InvalidArgument):
        read_archive(io.BytesIO(bad))


async def test_restore_of_large_values_fits_the_store_byte_limit_regression(store: Store) -> None:
    """Found by the end-to-end test: 64 puts of 300 KiB values were one 19 MiB
    transaction, which the store refuses (its byte limit is 1 MiB)."""
    kv = KVState(store)
    for i in range(8):
        await kv.put(f"big/{i}", bytes([i]) * 300 * 1024)
    out = io.BytesIO()
    await save(store, out, datacenter="dc1")
    async with MemoryStore() as fresh:
        out.seek(0)
        await restore(fresh, out)
        got = (await KVState(fresh).list_prefix(QueryOpts(), "big/")).value
        assert [len(p.value) for p in got] == [300 * 1024] * 8

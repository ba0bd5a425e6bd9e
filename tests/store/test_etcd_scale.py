"""Issue 16 (catalog at scale): ranges larger than one gRPC message.

A server started cold on a catalog of 20,000 instances never became ready:
its replica loads the namespace with one Range, and the answer (7.9 MB) was
over gRPC's 4 MiB receive limit ("Received message larger than max").
``EtcdStore.range`` now reads pages of ``RANGE_PAGE`` keys at one revision.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from agent.store import Put
from agent.store import etcd as etcd_module
from agent.store.etcd import EtcdStore
from agent.store.replica import ReplicaStore
from tests.support.etcd import EtcdServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def etcd_store(etcd_server: EtcdServer) -> AsyncIterator[EtcdStore]:
    async with EtcdStore([etcd_server.endpoint], f"/test/{uuid.uuid4().hex}/") as store:
        yield store


async def test_range_and_cold_replica_larger_than_a_grpc_message_regression(
    etcd_store: EtcdStore,
) -> None:
    value = b"x" * (128 * 1024)
    for batch in range(7):  # 49 x 128 KiB = 6.1 MiB, 896 KiB per transaction
        ops = [Put(f"big/{batch * 7 + i:03d}", value) for i in range(7)]
        assert (await etcd_store.txn([], ops))[0]
    entries, index = await etcd_store.range("big/")
    assert [e.key for e in entries] == [f"big/{i:03d}" for i in range(49)]
    assert all(e.value == value for e in entries)
    assert index == max(e.modify_index for e in entries)
    replica = ReplicaStore(etcd_store)  # a server started cold on that store
    await replica.start()
    try:
        mirrored, _ = await replica.range("big/")
        assert len(mirrored) == 49
    finally:
        await replica.aclose()


async def test_range_pages_are_one_snapshot_of_the_prefix(
    etcd_store: EtcdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_module, "RANGE_PAGE", 3)
    await etcd_store.txn([], [Put(f"a/{i:02d}", b"%d" % i) for i in range(10)])
    await etcd_store.txn([], [Put("a0", b"neighbour"), Put("b/1", b"other")])
    entries, index = await etcd_store.range("a/")
    assert [e.key for e in entries] == [f"a/{i:02d}" for i in range(10)]
    assert [e.value for e in entries] == [b"%d" % i for i in range(10)]
    assert index >= max(e.modify_index for e in entries)
    assert (await etcd_store.range("none/"))[0] == []

"""Fixtures: ``store`` is a started store of each kind, with a fresh namespace for etcd."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from agent.store import Store, open_store
from agent.store.replica import ReplicaStore
from tests.support.etcd import EtcdServer, etcd_fixture

etcd_server = etcd_fixture(scope="session")


@pytest.fixture(params=["memory", "etcd", "replica"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param in ("etcd", "replica"):
        server: EtcdServer = request.getfixturevalue("etcd_server")
        namespace = f"/test/{uuid.uuid4().hex}/"
        s = open_store("etcd", endpoints=[server.endpoint], namespace=namespace)
    else:
        s = open_store("memory")
    await s.start()
    replica = ReplicaStore(s) if request.param == "replica" else None
    if replica is not None:
        await replica.start()
    try:
        yield replica or s
    finally:
        if replica is not None:
            await replica.aclose()
        await s.aclose()

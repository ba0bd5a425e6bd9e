"""Integration fixtures: one real etcd per session (a fresh namespace per datacenter name)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.etcd import etcd_fixture

etcd_server = etcd_fixture(scope="session")


@pytest.fixture
def dc() -> str:
    """A datacenter name unique to the test, so tests sharing etcd never meet."""
    return "dc" + uuid.uuid4().hex[:8]

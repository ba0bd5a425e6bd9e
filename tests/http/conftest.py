"""Fixtures: the HTTP app over a fake invoker and a fake local agent, in aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.http import build_app
from tests.http.fakes import FakeAgent, FakeInvoker

Client = TestClient[web.Request, web.Application]


class Leaves:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def invoker() -> FakeInvoker:
    return FakeInvoker()


@pytest.fixture
def fake_agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def leaves() -> Leaves:
    return Leaves()


@pytest.fixture
async def client(
    invoker: FakeInvoker, fake_agent: FakeAgent, leaves: Leaves
) -> AsyncIterator[Client]:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1", on_leave=leaves)
    async with TestClient(TestServer(app)) as c:
        yield c

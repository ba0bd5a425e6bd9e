"""Resolver: default/anonymous token, cache by version or TTL, down_policy."""

from __future__ import annotations

import pytest

from agent.acl.resolver import Identity, Resolver
from agent.config import ACLConfig
from agent.errors import ACLNotFound, NoServers

ON = ACLConfig(enabled=True, default_policy="deny")


class FakeTokens:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.rules = {"anonymous": "", "reader": 'service_prefix "" { policy = "read" }'}
        self.down = False

    async def __call__(self, secret: str) -> Identity:
        self.calls.append(secret)
        if self.down:
            raise NoServers()
        if secret not in self.rules:
            raise ACLNotFound()
        return Identity(f"acc-{secret}", False, (self.rules[secret],))


async def test_empty_token_is_default_then_anonymous() -> None:
    tokens = FakeTokens()
    r = Resolver(ON, tokens, version=lambda: _const(1))
    assert (await r.resolve("")).accessor == "acc-anonymous"
    r2 = Resolver(
        ACLConfig(enabled=True, default_token="reader"), tokens, version=lambda: _const(1)
    )
    assert (await r2.resolve("")).service_read("x")


async def _const(n: int) -> int:
    return n


async def test_versioned_cache_invalidated_by_acl_index() -> None:
    tokens = FakeTokens()
    version = [1]

    async def current() -> int:
        return version[0]

    r = Resolver(ON, tokens, version=current)
    assert (await r.resolve("reader")).service_read("web")
    await r.resolve("reader")
    assert tokens.calls == ["reader"]
    tokens.rules["reader"] = ""
    version[0] = 2  # an ACL write anywhere
    assert not (await r.resolve("reader")).service_read("web")
    assert tokens.calls == ["reader", "reader"]


async def test_unknown_secret_is_acl_not_found() -> None:
    r = Resolver(ON, FakeTokens(), version=lambda: _const(1))
    with pytest.raises(ACLNotFound):
        await r.resolve("nope")


@pytest.mark.parametrize(
    ("policy", "cached_allows", "uncached_allows"),
    [
        ("extend-cache", True, False),
        ("async-cache", True, False),
        ("allow", True, True),
        ("deny", False, False),
    ],
)
async def test_down_policy(policy: str, cached_allows: bool, uncached_allows: bool) -> None:
    tokens = FakeTokens()
    now = [0.0]
    cfg = ACLConfig(enabled=True, default_policy="deny", down_policy=policy, token_ttl=30)
    r = Resolver(cfg, tokens, clock=lambda: now[0])
    assert (await r.resolve("reader")).service_read("web")
    now[0] = 31.0  # the entry is stale and the servers are gone
    tokens.down = True
    assert (await r.resolve("reader")).service_read("web") is cached_allows
    tokens.rules["other"] = ""
    assert (await r.resolve("other")).service_read("web") is uncached_allows


async def test_ttl_cache_refetches_after_ttl() -> None:
    tokens = FakeTokens()
    now = [0.0]
    r = Resolver(ACLConfig(enabled=True, token_ttl=30), tokens, clock=lambda: now[0])
    await r.resolve("reader")
    now[0] = 29.0
    await r.resolve("reader")
    assert tokens.calls == ["reader"]
    now[0] = 30.5
    await r.resolve("reader")
    assert tokens.calls == ["reader", "reader"]


async def test_disabled_allows_all_without_asking() -> None:
    tokens = FakeTokens()
    r = Resolver(ACLConfig(), tokens)
    assert (await r.resolve("whatever")).acl_write()
    assert tokens.calls == []


async def test_global_tokens_from_the_primary_are_refetched_after_ttl() -> None:
    calls: list[str] = []
    down = [False]

    async def remote(secret: str) -> Identity:
        calls.append(secret)
        if down[0]:
            raise NoServers()
        return Identity("acc-g", False, ('service_prefix "" { policy = "read" }',), None, True)

    now = [0.0]
    cfg = ACLConfig(enabled=True, default_policy="deny", token_ttl=30)
    r = Resolver(cfg, remote, version=lambda: _const(7), clock=lambda: now[0])
    assert (await r.resolve("g")).service_read("web")
    await r.resolve("g")
    assert calls == ["g"]  # the local ACL index did not move, the TTL holds
    now[0] = 31.0
    down[0] = True  # primary unreachable: extend-cache keeps the old answer
    assert (await r.resolve("g")).service_read("web")
    assert calls == ["g", "g"]

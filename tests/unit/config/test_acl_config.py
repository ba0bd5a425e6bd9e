"""The ``acl`` block of a config file, with Consul's keys."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig
from agent.errors import InvalidArgument


def test_consul_keys_and_legacy_names() -> None:
    cfg = AgentConfig().merged(
        {
            "primary_datacenter": "dc1",
            "acl": {
                "enabled": True,
                "default_policy": "deny",
                "down_policy": "async-cache",
                "enable_token_persistence": True,
                "enable_key_list_policy": True,
                "token_ttl": "45s",
                "tokens": {"master": "m", "default": "d", "agent": "a", "agent_master": "r"},
            },
        }
    )
    acl = cfg.acl
    assert (acl.enabled, acl.default_policy, acl.down_policy) == (True, "deny", "async-cache")
    assert acl.token_ttl == 45.0 and acl.enable_key_list_policy
    assert (acl.initial_management, acl.default_token, acl.agent_token, acl.agent_recovery) == (
        "m",
        "d",
        "a",
        "r",
    )
    assert cfg.primary_datacenter == "dc1"


@pytest.mark.parametrize(
    ("block", "text"),
    [
        ({"default_policy": "maybe"}, "default_policy"),
        ({"down_policy": "panic"}, "down_policy"),
        ({"nope": 1}, "acl.nope"),
        ({"tokens": {"root": "x"}}, "acl.tokens.root"),
        ("on", "acl must be an object"),
    ],
)
def test_bad_acl_config_is_refused(block: object, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text):
        AgentConfig().merged({"acl": block})

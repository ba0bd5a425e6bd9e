"""The agent's own tokens: kinds, aliases, validation, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.acl.tokens import AgentTokens
from agent.config import ACLConfig
from agent.errors import InvalidArgument, NotFound


def test_agent_token_falls_back_to_default() -> None:
    tokens = AgentTokens(ACLConfig(default_token="d"))
    assert tokens.agent == "d"
    tokens.update("acl_agent_token", "a")  # legacy name
    assert tokens.agent == "a" and tokens.get("agent") == "a"


def test_bad_kind_and_bad_token() -> None:
    tokens = AgentTokens(ACLConfig())
    with pytest.raises(NotFound):
        tokens.update("root", "x")
    with pytest.raises(InvalidArgument):
        tokens.update("default", "has space")
    with pytest.raises(InvalidArgument):
        tokens.update("default", "x" * 300)


def test_persisted_tokens_win_over_config_only_when_enabled(tmp_path: Path) -> None:
    cfg = ACLConfig(default_token="from-config", enable_token_persistence=True)
    AgentTokens(cfg, str(tmp_path)).update("default", "from-api")
    assert (tmp_path / "acl-tokens.json").stat().st_mode & 0o777 == 0o600
    assert AgentTokens(cfg, str(tmp_path)).default == "from-api"
    off = ACLConfig(default_token="from-config")
    assert AgentTokens(off, str(tmp_path)).default == "from-config"


def test_unreadable_persisted_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "acl-tokens.json").write_text("{not json")
    cfg = ACLConfig(default_token="c", enable_token_persistence=True)
    assert AgentTokens(cfg, str(tmp_path)).default == "c"

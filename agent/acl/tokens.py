"""The agent's own tokens (Consul's ``acl.tokens``), settable at run time.

Kinds, as Consul names them for ``PUT /v1/agent/token/<kind>``: ``default``
(used for requests that carry no token), ``agent`` (the agent's internal
work: anti-entropy, checks), ``agent_recovery`` (local agent endpoints when
the servers are unreachable), plus ``replication`` and
``config_file_service_registration`` (kept, not used yet). The legacy names
``acl_token``, ``acl_agent_token``, ``acl_agent_master_token`` and
``agent_master`` are accepted.

With ``acl.enable_token_persistence`` the tokens set through the API are saved
to ``<data-dir>/acl-tokens.json`` and win over the config file at the next
start, as Consul's.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from agent.config import ACLConfig
from agent.errors import InvalidArgument, NotFound

__all__ = ["KINDS", "AgentTokens"]

logger = logging.getLogger(__name__)

KINDS = ("default", "agent", "agent_recovery", "replication", "config_file_service_registration")
_ALIASES = {
    "acl_token": "default",
    "acl_agent_token": "agent",
    "acl_agent_master_token": "agent_recovery",
    "agent_master": "agent_recovery",
    "acl_replication_token": "replication",
}
MAX_TOKEN_LENGTH = 256


class AgentTokens:
    """The tokens of one agent (see the module docstring)."""

    def __init__(self, config: ACLConfig, data_dir: str = "") -> None:
        self._tokens = {
            "default": config.default_token,
            "agent": config.agent_token,
            "agent_recovery": config.agent_recovery,
            "replication": "",
            "config_file_service_registration": "",
        }
        self._path = (
            Path(data_dir) / "acl-tokens.json"
            if data_dir and config.enable_token_persistence
            else None
        )
        self._load()

    def get(self, kind: str) -> str:
        return self._tokens[kind]

    @property
    def default(self) -> str:
        return self._tokens["default"]

    @property
    def agent(self) -> str:
        """The agent token, else the default token (Consul's fallback)."""
        return self._tokens["agent"] or self._tokens["default"]

    @property
    def agent_recovery(self) -> str:
        return self._tokens["agent_recovery"]

    def update(self, kind: str, token: str) -> None:
        name = _ALIASES.get(kind, kind)
        if name not in self._tokens:
            raise NotFound(f"Token {kind!r} is unknown")
        if len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise InvalidArgument("Invalid token: whitespace or longer than 256 characters")
        self._tokens[name] = token
        self._save()

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            saved = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable persisted tokens path=%s error=%s", self._path, exc)
            return
        for key, value in saved.items() if isinstance(saved, dict) else ():
            if key in self._tokens and isinstance(value, str):
                self._tokens[key] = value

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v for k, v in self._tokens.items() if v}))
        os.chmod(tmp, 0o600)
        tmp.replace(self._path)
